//! Training configuration: one serde struct whose defaults equal the reference `main_dino.py`,
//! loadable from TOML presets, overridable from the command line with the reference's flag names,
//! and validated with messages that name the setting and its allowed range.

pub mod infer;
pub mod memory;
pub mod recipe;
pub mod schedules;
pub mod user;
pub mod validate;

pub use validate::ConfigError;

use crate::data::{AugmentConfig, ColourAugment};
pub use crate::model::autocast::AmpDtype;
pub use crate::model::{Arch, ResNetStem};
use crate::model::{BackboneSpec, HeadSpec, ResNetDepth, VitSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

/// Every knob of a DINO training run, in the reference's argument groups. Field names are the
/// reference's flag names and the groups are flattened, so the TOML presets, `--print-config` and
/// the run directory's `config.toml` stay one flat table that reads like `main_dino.py --help`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    #[serde(flatten)]
    pub model: ModelConfig,
    #[serde(flatten)]
    pub teacher: TeacherConfig,
    #[serde(flatten)]
    pub optim: OptimConfig,
    #[serde(flatten)]
    pub crops: CropConfig,
    #[serde(flatten)]
    pub run: RunConfig,
    #[serde(flatten)]
    pub start: StartConfig,
    /// Keys no group took: an error (`from_toml_str`), so a typo never goes unseen. serde cannot
    /// deny unknown fields across flattened groups, so they are collected here and refused.
    #[serde(flatten, skip_serializing)]
    unknown: BTreeMap<String, toml::Value>,
}

/// The networks: backbone and DINO head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    pub arch: Arch,
    pub patch_size: usize,
    /// Custom ViT width/depth/heads; when set they override the `arch` preset's values.
    pub embed_dim: Option<usize>,
    pub depth: Option<usize>,
    pub num_heads: Option<usize>,
    pub resnet_stem: ResNetStem,
    /// Channels of a ResNet's stem and `layer1` (torchvision: 64); each later stage doubles them.
    pub resnet_width: usize,
    pub out_dim: usize,
    pub norm_last_layer: bool,
    pub use_bn_in_head: bool,
    pub head_hidden_dim: usize,
    pub head_bottleneck_dim: usize,
    pub drop_path_rate: f64,
}

/// How the teacher's outputs become targets (`--centering`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Centering {
    /// DINO's: subtract an EMA of the teacher's batch mean, then a sharp softmax.
    #[default]
    Ema,
    /// DINOv2's: three Sinkhorn-Knopp iterations make every prototype equally used in the batch.
    SinkhornKnopp,
}

impl Centering {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "ema" => Ok(Self::Ema),
            "sinkhorn_knopp" => Ok(Self::SinkhornKnopp),
            other => Err(ConfigError::invalid("centering", other, "ema (DINO's) or sinkhorn_knopp (DINOv2's)")),
        }
    }
}

/// The teacher: its momentum and the temperature of its softmax.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TeacherConfig {
    pub momentum_teacher: f64,
    pub warmup_teacher_temp: f64,
    pub teacher_temp: f64,
    pub warmup_teacher_temp_epochs: usize,
    /// Not a reference flag: DINO's centring (the default) or DINOv2's Sinkhorn-Knopp.
    pub centering: Centering,
}

/// Optimisation of the student.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimConfig {
    /// Mixed precision: autocast on CUDA (in `amp_dtype`), bfloat16 autocast on a CPU that has
    /// bfloat16 instructions; float32 elsewhere.
    pub use_fp16: bool,
    /// The CUDA autocast dtype: fp16 (the reference's, with loss scaling) or bf16 (none needed).
    /// Not a reference flag; the CPU always uses bf16.
    pub amp_dtype: AmpDtype,
    pub weight_decay: f64,
    pub weight_decay_end: f64,
    pub clip_grad: f64,
    /// Weight of DINOv2's KoLeo term on the student's backbone features of each global view (0:
    /// off, as in DINO; DINOv2 uses 0.1). Not a reference flag.
    pub koleo_loss_weight: f64,
    pub batch_size_per_gpu: usize,
    pub epochs: usize,
    pub freeze_last_layer: usize,
    pub lr: f64,
    pub warmup_epochs: usize,
    pub min_lr: f64,
    pub optimizer: OptimizerKind,
}

/// The reference's colour augmentation, the defaults of the colour settings.
const DINO_COLOUR: ColourAugment = ColourAugment::dino();

/// The multi-crop augmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CropConfig {
    pub global_crops_scale: (f64, f64),
    pub local_crops_number: usize,
    pub local_crops_scale: (f64, f64),
    pub global_crop_size: usize,
    pub local_crop_size: usize,
    /// Range of the Gaussian blur radius in pixels (PIL's `radius`); `[0, 0]` turns blur off.
    /// Not a reference flag: the reference hard-codes 0.1..2.0, made for 224 px crops, which
    /// wipes out most of a 32 px image.
    pub blur_sigma: (f64, f64),
    /// Probability of colour jitter (the reference: 0.8). Not a reference flag, nor are the next
    /// three: the reference hard-codes them.
    pub color_jitter_prob: f64,
    /// `ColorJitter` strengths: brightness, contrast, saturation, hue (the reference: 0.4 0.4 0.2 0.1).
    pub color_jitter: [f64; 4],
    /// Probability of turning a crop grey (the reference: 0.2).
    pub grayscale_prob: f64,
    /// Probability of solarizing the second global crop (the reference: 0.2).
    pub solarize_prob: f64,
}

/// Where the data is, where the run goes, and how it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    pub data_path: PathBuf,
    /// A text file of image paths (relative to `data_path` or absolute) left out of training.
    pub exclude: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    pub name: Option<String>,
    pub saveckp_freq: usize,
    /// Rolling checkpoints kept as distinct files (numbered, evaluated and kept ones stay too).
    pub keep_checkpoints: usize,
    pub seed: u64,
    pub num_workers: usize,
    pub device: String,
    pub headless: bool,
    /// Headless progress line every this many iterations.
    pub print_freq: usize,
    /// Run the k-NN evaluation of the teacher every this many epochs (0: never).
    pub eval_knn_every: usize,
    /// Largest image (width x height) decoded; bigger ones are skipped and named (0: no limit).
    pub max_image_pixels: u64,
    /// The run directory readable by its owner only (folders 0700, files 0600); false leaves
    /// modes to the umask, for runs shared with a group.
    pub private_files: bool,
}

// The reference's `get_args_parser()` defaults, plus our own settings' defaults.

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            arch: Arch::VitSmall,
            patch_size: 16,
            embed_dim: None,
            depth: None,
            num_heads: None,
            resnet_stem: ResNetStem::Imagenet,
            resnet_width: 64,
            out_dim: 65536,
            norm_last_layer: true,
            use_bn_in_head: false,
            head_hidden_dim: 2048,
            head_bottleneck_dim: 256,
            drop_path_rate: 0.1,
        }
    }
}

impl Default for TeacherConfig {
    fn default() -> Self {
        Self {
            momentum_teacher: 0.996,
            warmup_teacher_temp: 0.04,
            teacher_temp: 0.04,
            warmup_teacher_temp_epochs: 0,
            centering: Centering::Ema,
        }
    }
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            use_fp16: true,
            amp_dtype: AmpDtype::Fp16,
            weight_decay: 0.04,
            weight_decay_end: 0.4,
            clip_grad: 3.0,
            koleo_loss_weight: 0.0,
            batch_size_per_gpu: 64,
            epochs: 100,
            freeze_last_layer: 1,
            lr: 0.0005,
            warmup_epochs: 10,
            min_lr: 1e-6,
            optimizer: OptimizerKind::Adamw,
        }
    }
}

impl Default for CropConfig {
    fn default() -> Self {
        Self {
            global_crops_scale: (0.4, 1.0),
            local_crops_number: 8,
            local_crops_scale: (0.05, 0.4),
            global_crop_size: 224,
            local_crop_size: 96,
            blur_sigma: (0.1, 2.0),
            color_jitter_prob: DINO_COLOUR.jitter_p,
            color_jitter: DINO_COLOUR.jitter,
            grayscale_prob: DINO_COLOUR.grayscale_p,
            solarize_prob: DINO_COLOUR.solarize_p,
        }
    }
}

/// What a new run starts from instead of random weights; both are read only while the run
/// directory holds no checkpoint of its own (after that, the run resumes from its own).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StartConfig {
    /// Weights a new run starts from (a PyTorch `.pth` or a safetensors file): a reference
    /// checkpoint's student and teacher, or one backbone for both.
    pub pretrained_weights: Option<PathBuf>,
    /// A reference `checkpoint.pth` this run continues (networks, optimizer moments, centre,
    /// epoch).
    pub resume_from: Option<PathBuf>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            data_path: PathBuf::from("/path/to/imagenet/train/"),
            exclude: None,
            output_dir: None,
            name: None,
            saveckp_freq: 20,
            keep_checkpoints: 2,
            seed: 0,
            num_workers: 10,
            device: "auto".into(),
            headless: false,
            print_freq: 10,
            eval_knn_every: 0,
            max_image_pixels: crate::data::decode::DEFAULT_MAX_IMAGE_PIXELS,
            private_files: true,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML preset; unknown keys are an error naming the file, so a typo never goes unseen.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::files::read_to_string(path).map_err(|e| ConfigError::Io { path: path.to_path_buf(), message: e.to_string() })?;
        Self::from_toml_str(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: Some(path.to_path_buf()), message },
            other => other,
        })
    }

    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse { path: None, message: culprit(text, e) })?;
        if let Some(key) = config.unknown.keys().next() {
            let at = line_of(text, key).map(|l| format!(" (line {l})")).unwrap_or_default();
            return Err(ConfigError::Parse { path: None, message: format!("unknown setting `{key}`{at}") });
        }
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        // Serialising a plain struct of numbers, strings and paths cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn is_vit(&self) -> bool {
        self.model.arch.is_vit()
    }

    /// The ViT the config describes: the `arch` preset, with custom width/depth/heads taking precedence.
    pub fn vit_spec(&self) -> VitSpec {
        let m = &self.model;
        let (dim, depth, heads) = m.arch.vit_dims().unwrap_or((384, 12, 6));
        // Sizes are bounded by validation far below i64::MAX; tch takes dimensions as i64.
        let i = |v: usize| v as i64;
        VitSpec {
            img_size: i(self.crops.global_crop_size),
            patch_size: i(m.patch_size),
            embed_dim: m.embed_dim.map(i).unwrap_or(dim),
            depth: m.depth.map(i).unwrap_or(depth),
            num_heads: m.num_heads.map(i).unwrap_or(heads),
            mlp_ratio: 4.0,
            drop_path_rate: m.drop_path_rate,
        }
    }

    /// The backbone to build; `drop_path` is the student's rate (the teacher and evaluations use 0).
    pub fn backbone_spec(&self, drop_path: f64) -> BackboneSpec {
        match ResNetDepth::from_arch(self.model.arch) {
            Some(depth) => BackboneSpec::ResNet { depth, stem: self.model.resnet_stem, width: self.model.resnet_width as i64 },
            None => BackboneSpec::Vit(VitSpec { drop_path_rate: drop_path, ..self.vit_spec() }),
        }
    }

    /// The DINO head (its input width is set from the backbone when the model is built).
    pub fn head_spec(&self, norm_last_layer: bool) -> HeadSpec {
        let m = &self.model;
        HeadSpec {
            in_dim: 0,
            out_dim: m.out_dim as i64,
            use_bn: m.use_bn_in_head,
            norm_last_layer,
            nlayers: 3,
            hidden_dim: m.head_hidden_dim as i64,
            bottleneck_dim: m.head_bottleneck_dim as i64,
        }
    }

    /// The multi-crop augmentation's settings.
    pub fn augment_config(&self) -> AugmentConfig {
        let c = &self.crops;
        AugmentConfig {
            global_size: c.global_crop_size,
            local_size: c.local_crop_size,
            global_scale: c.global_crops_scale,
            local_scale: c.local_crops_scale,
            local_crops_number: c.local_crops_number,
            blur_sigma: c.blur_sigma,
            colour: ColourAugment {
                jitter_p: c.color_jitter_prob,
                jitter: c.color_jitter,
                grayscale_p: c.grayscale_prob,
                solarize_p: c.solarize_prob,
            },
        }
    }

    /// Number of crops per image: two global views plus the local ones.
    pub fn ncrops(&self) -> usize {
        2 + self.crops.local_crops_number
    }

    /// The run's name: `--name`, else the architecture and the start time.
    pub fn run_name(&self) -> String {
        self.run.name.clone().unwrap_or_else(|| {
            let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            format!("{}-{}", self.model.arch, secs)
        })
    }

    /// `--output_dir`, else `runs/NAME`.
    pub fn run_dir(&self) -> PathBuf {
        self.run.output_dir.clone().unwrap_or_else(|| PathBuf::from("runs").join(self.run_name()))
    }

    /// The learning rate the schedule peaks at: the reference's linear scaling rule.
    pub fn scaled_lr(&self, world_size: usize) -> f64 {
        self.optim.lr * (self.optim.batch_size_per_gpu * world_size) as f64 / 256.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_defaults() {
        let c = TrainConfig::default();
        assert_eq!(c.model.arch, Arch::VitSmall);
        assert_eq!(c.model.patch_size, 16);
        assert_eq!(c.model.out_dim, 65536);
        assert_eq!(c.optim.lr, 0.0005);
        assert_eq!(c.optim.min_lr, 1e-6);
        assert_eq!(c.crops.local_crops_number, 8);
        assert_eq!(c.crops.global_crops_scale, (0.4, 1.0));
        assert_eq!(c.optim.optimizer, OptimizerKind::Adamw);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn toml_round_trip() {
        let mut c = TrainConfig::default();
        c.model.arch = Arch::VitTiny;
        c.model.embed_dim = Some(48);
        c.run.output_dir = Some("runs/x".into());
        let back = TrainConfig::from_toml_str(&c.to_toml()).unwrap();
        assert_eq!(c, back);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = TrainConfig::from_toml_str("lr = 0.1\nlrr = 0.1").unwrap_err().to_string();
        assert!(err.contains("`lrr`") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_bad_value_names_its_setting_and_line() {
        // The groups are flattened: toml alone would point at line 1 and name no key.
        let err = TrainConfig::from_toml_str("epochs = 3\nlr = \"fast\"\n").unwrap_err().to_string();
        assert!(err.contains("`lr`") && err.contains("line 2"), "{err}");
        let err = TrainConfig::from_toml_str("global_crops_scale = [0.1, 0.5, 1.0]").unwrap_err().to_string();
        assert!(err.contains("`global_crops_scale`") && err.contains("2"), "{err}");
        let err = TrainConfig::from_toml_str("\n\nepochs = -1").unwrap_err().to_string();
        assert!(err.contains("`epochs`") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn augment_config_takes_the_multicrop_settings() {
        let mut c = TrainConfig::default();
        c.crops =
            CropConfig { global_crop_size: 32, local_crop_size: 16, local_crops_number: 6, global_crops_scale: (0.5, 1.0), ..c.crops };
        let a = c.augment_config();
        assert_eq!(
            a,
            AugmentConfig {
                global_size: 32,
                local_size: 16,
                global_scale: (0.5, 1.0),
                local_scale: c.crops.local_crops_scale,
                local_crops_number: 6,
                blur_sigma: (0.1, 2.0),
                colour: DINO_COLOUR,
            }
        );
        assert_eq!((a.num_crops(), a.crop_size(1), a.crop_size(2)), (8, 32, 16));
    }

    #[test]
    fn scaled_lr_follows_linear_rule() {
        let mut c = TrainConfig::default();
        c.optim.batch_size_per_gpu = 128;
        assert!((c.scaled_lr(2) - 0.0005).abs() < 1e-15);
    }
}

/// The message of a TOML error, with the setting to blame. Values of the flattened groups are
/// checked after toml has handed them over, so its own message points at line 1 and names no key;
/// each key alone is tried again to find the one that fails, and named with its line.
fn culprit(text: &str, e: toml::de::Error) -> String {
    let Ok(table) = text.parse::<toml::Table>() else { return e.to_string() };
    for (key, value) in &table {
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        if let Err(alone) = toml::Value::Table(one).try_into::<TrainConfig>() {
            let at = line_of(text, key).map(|l| format!(" at line {l}")).unwrap_or_default();
            return format!("setting `{key}`{at}: {}", alone.message().trim());
        }
    }
    e.to_string()
}

/// The line (1-based) where `key = ...` is set.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines().position(|l| l.trim_start().strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('='))).map(|i| i + 1)
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
        assert_eq!((r.model.arch, r.optim.optimizer, r.optim.lr), (Arch::ResNet50, OptimizerKind::Sgd, 0.03));
        // The paper preset is exactly the reference's defaults.
        assert_eq!(preset("vit-small").unwrap(), TrainConfig::default());
    }
}
