//! The experiment of the original README: accuracy against the number of labeled images per
//! class. For each N and seed, N images per class are drawn from `train/` and the classifiers
//! are tested on all of `val/`:
//! (a) weighted k-NN and (b) a linear probe on the frozen self-supervised features,
//! (c) the same on the same backbone with random weights, and
//! (d) the same architecture trained from scratch on those images (fixed budget).
//! Both probes use the backbone's output features (CLS token / pooled), L2-normalised.

use super::features::{l2_normalize, LabeledFeatures};
use super::knn::knn_report;
use super::linear::{train, CachedBatches, LinearHead, ProbeConfig};
use super::sampling;
use super::supervised::{self, SupervisedConfig};
use super::EvalError;
use crate::config::TrainConfig;
use image::RgbImage;
use serde::Serialize;
use std::fmt::Write as _;
use tch::{Device, Tensor};

/// Linear probe settings for small labeled sets: L2-normalised features, a fixed learning rate
/// (the batch rule would starve a 4-image set), and at least this many optimizer steps.
const PROBE_LR: f64 = 1.0;
const PROBE_MIN_STEPS: usize = 300;
const PROBE_BATCH: usize = 64;

/// `N` per class: a number or `all`.
pub fn parse_per_class(values: &[String]) -> Result<Vec<Option<usize>>, EvalError> {
    values
        .iter()
        .map(|v| match v.as_str() {
            "all" => Ok(None),
            s => s
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .map(Some)
                .ok_or_else(|| EvalError::Invalid(format!("invalid value {s} for --per_class: expected a number >= 1 or `all`"))),
        })
        .collect()
}

/// Top-1 of a linear probe trained on `train`, tested on `val` (features already normalised).
pub fn probe_accuracy(
    train_f: &LabeledFeatures,
    val: &LabeledFeatures,
    epochs: usize,
    seed: u64,
    device: Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<f64, EvalError> {
    let per_epoch = train_f.len().div_ceil(PROBE_BATCH).max(1);
    let epochs = epochs.max(PROBE_MIN_STEPS.div_ceil(per_epoch));
    let cfg = ProbeConfig { epochs, lr: PROBE_LR, batch_size: PROBE_BATCH, val_freq: epochs, seed };
    tch::manual_seed(seed as i64);
    let dim = train_f.features.size()[1];
    let mut head = LinearHead::new(dim, train_f.num_classes() as i64, device);
    let mut batches = CachedBatches { features: train_f, batch_size: PROBE_BATCH, seed, device };
    train(&mut head, &mut batches, val, &cfg, 0, 0.0, &mut |log, _, _| {
        progress(log.epoch + 1, epochs);
        Ok(())
    })?;
    Ok(head.evaluate(&val.features, &val.labels).acc1)
}

/// One classifier of the experiment; its `name` labels the result files' cells and the plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    DinoKnn,
    DinoLinear,
    RandomKnn,
    RandomLinear,
    Supervised,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Self::DinoKnn => "DINO k-NN",
            Self::DinoLinear => "DINO linear",
            Self::RandomKnn => "random k-NN",
            Self::RandomLinear => "random linear",
            Self::Supervised => "supervised",
        }
    }
}

/// Train and val features of one backbone, L2-normalised.
pub struct FeatureSet {
    pub train: LabeledFeatures,
    pub val: LabeledFeatures,
}

impl FeatureSet {
    pub fn normalised(train: &LabeledFeatures, val: &LabeledFeatures) -> Self {
        Self { train: normalised(train), val: normalised(val) }
    }
}

/// What the supervised baseline trains on: decoded training images and the val tensors.
pub struct SupervisedData<'a> {
    pub arch: &'a TrainConfig,
    pub config: SupervisedConfig,
    pub train_images: Vec<RgbImage>,
    pub val_x: Tensor,
    pub val_y: Tensor,
}

/// The whole experiment: the methods on every N per class and seed.
pub struct Experiment<'a> {
    pub dino: FeatureSet,
    pub random: FeatureSet,
    pub supervised: Option<SupervisedData<'a>>,
    /// Labels of the rows of the train features: train/'s readable images, in file order.
    pub train_labels: &'a [usize],
    pub per_class: Vec<Option<usize>>,
    pub seeds: u64,
    /// Seed of the first draw; draw `s` uses `base_seed + s`.
    pub base_seed: u64,
    pub nb_knn: usize,
    pub temperature: f64,
    pub linear_epochs: usize,
    pub device: Device,
}

impl Experiment<'_> {
    pub fn methods(&self) -> Vec<Method> {
        let mut m = vec![Method::DinoKnn, Method::DinoLinear, Method::RandomKnn, Method::RandomLinear];
        if self.supervised.is_some() {
            m.push(Method::Supervised);
        }
        m
    }

    /// Runs every (N, draw, method); `progress(done, total)` after each draw.
    pub fn run(&self, progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<Cell>, EvalError> {
        let labels = self.train_labels;
        let num_classes = self.dino.train.num_classes();
        let methods = self.methods();
        let total = self.per_class.len() * self.seeds as usize;
        let mut cells = vec![];
        for (i, &n) in self.per_class.iter().enumerate() {
            let mut acc: Vec<Vec<f64>> = vec![vec![]; methods.len()];
            let mut drawn = 0usize;
            for seed in 0..self.seeds {
                let idx = sampling::per_class(labels, num_classes, n, self.base_seed + seed);
                drawn = idx.len();
                for (a, &method) in acc.iter_mut().zip(&methods) {
                    a.push(self.accuracy(method, &idx, seed)?);
                }
                progress(i * self.seeds as usize + seed as usize + 1, total);
            }
            for (method, a) in methods.iter().zip(acc) {
                let (mean, std) = mean_std(&a);
                let per_class_actual = drawn as f64 / num_classes.max(1) as f64;
                cells.push(Cell { method: method.name().into(), per_class: n, per_class_actual, accuracies: a, mean, std });
            }
        }
        Ok(cells)
    }

    /// Top-1 of one method trained on the images `idx` of train/ (draw `seed`).
    fn accuracy(&self, method: Method, idx: &[usize], seed: u64) -> Result<f64, EvalError> {
        let knn = |f: &FeatureSet| knn_report(&f.train.subset(idx), &f.val, &[self.nb_knn], self.temperature).results[0].top1;
        let probe =
            |f: &FeatureSet| probe_accuracy(&f.train.subset(idx), &f.val, self.linear_epochs.max(1), seed, self.device, &mut |_, _| {});
        match method {
            Method::DinoKnn => Ok(knn(&self.dino)),
            Method::DinoLinear => probe(&self.dino),
            Method::RandomKnn => Ok(knn(&self.random)),
            Method::RandomLinear => probe(&self.random),
            Method::Supervised => {
                let Some(s) = &self.supervised else { return Ok(f64::NAN) };
                let imgs: Vec<_> = idx.iter().map(|&j| s.train_images[j].clone()).collect();
                let picked: Vec<usize> = idx.iter().map(|&j| self.train_labels[j]).collect();
                let c = SupervisedConfig { seed: self.base_seed + seed, ..s.config };
                supervised::train_and_test(s.arch, &imgs, &picked, self.dino.train.num_classes(), &s.val_x, &s.val_y, &c)
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub method: String,
    /// Labeled images per class asked for (`None`: all).
    pub per_class: Option<usize>,
    /// Mean number actually drawn per class (all may differ per class).
    pub per_class_actual: f64,
    pub accuracies: Vec<f64>,
    pub mean: f64,
    pub std: f64,
}

pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len().saturating_sub(1).max(1)) as f64;
    (mean, if v.len() > 1 { var.sqrt() } else { 0.0 })
}

fn normalised(f: &LabeledFeatures) -> LabeledFeatures {
    LabeledFeatures {
        features: l2_normalize(&f.features),
        labels: f.labels.shallow_clone(),
        classes: f.classes.clone(),
        from_cache: f.from_cache,
        kept: f.kept.clone(),
        skipped: f.skipped.clone(),
    }
}

/// Mean ± std per (N, method), one row per N.
pub fn table(cells: &[Cell], ns: &[Option<usize>], methods: &[Method], seeds: u64) -> String {
    let mut s = format!("top-1 (%) on val/, mean ± std over {seeds} draws of the labeled images\n{:>10}", "N/class");
    for m in methods {
        let _ = write!(s, "  {:>15}", m.name());
    }
    s.push('\n');
    for n in ns {
        let label = n.map(|v| v.to_string()).unwrap_or_else(|| "all".into());
        let _ = write!(s, "{label:>10}");
        for m in methods {
            match cells.iter().find(|c| c.per_class == *n && c.method == m.name()) {
                Some(c) => {
                    let _ = write!(s, "  {:>15}", format!("{:.1} ± {:.1}", c.mean, c.std));
                }
                None => {
                    let _ = write!(s, "  {:>15}", "-");
                }
            }
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_class_values_parse() {
        let v: Vec<String> = ["1", "10", "all"].iter().map(|s| s.to_string()).collect();
        assert_eq!(parse_per_class(&v).unwrap(), vec![Some(1), Some(10), None]);
        assert!(parse_per_class(&["0".to_string()]).is_err());
        assert!(parse_per_class(&["x".to_string()]).is_err());
    }

    #[test]
    fn mean_and_sample_std() {
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
    }
}
