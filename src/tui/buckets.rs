//! A long series in a fixed number of buckets: each bucket summarises a run of consecutive samples
//! by its first, smallest, largest and last value (with the iterations of the extremes), and when
//! every bucket is used, neighbours merge pairwise so each then holds twice as many samples. Memory
//! is set by the capacity, not by the run's length, and no spike is lost: a merged bucket keeps the
//! extremes of both halves, which is all a min/max chart needs.

/// Values a sample carries, one per `store::Column`.
pub const COLUMNS: usize = 11;

/// One iteration's values, column-wise as the store keeps them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub iter: u32,
    pub values: [f32; COLUMNS],
}

/// One column's summary over a bucket. The extremes skip non-finite values (a NaN loss is drawn
/// nowhere, as before), so `min` stays +inf while the bucket has seen none finite.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Extremes {
    first: f32,
    last: f32,
    min: f32,
    min_at: u32,
    max: f32,
    max_at: u32,
}

impl Extremes {
    fn of(iter: u32, v: f32) -> Self {
        let finite = v.is_finite();
        Self {
            first: v,
            last: v,
            min: if finite { v } else { f32::INFINITY },
            min_at: iter,
            max: if finite { v } else { f32::NEG_INFINITY },
            max_at: iter,
        }
    }

    /// Folds in the summary of the samples that follow this one's.
    fn merge(&mut self, later: &Extremes) {
        self.last = later.last;
        if later.min < self.min {
            self.min = later.min;
            self.min_at = later.min_at;
        }
        if later.max > self.max {
            self.max = later.max;
            self.max_at = later.max_at;
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Bucket {
    first_iter: u32,
    last_iter: u32,
    count: u32,
    cols: [Extremes; COLUMNS],
}

impl Bucket {
    fn of(s: &Sample) -> Self {
        Self { first_iter: s.iter, last_iter: s.iter, count: 1, cols: std::array::from_fn(|c| Extremes::of(s.iter, s.values[c])) }
    }

    fn merge(&mut self, later: &Bucket) {
        self.last_iter = later.last_iter;
        self.count += later.count;
        for (a, b) in self.cols.iter_mut().zip(&later.cols) {
            a.merge(b);
        }
    }

    /// The bucket's points of column `col` in iteration order: first, extremes, last, each once.
    fn points(&self, col: usize) -> impl Iterator<Item = (u32, f32)> {
        let e = &self.cols[col];
        let mut pts = [(self.first_iter, e.first), (e.min_at, e.min), (e.max_at, e.max), (self.last_iter, e.last)];
        pts.sort_by_key(|p| p.0);
        let mut prev = None;
        pts.into_iter().filter(move |&(i, v)| {
            let fresh = prev != Some(i) && v.is_finite();
            if v.is_finite() {
                prev = Some(i);
            }
            fresh
        })
    }
}

/// The summary of a series pushed in increasing iterations.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    /// Buckets at most; even, so a full set merges into exactly half.
    cap: usize,
    /// Samples a full bucket holds: 1, then doubling at each merge.
    width: u32,
    buckets: Vec<Bucket>,
    /// Samples summarised.
    samples: usize,
}

impl Buckets {
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(2).div_ceil(2) * 2;
        Self { cap, width: 1, buckets: Vec::new(), samples: 0 }
    }

    pub fn push(&mut self, s: &Sample) {
        self.samples += 1;
        if let Some(last) = self.buckets.last_mut().filter(|b| b.count < self.width) {
            last.merge(&Bucket::of(s));
            return;
        }
        if self.buckets.len() >= self.cap {
            self.halve();
        }
        self.buckets.push(Bucket::of(s));
    }

    /// Merges neighbours pairwise: half the buckets, each twice as wide.
    fn halve(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        let mut it = old.into_iter();
        while let Some(mut a) = it.next() {
            if let Some(b) = it.next() {
                a.merge(&b);
            }
            self.buckets.push(a);
        }
        self.width = self.width.saturating_mul(2);
    }

    /// Buckets in use: the points this summary costs, whatever the series' length.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Samples summarised (the series' length).
    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Samples a full bucket holds (the summary's resolution).
    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn first_iter(&self) -> Option<u32> {
        self.buckets.first().map(|b| b.first_iter)
    }

    pub fn last_iter(&self) -> Option<u32> {
        self.buckets.last().map(|b| b.last_iter)
    }

    /// The last value of column `col` pushed.
    pub fn last_value(&self, col: usize) -> Option<f32> {
        self.buckets.last().map(|b| b.cols[col].last)
    }

    /// Forgets iteration `iter` and everything after it. A bucket that also holds earlier
    /// iterations goes whole: its summary cannot be split.
    pub fn truncate_from(&mut self, iter: u32) {
        let keep = self.buckets.partition_point(|b| b.last_iter < iter);
        self.buckets.truncate(keep);
        self.samples = self.buckets.iter().map(|b| b.count as usize).sum();
    }

    /// Appends column `col`'s points with iterations in `[from, to]`, in iteration order.
    pub fn points(&self, col: usize, from: u32, to: u32, out: &mut Vec<(u32, f32)>) {
        let start = self.buckets.partition_point(|b| b.last_iter < from);
        for b in self.buckets[start..].iter().take_while(|b| b.first_iter <= to) {
            out.extend(b.points(col).filter(|&(i, _)| i >= from && i <= to));
        }
    }
}

/// Min/max chart points over `[from, to]` cut into `buckets` equal spans of iterations: each span
/// gives its smallest and largest value in iteration order. For points of uneven density (a
/// summary's sparse points followed by a dense recent tail) where cutting by index would spend
/// most of a chart on its last few iterations. `points` are in iteration order.
pub fn min_max_by_iteration(points: &[(u32, f32)], from: u32, to: u32, buckets: usize, map: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    let buckets = buckets.max(1) as u64;
    let mut out = Vec::with_capacity((2 * buckets as usize).min(points.len()));
    let emit = |out: &mut Vec<(f64, f64)>, (x, y): (u32, f32)| {
        let y = map(y as f64);
        if y.is_finite() {
            out.push((x as f64, y));
        }
    };
    if points.len() as u64 <= 2 * buckets {
        for &p in points {
            emit(&mut out, p);
        }
        return out;
    }
    let span = (to.saturating_sub(from) as u64 + 1).max(1);
    let slot = |x: u32| (x.saturating_sub(from) as u64 * buckets / span).min(buckets - 1);
    let mut i = 0;
    while i < points.len() {
        let b = slot(points[i].0);
        let (mut lo, mut hi) = (None::<(u32, f32)>, None::<(u32, f32)>);
        while i < points.len() && slot(points[i].0) == b {
            let p = points[i];
            if p.1.is_finite() {
                if lo.is_none_or(|q| p.1 < q.1) {
                    lo = Some(p);
                }
                if hi.is_none_or(|q| p.1 > q.1) {
                    hi = Some(p);
                }
            }
            i += 1;
        }
        let (Some(a), Some(c)) = (lo, hi) else { continue };
        let (first, second) = if a.0 <= c.0 { (a, c) } else { (c, a) };
        emit(&mut out, first);
        if second.0 != first.0 {
            emit(&mut out, second);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(iter: u32, v: f32) -> Sample {
        Sample { iter, values: [v; COLUMNS] }
    }

    #[test]
    fn capacity_holds_and_extremes_survive_merges() {
        let mut b = Buckets::new(64);
        for i in 0..100_000u32 {
            let v = match i {
                31_337 => 50.0,
                77_777 => -50.0,
                _ => (i % 7) as f32,
            };
            b.push(&sample(i, v));
            assert!(b.len() <= 64);
        }
        let mut pts = Vec::new();
        b.points(0, 0, u32::MAX, &mut pts);
        assert!(pts.contains(&(31_337, 50.0)) && pts.contains(&(77_777, -50.0)), "{pts:?}");
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0), "in iteration order");
        assert_eq!((b.first_iter(), b.last_iter()), (Some(0), Some(99_999)));
        assert_eq!(b.width(), 2048, "100,000 samples over at most 64 buckets");
    }

    #[test]
    fn truncation_drops_whole_buckets_and_nan_is_skipped() {
        let mut b = Buckets::new(4);
        for i in 0..16u32 {
            b.push(&sample(i, if i == 3 { f32::NAN } else { i as f32 }));
        }
        let mut pts = Vec::new();
        b.points(0, 0, 15, &mut pts);
        assert!(pts.iter().all(|p| p.1.is_finite()) && !pts.iter().any(|p| p.0 == 3));
        b.truncate_from(9);
        assert_eq!(b.last_iter(), Some(7), "the bucket of 8..11 goes whole");
    }

    #[test]
    fn by_iteration_gives_a_sparse_head_its_share_of_the_chart() {
        // 10 sparse points over iterations 0..1000, then 1000 dense ones over 1000..2000.
        let mut pts: Vec<(u32, f32)> = (0..10).map(|i| (i * 100, 1.0)).collect();
        pts.extend((1000..2000).map(|i| (i, 2.0)));
        let out = min_max_by_iteration(&pts, 0, 1999, 20, |v| v);
        assert_eq!(out.iter().filter(|p| p.0 < 1000.0).count(), 10, "every sparse point is its own bucket's extreme");
        assert!(out.len() <= 40);
    }
}
