//! Checkpoint files: tensors (student, teacher, optimizer state, loss centre) in one safetensors
//! file, everything else (epoch, iteration, loader position, seed, schedule edits, config) in a
//! JSON sidecar that names the tensor file and holds its SHA-256. This is the storage half;
//! `train::checkpoint` maps a training state to and from these tensors.
//!
//! Names. Every checkpoint gets a sidecar of its own, `checkpoint-itNNNNNNNN.json`, that never
//! changes, so a history row, an evaluation result and a person can name it for good; its
//! *content id* is the start of its tensors' SHA-256. `checkpoint-latest.json` and
//! `checkpoint-previous.json` are copies of the two newest (what a resume reads first), and
//! `checkpointNNNN.json` the numbered one of an epoch (`--saveckp_freq`).
//!
//! Crash safety: tensor files are written under a fresh name (temporary file, fsync, rename), then
//! the sidecars are written atomically; the sidecar is the commit point. Loading checks the size,
//! the checksum and that every weight is finite, and falls back from latest to previous to every
//! other checkpoint, newest first. Nothing is ever deleted because it failed to load.
//!
//! Retention: the `keep` newest rolling checkpoints stay, plus the numbered ones, plus every one
//! that an evaluation result or the user's `keep.json` names (`protected`); a tensor file goes when
//! no sidecar names it any more.

use crate::files::ShowPath;
use crate::model::weights;
use crate::protocol::schedule::{Schedule, ScheduleName};
use crate::run::dir::{sync_parent, tmp_path, write_atomic};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub const LATEST: &str = "checkpoint-latest.json";
pub const PREVIOUS: &str = "checkpoint-previous.json";
/// The user's list of checkpoints to keep whatever the retention says (content ids).
pub const KEEP_FILE: &str = "keep.json";
const FORMAT_VERSION: u32 = 1;
/// Hex digits of the SHA-256 that make a content id: enough to never collide within a run.
const CONTENT_ID_LEN: usize = 12;

/// The JSON sidecar.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMeta {
    pub format_version: u32,
    /// Tensor file, relative to the checkpoint folder.
    pub tensors: String,
    pub tensors_bytes: u64,
    /// SHA-256 of the tensor file (hex). Checkpoints written before it existed have none and are
    /// checked by size only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors_sha256: Option<String>,
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

impl CheckpointMeta {
    /// What identifies the weights whatever the file is called (None for checkpoints written
    /// before checksums: those are identified by their iteration).
    pub fn content_id(&self) -> Option<String> {
        self.tensors_sha256.as_ref().map(|h| h.chars().take(CONTENT_ID_LEN).collect())
    }
}

/// The sidecar every checkpoint keeps under its own name.
pub fn stable_name(iter: usize) -> String {
    format!("checkpoint-it{iter:08}.json")
}

fn numbered_name(epoch: usize) -> String {
    format!("checkpoint{epoch:04}.json")
}

/// What `save` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    /// The sidecar that names this checkpoint for good: the numbered one when there is one, else
    /// the stable `checkpoint-itNNNNNNNN.json`.
    pub path: PathBuf,
    pub bytes: u64,
    pub content_id: Option<String>,
}

/// How many rolling checkpoints to keep, and which content ids must stay whatever that says.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    pub keep: usize,
    pub protected: BTreeSet<String>,
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut f = crate::files::open_regular(path).with_context(|| format!("cannot read {}", path.shown()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("cannot read {}", path.shown()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes the tensors under a fresh name; returns their file name, size and checksum.
fn write_tensors(dir: &Path, tensors: &[(String, Tensor)], iter: usize) -> Result<(String, u64, String)> {
    let name = format!("state-it{iter:08}.safetensors");
    let path = dir.join(&name);
    let tmp = tmp_path(&path);
    Tensor::write_safetensors(tensors, &tmp).with_context(|| format!("cannot write checkpoint {}", tmp.shown()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", tmp.shown()))?;
    let sha = sha256_of(&tmp)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot rename {}", tmp.shown()))?;
    sync_parent(&path);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok((name, bytes, sha))
}

fn write_meta(path: &Path, meta: &CheckpointMeta) -> Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(meta)?)
}

/// Writes a checkpoint: its tensors, its stable sidecar, `checkpoint-latest` (the old latest
/// becomes `checkpoint-previous`) and, with `numbered`, `checkpointNNNN` for that epoch; then
/// applies the retention.
pub fn save(
    dir: &Path,
    tensors: &[(String, Tensor)],
    meta: &CheckpointMeta,
    numbered: Option<usize>,
    retention: &Retention,
) -> Result<Saved> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.shown()))?;
    let (tensor_name, bytes, sha) = write_tensors(dir, tensors, meta.iter)?;
    let meta = CheckpointMeta { tensors: tensor_name.clone(), tensors_bytes: bytes, tensors_sha256: Some(sha), ..meta.clone() };
    let stable = dir.join(stable_name(meta.iter));
    write_meta(&stable, &meta)?;
    let latest = dir.join(LATEST);
    if latest.exists() {
        std::fs::rename(&latest, dir.join(PREVIOUS)).with_context(|| format!("cannot rename {}", latest.shown()))?;
    }
    write_meta(&latest, &meta)?;
    let mut lasting = stable;
    if let Some(epoch) = numbered {
        let numbered_tensors = format!("checkpoint{epoch:04}.safetensors");
        let target = dir.join(&numbered_tensors);
        // A hard link costs no space; fall back to a copy across filesystems.
        let _ = std::fs::remove_file(&target);
        if std::fs::hard_link(dir.join(&tensor_name), &target).is_err() {
            std::fs::copy(dir.join(&tensor_name), &target).with_context(|| format!("cannot write {}", target.shown()))?;
        }
        lasting = dir.join(numbered_name(epoch));
        write_meta(&lasting, &CheckpointMeta { tensors: numbered_tensors, ..meta.clone() })?;
    }
    prune(dir, retention)?;
    Ok(Saved { path: lasting, bytes, content_id: meta.content_id() })
}

/// Every sidecar of a folder with what it says, newest iteration first; unreadable ones are
/// returned as problems.
pub fn list(dir: &Path) -> (Vec<(PathBuf, CheckpointMeta)>, Vec<String>) {
    let (mut found, mut problems) = (vec![], vec![]);
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A missing folder holds no checkpoint; one that cannot be read (permissions) is a
        // problem to name, not the same as none.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (found, problems),
        Err(e) => return (found, vec![format!("cannot read {}: {e}", dir.shown())]),
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("checkpoint") && name.ends_with(".json")) {
            continue;
        }
        match read_meta(&p) {
            Ok(m) => found.push((p, m)),
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    found.sort_by(|a, b| b.1.iter.cmp(&a.1.iter).then_with(|| a.0.cmp(&b.0)));
    (found, problems)
}

/// Drops rolling sidecars beyond the newest `keep` (numbered and protected ones stay), then every
/// tensor file no sidecar names.
fn prune(dir: &Path, retention: &Retention) -> Result<()> {
    let (sidecars, _) = list(dir);
    let rolling: Vec<&(PathBuf, CheckpointMeta)> =
        sidecars.iter().filter(|(p, _)| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("checkpoint-it"))).collect();
    let mut dropped = BTreeSet::new();
    for (p, m) in rolling.iter().skip(retention.keep.max(1)) {
        let protected = m.content_id().is_some_and(|id| retention.protected.contains(&id));
        if !protected {
            std::fs::remove_file(p).with_context(|| format!("cannot remove {}", p.shown()))?;
            dropped.insert(p.clone());
        }
    }
    let named: BTreeSet<&str> = sidecars.iter().filter(|(p, _)| !dropped.contains(p)).map(|(_, m)| m.tensors.as_str()).collect();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.shown()))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("state-it") && name.ends_with(".safetensors") && !named.contains(name.as_str()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// Content ids that retention must keep: those in `keep.json` and those an evaluation result in
/// `RUN_DIR/evals/` names.
pub fn protected(run_dir: &Path) -> BTreeSet<String> {
    let mut ids = read_keep(&run_dir.join(super::dir::CHECKPOINT_DIR));
    let Ok(entries) = std::fs::read_dir(run_dir.join("evals")) else { return ids };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            let id = crate::files::read_to_string(&p)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["content_id"].as_str().map(String::from));
            ids.extend(id);
        }
    }
    ids
}

/// The content ids the user marked `keep` in a checkpoint folder.
pub fn read_keep(dir: &Path) -> BTreeSet<String> {
    crate::files::read_to_string(&dir.join(KEEP_FILE)).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// Marks (or unmarks) a checkpoint to keep; returns whether it is now kept.
pub fn toggle_keep(dir: &Path, content_id: &str) -> Result<bool> {
    let mut ids = read_keep(dir);
    let kept = if ids.remove(content_id) {
        false
    } else {
        ids.insert(content_id.to_string());
        true
    };
    write_atomic(&dir.join(KEEP_FILE), &serde_json::to_vec_pretty(&ids)?)?;
    Ok(kept)
}

/// The most iterations a checkpoint's schedule may claim: reading a sidecar renders its schedules
/// (8 bytes an iteration each), so a claim of 10^12 epochs aborted in an allocation. The reference's
/// longest recipe has 2 M iterations, and a plan this long is refused for its memory anyway.
const MAX_SCHEDULE_ITERATIONS: u64 = 100_000_000;

/// Refuses schedules whose length (epochs x iterations per epoch) is out of range, before they
/// are rendered.
fn check_schedule_lengths(raw: &serde_json::Value) -> Result<()> {
    for entry in raw["schedules"].as_array().into_iter().flatten() {
        let (name, s) = (&entry[0], &entry[1]);
        let (epochs, niter) = (s["epochs"].as_u64().unwrap_or(0), s["niter_per_ep"].as_u64().unwrap_or(0));
        if epochs.saturating_mul(niter) > MAX_SCHEDULE_ITERATIONS {
            bail!("its schedule {name} claims {epochs} epochs x {niter} iterations, more than {MAX_SCHEDULE_ITERATIONS} iterations");
        }
    }
    Ok(())
}

pub fn read_meta(path: &Path) -> Result<CheckpointMeta> {
    let text = crate::files::read_to_string(path).with_context(|| format!("cannot read {}", path.shown()))?;
    let raw: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("checkpoint {} is corrupt", path.shown()))?;
    check_schedule_lengths(&raw).with_context(|| format!("checkpoint {} is refused", path.shown()))?;
    let meta: CheckpointMeta = serde_json::from_value(raw).with_context(|| format!("checkpoint {} is corrupt", path.shown()))?;
    if meta.format_version != FORMAT_VERSION {
        bail!("checkpoint {} has format version {}, expected {FORMAT_VERSION}", path.shown(), meta.format_version);
    }
    Ok(meta)
}

/// A checkpoint read whole and checked, ready to restore.
pub struct LoadedCheckpoint {
    pub meta: CheckpointMeta,
    pub tensors: BTreeMap<String, Tensor>,
    pub path: PathBuf,
}

/// Reads one sidecar and its tensors, checking size, checksum and that every weight is finite;
/// any damage is an error naming the file.
pub fn load_one(sidecar: &Path) -> Result<LoadedCheckpoint> {
    let meta = read_meta(sidecar)?;
    if meta.niter_per_ep == 0 || meta.epoch * meta.niter_per_ep + meta.loader_batch != meta.iter || meta.loader_batch >= meta.niter_per_ep {
        bail!(
            "checkpoint {} is inconsistent: iteration {} is not epoch {} x {} iterations + batch {}",
            sidecar.shown(),
            meta.iter,
            meta.epoch,
            meta.niter_per_ep,
            meta.loader_batch
        );
    }
    // The sidecar names a file beside it, never one elsewhere (`../../x.safetensors`).
    if let Err(why) = crate::files::check_plain_name(&meta.tensors) {
        bail!(
            "checkpoint {} is refused: its tensors file {:?} is not a file beside it ({why})",
            sidecar.shown(),
            crate::files::escape_controls(&meta.tensors)
        );
    }
    let tensor_path = sidecar.with_file_name(&meta.tensors);
    let size = std::fs::metadata(&tensor_path).with_context(|| format!("checkpoint tensors {} missing", tensor_path.shown()))?.len();
    if size != meta.tensors_bytes {
        bail!("checkpoint tensors {} are truncated ({size} bytes, expected {})", tensor_path.shown(), meta.tensors_bytes);
    }
    if let Some(want) = &meta.tensors_sha256 {
        let got = sha256_of(&tensor_path)?;
        if &got != want {
            bail!("checkpoint tensors {} are damaged (checksum {got}, the sidecar says {want})", tensor_path.shown());
        }
    }
    let tensors = weights::read(&tensor_path)?;
    for (name, t) in &tensors {
        if t.is_floating_point() && !bool::try_from(t.isfinite().all()).unwrap_or(false) {
            bail!("checkpoint tensors {} hold non-finite values in {name}", tensor_path.shown());
        }
    }
    Ok(LoadedCheckpoint { meta, tensors, path: sidecar.to_path_buf() })
}

/// The newest usable checkpoint of a folder: every sidecar by iteration, newest first, and of
/// equal iterations latest before previous before the stable names. A kill between writing a
/// checkpoint's own sidecar and moving `checkpoint-latest.json` on leaves the newer one under its
/// stable name only; it is the one to resume from. Returns the problems met on the way (to
/// report) alongside; None with no problems means the folder holds no checkpoint at all.
pub fn load_latest(dir: &Path) -> (Option<LoadedCheckpoint>, Vec<String>) {
    let (mut all, mut problems) = list(dir);
    let rank = |p: &Path| match p.file_name().and_then(|n| n.to_str()) {
        Some(LATEST) => 0,
        Some(PREVIOUS) => 1,
        _ => 2,
    };
    all.sort_by(|a, b| b.1.iter.cmp(&a.1.iter).then_with(|| rank(&a.0).cmp(&rank(&b.0))));
    let order: Vec<PathBuf> = all.into_iter().map(|(p, _)| p).collect();
    let mut failed_tensors = BTreeSet::new();
    for p in order {
        // Two sidecars naming the same damaged tensors fail the same way: report it once.
        let tensors = read_meta(&p).ok().map(|m| m.tensors);
        if tensors.as_ref().is_some_and(|t| failed_tensors.contains(t)) {
            continue;
        }
        match load_one(&p) {
            Ok(c) => return (Some(c), problems),
            Err(e) => {
                let message = format!("{e:#}");
                if !problems.contains(&message) {
                    problems.push(message);
                }
                failed_tensors.extend(tensors);
            }
        }
    }
    (None, problems)
}
