//! The supervised baseline of the label-efficiency experiment: the same architecture, randomly
//! initialised, trained end to end with labels only (RandomResizedCrop + flip, AdamW, cosine lr)
//! on the few labeled images, for a fixed budget; top-1 on the validation pixels.

use super::EvalError;
use crate::config::TrainConfig;
use crate::data::{supervised_train_transform, DataError};
use crate::model::Backbone;
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct SupervisedConfig {
    pub epochs: usize,
    /// Fewer optimizer steps than this would leave the tiniest label sets untrained: the epoch
    /// count is raised until it is reached.
    pub min_steps: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub seed: u64,
    pub device: Device,
}

impl Default for SupervisedConfig {
    fn default() -> Self {
        Self { epochs: 15, min_steps: 30, lr: 1e-3, weight_decay: 0.05, batch_size: 64, seed: 0, device: Device::Cpu }
    }
}

/// Trains from scratch on `(images, labels)`; returns top-1 (percent) on `val_x` [M,3,S,S].
pub fn train_and_test(
    arch: &TrainConfig,
    images: &[RgbImage],
    labels: &[usize],
    num_classes: usize,
    val_x: &Tensor,
    val_y: &Tensor,
    cfg: &SupervisedConfig,
) -> Result<f64, EvalError> {
    if images.is_empty() {
        return Err(EvalError::Invalid("no labeled images to train on".into()));
    }
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(cfg.device);
    let backbone = Backbone::new(vs.root() / "backbone", &arch.backbone_spec(0.0));
    let head = nn::linear(vs.root() / "head", backbone.embed_dim(), num_classes as i64, Default::default());
    let mut opt = nn::AdamW { wd: cfg.weight_decay, ..Default::default() }.build(&vs, cfg.lr)?;
    let size = arch.crops.global_crop_size.max(1);
    let bs = cfg.batch_size.max(1).min(images.len());
    let per_epoch = images.len().div_ceil(bs);
    let epochs = cfg.epochs.max(cfg.min_steps.div_ceil(per_epoch)).max(1);
    let total = (epochs * per_epoch) as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut step = 0usize;
    for _ in 0..epochs {
        let mut order: Vec<usize> = (0..images.len()).collect();
        order.shuffle(&mut rng);
        for chunk in order.chunks(bs) {
            let mut pixels = Vec::with_capacity(chunk.len() * 3 * size * size);
            for &i in chunk {
                pixels.extend(supervised_train_transform(&images[i], size, &mut rng));
            }
            let x = Tensor::from_slice(&pixels).reshape([chunk.len() as i64, 3, size as i64, size as i64]).to_device(cfg.device);
            let y = Tensor::from_slice(&chunk.iter().map(|&i| labels[i] as i64).collect::<Vec<_>>()).to_device(cfg.device);
            // Cosine decay per step, so every budget ends at a small learning rate.
            opt.set_lr(cfg.lr * (1.0 + (std::f64::consts::PI * step as f64 / total).cos()) / 2.0);
            let loss = head.forward(&backbone.forward_t(&x, true)).cross_entropy_for_logits(&y);
            if !loss.double_value(&[]).is_finite() {
                return Err(EvalError::Invalid("supervised baseline diverged (non-finite loss)".into()));
            }
            opt.backward_step(&loss);
            step += 1;
        }
    }
    let correct = tch::no_grad(|| -> i64 {
        let mut correct = 0;
        let n = val_x.size()[0];
        let mut start = 0;
        while start < n {
            let len = 256.min(n - start);
            let x = val_x.narrow(0, start, len).to_device(cfg.device);
            let pred = head.forward(&backbone.forward_t(&x, false)).argmax(1, false);
            correct += pred.eq_tensor(&val_y.narrow(0, start, len).to_device(cfg.device)).sum(Kind::Int64).int64_value(&[]);
            start += len;
        }
        correct
    });
    Ok(correct as f64 * 100.0 / val_y.size()[0].max(1) as f64)
}

/// Decodes images (used once per experiment, then shared by every draw).
pub fn load_images(files: &[std::path::PathBuf]) -> Result<Vec<RgbImage>, EvalError> {
    files.iter().map(|f| crate::data::load_rgb(f).map_err(|e| EvalError::Data(DataError::from(e)))).collect()
}
