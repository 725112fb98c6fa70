//! Evaluations of a backbone in memory (a snapshot of a training run's teacher, or a checkpoint the
//! TUI selected), with the defaults of `dino eval`. No feature cache: the weights change every
//! iteration.

use super::features::{extract_split, l2_normalize, ExtractOptions, FeatureKind, LabeledFeatures};
use super::knn::{knn_report, KnnReport};
use super::label_efficiency::probe_accuracy;
use super::EvalError;
use crate::config::TrainConfig;
use crate::data::{DataLayout, Split};
use crate::files::ShowPath;
use crate::model::Backbone;
use serde::Serialize;
use tch::Device;

/// The reference's `--nb_knn` default.
pub const DEFAULT_KS: [usize; 4] = [10, 20, 100, 200];
pub const DEFAULT_TEMPERATURE: f64 = 0.07;
pub const DEFAULT_BATCH: usize = 128;
pub use crate::protocol::HEADLINE_K;
/// Epochs of the quick linear probe (at least `PROBE_MIN_STEPS` SGD steps whatever the set size).
pub const LINEAR_EPOCHS: usize = 100;
/// CLS tokens of this many last blocks make the probe's input, as `dino eval linear` does.
pub const LINEAR_LAST_BLOCKS: usize = 4;

/// Progress of an evaluation: `(done, total)` in images of both splits together.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// `train/` and `val/` (val's classes matched to train's by name) and the layout's warnings.
fn splits(config: &TrainConfig) -> Result<(Split, Split, Vec<String>), EvalError> {
    let layout = DataLayout::discover(&config.run.data_path)?;
    let root = layout.root().to_path_buf();
    let missing = |split: &str| EvalError::NoLabeledSplit { root: root.clone(), split: split.into() };
    let train = layout.train().ok_or_else(|| missing("train"))?.clone();
    let val = layout.val().ok_or_else(|| missing("val"))?.clone();
    Ok((train, val, layout.warnings().to_vec()))
}

/// Features of `train/` and `val/` through `backbone`, with the evaluation transform of the
/// config's crop size.
fn features(
    backbone: &Backbone,
    config: &TrainConfig,
    device: Device,
    kind: FeatureKind,
    progress: Progress,
) -> Result<(LabeledFeatures, LabeledFeatures, Vec<String>), EvalError> {
    let (train, val, warnings) = splits(config)?;
    let opts = ExtractOptions::new(config.crops.global_crop_size, DEFAULT_BATCH, config.run.num_workers, device, kind);
    let total = train.len() + val.len();
    let n_train = train.len();
    let tf = extract_split(backbone, &train, &opts, None, &mut |d, _| progress(d, total))?;
    let vf = extract_split(backbone, &val, &opts, None, &mut |d, _| progress(n_train + d, total))?;
    Ok((tf, vf, warnings))
}

/// k-NN on the config's `train/` and `val/` splits.
pub fn knn_of_backbone(backbone: &Backbone, config: &TrainConfig, device: Device, progress: Progress) -> Result<KnnReport, EvalError> {
    let (tf, vf, warnings) = features(backbone, config, device, FeatureKind::Cls, progress)?;
    Ok(KnnReport { warnings, ..knn_report(&tf, &vf, &DEFAULT_KS, DEFAULT_TEMPERATURE) })
}

/// What the quick linear probe reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinearReport {
    pub protocol: &'static str,
    pub num_classes: usize,
    pub num_train: usize,
    pub num_val: usize,
    pub test_acc1: f64,
    /// Images left out because they cannot be read: `path: why`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

impl LinearReport {
    pub fn summary(&self) -> String {
        format!("linear top-1 {:.2}% ({} val images)", self.test_acc1, self.num_val)
    }
}

/// The quick linear probe: a linear layer trained on fixed centre-crop features (the CLS tokens of
/// the last `LINEAR_LAST_BLOCKS` blocks of a ViT, the pooled features of a ResNet), L2-normalised,
/// the same probe as `dino eval label-efficiency` uses. Seconds on a CPU, where `dino eval linear`
/// with the reference protocol takes hours.
pub fn linear_of_backbone(
    backbone: &Backbone,
    config: &TrainConfig,
    device: Device,
    seed: u64,
    progress: Progress,
) -> Result<LinearReport, EvalError> {
    let kind = FeatureKind::LastBlocks { n: LINEAR_LAST_BLOCKS, avgpool: false };
    // The bar's first half is the images, its second the probe's epochs: on a few thousand images
    // the probe takes as long as the extraction, and a bar stuck at its end read as a hang.
    let mut images = 0;
    let (mut tf, mut vf, _) = features(backbone, config, device, kind, &mut |done, total| {
        images = total;
        progress(done, 2 * total)
    })?;
    tf.features = l2_normalize(&tf.features);
    vf.features = l2_normalize(&vf.features);
    let mut probe_progress = |epoch: usize, epochs: usize| progress(images + images * epoch / epochs.max(1), 2 * images);
    let test_acc1 = probe_accuracy(&tf, &vf, LINEAR_EPOCHS, seed, device, &mut probe_progress)?;
    Ok(LinearReport {
        protocol: "quick probe: fixed centre-crop features, L2-normalised, SGD",
        num_classes: tf.num_classes().max(vf.num_classes()),
        num_train: tf.len(),
        num_val: vf.len(),
        test_acc1,
        unreadable: tf.skipped.iter().chain(&vf.skipped).map(|u| format!("{}: {}", u.path.shown(), u.reason)).collect(),
    })
}

/// Outlier scores of `train/` (of `pretext/` when the data set has no labels) with the defaults of
/// `dino outliers`, written to `RUN_DIR/evals/outliers-SPLIT-LABEL*`; returns the report's JSON
/// record and a line for people.
pub fn outliers_of_backbone(
    backbone: &Backbone,
    config: &TrainConfig,
    device: Device,
    run_dir: &std::path::Path,
    label: &str,
    progress: Progress,
) -> Result<(serde_json::Value, String), EvalError> {
    use super::outlier_report::{run_files, score_split, write_report, OutlierParams, ScoreKind};
    let layout = DataLayout::discover(&config.run.data_path)?;
    let split = layout.split_named("train").unwrap_or(layout.pretext()).clone();
    let opts = ExtractOptions::new(config.crops.global_crop_size, DEFAULT_BATCH, config.run.num_workers, device, FeatureKind::Cls);
    let params = OutlierParams::new(ScoreKind::Auto, config.run.seed);
    // The same network with random weights, the baseline of the report's evidence.
    let baseline = match split.is_labeled() {
        true => Some(super::source::random_like(config, &super::source::SourceSpec::teacher("random", device, config.run.seed))?),
        false => None,
    };
    let report = score_split(backbone, baseline.as_ref(), &split, None, layout.root(), &opts, None, &params, progress)?;
    let (csv, dups, map) = run_files(run_dir, &format!("{}-{label}", split.name));
    let mut json = write_report(&report, &csv, Some(&dups), Some(&map), OUTLIER_TOP)?;
    json["data_root"] = layout.root().display().to_string().into();
    let top = report.rows.first().map(|r| format!("; top: {} ({:.3})", r.path, r.score(report.score))).unwrap_or_default();
    let evidence = report.evidence.as_ref().map(|e| format!("; {}", e.short())).unwrap_or_default();
    let summary = format!("outliers of {} images of {} by {}{top}{evidence}", report.rows.len(), split.name, report.score.name());
    Ok((json, summary))
}

pub use super::outlier_report::{DUPLICATE_THRESHOLD, OUTLIER_K, OUTLIER_TOP};
