//! One DINO training iteration: student and teacher forward, loss, backward, per-parameter
//! gradient clipping, last-layer freezing, optimizer step and teacher EMA — in the reference's order.

use super::loss::DinoLoss;
use super::optim::Optimizer;
pub use super::precision::LossScaler;
use crate::config::TrainConfig;
use crate::model::autocast::Autocast;
use crate::model::{weights::named_tensors, DinoModel};
use tch::{nn::VarStore, Device, Tensor};

/// The student, the teacher and everything a step changes.
pub struct DinoState {
    pub student_vs: VarStore,
    pub teacher_vs: VarStore,
    pub student: DinoModel,
    pub teacher: DinoModel,
    pub loss: DinoLoss,
    pub optimizer: Optimizer,
    /// (student, teacher) tensor pairs that the EMA updates: parameters, not BatchNorm statistics.
    ema_pairs: Vec<(Tensor, Tensor)>,
    pub clip_grad: f64,
    pub freeze_last_layer: usize,
    /// Dynamic loss scaling, for float16 autocast (CUDA) only.
    pub amp: Option<LossScaler>,
    /// Mixed precision of the forward passes (`super::precision::choose`); loss and softmax stay
    /// float32 either way.
    pub autocast: Option<Autocast>,
    head_has_bn: bool,
    /// Weight of the KoLeo term on the student's global-view features (`loss::koleo`; 0: off).
    pub koleo_weight: f64,
    /// Whether a step with one backward pass clips and steps each parameter inside that pass
    /// (`Optimizer::step_in_backward`; on by default). The same arithmetic either way; off, the
    /// gradients all exist at once after the pass, as in the reference. For A/B measurements.
    pub optimizer_in_backward: bool,
    /// The other processes of a data-parallel job: gradients and the centre are averaged over them.
    group: Option<std::sync::Arc<crate::dist::ProcessGroup>>,
}

/// Values the schedules give for one iteration.
#[derive(Debug, Clone, Copy)]
pub struct StepParams {
    pub epoch: usize,
    pub lr: f64,
    pub wd: f64,
    pub momentum: f64,
    pub teacher_temp: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct StepOutput {
    /// The DINO loss (without the KoLeo term).
    pub loss: f64,
    /// The KoLeo term, summed over the global views, before its weight (0 when off).
    pub koleo: f64,
    pub teacher_entropy: f64,
    pub kl: f64,
    /// False when the step was skipped (mixed precision overflow).
    pub applied: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("loss is {0}: training would diverge")]
    NonFiniteLoss(f64),
    #[error("data-parallel step failed (another process gone?): {0}")]
    Distributed(#[from] crate::dist::DistError),
    #[error("mixed precision (use_fp16): {0}")]
    Autocast(#[from] crate::model::autocast::AutocastError),
}

fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

impl DinoState {
    /// Builds student and teacher from the config; the teacher starts as a copy of the student.
    pub fn new(c: &TrainConfig, device: Device) -> anyhow::Result<Self> {
        let student_vs = VarStore::new(device);
        let student = DinoModel::new(&student_vs.root(), &c.backbone_spec(c.model.drop_path_rate), c.head_spec(c.model.norm_last_layer));
        let mut teacher_vs = VarStore::new(device);
        let teacher = DinoModel::new(&teacher_vs.root(), &c.backbone_spec(0.0), c.head_spec(true));
        teacher_vs.copy(&student_vs)?;
        teacher_vs.freeze();
        let params: Vec<(String, Tensor)> = named_tensors(&student_vs).into_iter().filter(|(_, t)| t.requires_grad()).collect();
        let optimizer = Optimizer::new(c.optim.optimizer, params);
        let teacher_vars = named_tensors(&teacher_vs);
        let ema_pairs = named_tensors(&student_vs)
            .into_iter()
            .filter(|(k, _)| !is_buffer(k))
            .filter_map(|(k, s)| teacher_vars.get(&k).map(|t| (s, t.shallow_clone())))
            .collect();
        let autocast = super::precision::choose(c, device).autocast;
        let amp = autocast.filter(|a| a.dtype == crate::config::AmpDtype::Fp16).map(|_| LossScaler::new());
        Ok(Self {
            loss: DinoLoss {
                sinkhorn: c.teacher.centering == crate::config::Centering::SinkhornKnopp,
                ..DinoLoss::new(c.model.out_dim as i64, c.ncrops() as i64, device)
            },
            student_vs,
            teacher_vs,
            student,
            teacher,
            optimizer,
            ema_pairs,
            clip_grad: c.optim.clip_grad,
            freeze_last_layer: c.optim.freeze_last_layer,
            amp,
            autocast,
            head_has_bn: c.model.use_bn_in_head,
            koleo_weight: c.optim.koleo_loss_weight,
            optimizer_in_backward: true,
            group: None,
        })
    }

    /// How the student's views are grouped for forward and backward. Views interact only through
    /// the sum of loss terms, so any grouping gives the whole step's gradient, except where a
    /// BatchNorm sees the batch: the head's (when `use_bn_in_head`: one joint pass, as the
    /// reference) and a ResNet's (one pass per resolution, as the reference's wrapper does).
    /// ViT views of one resolution go in chunks of at most 1.5 global views' pixels per image
    /// (with the defaults: each global view alone, the local views together), which bounds
    /// activation memory by the largest chunk instead of all views together. Smaller chunks save
    /// little more memory and cost time (more, smaller passes).
    pub fn view_chunks(&self, crops: &[Tensor]) -> Vec<std::ops::Range<usize>> {
        if self.head_has_bn {
            return std::iter::once(0..crops.len()).collect();
        }
        let area = |t: &Tensor| {
            let s = t.size();
            s[2] * s[3]
        };
        let largest = crops.iter().map(area).max().unwrap_or(1).max(1);
        let is_vit = matches!(self.student.backbone, crate::model::Backbone::Vit(_));
        let mut chunks = vec![];
        let mut start = 0;
        while start < crops.len() {
            let a = area(&crops[start]);
            let per_chunk = if is_vit { (3 * largest / (2 * a.max(1))).max(1) as usize } else { usize::MAX };
            let mut end = start + 1;
            while end < crops.len() && area(&crops[end]) == a && end - start < per_chunk {
                end += 1;
            }
            chunks.push(start..end);
            start = end;
        }
        chunks
    }

    /// One iteration on `crops` (global views first). The teacher sees the two global views.
    pub fn step(&mut self, crops: &[Tensor], p: StepParams) -> Result<StepOutput, StepError> {
        let chunks = self.view_chunks(crops);
        // One backward pass (ResNets, a BatchNorm head): gradients dropped, so they never sit beside
        // the forward's activations (ResNet-18 cifar-quick step: peak RSS 653 -> 615 MB). Several
        // (ViT chunks): the gradients must outlive the first chunk anyway, and re-allocating them
        // every step amid the activations raised the vit_tiny/4 step's peak by 80-115 MB, so
        // they stay allocated and are zeroed (examples/bench_step, both ways, 2 runs each).
        self.optimizer.zero_grad(chunks.len() == 1);
        // One backward pass, no loss scaler and no gradient all-reduce: each parameter is clipped
        // and stepped inside the pass (`Optimizer::step_in_backward`), which lowers the ResNet
        // cifar-quick step's peak RSS (docs/benchmarks.md); the same arithmetic either way. On the
        // CPU only for now: on CUDA autograd calls the hooks from its device thread, which no
        // test here has run (no GPU on the machines this was written on).
        let cpu = self.student_vs.device() == Device::Cpu;
        let mut in_backward = self.optimizer_in_backward && cpu && chunks.len() == 1 && self.amp.is_none() && self.group.is_none();
        let mut stepped = false;
        let frozen = p.epoch < self.freeze_last_layer;
        let skip = |name: &str| frozen && name.contains("last_layer");
        let scale = self.amp.as_ref().map(|a| a.scale).unwrap_or(1.0);
        let teacher_out = self.mixed(|s| tch::no_grad(|| s.teacher.forward_multicrop(&crops[..2], true)))?.to_kind(tch::Kind::Float);
        let targets = self.loss.teacher_targets(&teacher_out, p.teacher_temp);
        let mut loss_value = 0.0;
        let mut koleo_value = 0.0;
        let batch = crops[0].size()[0];
        for range in chunks {
            let first = range.start;
            let (student_out, feats) = self.mixed(|s| s.student.forward_multicrop_with_features(&crops[range.clone()], true))?;
            let Some(mut part) = self.loss.student_terms(&student_out.to_kind(tch::Kind::Float), first, &targets) else {
                continue;
            };
            let v = part.double_value(&[]);
            if !v.is_finite() {
                return Err(StepError::NonFiniteLoss(v));
            }
            loss_value += v;
            if self.koleo_weight > 0.0 {
                // As DINOv2: one term per global view, over that view's batch.
                for view in range.clone().filter(|&v| v < 2) {
                    let term = super::loss::koleo(&feats.narrow(0, (view - first) as i64 * batch, batch));
                    let k = term.double_value(&[]);
                    if !k.is_finite() {
                        return Err(StepError::NonFiniteLoss(k));
                    }
                    koleo_value += k;
                    part += term * self.koleo_weight;
                }
            }
            if in_backward {
                match self.optimizer.step_in_backward(self.clip_grad, p.lr, p.wd, skip, || part.backward()) {
                    Ok(()) => {
                        stepped = true;
                        continue;
                    }
                    Err(why) => {
                        // Not retried each step: the shim is missing or refuses these tensors.
                        tracing::debug!("optimizer step after the backward pass: {why}");
                        self.optimizer_in_backward = false;
                        in_backward = false;
                    }
                }
            }
            (&part * scale).backward();
        }
        if let Some(g) = &self.group {
            g.average_gradients(self.optimizer.params())?;
            // The reference's `update_center`: all-reduced teacher-output sum over the global batch.
            let mut sum = tch::no_grad(|| teacher_out.sum_dim_intlist(0, true, tch::Kind::Float));
            g.all_reduce_sum(&mut sum)?;
            let n = teacher_out.size()[0] as f64 * g.world_size as f64;
            self.loss.update_center_from_sum(&sum, n);
        } else {
            self.loss.update_center(&teacher_out);
        }
        let out = StepOutput {
            loss: loss_value,
            koleo: koleo_value,
            teacher_entropy: targets.entropy,
            kl: loss_value - targets.entropy,
            applied: true,
        };
        if let Some(amp) = &mut self.amp {
            if !amp.unscale_and_check(&self.optimizer) {
                return Ok(StepOutput { applied: false, ..out });
            }
        }
        if !stepped {
            if self.clip_grad > 0.0 {
                self.optimizer.clip_gradients(self.clip_grad);
            }
            self.optimizer.step(p.lr, p.wd, skip);
        }
        self.ema(p.momentum);
        Ok(out)
    }

    /// `f` under this state's autocast (none: as it is). The backward pass runs outside, as
    /// PyTorch's AMP recipe has it: autograd replays each op in the dtype its forward used.
    fn mixed<T>(&self, f: impl FnOnce(&Self) -> T) -> Result<T, StepError> {
        match self.autocast {
            Some(a) => Ok(a.run(|| f(self))?),
            None => Ok(f(self)),
        }
    }

    /// Joins a data-parallel job: every rank takes rank 0's student (parameters and BatchNorm
    /// statistics, in name order) and the teacher restarts as its copy.
    pub fn join_group(&mut self, g: std::sync::Arc<crate::dist::ProcessGroup>) -> Result<(), crate::dist::DistError> {
        if self.loss.sinkhorn {
            // Its sums would have to be all-reduced over the processes, which `sinkhorn_knopp` does not do.
            return Err(crate::dist::DistError::C10d("--centering sinkhorn_knopp runs in one process only; use ema with several".into()));
        }
        let vars: Vec<Tensor> = named_tensors(&self.student_vs).into_values().collect();
        g.broadcast_all(&vars)?;
        tch::no_grad(|| self.teacher_vs.copy(&self.student_vs)).map_err(|e| crate::dist::DistError::C10d(e.to_string()))?;
        self.group = Some(g);
        Ok(())
    }

    /// Teacher = m * teacher + (1 - m) * student, over parameters paired by name.
    pub fn ema(&self, m: f64) {
        tch::no_grad(|| {
            for (s, t) in &self.ema_pairs {
                let mut t = t.shallow_clone();
                let _ = t.g_mul_scalar_(m);
                let _ = t.g_add_(&(s.detach() * (1.0 - m)));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn state(arch: crate::config::Arch, use_bn_in_head: bool) -> DinoState {
        let c = {
            let mut c = TrainConfig::default();
            c.model.arch = arch;
            c.model.patch_size = 4;
            c.model.embed_dim = Some(12);
            c.model.depth = Some(1);
            c.model.num_heads = Some(2);
            c.model.out_dim = 8;
            c.model.head_hidden_dim = 8;
            c.model.head_bottleneck_dim = 4;
            c.crops.global_crop_size = 32;
            c.crops.local_crop_size = 16;
            c.crops.local_crops_number = 6;
            c.model.use_bn_in_head = use_bn_in_head;
            c
        };
        DinoState::new(&c, Device::Cpu).unwrap()
    }

    fn crops() -> Vec<Tensor> {
        (0..8)
            .map(|i| Tensor::zeros([2, 3, if i < 2 { 32 } else { 16 }, if i < 2 { 32 } else { 16 }], (Kind::Float, Device::Cpu)))
            .collect()
    }

    #[test]
    fn view_chunks_follow_the_batchnorm_rules() {
        // ViT: each global view alone, the six 16 px views (1.5 global views of pixels) together.
        assert_eq!(state(crate::config::Arch::VitTiny, false).view_chunks(&crops()), vec![0..1, 1..2, 2..8]);
        // BatchNorm in the head sees the whole batch, as in the reference.
        assert_eq!(state(crate::config::Arch::VitTiny, true).view_chunks(&crops()), vec![0..8]);
        // ResNet: one pass per resolution, as the reference's multi-crop wrapper.
        assert_eq!(state(crate::config::Arch::ResNet18, false).view_chunks(&crops()), vec![0..2, 2..8]);
    }

    /// Stepping inside the backward pass is the same arithmetic as clipping and stepping after
    /// it: a ResNet with a batch-norm head (one backward pass, each weight used by two forward
    /// passes, one per resolution), three steps with clipping, the first with the last layer
    /// frozen, give bit-identical students, teachers and optimizer states.
    #[test]
    fn optimizer_in_backward_is_the_step_after_backward_to_the_bit() {
        // One draw of weights and crops for both runs: tests share the global generator, so
        // seeding it twice would not give the two runs the same numbers.
        let first = state(crate::config::Arch::ResNet18, true);
        let crops: Vec<Tensor> = crops().iter().map(|c| c.randn_like()).collect();
        let run = |in_backward: bool| {
            let mut s = state(crate::config::Arch::ResNet18, true);
            tch::no_grad(|| {
                s.student_vs.copy(&first.student_vs).unwrap();
                s.teacher_vs.copy(&first.teacher_vs).unwrap();
            });
            s.optimizer_in_backward = in_backward;
            s.clip_grad = 0.5;
            s.freeze_last_layer = 1;
            for epoch in 0..3 {
                let p = StepParams { epoch, lr: 0.01, wd: 0.04, momentum: 0.9, teacher_temp: 0.04 };
                s.step(&crops, p).unwrap();
                let left = s.optimizer.params().iter().filter(|(_, t)| t.grad().defined()).count();
                if in_backward && cfg!(dino_autocast) {
                    assert_eq!(left, 0, "every gradient is dropped inside the pass");
                }
            }
            s
        };
        let (fused, after) = (run(true), run(false));
        for (vs_a, vs_b) in [(&fused.student_vs, &after.student_vs), (&fused.teacher_vs, &after.teacher_vs)] {
            let (a, b) = (named_tensors(vs_a), named_tensors(vs_b));
            assert_eq!(a.len(), b.len());
            for (name, t) in &a {
                assert!(t.equal(&b[name]), "{name} differs");
            }
        }
        let steps = |s: &DinoState| s.optimizer.state.iter().map(|(k, v)| (k.clone(), v.step)).collect::<Vec<_>>();
        assert_eq!(steps(&fused), steps(&after));
        assert!(fused.optimizer.state.keys().all(|k| fused.optimizer.state[k].step == if k.contains("last_layer") { 2 } else { 3 }));
    }

    /// The KoLeo term and Sinkhorn-Knopp targets change the step (the same start, other weights
    /// after it); the KoLeo value is reported as the term before its weight (DINOv2's on the
    /// global views' backbone features, recomputed here), the DINO loss without it.
    #[test]
    fn koleo_and_sinkhorn_knopp_change_the_step() {
        let first = state(crate::config::Arch::ResNet18, true);
        let crops: Vec<Tensor> = crops().iter().map(|c| c.randn_like()).collect();
        let p = StepParams { epoch: 1, lr: 0.01, wd: 0.04, momentum: 0.9, teacher_temp: 0.04 };
        let run = |koleo: f64, sinkhorn: bool| {
            let mut s = state(crate::config::Arch::ResNet18, true);
            tch::no_grad(|| {
                s.student_vs.copy(&first.student_vs).unwrap();
                s.teacher_vs.copy(&first.teacher_vs).unwrap();
            });
            s.koleo_weight = koleo;
            s.loss.sinkhorn = sinkhorn;
            // The expected term below is computed in float32: so is the step (on a CPU with bf16,
            // the default use_fp16 would put the step in bf16 and the two would differ by ~3 %).
            s.autocast = None;
            let expected = tch::no_grad(|| {
                let (_, feats) = s.student.forward_multicrop_with_features(&crops[..2], true);
                feats.chunk(2, 0).iter().map(|f| super::super::loss::koleo(f).double_value(&[])).sum::<f64>()
            });
            let out = s.step(&crops, p).unwrap();
            (s, out, expected)
        };
        let (plain, plain_out, _) = run(0.0, false);
        assert_eq!(plain_out.koleo, 0.0);
        let (with_koleo, out, expected) = run(0.5, false);
        assert!((out.koleo - expected).abs() < 1e-4 * expected.abs().max(1.0), "{} against {expected}", out.koleo);
        assert!((out.loss - plain_out.loss).abs() < 1e-4, "the DINO loss is reported without the term");
        let (with_sk, sk_out, _) = run(0.0, true);
        assert!(sk_out.loss.is_finite() && (sk_out.loss - plain_out.loss).abs() > 1e-6);
        let weight = |s: &DinoState| named_tensors(&s.student_vs)["backbone.conv1.weight"].copy();
        assert!(!weight(&with_koleo).equal(&weight(&plain)));
        assert!(!weight(&with_sk).equal(&weight(&plain)));
    }

    /// The cifar-quick preset in CPU bfloat16: 40 steps without a non-finite loss. Before the
    /// centre-tap path of `model::resnet::conv_forward`, libtorch's bf16 weight gradient of
    /// `layer4.0.conv1` on the 1x1 maps of the 16 px crops went non-finite at random (a race:
    /// one thread never does it), and 3 of 4 such 24-step runs at batch 16 stopped with "loss is
    /// NaN" (examples/bench_step.rs); without the path this test failed in 2 of 4 runs.
    #[test]
    fn cifar_quick_steps_in_cpu_bfloat16_stay_finite() {
        let mut c = crate::config::preset("cifar-quick").unwrap();
        c.optim.use_fp16 = true;
        c.optim.batch_size_per_gpu = 16;
        if crate::train::precision::choose(&c, Device::Cpu).autocast.is_none() {
            eprintln!("SKIPPED: no CPU bfloat16 autocast here");
            return;
        }
        tch::manual_seed(0);
        let mut state = DinoState::new(&c, Device::Cpu).unwrap();
        let crops: Vec<Tensor> = (0..c.ncrops())
            .map(|i| {
                let side = if i < 2 { c.crops.global_crop_size } else { c.crops.local_crop_size } as i64;
                Tensor::randn([16, 3, side, side], (Kind::Float, Device::Cpu))
            })
            .collect();
        let p = StepParams { epoch: 1, lr: 1e-3, wd: 0.04, momentum: c.teacher.momentum_teacher, teacher_temp: c.teacher.teacher_temp };
        for step in 0..40 {
            let out = state.step(&crops, p).unwrap_or_else(|e| panic!("step {step}: {e}"));
            assert!(out.loss.is_finite() && out.applied, "step {step}: loss {}", out.loss);
        }
    }
}
