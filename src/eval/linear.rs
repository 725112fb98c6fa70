//! Linear probe, as the reference's `eval_linear.py`: one linear layer (weights N(0, 0.01), bias
//! 0) on the concatenated CLS tokens of the last `n` blocks (plus average-pooled patch tokens),
//! SGD with momentum 0.9 and no weight decay, lr scaled by batch/256 and annealed by a cosine per
//! epoch, cross-entropy; logs `train_loss`, `train_lr`, `test_loss`, `test_acc1`, `test_acc5`.
//!
//! Two protocols: the reference's (RandomResizedCrop + flip on train, features recomputed every
//! epoch through the frozen backbone) and a fast one on fixed centre-crop features extracted once.

use super::features::{forward_features, FeatureKind, LabeledFeatures, Unreadable};
use super::EvalError;
use crate::data::{load_rgb, supervised_train_transform, Split};
use crate::files::ShowPath;
use crate::model::Backbone;
use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind, Tensor};

const MOMENTUM: f64 = 0.9;

/// The classifier and its SGD momentum buffers (kept by hand so a probe resumes exactly).
#[derive(Debug)]
pub struct LinearHead {
    pub weight: Tensor,
    pub bias: Tensor,
    buf_w: Tensor,
    buf_b: Tensor,
}

impl LinearHead {
    pub fn new(dim: i64, num_labels: i64, device: Device) -> Self {
        let opts = (Kind::Float, device);
        let weight = (Tensor::randn([num_labels, dim], opts) * 0.01).set_requires_grad(true);
        let bias = Tensor::zeros([num_labels], opts).set_requires_grad(true);
        Self { buf_w: Tensor::zeros_like(&weight), buf_b: Tensor::zeros_like(&bias), weight, bias }
    }

    pub fn logits(&self, x: &Tensor) -> Tensor {
        x.flatten(1, -1).linear(&self.weight, Some(&self.bias))
    }

    /// One SGD step on a batch; returns the batch loss.
    pub fn step(&mut self, x: &Tensor, y: &Tensor, lr: f64) -> f64 {
        for p in [&mut self.weight, &mut self.bias] {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let loss = self.logits(x).cross_entropy_for_logits(y);
        loss.backward();
        tch::no_grad(|| {
            for (p, buf) in [(&mut self.weight, &mut self.buf_w), (&mut self.bias, &mut self.buf_b)] {
                let g = p.grad();
                let _ = buf.g_mul_scalar_(MOMENTUM);
                let _ = buf.g_add_(&g);
                let _ = p.g_sub_(&(&*buf * lr));
            }
        });
        loss.double_value(&[])
    }

    /// Mean loss, top-1 and top-5 (percent; top-5 only with at least 5 classes) on features.
    pub fn evaluate(&self, x: &Tensor, y: &Tensor) -> Evaluation {
        let n = x.size()[0];
        let classes = self.weight.size()[0];
        if n == 0 {
            return Evaluation { loss: 0.0, acc1: 0.0, acc5: None };
        }
        tch::no_grad(|| {
            let logits = self.logits(&x.to_device(self.weight.device()));
            let y = y.to_device(self.weight.device());
            let loss = logits.cross_entropy_for_logits(&y).double_value(&[]);
            let (_, pred) = logits.sort_stable(true, 1, true);
            let correct = pred.eq_tensor(&y.view([-1, 1]));
            let count = |k: i64| correct.narrow(1, 0, k.min(classes)).sum(Kind::Int64).int64_value(&[]) as f64 * 100.0 / n as f64;
            Evaluation { loss, acc1: count(1), acc5: (classes >= 5).then(|| count(5)) }
        })
    }

    fn tensors(&self) -> Vec<(&'static str, Tensor)> {
        let c = |t: &Tensor| t.detach().to_device(Device::Cpu).contiguous();
        vec![("weight", c(&self.weight)), ("bias", c(&self.bias)), ("momentum.weight", c(&self.buf_w)), ("momentum.bias", c(&self.buf_b))]
    }

    pub fn load(&mut self, path: &Path) -> Result<(), EvalError> {
        let map: std::collections::BTreeMap<String, Tensor> = crate::model::weights::read_safetensors(path)?.into_iter().collect();
        let get = |k: &str| map.get(k).ok_or_else(|| EvalError::Source(format!("{}: no tensor {k}", path.shown())));
        tch::no_grad(|| -> Result<(), EvalError> {
            for (dst, k) in [
                (&mut self.weight, "weight"),
                (&mut self.bias, "bias"),
                (&mut self.buf_w, "momentum.weight"),
                (&mut self.buf_b, "momentum.bias"),
            ] {
                let src = get(k)?;
                if src.size() != dst.size() {
                    return Err(EvalError::Source(format!("{}: {k} has shape {:?}, expected {:?}", path.shown(), src.size(), dst.size())));
                }
                dst.copy_(src);
            }
            Ok(())
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    pub loss: f64,
    pub acc1: f64,
    pub acc5: Option<f64>,
}

/// One line of `log.txt`, keys as the reference writes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_lr: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_acc1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_acc5: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
pub struct ProbeConfig {
    pub epochs: usize,
    /// Already scaled by batch / 256.
    pub lr: f64,
    pub batch_size: usize,
    pub val_freq: usize,
    pub seed: u64,
}

/// CosineAnnealingLR(T_max = epochs, eta_min = 0), stepped once per epoch.
pub fn cosine_lr(base: f64, epoch: usize, epochs: usize) -> f64 {
    base * (1.0 + (std::f64::consts::PI * epoch as f64 / epochs.max(1) as f64).cos()) / 2.0
}

/// What the classifier trains on each epoch: batches of (features, labels).
pub trait TrainBatches {
    fn for_each_batch(&mut self, epoch: usize, f: &mut dyn FnMut(&Tensor, &Tensor)) -> Result<(), EvalError>;

    /// Training images left out because they cannot be decoded.
    fn skipped(&self) -> &[Unreadable];
}

/// The fast protocol: fixed features, reshuffled every epoch.
pub struct CachedBatches<'a> {
    pub features: &'a LabeledFeatures,
    pub batch_size: usize,
    pub seed: u64,
    pub device: Device,
}

impl TrainBatches for CachedBatches<'_> {
    fn for_each_batch(&mut self, epoch: usize, f: &mut dyn FnMut(&Tensor, &Tensor)) -> Result<(), EvalError> {
        let mut order: Vec<i64> = (0..self.features.len() as i64).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(self.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9)));
        for chunk in order.chunks(self.batch_size.max(1)) {
            let idx = Tensor::from_slice(chunk);
            let x = self.features.features.index_select(0, &idx).to_device(self.device);
            let y = self.features.labels.index_select(0, &idx).to_device(self.device);
            f(&x, &y);
        }
        Ok(())
    }

    fn skipped(&self) -> &[Unreadable] {
        &self.features.skipped
    }
}

/// The reference protocol: every epoch, new random crops through the frozen backbone. An image
/// that cannot be decoded is skipped from the epoch that meets it on (the first, or the first
/// after a resume), and named once in `skipped`.
pub struct AugmentedBatches<'a> {
    pub backbone: &'a Backbone,
    pub split: &'a Split,
    pub size: usize,
    pub kind: FeatureKind,
    pub batch_size: usize,
    pub seed: u64,
    pub device: Device,
    skipped: Vec<Unreadable>,
    /// Split indices of `skipped`, so later epochs do not try them again.
    unreadable: std::collections::HashSet<usize>,
}

impl<'a> AugmentedBatches<'a> {
    pub fn new(
        backbone: &'a Backbone,
        split: &'a Split,
        size: usize,
        kind: FeatureKind,
        batch_size: usize,
        seed: u64,
        device: Device,
    ) -> Self {
        Self { backbone, split, size, kind, batch_size, seed, device, skipped: vec![], unreadable: Default::default() }
    }
}

impl TrainBatches for AugmentedBatches<'_> {
    fn for_each_batch(&mut self, epoch: usize, f: &mut dyn FnMut(&Tensor, &Tensor)) -> Result<(), EvalError> {
        let mut order: Vec<usize> = (0..self.split.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(self.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9)));
        let s = self.size as i64;
        let mut batches = 0usize;
        for chunk in order.chunks(self.batch_size.max(1)) {
            let mut pixels = Vec::with_capacity(chunk.len() * 3 * self.size * self.size);
            let mut labels: Vec<i64> = Vec::with_capacity(chunk.len());
            for &i in chunk {
                if self.unreadable.contains(&i) {
                    continue;
                }
                let img = match load_rgb(&self.split.files[i]) {
                    Ok(img) => img,
                    Err(e) => {
                        self.unreadable.insert(i);
                        self.skipped.push(Unreadable { path: self.split.files[i].clone(), reason: e.to_string() });
                        continue;
                    }
                };
                // One stream per (seed, epoch, image): the crops do not depend on batch order.
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ ((epoch as u64) << 32) ^ i as u64);
                pixels.extend(supervised_train_transform(&img, self.size, &mut rng));
                labels.push(self.split.labels[i] as i64);
            }
            if labels.is_empty() {
                continue;
            }
            let x = Tensor::from_slice(&pixels).reshape([labels.len() as i64, 3, s, s]).to_device(self.device);
            let feats = tch::no_grad(|| forward_features(self.backbone, &x, self.kind));
            f(&feats, &Tensor::from_slice(&labels).to_device(self.device));
            batches += 1;
        }
        if batches == 0 {
            return Err(EvalError::Invalid(format!(
                "no readable training image in {}: {}",
                self.split.root.shown(),
                Unreadable::summary(&self.skipped, 5)
            )));
        }
        Ok(())
    }

    fn skipped(&self) -> &[Unreadable] {
        &self.skipped
    }
}

/// Where a probe keeps its state between runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeState {
    /// Epochs completed.
    pub epoch: usize,
    pub best_acc: f64,
    pub protocol: String,
    pub dim: i64,
    pub num_labels: i64,
    /// The data set the probe was trained on (its folder); a probe of another one never resumes.
    #[serde(default)]
    pub data: String,
    /// The weights' content id, when they are a checkpoint's.
    #[serde(default)]
    pub content_id: Option<String>,
}

pub const STATE_JSON: &str = "checkpoint.json";
pub const STATE_TENSORS: &str = "checkpoint.safetensors";
pub const LOG: &str = "log.txt";

/// Trains (or continues training) the head; `on_epoch` sees every log line.
pub fn train(
    head: &mut LinearHead,
    batches: &mut dyn TrainBatches,
    val: &LabeledFeatures,
    cfg: &ProbeConfig,
    start_epoch: usize,
    mut best_acc: f64,
    on_epoch: &mut dyn FnMut(&EpochLog, &LinearHead, f64) -> Result<(), EvalError>,
) -> Result<f64, EvalError> {
    for epoch in start_epoch..cfg.epochs {
        let lr = cosine_lr(cfg.lr, epoch, cfg.epochs);
        let (mut sum, mut n) = (0.0, 0usize);
        batches.for_each_batch(epoch, &mut |x, y| {
            sum += head.step(x, y, lr);
            n += 1;
        })?;
        let mut log =
            EpochLog { epoch, train_loss: sum / n.max(1) as f64, train_lr: lr, test_loss: None, test_acc1: None, test_acc5: None };
        if (epoch + 1) % cfg.val_freq.max(1) == 0 || epoch + 1 == cfg.epochs {
            let e = head.evaluate(&val.features, &val.labels);
            best_acc = best_acc.max(e.acc1);
            log.test_loss = Some(e.loss);
            log.test_acc1 = Some(e.acc1);
            log.test_acc5 = e.acc5;
        }
        on_epoch(&log, head, best_acc)?;
    }
    Ok(best_acc)
}

pub fn save_state(dir: &Path, head: &LinearHead, state: &ProbeState) -> Result<(), EvalError> {
    std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    let tmp = crate::run::dir::tmp_path(&dir.join(STATE_TENSORS));
    Tensor::write_safetensors(&head.tensors(), &tmp)?;
    std::fs::rename(&tmp, dir.join(STATE_TENSORS)).map_err(|e| EvalError::io(dir, e))?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| EvalError::io(dir, e))?;
    crate::run::dir::write_atomic(&dir.join(STATE_JSON), &json).map_err(|e| EvalError::io(dir, format!("{e:#}")))
}

pub fn load_state(dir: &Path) -> Option<ProbeState> {
    let text = crate::files::read_to_string(&dir.join(STATE_JSON)).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_lr_matches_torch_cosine_annealing() {
        assert_eq!(cosine_lr(0.1, 0, 10), 0.1);
        assert!((cosine_lr(0.1, 5, 10) - 0.05).abs() < 1e-12);
        assert!(cosine_lr(0.1, 9, 10) < 0.003);
    }

    #[test]
    fn probe_learns_a_linearly_separable_problem_to_100_percent() {
        tch::manual_seed(0);
        // Four classes in 8-d: class c is centred on +-3 along axis c, with unit noise.
        let n = 400i64;
        let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(4);
        let centres = Tensor::eye(8, (Kind::Float, Device::Cpu)).narrow(0, 0, 4) * 6.0;
        let x = centres.index_select(0, &labels) + Tensor::randn([n, 8], (Kind::Float, Device::Cpu)) * 0.5;
        let feats = |x: &Tensor, y: &Tensor| {
            LabeledFeatures::new(x.shallow_clone(), y.shallow_clone(), (0..4).map(|c| c.to_string()).collect(), false)
        };
        let train_f = feats(&x.narrow(0, 0, 300), &labels.narrow(0, 0, 300));
        let val_f = feats(&x.narrow(0, 300, 100), &labels.narrow(0, 300, 100));
        let cfg = ProbeConfig { epochs: 20, lr: 0.1, batch_size: 32, val_freq: 5, seed: 1 };
        let mut head = LinearHead::new(8, 4, Device::Cpu);
        let mut batches = CachedBatches { features: &train_f, batch_size: 32, seed: 1, device: Device::Cpu };
        let mut logs = vec![];
        let best = train(&mut head, &mut batches, &val_f, &cfg, 0, 0.0, &mut |l, _, _| {
            logs.push(l.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(best, 100.0);
        assert_eq!(head.evaluate(&train_f.features, &train_f.labels).acc1, 100.0);
        assert_eq!(logs.len(), 20);
        assert!(logs[4].test_acc1.is_some() && logs[3].test_acc1.is_none(), "validation every 5 epochs");
        assert!(logs[19].train_loss < logs[0].train_loss);
        assert!(logs[0].test_acc5.is_none(), "no top-5 with 4 classes");
    }

    #[test]
    fn probe_state_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let head = LinearHead::new(6, 3, Device::Cpu);
        let s = ProbeState {
            epoch: 3,
            best_acc: 50.0,
            protocol: "p".into(),
            dim: 6,
            num_labels: 3,
            data: "d".into(),
            content_id: Some("abc".into()),
        };
        save_state(d.path(), &head, &s).unwrap();
        assert_eq!(load_state(d.path()), Some(s));
        let mut other = LinearHead::new(6, 3, Device::Cpu);
        other.load(&d.path().join(STATE_TENSORS)).unwrap();
        assert!(other.weight.equal(&head.weight));
    }
}
