//! Optimizers written against the reference's arithmetic: AdamW as `torch.optim.AdamW`, SGD with
//! momentum 0.9 as `torch.optim.SGD`, and the reference's LARS. Parameters are split into the
//! reference's two groups: weight decay (scheduled) on the first, none on biases and 1-D tensors.
//! A parameter the step is told to skip (the frozen last layer) is left untouched, decay included,
//! and its state does not advance, as when PyTorch sees a `None` gradient.

use crate::config::OptimizerKind;
use std::collections::BTreeMap;
use tch::Tensor;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;
const MOMENTUM: f64 = 0.9;
const LARS_ETA: f64 = 0.001;

/// Whether the reference puts a parameter in the weight-decayed group.
pub fn is_regularized(name: &str, param: &Tensor) -> bool {
    !(name.ends_with(".bias") || param.dim() == 1)
}

/// Per-parameter optimizer state. Tensors are created on first use, as PyTorch does.
#[derive(Debug, Default)]
pub struct ParamState {
    pub step: u64,
    /// AdamW: exp_avg; SGD: momentum buffer; LARS: mu.
    pub buf1: Option<Tensor>,
    /// AdamW: exp_avg_sq.
    pub buf2: Option<Tensor>,
}

pub struct Optimizer {
    pub kind: OptimizerKind,
    /// (name, parameter) in one fixed order.
    params: Vec<(String, Tensor)>,
    pub state: BTreeMap<String, ParamState>,
}

impl Optimizer {
    /// `params` are the trainable variables; the order given is the order of every step.
    pub fn new(kind: OptimizerKind, params: Vec<(String, Tensor)>) -> Self {
        Self { kind, params, state: BTreeMap::new() }
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Readies the gradients for a new backward pass: dropped (`drop`, PyTorch's default
    /// `set_to_none`: their memory is free during the forward pass) or zeroed in place.
    pub fn zero_grad(&self, drop: bool) {
        let params = self.params.iter().map(|(_, p)| p);
        if drop {
            crate::model::grads::clear(params);
        } else {
            crate::model::grads::zero(params);
        }
    }

    /// The reference's `clip_gradients`: each parameter's gradient is scaled to norm at most `clip`
    /// on its own (not a global norm). Returns the norms before clipping.
    pub fn clip_gradients(&self, clip: f64) -> Vec<f64> {
        tch::no_grad(|| self.params.iter().filter_map(|(_, p)| clip_one(&p.grad(), clip)).collect())
    }

    /// One step with the group-0 weight decay `wd` and learning rate `lr`; parameters for which
    /// `skip(name)` holds are left alone this step.
    pub fn step(&mut self, lr: f64, wd: f64, skip: impl Fn(&str) -> bool) {
        tch::no_grad(|| {
            for (name, p) in &self.params {
                let grad = p.grad();
                if grad.defined() && !skip(name) {
                    step_one(self.kind, &mut self.state, name, p, &grad, lr, wd);
                }
            }
        });
    }

    /// Runs `backward` (one backward pass over gradients that [`Self::zero_grad`] dropped) and
    /// does the work of [`Self::clip_gradients`] (`clip` > 0) and [`Self::step`] on each parameter
    /// the moment its gradient is complete, then drops that gradient: PyTorch's "optimizer step
    /// in backward". Every parameter gets the same arithmetic as the two calls after the pass,
    /// since both are per parameter (the reference clips each gradient on its own), so the result
    /// is the same to the bit; but the whole network's gradients never exist at once, beside the
    /// activations the pass has yet to free (the cifar-quick step: 54 MB of them). `Err` (no shim
    /// in this build, or the hook refused): nothing ran, and the caller takes the two calls.
    pub fn step_in_backward(
        &mut self,
        clip: f64,
        lr: f64,
        wd: f64,
        skip: impl Fn(&str) -> bool,
        backward: impl FnOnce(),
    ) -> Result<(), String> {
        let Self { kind, params, state } = self;
        let leaves: Vec<&Tensor> = params.iter().map(|(_, p)| p).collect();
        let mut ready = |i: usize| {
            let (name, p) = &params[i];
            tch::no_grad(|| {
                let grad = p.grad();
                if clip > 0.0 {
                    clip_one(&grad, clip);
                }
                if grad.defined() && !skip(name) {
                    step_one(*kind, state, name, p, &grad, lr, wd);
                }
            });
            crate::model::grads::clear([p]);
        };
        crate::model::grads::with_ready_hooks(&leaves, &mut ready, backward)
    }
}

/// `clip_gradients` for one gradient (in place); its norm before clipping, `None` when undefined.
fn clip_one(grad: &Tensor, clip: f64) -> Option<f64> {
    if !grad.defined() {
        return None;
    }
    let norm = grad.norm();
    let before = norm.double_value(&[]);
    // clip / (norm + 1e-6) computed as the reference does: in float32 on the tensor.
    let coef = (norm + 1e-6).reciprocal() * clip;
    if coef.double_value(&[]) < 1.0 {
        let _ = grad.shallow_clone().g_mul_(&coef);
    }
    Some(before)
}

/// The optimizer's update of one parameter from its gradient; its state is created on first use.
fn step_one(kind: OptimizerKind, states: &mut BTreeMap<String, ParamState>, name: &str, p: &Tensor, grad: &Tensor, lr: f64, wd: f64) {
    let decay = if is_regularized(name, p) { wd } else { 0.0 };
    let state = states.entry(name.to_string()).or_default();
    let mut p = p.shallow_clone();
    match kind {
        OptimizerKind::Adamw => adamw(&mut p, grad, state, lr, decay),
        OptimizerKind::Sgd => sgd(&mut p, grad, state, lr, decay),
        OptimizerKind::Lars => lars(&mut p, grad, state, lr, decay),
    }
}

fn adamw(p: &mut Tensor, grad: &Tensor, st: &mut ParamState, lr: f64, wd: f64) {
    st.step += 1;
    let _ = p.g_mul_scalar_(1.0 - lr * wd);
    let exp_avg = st.buf1.get_or_insert_with(|| grad.zeros_like());
    let _ = exp_avg.lerp_(grad, 1.0 - BETA1);
    let exp_avg_sq = st.buf2.get_or_insert_with(|| grad.zeros_like());
    let _ = exp_avg_sq.g_mul_scalar_(BETA2);
    // torch's arithmetic, operation for operation, in two scratch tensors instead of a new one per
    // operation (six): each is a parameter-sized allocation and first touch, per parameter and step.
    let mut scratch = grad * grad;
    let _ = scratch.g_mul_scalar_(1.0 - BETA2);
    let _ = exp_avg_sq.g_add_(&scratch);
    let step = st.step as f64;
    let bias_correction1 = 1.0 - BETA1.powf(step);
    let bias_correction2 = 1.0 - BETA2.powf(step);
    let step_size = lr / bias_correction1;
    let mut denom = exp_avg_sq.sqrt();
    let _ = denom.g_div_scalar_(bias_correction2.sqrt());
    let _ = denom.g_add_scalar_(EPS);
    let _ = exp_avg.div_out(&scratch, &denom);
    let _ = scratch.g_mul_scalar_(-step_size);
    let _ = p.g_add_(&scratch);
}

fn sgd(p: &mut Tensor, grad: &Tensor, st: &mut ParamState, lr: f64, wd: f64) {
    st.step += 1;
    let d_p = if wd != 0.0 { grad + &*p * wd } else { grad.shallow_clone() };
    let buf = match st.buf1.take() {
        None => d_p.copy(),
        Some(mut b) => {
            let _ = b.g_mul_scalar_(MOMENTUM);
            let _ = b.g_add_(&d_p);
            b
        }
    };
    let _ = p.g_add_(&(&buf * (-lr)));
    st.buf1 = Some(buf);
}

/// The reference's LARS: weight decay and the trust ratio apply only to parameters with more
/// than one dimension.
fn lars(p: &mut Tensor, grad: &Tensor, st: &mut ParamState, lr: f64, wd: f64) {
    st.step += 1;
    let mut dp = grad.shallow_clone();
    if p.dim() != 1 {
        dp = &dp + &*p * wd;
        let param_norm = p.norm();
        let update_norm = dp.norm();
        let one = param_norm.ones_like();
        // torch.where(param_norm > 0, torch.where(update_norm > 0, eta * param_norm / update_norm, 1), 1)
        let trust = (&param_norm * LARS_ETA / &update_norm).where_self(&update_norm.gt(0.0), &one);
        let q = trust.where_self(&param_norm.gt(0.0), &one);
        dp *= q;
    }
    let mu = st.buf1.get_or_insert_with(|| p.zeros_like());
    let _ = mu.g_mul_scalar_(MOMENTUM);
    let _ = mu.g_add_(&dp);
    let _ = p.g_add_(&(&*mu * (-lr)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn param(values: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(values).reshape(shape).detach().set_requires_grad(true)
    }

    fn set_grad(p: &Tensor, g: &[f32]) {
        // A real backward pass through sum(p * g) leaves exactly g as the gradient.
        (p * Tensor::from_slice(g).reshape(p.size())).sum(Kind::Float).backward();
    }

    #[test]
    fn sgd_matches_torch_momentum_rule() {
        let p = param(&[1.0, 2.0], &[1, 2]);
        let leaf = p.shallow_clone();
        let mut opt = Optimizer::new(OptimizerKind::Sgd, vec![("w".into(), leaf.shallow_clone())]);
        set_grad(&leaf, &[0.5, -1.0]);
        opt.step(0.1, 0.01, |_| false);
        // d = g + wd*p = [0.51, -0.98]; buf = d; p -= 0.1*buf
        let v: Vec<f32> = Vec::try_from(leaf.flatten(0, -1)).unwrap();
        assert!((v[0] - (1.0 - 0.051)).abs() < 1e-6 && (v[1] - (2.0 + 0.098)).abs() < 1e-6, "{v:?}");
        opt.zero_grad(true);
        set_grad(&leaf, &[0.5, -1.0]);
        opt.step(0.1, 0.0, |_| false);
        // buf = 0.9*[0.51,-0.98] + [0.5,-1.0]
        let v2: Vec<f32> = Vec::try_from(leaf.flatten(0, -1)).unwrap();
        let b0 = 0.9 * 0.51 + 0.5;
        assert!((v2[0] as f64 - (v[0] as f64 - 0.1 * b0)).abs() < 1e-6, "{v2:?}");
    }

    #[test]
    fn lars_skips_adaptation_for_1d_params_and_scales_others() {
        let w = param(&[3.0, 4.0, 0.0, 0.0], &[2, 2]);
        let b = param(&[1.0, 1.0], &[2]);
        let mut opt =
            Optimizer::new(OptimizerKind::Lars, vec![("layer.weight".into(), w.shallow_clone()), ("layer.bias".into(), b.shallow_clone())]);
        set_grad(&w, &[1.0, 0.0, 0.0, 0.0]);
        set_grad(&b, &[2.0, 2.0]);
        opt.step(1.0, 0.0, |_| false);
        // weight: ||p|| = 5, ||dp|| = 1, q = 0.001*5 = 0.005: p0 = 3 - 0.005
        let wv: Vec<f32> = Vec::try_from(w.flatten(0, -1)).unwrap();
        assert!((wv[0] - 2.995).abs() < 1e-6, "{wv:?}");
        // bias: plain momentum step, no trust ratio, no decay: 1 - 2 = -1
        let bv: Vec<f32> = Vec::try_from(b).unwrap();
        assert!((bv[0] + 1.0).abs() < 1e-6, "{bv:?}");
    }

    #[test]
    fn skipped_params_keep_values_and_state() {
        let w = Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut opt = Optimizer::new(OptimizerKind::Adamw, vec![("head.last_layer.weight_v".into(), w.shallow_clone())]);
        (&w * 2.0).sum(Kind::Float).backward();
        opt.step(0.1, 0.5, |n| n.contains("last_layer"));
        assert!(w.equal(&Tensor::ones([2, 2], (Kind::Float, Device::Cpu))));
        assert!(opt.state.is_empty());
        opt.step(0.1, 0.5, |_| false);
        assert_eq!(opt.state["head.last_layer.weight_v"].step, 1);
        assert!(!w.equal(&Tensor::ones([2, 2], (Kind::Float, Device::Cpu))));
    }

    /// The in-place AdamW is torch's single-tensor AdamW written as plain expressions (a new
    /// tensor per operation), bit for bit, over three steps.
    #[test]
    fn adamw_in_place_is_the_expression_form_bit_for_bit() {
        tch::manual_seed(3);
        let p = Tensor::randn([16, 8, 3, 3], (Kind::Float, Device::Cpu));
        let (mut expected, mut m, mut v) = (p.copy(), p.zeros_like(), p.zeros_like());
        let mut state = ParamState::default();
        let (lr, wd) = (0.01, 0.04);
        for step in 1..=3 {
            let g = Tensor::randn([16, 8, 3, 3], (Kind::Float, Device::Cpu));
            expected = &expected * (1.0 - lr * wd);
            m = m.lerp(&g, 1.0 - BETA1);
            v = &v * BETA2 + &g * &g * (1.0 - BETA2);
            let (bc1, bc2) = (1.0 - BETA1.powf(step as f64), 1.0 - BETA2.powf(step as f64));
            expected = &expected + &m / (v.sqrt() / bc2.sqrt() + EPS) * (-lr / bc1);
            adamw(&mut p.shallow_clone(), &g, &mut state, lr, wd);
            assert!(p.equal(&expected), "step {step} differs");
        }
    }

    /// `step_in_backward` against `clip_gradients` + `step` after the pass, for each optimizer:
    /// a weight that two forward passes use (its gradient is the sum of both, complete only
    /// after the second), a bias, a skipped parameter, and gradients large enough to clip.
    #[test]
    fn step_in_backward_is_clip_and_step_after_the_pass() {
        for kind in [OptimizerKind::Adamw, OptimizerKind::Sgd, OptimizerKind::Lars] {
            // One draw for both runs (tests share the global generator).
            let init: Vec<Tensor> = [vec![4, 3], vec![4], vec![2, 4], vec![5, 3], vec![7, 3]]
                .iter()
                .map(|shape| Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)))
                .collect();
            let run = |in_backward: bool| {
                let leaf = |i: usize| init[i].copy().set_requires_grad(true);
                let (w, b, last) = (leaf(0), leaf(1), leaf(2));
                let (x1, x2) = (&init[3], &init[4]);
                let params = vec![
                    ("w".to_string(), w.shallow_clone()),
                    ("b".into(), b.shallow_clone()),
                    ("last_layer.w".into(), last.shallow_clone()),
                ];
                let mut opt = Optimizer::new(kind, params);
                for step in 0..3 {
                    opt.zero_grad(true);
                    let h1 = (x1.matmul(&w.tr()) + &b).relu().matmul(&last.tr());
                    let h2 = (x2.matmul(&w.tr()) + &b).tanh().matmul(&last.tr());
                    let loss = (h1.pow_tensor_scalar(2).sum(Kind::Float) + h2.sum(Kind::Float)) * 10.0;
                    let skip = |name: &str| step == 0 && name.starts_with("last_layer");
                    if in_backward {
                        if opt.step_in_backward(0.5, 0.1, 0.04, skip, || loss.backward()).is_err() {
                            return None; // a build without the shim
                        }
                        assert!(opt.params().iter().all(|(_, p)| !p.grad().defined()), "gradients dropped in the pass");
                    } else {
                        loss.backward();
                        let norms = opt.clip_gradients(0.5);
                        assert!(norms.iter().any(|&n| n > 0.5), "the test must clip something");
                        opt.step(0.1, 0.04, skip);
                    }
                }
                Some([w, b, last])
            };
            let (Some(a), Some(b)) = (run(true), run(false)) else { return };
            for (x, y) in a.iter().zip(&b) {
                assert!(x.equal(y), "{kind:?}: in-backward step differs");
            }
        }
    }

    #[test]
    fn groups_follow_the_reference_rule() {
        let t2 = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
        let t1 = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let t3 = Tensor::zeros([1, 1, 2], (Kind::Float, Device::Cpu));
        assert!(is_regularized("blocks.0.attn.qkv.weight", &t2));
        assert!(!is_regularized("blocks.0.norm1.weight", &t1));
        assert!(!is_regularized("x.bias", &t2));
        assert!(is_regularized("cls_token", &t3));
    }
}
