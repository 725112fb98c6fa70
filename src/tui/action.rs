//! What a person can ask of the UI. Keys map to these through the key map; `update` interprets them.

use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumMessage, EnumString, IntoEnumIterator, IntoStaticStr};

/// The `keys.toml` names are strum's snake_case of the variants (serde's too: the same spelling),
/// the help texts its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, EnumIter, IntoStaticStr, EnumString, EnumMessage)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Action {
    #[strum(message = "quit (asks while running)")]
    Quit,
    /// Ctrl-C: opens the quit dialog, and a second one stops the run (with a checkpoint).
    #[strum(message = "quit; twice: stop + ckpt")]
    Interrupt,
    #[strum(message = "pause / resume")]
    TogglePause,
    #[strum(message = "checkpoint now")]
    Checkpoint,
    #[strum(message = "k-NN evaluation")]
    EvalKnn,
    #[strum(message = "linear evaluation")]
    EvalLinear,
    #[strum(message = "k-NN of unevaluated ckpts")]
    EvalAll,
    #[strum(message = "outliers tab + scoring")]
    Outliers,
    #[strum(message = "schedules tab")]
    SchedulesTab,
    /// Focus the schedule edit form.
    #[strum(message = "edit a schedule")]
    EditSchedule,
    #[strum(message = "undo last schedule edit")]
    UndoScheduleEdit,
    #[strum(message = "freeze / unfreeze charts")]
    Freeze,
    #[strum(message = "zoom in (fewer iterations)")]
    ZoomIn,
    #[strum(message = "zoom out (to whole run)")]
    ZoomOut,
    #[strum(message = "loss chart log scale")]
    ToggleLogScale,
    #[strum(message = "this help")]
    Help,
    #[strum(message = "next tab")]
    NextTab,
    #[strum(message = "previous tab")]
    PrevTab,
    #[strum(message = "Dashboard")]
    Tab1,
    #[strum(message = "Schedules")]
    Tab2,
    #[strum(message = "Evaluation")]
    Tab3,
    #[strum(message = "Outliers")]
    Tab4,
    #[strum(message = "Checkpoints")]
    Tab5,
    #[strum(message = "Log")]
    Tab6,
    #[strum(message = "copy ckpt / image path")]
    CopyPath,
    #[strum(message = "up / scroll / field")]
    Up,
    #[strum(message = "down / scroll / field")]
    Down,
    #[strum(message = "previous choice / class")]
    Left,
    #[strum(message = "next choice / class")]
    Right,
    #[strum(message = "page up")]
    PageUp,
    #[strum(message = "page down")]
    PageDown,
    #[strum(message = "first / oldest")]
    Home,
    #[strum(message = "last / follow newest")]
    End,
    #[strum(message = "confirm / evaluate ckpt")]
    Confirm,
    #[strum(message = "close dialog or form")]
    Cancel,
    /// Outliers tab: mark the selected image reviewed / to keep / to exclude (again: unmark).
    #[strum(message = "outlier: mark reviewed")]
    MarkReviewed,
    #[strum(message = "outlier: mark keep")]
    MarkKeep,
    #[strum(message = "outlier: mark exclude (e exports)")]
    MarkExclude,
    /// Outliers tab: show one split's rows, then the next, then all.
    #[strum(message = "outliers: next split")]
    CycleSplit,
    /// Outliers tab: sort by the next score kind (auto, mislabel, stranger, disagreement, isolation).
    #[strum(message = "outliers: sort by score")]
    ToggleScore,
    /// Outliers tab: show the likely label errors (where the report claims them; on weak features
    /// the rows `auto` ranks by its mislabel side, named as unclaimed), then strangers, then all.
    #[strum(message = "outliers: filter by kind")]
    CycleKind,
    /// Outliers tab: the images most like the selected one, across its split.
    #[strum(message = "outliers: neighbours")]
    Neighbours,
    /// Outliers tab: the images most like an image file whose path is typed.
    #[strum(message = "outliers: search a file")]
    SearchFile,
}

impl Action {
    /// Every action, for the help overlay and the key-file validation.
    pub fn all() -> impl Iterator<Item = Action> {
        Action::iter()
    }

    /// The name used in `keys.toml`.
    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn from_name(s: &str) -> Option<Action> {
        s.parse().ok()
    }

    /// One line for the help overlay.
    pub fn description(self) -> &'static str {
        self.get_message().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_one_name_for_keys_toml_and_serde_and_a_help_text() {
        let mut n = 0;
        for a in Action::all() {
            assert_eq!(Action::from_name(a.name()), Some(a));
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{}\"", a.name()));
            assert!(!a.description().is_empty(), "{a:?} has no help text");
            n += 1;
        }
        assert_eq!(n, 43);
        assert_eq!(Action::TogglePause.name(), "toggle_pause");
        assert_eq!(Action::Tab1.name(), "tab1");
        assert_eq!(Action::from_name("spacebar"), None);
    }

    #[test]
    fn the_tui_page_lists_every_action_name() {
        let page = include_str!("../../docs/tui.md");
        let keys = page.split("## `keys.toml`").nth(1).unwrap_or_default();
        for a in Action::all() {
            assert!(keys.contains(&format!("`{}`", a.name())), "docs/tui.md's keys.toml section does not list `{}`", a.name());
        }
    }
}
