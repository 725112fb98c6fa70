//! Flags of `dino eval knn|linear|label-efficiency`, spelled as the reference's `eval_knn.py` and
//! `eval_linear.py` spell them, so their README commands run with only the program name changed.

use super::flags::bool_flag;
use crate::eval::source::{CheckpointKey, SourceSpec};
use clap::Args;
use std::path::PathBuf;

/// The range of every `--temperature` (k-NN, label efficiency, outliers): a finite number > 0
/// (NaN once passed `<= 0.0` and was saved as `null`).
pub fn check_temperature(t: f64) -> anyhow::Result<()> {
    if t > 0.0 && t.is_finite() {
        Ok(())
    } else {
        anyhow::bail!("invalid value {t} for --temperature: expected a finite number > 0")
    }
}

/// Where the weights come from; shared by every evaluation command.
#[derive(Debug, Clone, Args)]
#[command(rename_all = "snake_case")]
pub struct ModelArgs {
    /// Weights to evaluate: a run directory (its latest checkpoint), a checkpoint .json or
    /// .safetensors, a backbone .safetensors with the reference's names, a PyTorch .pth (a
    /// reference checkpoint.pth or an official pretrained state dict), or `random` (`dino search`
    /// and `dino duplicates` also take `pixels`: raw pixels, the baseline)
    #[arg(long, default_value = "")]
    pub pretrained_weights: String,
    /// Which network of a DINO checkpoint (ours or the reference's): teacher or student
    #[arg(long, default_value = "teacher", value_parser = CheckpointKey::parse)]
    pub checkpoint_key: CheckpointKey,
    /// Config for weights without one (and for `random`): a TOML file, a preset name or a run directory
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Architecture when the weights carry no config: vit_tiny, vit_small, vit_base, resnet18, resnet50
    #[arg(long)]
    pub arch: Option<String>,
    /// Patch size (ViT) when the weights carry no config
    #[arg(long, allow_negative_numbers = true)]
    pub patch_size: Option<i64>,
    /// Image size the network sees (the crop size it trained at) when the weights carry no config:
    /// default the size an exported .safetensors records, else the --config's (224)
    #[arg(long)]
    pub global_crop_size: Option<usize>,
    /// Data set with train/CLASS/ and val/CLASS/ (default: the checkpoint config's data_path)
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// Device: auto, cpu, cuda, cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Images per forward pass
    #[arg(long, default_value_t = 128, allow_negative_numbers = true)]
    pub batch_size_per_gpu: i64,
    /// Image decoding threads
    #[arg(long, default_value_t = 2)]
    pub num_workers: usize,
    /// Seed of the random initialisation (`random`) and of sampling
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Recompute features even when cached
    #[arg(long)]
    pub no_cache: bool,
}

impl ModelArgs {
    pub fn spec(&self, device: tch::Device) -> SourceSpec {
        SourceSpec {
            pretrained_weights: self.pretrained_weights.clone(),
            checkpoint_key: self.checkpoint_key,
            config: self.config.clone(),
            arch: self.arch.clone(),
            patch_size: self.patch_size,
            global_crop_size: self.global_crop_size,
            device,
            seed: self.seed,
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(rename_all = "snake_case")]
pub struct KnnArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Numbers of nearest neighbours
    #[arg(long, num_args = 1.., default_values_t = [10usize, 20, 100, 200])]
    pub nb_knn: Vec<usize>,
    /// Temperature of the neighbours' vote weights exp(similarity / T)
    #[arg(long, default_value_t = 0.07, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Save the computed features (trainfeat, testfeat, trainlabels, testlabels) into this folder
    #[arg(long)]
    pub dump_features: Option<PathBuf>,
    /// Load features saved with --dump_features from this folder instead of running a model
    #[arg(long)]
    pub load_features: Option<PathBuf>,
    /// Print one JSON object instead of the table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(rename_all = "snake_case")]
pub struct LinearArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Concatenate the CLS tokens of this many last blocks (4 for ViT-S, 1 for ViT-B in the paper)
    #[arg(long, default_value_t = 4, allow_negative_numbers = true)]
    pub n_last_blocks: i64,
    /// Also concatenate the average-pooled patch tokens of the last block (true/false)
    #[arg(long, default_value = "false", value_parser = bool_flag, action = clap::ArgAction::Set)]
    pub avgpool_patchtokens: bool,
    /// Training epochs of the linear layer
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    pub epochs: i64,
    /// Learning rate at batch 256 (scaled by batch size / 256)
    #[arg(long, default_value_t = 0.001, allow_negative_numbers = true)]
    pub lr: f64,
    /// Evaluate on val/ every this many epochs (and after the last)
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub val_freq: i64,
    /// Number of classes (default: the class folders of train/)
    #[arg(long, allow_negative_numbers = true)]
    pub num_labels: Option<i64>,
    /// Where the classifier checkpoint and log.txt go (default RUN_DIR/evals/linear, else ./linear-eval)
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Only evaluate the classifier saved in --output_dir
    #[arg(long)]
    pub evaluate: bool,
    /// Fast protocol: train on fixed centre-crop features (no augmentation), extracted once
    #[arg(long)]
    pub cached_features: bool,
    /// Print one JSON object instead of the log lines
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(rename_all = "snake_case")]
pub struct LabelEfficiencyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Labeled images per class to try; `all` takes every image of train/
    #[arg(long, num_args = 1.., default_values = ["1", "5", "10", "25", "50", "100", "all"])]
    pub per_class: Vec<String>,
    /// Random draws of the labeled images per setting
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// k of the k-NN classifier (clamped to the labeled set)
    #[arg(long, default_value_t = 20)]
    pub nb_knn: usize,
    /// k-NN temperature
    #[arg(long, default_value_t = 0.07, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Epochs of the linear probe on cached features
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    pub linear_epochs: i64,
    /// Epochs of the supervised-from-scratch baseline (0 skips it)
    #[arg(long, default_value_t = 15, allow_negative_numbers = true)]
    pub supervised_epochs: i64,
    /// Where the table, JSON and plot go (default RUN_DIR/evals, else ./label-efficiency)
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Print one JSON object instead of the table and plot
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(rename_all = "snake_case")]
pub struct OutlierArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Split to score: train, val or pretext (default: train, or the class folders of an
    /// ImageFolder root; pretext, that is every image, on a folder without labels)
    #[arg(long)]
    pub split: Option<String>,
    /// Rows to print (and ring on the map)
    #[arg(long, default_value_t = crate::eval::live::OUTLIER_TOP)]
    pub top: usize,
    /// Score that orders the list: auto (mislabels and strangers together), mislabel, stranger,
    /// disagreement or isolation
    #[arg(long, default_value = "auto", value_parser = crate::eval::outlier_report::ScoreKind::parse)]
    pub score: crate::eval::outlier_report::ScoreKind,
    /// Set the stranger score measures distances to: the scored split itself, train or pretext
    #[arg(long)]
    pub reference: Option<String>,
    /// Folds of the cross-validated probe behind the mislabel score
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Test-time augmentation: average the features of 3 crops and their mirror images
    #[arg(long)]
    pub tta: bool,
    /// Nearest neighbours per image
    #[arg(long, default_value_t = crate::eval::live::OUTLIER_K)]
    pub k: usize,
    /// Temperature of the neighbours' vote weights exp(similarity / T)
    #[arg(long, default_value_t = 0.07, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Copy-detection similarity (as `dino duplicates`) from which two images count as duplicates
    #[arg(long, default_value_t = crate::eval::live::DUPLICATE_THRESHOLD, allow_negative_numbers = true)]
    pub duplicate_threshold: f32,
    /// Write every row here as CSV (default RUN_DIR/evals/outliers-LABEL.csv, else ./outliers.csv)
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write the map here, PNG or SVG by extension (default next to the CSV)
    #[arg(long)]
    pub map: Option<PathBuf>,
}
