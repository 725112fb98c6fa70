//! UMAP (McInnes et al. 2018) of feature vectors to 2-D, written from the paper and umap-learn's
//! defaults: fuzzy k-NN graph (per-point `rho`/`sigma`, symmetrised by fuzzy union), PCA
//! initialisation, and stochastic layout optimisation with negative sampling. Single-threaded with
//! a seeded generator, so the same features and seed give the same map.

use super::outliers::{block_rows, nearest_neighbours, Neighbours};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct UmapParams {
    pub n_neighbors: usize,
    /// 0 chooses umap-learn's default: 500 epochs up to 10,000 points, 200 above.
    pub n_epochs: usize,
    pub negative_sample_rate: usize,
    /// Curve parameters of `1 / (1 + a d^(2b))`; these are umap-learn's for min_dist 0.1, spread 1.
    pub a: f64,
    pub b: f64,
    pub seed: u64,
}

impl Default for UmapParams {
    fn default() -> Self {
        Self { n_neighbors: 15, n_epochs: 0, negative_sample_rate: 5, a: 1.576_943_46, b: 0.895_060_6, seed: 0 }
    }
}

/// 2-D coordinates of L2-normalised rows.
pub fn umap(normed: &Tensor, p: &UmapParams) -> Vec<[f32; 2]> {
    let n = normed.size()[0] as usize;
    if n < 3 {
        return pca_init(normed);
    }
    let nn = nearest_neighbours(normed, p.n_neighbors, block_rows(n));
    let graph = fuzzy_graph(&nn);
    let mut y = pca_init(normed);
    let n_epochs = if p.n_epochs > 0 {
        p.n_epochs
    } else if n <= 10_000 {
        500
    } else {
        200
    };
    optimize(&mut y, &graph, n_epochs, p);
    y
}

/// Edge list of the symmetrised fuzzy graph, both directions: `(head, tail, weight)`.
fn fuzzy_graph(nn: &Neighbours) -> Vec<(usize, usize, f64)> {
    let mut directed: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for (i, (idx, sim)) in nn.index.iter().zip(&nn.sim).enumerate() {
        let d: Vec<f64> = sim.iter().map(|&s| (1.0 - s as f64).max(0.0)).collect();
        let rho = d.iter().copied().find(|&v| v > 0.0).unwrap_or(0.0);
        let sigma = smooth_knn_sigma(&d, rho);
        for (&j, &dj) in idx.iter().zip(&d) {
            let w = if dj <= rho { 1.0 } else { (-(dj - rho) / sigma).exp() };
            directed.insert((i, j), w);
        }
    }
    // Fuzzy union: w_ij + w_ji - w_ij * w_ji, listed in both directions.
    let mut edges = Vec::with_capacity(directed.len() * 2);
    for (&(i, j), &w) in &directed {
        let back = directed.get(&(j, i)).copied().unwrap_or(0.0);
        if back > 0.0 && j < i {
            continue; // already listed from (j, i)
        }
        let u = w + back - w * back;
        edges.push((i, j, u));
        edges.push((j, i, u));
    }
    edges
}

/// The `sigma` for which the neighbours' memberships sum to log2(k) (binary search, as umap-learn).
fn smooth_knn_sigma(d: &[f64], rho: f64) -> f64 {
    let target = (d.len() as f64).log2();
    let (mut lo, mut hi, mut mid) = (0.0, f64::INFINITY, 1.0);
    for _ in 0..64 {
        let sum: f64 = d.iter().map(|&v| if v <= rho { 1.0 } else { (-(v - rho) / mid).exp() }).sum();
        if (sum - target).abs() < 1e-5 {
            break;
        }
        if sum > target {
            hi = mid;
            mid = (lo + hi) / 2.0;
        } else {
            lo = mid;
            mid = if hi.is_infinite() { mid * 2.0 } else { (lo + hi) / 2.0 };
        }
    }
    let mean = d.iter().sum::<f64>() / d.len().max(1) as f64;
    mid.max(1e-3 * mean).max(1e-12)
}

/// The first two principal components, scaled to [-10, 10]; signs fixed so the largest loading
/// of each component is positive (eigenvectors have no sign of their own).
fn pca_init(x: &Tensor) -> Vec<[f32; 2]> {
    let n = x.size()[0];
    if n == 0 {
        return vec![];
    }
    let xc = x.to_kind(Kind::Double) - x.to_kind(Kind::Double).mean_dim(0, true, Kind::Double);
    let cov = xc.tr().matmul(&xc);
    let (_, vecs) = cov.linalg_eigh("L");
    let d = vecs.size()[1];
    let mut comps = vec![];
    for c in [d - 1, d - 2] {
        if c < 0 {
            comps.push(Tensor::zeros([n], (Kind::Double, x.device())));
            continue;
        }
        let v = vecs.select(1, c);
        let sign = v.gather(0, &v.abs().argmax(0, true), false).sign();
        comps.push(xc.matmul(&(v * sign)));
    }
    let y = Tensor::stack(&comps, 1);
    let scale = y.abs().max().double_value(&[]);
    let y = if scale > 0.0 { y * (10.0 / scale) } else { y };
    let flat: Vec<f64> = Vec::try_from(y.flatten(0, -1)).unwrap_or_default();
    flat.chunks(2).map(|p| [p[0] as f32, p[1] as f32]).collect()
}

fn clip(v: f64) -> f64 {
    v.clamp(-4.0, 4.0)
}

/// umap-learn's `optimize_layout_euclidean`: each edge is sampled in proportion to its weight,
/// pulls its ends together, and pushes the head away from `negative_sample_rate` random points.
fn optimize(y: &mut [[f32; 2]], edges: &[(usize, usize, f64)], n_epochs: usize, p: &UmapParams) {
    let max_w = edges.iter().map(|e| e.2).fold(0.0, f64::max);
    let kept: Vec<&(usize, usize, f64)> = edges.iter().filter(|e| e.2 >= max_w / n_epochs as f64).collect();
    let eps: Vec<f64> = kept.iter().map(|e| max_w / e.2).collect();
    let eps_neg: Vec<f64> = eps.iter().map(|e| e / p.negative_sample_rate as f64).collect();
    let mut next = eps.clone();
    let mut next_neg = eps_neg.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let n = y.len();
    let (a, b) = (p.a, p.b);
    for epoch in 0..n_epochs {
        let alpha = 1.0 - epoch as f64 / n_epochs as f64;
        let now = epoch as f64;
        for (e, &&(j, k, _)) in kept.iter().enumerate() {
            if next[e] > now {
                continue;
            }
            let (yj, yk) = (y[j], y[k]);
            let d2 = dist2(yj, yk);
            if d2 > 0.0 {
                let coeff = -2.0 * a * b * d2.powf(b - 1.0) / (a * d2.powf(b) + 1.0);
                for dim in 0..2 {
                    let g = clip(coeff * (yj[dim] - yk[dim]) as f64) * alpha;
                    y[j][dim] += g as f32;
                    y[k][dim] -= g as f32;
                }
            }
            next[e] += eps[e];
            let n_neg = ((now - next_neg[e]) / eps_neg[e]).floor().max(0.0) as usize;
            for _ in 0..n_neg {
                let other = rng.random_range(0..n);
                if other == j {
                    continue;
                }
                let (yj, yo) = (y[j], y[other]);
                let d2 = dist2(yj, yo);
                for dim in 0..2 {
                    let g =
                        if d2 > 0.0 { clip(2.0 * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0)) * (yj[dim] - yo[dim]) as f64) } else { 4.0 };
                    y[j][dim] += (g * alpha) as f32;
                }
            }
            next_neg[e] += n_neg as f64 * eps_neg[e];
        }
    }
}

fn dist2(a: [f32; 2], b: [f32; 2]) -> f64 {
    let (dx, dy) = ((a[0] - b[0]) as f64, (a[1] - b[1]) as f64);
    dx * dx + dy * dy
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Three well-separated clusters in 16-d.
    fn blobs(seed: i64) -> (Tensor, Vec<usize>) {
        tch::manual_seed(seed);
        let centres = Tensor::randn([3, 16], (Kind::Float, Device::Cpu)) * 4.0;
        let labels: Vec<usize> = (0..90).map(|i| i % 3).collect();
        let idx = Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
        let x = centres.index_select(0, &idx) + Tensor::randn([90, 16], (Kind::Float, Device::Cpu));
        (crate::eval::features::l2_normalize(&x), labels)
    }

    #[test]
    fn same_seed_same_map_and_clusters_stay_apart() {
        let (x, labels) = blobs(1);
        let p = UmapParams { n_epochs: 100, ..Default::default() };
        let a = umap(&x, &p);
        assert_eq!(a, umap(&x, &p), "reproducible with a fixed seed");
        assert_ne!(a, umap(&x, &UmapParams { seed: 7, ..p }), "the seed matters");
        assert!(a.iter().all(|q| q[0].is_finite() && q[1].is_finite()));
        // Mean distance within a cluster well under the mean distance between clusters.
        let (mut within, mut between, mut nw, mut nb) = (0.0, 0.0, 0, 0);
        for i in 0..a.len() {
            for j in i + 1..a.len() {
                let d = dist2(a[i], a[j]).sqrt();
                if labels[i] == labels[j] {
                    within += d;
                    nw += 1;
                } else {
                    between += d;
                    nb += 1;
                }
            }
        }
        let (within, between) = (within / nw as f64, between / nb as f64);
        assert!(within * 3.0 < between, "within {within:.2}, between {between:.2}");
    }

    #[test]
    fn pca_init_is_scaled_and_tiny_inputs_work() {
        let (x, _) = blobs(2);
        let y = pca_init(&x);
        let m = y.iter().flat_map(|p| p.iter()).fold(0f32, |m, v| m.max(v.abs()));
        assert!((m - 10.0).abs() < 1e-3, "{m}");
        assert_eq!(umap(&x.narrow(0, 0, 2), &UmapParams::default()).len(), 2);
        assert!(umap(&x.narrow(0, 0, 0), &UmapParams::default()).is_empty());
    }

    #[test]
    fn sigma_makes_memberships_sum_to_log2_k() {
        let d = [0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.2, 1.5];
        let rho = 0.1;
        let s = smooth_knn_sigma(&d, rho);
        let sum: f64 = d.iter().map(|&v| if v <= rho { 1.0 } else { (-(v - rho) / s).exp() }).sum();
        assert!((sum - 3.0).abs() < 1e-3, "{sum}");
    }
}
