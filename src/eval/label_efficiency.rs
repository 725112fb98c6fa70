//! The experiment of the original README: accuracy against the number of labeled images per
//! class. For each N and seed, N images per class are drawn from `train/` and the classifiers
//! are tested on all of `val/`:
//! (a) weighted k-NN and (b) a linear probe on the frozen self-supervised features,
//! (c) the same on the same backbone with random weights, and
//! (d) the same architecture trained from scratch on those images (fixed budget).
//! Both probes use the backbone's output features (CLS token / pooled), L2-normalised.

use super::features::{l2_normalize, LabeledFeatures};
use super::linear::{train, CachedBatches, LinearHead, ProbeConfig};
use super::EvalError;
use anyhow::Result;
use serde::Serialize;
use std::fmt::Write as _;
use tch::Device;

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
) -> Result<f64, EvalError> {
    let per_epoch = train_f.len().div_ceil(PROBE_BATCH).max(1);
    let epochs = epochs.max(PROBE_MIN_STEPS.div_ceil(per_epoch));
    let cfg = ProbeConfig { epochs, lr: PROBE_LR, batch_size: PROBE_BATCH, val_freq: epochs, seed };
    tch::manual_seed(seed as i64);
    let dim = train_f.features.size()[1];
    let mut head = LinearHead::new(dim, train_f.num_classes() as i64, device);
    let mut batches = CachedBatches { features: train_f, batch_size: PROBE_BATCH, seed, device };
    train(&mut head, &mut batches, val, &cfg, 0, 0.0, &mut |_, _, _| Ok(()))?;
    Ok(head.evaluate(&val.features, &val.labels).acc1)
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

pub fn normalised(f: &LabeledFeatures) -> LabeledFeatures {
    LabeledFeatures {
        features: l2_normalize(&f.features),
        labels: f.labels.shallow_clone(),
        classes: f.classes.clone(),
        from_cache: f.from_cache,
    }
}

/// Mean ± std per (N, method), one row per N.
pub fn table(cells: &[Cell], ns: &[Option<usize>], methods: &[&str], seeds: u64) -> String {
    let mut s = format!("top-1 (%) on val/, mean ± std over {seeds} draws of the labeled images\n{:>10}", "N/class");
    for m in methods {
        let _ = write!(s, "  {m:>15}");
    }
    s.push('\n');
    for n in ns {
        let label = n.map(|v| v.to_string()).unwrap_or_else(|| "all".into());
        let _ = write!(s, "{label:>10}");
        for m in methods {
            match cells.iter().find(|c| c.per_class == *n && c.method == *m) {
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
