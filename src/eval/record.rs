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
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| EvalError::io(&path, e))?;
    f.write_all(line.as_bytes()).map_err(|e| EvalError::io(&path, e))
}
