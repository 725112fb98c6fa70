//! What a run directory says about its run, without its trainer: status (live when its socket
//! answers; otherwise finished, stopped, failed or crashed from `events.jsonl`), epoch, last
//! loss, best k-NN accuracy. `dino runs` lists these; `dino ctl` and `dino attach` use the status
//! to explain a run that is not live.

use super::dir::{EVENTS_FILE, METRICS_FILE};
use crate::files::ShowPath;
use crate::protocol::health::{Health, HealthTracker};
use crate::protocol::{IterMetrics, RunInfo, RunState};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A trainer answers on the control socket.
    Live {
        paused: bool,
    },
    Finished,
    Stopped,
    Failed,
    /// Started and never recorded an end: the process was killed or the machine went down.
    Crashed,
    /// Nothing recorded yet.
    Unknown,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Live { paused: false } => "live",
            Status::Live { paused: true } => "live (paused)",
            Status::Finished => "finished",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
            Status::Crashed => "crashed",
            Status::Unknown => "unknown",
        }
    }

    pub fn is_live(self) -> bool {
        matches!(self, Status::Live { .. })
    }

    /// Whether starting the trainer again would continue it (not for a run that finished).
    pub fn resumable(self) -> bool {
        matches!(self, Status::Stopped | Status::Failed | Status::Crashed)
    }
}

/// How the run's last session ended, from `events.jsonl` alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileState {
    pub info: Option<RunInfo>,
    /// Final state of the last session, None when it recorded none.
    pub ended: Option<RunState>,
    pub paused: bool,
    /// Iteration of the last stop, when there was one.
    pub iter: Option<usize>,
}

pub fn file_state(run_dir: &Path) -> FileState {
    file_state_of(&crate::files::read_to_string(&run_dir.join(EVENTS_FILE)).unwrap_or_default())
}

/// Whether the run is between the two trainers of a hand-over (`dino tui`'s "leave running"):
/// the last event is the hand-over, the background trainer has not started yet.
pub fn handover_under_way(run_dir: &Path) -> bool {
    let text = std::fs::read_to_string(run_dir.join(EVENTS_FILE)).unwrap_or_default();
    let last = text.lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    last.is_some_and(|v| v["type"] == "handover")
}

/// The same from the text of `events.jsonl`, for a caller that reads it for more.
fn file_state_of(text: &str) -> FileState {
    let mut s = FileState::default();
    for v in text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        match v["type"].as_str() {
            Some("start") => {
                s.info = serde_json::from_value(v.clone()).ok();
                s.ended = None;
                s.paused = false;
            }
            Some("pause") => s.paused = true,
            Some("resume") => s.paused = false,
            Some("stop") => {
                s.ended = serde_json::from_value(v["state"].clone()).ok();
                s.iter = v["iter"].as_u64().map(|i| i as usize);
            }
            // A trainer that failed before it started writes only its error.
            Some("error") if s.ended.is_none() => s.ended = Some(RunState::Failed),
            _ => {}
        }
    }
    s
}

/// The status, asking the socket whether a trainer is there.
pub fn status(run_dir: &Path) -> Status {
    status_given(run_dir, &file_state(run_dir))
}

fn status_given(run_dir: &Path, f: &FileState) -> Status {
    if super::dir::socket_answers(run_dir) {
        return Status::Live { paused: f.paused };
    }
    match (f.info.is_some(), f.ended) {
        (_, Some(RunState::Finished)) => Status::Finished,
        (_, Some(RunState::Stopped)) => Status::Stopped,
        (_, Some(RunState::Failed)) => Status::Failed,
        (true, _) => Status::Crashed,
        (false, _) => Status::Unknown,
    }
}

/// The last line of `metrics.jsonl`, read from the end (the file can be large).
pub fn last_metrics(run_dir: &Path) -> Option<IterMetrics> {
    last_metrics_lines(run_dir, 1).pop()
}

/// The headline top-1 (k = 20) of a k-NN result, whatever its producer wrote: the `results`
/// list of this project's records, else a top-level or nested accuracy field (older records and
/// hand-written files).
fn knn_accuracy(v: &serde_json::Value) -> Option<f64> {
    const KEYS: [&str; 5] = ["top1", "top1_accuracy", "knn_top1", "accuracy", "acc"];
    if v["results"].is_array() {
        return crate::protocol::headline_top1(v);
    }
    KEYS.iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_f64))
        .or_else(|| v.as_object()?.values().filter(|x| x.is_object()).find_map(knn_accuracy))
}

/// Whether a record is a teacher's result of one of the run's checkpoints: not the random-weights
/// baseline, not a student's.
fn is_the_runs_result(v: &serde_json::Value) -> bool {
    !v["random_weights"].as_bool().unwrap_or(false) && !crate::protocol::is_student_result(v)
}

/// The k-NN records of a run: `evals/knn-*.json` and the `eval` events (a result whose file was
/// removed still counts; one in both counts twice, which neither the best nor the verdict minds).
fn knn_records(run_dir: &Path, events: &str) -> Vec<serde_json::Value> {
    let mut found: Vec<serde_json::Value> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(run_dir.join("evals")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("knn") && name.ends_with(".json") {
                found.extend(crate::files::read_to_string(&e.path()).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()));
            }
        }
    }
    for v in events.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        if v["type"].as_str().is_some_and(|t| t.starts_with("eval")) && v["kind"] == "knn" {
            found.push(v);
        }
    }
    found
}

/// Best k-NN top-1 of the run's checkpoints (their teachers, which stand for the run, as on the
/// TUI's curve); the random-weights baseline and a student's results do not count.
pub fn best_knn(run_dir: &Path) -> Option<f64> {
    let events = crate::files::read_to_string(&run_dir.join(EVENTS_FILE)).unwrap_or_default();
    best_of(&knn_records(run_dir, &events))
}

/// The run's k-NN results that stand for it (teachers of its checkpoints), as (iteration
/// evaluated, top-1), oldest first; results without an iteration are left out.
pub fn knn_points(run_dir: &Path) -> Vec<(usize, f64)> {
    let events = crate::files::read_to_string(&run_dir.join(EVENTS_FILE)).unwrap_or_default();
    let mut points: Vec<(usize, f64)> = knn_records(run_dir, &events)
        .iter()
        .filter(|v| is_the_runs_result(v))
        .filter_map(|v| Some((v["iter"].as_u64()? as usize, knn_accuracy(v).filter(|x| x.is_finite())?)))
        .collect();
    points.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    points.dedup_by_key(|p| p.0);
    points
}

fn best_of(records: &[serde_json::Value]) -> Option<f64> {
    records.iter().filter(|v| is_the_runs_result(v)).filter_map(knn_accuracy).filter(|x| x.is_finite()).reduce(f64::max)
}

/// The first lines of `metrics.jsonl`, at most `n`, of the run's first session (iterations
/// counting up from 0).
fn first_metrics_lines(run_dir: &Path, n: usize) -> Vec<IterMetrics> {
    let Ok(f) = crate::files::open_regular(&run_dir.join(METRICS_FILE)) else { return Vec::new() };
    let mut head = String::new();
    // A metrics line is about 300 bytes; twice that per line leaves room for wider ones.
    if f.take(600 * n as u64).read_to_string(&mut head).is_err() {
        return Vec::new();
    }
    let mut lines: Vec<IterMetrics> = head.lines().filter_map(|l| serde_json::from_str(l).ok()).take(n).collect();
    // A later session's lines (a resume) start again below; the first session's run is kept.
    if let Some(cut) = lines.windows(2).position(|w| w[1].iter <= w[0].iter) {
        lines.truncate(cut + 1);
    }
    lines
}

/// The last lines of `metrics.jsonl`, at most `n`, read from the end (the file can be large).
fn last_metrics_lines(run_dir: &Path, n: usize) -> Vec<IterMetrics> {
    let Ok(mut f) = crate::files::open_regular(&run_dir.join(METRICS_FILE)) else { return Vec::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // A metrics line is about 300 bytes; twice that per line leaves room for wider ones, and at
    // least 8 KiB reaches past a torn last line (a killed writer) to the whole one before it.
    let start = len.saturating_sub((600 * n as u64).max(8 * 1024));
    let mut tail = String::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_string(&mut tail).is_err() {
        return Vec::new();
    }
    let mut lines: Vec<IterMetrics> = tail.lines().rev().filter_map(|l| serde_json::from_str(l).ok()).take(n).collect();
    lines.reverse();
    lines
}

/// The health verdict of the run in `run_dir` (its files read once more; see `health`).
pub fn health_of(run_dir: &Path) -> Health {
    let events = crate::files::read_to_string(&run_dir.join(EVENTS_FILE)).unwrap_or_default();
    health(run_dir, file_state(run_dir).info.as_ref(), &events)
}

/// The health verdict from the run directory alone, as the trainer and the TUI reach it from
/// events: the last iterations of `metrics.jsonl`, the k-NN records, non-finite-loss alarms.
pub fn health(run_dir: &Path, info: Option<&RunInfo>, events: &str) -> Health {
    let (out_dim, niter) = info.map_or((0, 1), |i| (i.out_dim, i.niter_per_ep));
    let mut tracker = HealthTracker::new(out_dim, niter);
    // The run's first window (what a climbing loss is measured from), then its last iterations.
    let head = first_metrics_lines(run_dir, HealthTracker::HISTORY / 2);
    let head_end = head.last().map(|m| m.iter);
    for m in head.iter().chain(last_metrics_lines(run_dir, HealthTracker::HISTORY).iter().filter(|m| head_end.is_none_or(|e| m.iter > e))) {
        tracker.push_metrics(m);
    }
    for v in events.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()) {
        if v["type"] == "alarm" && v["kind"] == "non_finite_loss" {
            tracker.push_non_finite(v["iter"].as_u64().unwrap_or(0) as usize);
        }
    }
    for v in knn_records(run_dir, events) {
        tracker.push_knn_record(&v);
    }
    tracker.health()
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub name: String,
    pub path: PathBuf,
    #[serde(serialize_with = "status_label")]
    pub status: Status,
    /// (current epoch, 0-based; epochs planned)
    pub epoch: Option<(usize, usize)>,
    pub last_loss: Option<f64>,
    pub best_knn: Option<f64>,
    pub health: Health,
    /// Last activity (modification time of its logs), for ordering.
    pub modified: f64,
}

fn status_label<S: serde::Serializer>(s: &Status, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.label())
}

/// Orders for `dino runs --sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::EnumString, strum::Display, strum::VariantNames)]
#[strum(serialize_all = "lowercase")]
pub enum SortBy {
    /// Most recently active first.
    #[default]
    Modified,
    Name,
    /// Best k-NN first; runs without one last.
    Knn,
    /// Lowest loss first; runs without one last.
    Loss,
    /// Live runs first, then finished, stopped, failed, crashed.
    Status,
}

/// Sorts `runs` in place; ties keep the most recently active first.
pub fn sort(runs: &mut [RunSummary], by: SortBy) {
    runs.sort_by(|a, b| b.modified.total_cmp(&a.modified));
    let missing_last = |x: Option<f64>, y: Option<f64>, desc: bool| match (x, y) {
        (Some(x), Some(y)) if desc => y.total_cmp(&x),
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    };
    let rank = |s: Status| match s {
        Status::Live { .. } => 0,
        Status::Finished => 1,
        Status::Stopped => 2,
        Status::Failed => 3,
        Status::Crashed => 4,
        Status::Unknown => 5,
    };
    match by {
        SortBy::Modified => {}
        SortBy::Name => runs.sort_by(|a, b| a.name.cmp(&b.name)),
        SortBy::Knn => runs.sort_by(|a, b| missing_last(a.best_knn, b.best_knn, true)),
        SortBy::Loss => runs.sort_by(|a, b| missing_last(a.last_loss, b.last_loss, false)),
        SortBy::Status => runs.sort_by_key(|r| rank(r.status)),
    }
}

fn modified(run_dir: &Path) -> f64 {
    [EVENTS_FILE, METRICS_FILE]
        .iter()
        .filter_map(|f| std::fs::metadata(run_dir.join(f)).ok()?.modified().ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .fold(0.0, f64::max)
}

pub fn summarize(run_dir: &Path) -> RunSummary {
    // events.jsonl read once for the state, the status, the k-NN records and the verdict.
    let events = crate::files::read_to_string(&run_dir.join(EVENTS_FILE)).unwrap_or_default();
    let f = file_state_of(&events);
    let last = last_metrics(run_dir);
    let epochs = f.info.as_ref().map(|i| i.epochs);
    RunSummary {
        name: run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        path: run_dir.to_path_buf(),
        status: status_given(run_dir, &f),
        // The 0-based epoch of the last iteration, as the TUI's header and `dino ctl status`
        // (docs/tui.md, "Numbers").
        epoch: epochs.map(|total| (last.as_ref().map_or(0, |m| m.epoch), total)),
        last_loss: last.map(|m| m.loss),
        best_knn: best_of(&knn_records(run_dir, &events)),
        health: health(run_dir, f.info.as_ref(), &events),
        modified: modified(run_dir),
    }
}

/// The run a command-line argument names: a run directory as given, else a run name as `dino runs`
/// lists it (`./runs/NAME`, then the index's runs of that name, most recently active first).
/// An argument that names neither comes back unchanged, for the caller's own error.
pub fn resolve(arg: &Path, index: Option<&Path>) -> PathBuf {
    if is_run_dir(arg) || arg.components().count() != 1 {
        return arg.to_path_buf();
    }
    let local = Path::new("runs").join(arg);
    if is_run_dir(&local) {
        return local;
    }
    let mut named: Vec<PathBuf> = index
        .map(super::index::read)
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.path)
        .filter(|p| p.file_name() == Some(arg.as_os_str()) && is_run_dir(p))
        .collect();
    named.sort_by(|a, b| modified(b).total_cmp(&modified(a)));
    named.into_iter().next().unwrap_or_else(|| arg.to_path_buf())
}

/// Whether a folder looks like a run directory.
pub fn is_run_dir(p: &Path) -> bool {
    p.join(EVENTS_FILE).is_file() || p.join(super::dir::CONFIG_FILE).is_file()
}

/// The runs under `dir` plus those in the user's index, each once, most recently active first.
pub fn list(dir: &Path, index: Option<&Path>) -> Vec<RunSummary> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_dir() && is_run_dir(p)).collect())
        .unwrap_or_default();
    if let Some(index) = index {
        paths.extend(super::index::read(index).into_iter().map(|e| e.path).filter(|p| is_run_dir(p)));
    }
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    let mut runs: Vec<RunSummary> = paths.iter().map(|p| summarize(p)).collect();
    runs.sort_by(|a, b| b.modified.total_cmp(&a.modified));
    runs
}

/// The `dino runs` table.
pub fn table(runs: &[RunSummary]) -> String {
    let rows: Vec<[String; 7]> = runs
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.status.label().to_string(),
                r.epoch.map_or("-".into(), |(e, n)| format!("{e}/{n}")),
                r.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
                r.best_knn.map_or("-".into(), |k| format!("{k:.2}")),
                r.health.verdict.label().to_string(),
                r.path.shown().to_string(),
            ]
        })
        .collect();
    let header = ["NAME", "STATUS", "EPOCH", "LOSS", "KNN@20", "HEALTH", "PATH"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|r| {
            let cells: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            cells.join("  ").trim_end().to_string() + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, events: &str, metrics: &str) {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join(EVENTS_FILE), events).expect("events");
        std::fs::write(dir.join(METRICS_FILE), metrics).expect("metrics");
    }

    const START: &str = r#"{"type":"start","time":1,"run_dir":"r","name":"r","arch":"vit_tiny","device":"Cpu","epochs":3,"niter_per_ep":5,"batch_size":8,"out_dim":32,"num_images":40,"start_iter":0}"#;
    const METRIC: &str = r#"{"iter":7,"epoch":1,"loss":3.25,"lr":0.1,"wd":0.04,"teacher_temp":0.04,"momentum":0.99,"iter_time":0.1,"data_time":0.0,"images_per_s":80,"teacher_entropy":3,"kl":0.1,"time":2}"#;

    #[test]
    fn the_verdict_of_a_long_run_measures_a_climb_from_its_first_window() {
        let d = tempfile::tempdir().expect("tmp");
        let r = d.path().join("long");
        let ln_k = 32f64.ln();
        let line = |i: usize, share: f64| {
            let mut m = IterMetrics::sample(i, share * ln_k, i as f64);
            m.epoch = i / 5;
            m.teacher_entropy = 0.6 * ln_k;
            serde_json::to_string(&m).expect("json") + "\n"
        };
        // 2,000 iterations: the first 10 at 87 % of ln K, the rest at 98 % (far past the tail read).
        let metrics: String = (0..2000).map(|i| line(i, if i < 10 { 0.87 } else { 0.98 })).collect();
        write(&r, &format!("{START}\n"), &metrics);
        let h = health_of(&r);
        assert_eq!(h.verdict, crate::protocol::health::Verdict::Diverging, "{h}");
        assert!(h.evidence.contains("climbed from 87 % to 98 %"), "{h}");
    }

    #[test]
    fn status_comes_from_the_last_session() {
        let d = tempfile::tempdir().expect("tmp");
        let r = d.path().join("a");
        write(&r, &format!("{START}\n{{\"type\":\"stop\",\"state\":\"finished\",\"iter\":15,\"time\":3}}\n"), &format!("{METRIC}\n"));
        assert_eq!(status(&r), Status::Finished);
        // Started again and killed: no stop after the last start.
        write(
            &r,
            &format!("{START}\n{{\"type\":\"stop\",\"state\":\"stopped\",\"iter\":8,\"time\":3}}\n{START}\n"),
            &format!("{METRIC}\n"),
        );
        assert_eq!(status(&r), Status::Crashed);
        let s = summarize(&r);
        // The 0-based epoch of the last iteration (docs/tui.md, "Numbers"), as the TUI and `dino ctl` show it.
        assert_eq!((s.epoch, s.last_loss), (Some((1, 3)), Some(3.25)));
        std::fs::create_dir_all(r.join("evals")).expect("evals");
        std::fs::write(r.join("evals/knn-0003.json"), r#"{"top1": 71.5, "top5": 90}"#).expect("knn");
        std::fs::write(r.join("evals/knn-0001.json"), r#"{"result": {"top1": 40.0}}"#).expect("knn");
        assert_eq!(best_knn(&r), Some(71.5));
        // This project's records: a list of k, the headline at k = 20; the baseline does not count.
        std::fs::write(
            r.join("evals/knn-ep0002-it00000010-data-abcdef.json"),
            r#"{"kind":"knn","results":[{"k":10,"top1":80.0},{"k":20,"top1":75.25}]}"#,
        )
        .expect("knn");
        std::fs::write(
            r.join("evals/knn-random-data-abcdef.json"),
            r#"{"kind":"knn","random_weights":true,"results":[{"k":20,"top1":99.0}]}"#,
        )
        .expect("baseline");
        std::fs::write(
            r.join("evals/knn-ep0002-it00000010-data-abcdef-student.json"),
            r#"{"kind":"knn","network":"student","results":[{"k":20,"top1":77.0}]}"#,
        )
        .expect("student");
        assert_eq!(best_knn(&r), Some(75.25));
        let t = table(&list(d.path(), None));
        assert!(t.starts_with("NAME") && t.contains("crashed") && t.contains("1/3") && t.contains("3.2500") && t.contains("75.25"), "{t}");
        // The verdict's column: the run's k-NN against its random-weights baseline (99.0 above).
        assert!(t.contains("HEALTH") && t.contains("not learning yet"), "{t}");
        let mut two = vec![summarize(&r), RunSummary { name: "b".into(), best_knn: Some(80.0), modified: 0.0, ..summarize(&r) }];
        sort(&mut two, SortBy::Knn);
        assert_eq!(two[0].name, "b");
        sort(&mut two, SortBy::Name);
        assert_eq!(two[0].name, "a");
        let json = serde_json::to_value(&two).expect("json");
        assert_eq!(json[0]["status"], "crashed");
        assert_eq!(json[0]["best_knn"], 75.25);
    }
}
