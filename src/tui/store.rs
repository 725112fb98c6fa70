//! The metric store: every iteration the trainer reported, kept column-wise in `f32` (a 100k-iteration
//! run is a few MB), plus the downsampling charts need. Widgets never own data; they ask the store
//! for at most a few points per terminal column, so drawing cost does not grow with the run.

use crate::protocol::IterMetrics;

/// Smoothing of the loss's exponential moving average (TensorBoard's default weight).
pub const EMA_ALPHA: f32 = 0.02;

/// One per-iteration quantity the store keeps.
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

#[derive(Debug, Default, Clone)]
pub struct MetricStore {
    iters: Vec<u32>,
    epochs: Vec<u32>,
    loss: Vec<f32>,
    loss_ema: Vec<f32>,
    lr: Vec<f32>,
    wd: Vec<f32>,
    temp: Vec<f32>,
    momentum: Vec<f32>,
    iter_time: Vec<f32>,
    data_time: Vec<f32>,
    images_per_s: Vec<f32>,
    entropy: Vec<f32>,
    kl: Vec<f32>,
    last: Option<IterMetrics>,
}

impl MetricStore {
    pub fn push(&mut self, m: &IterMetrics) {
        // A resumed or re-sent run may repeat iterations; keep the store's iterations increasing so
        // charts and range lookups stay monotone.
        if let Some(&last) = self.iters.last() {
            if (m.iter as u32) <= last {
                self.truncate_from(m.iter as u32);
            }
        }
        let loss = m.loss as f32;
        let ema = match self.loss_ema.last() {
            Some(&prev) if prev.is_finite() && loss.is_finite() => prev + EMA_ALPHA * (loss - prev),
            _ => loss,
        };
        self.iters.push(m.iter as u32);
        self.epochs.push(m.epoch as u32);
        self.loss.push(loss);
        self.loss_ema.push(ema);
        self.lr.push(m.lr as f32);
        self.wd.push(m.wd as f32);
        self.temp.push(m.teacher_temp as f32);
        self.momentum.push(m.momentum as f32);
        self.iter_time.push(m.iter_time as f32);
        self.data_time.push(m.data_time as f32);
        self.images_per_s.push(m.images_per_s as f32);
        self.entropy.push(m.teacher_entropy as f32);
        self.kl.push(m.kl as f32);
        self.last = Some(m.clone());
    }

    fn truncate_from(&mut self, iter: u32) {
        let keep = self.iters.partition_point(|&i| i < iter);
        for col in self.columns_mut() {
            col.truncate(keep);
        }
        self.iters.truncate(keep);
        self.epochs.truncate(keep);
    }

    fn columns_mut(&mut self) -> [&mut Vec<f32>; 11] {
        [
            &mut self.loss,
            &mut self.loss_ema,
            &mut self.lr,
            &mut self.wd,
            &mut self.temp,
            &mut self.momentum,
            &mut self.iter_time,
            &mut self.data_time,
            &mut self.images_per_s,
            &mut self.entropy,
            &mut self.kl,
        ]
    }

    pub fn column(&self, s: Column) -> &[f32] {
        match s {
            Column::Loss => &self.loss,
            Column::LossEma => &self.loss_ema,
            Column::Lr => &self.lr,
            Column::Wd => &self.wd,
            Column::TeacherTemp => &self.temp,
            Column::Momentum => &self.momentum,
            Column::IterTime => &self.iter_time,
            Column::DataTime => &self.data_time,
            Column::ImagesPerS => &self.images_per_s,
            Column::Entropy => &self.entropy,
            Column::Kl => &self.kl,
        }
    }

    pub fn len(&self) -> usize {
        self.iters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.iters.is_empty()
    }

    /// The earliest iteration held (0 for an attached run's full history).
    pub fn first_iter(&self) -> Option<usize> {
        self.iters.first().map(|&i| i as usize)
    }

    pub fn last(&self) -> Option<&IterMetrics> {
        self.last.as_ref()
    }

    pub fn last_ema(&self) -> Option<f32> {
        self.loss_ema.last().copied()
    }

    /// Index range of the samples whose iteration lies in `[from, to]`.
    pub fn index_range(&self, from: usize, to: usize) -> std::ops::Range<usize> {
        let a = self.iters.partition_point(|&i| (i as usize) < from);
        let b = self.iters.partition_point(|&i| (i as usize) <= to);
        a..b.max(a)
    }

    /// Mean of a series over the last `n` samples (recent speed, data-wait share).
    pub fn recent_mean(&self, s: Column, n: usize) -> Option<f64> {
        let col = self.column(s);
        let tail = &col[col.len().saturating_sub(n)..];
        let finite: Vec<f64> = tail.iter().filter(|v| v.is_finite()).map(|&v| v as f64).collect();
        (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
    }

    /// Chart points for iterations in `[from, to]`, at most about `2 * buckets` of them: each bucket
    /// contributes its minimum and maximum in iteration order, so spikes survive downsampling.
    /// `map` transforms values (log scale); non-finite results are skipped.
    pub fn downsample(&self, s: Column, from: usize, to: usize, buckets: usize, map: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        let range = self.index_range(from, to);
        let col = &self.column(s)[range.clone()];
        let its = &self.iters[range];
        downsample_min_max(its, col, buckets, map)
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
        assert_eq!(s.column(Column::Loss)[5], 2.0);
        assert_eq!(s.index_range(3, 4), 3..5);
    }
}
