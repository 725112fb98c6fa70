//! Reloading the theme when its file changes, through `notify`. The watcher's callback only
//! forwards that something changed; the event loop reloads between frames.

use crossbeam_channel::{Receiver, Sender};
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};

pub struct ThemeWatch {
    // Kept alive: dropping the watcher stops the notifications.
    _watcher: notify::RecommendedWatcher,
    changes: Receiver<PathBuf>,
}

impl ThemeWatch {
    /// Watches the directories that can hold the theme: the user theme directory and, for a theme
    /// given as a path, its directory. Returns None when nothing can be watched (no such
    /// directories, or no inotify), which only means no live reload.
    pub fn new(dirs: &[&Path]) -> Option<Self> {
        let (tx, rx): (Sender<PathBuf>, Receiver<PathBuf>) = crossbeam_channel::unbounded();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                for p in ev.paths {
                    // The loop may be gone during shutdown; losing a notification then is fine.
                    let _ = tx.send(p);
                }
            }
        })
        .map_err(|e| tracing::info!("no theme live reload: {e}"))
        .ok()?;
        let mut watching = false;
        for d in dirs {
            if d.is_dir() && watcher.watch(d, RecursiveMode::NonRecursive).is_ok() {
                watching = true;
            }
        }
        watching.then_some(Self { _watcher: watcher, changes: rx })
    }

    /// Whether `file` changed since the last call (all pending notifications are consumed).
    pub fn changed(&self, file_name: &str) -> bool {
        let mut hit = false;
        while let Ok(p) = self.changes.try_recv() {
            hit |= p.file_name().and_then(|n| n.to_str()) == Some(file_name);
        }
        hit
    }
}
