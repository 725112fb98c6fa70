//! The DINO loss: cross-entropy between the centred, sharpened teacher distribution of each global
//! view and the student distribution of every other view, with the centre updated as an EMA of the
//! teacher's batch mean.
//!
//! The loss is a sum of independent terms, one per (teacher view, student view) pair, so the
//! student's views can be pushed through forward and backward in chunks (`student_terms`) with
//! exactly the gradient of the whole; that is what keeps training memory bounded.

use tch::{Kind, Tensor};

pub const STUDENT_TEMP: f64 = 0.1;
pub const CENTER_MOMENTUM: f64 = 0.9;

pub struct DinoLoss {
    pub ncrops: i64,
    /// DINO's centre, an EMA of the teacher's batch mean. Kept up to date under Sinkhorn-Knopp
    /// too (unused there), so a checkpoint can switch back.
    pub center: Tensor,
    /// Teacher targets by Sinkhorn-Knopp (DINOv2) instead of centring.
    pub sinkhorn: bool,
}

/// The loss and two collapse diagnostics computed from the same softmaxes.
pub struct LossOutput {
    pub loss: Tensor,
    /// Mean entropy (nats) of the teacher's distributions.
    pub teacher_entropy: f64,
    /// Mean KL(teacher || student) over the view pairs: the loss minus the teacher's entropy.
    pub kl: f64,
}

/// The teacher's centred and sharpened distributions, one [B, K] tensor per global view.
pub struct TeacherTargets {
    pub probs: Vec<Tensor>,
    pub entropy: f64,
}

/// DINOv2's KoLeo regulariser (Sablayrolles et al. 2019): minus the mean log distance from each
/// L2-normalised feature to its nearest neighbour in the batch, a differential-entropy estimate
/// whose gradient pushes close features apart, so a batch spreads over the sphere. `features`
/// [B, D], B >= 2; float32 whatever the input's dtype, as DINOv2 computes it outside autocast.
pub fn koleo(features: &Tensor) -> Tensor {
    const EPS: f64 = 1e-8;
    let x = features.to_kind(Kind::Float);
    let x = &x / x.norm_scalaropt_dim(2, [-1], true).clamp_min(EPS);
    let n = x.size()[0];
    let nearest = tch::no_grad(|| {
        let dots = x.mm(&x.tr());
        // Not itself: the diagonal below any other similarity (cosines are >= -1).
        let eye = Tensor::eye(n, (Kind::Bool, x.device()));
        dots.masked_fill(&eye, -2.0).argmax(1, false)
    });
    // `pairwise_distance` adds EPS to the difference as torch.nn.PairwiseDistance does.
    let d = Tensor::pairwise_distance(&x, &x.index_select(0, &nearest), 2.0, EPS, false);
    -(d + EPS).log().mean(Kind::Float)
}

/// DINOv2's teacher targets: `exp(logits / temp)` rescaled by three Sinkhorn-Knopp iterations so
/// that each of the K prototypes carries 1/K of the batch's mass and each of the B rows sums to 1.
/// In the log domain: at a temperature of 0.02 the logits span up to 100 nats, where `exp`
/// underflows and DINOv2's plain version divides zero by zero. `logits` [B, K]; single process
/// (DINOv2 all-reduces the sums).
pub fn sinkhorn_knopp(logits: &Tensor, temp: f64) -> Tensor {
    let (b, k) = (logits.size()[0] as f64, logits.size()[1] as f64);
    let mut log_q = logits.to_kind(Kind::Float) / temp;
    for _ in 0..3 {
        log_q = &log_q - log_q.logsumexp([0], true) - k.ln();
        log_q = &log_q - log_q.logsumexp([1], true) - b.ln();
    }
    (log_q + b.ln()).exp()
}

impl DinoLoss {
    pub fn new(out_dim: i64, ncrops: i64, device: tch::Device) -> Self {
        Self { ncrops, center: Tensor::zeros([1, out_dim], (Kind::Float, device)), sinkhorn: false }
    }

    /// Number of (teacher view, student view) pairs with different views.
    pub fn n_terms(&self) -> i64 {
        2 * (self.ncrops - 1)
    }

    pub fn teacher_targets(&self, teacher_output: &Tensor, teacher_temp: f64) -> TeacherTargets {
        tch::no_grad(|| {
            let q = if self.sinkhorn {
                sinkhorn_knopp(teacher_output, teacher_temp)
            } else {
                ((teacher_output - &self.center) / teacher_temp).softmax(-1, Kind::Float)
            };
            let entropy = (-(&q * q.clamp_min(1e-30).log())).sum_dim_intlist(-1, false, Kind::Float).mean(Kind::Float).double_value(&[]);
            TeacherTargets { probs: q.chunk(2, 0), entropy }
        })
    }

    /// The share of the loss contributed by student views `first_view..` (their logits stacked in
    /// `student_logits`, [n*B, K]), already divided by the number of terms.
    pub fn student_terms(&self, student_logits: &Tensor, first_view: usize, targets: &TeacherTargets) -> Option<Tensor> {
        let student = (student_logits / STUDENT_TEMP).log_softmax(-1, Kind::Float);
        let views = student.size()[0] / targets.probs[0].size()[0];
        let student = student.chunk(views, 0);
        let mut total: Option<Tensor> = None;
        // Same pair order as the reference: teacher view outer, student view inner.
        for (iq, q) in targets.probs.iter().enumerate() {
            for (j, s) in student.iter().enumerate() {
                if first_view + j == iq {
                    continue;
                }
                let term = (-q * s).sum_dim_intlist(-1, false, Kind::Float).mean(Kind::Float);
                total = Some(match total {
                    Some(t) => t + term,
                    None => term,
                });
            }
        }
        total.map(|t| t / self.n_terms() as f64)
    }

    /// The whole loss at once (all views), as the reference computes it; updates the centre.
    pub fn forward(&mut self, student_output: &Tensor, teacher_output: &Tensor, teacher_temp: f64) -> LossOutput {
        let targets = self.teacher_targets(teacher_output, teacher_temp);
        let loss =
            self.student_terms(student_output, 0, &targets).unwrap_or_else(|| Tensor::zeros([], (Kind::Float, student_output.device())));
        let kl = loss.double_value(&[]) - targets.entropy;
        self.update_center(teacher_output);
        LossOutput { loss, teacher_entropy: targets.entropy, kl }
    }

    pub fn update_center(&mut self, teacher_output: &Tensor) {
        let n = teacher_output.size()[0] as f64;
        let sum = tch::no_grad(|| teacher_output.sum_dim_intlist(0, true, Kind::Float));
        self.update_center_from_sum(&sum, n);
    }

    /// The centre update from the teacher outputs' sum over `n` rows (all ranks' when distributed).
    pub fn update_center_from_sum(&mut self, sum: &Tensor, n: f64) {
        tch::no_grad(|| {
            self.center = &self.center * CENTER_MOMENTUM + (sum / n) * (1.0 - CENTER_MOMENTUM);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Three points on the unit circle at 0, 0.1 and 1 rad, given at other lengths (the term
    /// normalises): the first two are each other's nearest, the third's is the second; chord
    /// lengths 2 sin(0.05) and 2 sin(0.45). Its gradient moves the close pair apart.
    #[test]
    fn koleo_is_minus_the_mean_log_nearest_neighbour_distance() {
        let angles = [0.0f32, 0.1, 1.0];
        let lengths = [1.0f32, 3.0, 0.5];
        let xy: Vec<f32> = angles.iter().zip(lengths).flat_map(|(a, l)| [l * a.cos(), l * a.sin()]).collect();
        let x = Tensor::from_slice(&xy).view([3, 2]).set_requires_grad(true);
        let loss = koleo(&x);
        let (near, far) = ((2.0 * 0.05f64.sin()).ln(), (2.0 * 0.45f64.sin()).ln());
        let expected = -(2.0 * near + far) / 3.0;
        assert!((loss.double_value(&[]) - expected).abs() < 1e-5, "{} against {expected}", loss.double_value(&[]));
        loss.backward();
        // Along the circle (perpendicular to the point), the first point is pushed away from the
        // second (towards negative angles), the second towards the third.
        let g = x.grad();
        let tangential = |i: i64, a: f32| -g.double_value(&[i, 0]) * f64::from(a.sin()) + g.double_value(&[i, 1]) * f64::from(a.cos());
        assert!(tangential(0, 0.0) > 0.0 && tangential(1, 0.1) < 0.0, "descent spreads the pair");
        assert_eq!(koleo(&Tensor::ones([4, 8], (Kind::BFloat16, Device::Cpu))).kind(), Kind::Float);
    }

    /// DINOv2's Sinkhorn-Knopp written as it is (plain `exp`, three iterations, float64 here so
    /// nothing underflows) gives the same targets; rows sum to 1 and the prototypes share the
    /// batch almost equally (three iterations do not converge fully); at a temperature whose
    /// logits span 100 nats the log-domain version stays finite.
    #[test]
    fn sinkhorn_knopp_is_dinov2s_and_balances_the_prototypes() {
        tch::manual_seed(3);
        let logits = Tensor::randn([16, 8], (Kind::Float, Device::Cpu)) + Tensor::arange(8, (Kind::Float, Device::Cpu)) * 0.3;
        let temp = 0.5;
        let mut q = (logits.to_kind(Kind::Double) / temp).exp().tr();
        q = &q / q.sum(Kind::Double);
        for _ in 0..3 {
            q = &q / q.sum_dim_intlist(1, true, Kind::Double) / 8.0;
            q = &q / q.sum_dim_intlist(0, true, Kind::Double) / 16.0;
        }
        let reference = (q * 16.0).tr();
        let ours = sinkhorn_knopp(&logits, temp);
        let diff = f64::try_from((ours.to_kind(Kind::Double) - &reference).abs().max()).unwrap();
        assert!(diff < 1e-5, "{diff}");
        let rows = ours.sum_dim_intlist(1, false, Kind::Float);
        assert!(rows.allclose(&Tensor::ones([16], (Kind::Float, Device::Cpu)), 1e-5, 1e-5, false));
        let mass = ours.sum_dim_intlist(0, false, Kind::Float) / 16.0;
        let (lo, hi) = (mass.min().double_value(&[]), mass.max().double_value(&[]));
        assert!(lo > 0.1 && hi < 0.15, "each prototype near 1/8 of the batch: {lo}..{hi}");
        // The softmax alone gives the last prototypes more than twice their share.
        let plain = (&logits / temp).softmax(-1, Kind::Float).sum_dim_intlist(0, false, Kind::Float) / 16.0;
        assert!(plain.max().double_value(&[]) > 0.25);
        let sharp = sinkhorn_knopp(&(logits * 2.0), 0.02);
        assert!(bool::try_from(sharp.isfinite().all()).unwrap(), "no 0/0 at temperature 0.02");
    }
}
