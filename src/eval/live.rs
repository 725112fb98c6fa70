//! k-NN evaluation of a backbone in memory (the live teacher of a training run), with the same
//! defaults as `dino eval knn`. No feature cache: the weights change every iteration.

use super::features::{extract_split, EvalTransform, ExtractOptions, FeatureKind};
use super::knn::{knn_report, KnnReport};
use super::EvalError;
use crate::config::TrainConfig;
use crate::data::DataLayout;
use crate::model::Backbone;
use tch::Device;

/// The reference's `--nb_knn` default.
pub const DEFAULT_KS: [usize; 4] = [10, 20, 100, 200];
pub const DEFAULT_TEMPERATURE: f64 = 0.07;
pub const DEFAULT_BATCH: usize = 128;

/// Runs k-NN on the config's `train/` and `val/` splits. `progress(done, total)` counts images of
/// both splits together.
pub fn knn_of_backbone(
    backbone: &Backbone,
    config: &TrainConfig,
    device: Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<KnnReport, EvalError> {
    let layout = DataLayout::discover(&config.data_path)?;
    let root = layout.root().to_path_buf();
    let missing = |split: &str| EvalError::NoLabeledSplit { root: root.clone(), split: split.into() };
    let train = layout.train().ok_or_else(|| missing("train"))?;
    let val = layout.val().ok_or_else(|| missing("val"))?;
    let opts = ExtractOptions {
        transform: EvalTransform::for_crop(config.global_crop_size.max(1) as usize),
        batch_size: DEFAULT_BATCH,
        num_workers: config.num_workers.max(1),
        device,
        kind: FeatureKind::Cls,
    };
    let total = train.len() + val.len();
    let n_train = train.len();
    let tf = extract_split(backbone, train, &opts, None, &mut |d, _| progress(d, total))?;
    let vf = extract_split(backbone, val, &opts, None, &mut |d, _| progress(n_train + d, total))?;
    Ok(knn_report(&tf, &vf, &DEFAULT_KS, DEFAULT_TEMPERATURE))
}
