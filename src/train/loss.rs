//! The DINO loss: cross-entropy between the centred, sharpened teacher distribution of each global
//! view and the student distribution of every other view, with the centre updated as an EMA of the
//! teacher's batch mean.

use tch::{Kind, Tensor};

pub const STUDENT_TEMP: f64 = 0.1;
pub const CENTER_MOMENTUM: f64 = 0.9;

pub struct DinoLoss {
    pub ncrops: i64,
    pub center: Tensor,
}

/// The loss and two collapse diagnostics computed from the same softmaxes.
pub struct LossOutput {
    pub loss: Tensor,
    /// Mean entropy (nats) of the teacher's distributions.
    pub teacher_entropy: f64,
    /// Mean KL(teacher || student) over the view pairs: the loss minus the teacher's entropy.
    pub kl: f64,
}

impl DinoLoss {
    pub fn new(out_dim: i64, ncrops: i64, device: tch::Device) -> Self {
        Self { ncrops, center: Tensor::zeros([1, out_dim], (Kind::Float, device)) }
    }

    /// `student_output` is [ncrops*B, K] in crop order, `teacher_output` [2*B, K] (global views).
    /// Updates the centre afterwards, as the reference does.
    pub fn forward(&mut self, student_output: &Tensor, teacher_output: &Tensor, teacher_temp: f64) -> LossOutput {
        let student = (student_output / STUDENT_TEMP).log_softmax(-1, Kind::Float);
        let student = student.chunk(self.ncrops, 0);
        let teacher = tch::no_grad(|| ((teacher_output - &self.center) / teacher_temp).softmax(-1, Kind::Float));
        let teacher = teacher.chunk(2, 0);
        // Sum over the (teacher view, student view) pairs with different views, each the batch mean
        // of -sum(q * log p); summed in the reference's order so the numbers match its float path.
        let mut total: Option<Tensor> = None;
        let mut terms = 0;
        for (iq, q) in teacher.iter().enumerate() {
            for (v, s) in student.iter().enumerate() {
                if v == iq {
                    continue;
                }
                let term = (-q * s).sum_dim_intlist(-1, false, Kind::Float).mean(Kind::Float);
                total = Some(match total {
                    Some(t) => t + term,
                    None => term,
                });
                terms += 1;
            }
        }
        let loss = match total {
            Some(t) => t / terms as f64,
            None => Tensor::zeros([], (Kind::Float, student_output.device())),
        };
        let teacher_entropy = tch::no_grad(|| {
            let q = Tensor::cat(&teacher, 0);
            (-(&q * q.clamp_min(1e-30).log())).sum_dim_intlist(-1, false, Kind::Float).mean(Kind::Float).double_value(&[])
        });
        let kl = loss.double_value(&[]) - teacher_entropy;
        self.update_center(teacher_output);
        LossOutput { loss, teacher_entropy, kl }
    }

    fn update_center(&mut self, teacher_output: &Tensor) {
        tch::no_grad(|| {
            let n = teacher_output.size()[0] as f64;
            let batch_center = teacher_output.sum_dim_intlist(0, true, Kind::Float) / n;
            self.center = &self.center * CENTER_MOMENTUM + batch_center * (1.0 - CENTER_MOMENTUM);
        });
    }
}
