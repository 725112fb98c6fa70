//! Command-line surface. Training flags are spelled exactly as the reference `main_dino.py` spells
//! them (`--batch_size_per_gpu`, `--global_crops_scale A B`, ...), so its README commands run with
//! only the program name changed. Every flag is optional: unset flags keep the preset's value.

use super::flags::bool_flag;
use crate::config::{Arch, ConfigError, OptimizerKind, ResNetStem, TrainConfig};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "dino",
    version,
    about = "Train DINO self-supervised vision models on libtorch; watch and steer them from a terminal",
    long_about = None,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The command line as parsed: `Cli`'s, with every numeric flag of one value taking a value that
/// starts with `-` (`--lr -inf`, `--temperature -1`), so the flag's own range check answers,
/// naming it, instead of clap's "unexpected argument '-i'".
pub fn command() -> clap::Command {
    numbers_may_start_with_a_hyphen(<Cli as clap::CommandFactory>::command())
}

fn numbers_may_start_with_a_hyphen(cmd: clap::Command) -> clap::Command {
    use std::any::TypeId;
    let numeric =
        [TypeId::of::<f64>(), TypeId::of::<f32>(), TypeId::of::<i64>(), TypeId::of::<u64>(), TypeId::of::<u32>(), TypeId::of::<usize>()];
    cmd.mut_args(|a| {
        let t = a.get_value_parser().type_id();
        // A flag of several values (`--color_jitter B C S H`) takes negative numbers only: with
        // any hyphen value it would swallow the next flag as its value.
        let several = a.get_num_args().is_some_and(|r| r.max_values() > 1);
        match numeric.iter().any(|n| t == *n) {
            true if several => a.allow_negative_numbers(true),
            true => a.allow_hyphen_values(true),
            false => a,
        }
    })
    .mut_subcommands(numbers_may_start_with_a_hyphen)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a DINO model (TUI when a terminal is attached, progress lines otherwise)
    Train(TrainArgs),
    /// Train with the live terminal UI
    Tui(TrainArgs),
    /// Open the TUI on a run started elsewhere
    Attach {
        /// Run directory (default: pick from `dino runs`)
        run_dir: Option<PathBuf>,
        /// TUI colour theme: dark, light, high-contrast, a user theme name or a .toml path
        #[arg(long)]
        theme: Option<String>,
    },
    /// Send a command to a live run: status, pause, resume, checkpoint, stop, set KEY=VALUE, eval knn|linear
    #[command(after_help = crate::cmd::ctl::USAGE)]
    Ctl {
        run_dir: PathBuf,
        /// The command and its options (--from_iter N, --timeout SECONDS, --no-checkpoint)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Evaluate a trained model
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Score images as outliers, mislabeled or duplicates, and draw the embedding map
    Outliers(crate::cmd::eval_args::OutlierArgs),
    /// Write a backbone for PyTorch code: the reference ViT, torchvision's ResNet, timm
    Export(crate::cmd::export::ExportArgs),
    /// Where a network looks: per-head CLS attention maps and masks (ViT), or PCA of its features (any)
    Attention(crate::cmd::attention::AttentionArgs),
    /// Features of every image of a folder to .npy or .safetensors, with a CSV of path,label
    Embed(crate::cmd::embed::EmbedArgs),
    /// The images most like a query image (or each image of a folder) by cosine similarity of the features
    Search(crate::cmd::search::SearchArgs),
    /// Near-duplicate pairs (edited copies: crops, mirror, colour, JPEG) ranked by copy-detection similarity
    Duplicates(crate::cmd::duplicates::DuplicatesArgs),
    /// List runs with their status, epoch, loss and best k-NN top-1 (k = 20)
    Runs {
        /// Folder holding run directories (default ./runs); runs in the run index are listed too
        dir: Option<PathBuf>,
        /// One JSON array of the runs instead of the table (for scripts)
        #[arg(long)]
        json: bool,
        /// Order: modified (most recently active first), name, knn (best first), loss (lowest
        /// first) or status (live first)
        #[arg(long, default_value_t = crate::run::runs::SortBy::Modified, value_parser = runs_sort)]
        sort: crate::run::runs::SortBy,
    },
    /// Runs side by side: the settings that differ, best and last k-NN, loss, speed, time (runs
    /// that differ only by seed grouped as mean ± standard deviation)
    Compare(crate::cmd::compare::CompareArgs),
    /// Generate a synthetic data set and train on it (the quick demo)
    Demo(DemoArgs),
    /// Write the synthetic demo data set (pretext/, train/CLASS/, val/CLASS/) into DIR
    MakeDemoData {
        dir: PathBuf,
        /// Images per class in train/ (val/ gets a quarter, pretext/ the same again unlabeled)
        #[arg(long = "per_class", default_value_t = 60)]
        per_class: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Side of the square images in pixels
        #[arg(long, default_value_t = 48)]
        size: u32,
    },
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell): `dino completions bash > ~/.local/share/bash-completion/completions/dino`
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (dino.1 and one per subcommand) into a folder
    Man {
        /// Where to write them (e.g. ~/.local/share/man/man1)
        #[arg(long = "output_dir")]
        output_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Weighted k-NN classification on frozen features
    Knn(crate::cmd::eval_args::KnnArgs),
    /// Linear probe on frozen features
    Linear(crate::cmd::eval_args::LinearArgs),
    /// Accuracy as a function of labeled images per class
    LabelEfficiency(crate::cmd::eval_args::LabelEfficiencyArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo data and run go
    #[arg(long, default_value = "demo")]
    pub dir: PathBuf,
    /// Force progress lines instead of the TUI
    #[arg(long)]
    pub headless: bool,
    /// Override the number of epochs of the demo preset
    #[arg(long)]
    pub epochs: Option<i64>,
    /// TUI colour theme
    #[arg(long)]
    pub theme: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
#[command(rename_all = "snake_case")]
pub struct TrainArgs {
    /// TOML config to start from: a file, or a preset name (cifar-quick, vit-small, resnet50,
    /// demo); flags given here override it
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the effective config as TOML and exit (with the plan: steps, the teacher's EMA
    /// half-life, what --recipe auto chose and why, and settings known to fail)
    #[arg(long = "print-config")]
    pub print_config: bool,
    /// reference (default: the config's values as they are) or auto: out_dim, teacher
    /// temperature and momentum, warm-ups and last-layer freeze derived from the number of
    /// images in --data_path and the planned steps; flags given still win
    #[arg(long)]
    pub recipe: Option<String>,
    #[command(flatten)]
    pub model: ModelFlags,
    #[command(flatten)]
    pub teacher: TeacherFlags,
    #[command(flatten)]
    pub optim: OptimFlags,
    #[command(flatten)]
    pub crops: CropFlags,
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub start: StartFlags,
    /// Train in the background, detached from this terminal (output in RUN_DIR/detached.log);
    /// prints the run directory and pid
    #[arg(long, help_heading = "Run")]
    pub detach: bool,
    /// Data-parallel training: start N processes on this machine (as torchrun --nproc_per_node N)
    #[arg(long, help_heading = "Run")]
    pub nproc_per_node: Option<usize>,
    /// TUI colour theme: dark, light, high-contrast, a user theme name or a .toml path
    #[arg(long, help_heading = "Run")]
    pub theme: Option<String>,
}

/// The networks: flags of `TrainConfig::model`.
#[derive(Debug, Clone, Default, Args)]
#[command(rename_all = "snake_case")]
pub struct ModelFlags {
    /// Architecture: vit_tiny, vit_small, vit_base, resnet18, resnet50
    #[arg(long, help_heading = "Model")]
    pub arch: Option<String>,
    /// Size in pixels of input square patches (ViT)
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub patch_size: Option<i64>,
    /// Custom ViT width (overrides the arch preset)
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub embed_dim: Option<i64>,
    /// Custom ViT depth (overrides the arch preset)
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub depth: Option<i64>,
    /// Custom ViT number of heads (overrides the arch preset)
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub num_heads: Option<i64>,
    /// ResNet stem: imagenet (torchvision's 7x7 stride 2 + max-pool), mid (the same without the max-pool) or cifar (3x3 stride 1, no max-pool: for 32 px images)
    #[arg(long, help_heading = "Model")]
    pub resnet_stem: Option<String>,
    /// ResNet width: channels of the stem and layer1, doubled at each later stage (torchvision: 64)
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub resnet_width: Option<i64>,
    /// Dimensionality of the DINO head output
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub out_dim: Option<i64>,
    /// Weight-normalise the last layer of the head with a fixed norm (true/false)
    #[arg(long, value_parser = bool_flag, help_heading = "Model")]
    pub norm_last_layer: Option<bool>,
    /// Use batch normalisation in the projection head (true/false)
    #[arg(long, value_parser = bool_flag, help_heading = "Model")]
    pub use_bn_in_head: Option<bool>,
    /// Hidden width of the head's MLP
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub head_hidden_dim: Option<i64>,
    /// Bottleneck width of the head's MLP
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub head_bottleneck_dim: Option<i64>,
    /// Stochastic depth rate
    #[arg(long, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub drop_path_rate: Option<f64>,
}

/// The teacher: flags of `TrainConfig::teacher`.
#[derive(Debug, Clone, Default, Args)]
#[command(rename_all = "snake_case")]
pub struct TeacherFlags {
    /// Base EMA parameter for the teacher update (cosine to 1 during training)
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub momentum_teacher: Option<f64>,
    /// Initial teacher temperature (linear warm-up to --teacher_temp)
    #[arg(long, allow_negative_numbers = true, help_heading = "Temperature")]
    pub warmup_teacher_temp: Option<f64>,
    /// Final teacher temperature
    #[arg(long, allow_negative_numbers = true, help_heading = "Temperature")]
    pub teacher_temp: Option<f64>,
    /// Epochs of teacher temperature warm-up
    #[arg(long, allow_negative_numbers = true, help_heading = "Temperature")]
    pub warmup_teacher_temp_epochs: Option<i64>,
    /// Teacher targets: ema (DINO's centring) or sinkhorn_knopp (DINOv2's: every prototype equally used per batch)
    #[arg(long, help_heading = "Temperature")]
    pub centering: Option<String>,
}

/// Optimisation: flags of `TrainConfig::optim`.
#[derive(Debug, Clone, Default, Args)]
#[command(rename_all = "snake_case")]
pub struct OptimFlags {
    /// Mixed precision (true/false): CUDA autocast in --amp_dtype; bf16 autocast on a CPU with
    /// bfloat16 instructions (AVX512-BF16, AMX), float32 on other CPUs
    #[arg(long, value_parser = bool_flag, help_heading = "Optimisation")]
    pub use_fp16: Option<bool>,
    /// CUDA mixed-precision dtype: fp16 (the reference's, loss-scaled) or bf16; the CPU uses bf16
    #[arg(long, help_heading = "Optimisation")]
    pub amp_dtype: Option<String>,
    /// Initial weight decay (cosine schedule to --weight_decay_end)
    #[arg(long, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub weight_decay: Option<f64>,
    /// Final weight decay
    #[arg(long, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub weight_decay_end: Option<f64>,
    /// Maximal gradient norm per parameter (0 disables clipping)
    #[arg(long, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub clip_grad: Option<f64>,
    /// Weight of DINOv2's KoLeo term, which spreads the student's features of each global view over the sphere (0: off, as DINO)
    #[arg(long, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub koleo_loss_weight: Option<f64>,
    /// Images per device per step
    #[arg(long, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub batch_size_per_gpu: Option<i64>,
    /// Number of epochs
    #[arg(long, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub epochs: Option<i64>,
    /// Epochs during which the head's last layer is kept fixed
    #[arg(long, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub freeze_last_layer: Option<i64>,
    /// Peak learning rate at batch 256 (scaled by batch size / 256)
    #[arg(long, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub lr: Option<f64>,
    /// Epochs of linear learning-rate warm-up
    #[arg(long, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub warmup_epochs: Option<i64>,
    /// Final learning rate of the cosine schedule
    #[arg(long, allow_negative_numbers = true, help_heading = "Optimisation")]
    pub min_lr: Option<f64>,
    /// Optimizer: adamw, sgd, lars
    #[arg(long, help_heading = "Optimisation")]
    pub optimizer: Option<String>,
}

/// Multi-crop: flags of `TrainConfig::crops`.
#[derive(Debug, Clone, Default, Args)]
#[command(rename_all = "snake_case")]
pub struct CropFlags {
    /// Scale range of the global crops: MIN MAX
    #[arg(long, num_args = 1.., allow_negative_numbers = true, value_names = ["MIN", "MAX"], help_heading = "Multi-crop")]
    pub global_crops_scale: Option<Vec<f64>>,
    /// Number of small local views (0 disables them)
    #[arg(long, allow_negative_numbers = true, help_heading = "Multi-crop")]
    pub local_crops_number: Option<i64>,
    /// Scale range of the local crops: MIN MAX
    #[arg(long, num_args = 1.., allow_negative_numbers = true, value_names = ["MIN", "MAX"], help_heading = "Multi-crop")]
    pub local_crops_scale: Option<Vec<f64>>,
    /// Side of the global crops in pixels
    #[arg(long, allow_negative_numbers = true, help_heading = "Multi-crop")]
    pub global_crop_size: Option<i64>,
    /// Side of the local crops in pixels
    #[arg(long, allow_negative_numbers = true, help_heading = "Multi-crop")]
    pub local_crop_size: Option<i64>,
    /// Gaussian blur radius range in pixels: MIN MAX (0 0 turns blur off, as is usual for 32 px images)
    #[arg(long, num_args = 1.., allow_negative_numbers = true, value_names = ["MIN", "MAX"], help_heading = "Multi-crop")]
    pub blur_sigma: Option<Vec<f64>>,
    /// Probability of colour jitter (the reference: 0.8)
    #[arg(long, allow_negative_numbers = true, value_name = "P", help_heading = "Multi-crop")]
    pub color_jitter_prob: Option<f64>,
    /// Colour jitter strengths: BRIGHTNESS CONTRAST SATURATION HUE (the reference: 0.4 0.4 0.2 0.1)
    #[arg(long, num_args = 1.., allow_negative_numbers = true, value_names = ["B", "C", "S", "H"], help_heading = "Multi-crop")]
    pub color_jitter: Option<Vec<f64>>,
    /// Probability of a grey crop (the reference: 0.2)
    #[arg(long, allow_negative_numbers = true, value_name = "P", help_heading = "Multi-crop")]
    pub grayscale_prob: Option<f64>,
    /// Probability of solarizing the second global crop (the reference: 0.2)
    #[arg(long, allow_negative_numbers = true, value_name = "P", help_heading = "Multi-crop")]
    pub solarize_prob: Option<f64>,
}

/// The run: flags of `TrainConfig::run`.
#[derive(Debug, Clone, Default, Args)]
#[command(rename_all = "snake_case")]
pub struct RunFlags {
    /// Data-set root: pretext/ (training), train/CLASS/ and val/CLASS/ (evaluation)
    #[arg(long, help_heading = "Run")]
    pub data_path: Option<PathBuf>,
    /// Text file of image paths to leave out of training (one per line, relative to --data_path or absolute; the Outliers tab's `e` writes one)
    #[arg(long, help_heading = "Run")]
    pub exclude: Option<PathBuf>,
    /// Run directory (default runs/NAME)
    #[arg(long, help_heading = "Run")]
    pub output_dir: Option<PathBuf>,
    /// Run name (default ARCH-TIMESTAMP)
    #[arg(long, help_heading = "Run")]
    pub name: Option<String>,
    /// Save a numbered checkpoint every N epochs (0: only checkpoint-latest)
    #[arg(long, allow_negative_numbers = true, help_heading = "Run")]
    pub saveckp_freq: Option<i64>,
    /// Rolling checkpoints kept as distinct files (default 2); numbered, evaluated and kept ones stay as well
    #[arg(long, allow_negative_numbers = true, help_heading = "Run")]
    pub keep_checkpoints: Option<i64>,
    /// Random seed
    #[arg(long, help_heading = "Run")]
    pub seed: Option<u64>,
    /// Data-loading worker threads
    #[arg(long, help_heading = "Run")]
    pub num_workers: Option<usize>,
    /// Device: auto, cpu, cuda, cuda:N
    #[arg(long, help_heading = "Run")]
    pub device: Option<String>,
    /// Progress lines instead of the TUI, even on a terminal
    #[arg(long, help_heading = "Run")]
    pub headless: bool,
    /// Largest image decoded, in pixels (width x height); bigger ones are skipped and named (0: no limit)
    #[arg(long, help_heading = "Run")]
    pub max_image_pixels: Option<u64>,
    /// The run directory private to you (folders 0700, files 0600): true/false
    #[arg(long, value_parser = bool_flag, help_heading = "Run")]
    pub private_files: Option<bool>,
    /// Headless progress line every N iterations
    #[arg(long, allow_negative_numbers = true, help_heading = "Run")]
    pub print_freq: Option<i64>,
    /// k-NN evaluation of the teacher every N epochs (0: never); training pauses meanwhile
    #[arg(long, allow_negative_numbers = true, help_heading = "Run")]
    pub eval_knn_every: Option<i64>,
}

/// What a new run starts from instead of random weights (read while the run has no checkpoint).
#[derive(Debug, Clone, Default, Args)]
#[command(rename_all = "snake_case")]
pub struct StartFlags {
    /// Start from these weights: a PyTorch .pth (a reference checkpoint.pth: its student and
    /// teacher; an official pretrained backbone such as dino_deitsmall16_pretrain.pth: both) or a
    /// safetensors file; without --config the architecture is read from the file
    #[arg(long, help_heading = "Start from")]
    pub pretrained_weights: Option<PathBuf>,
    /// Continue a reference run from its checkpoint.pth (networks, optimizer moments, centre,
    /// epoch); without --config its settings come from the file's args
    #[arg(long, help_heading = "Start from")]
    pub resume_from: Option<PathBuf>,
}

impl StartFlags {
    fn apply(&self, s: &mut crate::config::StartConfig) {
        if self.pretrained_weights.is_some() {
            s.pretrained_weights = self.pretrained_weights.clone();
        }
        if self.resume_from.is_some() {
            s.resume_from = self.resume_from.clone();
        }
    }
}

/// `--arch`, checked against the architectures the model can build.
pub fn parse_arch(s: &str) -> Result<Arch, ConfigError> {
    Arch::parse(s).ok_or_else(|| ConfigError::invalid("arch", s, &format!("one of {}", Arch::names())))
}

/// `dino runs --sort`, naming the orders when the word is none of them.
fn runs_sort(s: &str) -> Result<crate::run::runs::SortBy, String> {
    use strum::VariantNames;
    s.parse().map_err(|_| format!("expected one of {}", crate::run::runs::SortBy::VARIANTS.join(", ")))
}

/// `--config`: a TOML file; else a preset name (`--config demo` is the preset even where a
/// `./demo` folder exists, as long as it is not a file); else a run directory's `config.toml`.
pub fn load_config(path: &Path) -> Result<TrainConfig, ConfigError> {
    if path.is_file() {
        return TrainConfig::from_toml_file(path);
    }
    if let Some(p) = crate::config::preset(&path.to_string_lossy()) {
        return Ok(p);
    }
    if path.is_dir() {
        let inner = path.join(crate::run::dir::CONFIG_FILE);
        if inner.is_file() {
            return TrainConfig::from_toml_file(&inner);
        }
        let presets: Vec<&str> = crate::config::PRESETS.iter().map(|(n, _)| *n).collect();
        return Err(ConfigError::Io {
            path: path.to_path_buf(),
            message: format!("it is a folder without config.toml (not a run directory) and not a preset ({})", presets.join(", ")),
        });
    }
    TrainConfig::from_toml_file(path)
}

fn pair(setting: &str, v: &[f64]) -> Result<(f64, f64), ConfigError> {
    exactly(setting, v, "two numbers MIN MAX").map(|[a, b]| (a, b))
}

/// The `N` values of a multi-value flag. clap takes any count (`num_args = 1..`), so a wrong count
/// is an error naming the flag rather than a stray argument or a silent cut.
fn exactly<const N: usize>(setting: &str, v: &[f64], what: &str) -> Result<[f64; N], ConfigError> {
    <[f64; N]>::try_from(v).map_err(|_| {
        ConfigError::invalid(
            setting,
            v.iter().map(f64::to_string).collect::<Vec<_>>().join(" "),
            &format!("exactly {what} (got {})", v.len()),
        )
    })
}

impl TrainArgs {
    /// Starts from `--config` (or the reference defaults), applies every flag given, validates.
    pub fn resolve(&self) -> Result<TrainConfig, ConfigError> {
        self.resolve_explained().map(|(c, _)| c)
    }

    /// `resolve`, with what `--recipe auto` chose and why.
    pub fn resolve_explained(&self) -> Result<(TrainConfig, super::recipe::RecipeReport), ConfigError> {
        let mut c = self.start_config()?;
        self.apply(&mut c)?;
        let mut report = super::recipe::RecipeReport::default();
        if super::recipe::is_auto(self.recipe.as_deref())? {
            report = super::recipe::apply_auto(&mut c, &self.pinned(), super::recipe::world_size(self.nproc_per_node))?;
        }
        c.validate()?;
        Ok((c, report))
    }

    /// The settings given as flags, which `--recipe auto` leaves alone.
    fn pinned(&self) -> Vec<&'static str> {
        let (m, t, o) = (&self.model, &self.teacher, &self.optim);
        [
            ("out_dim", m.out_dim.is_some()),
            ("teacher_temp", t.teacher_temp.is_some()),
            ("warmup_teacher_temp", t.warmup_teacher_temp.is_some()),
            ("warmup_teacher_temp_epochs", t.warmup_teacher_temp_epochs.is_some()),
            ("momentum_teacher", t.momentum_teacher.is_some()),
            ("warmup_epochs", o.warmup_epochs.is_some()),
            ("freeze_last_layer", o.freeze_last_layer.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }

    /// `--config` (or the reference defaults, or what `--pretrained_weights`/`--resume_from` say).
    fn start_config(&self) -> Result<TrainConfig, ConfigError> {
        Ok(match &self.config {
            Some(path) => load_config(path)?,
            None => {
                let mut c = TrainConfig::default();
                let (pretrained, resume) = (self.start.pretrained_weights.as_deref(), self.start.resume_from.as_deref());
                super::train_from::overlay(&mut c, pretrained, resume, self.model.arch.as_deref())?;
                c
            }
        })
    }

    /// Applies the flags that were given on top of `c`.
    pub fn apply(&self, c: &mut TrainConfig) -> Result<(), ConfigError> {
        self.model.apply(&mut c.model)?;
        self.teacher.apply(&mut c.teacher)?;
        self.optim.apply(&mut c.optim)?;
        self.crops.apply(&mut c.crops)?;
        self.start.apply(&mut c.start);
        self.run.apply(&mut c.run)
    }
}

/// A count flag: given as a signed number so that `--epochs -1` is refused by name (clap would
/// say only "invalid digit").
fn count(setting: &str, v: Option<i64>, min: i64) -> Result<Option<usize>, ConfigError> {
    match v {
        None => Ok(None),
        Some(n) if n >= min => Ok(Some(n as usize)),
        Some(n) => Err(ConfigError::invalid(setting, n, &format!("an integer >= {min}"))),
    }
}

/// Sets `target` when the flag was given.
fn set<T: Clone>(target: &mut T, v: &Option<T>) {
    if let Some(v) = v {
        *target = v.clone();
    }
}

/// Sets a count when the flag was given, refusing values below `min`.
fn set_count(target: &mut usize, setting: &str, v: Option<i64>, min: i64) -> Result<(), ConfigError> {
    if let Some(n) = count(setting, v, min)? {
        *target = n;
    }
    Ok(())
}

impl ModelFlags {
    fn apply(&self, m: &mut crate::config::ModelConfig) -> Result<(), ConfigError> {
        if let Some(a) = &self.arch {
            m.arch = parse_arch(a)?;
        }
        set_count(&mut m.patch_size, "patch_size", self.patch_size, 1)?;
        for (target, name, v) in [
            (&mut m.embed_dim, "embed_dim", self.embed_dim),
            (&mut m.depth, "depth", self.depth),
            (&mut m.num_heads, "num_heads", self.num_heads),
        ] {
            if let Some(n) = count(name, v, 1)? {
                *target = Some(n);
            }
        }
        if let Some(s) = &self.resnet_stem {
            m.resnet_stem = ResNetStem::parse(s).ok_or_else(|| {
                ConfigError::invalid(
                    "resnet_stem",
                    s,
                    "imagenet (7x7 stride 2 + max-pool, torchvision), mid (7x7 stride 2, no max-pool) or cifar (3x3 stride 1, for 32 px images)",
                )
            })?;
        }
        set_count(&mut m.resnet_width, "resnet_width", self.resnet_width, 1)?;
        set_count(&mut m.out_dim, "out_dim", self.out_dim, 1)?;
        set(&mut m.norm_last_layer, &self.norm_last_layer);
        set(&mut m.use_bn_in_head, &self.use_bn_in_head);
        set_count(&mut m.head_hidden_dim, "head_hidden_dim", self.head_hidden_dim, 1)?;
        set_count(&mut m.head_bottleneck_dim, "head_bottleneck_dim", self.head_bottleneck_dim, 1)?;
        set(&mut m.drop_path_rate, &self.drop_path_rate);
        Ok(())
    }
}

impl TeacherFlags {
    fn apply(&self, t: &mut crate::config::TeacherConfig) -> Result<(), ConfigError> {
        set(&mut t.momentum_teacher, &self.momentum_teacher);
        set(&mut t.warmup_teacher_temp, &self.warmup_teacher_temp);
        set(&mut t.teacher_temp, &self.teacher_temp);
        if let Some(c) = &self.centering {
            t.centering = crate::config::Centering::parse(c)?;
        }
        set_count(&mut t.warmup_teacher_temp_epochs, "warmup_teacher_temp_epochs", self.warmup_teacher_temp_epochs, 0)
    }
}

impl OptimFlags {
    fn apply(&self, o: &mut crate::config::OptimConfig) -> Result<(), ConfigError> {
        set(&mut o.use_fp16, &self.use_fp16);
        if let Some(v) = &self.amp_dtype {
            o.amp_dtype = crate::config::AmpDtype::parse(v).ok_or_else(|| ConfigError::invalid("amp_dtype", v, "bf16 or fp16"))?;
        }
        set(&mut o.weight_decay, &self.weight_decay);
        set(&mut o.weight_decay_end, &self.weight_decay_end);
        set(&mut o.clip_grad, &self.clip_grad);
        set(&mut o.koleo_loss_weight, &self.koleo_loss_weight);
        set_count(&mut o.batch_size_per_gpu, "batch_size_per_gpu", self.batch_size_per_gpu, 1)?;
        set_count(&mut o.epochs, "epochs", self.epochs, 1)?;
        set_count(&mut o.freeze_last_layer, "freeze_last_layer", self.freeze_last_layer, 0)?;
        set(&mut o.lr, &self.lr);
        set_count(&mut o.warmup_epochs, "warmup_epochs", self.warmup_epochs, 0)?;
        set(&mut o.min_lr, &self.min_lr);
        if let Some(v) = &self.optimizer {
            o.optimizer = OptimizerKind::parse(v)?;
        }
        Ok(())
    }
}

impl CropFlags {
    fn apply(&self, c: &mut crate::config::CropConfig) -> Result<(), ConfigError> {
        if let Some(v) = &self.global_crops_scale {
            c.global_crops_scale = pair("global_crops_scale", v)?;
        }
        set_count(&mut c.local_crops_number, "local_crops_number", self.local_crops_number, 0)?;
        if let Some(v) = &self.local_crops_scale {
            c.local_crops_scale = pair("local_crops_scale", v)?;
        }
        set_count(&mut c.global_crop_size, "global_crop_size", self.global_crop_size, 1)?;
        set_count(&mut c.local_crop_size, "local_crop_size", self.local_crop_size, 1)?;
        if let Some(v) = &self.blur_sigma {
            c.blur_sigma = pair("blur_sigma", v)?;
        }
        if let Some(v) = &self.color_jitter {
            c.color_jitter = exactly("color_jitter", v, "four numbers BRIGHTNESS CONTRAST SATURATION HUE")?;
        }
        c.color_jitter_prob = self.color_jitter_prob.unwrap_or(c.color_jitter_prob);
        c.grayscale_prob = self.grayscale_prob.unwrap_or(c.grayscale_prob);
        c.solarize_prob = self.solarize_prob.unwrap_or(c.solarize_prob);
        Ok(())
    }
}

impl RunFlags {
    fn apply(&self, r: &mut crate::config::RunConfig) -> Result<(), ConfigError> {
        set(&mut r.data_path, &self.data_path);
        if self.exclude.is_some() {
            r.exclude = self.exclude.clone();
        }
        if self.output_dir.is_some() {
            r.output_dir = self.output_dir.clone();
        }
        if self.name.is_some() {
            r.name = self.name.clone();
        }
        set_count(&mut r.saveckp_freq, "saveckp_freq", self.saveckp_freq, 0)?;
        set_count(&mut r.keep_checkpoints, "keep_checkpoints", self.keep_checkpoints, 1)?;
        set(&mut r.seed, &self.seed);
        set(&mut r.num_workers, &self.num_workers);
        set(&mut r.device, &self.device);
        if self.headless {
            r.headless = true;
        }
        set(&mut r.max_image_pixels, &self.max_image_pixels);
        set(&mut r.private_files, &self.private_files);
        set_count(&mut r.print_freq, "print_freq", self.print_freq, 1)?;
        set_count(&mut r.eval_knn_every, "eval_knn_every", self.eval_knn_every, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> TrainArgs {
        let argv = line.split_whitespace();
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Train(a) => a,
            other => panic!("not train: {other:?}"),
        }
    }

    #[test]
    fn readme_vit_tiny_command_parses() {
        let a = parse(
            "dino train --arch vit_tiny --epochs 2 --data_path DATA --saveckp_freq 1 \
             --batch_size_per_gpu 32 --num_workers 2",
        );
        let c = a.resolve().unwrap();
        assert_eq!(c.model.arch, Arch::VitTiny);
        assert_eq!(c.optim.epochs, 2);
        assert_eq!(c.run.data_path, PathBuf::from("DATA"));
        assert_eq!(c.run.saveckp_freq, 1);
        assert_eq!(c.optim.batch_size_per_gpu, 32);
        assert_eq!(c.run.num_workers, 2);
        // Untouched settings keep the reference defaults.
        assert_eq!(c.model.out_dim, 65536);
        assert_eq!(c.optim.optimizer, OptimizerKind::Adamw);
    }

    #[test]
    fn readme_resnet50_command_parses() {
        let a = parse(
            "dino train --arch resnet50 --optimizer sgd --weight_decay 1e-4 --lr 0.03 \
             --weight_decay_end 1e-4 --global_crops_scale 0.14 1 --local_crops_scale 0.05 0.14 \
             --epochs 800 --data_path DATA --saveckp_freq 10 --batch_size_per_gpu 32 --num_workers 2",
        );
        let c = a.resolve().unwrap();
        assert_eq!(c.model.arch, Arch::ResNet50);
        assert_eq!(c.optim.optimizer, OptimizerKind::Sgd);
        assert_eq!(c.optim.weight_decay, 1e-4);
        assert_eq!(c.optim.weight_decay_end, 1e-4);
        assert_eq!(c.optim.lr, 0.03);
        assert_eq!(c.crops.global_crops_scale, (0.14, 1.0));
        assert_eq!(c.crops.local_crops_scale, (0.05, 0.14));
        assert_eq!(c.optim.epochs, 800);
    }

    /// Through `command()`, as `main` parses.
    fn parse_as_main(line: &str) -> TrainArgs {
        use clap::FromArgMatches;
        let m = command().try_get_matches_from(line.split_whitespace()).unwrap();
        match Cli::from_arg_matches(&m).unwrap().command {
            Command::Train(a) => a,
            other => panic!("not train: {other:?}"),
        }
    }

    #[test]
    fn numbers_with_a_leading_hyphen_reach_the_range_check() {
        // Issue 37: `--lr -inf` got clap's "unexpected argument '-i'".
        let e = parse_as_main("dino train --lr -inf").resolve().unwrap_err().to_string();
        assert!(e.contains("--lr"), "{e}");
        // A flag of several values still ends at the next flag.
        let c = parse_as_main("dino train --color_jitter 0.4 0.4 0.2 0.1 --epochs 3").resolve().unwrap();
        assert_eq!(c.optim.epochs, 3);
    }

    #[test]
    fn bool_flags_take_values_like_the_reference() {
        let c = parse("dino train --norm_last_layer false --use_fp16 0 --use_bn_in_head true").resolve().unwrap();
        assert!(!c.model.norm_last_layer && !c.optim.use_fp16 && c.model.use_bn_in_head);
        assert!(Cli::try_parse_from(["dino", "train", "--use_fp16", "maybe"]).is_err());
        let c = parse("dino train --amp_dtype bf16").resolve().unwrap();
        assert_eq!(c.optim.amp_dtype, crate::config::AmpDtype::Bf16);
        let err = parse("dino train --amp_dtype fp8").resolve().unwrap_err().to_string();
        assert!(err.contains("amp_dtype") && err.contains("bf16 or fp16"), "{err}");
    }

    #[test]
    fn bad_values_are_reported_by_name() {
        let e = parse("dino train --lr -0.1").resolve().unwrap_err().to_string();
        assert!(e.contains("--lr"), "{e}");
        let e = parse("dino train --arch nonsense").resolve().unwrap_err().to_string();
        assert!(e.contains("--arch"), "{e}");
        let e = parse("dino train --optimizer adam").resolve().unwrap_err().to_string();
        assert!(e.contains("--optimizer") && e.contains("lars"), "{e}");
        let e = parse("dino train --resnet_stem small").resolve().unwrap_err().to_string();
        assert!(e.contains("--resnet_stem") && e.contains("cifar"), "{e}");
        assert_eq!(parse("dino train --arch resnet18 --resnet_stem cifar").resolve().unwrap().model.resnet_stem, ResNetStem::Cifar);
        let e = parse("dino train --centering sinkhorn").resolve().unwrap_err().to_string();
        assert!(e.contains("--centering") && e.contains("sinkhorn_knopp"), "{e}");
        assert_eq!(
            parse("dino train --centering sinkhorn_knopp").resolve().unwrap().teacher.centering,
            crate::config::Centering::SinkhornKnopp
        );
        for bad in ["0", "-16", "257"] {
            let e = parse(&format!("dino train --arch resnet18 --resnet_width {bad}")).resolve().unwrap_err().to_string();
            assert!(e.contains("resnet_width"), "{bad}: {e}");
        }
        assert_eq!(parse("dino train --arch resnet18 --resnet_width 16").resolve().unwrap().model.resnet_width, 16);
        let e = parse("dino train --local_crops_scale 0.05 1.4").resolve().unwrap_err().to_string();
        assert!(e.contains("--local_crops_scale"), "{e}");
    }

    #[test]
    fn recipe_auto_counts_the_images_and_leaves_flags_alone() {
        let dir = tempfile::tempdir().unwrap();
        // 5 classes x 20: 100 pretext images, batch 10, 10 epochs: 100 steps.
        crate::data::write_demo_dataset(dir.path(), 20, 0, 16).unwrap();
        let line = format!("dino train --data_path {} --batch_size_per_gpu 10 --epochs 10 --recipe auto", dir.path().display());
        let (c, report) = parse(&line).resolve_explained().unwrap();
        assert_eq!(report.plan.map(|p| (p.images, p.total_steps())), Some((100, 100)));
        assert_eq!(c.model.out_dim, 64);
        assert!(crate::config::recipe::warnings(&c, &report.plan.unwrap()).is_empty());
        let explained = super::super::recipe::explain(&c, &report).join("\n");
        assert!(explained.contains("out_dim = 64") && explained.contains("momentum_teacher"), "{explained}");
        let (c, report) = parse(&format!("{line} --out_dim 4096 --momentum_teacher 0.996")).resolve_explained().unwrap();
        assert_eq!((c.model.out_dim, c.teacher.momentum_teacher), (4096, 0.996));
        let explained = super::super::recipe::explain(&c, &report).join("\n");
        assert!(explained.contains("warning: out_dim 4096") && explained.contains("warning: momentum_teacher 0.996"), "{explained}");
        // Without --recipe the reference's values stay.
        let c = parse(&line.replace(" --recipe auto", "")).resolve().unwrap();
        assert_eq!(c.model.out_dim, 65536);
        assert!(parse(&line.replace("--recipe auto", "--recipe fast")).resolve().is_err());
    }

    #[test]
    fn flags_override_a_preset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(&p, "arch = \"vit_tiny\"\nepochs = 7\nlr = 0.01\n").unwrap();
        let a = parse(&format!("dino train --config {} --epochs 3 --warmup_epochs 1", p.display()));
        let c = a.resolve().unwrap();
        assert_eq!((c.model.arch, c.optim.epochs, c.optim.lr), (Arch::VitTiny, 3, 0.01));
    }
}
