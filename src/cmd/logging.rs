//! File logging through `tracing`. While the TUI owns the terminal nothing may be printed, so every
//! diagnostic goes to a file in the user's log directory (or one the caller names).

use crate::files::ShowPath;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// `<data-local dir>/dino-tui/logs/dino.log` per the platform's conventions, or None when the
/// platform gives no home directory (a daemon account, say): the caller then logs nowhere rather
/// than crashing.
pub fn default_log_path() -> Option<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "dino-tui")?;
    // `state_dir` is the XDG home for logs on Linux; other platforms have none and use data-local.
    let base = dirs.state_dir().unwrap_or_else(|| dirs.data_local_dir());
    Some(base.join("logs").join("dino.log"))
}

/// Sends `tracing` output to `path` (appending; parent directories are created). The filter comes
/// from `RUST_LOG`, defaulting to `info`. Calling it twice keeps the first subscriber: a second
/// global subscriber is refused by `tracing`, and that is not worth failing a run over.
pub fn init_file_logging(path: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating log directory {}", dir.shown()))?;
    }
    let file = crate::files::open_append(path, 0o666).with_context(|| format!("opening log file {}", path.shown()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _already_set = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(Mutex::new(file)).try_init();
    Ok(path.to_path_buf())
}

/// `init_file_logging(default_log_path())`; returns where the log goes, or None when there is no
/// home directory or the file cannot be opened (logging is then off; the program carries on).
pub fn init_default_file_logging() -> Option<PathBuf> {
    let path = default_log_path()?;
    init_file_logging(&path).ok()
}

/// Starts file logging where the user's config says (`log_file`), else at the default path, and
/// returns the log path (None: logging off, no home) with the user's config for the caller.
pub fn init_from_user_config() -> (Option<PathBuf>, crate::config::user::UserConfig) {
    let (user, problem) = crate::config::user::UserConfig::load();
    let log = match &user.log_file {
        Some(p) => init_file_logging(p).ok(),
        None => init_default_file_logging(),
    };
    if let Some(p) = problem {
        tracing::warn!("{p}");
    }
    (log, user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logging_creates_the_file_and_its_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a/b/dino.log");
        let got = init_file_logging(&path).expect("log init");
        assert_eq!(got, path);
        assert!(path.exists());
    }
}
