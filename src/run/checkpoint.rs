//! Checkpoint files: tensors (student, teacher, optimizer state, loss centre) in one safetensors
//! file, everything else (epoch, iteration, loader position, seed, schedule edits, config) in a
//! JSON sidecar that names the tensor file. This is the storage half; `train::checkpoint` maps a
//! training state to and from these tensors.
//!
//! Crash safety: tensor files are written under a fresh name (temporary file, fsync, rename), then
//! the sidecar is written atomically; the sidecar is the commit point. The previous sidecar is kept
//! as `checkpoint-previous.json`, so a corrupt or truncated latest checkpoint falls back to it.

use crate::model::weights;
use crate::protocol::schedule::{Schedule, ScheduleName};
use crate::run::dir::{sync_parent, tmp_path, write_atomic};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub const LATEST: &str = "checkpoint-latest.json";
pub const PREVIOUS: &str = "checkpoint-previous.json";
const FORMAT_VERSION: u32 = 1;

/// The JSON sidecar.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMeta {
    pub format_version: u32,
    /// Tensor file, relative to the checkpoint folder.
    pub tensors: String,
    pub tensors_bytes: u64,
    /// Epoch of the next iteration to run.
    pub epoch: usize,
    /// Iterations completed (global): the next iteration to run.
    pub iter: usize,
    pub niter_per_ep: usize,
    /// Batch within `epoch` the loader resumes at.
    pub loader_batch: usize,
    pub seed: u64,
    pub optimizer_steps: BTreeMap<String, u64>,
    pub schedules: Vec<(ScheduleName, Schedule)>,
    pub loss_scale: Option<f64>,
    pub last_loss: Option<f64>,
    pub time: f64,
    /// The effective config, as TOML.
    pub config: String,
}

/// Writes a checkpoint as `checkpoint-latest` (and, with `numbered`, also as `checkpointNNNN`
/// for the epoch). Returns the sidecar that keeps naming this checkpoint (the numbered one when
/// there is one: `latest` moves on) and the tensor file size.
pub fn save(dir: &Path, tensors: &[(String, Tensor)], meta: &CheckpointMeta, numbered: Option<usize>) -> Result<(PathBuf, u64)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tensor_name = format!("state-it{:08}.safetensors", meta.iter);
    let tensor_path = dir.join(&tensor_name);
    let tmp = tmp_path(&tensor_path);
    Tensor::write_safetensors(tensors, &tmp).with_context(|| format!("cannot write checkpoint {} (disk full?)", tmp.display()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", tmp.display()))?;
    std::fs::rename(&tmp, &tensor_path).with_context(|| format!("cannot rename {}", tmp.display()))?;
    sync_parent(&tensor_path);
    let bytes = std::fs::metadata(&tensor_path).map(|m| m.len()).unwrap_or(0);
    let meta = CheckpointMeta { tensors: tensor_name.clone(), tensors_bytes: bytes, ..meta.clone() };
    let json = serde_json::to_vec_pretty(&meta)?;

    let latest = dir.join(LATEST);
    let previous = dir.join(PREVIOUS);
    let old_previous = read_meta(&previous).ok();
    // The latest sidecar becomes the previous one: what it names stays in use.
    let old_latest = read_meta(&latest).ok();
    if latest.exists() {
        std::fs::rename(&latest, &previous).with_context(|| format!("cannot rename {}", latest.display()))?;
    }
    write_atomic(&latest, &json)?;
    let mut lasting = latest.clone();
    if let Some(epoch) = numbered {
        let numbered_tensors = format!("checkpoint{epoch:04}.safetensors");
        let target = dir.join(&numbered_tensors);
        // A hard link costs no space; fall back to a copy across filesystems.
        let _ = std::fs::remove_file(&target);
        if std::fs::hard_link(&tensor_path, &target).is_err() {
            std::fs::copy(&tensor_path, &target).with_context(|| format!("cannot write {}", target.display()))?;
        }
        let m = CheckpointMeta { tensors: numbered_tensors, ..meta.clone() };
        lasting = dir.join(format!("checkpoint{epoch:04}.json"));
        write_atomic(&lasting, &serde_json::to_vec_pretty(&m)?)?;
    }
    // The tensor file that neither latest nor previous names any more can go.
    if let Some(old) = old_previous {
        let still_used = old.tensors == meta.tensors || old_latest.as_ref().is_some_and(|m| m.tensors == old.tensors);
        if !still_used && old.tensors.starts_with("state-it") {
            let _ = std::fs::remove_file(dir.join(&old.tensors));
        }
    }
    Ok((lasting, bytes))
}

pub fn read_meta(path: &Path) -> Result<CheckpointMeta> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let meta: CheckpointMeta = serde_json::from_str(&text).with_context(|| format!("checkpoint {} is corrupt", path.display()))?;
    if meta.format_version != FORMAT_VERSION {
        bail!("checkpoint {} has format version {}, expected {FORMAT_VERSION}", path.display(), meta.format_version);
    }
    Ok(meta)
}

/// A checkpoint read whole and checked, ready to restore.
pub struct LoadedCheckpoint {
    pub meta: CheckpointMeta,
    pub tensors: BTreeMap<String, Tensor>,
    pub path: PathBuf,
}

/// Reads one sidecar and its tensors; any damage is an error naming the file.
pub fn load_one(sidecar: &Path) -> Result<LoadedCheckpoint> {
    let meta = read_meta(sidecar)?;
    let tensor_path = sidecar.with_file_name(&meta.tensors);
    let size = std::fs::metadata(&tensor_path).with_context(|| format!("checkpoint tensors {} missing", tensor_path.display()))?.len();
    if size != meta.tensors_bytes {
        bail!("checkpoint tensors {} are truncated ({size} bytes, expected {})", tensor_path.display(), meta.tensors_bytes);
    }
    let tensors = weights::read(&tensor_path)?;
    Ok(LoadedCheckpoint { meta, tensors, path: sidecar.to_path_buf() })
}

/// The newest usable checkpoint of a folder: latest, else previous. Returns the problems met on
/// the way (to report) alongside. Ok(None) when the folder holds no checkpoint at all.
pub fn load_latest(dir: &Path) -> (Option<LoadedCheckpoint>, Vec<String>) {
    let mut problems = vec![];
    for name in [LATEST, PREVIOUS] {
        let p = dir.join(name);
        if !p.exists() {
            continue;
        }
        match load_one(&p) {
            Ok(c) => return (Some(c), problems),
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    (None, problems)
}
