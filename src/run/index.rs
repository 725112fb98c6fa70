//! The user's index of runs: `<data dir>/dino-tui/runs.jsonl`, one `{"path", "name", "time"}`
//! line appended each time a trainer starts, so `dino runs` finds runs started anywhere, not only
//! under `./runs`. JSON lines rather than one JSON document because an append of one short line
//! is atomic, so concurrent trainers never corrupt it. Having no home directory (a daemon
//! account) only means no index.

use super::dir::now;
use crate::files::ShowPath;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const INDEX_FILE: &str = "runs.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub path: PathBuf,
    pub name: String,
    pub time: f64,
}

/// `<data dir>/runs.jsonl`, or None when the platform gives no home.
pub fn default_index_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "dino-tui").map(|d| d.data_dir().join(INDEX_FILE))
}

/// Records a run start; best effort (a read-only home must not stop training).
pub fn record(index: &Path, run_dir: &Path) {
    let path = std::fs::canonicalize(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let entry = IndexEntry { path, name, time: now() };
    let result = (|| -> std::io::Result<()> {
        if let Some(dir) = index.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        crate::files::open_append(index, 0o666)?.write_all(&line)
    })();
    if let Err(e) = result {
        tracing::warn!("cannot update the run index {}: {e}", index.shown());
    }
}

/// Every distinct run directory in the index that still exists, most recently started last.
pub fn read(index: &Path) -> Vec<IndexEntry> {
    let text = crate::files::read_to_string(index).unwrap_or_default();
    let mut out: Vec<IndexEntry> = Vec::new();
    for e in text.lines().filter_map(|l| serde_json::from_str::<IndexEntry>(l).ok()) {
        out.retain(|o| o.path != e.path);
        if e.path.is_dir() {
            out.push(e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keeps_the_latest_start_of_each_existing_run() {
        let d = tempfile::tempdir().expect("tmp");
        let index = d.path().join("share/runs.jsonl");
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(&a).expect("a");
        std::fs::create_dir_all(&b).expect("b");
        record(&index, &a);
        record(&index, &b);
        record(&index, &a);
        record(&index, &d.path().join("gone"));
        std::fs::write(&index, std::fs::read_to_string(&index).expect("index") + "garbage\n").expect("write");
        let got: Vec<String> = read(&index).into_iter().map(|e| e.name).collect();
        assert_eq!(got, ["b", "a"]);
    }
}
