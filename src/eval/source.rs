//! Where the evaluated backbone comes from: a checkpoint of this project (its teacher or student),
//! a run directory (its latest checkpoint), a bare backbone safetensors file with the reference's
//! parameter names, a PyTorch file (a reference `checkpoint.pth` or an official pretrained state
//! dict, see `run::pytorch`), or random initialisation (the baseline every result is compared with).
//!
//! The architecture comes from the checkpoint's saved config when there is one, so evaluating a
//! run never needs the training flags repeated; for files without one it is read off the tensors
//! (and a reference checkpoint's `args`) unless `--config`/`--arch` say otherwise.

use super::EvalError;
use crate::config::infer::{self, ArgScope};
use crate::config::TrainConfig;
use crate::files::ShowPath;
use crate::model::{weights, Backbone};
use crate::run::checkpoint::{self, LoadedCheckpoint};
use crate::run::dir::{CHECKPOINT_DIR, CONFIG_FILE};
use crate::run::pytorch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Device, Tensor};

/// Which network of a DINO checkpoint to evaluate (reference `--checkpoint_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckpointKey {
    #[default]
    Teacher,
    Student,
}

impl CheckpointKey {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "teacher" => Ok(Self::Teacher),
            "student" => Ok(Self::Student),
            other => Err(format!("invalid --checkpoint_key {other}: use teacher or student")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Teacher => "teacher",
            Self::Student => "student",
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Self::Teacher => "teacher.",
            Self::Student => "student.",
        }
    }
}

/// What the person asked for on the command line.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// A checkpoint sidecar (`.json`), a tensor file (`.safetensors`), a PyTorch file (`.pth`), a
    /// run or checkpoint folder, or `random`.
    pub pretrained_weights: String,
    pub checkpoint_key: CheckpointKey,
    /// Config for files without one (and for `random`): a TOML file, a preset name or a run folder.
    pub config: Option<PathBuf>,
    pub arch: Option<String>,
    pub patch_size: Option<i64>,
    /// The image size of weights without a config (`--global_crop_size`): a bare backbone file
    /// does not say what it trained at.
    pub global_crop_size: Option<usize>,
    pub device: Device,
    /// Seed of the random initialisation.
    pub seed: u64,
}

impl SourceSpec {
    /// The teacher of `weights` (a checkpoint, run, backbone file or `random`), its architecture
    /// from the weights' own config.
    pub fn teacher(weights: impl Into<String>, device: Device, seed: u64) -> Self {
        Self {
            pretrained_weights: weights.into(),
            checkpoint_key: CheckpointKey::Teacher,
            config: None,
            arch: None,
            patch_size: None,
            global_crop_size: None,
            device,
            seed,
        }
    }
}

/// A backbone ready to evaluate, with what is known about where it came from.
pub struct ModelSource {
    /// Owns the backbone's variables; kept alive as long as the backbone.
    pub vs: VarStore,
    pub backbone: Backbone,
    pub config: TrainConfig,
    /// Changes whenever the weights may have changed (file, size, mtime, key): the feature cache key.
    pub identity: String,
    /// The run the weights belong to, where results are recorded.
    pub run_dir: Option<PathBuf>,
    /// One line for people: which file, which network, which epoch.
    pub description: String,
    pub epoch: Option<usize>,
    pub iter: Option<usize>,
    /// The checkpoint's content id (see `run::checkpoint`), recorded with every result.
    pub content_id: Option<String>,
    /// The network of a DINO checkpoint that was loaded (`--checkpoint_key`); `None` for other
    /// weights.
    pub network: Option<CheckpointKey>,
    /// What the weights file held that was not used or had to be guessed, for people.
    pub notes: Vec<String>,
}

impl ModelSource {
    /// The label of this source's result files in its run (`record::result_label`): a student's
    /// carry `-student`, so they sit beside the teacher's of the same checkpoint instead of
    /// replacing them.
    pub fn result_label(&self, data_root: &Path) -> String {
        let label = super::record::result_label(self.epoch, self.iter, data_root);
        match self.network {
            Some(CheckpointKey::Student) => format!("{label}-student"),
            _ => label,
        }
    }
}

/// The config a spec names without a checkpoint: `--config` (file, preset or run folder), then
/// `--arch`/`--patch_size` on top.
pub fn base_config(spec: &SourceSpec) -> Result<TrainConfig, EvalError> {
    let mut c = match &spec.config {
        Some(p) if p.is_dir() => TrainConfig::from_toml_file(&p.join(CONFIG_FILE))?,
        Some(p) if p.exists() => TrainConfig::from_toml_file(p)?,
        Some(p) => crate::config::preset(&p.to_string_lossy())
            .ok_or_else(|| EvalError::Invalid(format!("--config {}: no such file or preset", p.shown())))?,
        None => TrainConfig::default(),
    };
    if let Some(a) = &spec.arch {
        c.model.arch = crate::model::Arch::parse(a)
            .ok_or_else(|| EvalError::Invalid(format!("--arch {a}: expected one of {}", crate::model::Arch::names())))?;
    }
    if let Some(p) = spec.patch_size {
        c.model.patch_size = usize::try_from(p).map_err(|_| EvalError::Invalid(format!("--patch_size {p}: expected an integer >= 1")))?;
    }
    if let Some(s) = spec.global_crop_size {
        c.crops.global_crop_size = s;
    }
    Ok(c)
}

/// Modification time in nanoseconds and size: together with the path, what tells a rewritten file.
fn file_stamp(path: &Path) -> Result<(u128, u64), EvalError> {
    let m = std::fs::metadata(path).map_err(|e| EvalError::io(path, e))?;
    let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    Ok((mtime, m.len()))
}

fn identity_of(path: &Path, extra: &str) -> Result<String, EvalError> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let (mtime, size) = file_stamp(path)?;
    Ok(format!("{}|{mtime}|{size}|{extra}", canonical.shown()))
}

/// A folder that holds `config.toml` and `checkpoints/` is a run directory.
fn run_dir_of_checkpoint_folder(folder: &Path) -> Option<PathBuf> {
    let parent = folder.parent()?;
    (folder.file_name()? == CHECKPOINT_DIR && parent.join(CONFIG_FILE).exists()).then(|| parent.to_path_buf())
}

fn build(config: &TrainConfig, device: Device) -> Result<(VarStore, Backbone), EvalError> {
    config.validate()?;
    let vs = VarStore::new(device);
    let backbone = Backbone::new(vs.root(), &config.backbone_spec(0.0));
    Ok((vs, backbone))
}

fn strip(tensors: &BTreeMap<String, Tensor>, prefix: &str) -> BTreeMap<String, Tensor> {
    tensors.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.shallow_clone()))).collect()
}

/// Why a folder gave no checkpoint: the problems found (a permission error names its file), or
/// that it holds none.
fn no_usable_checkpoint(folder: &Path, problems: &[String]) -> String {
    match problems {
        [] => format!("no checkpoint in {}", folder.shown()),
        _ => format!("no usable checkpoint in {}: {}", folder.shown(), problems.join("; ")),
    }
}

/// Loads the backbone a spec names. Weights of a private run make what this process writes from
/// then on private too (its evals/, its feature cache, an export into it), as the trainer's files
/// are: every command that evaluates or exports a run comes through here.
pub fn load(spec: &SourceSpec) -> Result<ModelSource, EvalError> {
    let source = load_any(spec)?;
    if source.run_dir.is_some() && source.config.run.private_files {
        crate::run::dir::private_umask();
    }
    Ok(source)
}

fn load_any(spec: &SourceSpec) -> Result<ModelSource, EvalError> {
    let w = spec.pretrained_weights.trim();
    if w.is_empty() {
        return Err(EvalError::Invalid(
            "give --pretrained_weights: a run directory, a checkpoint (.json or .safetensors), a backbone file (.safetensors, or a PyTorch .pth: reference checkpoint or state dict), or `random`".into(),
        ));
    }
    if w == "random" {
        return random(spec);
    }
    let path = PathBuf::from(w);
    // A run as `dino runs` names it (./runs/NAME, or the index's), where no such path exists here.
    let path = match path.exists() {
        true => path,
        false => crate::run::runs::resolve(&path, crate::run::index::default_index_path().as_deref()),
    };
    if path.is_dir() {
        let (folder, run_dir) = if path.join(CHECKPOINT_DIR).is_dir() {
            (path.join(CHECKPOINT_DIR), Some(path.clone()))
        } else {
            (path.clone(), run_dir_of_checkpoint_folder(&path))
        };
        let (ckpt, problems) = checkpoint::load_latest(&folder);
        let ckpt = ckpt.ok_or_else(|| EvalError::Source(no_usable_checkpoint(&folder, &problems)))?;
        return from_checkpoint(spec, ckpt, run_dir);
    }
    if !path.exists() {
        return Err(EvalError::Source(format!("{} does not exist (nor is it a run name in ./runs or the run index)", path.shown())));
    }
    if path.extension().is_some_and(|e| e == "json") {
        let ckpt = checkpoint::load_one(&path).map_err(|e| EvalError::Source(format!("{e:#}")))?;
        let run_dir = path.parent().and_then(run_dir_of_checkpoint_folder);
        return from_checkpoint(spec, ckpt, run_dir);
    }
    if pytorch::is_pytorch_file(&path) {
        return from_pytorch_file(spec, &path);
    }
    from_tensor_file(spec, &path)
}

fn random(spec: &SourceSpec) -> Result<ModelSource, EvalError> {
    random_like(&base_config(spec)?, spec)
}

/// The architecture of `config` with random weights (seeded by `spec.seed`): the baseline.
pub fn random_like(config: &TrainConfig, spec: &SourceSpec) -> Result<ModelSource, EvalError> {
    let config = config.clone();
    // Initialisation draws from libtorch's global generator: seed it so the baseline is repeatable.
    tch::manual_seed(spec.seed as i64);
    let (vs, backbone) = build(&config, spec.device)?;
    Ok(ModelSource {
        identity: format!("random|{}|{}", config.to_toml(), spec.seed),
        description: format!("{} with random weights (seed {})", config.model.arch, spec.seed),
        vs,
        backbone,
        config,
        run_dir: None,
        epoch: None,
        iter: None,
        content_id: None,
        network: None,
        notes: vec![],
    })
}

fn from_checkpoint(spec: &SourceSpec, ckpt: LoadedCheckpoint, run_dir: Option<PathBuf>) -> Result<ModelSource, EvalError> {
    let config = TrainConfig::from_toml_str(&ckpt.meta.config)?;
    let (vs, backbone) = build(&config, spec.device)?;
    let prefix = format!("{}backbone.", spec.checkpoint_key.prefix());
    weights::load_into(&vs, "", &strip(&ckpt.tensors, &prefix), &ckpt.path)?;
    let tensor_file = ckpt.path.with_file_name(&ckpt.meta.tensors);
    let key = spec.checkpoint_key.name();
    Ok(ModelSource {
        identity: identity_of(&tensor_file, key)?,
        description: format!("{key} of {} (epoch {}, iteration {})", ckpt.path.shown(), ckpt.meta.epoch, ckpt.meta.iter),
        vs,
        backbone,
        config,
        run_dir,
        epoch: Some(ckpt.meta.epoch),
        iter: Some(ckpt.meta.iter),
        content_id: ckpt.meta.content_id(),
        network: Some(spec.checkpoint_key),
        notes: vec![],
    })
}

/// A safetensors file: either a checkpoint's tensors (`teacher.*`, `student.*`), whose sidecar
/// gives the config when it sits next to it, or a bare backbone (optionally under `backbone.`).
fn from_tensor_file(spec: &SourceSpec, path: &Path) -> Result<ModelSource, EvalError> {
    let tensors = weights::read(path)?;
    let key = spec.checkpoint_key.prefix();
    let is_checkpoint = tensors.keys().any(|k| k.starts_with("teacher.") || k.starts_with("student."));
    if is_checkpoint {
        if let Some(sidecar) = sidecar_naming(path) {
            let ckpt = checkpoint::load_one(&sidecar).map_err(|e| EvalError::Source(format!("{e:#}")))?;
            let run_dir = path.parent().and_then(run_dir_of_checkpoint_folder);
            return from_checkpoint(spec, ckpt, run_dir);
        }
    }
    let backbone_tensors = if is_checkpoint {
        strip(&tensors, &format!("{key}backbone."))
    } else if tensors.keys().any(|k| k.starts_with("backbone.")) {
        strip(&tensors, "backbone.")
    } else {
        tensors
    };
    let mut config = base_config(spec)?;
    infer::from_backbone(&mut config, &backbone_tensors, user_named_arch(spec));
    crop_size_of_bare_file(&mut config, spec, weights::recorded_crop_size(path));
    let (vs, backbone) = build(&config, spec.device)?;
    weights::load_into(&vs, "", &backbone_tensors, path)?;
    Ok(ModelSource {
        identity: identity_of(path, key)?,
        description: format!("{} weights from {}", config.model.arch, path.shown()),
        vs,
        backbone,
        config,
        run_dir: None,
        epoch: None,
        iter: None,
        content_id: None,
        network: None,
        notes: vec![],
    })
}

/// The image size of weights without a config, after what the tensors tell (a ViT's position
/// embedding): `--global_crop_size`, else the size `dino export` recorded in the file unless a
/// `--config` says one.
fn crop_size_of_bare_file(config: &mut TrainConfig, spec: &SourceSpec, recorded: Option<usize>) {
    match (spec.global_crop_size, &spec.config, recorded) {
        (Some(size), _, _) | (None, None, Some(size)) => config.crops.global_crop_size = size,
        _ => {}
    }
}

/// Whether the person chose the architecture (`--arch`, or a `--config`), which then stands.
fn user_named_arch(spec: &SourceSpec) -> bool {
    spec.arch.is_some() || spec.config.is_some()
}

/// A `torch.save` file: a reference checkpoint (its `--checkpoint_key` network) or a plain state
/// dict. Without `--config`/`--arch`, the checkpoint's `args` and then the tensors give the shape.
fn from_pytorch_file(spec: &SourceSpec, path: &Path) -> Result<ModelSource, EvalError> {
    let file = pytorch::read(path).map_err(|e| EvalError::Source(e.to_string()))?;
    let key = spec.checkpoint_key.name();
    let net = file.network(key).map_err(|e| EvalError::Source(e.to_string()))?;
    let mut config = base_config(spec)?;
    let mut notes = file.notes.clone();
    let mut arch_known = user_named_arch(spec);
    if let (false, Some(args)) = (arch_known, &file.args) {
        let report = infer::apply_reference_args(&mut config, args, ArgScope::Model);
        arch_known = report.taken.iter().any(|t| t.starts_with("arch ="));
        notes.extend(report.refused.iter().map(|r| format!("args.{r}")));
    }
    infer::from_backbone(&mut config, &net.backbone, arch_known);
    crop_size_of_bare_file(&mut config, spec, None);
    if config.is_vit() && !arch_known && config.model.embed_dim.is_some() && config.model.num_heads.is_none() {
        notes.push(format!(
            "width {} is no preset's: {} heads assumed (the tensors do not tell; give --config to set num_heads)",
            config.vit_spec().embed_dim,
            config.vit_spec().num_heads
        ));
    }
    let (vs, backbone) = build(&config, spec.device)?;
    weights::load_into(&vs, "", &net.backbone, path)?;
    let description = match (file.is_checkpoint, file.epoch) {
        (true, Some(e)) => format!("{key} of {} ({}, epoch {e})", path.shown(), config.model.arch),
        (true, None) => format!("{key} of {} ({})", path.shown(), config.model.arch),
        (false, _) => format!("{} weights from {}", config.model.arch, path.shown()),
    };
    Ok(ModelSource {
        identity: identity_of(path, key)?,
        description,
        vs,
        backbone,
        config,
        run_dir: None,
        epoch: file.epoch,
        iter: None,
        content_id: None,
        network: None,
        notes,
    })
}

/// The checkpoint sidecar in the same folder that names this tensor file, if any.
fn sidecar_naming(tensor_file: &Path) -> Option<PathBuf> {
    let name = tensor_file.file_name()?.to_string_lossy().into_owned();
    let folder = tensor_file.parent()?;
    let entries = std::fs::read_dir(folder).ok()?;
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .find(|p| checkpoint::read_meta(p).is_ok_and(|m| m.tensors == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result records its network by this name (`cmd::eval_setup`); the TUI, TensorBoard and
    /// `dino runs` tell a student's result apart by `protocol::STUDENT_NETWORK`.
    #[test]
    fn a_students_name_is_the_one_its_readers_look_for() {
        assert_eq!(CheckpointKey::Student.name(), crate::protocol::STUDENT_NETWORK);
        assert_ne!(CheckpointKey::Teacher.name(), crate::protocol::STUDENT_NETWORK);
        assert_eq!(CheckpointKey::parse(CheckpointKey::Student.name()), Ok(CheckpointKey::Student));
    }
}
