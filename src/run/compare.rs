//! Runs side by side (`dino compare`): the settings that differ between them, and what each run
//! reached (best and last k-NN, the loss at an iteration every run reached, speed, training time,
//! status). Runs that differ only by their seed are one group, reported as mean ± standard
//! deviation with its n, because one seed's number says little about a setting on its own.
//!
//! Read from the run directories only (`config.toml`, `metrics.jsonl`, `events.jsonl`, `evals/`):
//! a finished, stopped or live run compares alike. `metrics.jsonl` is streamed, never held.

use super::dir::{CONFIG_FILE, METRICS_FILE};
use super::runs::{self, Status};
use crate::protocol::IterMetrics;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Version of the `--json` document (docs/runs.md, "Comparing runs"); bumped when a field changes
/// meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;

/// Settings (last part of the key) that name or show a run rather than describe its training:
/// never a difference worth a column.
const IDENTITY_KEYS: [&str; 3] = ["output_dir", "name", "headless"];
/// The seed (last part of the key): runs that differ only by it are one group.
const SEED_KEY: &str = "seed";

/// The last part of a flattened key (`optim.lr` → `lr`).
fn leaf(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}
/// Iterations averaged for "the loss at the common iteration" (one iteration's loss is noisy).
const LOSS_WINDOW: usize = 20;

/// One run as the comparison reads it.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    pub name: String,
    pub path: PathBuf,
    pub status: String,
    /// Every setting, flattened (`optim.lr` = "0.0005").
    #[serde(skip)]
    pub settings: BTreeMap<String, String>,
    pub seed: Option<u64>,
    pub best_knn: Option<f64>,
    /// The k-NN of the latest evaluated iteration.
    pub last_knn: Option<f64>,
    /// Iterations done (the last metrics line's iteration + 1).
    pub iterations: Option<usize>,
    /// Mean loss over the `LOSS_WINDOW` iterations up to the comparison's common iteration.
    pub loss_at_common: Option<f64>,
    pub images_per_s: Option<f64>,
    /// Seconds spent in iterations (pauses and evaluations left out).
    pub train_seconds: Option<f64>,
}

/// A mean with its spread over a group's runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    /// Sample standard deviation (0 for one run).
    pub sd: f64,
    /// Runs that had a value.
    pub n: usize,
}

impl Spread {
    fn of(values: impl Iterator<Item = Option<f64>>) -> Option<Self> {
        let v: Vec<f64> = values.flatten().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return None;
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        Some(Self { mean, sd, n })
    }
}

/// Runs that share every differing setting but the seed.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// The differing settings' values for this group.
    pub settings: BTreeMap<String, String>,
    pub runs: Vec<RunFigures>,
    pub best_knn: Option<Spread>,
    pub last_knn: Option<Spread>,
    pub loss_at_common: Option<Spread>,
    pub images_per_s: Option<Spread>,
    pub train_seconds: Option<Spread>,
}

impl Group {
    fn of(settings: BTreeMap<String, String>, runs: Vec<RunFigures>) -> Self {
        let spread = |value: fn(&RunFigures) -> Option<f64>| Spread::of(runs.iter().map(value));
        Self {
            best_knn: spread(|r| r.best_knn),
            last_knn: spread(|r| r.last_knn),
            loss_at_common: spread(|r| r.loss_at_common),
            images_per_s: spread(|r| r.images_per_s),
            train_seconds: spread(|r| r.train_seconds),
            settings,
            runs,
        }
    }
}

/// The `--json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub schema_version: u32,
    /// Settings whose values differ between the runs (the seed left out: it makes the groups).
    pub differing: Vec<String>,
    /// The last iteration every run reached; the loss column is read there.
    pub common_iter: Option<usize>,
    pub groups: Vec<Group>,
}

/// The runs `args` name: run directories, or folders of runs (each run directory inside them).
/// An argument that is neither is an error that names it (a typo must not shrink a comparison
/// silently).
pub fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for a in args {
        if runs::is_run_dir(a) {
            out.push(a.clone());
            continue;
        }
        let mut inside: Vec<PathBuf> =
            std::fs::read_dir(a).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| runs::is_run_dir(p)).collect();
        if inside.is_empty() {
            return Err(format!("{} is not a run directory, nor a folder of runs", crate::files::ShowPath::shown(a.as_path())));
        }
        inside.sort();
        out.extend(inside);
    }
    Ok(out)
}

/// Compares the runs in `dirs` (two or more make a comparison; one is reported alone).
pub fn compare(dirs: &[PathBuf]) -> Comparison {
    let mut figures: Vec<RunFigures> = dirs.iter().map(|d| read_run(d)).collect();
    let differing = differing_keys(&figures);
    let common_iter =
        figures.iter().map(|f| f.iterations.map(|n| n.saturating_sub(1))).collect::<Option<Vec<_>>>().and_then(|v| v.into_iter().min());
    if let Some(at) = common_iter {
        for f in &mut figures {
            f.loss_at_common = loss_before(&f.path, at);
        }
    }
    let mut members: Vec<(BTreeMap<String, String>, Vec<RunFigures>)> = Vec::new();
    for f in figures {
        let key: BTreeMap<String, String> = differing.iter().map(|k| (k.clone(), f.settings.get(k).cloned().unwrap_or_default())).collect();
        match members.iter_mut().find(|(k, _)| *k == key) {
            Some((_, runs)) => runs.push(f),
            None => members.push((key, vec![f])),
        }
    }
    let groups = members.into_iter().map(|(settings, runs)| Group::of(settings, runs)).collect();
    Comparison { schema_version: SCHEMA_VERSION, differing, common_iter, groups }
}

/// The settings (flattened keys) whose values are not the same in every run, identity and seed
/// left out.
fn differing_keys(figures: &[RunFigures]) -> Vec<String> {
    let mut keys: Vec<&String> = figures.iter().flat_map(|f| f.settings.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !IDENTITY_KEYS.contains(&leaf(k)) && leaf(k) != SEED_KEY)
        .filter(|k| figures.iter().any(|f| f.settings.get(*k) != figures[0].settings.get(*k)))
        .cloned()
        .collect()
}

fn read_run(dir: &Path) -> RunFigures {
    let settings = crate::files::read_to_string(&dir.join(CONFIG_FILE))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .map(|t| flatten(&t))
        .unwrap_or_default();
    let seed = settings.iter().find(|(k, _)| leaf(k) == SEED_KEY).and_then(|(_, v)| v.parse().ok());
    let knn = runs::knn_points(dir);
    let totals = stream_totals(dir);
    RunFigures {
        name: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        path: dir.to_path_buf(),
        status: match runs::status(dir) {
            Status::Live { .. } => "live".into(),
            s => s.label().to_string(),
        },
        settings,
        seed,
        best_knn: knn.iter().map(|p| p.1).reduce(f64::max),
        last_knn: knn.iter().max_by_key(|p| p.0).map(|p| p.1),
        iterations: totals.last_iter.map(|i| i + 1),
        loss_at_common: None,
        images_per_s: (totals.lines > 0).then(|| totals.images_per_s / totals.lines as f64),
        train_seconds: (totals.lines > 0).then_some(totals.iter_seconds),
    }
}

/// What one pass over `metrics.jsonl` adds up.
#[derive(Default)]
struct Totals {
    lines: usize,
    last_iter: Option<usize>,
    images_per_s: f64,
    iter_seconds: f64,
}

fn metrics_lines(dir: &Path) -> impl Iterator<Item = IterMetrics> {
    let file = crate::files::open_regular(&dir.join(METRICS_FILE)).ok();
    file.into_iter()
        .flat_map(|f| std::io::BufReader::new(f).lines().map_while(Result::ok))
        .filter_map(|l| serde_json::from_str::<IterMetrics>(&l).ok())
}

fn stream_totals(dir: &Path) -> Totals {
    metrics_lines(dir).fold(Totals::default(), |mut t, m| {
        t.lines += 1;
        t.last_iter = Some(m.iter);
        t.images_per_s += m.images_per_s;
        t.iter_seconds += m.iter_time;
        t
    })
}

/// Mean loss of the last `LOSS_WINDOW` iterations at or before `at` (the latest line of each
/// iteration: a resume rewrites the ones after its checkpoint).
fn loss_before(dir: &Path, at: usize) -> Option<f64> {
    let mut by_iter: BTreeMap<usize, f64> = BTreeMap::new();
    for m in metrics_lines(dir).filter(|m| m.iter <= at && m.iter + LOSS_WINDOW > at) {
        by_iter.insert(m.iter, m.loss);
    }
    let finite: Vec<f64> = by_iter.values().copied().filter(|x| x.is_finite()).collect();
    (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
}

/// `a.b.c = value` for every leaf of a TOML table (arrays as their TOML text).
fn flatten(table: &toml::Table) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(prefix: &str, t: &toml::Table, out: &mut BTreeMap<String, String>) {
        for (k, v) in t {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(inner) => walk(&key, inner, out),
                toml::Value::String(s) => drop(out.insert(key, s.clone())),
                other => drop(out.insert(key, other.to_string())),
            }
        }
    }
    walk("", table, &mut out);
    out
}

/// Points a curve keeps however long the run: enough for a figure's width.
const CURVE_POINTS: usize = 400;

/// One point of a run's curve: where (iteration, and seconds spent in iterations up to it) and
/// what.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub iter: usize,
    pub seconds: f64,
    pub value: f64,
}

/// What `dino compare --plot` draws of one run, and what its stop advice reads: its loss (means of
/// equal runs of iterations, at most `CURVE_POINTS` of them, so a month-long run costs what a short
/// one does) and its k-NN.
#[derive(Debug, Clone)]
pub struct Curves {
    pub loss: Vec<CurvePoint>,
    pub knn: Vec<CurvePoint>,
}

/// The curves of a compared run, in one streamed pass over its `metrics.jsonl` (its length is
/// already known from `compare`'s pass).
pub fn curves(run: &RunFigures) -> Curves {
    let dir = run.path.as_path();
    let last = run.iterations.unwrap_or(1).saturating_sub(1);
    let width = (last + 1).div_ceil(CURVE_POINTS).max(1);
    // Per bucket: sum and count of finite losses, and the seconds reached at its last line.
    let mut buckets: Vec<(f64, usize, f64, usize)> = vec![(0.0, 0, 0.0, 0); (last + 1).div_ceil(width)];
    let mut seconds_at: Vec<(usize, f64)> = Vec::new();
    let mut seconds = 0.0;
    for m in metrics_lines(dir) {
        seconds += m.iter_time.max(0.0);
        if let Some(b) = buckets.get_mut(m.iter / width) {
            if m.loss.is_finite() {
                b.0 += m.loss;
                b.1 += 1;
            }
            (b.2, b.3) = (seconds, m.iter);
        }
        if seconds_at.last().is_none_or(|(i, _)| m.iter / width != i / width) {
            seconds_at.push((m.iter, seconds));
        }
    }
    let loss =
        buckets.iter().filter(|b| b.1 > 0).map(|&(sum, n, seconds, iter)| CurvePoint { iter, seconds, value: sum / n as f64 }).collect();
    // A k-NN point's seconds: those reached at the first line of its bucket or the nearest before.
    let seconds_of = |iter: usize| seconds_at.iter().take_while(|(i, _)| *i <= iter).last().map(|(_, s)| *s).unwrap_or(0.0);
    let knn =
        crate::run::runs::knn_points(dir).into_iter().map(|(iter, value)| CurvePoint { iter, seconds: seconds_of(iter), value }).collect();
    Curves { loss, knn }
}

/// Whether more training is worth it, from the run's own k-NN curve: what the last 30 % of its
/// training time gained, and what a fit of top-1 against log(time) over the second half of the
/// points says 50 % more time would add. Curves of k-NN against training length flatten roughly
/// logarithmically; the fit uses the points alone, and there is no advice below four points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StopAdvice {
    /// Top-1 points gained over the last 30 % of the time spent.
    pub recent_gain: f64,
    /// Minutes spent in iterations so far.
    pub minutes: f64,
    /// Top-1 points the fit gives for 50 % more time.
    pub predicted_gain: f64,
    /// Whether that is under one point: the curve has flattened.
    pub flattened: bool,
}

/// k-NN points a fit needs.
const ADVICE_MIN_POINTS: usize = 4;

pub fn stop_advice(knn: &[CurvePoint]) -> Option<StopAdvice> {
    let points: Vec<&CurvePoint> = knn.iter().filter(|p| p.seconds > 0.0 && p.value.is_finite()).collect();
    if points.len() < ADVICE_MIN_POINTS {
        return None;
    }
    let last = points.last()?;
    let recent_from = last.seconds * 0.7;
    let before = points.iter().rev().find(|p| p.seconds <= recent_from).or(points.first())?;
    let recent_gain = last.value - before.value;
    // Least squares of value = a + b ln(seconds) over the second half of the points.
    let tail = &points[points.len() / 2..];
    let n = tail.len() as f64;
    let xs: Vec<f64> = tail.iter().map(|p| p.seconds.ln()).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, tail.iter().map(|p| p.value).sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(tail).map(|(x, p)| (x - mx) * (p.value - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let predicted_gain = slope * 1.5f64.ln();
    Some(StopAdvice { recent_gain, minutes: last.seconds / 60.0, predicted_gain, flattened: predicted_gain < 1.0 })
}

#[cfg(test)]
mod advice_tests {
    use super::*;

    fn curve(values: &[(f64, f64)]) -> Vec<CurvePoint> {
        values.iter().enumerate().map(|(i, &(minutes, value))| CurvePoint { iter: i * 100, seconds: minutes * 60.0, value }).collect()
    }

    #[test]
    fn a_flat_curve_is_called_flat_and_a_rising_one_is_not() {
        // 40 + 10 ln(minutes): 50 % more time gives 10 ln 1.5 = 4.05 points.
        let rising: Vec<(f64, f64)> = (1..=8).map(|m| (m as f64 * 5.0, 40.0 + 10.0 * (m as f64 * 5.0).ln())).collect();
        let a = stop_advice(&curve(&rising)).unwrap();
        assert!((a.predicted_gain - 10.0 * 1.5f64.ln()).abs() < 1e-9 && !a.flattened, "{a:?}");
        assert!(a.recent_gain > 0.0 && (a.minutes - 40.0).abs() < 1e-9);
        let flat = curve(&[(5.0, 50.0), (10.0, 55.0), (15.0, 57.0), (20.0, 57.2), (25.0, 57.1), (30.0, 57.3)]);
        let f = stop_advice(&flat).unwrap();
        assert!(f.flattened && f.predicted_gain.abs() < 1.0, "{f:?}");
        assert!((f.recent_gain - 0.1).abs() < 1e-9, "57.3 at 30 min against 57.2 at 20 min (the last point before 21 min): {f:?}");
        assert_eq!(stop_advice(&flat[..3]), None, "three points are not a trend");
    }
}
