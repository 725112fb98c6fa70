//! Whether DINO is learning: the one verdict a person reads first (the dashboard's top line,
//! `dino ctl status`, a column of `dino runs`, the headless progress lines), with its evidence.
//!
//! The evidence, strongest first:
//! - a non-finite loss: diverging;
//! - the teacher's outputs over the last window of iterations: entropy near 0 is one-dimension
//!   collapse, entropy and loss both at ln K is uniform collapse, a loss well above ln K (the
//!   loss of a student that predicts nothing) is a student pushed away from its targets;
//! - k-NN of the run's teacher against the same network with random weights (the baseline the
//!   trainer measures once at its start): only this says the features are worth anything.
//!
//! Nothing is judged in the first epoch (a healthy DINO run starts with its loss at ln K and its
//! teacher near uniform) except a non-finite loss. The thresholds are those of runs measured on
//! 2026-12-07 (docs/evaluation.md, "The health verdict").

use super::IterMetrics;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;

/// Points of k-NN top-1 above random weights from which the run is called learning: well above
/// the spread of random initialisations (about 2 points on the demo's 75 val images, where one
/// image is 1.3 points) and above what runs that learned nothing reached (the demo at lr x 100:
/// +5.4; at momentum 0: +8).
pub const LEARNING_MARGIN: f64 = 10.0;
/// Teacher entropy (nats) under which the outputs have collapsed onto one dimension.
pub const COLLAPSED_ENTROPY: f64 = 0.1;
/// Share of ln K that the window's teacher entropy and loss both reach in uniform collapse.
const UNIFORM_SHARE: f64 = 0.97;
/// Share of ln K above which the window's loss says the student is pushed away from its targets.
const DIVERGING_SHARE: f64 = 1.25;
/// A loss that climbs from the run's first window by this share of ln K, to at least
/// `CLIMBED_TO` of it, is driven towards uniform outputs: a learning rate too high (the demo at
/// lr x 100: 87 % to 98 % of ln K within 3 epochs; the healthy demo peaks at 92 %).
const CLIMB_SHARE: f64 = 0.06;
const CLIMBED_TO: f64 = 0.95;
/// Iterations a window holds at least (and at most), whatever the epoch's length.
const WINDOW_MIN: usize = 10;
const WINDOW_MAX: usize = 200;
/// Change of a window's mean against the one before, as a share of ln K, that counts as a trend.
const TREND_SHARE: f64 = 0.01;

/// The verdict, the most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Diverging,
    Collapsed,
    NotLearningYet,
    Learning,
    Unknown,
}

impl Verdict {
    /// The words people read.
    pub fn label(self) -> &'static str {
        match self {
            Self::Diverging => "diverging",
            Self::Collapsed => "collapsed",
            Self::NotLearningYet => "not learning yet",
            Self::Learning => "learning",
            Self::Unknown => "unknown",
        }
    }

    /// Whether the run needs someone to act (the red verdicts).
    pub fn is_alarm(self) -> bool {
        matches!(self, Self::Diverging | Self::Collapsed)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A verdict and the evidence for it, in one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub verdict: Verdict,
    pub evidence: String,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.verdict, self.evidence)
    }
}

/// One k-NN result as the verdict needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnPoint {
    /// Iterations the evaluated weights had trained (none for random weights).
    pub iter: Option<usize>,
    pub top1: f64,
    pub random_weights: bool,
}

impl KnnPoint {
    /// A k-NN record of `events.jsonl` or `evals/` (as the evaluation worker writes it); none for
    /// other kinds, a student's result, or a record without a headline top-1.
    pub fn from_record(v: &serde_json::Value) -> Option<Self> {
        if v["kind"].as_str() != Some("knn") || super::is_student_result(v) {
            return None;
        }
        let top1 = super::headline_top1(v).filter(|x| x.is_finite())?;
        let random_weights = v["random_weights"].as_bool().unwrap_or(false);
        let iter = v["iter"].as_u64().map(|i| i as usize);
        Some(Self { iter, top1, random_weights })
    }
}

/// Means of a run of iterations.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Means {
    loss: f64,
    entropy: f64,
}

/// Follows a run's iterations and k-NN results; memory is bounded by two windows.
#[derive(Debug, Clone, Default)]
pub struct HealthTracker {
    ln_k: Option<f64>,
    niter_per_ep: usize,
    /// (loss, teacher entropy) of the last iterations, two windows' worth: the recent window and
    /// the one before it, for the trend.
    recent: VecDeque<(f64, f64)>,
    /// Means of the run's first window, when the tracker saw the run from its start.
    first: Option<Means>,
    /// Iterations of the first window gathered so far (sums), until it is full.
    first_sums: (usize, f64, f64),
    last_iter: Option<usize>,
    first_non_finite: Option<usize>,
    knn: Option<KnnPoint>,
    baseline: Option<f64>,
}

impl HealthTracker {
    /// A tracker for a run with `out_dim` prototypes and `niter_per_ep` iterations an epoch.
    pub fn new(out_dim: usize, niter_per_ep: usize) -> Self {
        let ln_k = (out_dim > 1).then(|| (out_dim as f64).ln());
        Self { ln_k, niter_per_ep, ..Self::default() }
    }

    /// Learns the run's shape once its start is known (a viewer may see metrics first).
    pub fn set_run(&mut self, out_dim: usize, niter_per_ep: usize) {
        self.ln_k = (out_dim > 1).then(|| (out_dim as f64).ln());
        self.niter_per_ep = niter_per_ep;
    }

    /// The most iterations a tracker keeps: what a reader of `metrics.jsonl` needs to feed it.
    pub const HISTORY: usize = 2 * WINDOW_MAX;

    /// A k-NN record of `events.jsonl` or `evals/`; other records are ignored.
    pub fn push_knn_record(&mut self, v: &serde_json::Value) {
        if let Some(p) = KnnPoint::from_record(v) {
            self.push_knn(p);
        }
    }

    fn window(&self) -> usize {
        self.niter_per_ep.clamp(WINDOW_MIN, WINDOW_MAX)
    }

    /// A non-finite loss at iteration `iter` (the trainer writes no metrics line for it): the run
    /// is diverging until it trains past that iteration again.
    pub fn push_non_finite(&mut self, iter: usize) {
        self.first_non_finite = Some(self.first_non_finite.map_or(iter, |i| i.min(iter)));
    }

    pub fn push_metrics(&mut self, m: &IterMetrics) {
        if !m.loss.is_finite() {
            self.push_non_finite(m.iter);
        } else if self.first_non_finite.is_some_and(|i| m.iter > i) {
            self.first_non_finite = None;
        }
        if m.loss.is_finite() && m.teacher_entropy.is_finite() {
            self.gather_first(m);
            self.recent.push_back((m.loss, m.teacher_entropy));
            while self.recent.len() > 2 * self.window() {
                self.recent.pop_front();
            }
        }
        self.last_iter = Some(self.last_iter.map_or(m.iter, |i| i.max(m.iter)));
    }

    /// The run's first window: iterations 0 to the window's length, when they come.
    fn gather_first(&mut self, m: &IterMetrics) {
        let w = self.window();
        if self.first.is_some() || m.iter >= w || self.last_iter.is_some_and(|l| m.iter <= l) {
            return;
        }
        let (n, l, e) = self.first_sums;
        self.first_sums = (n + 1, l + m.loss, e + m.teacher_entropy);
        if m.iter + 1 == w {
            let n = self.first_sums.0 as f64;
            self.first = Some(Means { loss: self.first_sums.1 / n, entropy: self.first_sums.2 / n });
        }
    }

    /// A k-NN result: the random-weights baseline, or the run's (the latest in training kept).
    pub fn push_knn(&mut self, p: KnnPoint) {
        if p.random_weights {
            self.baseline = Some(p.top1);
        } else if self.knn.is_none_or(|k| p.iter.unwrap_or(0) >= k.iter.unwrap_or(0)) {
            self.knn = Some(p);
        }
    }

    /// Means of the last window, and of the one before it when there is one.
    fn means(&self) -> (Option<Means>, Option<Means>) {
        let w = self.window();
        let mean = |it: &mut dyn Iterator<Item = &(f64, f64)>| {
            let (n, l, e) = it.fold((0usize, 0.0, 0.0), |(n, l, e), &(x, y)| (n + 1, l + x, e + y));
            (n > 0).then(|| Means { loss: l / n as f64, entropy: e / n as f64 })
        };
        let len = self.recent.len();
        if len < w.min(WINDOW_MIN) {
            return (None, None);
        }
        let split = len.saturating_sub(w);
        let now = mean(&mut self.recent.iter().skip(split));
        let before = (split >= w / 2).then(|| mean(&mut self.recent.iter().take(split))).flatten();
        (now, before)
    }

    /// Whether the signals are judged yet: past the first epoch. Before, a healthy run's loss
    /// sits at ln K and nothing may show red.
    pub fn judging(&self) -> bool {
        !self.in_first_epoch()
    }

    /// Whether the last iteration seen is in the run's first epoch.
    fn in_first_epoch(&self) -> bool {
        self.last_iter.is_none_or(|i| i < self.niter_per_ep.max(1))
    }

    pub fn health(&self) -> Health {
        let say = |verdict, evidence: String| Health { verdict, evidence };
        if let Some(i) = self.first_non_finite {
            return say(Verdict::Diverging, format!("the loss was not finite at it {i}"));
        }
        let Some(last) = self.last_iter else { return say(Verdict::Unknown, "no iterations yet".into()) };
        if self.in_first_epoch() {
            return say(Verdict::Unknown, format!("first epoch (it {} of {}): too early to tell", last + 1, self.niter_per_ep));
        }
        let (now, before) = self.means();
        let signals = now.map(|m| format!("; {}", self.signals(m, before))).unwrap_or_default();
        let outputs = match (now, self.ln_k) {
            (Some(m), Some(ln_k)) => collapse(m, ln_k, self.first),
            _ => None,
        };
        let knn = match (self.knn, self.baseline) {
            (Some(k), Some(b)) => Some((k, b, k.top1 - b)),
            _ => None,
        };
        // The features decide over the head's outputs: short runs on small sets reach k-NN far
        // above random weights with the head's outputs flat (the demo set: 74 % against 21 %
        // with the entropy at 99 % of ln K). A k-NN older than two epochs does not speak for now.
        let fresh = |k: &KnnPoint| k.iter.is_some_and(|i| i + 2 * self.niter_per_ep > last);
        match (knn, outputs) {
            (Some((k, b, margin)), out) if margin >= LEARNING_MARGIN && (out.is_none() || fresh(&k)) => {
                let head = out.map(|_| "; the head's outputs are near uniform, the features are not").unwrap_or_default();
                say(Verdict::Learning, format!("k-NN {:.1} % vs {b:.1} % random weights ({margin:+.1}){head}{signals}", k.top1))
            }
            (_, Some((verdict, why))) => say(verdict, format!("{why}{signals}")),
            (Some((k, b, margin)), None) => {
                say(Verdict::NotLearningYet, format!("k-NN {:.1} % vs {b:.1} % random weights ({margin:+.1}){signals}", k.top1))
            }
            (None, None) => match self.knn {
                Some(k) => say(Verdict::Unknown, format!("k-NN {:.1} %, no random-weights baseline yet{signals}", k.top1)),
                None => say(Verdict::Unknown, format!("no k-NN yet{signals}")),
            },
        }
    }

    /// The window's entropy and loss against ln K, with their trends.
    fn signals(&self, m: Means, before: Option<Means>) -> String {
        let Some(ln_k) = self.ln_k else { return format!("entropy {:.2}, loss {:.2}", m.entropy, m.loss) };
        let arrow = |now: f64, then: Option<f64>| match then {
            Some(t) if now - t > TREND_SHARE * ln_k => "↑",
            Some(t) if t - now > TREND_SHARE * ln_k => "↓",
            Some(_) => "→",
            None => "",
        };
        format!(
            "entropy {:.2}{} loss {:.2}{} of ln K {ln_k:.2}",
            m.entropy,
            arrow(m.entropy, before.map(|b| b.entropy)),
            m.loss,
            arrow(m.loss, before.map(|b| b.loss))
        )
    }
}

/// A collapse or a diverging student read off one window's means. A loss that climbed from the
/// run's start to ln K is divergence even once the outputs are uniform (the demo at lr x 100); a
/// run whose outputs were flat from its start (a teacher temperature above the student's) has
/// collapsed.
fn collapse(m: Means, ln_k: f64, first: Option<Means>) -> Option<(Verdict, String)> {
    if m.entropy < COLLAPSED_ENTROPY {
        return Some((Verdict::Collapsed, "one dimension: the teacher's entropy is near 0".into()));
    }
    if let Some(climb) = climbed(first, m, ln_k) {
        return Some(climb);
    }
    if m.entropy >= UNIFORM_SHARE * ln_k && m.loss >= UNIFORM_SHARE * ln_k {
        return Some((Verdict::Collapsed, "uniform: the teacher's outputs are flat and the loss is at ln K".into()));
    }
    if m.loss >= DIVERGING_SHARE * ln_k {
        return Some((Verdict::Diverging, format!("the loss is {:.0} % of ln K, worse than predicting nothing", 100.0 * m.loss / ln_k)));
    }
    None
}

/// A loss that climbed from the run's first window towards ln K.
fn climbed(first: Option<Means>, m: Means, ln_k: f64) -> Option<(Verdict, String)> {
    let f = first?;
    (m.loss >= CLIMBED_TO * ln_k && m.loss - f.loss >= CLIMB_SHARE * ln_k).then(|| {
        let share = |x: f64| 100.0 * x / ln_k;
        let why = format!(
            "the loss climbed from {:.0} % to {:.0} % of ln K towards uniform outputs; the learning rate may be too high",
            share(f.loss),
            share(m.loss)
        );
        (Verdict::Diverging, why)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker_with(loss: f64, entropy: f64, iters: usize) -> HealthTracker {
        let mut t = HealthTracker::new(1024, 9);
        for i in 0..iters {
            let mut m = IterMetrics::sample(i, loss, i as f64);
            m.teacher_entropy = entropy;
            t.push_metrics(&m);
        }
        t
    }

    #[test]
    fn the_first_epoch_is_unknown_whatever_it_shows() {
        let ln_k = 1024f64.ln();
        let t = tracker_with(ln_k, ln_k, 8);
        assert_eq!(t.health().verdict, Verdict::Unknown, "{}", t.health());
        assert!(t.health().evidence.contains("first epoch (it 8 of 9)"), "{}", t.health());
    }

    #[test]
    fn collapses_and_divergence_are_read_off_the_window() {
        let ln_k = 1024f64.ln();
        assert_eq!(tracker_with(ln_k * 0.999, ln_k * 0.995, 30).health().verdict, Verdict::Collapsed);
        assert_eq!(tracker_with(3.0, 0.01, 30).health().verdict, Verdict::Collapsed);
        assert_eq!(tracker_with(ln_k * 1.5, 3.0, 30).health().verdict, Verdict::Diverging);
        let mut t = tracker_with(ln_k * 0.9, 5.0, 30);
        assert_eq!(t.health().verdict, Verdict::Unknown, "no k-NN: {}", t.health());
        t.push_metrics(&IterMetrics::sample(30, f64::NAN, 30.0));
        assert_eq!(t.health().verdict, Verdict::Diverging);
        assert!(t.health().evidence.contains("not finite at it 30"));
    }

    #[test]
    fn a_loss_that_climbs_from_its_start_towards_ln_k_is_diverging() {
        let ln_k = 1024f64.ln();
        let mut t = tracker_with(0.87 * ln_k, 0.65 * ln_k, 10);
        for i in 10..30 {
            let mut m = IterMetrics::sample(i, 0.98 * ln_k, i as f64);
            m.teacher_entropy = 0.95 * ln_k;
            t.push_metrics(&m);
        }
        let h = t.health();
        assert_eq!(h.verdict, Verdict::Diverging, "{h}");
        assert!(h.evidence.contains("climbed from 87 % to 98 % of ln K"), "{h}");
        // The healthy demo's peak (92 %) is not a climb.
        assert_eq!(tracker_with(0.92 * ln_k, 0.78 * ln_k, 30).health().verdict, Verdict::Unknown);
    }

    #[test]
    fn knn_against_its_baseline_decides_between_learning_and_not_yet() {
        let mut t = tracker_with(5.5, 5.0, 30);
        t.push_knn(KnnPoint { iter: Some(9), top1: 40.0, random_weights: false });
        assert_eq!(t.health().verdict, Verdict::Unknown, "no baseline: {}", t.health());
        t.push_knn(KnnPoint { iter: None, top1: 22.0, random_weights: true });
        assert_eq!(t.health().verdict, Verdict::Learning, "{}", t.health());
        assert!(
            t.health().evidence.starts_with("k-NN 40.0 % vs 22.0 % random weights (+18.0); entropy 5.00→ loss 5.50→"),
            "{}",
            t.health()
        );
        // An older checkpoint evaluated later does not stand for the run now.
        t.push_knn(KnnPoint { iter: Some(2), top1: 23.0, random_weights: false });
        assert_eq!(t.health().verdict, Verdict::Learning);
        t.push_knn(KnnPoint { iter: Some(18), top1: 24.0, random_weights: false });
        assert_eq!(t.health().verdict, Verdict::NotLearningYet, "{}", t.health());
    }

    #[test]
    fn good_features_outweigh_a_flat_head_only_while_their_knn_is_recent() {
        let ln_k = 1024f64.ln();
        let mut t = tracker_with(ln_k, 0.99 * ln_k, 30);
        t.push_knn(KnnPoint { iter: None, top1: 21.0, random_weights: true });
        t.push_knn(KnnPoint { iter: Some(27), top1: 74.0, random_weights: false });
        let h = t.health();
        assert_eq!(h.verdict, Verdict::Learning, "{h}");
        assert!(h.evidence.contains("the head's outputs are near uniform, the features are not"), "{h}");
        // Two epochs (of 9 it) later without a new k-NN, the flat outputs speak for the run.
        for i in 30..50 {
            let mut m = IterMetrics::sample(i, ln_k, i as f64);
            m.teacher_entropy = 0.99 * ln_k;
            t.push_metrics(&m);
        }
        assert_eq!(t.health().verdict, Verdict::Collapsed, "{}", t.health());
    }

    #[test]
    fn records_become_points_only_for_a_teachers_knn() {
        let v = serde_json::json!({"kind": "knn", "iter": 9, "random_weights": false, "results": [{"k": 20, "top1": 41.5}]});
        assert_eq!(KnnPoint::from_record(&v), Some(KnnPoint { iter: Some(9), top1: 41.5, random_weights: false }));
        let student = serde_json::json!({"kind": "knn", "network": "student", "results": [{"k": 20, "top1": 41.5}]});
        assert_eq!(KnnPoint::from_record(&student), None);
        assert_eq!(KnnPoint::from_record(&serde_json::json!({"kind": "linear", "test_acc1": 50.0})), None);
    }
}
