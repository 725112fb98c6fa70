//! The user's own settings: `config.toml` in the platform's config directory
//! (`~/.config/dino-tui/` on Linux), or the file `DINO_TUI_CONFIG` names. `keys.toml` and
//! `themes/` live beside it. A missing home directory or a missing file means defaults, never a crash.

use crate::files::ShowPath;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const ENV_VAR: &str = "DINO_TUI_CONFIG";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    /// Theme used when `--theme` is not given.
    pub theme: Option<String>,
    /// Log file instead of the default one in the platform's state directory.
    pub log_file: Option<PathBuf>,
}

/// Where the user's `config.toml` is (whether or not it exists).
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_VAR).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    directories::ProjectDirs::from("", "", "dino-tui").map(|d| d.config_dir().join("config.toml"))
}

/// The folder holding `config.toml`, `keys.toml` and `themes/`.
pub fn config_dir() -> Option<PathBuf> {
    config_path().and_then(|p| p.parent().map(Path::to_path_buf))
}

impl UserConfig {
    /// Loads the user's config; a broken file is reported (naming it) and defaults are used.
    pub fn load() -> (Self, Option<String>) {
        match config_path() {
            Some(p) => Self::load_from(&p),
            None => (Self::default(), None),
        }
    }

    pub fn load_from(path: &Path) -> (Self, Option<String>) {
        match crate::files::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Self::default(), None),
            Err(e) => (Self::default(), Some(format!("cannot read {}: {e}", path.shown()))),
            Ok(text) => match toml::from_str(&text) {
                Ok(c) => (c, None),
                Err(e) => (Self::default(), Some(format!("ignoring {}: {e}", path.shown()))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults_and_bad_file_names_itself() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.toml");
        assert_eq!(UserConfig::load_from(&p), (UserConfig::default(), None));
        std::fs::write(&p, "theme = \"light\"\n").unwrap();
        assert_eq!(UserConfig::load_from(&p).0.theme.as_deref(), Some("light"));
        std::fs::write(&p, "colour = 3\n").unwrap();
        let (c, err) = UserConfig::load_from(&p);
        assert_eq!(c, UserConfig::default());
        let err = err.unwrap();
        assert!(err.contains("config.toml") && err.contains("colour"), "{err}");
    }
}
