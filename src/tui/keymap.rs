//! Keys to actions. Defaults below; a `keys.toml` in the user's config directory rebinds actions:
//!
//! ```toml
//! toggle_pause = "space"
//! quit = ["q", "ctrl-q"]
//! ```
//!
//! Binding an action replaces its default keys; a key bound in the file leaves whatever it did
//! before. Unknown action or key names are errors that name the file and the entry.

use super::action::Action;
use crate::files::ShowPath;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::HashMap;
use std::path::Path;

/// A key with the modifiers that matter (Ctrl and Alt; Shift is folded into the character).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    pub fn new(code: KeyCode, mods: KeyModifiers) -> Self {
        // Terminals disagree on whether Shift accompanies an upper-case letter or a `?`; the
        // character already says it, so Shift is dropped for characters and Back-Tab.
        let mods = match code {
            KeyCode::Char(_) | KeyCode::BackTab => mods - KeyModifiers::SHIFT,
            _ => mods,
        } & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        Key { code, mods }
    }

    pub fn from_event(e: &KeyEvent) -> Self {
        Key::new(e.code, e.modifiers)
    }

    pub fn plain(c: char) -> Self {
        Key::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    /// Parses `q`, `Q`, `ctrl-c`, `alt-x`, `enter`, `esc`, `tab`, `backtab`, `shift-tab`, `space`,
    /// `up`, `pageup`, `f5`, `?`, `+`, ...
    pub fn parse(s: &str) -> Result<Key, String> {
        let mut mods = KeyModifiers::NONE;
        let mut rest = s;
        loop {
            let lower = rest.to_ascii_lowercase();
            if let Some(r) = lower.strip_prefix("ctrl-").or_else(|| lower.strip_prefix("ctrl+")) {
                mods |= KeyModifiers::CONTROL;
                rest = &rest[rest.len() - r.len()..];
            } else if let Some(r) = lower.strip_prefix("alt-").or_else(|| lower.strip_prefix("alt+")) {
                mods |= KeyModifiers::ALT;
                rest = &rest[rest.len() - r.len()..];
            } else if lower == "shift-tab" {
                return Ok(Key::new(KeyCode::BackTab, mods));
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        if let (Some(c), None) = (chars.next(), chars.clone().next()) {
            return Ok(Key::new(KeyCode::Char(c), mods));
        }
        let code = match rest.to_ascii_lowercase().as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "space" => KeyCode::Char(' '),
            "backspace" => KeyCode::Backspace,
            "delete" | "del" => KeyCode::Delete,
            "insert" => KeyCode::Insert,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pageup" | "page_up" => KeyCode::PageUp,
            "pagedown" | "page_down" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            f if f.starts_with('f') && f.len() > 1 => match f[1..].parse::<u8>() {
                Ok(n @ 1..=12) => KeyCode::F(n),
                _ => return Err(format!("unknown key name `{s}`")),
            },
            _ => return Err(format!("unknown key name `{s}`")),
        };
        Ok(Key::new(code, mods))
    }

    /// Short display form for the footer and help overlay.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Enter => "enter".into(),
            KeyCode::Esc => "esc".into(),
            KeyCode::Tab => "tab".into(),
            KeyCode::BackTab => "shift-tab".into(),
            KeyCode::Backspace => "backspace".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "pgup".into(),
            KeyCode::PageDown => "pgdn".into(),
            KeyCode::Home => "home".into(),
            KeyCode::End => "end".into(),
            KeyCode::F(n) => format!("f{n}"),
            other => format!("{other:?}").to_lowercase(),
        };
        let mut s = String::new();
        if self.mods.contains(KeyModifiers::CONTROL) {
            s.push_str("ctrl-");
        }
        if self.mods.contains(KeyModifiers::ALT) {
            s.push_str("alt-");
        }
        if self.mods.contains(KeyModifiers::SHIFT) {
            s.push_str("shift-");
        }
        s + &base
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("key file {file}: {message}")]
pub struct KeyMapError {
    pub file: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct KeyMap {
    map: HashMap<Key, Action>,
}

const DEFAULTS: &[(&str, Action)] = &[
    ("q", Action::Quit),
    ("ctrl-c", Action::Interrupt),
    ("p", Action::TogglePause),
    ("c", Action::Checkpoint),
    ("k", Action::EvalKnn),
    ("l", Action::EvalLinear),
    ("a", Action::EvalAll),
    ("o", Action::Outliers),
    ("s", Action::SchedulesTab),
    ("e", Action::EditSchedule),
    ("u", Action::UndoScheduleEdit),
    ("f", Action::Freeze),
    ("+", Action::ZoomIn),
    ("=", Action::ZoomIn),
    ("-", Action::ZoomOut),
    ("g", Action::ToggleLogScale),
    ("?", Action::Help),
    ("tab", Action::NextTab),
    ("backtab", Action::PrevTab),
    ("1", Action::Tab1),
    ("2", Action::Tab2),
    ("3", Action::Tab3),
    ("4", Action::Tab4),
    ("5", Action::Tab5),
    ("6", Action::Tab6),
    ("y", Action::CopyPath),
    ("r", Action::MarkReviewed),
    ("m", Action::MarkKeep),
    ("x", Action::MarkExclude),
    ("v", Action::CycleSplit),
    ("d", Action::ToggleScore),
    ("t", Action::CycleKind),
    ("n", Action::Neighbours),
    ("/", Action::SearchFile),
    ("up", Action::Up),
    ("down", Action::Down),
    ("left", Action::Left),
    ("right", Action::Right),
    ("pageup", Action::PageUp),
    ("pagedown", Action::PageDown),
    ("home", Action::Home),
    ("end", Action::End),
    ("enter", Action::Confirm),
    ("esc", Action::Cancel),
];

impl Default for KeyMap {
    fn default() -> Self {
        let map = DEFAULTS.iter().filter_map(|(k, a)| Key::parse(k).ok().map(|k| (k, *a))).collect();
        KeyMap { map }
    }
}

impl KeyMap {
    pub fn action(&self, key: Key) -> Option<Action> {
        self.map.get(&key).copied()
    }

    /// The keys bound to an action, sorted for stable display.
    pub fn keys_for(&self, action: Action) -> Vec<Key> {
        let mut keys: Vec<Key> = self.map.iter().filter(|(_, a)| **a == action).map(|(k, _)| *k).collect();
        keys.sort_by_key(|k| k.label());
        keys
    }

    /// The defaults with `text`'s bindings applied; `file` names the source in errors. Every
    /// valid entry is applied and every bad one reported (an action whose keys are all bad keeps
    /// its defaults): one typo must not cost the person all their other bindings.
    pub fn from_toml(file: &str, text: &str) -> (KeyMap, Vec<KeyMapError>) {
        let err = |message: String| KeyMapError { file: file.into(), message };
        let mut km = KeyMap::default();
        let table: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => return (km, vec![err(e.to_string())]),
        };
        let mut errors = Vec::new();
        for (name, value) in &table {
            let Some(action) = Action::from_name(name) else {
                errors.push(err(format!(
                    "unknown action `{name}` (the action names are listed under `?` `?` in the TUI and in docs/tui.md)"
                )));
                continue;
            };
            let names: Vec<Option<&str>> = match value {
                toml::Value::String(s) => vec![Some(s.as_str())],
                toml::Value::Array(a) => a.iter().map(|v| v.as_str()).collect(),
                _ => {
                    errors.push(err(format!("`{name}`: expected a key name or a list of key names")));
                    continue;
                }
            };
            let mut keys = Vec::new();
            for n in names {
                match n.map(Key::parse) {
                    Some(Ok(k)) => keys.push(k),
                    Some(Err(m)) => errors.push(err(format!("`{name}`: {m}"))),
                    None => errors.push(err(format!("`{name}`: keys must be strings"))),
                }
            }
            if keys.is_empty() {
                continue;
            }
            km.map.retain(|_, a| *a != action);
            for k in keys {
                km.map.insert(k, action);
            }
        }
        (km, errors)
    }

    /// Loads `path` when it exists (a missing file means the defaults), with every problem found.
    pub fn load(path: &Path) -> (KeyMap, Vec<KeyMapError>) {
        match crate::files::read_to_string(path) {
            Ok(text) => KeyMap::from_toml(&path.shown().to_string(), &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (KeyMap::default(), vec![]),
            Err(e) => (KeyMap::default(), vec![KeyMapError { file: path.shown().to_string(), message: e.to_string() }]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_keys_map_to_their_actions() {
        let km = KeyMap::default();
        let cases = [
            ('p', Action::TogglePause),
            ('c', Action::Checkpoint),
            ('k', Action::EvalKnn),
            ('l', Action::EvalLinear),
            ('o', Action::Outliers),
            ('s', Action::SchedulesTab),
            ('f', Action::Freeze),
            ('+', Action::ZoomIn),
            ('-', Action::ZoomOut),
            ('g', Action::ToggleLogScale),
            ('q', Action::Quit),
            ('?', Action::Help),
            ('u', Action::UndoScheduleEdit),
            ('y', Action::CopyPath),
            ('1', Action::Tab1),
            ('6', Action::Tab6),
        ];
        for (c, a) in cases {
            assert_eq!(km.action(Key::plain(c)), Some(a), "key {c}");
        }
        let ctrl_c = Key::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(km.action(ctrl_c), Some(Action::Interrupt));
        assert_eq!(km.action(Key::new(KeyCode::Tab, KeyModifiers::NONE)), Some(Action::NextTab));
        // Terminals send Shift with Back-Tab and with `?`; both still match.
        assert_eq!(km.action(Key::new(KeyCode::BackTab, KeyModifiers::SHIFT)), Some(Action::PrevTab));
        assert_eq!(km.action(Key::new(KeyCode::Char('?'), KeyModifiers::SHIFT)), Some(Action::Help));
        assert_eq!(km.action(Key::plain('z')), None);
    }

    #[test]
    fn every_action_has_a_default_key() {
        let km = KeyMap::default();
        for a in Action::all() {
            assert!(!km.keys_for(a).is_empty(), "{a:?}");
        }
    }

    #[test]
    fn keys_toml_rebinds() {
        let (km, errors) = KeyMap::from_toml("keys.toml", "toggle_pause = \"space\"\nquit = [\"x\", \"ctrl-q\"]\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(km.action(Key::plain(' ')), Some(Action::TogglePause));
        assert_eq!(km.action(Key::plain('p')), None, "old binding removed");
        assert_eq!(km.action(Key::plain('x')), Some(Action::Quit));
        assert_eq!(km.action(Key::new(KeyCode::Char('q'), KeyModifiers::CONTROL)), Some(Action::Quit));
        assert_eq!(km.action(Key::plain('q')), None);
        assert_eq!(km.action(Key::plain('c')), Some(Action::Checkpoint), "others keep defaults");
    }

    #[test]
    fn unknown_key_name_is_rejected_clearly() {
        let (km, errors) = KeyMap::from_toml("/home/u/.config/dino-tui/keys.toml", "quit = \"ctrl-banana\"\n");
        let msg = errors[0].to_string();
        assert_eq!(km.action(Key::plain('q')), Some(Action::Quit), "an action whose keys are all bad keeps its defaults");
        assert!(msg.contains("keys.toml") && msg.contains("quit") && msg.contains("ctrl-banana"), "{msg}");
    }

    #[test]
    fn unknown_action_is_rejected_clearly() {
        let (_, errors) = KeyMap::from_toml("keys.toml", "explode = \"x\"\n");
        assert!(errors[0].to_string().contains("unknown action `explode`"), "{errors:?}");
    }

    #[test]
    fn one_bad_entry_keeps_the_good_ones_and_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, "toggle_pause = \"space\"\nfoo_bar = \"x\"\ncheckpoint = [\"w\", \"spacebar\"]\n").expect("write");
        let (km, errors) = KeyMap::load(&path);
        assert_eq!(km.action(Key::plain(' ')), Some(Action::TogglePause), "first good entry applied");
        assert_eq!(km.action(Key::plain('w')), Some(Action::Checkpoint), "second good entry applied");
        assert_eq!(km.action(Key::plain('c')), None, "its default replaced");
        assert_eq!(km.action(Key::plain('x')), Some(Action::MarkExclude), "the bad entry changes nothing");
        let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(all.len(), 2, "every bad one reported: {all:?}");
        assert!(
            all.iter().any(|e| e.contains("keys.toml") && e.contains("unknown action `foo_bar`") && e.contains("docs/tui.md")),
            "{all:?}"
        );
        assert!(all.iter().any(|e| e.contains("`checkpoint`") && e.contains("spacebar")), "{all:?}");
    }

    #[test]
    fn missing_key_file_means_defaults() {
        let (km, errors) = KeyMap::load(Path::new("/nonexistent/keys.toml"));
        assert!(errors.is_empty());
        assert_eq!(km.action(Key::plain('p')), Some(Action::TogglePause));
    }
}
