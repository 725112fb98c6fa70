//! The metric store: what the charts draw of a run, in memory that does not grow with the run.
//! The recent iterations are kept sample by sample (between `TAIL` and `2 * TAIL` of them, in
//! `f32` columns); older ones are folded into a fixed number of min/max buckets (`Buckets`) as
//! they leave that tail. A zoom into an old range finer than the buckets reads the range back
//! from `metrics.jsonl` through a sparse offset index (`prepare_range`, before a frame) and keeps
//! it, also in fixed-size buckets, until the view moves elsewhere. Widgets never own data; they
//! ask the store for at most a few points per terminal column, so drawing cost does not grow with
//! the run either.
//!
//! A month-long run (a million iterations) kept whole cost about 1 GB in a viewer (issue 36);
//! here it is a few MB, and a run shorter than `TAIL` is drawn exactly as when everything was kept.

use super::buckets::{min_max_by_iteration, Buckets, Sample, COLUMNS};
use crate::files::ShowPath;
use crate::protocol::IterMetrics;
use crate::run::metrics_index::MetricsIndex;

/// Smoothing of the loss's exponential moving average (TensorBoard's default weight).
pub const EMA_ALPHA: f32 = 0.02;

/// One per-iteration quantity the store keeps, in the order of a `Sample`'s values (the store
/// indexes them by `column as usize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Loss,
    LossEma,
    Lr,
    Wd,
    TeacherTemp,
    Momentum,
    IterTime,
    DataTime,
    ImagesPerS,
    Entropy,
    Kl,
}

/// Iterations kept sample by sample: the tail holds between `TAIL` and `2 * TAIL` (once the run is
/// that long), so the closest zooms of a live run (the last 1/64 and 1/256 of a million
/// iterations) and the header's recent means never need the file.
pub const TAIL: usize = 16_384;
/// Buckets summarising the whole run before the tail.
pub const SUMMARY_BUCKETS: usize = 4_096;
/// Buckets of a range read back from `metrics.jsonl` for a zoom.
const DETAIL_BUCKETS: usize = 4_096;
/// The most points a store holds, whatever the run's length: the bound `points_kept` keeps.
pub const MAX_POINTS: usize = SUMMARY_BUCKETS + DETAIL_BUCKETS + 2 * TAIL;
/// Buckets per chart column, at least, for a summary to stand in for the samples: a bucket that
/// straddles two columns can only misplace a little of one column's extreme, and at four per
/// column that is below what a terminal cell shows.
const BUCKETS_PER_COLUMN: u64 = 4;
/// Iterations read before a range so its loss EMA has settled (0.98^512 is 3e-5).
const EMA_WARMUP: usize = 512;

/// The recent iterations, sample by sample, column-wise.
#[derive(Debug, Clone, Default)]
struct Recent {
    iters: Vec<u32>,
    cols: [Vec<f32>; COLUMNS],
}

impl Recent {
    fn push(&mut self, s: &Sample) {
        self.iters.push(s.iter);
        for (col, v) in self.cols.iter_mut().zip(s.values) {
            col.push(v);
        }
    }

    fn sample(&self, i: usize) -> Sample {
        Sample { iter: self.iters[i], values: std::array::from_fn(|c| self.cols[c][i]) }
    }

    fn truncate(&mut self, keep: usize) {
        self.iters.truncate(keep);
        for col in &mut self.cols {
            col.truncate(keep);
        }
    }

    /// Drops the first `n` samples.
    fn drain_front(&mut self, n: usize) {
        self.iters.drain(..n);
        for col in &mut self.cols {
            col.drain(..n);
        }
    }

    /// Index range of the samples whose iteration lies in `[from, to]`.
    fn index_range(&self, from: usize, to: usize) -> std::ops::Range<usize> {
        let a = self.iters.partition_point(|&i| (i as usize) < from);
        let b = self.iters.partition_point(|&i| (i as usize) <= to);
        a..b.max(a)
    }
}

/// An old range read back from `metrics.jsonl` at a finer resolution than the summary.
#[derive(Debug, Clone)]
struct Detail {
    /// The iterations asked for; `to` follows the tail while `attached`.
    from: usize,
    to: usize,
    /// Read up to the tail's first iteration, so what leaves the tail extends it.
    attached: bool,
    buckets: Buckets,
}

#[derive(Debug, Clone)]
pub struct MetricStore {
    summary: Buckets,
    recent: Recent,
    detail: Option<Detail>,
    /// The run's `metrics.jsonl`, for zooms into old ranges; none in tests and for a store fed
    /// by a trainer with no run directory.
    source: Option<MetricsIndex>,
    last: Option<IterMetrics>,
    last_ema: Option<f32>,
}

impl Default for MetricStore {
    fn default() -> Self {
        Self { summary: Buckets::new(SUMMARY_BUCKETS), recent: Recent::default(), detail: None, source: None, last: None, last_ema: None }
    }
}

/// The EMA after `loss`, from the one before (a non-finite value restarts it).
fn next_ema(prev: Option<f32>, loss: f32) -> f32 {
    match prev {
        Some(prev) if prev.is_finite() && loss.is_finite() => prev + EMA_ALPHA * (loss - prev),
        _ => loss,
    }
}

fn sample(m: &IterMetrics, ema: f32) -> Sample {
    let v = [m.loss, 0.0, m.lr, m.wd, m.teacher_temp, m.momentum, m.iter_time, m.data_time, m.images_per_s, m.teacher_entropy, m.kl];
    let mut values = v.map(|x| x as f32);
    values[Column::LossEma as usize] = ema;
    Sample { iter: m.iter.min(u32::MAX as usize) as u32, values }
}

fn clamp_u32(v: usize) -> u32 {
    v.min(u32::MAX as usize) as u32
}

impl MetricStore {
    /// Where zooms into old ranges read from: the run's `metrics.jsonl`.
    pub fn set_source(&mut self, metrics_file: &std::path::Path) {
        self.source = Some(MetricsIndex::new(metrics_file));
    }

    pub fn push(&mut self, m: &IterMetrics) {
        let iter = clamp_u32(m.iter);
        // A resumed or re-sent run may repeat iterations; keep the store's iterations increasing so
        // charts and range lookups stay monotone.
        if self.last_iter().is_some_and(|last| iter <= last) {
            self.truncate_from(iter);
        }
        let ema = next_ema(self.last_ema, m.loss as f32);
        self.last_ema = Some(ema);
        self.recent.push(&sample(m, ema));
        if self.recent.iters.len() >= 2 * TAIL {
            self.spill(TAIL);
        }
        self.last = Some(m.clone());
    }

    /// Moves the oldest `n` recent samples into the summary (and an attached detail).
    fn spill(&mut self, n: usize) {
        for i in 0..n.min(self.recent.iters.len()) {
            let s = self.recent.sample(i);
            self.summary.push(&s);
            if let Some(d) = self.detail.as_mut().filter(|d| d.attached) {
                d.buckets.push(&s);
                d.to = s.iter as usize;
            }
        }
        self.recent.drain_front(n.min(self.recent.iters.len()));
    }

    fn truncate_from(&mut self, iter: u32) {
        let keep = self.recent.iters.partition_point(|&i| i < iter);
        self.recent.truncate(keep);
        if keep == 0 {
            self.summary.truncate_from(iter);
        }
        // A detail read from the file before it was rewritten is read again when needed.
        self.detail = None;
        let ema = Column::LossEma as usize;
        self.last_ema = self.recent.cols[ema].last().copied().or_else(|| self.summary.last_value(ema));
    }

    fn last_iter(&self) -> Option<u32> {
        self.recent.iters.last().copied().or_else(|| self.summary.last_iter())
    }

    /// The recent values of a series, sample by sample (at least the last `TAIL` iterations).
    pub fn recent_values(&self, s: Column) -> &[f32] {
        &self.recent.cols[s as usize]
    }

    /// Iterations recorded, all of them (most are held only as the summary's buckets).
    pub fn len(&self) -> usize {
        self.summary.samples() + self.recent.iters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Points held in memory: the bound (`MAX_POINTS`) that keeps a viewer's memory flat.
    pub fn points_kept(&self) -> usize {
        self.summary.len() + self.detail.as_ref().map_or(0, |d| d.buckets.len()) + self.recent.iters.len()
    }

    /// The earliest iteration held (0 for an attached run's full history).
    pub fn first_iter(&self) -> Option<usize> {
        self.summary.first_iter().or_else(|| self.recent.iters.first().copied()).map(|i| i as usize)
    }

    pub fn last(&self) -> Option<&IterMetrics> {
        self.last.as_ref()
    }

    pub fn last_ema(&self) -> Option<f32> {
        self.last_ema
    }

    /// Mean of a series over the last `n` samples (recent speed, data-wait share); `n` up to `TAIL`.
    pub fn recent_mean(&self, s: Column, n: usize) -> Option<f64> {
        let col = self.recent_values(s);
        let tail = &col[col.len().saturating_sub(n)..];
        let finite: Vec<f64> = tail.iter().filter(|v| v.is_finite()).map(|&v| v as f64).collect();
        (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
    }

    /// Chart points for iterations in `[from, to]`, at most about `2 * buckets` of them: each bucket
    /// contributes its minimum and maximum in iteration order, so spikes survive downsampling.
    /// `map` transforms values (log scale); non-finite results are skipped.
    pub fn downsample(&self, s: Column, from: usize, to: usize, buckets: usize, map: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        let col = s as usize;
        let recent_from = self.recent.iters.first().map_or(usize::MAX, |&i| i as usize);
        let old = self.summary.first_iter().is_some_and(|f| f as usize <= to) && from < recent_from;
        if !old {
            // All held sample by sample: drawn exactly as when the store kept everything.
            let range = self.recent.index_range(from, to);
            return downsample_min_max(&self.recent.iters[range.clone()], &self.recent.cols[col][range], buckets, map);
        }
        let old_to = to.min(recent_from.saturating_sub(1));
        let mut pts = Vec::new();
        let finer = |d: &&Detail| d.covers(from, old_to) && !d.buckets.is_empty() && d.buckets.width() < self.summary.width();
        match self.detail.as_ref().filter(finer) {
            Some(d) => d.buckets.points(col, clamp_u32(from), clamp_u32(old_to), &mut pts),
            None => self.summary.points(col, clamp_u32(from), clamp_u32(old_to), &mut pts),
        }
        let range = self.recent.index_range(from, to);
        pts.extend(self.recent.iters[range.clone()].iter().copied().zip(self.recent.cols[col][range].iter().copied()));
        min_max_by_iteration(&pts, clamp_u32(from), clamp_u32(to), buckets, map)
    }

    /// Before a frame that charts `[from, to]` in about `columns` columns: when the summary is too
    /// coarse for the old part of that range, reads it back from `metrics.jsonl` (once; what
    /// leaves the tail extends it while the view follows a live run).
    pub fn prepare_range(&mut self, from: usize, to: usize, columns: usize) {
        let Some(recent_from) = self.recent.iters.first().map(|&i| i as usize) else { return };
        if self.summary.is_empty() || from >= recent_from || to < from {
            return;
        }
        let old_to = to.min(recent_from - 1);
        let finest = ((to - from + 1) as u64 / (columns.max(1) as u64 * BUCKETS_PER_COLUMN)).max(1);
        let fine_enough = |b: &Buckets| b.width() as u64 <= finest;
        if fine_enough(&self.summary) || self.detail.as_ref().is_some_and(|d| d.covers(from, old_to) && fine_enough(&d.buckets)) {
            return;
        }
        let Some(source) = self.source.as_mut() else { return };
        let mut buckets = Buckets::new(DETAIL_BUCKETS);
        let mut ema = None;
        let read = source.read_range(from.saturating_sub(EMA_WARMUP), old_to, |m| {
            let e = next_ema(ema, m.loss as f32);
            ema = Some(e);
            if m.iter >= from {
                buckets.push(&sample(m, e));
            }
        });
        match read {
            Ok(()) => self.detail = Some(Detail { from, to: old_to, attached: old_to + 1 == recent_from, buckets }),
            Err(e) => {
                // Not tried again every frame: old ranges are drawn from the summary from now on.
                tracing::warn!("{}: {e}; zooms into old iterations show the run's summary", source.path().shown());
                self.source = None;
            }
        }
    }
}

impl Detail {
    /// Whether `[from, to]` was read for this detail (all of it the file had: perhaps nothing,
    /// which is not read again every frame).
    fn covers(&self, from: usize, to: usize) -> bool {
        self.from <= from && self.to >= to
    }
}

/// Min/max bucketing shared by the store and the schedule curves.
pub fn downsample_min_max(xs: &[u32], ys: &[f32], buckets: usize, map: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    let n = xs.len().min(ys.len());
    let buckets = buckets.max(1);
    let mut out = Vec::with_capacity((2 * buckets).min(2 * n));
    if n <= 2 * buckets {
        for i in 0..n {
            let y = map(ys[i] as f64);
            if y.is_finite() {
                out.push((xs[i] as f64, y));
            }
        }
        return out;
    }
    for b in 0..buckets {
        let lo = b * n / buckets;
        let hi = ((b + 1) * n / buckets).max(lo + 1).min(n);
        let (mut imin, mut imax) = (None::<usize>, None::<usize>);
        for i in lo..hi {
            let v = ys[i];
            if !v.is_finite() {
                continue;
            }
            if imin.is_none_or(|j| v < ys[j]) {
                imin = Some(i);
            }
            if imax.is_none_or(|j| v > ys[j]) {
                imax = Some(i);
            }
        }
        let (Some(a), Some(c)) = (imin, imax) else { continue };
        let (first, second) = if a <= c { (a, c) } else { (c, a) };
        for i in [first, second] {
            let y = map(ys[i] as f64);
            if y.is_finite() {
                out.push((xs[i] as f64, y));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(iter: usize, loss: f64) -> IterMetrics {
        IterMetrics {
            iter,
            epoch: iter / 10,
            loss,
            lr: 1e-3,
            wd: 0.04,
            teacher_temp: 0.04,
            momentum: 0.996,
            iter_time: 0.1,
            data_time: 0.01,
            images_per_s: 640.0,
            teacher_entropy: 5.0,
            kl: 0.5,
            koleo: None,
            time: 0.0,
        }
    }

    #[test]
    fn downsampling_bounds_points_and_keeps_spikes() {
        let mut s = MetricStore::default();
        for i in 0..100_000 {
            s.push(&metrics(i, if i == 54_321 { 99.0 } else { 1.0 }));
        }
        let pts = s.downsample(Column::Loss, 0, 100_000, 100, |v| v);
        assert!(pts.len() <= 200, "{}", pts.len());
        assert!(pts.iter().any(|&(_, y)| y == 99.0));
    }

    #[test]
    fn repeated_iterations_replace_the_tail() {
        let mut s = MetricStore::default();
        for i in 0..10 {
            s.push(&metrics(i, 1.0));
        }
        s.push(&metrics(5, 2.0));
        assert_eq!(s.len(), 6);
        assert_eq!(s.recent_values(Column::Loss)[5], 2.0);
        assert_eq!(s.recent.index_range(3, 4), 3..5);
    }

    /// A wavy loss with one high and one low spike far back in the run.
    fn long_loss(i: usize) -> f64 {
        match i {
            123_457 => 1e3,
            1_234_567 => -1e3,
            _ => (i as f64 / 1000.0).sin(),
        }
    }

    #[test]
    fn points_kept_are_bounded_whatever_the_length_and_extremes_survive() {
        let mut s = MetricStore::default();
        for i in 0..2_000_000 {
            s.push(&metrics(i, long_loss(i)));
            if i.is_multiple_of(100_000) {
                assert!(s.points_kept() <= MAX_POINTS, "{} points at iteration {i}", s.points_kept());
            }
        }
        assert!(s.points_kept() <= MAX_POINTS, "{}", s.points_kept());
        assert_eq!(s.len(), 2_000_000);
        assert_eq!(s.first_iter(), Some(0));
        let pts = s.downsample(Column::Loss, 0, 1_999_999, 150, |v| v);
        assert!(pts.len() <= 300, "{}", pts.len());
        assert!(pts.contains(&(123_457.0, 1e3)) && pts.contains(&(1_234_567.0, -1e3)), "the whole run's max and min are drawn");
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0), "in iteration order");
        // The recent mean is over real samples, not buckets.
        let want = (1_999_950..2_000_000).map(|i| long_loss(i) as f32 as f64).sum::<f64>() / 50.0;
        assert!((s.recent_mean(Column::Loss, 50).unwrap_or_default() - want).abs() < 1e-6);
    }

    #[test]
    fn short_runs_are_drawn_from_every_sample_as_before() {
        let mut s = MetricStore::default();
        for i in 0..TAIL {
            s.push(&metrics(i, long_loss(i)));
        }
        let ys: Vec<f32> = (0..TAIL).map(|i| long_loss(i) as f32).collect();
        let xs: Vec<u32> = (0..TAIL as u32).collect();
        assert_eq!(s.downsample(Column::Loss, 0, TAIL, 80, |v| v), downsample_min_max(&xs, &ys, 80, |v| v));
    }

    /// A run whose `metrics.jsonl` and store hold the same `n` iterations.
    fn run_on_file(n: usize, loss: impl Fn(usize) -> f64) -> (tempfile::TempDir, MetricStore) {
        let d = tempfile::tempdir().expect("tmp");
        let path = d.path().join("metrics.jsonl");
        let mut text = String::new();
        let mut s = MetricStore::default();
        s.set_source(&path);
        for i in 0..n {
            let m = metrics(i, loss(i));
            text.push_str(&serde_json::to_string(&m).expect("json"));
            text.push('\n');
            s.push(&m);
        }
        std::fs::write(&path, text).expect("write");
        (d, s)
    }

    #[test]
    fn a_zoom_into_an_old_range_reads_it_from_the_file() {
        // Bumps every 50 iterations: the summary's buckets (128 iterations wide here) merge them.
        let loss = |i: usize| if i.is_multiple_of(50) { 2.0 } else { 1.0 };
        let (_d, mut s) = run_on_file(300_000, loss);
        let (from, to) = (100_000, 101_999);
        let coarse = s.downsample(Column::Loss, from, to, 200, |v| v);
        s.prepare_range(from, to, 200);
        assert!(s.detail.is_some(), "read back");
        assert!(s.points_kept() <= MAX_POINTS);
        let fine = s.downsample(Column::Loss, from, to, 200, |v| v);
        let bumps = |pts: &[(f64, f64)]| pts.iter().filter(|p| p.1 == 2.0).count();
        assert_eq!(bumps(&fine), 40, "every bump of the range: {fine:?}");
        assert!(bumps(&coarse) < 40, "the summary alone merges bumps");
        let ema = s.downsample(Column::LossEma, from, to, 200, |v| v);
        assert!(ema.iter().all(|p| (1.0..1.1).contains(&p.1)), "the EMA is warmed up before the range: {:?}", &ema[..4]);
        // A range up to the tail, following the live run: what leaves the tail extends the detail.
        s.prepare_range(250_000, 299_999, 200);
        assert!(s.detail.as_ref().is_some_and(|d| d.attached));
        for i in 300_000..300_000 + 2 * TAIL {
            s.push(&metrics(i, loss(i)));
        }
        let to = s.detail.as_ref().map(|d| d.to).unwrap_or_default();
        assert_eq!(Some(to + 1), s.recent.iters.first().map(|&i| i as usize));
    }

    #[test]
    fn a_missing_file_leaves_the_summary() {
        let mut s = MetricStore::default();
        s.set_source(std::path::Path::new("/nonexistent/metrics.jsonl"));
        for i in 0..200_000 {
            s.push(&metrics(i, 1.0));
        }
        s.prepare_range(1_000, 2_000, 100);
        assert!(s.source.is_none() && s.detail.is_none());
        assert!(!s.downsample(Column::Loss, 1_000, 2_000, 100, |v| v).is_empty());
        // A file without the range (another session's): read once, the summary drawn.
        let (_d, mut other) = run_on_file(10, |_| 1.0);
        for i in 10..200_000 {
            other.push(&metrics(i, 1.0));
        }
        std::fs::write(other.source.as_ref().map(|m| m.path().to_path_buf()).unwrap_or_default(), "").expect("empty");
        other.prepare_range(1_000, 2_000, 100);
        assert!(other.detail.as_ref().is_some_and(|d| d.buckets.is_empty() && d.covers(1_000, 2_000)), "not read again");
        assert!(!other.downsample(Column::Loss, 1_000, 2_000, 100, |v| v).is_empty());
    }
}
