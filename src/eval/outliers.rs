//! Outlier scores from frozen features: how unlike its neighbours an image is (isolation), the
//! distance to its k-th nearest neighbour in a reference set (the stranger score of Sun et al.
//! 2022, "Out-of-distribution detection with deep nearest neighbors"), how much more the nearest
//! images of another class vote for it than those of its own label (disagreement, a margin that
//! does not saturate). Neighbours are exact, found block by block so memory stays bounded
//! whatever the number of images. (Near-duplicates are `copy_detection`'s.)

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

/// Walks the similarities of `query` rows to every `reference` row, `rows_per_block` query rows
/// at a time, so no N x M matrix is ever whole: `f(block)` gets each block of rows in order (as
/// `kind`), with each query row's own image in the reference (`same(i)`) set to -inf so that it
/// is nobody's neighbour.
fn similarity_blocks(
    query: &Tensor,
    reference: &Tensor,
    rows_per_block: usize,
    kind: Kind,
    same: impl Fn(usize) -> Option<usize>,
    mut f: impl FnMut(Tensor),
) {
    let n = query.size()[0];
    tch::no_grad(|| {
        let mut start = 0i64;
        while start < n {
            let len = (rows_per_block.max(1) as i64).min(n - start);
            let mut s = query.narrow(0, start, len).matmul(&reference.tr()).to_kind(kind);
            let pairs: Vec<(i64, i64)> = (0..len).filter_map(|r| same((start + r) as usize).map(|j| (r, j as i64))).collect();
            if !pairs.is_empty() {
                let rows = Tensor::from_slice(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()).to_device(query.device());
                let cols = Tensor::from_slice(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()).to_device(query.device());
                let _ = s.index_put_(&[Some(&rows), Some(&cols)], &Tensor::from(f64::NEG_INFINITY).to_kind(kind), false);
            }
            f(s);
            start += len;
        }
    });
}

/// Exact cosine neighbours of L2-normalised rows, `rows_per_block` queries at a time.
pub fn nearest_neighbours(normed: &Tensor, k: usize, rows_per_block: usize) -> Neighbours {
    let n = normed.size()[0];
    let k = k.min((n as usize).saturating_sub(1));
    let (mut index, mut sim) = (Vec::with_capacity(n as usize), Vec::with_capacity(n as usize));
    if k == 0 {
        return Neighbours { index: vec![vec![]; n as usize], sim: vec![vec![]; n as usize] };
    }
    similarity_blocks(normed, normed, rows_per_block, Kind::Float, Some, |s| {
        let len = s.size()[0] as usize;
        let (vals, idx) = s.topk(k as i64, 1, true, true);
        let vals: Vec<f32> = Vec::try_from(vals.flatten(0, -1)).unwrap_or_default();
        let idx: Vec<i64> = Vec::try_from(idx.flatten(0, -1)).unwrap_or_default();
        for r in 0..len {
            sim.push(vals[r * k..(r + 1) * k].to_vec());
            index.push(idx[r * k..(r + 1) * k].iter().map(|&i| i as usize).collect());
        }
    });
    Neighbours { index, sim }
}

/// Scores of every image of a split.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Mean cosine distance to the k nearest neighbours.
    pub isolation: Vec<f64>,
    /// Weighted-vote margin (labeled splits): the best other class's share of the vote minus the
    /// own label's, in [-1, 1], each class voting with its own k nearest images.
    pub disagreement: Option<Vec<f64>>,
    /// The class of the largest vote (labeled splits).
    pub predicted: Option<Vec<usize>>,
    pub neighbours: Neighbours,
}

/// Isolation for every image and, given labels, the vote margin against its label.
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
            let (d, p) = class_margin(normed, labels, num_classes, k, temperature);
            (Some(d), Some(p))
        }
        None => (None, None),
    };
    Scores { isolation, disagreement, predicted, neighbours }
}

/// Log of each class's vote for every row: log sum over the class's `k` most similar images (the
/// row itself excluded) of exp(similarity / T), [N][C]; -inf for a class with no other image.
pub fn class_log_votes(normed: &Tensor, labels: &[usize], num_classes: usize, k: usize, temperature: f64) -> Vec<Vec<f64>> {
    let n = normed.size()[0];
    let members: Vec<Tensor> = (0..num_classes)
        .map(|c| Tensor::from_slice(&(0..labels.len()).filter(|&i| labels[i] == c).map(|i| i as i64).collect::<Vec<_>>()))
        .collect();
    let mut out = Vec::with_capacity(n as usize);
    similarity_blocks(normed, normed, block_rows(n as usize), Kind::Double, Some, |s| {
        let mut block = vec![vec![f64::NEG_INFINITY; num_classes]; s.size()[0] as usize];
        for (c, idx) in members.iter().enumerate() {
            let m = idx.size()[0];
            if m == 0 {
                continue;
            }
            let (top, _) = s.index_select(1, &idx.to_device(normed.device())).topk((k as i64).clamp(1, m), 1, true, true);
            let v: Vec<f64> = Vec::try_from((top / temperature).logsumexp([1], false).to_device(tch::Device::Cpu)).unwrap_or_default();
            for (r, x) in v.into_iter().enumerate() {
                block[r][c] = x;
            }
        }
        out.extend(block);
    });
    out
}

/// The vote margin and voted class of every row (see `Scores::disagreement`); ties of the vote
/// go to the lower class index, as in the k-NN classifier.
pub fn class_margin(normed: &Tensor, labels: &[usize], num_classes: usize, k: usize, temperature: f64) -> (Vec<f64>, Vec<usize>) {
    let votes = class_log_votes(normed, labels, num_classes, k, temperature);
    votes
        .iter()
        .zip(labels)
        .map(|(v, &own)| {
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if !max.is_finite() {
                return (0.0, own);
            }
            let p: Vec<f64> = v.iter().map(|x| (x - max).exp()).collect();
            let total: f64 = p.iter().sum();
            let mine = p.get(own).copied().unwrap_or(0.0) / total;
            let other = p.iter().enumerate().filter(|(c, _)| *c != own).map(|(_, x)| x / total).fold(0.0, f64::max);
            let best = (0..v.len()).fold(0, |b, c| if v[c] > v[b] { c } else { b });
            (other - mine, best)
        })
        .unzip()
}

/// Euclidean distance from every query row to its `k`-th nearest row of `reference` (both
/// L2-normalised, so the distance is sqrt(2 - 2 cos)); `same[i]` names the reference row that is
/// query i itself, left out of its neighbours.
pub fn kth_distance(query: &Tensor, reference: &Tensor, k: usize, same: &[Option<usize>]) -> Vec<f64> {
    let (n, m) = (query.size()[0], reference.size()[0]);
    let excluded = same.iter().any(Option::is_some) as i64;
    let k = (k as i64).clamp(1, (m - excluded).max(1));
    let mut out = Vec::with_capacity(n as usize);
    if m == 0 {
        return vec![0.0; n as usize];
    }
    similarity_blocks(
        query,
        reference,
        block_rows(m as usize),
        Kind::Double,
        |i| same.get(i).copied().flatten(),
        |s| {
            let (top, _) = s.topk(k, 1, true, true);
            let kth: Vec<f64> = Vec::try_from(top.select(1, k - 1).to_device(tch::Device::Cpu)).unwrap_or_default();
            out.extend(kth.into_iter().map(|c| (2.0 - 2.0 * c.min(1.0)).max(0.0).sqrt()));
        },
    );
    out
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
    fn disagreement_is_the_vote_margin_of_each_class_s_own_nearest() {
        // Cluster A at 0..15 degrees, cluster B at 80..100; image 2 sits in A but is labelled B.
        let x = at(&[0.0, 5.0, 10.0, 15.0, 80.0, 90.0, 100.0]);
        let labels = [0, 0, 1, 0, 1, 1, 1];
        let t = 0.07;
        let s = score(&x, Some((&labels, 2)), 2, t);
        let dis = s.disagreement.as_ref().unwrap();
        let top = (0..7).max_by(|&a, &b| dis[a].total_cmp(&dis[b])).unwrap();
        assert_eq!(top, 2, "the mislabeled image disagrees most: {dis:?}");
        assert_eq!(s.predicted.as_ref().unwrap()[2], 0);
        // By hand for image 0 (label A), k = 2: A votes with images at 5 and 15 degrees, B with
        // its 2 nearest labelled B: 10 (the mislabeled one) and 80 degrees.
        let w = |deg: f64| (deg.to_radians().cos() / t).exp();
        let (a, b) = (w(5.0) + w(15.0), w(10.0) + w(80.0));
        // Similarities are float32: agreement to 1e-6.
        assert!((dis[0] - (b - a) / (a + b)).abs() < 1e-6, "{} vs {}", dis[0], (b - a) / (a + b));
        // Image 2 (label B) against its own class: 80 and 90 degrees are B's nearest (70, 80 away).
        let (a2, b2) = (w(5.0) + w(5.0), w(70.0) + w(80.0));
        assert!((dis[2] - (a2 - b2) / (a2 + b2)).abs() < 1e-6);
        assert!(dis[5] < -0.9, "image 5 sits deep in its own class: {}", dis[5]);
        assert!(dis.iter().all(|d| (-1.0..=1.0).contains(d)));
    }

    #[test]
    fn kth_distance_is_the_euclidean_distance_to_the_kth_nearest_reference() {
        let q = at(&[0.0, 45.0]);
        let r = at(&[0.0, 10.0, 30.0, 90.0]);
        let chord = |deg: f64| (2.0 - 2.0 * deg.to_radians().cos()).sqrt();
        // Query 0 is reference 0 itself (left out): its 2nd nearest is 30 degrees away.
        let d = kth_distance(&q, &r, 2, &[Some(0), None]);
        assert!((d[0] - chord(30.0)).abs() < 1e-6, "{d:?}");
        // Query 1 at 45: nearest 30 (15 away), then 10 (35 away).
        assert!((d[1] - chord(35.0)).abs() < 1e-6, "{d:?}");
        let d1 = kth_distance(&q, &r, 1, &[None, None]);
        assert!(d1[0].abs() < 1e-3 && (d1[1] - chord(15.0)).abs() < 1e-6, "{d1:?}");
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
}
