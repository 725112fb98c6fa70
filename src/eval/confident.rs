//! Confident learning (Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty
//! in Dataset Labels", JAIR 2021; the method behind cleanlab) on frozen features: out-of-fold class
//! probabilities from a linear probe trained K times (stratified K-fold cross-validation, each
//! image scored by the probe that never saw it), each image's mislabel score 1 - p(its label)
//! ("self-confidence"), and the confident joint: for every (given label, likely true class) pair,
//! the images whose probability for a class reaches that class's own average.
//!
//! The probe is multinomial logistic regression on standardised features, full batch, with an L2
//! penalty, from zero weights: convex, so the same features give the same probabilities.

use super::EvalError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// How the out-of-fold probabilities are computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeParams {
    /// K of the K-fold cross-validation (at least 2).
    pub folds: usize,
    /// Full-batch Adam steps per fold.
    pub steps: usize,
    pub lr: f64,
    /// L2 penalty on the weights (on standardised features).
    pub weight_decay: f64,
    /// Seed of the fold assignment.
    pub seed: u64,
}

impl Default for ProbeParams {
    fn default() -> Self {
        Self { folds: 5, steps: 200, lr: 0.01, weight_decay: 0.01, seed: 0 }
    }
}

/// The fold of every image: each class's images shuffled (seeded) and dealt round-robin, so every
/// fold holds about the same share of every class.
pub fn stratified_folds(labels: &[usize], folds: usize, seed: u64) -> Vec<usize> {
    let folds = folds.max(2);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut fold = vec![0; labels.len()];
    let mut next = 0;
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        idx.shuffle(&mut rng);
        for i in idx {
            fold[i] = next % folds;
            next += 1;
        }
    }
    fold
}

/// Trains the probe on `x`, `y` and returns the class probabilities of `query`, [M, C] float64.
fn probe_probs(x: &Tensor, y: &Tensor, query: &Tensor, num_classes: usize, p: &ProbeParams) -> Result<Tensor, EvalError> {
    let mean = x.mean_dim(0, true, Kind::Float);
    let std = x.std_dim(0, false, true).clamp_min(1e-6);
    let standard = |t: &Tensor| (t - &mean) / &std;
    let (xs, qs) = (standard(x), standard(query));
    let vs = nn::VarStore::new(Device::Cpu);
    let zero = nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true };
    let linear = nn::linear(vs.root(), x.size()[1], num_classes as i64, zero);
    let mut opt = nn::Adam::default().build(&vs, p.lr)?;
    for _ in 0..p.steps {
        let logits = xs.apply(&linear);
        let loss = logits.cross_entropy_for_logits(y) + linear.ws.square().sum(Kind::Float) * p.weight_decay;
        opt.backward_step(&loss);
    }
    Ok(tch::no_grad(|| qs.apply(&linear).to_kind(Kind::Double).softmax(-1, Kind::Double)))
}

/// Out-of-fold probabilities, one row per image, [N][C]: image i's row comes from the probe
/// trained on every fold but its own. Features on the CPU (any normalisation: they are
/// standardised per fold).
pub fn out_of_fold_probs(features: &Tensor, labels: &[usize], num_classes: usize, p: &ProbeParams) -> Result<Vec<Vec<f64>>, EvalError> {
    let n = labels.len();
    let mut out = vec![vec![0.0; num_classes]; n];
    if n < 2 || num_classes < 2 {
        return Ok(out.into_iter().map(|_| vec![1.0 / num_classes.max(1) as f64; num_classes]).collect());
    }
    let fold = stratified_folds(labels, p.folds, p.seed);
    let x = features.to_device(Device::Cpu).to_kind(Kind::Float);
    let index = |ids: &[usize]| Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>());
    for f in 0..p.folds.max(2) {
        let held: Vec<usize> = (0..n).filter(|&i| fold[i] == f).collect();
        let train: Vec<usize> = (0..n).filter(|&i| fold[i] != f).collect();
        if held.is_empty() || train.is_empty() {
            continue;
        }
        let y = Tensor::from_slice(&train.iter().map(|&i| labels[i] as i64).collect::<Vec<_>>());
        let probs = probe_probs(&x.index_select(0, &index(&train)), &y, &x.index_select(0, &index(&held)), num_classes, p)?;
        let flat: Vec<f64> = Vec::try_from(probs.flatten(0, -1))?;
        for (r, &i) in held.iter().enumerate() {
            out[i].copy_from_slice(&flat[r * num_classes..(r + 1) * num_classes]);
        }
    }
    Ok(out)
}

/// 1 - p(given label): the mislabel score ("self-confidence" ranking) of every image.
pub fn self_confidence(probs: &[Vec<f64>], labels: &[usize]) -> Vec<f64> {
    probs.iter().zip(labels).map(|(p, &l)| 1.0 - p.get(l).copied().unwrap_or(0.0)).collect()
}

/// The confident joint of the paper: `counts[given][likely]` images, and for each image the
/// likely class it was counted under when that differs from its label (a likely label error).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfidentJoint {
    pub counts: Vec<Vec<usize>>,
    /// Per class j: the mean p(j) over the images labelled j.
    pub thresholds: Vec<f64>,
    pub suggested: Vec<Option<usize>>,
}

impl ConfidentJoint {
    /// Off-diagonal total: the estimated number of label errors.
    pub fn num_errors(&self) -> usize {
        self.counts.iter().enumerate().map(|(i, row)| row.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, c)| c).sum::<usize>()).sum()
    }
}

/// Image x with label i counts in `counts[i][j]` for the class j of highest p(j) among the classes
/// whose p(j) reaches their threshold t_j = mean of p(j) over the images labelled j; an image
/// reaching no threshold is not counted.
pub fn confident_joint(probs: &[Vec<f64>], labels: &[usize], num_classes: usize) -> ConfidentJoint {
    let mut sums = vec![(0.0f64, 0usize); num_classes];
    for (p, &l) in probs.iter().zip(labels) {
        if let (Some(s), Some(&v)) = (sums.get_mut(l), p.get(l)) {
            s.0 += v;
            s.1 += 1;
        }
    }
    // A class with no image has no threshold: nothing is counted under it.
    let thresholds: Vec<f64> = sums.iter().map(|&(s, n)| if n == 0 { f64::INFINITY } else { s / n as f64 }).collect();
    let mut counts = vec![vec![0; num_classes]; num_classes];
    let mut suggested = vec![None; labels.len()];
    for (i, (p, &l)) in probs.iter().zip(labels).enumerate() {
        let best = (0..num_classes).filter(|&j| p[j] >= thresholds[j]).max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)));
        if let (Some(j), true) = (best, l < num_classes) {
            counts[l][j] += 1;
            suggested[i] = (j != l).then_some(j);
        }
    }
    ConfidentJoint { counts, thresholds, suggested }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confident_joint_and_self_confidence_match_the_hand_computation() {
        // Two classes. Thresholds: t0 = mean(0.9, 0.8, 0.2) = 0.6333, t1 = mean(0.7, 0.9) = 0.8.
        let probs = vec![vec![0.9, 0.1], vec![0.8, 0.2], vec![0.2, 0.8], vec![0.3, 0.7], vec![0.1, 0.9]];
        let labels = [0, 0, 0, 1, 1];
        let cj = confident_joint(&probs, &labels, 2);
        assert!((cj.thresholds[0] - 1.9 / 3.0).abs() < 1e-12 && (cj.thresholds[1] - 0.8).abs() < 1e-12);
        // Image 2 (label 0): p1 = 0.8 >= t1, p0 = 0.2 < t0: counted [0][1], a likely error.
        // Image 3 (label 1): p1 = 0.7 < 0.8, p0 = 0.3 < t0: not counted.
        assert_eq!(cj.counts, vec![vec![2, 1], vec![0, 1]]);
        assert_eq!(cj.suggested, vec![None, None, Some(1), None, None]);
        assert_eq!(cj.num_errors(), 1);
        let sc = self_confidence(&probs, &labels);
        let want = [0.1, 0.2, 0.8, 0.3, 0.1];
        assert!(sc.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{sc:?}");
    }

    #[test]
    fn folds_are_stratified_and_seeded() {
        let labels: Vec<usize> = (0..50).map(|i| i % 2).collect();
        let f = stratified_folds(&labels, 5, 1);
        for fold in 0..5 {
            for c in 0..2 {
                assert_eq!((0..50).filter(|&i| f[i] == fold && labels[i] == c).count(), 5, "fold {fold} class {c}");
            }
        }
        assert_eq!(f, stratified_folds(&labels, 5, 1));
        assert_ne!(f, stratified_folds(&labels, 5, 2));
    }

    #[test]
    fn out_of_fold_probabilities_find_the_flipped_label() {
        // Two well-separated clusters in 4-d, 20 images each; image 3 of cluster 0 is labelled 1.
        tch::manual_seed(0);
        let c0 = Tensor::randn([20, 4], (Kind::Float, Device::Cpu)) * 0.3 + Tensor::from_slice(&[3.0f32, 0.0, 0.0, 0.0]);
        let c1 = Tensor::randn([20, 4], (Kind::Float, Device::Cpu)) * 0.3 + Tensor::from_slice(&[0.0f32, 3.0, 0.0, 0.0]);
        let x = Tensor::cat(&[c0, c1], 0);
        let mut labels: Vec<usize> = (0..40).map(|i| i / 20).collect();
        labels[3] = 1;
        let probs = out_of_fold_probs(&x, &labels, 2, &ProbeParams::default()).unwrap();
        assert!(probs.iter().all(|p| (p.iter().sum::<f64>() - 1.0).abs() < 1e-9));
        let sc = self_confidence(&probs, &labels);
        let top = (0..40).max_by(|&a, &b| sc[a].total_cmp(&sc[b])).unwrap();
        assert_eq!(top, 3, "{sc:?}");
        assert!(sc[3] > 0.9 && sc[10] < 0.1, "{} {}", sc[3], sc[10]);
        assert_eq!(confident_joint(&probs, &labels, 2).suggested[3], Some(0));
        assert_eq!(probs, out_of_fold_probs(&x, &labels, 2, &ProbeParams::default()).unwrap(), "deterministic");
    }
}
