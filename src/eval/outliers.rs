//! Outlier scores from frozen features: how unlike its neighbours an image is (isolation), how
//! little its neighbours agree with its folder label (disagreement), and near-identical pairs
//! (duplicates). Neighbours are exact, found block by block so memory stays bounded whatever the
//! number of images.

use tch::{Kind, Tensor};

/// Most similarity entries one block of the neighbour search holds (64 MiB of float32).
pub const MAX_BLOCK_ENTRIES: usize = 16 << 20;

/// The `k` nearest neighbours of every row (itself excluded), most similar first.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbours {
    pub index: Vec<Vec<usize>>,
    /// Cosine similarities, matching `index`.
    pub sim: Vec<Vec<f32>>,
}

/// Query rows per block so that a block's similarity matrix stays under `MAX_BLOCK_ENTRIES`.
pub fn block_rows(n: usize) -> usize {
    (MAX_BLOCK_ENTRIES / n.max(1)).clamp(1, n.max(1))
}

/// Exact cosine neighbours of L2-normalised rows, `rows_per_block` queries at a time.
pub fn nearest_neighbours(normed: &Tensor, k: usize, rows_per_block: usize) -> Neighbours {
    let n = normed.size()[0];
    let k = k.min((n as usize).saturating_sub(1));
    let (mut index, mut sim) = (Vec::with_capacity(n as usize), Vec::with_capacity(n as usize));
    if k == 0 {
        return Neighbours { index: vec![vec![]; n as usize], sim: vec![vec![]; n as usize] };
    }
    tch::no_grad(|| {
        let mut start = 0i64;
        while start < n {
            let len = (rows_per_block as i64).min(n - start);
            let mut s = normed.narrow(0, start, len).matmul(&normed.tr());
            // An image is not its own neighbour.
            let rows = Tensor::arange(len, (Kind::Int64, normed.device()));
            let _ = s.index_put_(&[Some(&rows), Some(&(&rows + start))], &Tensor::from(f32::NEG_INFINITY), false);
            let (vals, idx) = s.topk(k as i64, 1, true, true);
            let vals: Vec<f32> = Vec::try_from(vals.to_kind(Kind::Float).flatten(0, -1)).unwrap_or_default();
            let idx: Vec<i64> = Vec::try_from(idx.flatten(0, -1)).unwrap_or_default();
            for r in 0..len as usize {
                sim.push(vals[r * k..(r + 1) * k].to_vec());
                index.push(idx[r * k..(r + 1) * k].iter().map(|&i| i as usize).collect());
            }
            start += len;
        }
    });
    Neighbours { index, sim }
}

/// Scores of every image of a split.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Mean cosine distance to the k nearest neighbours.
    pub isolation: Vec<f64>,
    /// 1 - the weighted k-NN vote's probability for the image's own label (labeled splits).
    pub disagreement: Option<Vec<f64>>,
    /// The class the neighbours vote for (labeled splits).
    pub predicted: Option<Vec<usize>>,
    pub neighbours: Neighbours,
}

/// Isolation for every image and, given labels, disagreement with the weighted vote of its
/// neighbours (weights `exp(sim / temperature)`, as the k-NN classifier).
pub fn score(normed: &Tensor, labels: Option<(&[usize], usize)>, k: usize, temperature: f64) -> Scores {
    let n = normed.size()[0] as usize;
    let neighbours = nearest_neighbours(normed, k, block_rows(n));
    let isolation = neighbours
        .sim
        .iter()
        .map(|s| if s.is_empty() { 0.0 } else { s.iter().map(|&v| 1.0 - v as f64).sum::<f64>() / s.len() as f64 })
        .collect();
    let (disagreement, predicted) = match labels {
        Some((labels, num_classes)) => {
            let (mut dis, mut pred) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for i in 0..n {
                let mut votes = vec![0.0f64; num_classes.max(1)];
                for (&j, &s) in neighbours.index[i].iter().zip(&neighbours.sim[i]) {
                    if let Some(v) = votes.get_mut(labels[j]) {
                        *v += (s as f64 / temperature).exp();
                    }
                }
                let total: f64 = votes.iter().sum();
                let own = votes.get(labels[i]).copied().unwrap_or(0.0);
                dis.push(if total > 0.0 { 1.0 - own / total } else { 1.0 });
                // Ties go to the lower class index, as in the k-NN classifier.
                let best = votes.iter().enumerate().fold(0, |b, (c, &v)| if v > votes[b] { c } else { b });
                pred.push(best);
            }
            (Some(dis), Some(pred))
        }
        None => (None, None),
    };
    Scores { isolation, disagreement, predicted, neighbours }
}

/// Pairs `(i, j, similarity)` with `i < j` and similarity at least `threshold`, most similar
/// first. Only pairs within each other's k nearest neighbours are seen, so a group of more than
/// k + 1 identical images lists some of its pairs, not all.
pub fn duplicates(n: &Neighbours, threshold: f32) -> Vec<(usize, usize, f32)> {
    let mut pairs: Vec<(usize, usize, f32)> = n
        .index
        .iter()
        .zip(&n.sim)
        .enumerate()
        .flat_map(|(i, (idx, sim))| idx.iter().zip(sim).filter(move |(_, &s)| s >= threshold).map(move |(&j, &s)| (i.min(j), i.max(j), s)))
        .collect();
    pairs.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    pairs.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn rows(v: &[[f32; 2]]) -> Tensor {
        let flat: Vec<f32> = v.iter().flatten().copied().collect();
        crate::eval::features::l2_normalize(&Tensor::from_slice(&flat).reshape([v.len() as i64, 2]))
    }

    /// Angles in degrees as unit vectors: cosine similarities are easy to compute by hand.
    fn at(deg: &[f64]) -> Tensor {
        rows(&deg.iter().map(|d| [d.to_radians().cos() as f32, d.to_radians().sin() as f32]).collect::<Vec<_>>())
    }

    #[test]
    fn isolation_is_the_mean_cosine_distance_to_the_k_nearest() {
        // Three close together, one far off at 90 degrees.
        let x = at(&[0.0, 10.0, 20.0, 90.0]);
        let s = score(&x, None, 2, 0.07);
        let d = |a: f64| 1.0 - a.to_radians().cos();
        assert!((s.isolation[0] - (d(10.0) + d(20.0)) / 2.0).abs() < 1e-6);
        assert!((s.isolation[1] - d(10.0)).abs() < 1e-6, "both neighbours 10 degrees away");
        assert!((s.isolation[3] - (d(70.0) + d(80.0)) / 2.0).abs() < 1e-6);
        let top = (0..4).max_by(|&a, &b| s.isolation[a].total_cmp(&s.isolation[b])).unwrap();
        assert_eq!(top, 3);
        assert_eq!(s.neighbours.index[0], vec![1, 2], "nearest first, never itself");
        assert!(s.disagreement.is_none());
    }

    #[test]
    fn disagreement_is_one_minus_the_weighted_vote_for_the_own_label() {
        // Cluster A at 0..20 degrees, cluster B at 80..100; image 2 sits in A but is labelled B.
        let x = at(&[0.0, 5.0, 10.0, 15.0, 80.0, 90.0, 100.0]);
        let labels = [0, 0, 1, 0, 1, 1, 1];
        let t = 0.07;
        let s = score(&x, Some((&labels, 2)), 3, t);
        let dis = s.disagreement.as_ref().unwrap();
        let top = (0..7).max_by(|&a, &b| dis[a].total_cmp(&dis[b])).unwrap();
        assert_eq!(top, 2, "the mislabeled image disagrees most: {dis:?}");
        assert_eq!(s.predicted.as_ref().unwrap()[2], 0);
        // By hand for image 0: neighbours 5 (A), 10 (B, the mislabeled one), 15 (A) degrees.
        let w = |deg: f64| (deg.to_radians().cos() / t).exp();
        let expected = 1.0 - (w(5.0) + w(15.0)) / (w(5.0) + w(10.0) + w(15.0));
        assert!((dis[0] - expected).abs() < 1e-5, "{} vs {expected}", dis[0]);
        assert!(dis[5] < 1e-3, "the close neighbours of image 5 agree with it: {}", dis[5]);
    }

    #[test]
    fn blocked_search_equals_the_whole_matrix_and_stays_bounded() {
        tch::manual_seed(3);
        let x = crate::eval::features::l2_normalize(&Tensor::randn([37, 8], (Kind::Float, Device::Cpu)));
        let whole = nearest_neighbours(&x, 5, 37);
        for block in [1, 4, 16] {
            let b = nearest_neighbours(&x, 5, block);
            assert_eq!(b.index, whole.index, "block of {block} rows");
            let diff = b.sim.iter().flatten().zip(whole.sim.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-5, "block of {block} rows: {diff}");
        }
        // The block never holds more than MAX_BLOCK_ENTRIES similarities.
        for n in [1, 1000, 100_000, 10_000_000] {
            assert!(block_rows(n) * n <= MAX_BLOCK_ENTRIES.max(n), "{n}");
            assert!(block_rows(n) >= 1);
        }
        assert_eq!(block_rows(100_000), 167);
        // k larger than the set: every other image.
        assert_eq!(nearest_neighbours(&x.narrow(0, 0, 3), 10, 2).index[0].len(), 2);
    }

    #[test]
    fn duplicates_are_pairs_above_the_threshold_listed_once() {
        let x = at(&[0.0, 0.0, 0.5, 45.0, 90.0]);
        let s = score(&x, None, 3, 0.07);
        let pairs = duplicates(&s.neighbours, 0.999);
        let ids: Vec<(usize, usize)> = pairs.iter().map(|p| (p.0, p.1)).collect();
        assert_eq!(ids, vec![(0, 1), (0, 2), (1, 2)], "{pairs:?}");
        assert!(pairs[0].2 >= pairs[1].2);
        assert!(duplicates(&s.neighbours, 1.01).is_empty());
    }
}
