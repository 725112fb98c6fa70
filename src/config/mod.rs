//! Training configuration: one serde struct whose defaults equal the reference `main_dino.py`,
//! loadable from TOML presets, overridable from the command line with the reference's flag names,
//! and validated with messages that name the setting and its allowed range.

pub mod schedules;
pub mod user;
pub mod validate;

pub use validate::ConfigError;

use crate::data::AugmentConfig;
pub use crate::model::{Arch, ResNetStem};
use crate::model::{BackboneSpec, HeadSpec, ResNetDepth, VitSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which optimizer trains the student (reference `--optimizer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adamw,
    Sgd,
    Lars,
}

impl OptimizerKind {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "adamw" => Ok(Self::Adamw),
            "sgd" => Ok(Self::Sgd),
            "lars" => Ok(Self::Lars),
            other => Err(ConfigError::invalid("optimizer", other, "one of adamw, sgd, lars")),
        }
    }
}

/// Every knob of a DINO training run. Field names are the reference's flag names, so the TOML
/// presets, `--print-config` and the run directory's `config.toml` read like `main_dino.py --help`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    // Model.
    pub arch: Arch,
    pub patch_size: i64,
    /// Custom ViT width/depth/heads; when set they override the `arch` preset's values.
    pub embed_dim: Option<i64>,
    pub depth: Option<i64>,
    pub num_heads: Option<i64>,
    pub resnet_stem: ResNetStem,
    pub out_dim: i64,
    pub norm_last_layer: bool,
    pub momentum_teacher: f64,
    pub use_bn_in_head: bool,
    pub head_hidden_dim: i64,
    pub head_bottleneck_dim: i64,
    // Temperature.
    pub warmup_teacher_temp: f64,
    pub teacher_temp: f64,
    pub warmup_teacher_temp_epochs: i64,
    // Optimisation.
    pub use_fp16: bool,
    pub weight_decay: f64,
    pub weight_decay_end: f64,
    pub clip_grad: f64,
    pub batch_size_per_gpu: i64,
    pub epochs: i64,
    pub freeze_last_layer: i64,
    pub lr: f64,
    pub warmup_epochs: i64,
    pub min_lr: f64,
    pub optimizer: OptimizerKind,
    pub drop_path_rate: f64,
    // Multi-crop.
    pub global_crops_scale: (f64, f64),
    pub local_crops_number: i64,
    pub local_crops_scale: (f64, f64),
    pub global_crop_size: i64,
    pub local_crop_size: i64,
    /// Range of the Gaussian blur radius in pixels (PIL's `radius`); `[0, 0]` turns blur off.
    /// Not a reference flag: the reference hard-codes 0.1..2.0, made for 224 px crops, which
    /// wipes out most of a 32 px image.
    pub blur_sigma: (f64, f64),
    // Run.
    pub data_path: PathBuf,
    /// A text file of image paths (relative to `data_path` or absolute) left out of training.
    pub exclude: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    pub name: Option<String>,
    pub saveckp_freq: i64,
    pub seed: u64,
    pub num_workers: usize,
    pub device: String,
    pub headless: bool,
    /// Headless progress line every this many iterations.
    pub print_freq: i64,
    /// Run the k-NN evaluation of the teacher every this many epochs (0: never).
    pub eval_knn_every: i64,
}

impl Default for TrainConfig {
    /// The reference's `get_args_parser()` defaults, plus our own settings' defaults.
    fn default() -> Self {
        Self {
            arch: Arch::VitSmall,
            patch_size: 16,
            embed_dim: None,
            depth: None,
            num_heads: None,
            resnet_stem: ResNetStem::Imagenet,
            out_dim: 65536,
            norm_last_layer: true,
            momentum_teacher: 0.996,
            use_bn_in_head: false,
            head_hidden_dim: 2048,
            head_bottleneck_dim: 256,
            warmup_teacher_temp: 0.04,
            teacher_temp: 0.04,
            warmup_teacher_temp_epochs: 0,
            use_fp16: true,
            weight_decay: 0.04,
            weight_decay_end: 0.4,
            clip_grad: 3.0,
            batch_size_per_gpu: 64,
            epochs: 100,
            freeze_last_layer: 1,
            lr: 0.0005,
            warmup_epochs: 10,
            min_lr: 1e-6,
            optimizer: OptimizerKind::Adamw,
            drop_path_rate: 0.1,
            global_crops_scale: (0.4, 1.0),
            local_crops_number: 8,
            local_crops_scale: (0.05, 0.4),
            global_crop_size: 224,
            local_crop_size: 96,
            blur_sigma: (0.1, 2.0),
            data_path: PathBuf::from("/path/to/imagenet/train/"),
            exclude: None,
            output_dir: None,
            name: None,
            saveckp_freq: 20,
            seed: 0,
            num_workers: 10,
            device: "auto".into(),
            headless: false,
            print_freq: 10,
            eval_knn_every: 0,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML preset; unknown keys are an error naming the file, so a typo never goes unseen.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io { path: path.to_path_buf(), message: e.to_string() })?;
        Self::from_toml_str(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: Some(path.to_path_buf()), message },
            other => other,
        })
    }

    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: None, message: e.to_string() })
    }

    pub fn to_toml(&self) -> String {
        // Serialising a plain struct of numbers, strings and paths cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn is_vit(&self) -> bool {
        self.arch.is_vit()
    }

    /// The ViT the config describes: the `arch` preset, with custom width/depth/heads taking precedence.
    pub fn vit_spec(&self) -> VitSpec {
        let (dim, depth, heads) = self.arch.vit_dims().unwrap_or((384, 12, 6));
        VitSpec {
            img_size: self.global_crop_size,
            patch_size: self.patch_size,
            embed_dim: self.embed_dim.unwrap_or(dim),
            depth: self.depth.unwrap_or(depth),
            num_heads: self.num_heads.unwrap_or(heads),
            mlp_ratio: 4.0,
            drop_path_rate: self.drop_path_rate,
        }
    }

    /// The backbone to build; `drop_path` is the student's rate (the teacher and evaluations use 0).
    pub fn backbone_spec(&self, drop_path: f64) -> BackboneSpec {
        match ResNetDepth::from_arch(self.arch) {
            Some(depth) => BackboneSpec::ResNet { depth, stem: self.resnet_stem },
            None => BackboneSpec::Vit(VitSpec { drop_path_rate: drop_path, ..self.vit_spec() }),
        }
    }

    /// The DINO head (its input width is set from the backbone when the model is built).
    pub fn head_spec(&self, norm_last_layer: bool) -> HeadSpec {
        HeadSpec {
            in_dim: 0,
            out_dim: self.out_dim,
            use_bn: self.use_bn_in_head,
            norm_last_layer,
            nlayers: 3,
            hidden_dim: self.head_hidden_dim,
            bottleneck_dim: self.head_bottleneck_dim,
        }
    }

    /// The multi-crop augmentation's settings.
    pub fn augment_config(&self) -> AugmentConfig {
        // Validation already rejects negative sizes and counts.
        AugmentConfig {
            global_size: self.global_crop_size.max(1) as usize,
            local_size: self.local_crop_size.max(1) as usize,
            global_scale: self.global_crops_scale,
            local_scale: self.local_crops_scale,
            local_crops_number: self.local_crops_number.max(0) as usize,
            blur_sigma: self.blur_sigma,
        }
    }

    /// Number of crops per image: two global views plus the local ones.
    pub fn ncrops(&self) -> i64 {
        2 + self.local_crops_number
    }

    /// The run's name: `--name`, else the architecture and the start time.
    pub fn run_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            format!("{}-{}", self.arch, secs)
        })
    }

    /// `--output_dir`, else `runs/NAME`.
    pub fn run_dir(&self) -> PathBuf {
        self.output_dir.clone().unwrap_or_else(|| PathBuf::from("runs").join(self.run_name()))
    }

    /// The learning rate the schedule peaks at: the reference's linear scaling rule.
    pub fn scaled_lr(&self, world_size: i64) -> f64 {
        self.lr * (self.batch_size_per_gpu * world_size) as f64 / 256.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_defaults() {
        let c = TrainConfig::default();
        assert_eq!(c.arch, Arch::VitSmall);
        assert_eq!(c.patch_size, 16);
        assert_eq!(c.out_dim, 65536);
        assert_eq!(c.lr, 0.0005);
        assert_eq!(c.min_lr, 1e-6);
        assert_eq!(c.local_crops_number, 8);
        assert_eq!(c.global_crops_scale, (0.4, 1.0));
        assert_eq!(c.optimizer, OptimizerKind::Adamw);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn toml_round_trip() {
        let mut c = TrainConfig::default();
        c.arch = Arch::VitTiny;
        c.embed_dim = Some(48);
        c.output_dir = Some("runs/x".into());
        let back = TrainConfig::from_toml_str(&c.to_toml()).unwrap();
        assert_eq!(c, back);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = TrainConfig::from_toml_str("lrr = 0.1").unwrap_err().to_string();
        assert!(err.contains("lrr"), "{err}");
    }

    #[test]
    fn augment_config_takes_the_multicrop_settings() {
        let c = TrainConfig {
            global_crop_size: 32,
            local_crop_size: 16,
            local_crops_number: 6,
            global_crops_scale: (0.5, 1.0),
            ..TrainConfig::default()
        };
        let a = c.augment_config();
        assert_eq!(
            a,
            AugmentConfig {
                global_size: 32,
                local_size: 16,
                global_scale: (0.5, 1.0),
                local_scale: c.local_crops_scale,
                local_crops_number: 6,
                blur_sigma: (0.1, 2.0)
            }
        );
        assert_eq!((a.num_crops(), a.crop_size(1), a.crop_size(2)), (8, 32, 16));
    }

    #[test]
    fn scaled_lr_follows_linear_rule() {
        let mut c = TrainConfig::default();
        c.batch_size_per_gpu = 128;
        assert!((c.scaled_lr(2) - 0.0005).abs() < 1e-15);
    }
}

/// The presets shipped in `configs/`, embedded so the binary works from any folder.
pub const PRESETS: &[(&str, &str)] = &[
    ("cifar-quick", include_str!("../../configs/cifar-quick.toml")),
    ("vit-small", include_str!("../../configs/vit-small.toml")),
    ("resnet50", include_str!("../../configs/resnet50.toml")),
    ("demo", include_str!("../../configs/demo.toml")),
];

pub fn preset(name: &str) -> Option<TrainConfig> {
    PRESETS.iter().find(|(n, _)| *n == name).and_then(|(_, text)| TrainConfig::from_toml_str(text).ok())
}

#[cfg(test)]
mod preset_tests {
    use super::*;

    #[test]
    fn every_preset_loads_validates_and_round_trips() {
        for (name, text) in PRESETS {
            let c = TrainConfig::from_toml_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(TrainConfig::from_toml_str(&c.to_toml()).unwrap(), c, "{name} round trip");
        }
        let r = preset("resnet50").unwrap();
        assert_eq!((r.arch, r.optimizer, r.lr), (Arch::ResNet50, OptimizerKind::Sgd, 0.03));
        // The paper preset is exactly the reference's defaults.
        assert_eq!(preset("vit-small").unwrap(), TrainConfig::default());
    }
}
