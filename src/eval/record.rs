//! What an evaluation leaves in a run directory: `evals/KIND-LABEL.json` with the full result,
//! and an `eval` line in `events.jsonl`, so the TUI and `dino attach` can rebuild the history.

use super::EvalError;
use crate::run::dir::{now, write_atomic, EVENTS_FILE};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const EVALS_DIR: &str = "evals";

/// A file-name label: the checkpoint's epoch and iteration when known, else the time.
pub fn label(epoch: Option<usize>, iter: Option<usize>) -> String {
    match (epoch, iter) {
        (Some(e), Some(i)) => format!("ep{e:04}-it{i:08}"),
        _ => format!("t{}", now() as u64),
    }
}

/// Which data set a result was computed on, for its file name: the folder's name and the start
/// of a hash of its full path, so `cifar-vehicles` in two places stays two data sets.
pub fn data_tag(data_root: &Path) -> String {
    use sha2::Digest;
    let full = std::fs::canonicalize(data_root).unwrap_or_else(|_| data_root.to_path_buf());
    let name: String = full
        .file_name()
        .map(|n| n.to_string_lossy().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect())
        .unwrap_or_else(|| "data".into());
    let hash = sha2::Sha256::digest(full.to_string_lossy().as_bytes());
    format!("{name}-{:02x}{:02x}{:02x}", hash[0], hash[1], hash[2])
}

/// The label of a result file: the weights' epoch and iteration (or the time) and the data set.
pub fn result_label(epoch: Option<usize>, iter: Option<usize>, data_root: &Path) -> String {
    format!("{}-{}", label(epoch, iter), data_tag(data_root))
}

/// Writes `RUN_DIR/evals/{kind}-{label}.json` atomically; returns its path.
pub fn write_result(run_dir: &Path, kind: &str, label: &str, json: &serde_json::Value) -> Result<PathBuf, EvalError> {
    let dir = run_dir.join(EVALS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| EvalError::io(&dir, e))?;
    let path = dir.join(format!("{kind}-{label}.json"));
    let text = serde_json::to_vec_pretty(json).map_err(|e| EvalError::io(&path, e))?;
    write_atomic(&path, &text).map_err(|e| EvalError::io(&path, format!("{e:#}")))?;
    Ok(path)
}

/// Appends an `eval` event the way `RunDir::event` writes them (for evaluations run outside the
/// trainer, which may be appending to the same file: one `write` per line keeps lines whole).
pub fn append_event(run_dir: &Path, details: &serde_json::Value) -> Result<(), EvalError> {
    let path = run_dir.join(EVENTS_FILE);
    let mut v = details.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), "eval".into());
        o.insert("time".into(), now().into());
    }
    let line = format!("{v}\n");
    let mut f = crate::files::open_append(&path, 0o666).map_err(|e| EvalError::io(&path, e))?;
    f.write_all(line.as_bytes()).map_err(|e| EvalError::io(&path, e))
}
