//! What the Checkpoints tab's rows point at, checked against the disk: a row whose file is gone
//! (retention, or a person) or now holds other weights is shown as such and cannot be evaluated;
//! the keep marks and the folder's disk use come from the same look. Called about once a second
//! from the event loop, never from drawing.

use super::app::{App, FileState};
use crate::run::checkpoint;
use std::path::Path;

/// Re-reads the rows' files; returns whether anything shown changed.
pub fn refresh(app: &mut App) -> bool {
    let Some(run_dir) = app.trainer.info.as_ref().map(|i| i.run_dir.clone()) else { return false };
    let dir = run_dir.join(crate::run::dir::CHECKPOINT_DIR);
    let tab = &mut app.checkpoint_tab;
    let files: Vec<FileState> = tab.rows.iter().map(|c| state_of(&c.path, c.content_id.as_deref(), c.iter)).collect();
    let kept = checkpoint::read_keep(&dir);
    let disk = folder_bytes(&dir);
    let changed = files != tab.files || kept != tab.kept || disk != tab.disk_bytes;
    tab.files = files;
    tab.kept = kept;
    tab.disk_bytes = disk;
    changed
}

/// Whether `path` still holds the checkpoint a row was recorded with.
pub fn state_of(path: &Path, content_id: Option<&str>, iter: usize) -> FileState {
    match checkpoint::read_meta(path) {
        Err(_) if !path.exists() => FileState::Gone,
        Err(_) => FileState::Replaced,
        Ok(m) => {
            let same = match (content_id, m.content_id()) {
                (Some(a), Some(b)) => a == b,
                // Recorded before content ids: the iteration tells.
                _ => m.iter == iter,
            };
            if same {
                FileState::Present
            } else {
                FileState::Replaced
            }
        }
    }
}

/// Bytes of the files in a folder (hard links counted once: numbered checkpoints share the
/// rolling ones' tensors).
fn folder_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(m) = e.metadata() {
            if m.is_file() && seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    Some(total)
}
