//! The terminal UI: watch a training run and steer it. The trainer runs elsewhere (its own thread,
//! or another process behind the control socket); the UI sees it only through a `Sender<Command>`
//! and a `Receiver<Event>`.
//!
//! Structure: keys become `Action`s through the key map (`keymap`), `update` changes the `App`
//! state and sends commands, trainer events fold into the same state (`trainer_events`), and
//! `draw` renders the state and nothing else.

pub mod action;
pub mod app;
pub mod buckets;
pub mod checkpoint_files;
mod clipboard;
pub mod draw;
pub mod edit_form;
mod event_loop;
pub mod format;
pub mod keymap;
pub mod layout;
pub mod lens;
pub mod log_view;
pub mod outlier_view;
pub mod picker;
pub mod store;
mod terminal;
pub mod theme;
mod theme_watch;
pub mod trainer_events;
pub mod update;

#[cfg(test)]
pub(crate) mod fixtures;

use crate::files::ShowPath;
use crate::protocol::{Command, Event};
use app::App;
use crossbeam_channel::{Receiver, Sender};
use keymap::KeyMap;
use log_view::LogLevel;
use std::path::{Path, PathBuf};

/// How the TUI is set up. `Default` gives the user's theme and keys from the config directory.
#[derive(Debug, Clone, Default)]
pub struct TuiOptions {
    /// Theme name (shipped `dark`, `light`, `high-contrast`, or a user theme in
    /// `<config dir>/themes/NAME.toml`) or a path to a `.toml` file; None: `dark`.
    pub theme: Option<String>,
    /// The run's directory, shown in the Log tab.
    pub run_dir: Option<PathBuf>,
    /// Key bindings file; None: `<config dir>/keys.toml` (missing file: the defaults).
    pub keys_path: Option<PathBuf>,
    /// Where user themes and keys live; None: the platform's config dir for `dino-tui`.
    pub config_dir: Option<PathBuf>,
    /// Colour off; None: on unless `NO_COLOR` is set.
    pub no_color: Option<bool>,
    /// Whether `p` on a stopped or failed run starts a trainer on it again (`dino attach` does;
    /// in-process the trainer is gone for good), so the footer can say what the key will do.
    pub can_relaunch: bool,
}

/// Why the TUI returned, so the caller knows what to do with the trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuiExit {
    /// The person chose "stop and checkpoint" (`Stop { checkpoint: true }` was sent), or a SIGINT
    /// or SIGTERM arrived: wait for the trainer to finish its checkpoint, then exit.
    StopTraining,
    /// The person chose to leave training running (or the terminal went away, SIGHUP): the caller
    /// decides whether that is possible (a detached run) or must stop it.
    LeaveRunning,
    /// The trainer had already reached a final state (or its channel closed).
    TrainingOver,
}

/// The user's config directory for `dino-tui` (where `DINO_TUI_CONFIG` points, or the
/// platform's), if the platform has a home.
pub fn default_config_dir() -> Option<PathBuf> {
    crate::config::user::config_dir()
}

/// Builds the UI's state from the options: theme and key map loaded, their problems logged (in the
/// Log tab and the log file), never fatal.
pub fn build_app(opts: &TuiOptions, commands: Sender<Command>) -> App {
    let config_dir = opts.config_dir.clone().or_else(default_config_dir);
    let theme_dir = config_dir.as_ref().map(|d| d.join("themes"));
    let name = opts.theme.clone().unwrap_or_else(|| theme::DEFAULT_THEME.to_string());
    let no_color = opts.no_color.unwrap_or_else(theme::no_color_from_env);
    let (t, theme_err) = theme::load_or_default(&name, theme_dir.as_deref());
    let keys_path = opts.keys_path.clone().or_else(|| config_dir.as_ref().map(|d| d.join("keys.toml")));
    let (keymap, keys_errors) = keys_path.as_deref().map(KeyMap::load).unwrap_or_default();
    let mut app = App::new(commands, t.with_no_color(no_color), keymap);
    app.shell.can_relaunch = opts.can_relaunch;
    if let Some(e) = theme_err {
        app.log_line(LogLevel::Error, format!("{e}; using the default theme"));
    }
    for e in &keys_errors {
        app.log_line(LogLevel::Error, format!("{e}; entry ignored"));
    }
    if let Some(first) = keys_errors.first() {
        let n = keys_errors.len();
        let s = if n == 1 { "entry" } else { "entries" };
        app.shell.status = Some(format!("{}: {n} bad {s} ignored, the others applied (Log tab: 6)", first.file));
    }
    if let Some(dir) = &opts.run_dir {
        app.log_line(LogLevel::Info, format!("run directory: {}", dir.shown()));
        app.trainer.store.set_source(&dir.join(crate::run::dir::METRICS_FILE));
    }
    app
}

/// Runs the TUI until the person quits. Blocks the calling thread (it drives its own
/// current-thread tokio runtime), so call it from the main thread with the trainer on another.
/// The terminal is restored on every way out: return, error, panic, Ctrl-C and signals.
pub fn run_tui(opts: TuiOptions, commands: Sender<Command>, events: Receiver<Event>) -> anyhow::Result<TuiExit> {
    let mut app = build_app(&opts, commands);
    let config_dir = opts.config_dir.clone().or_else(default_config_dir);
    let reload = theme_reload(&opts, config_dir.as_deref());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Asks the terminal which image protocol it speaks. Before raw mode is ours: the query
    // switches raw mode on and off again itself, which would leave our input line-buffered.
    app.outliers.picker = outlier_view::terminal_picker();
    let mut guard = terminal::TerminalGuard::enter()?;
    let result = rt.block_on(event_loop::run(&mut app, &mut guard.terminal, &events, reload));
    drop(guard);
    match &result {
        Ok(exit) => tracing::info!("TUI exit: {exit:?}"),
        Err(e) => tracing::error!("TUI failed: {e:#}"),
    }
    result
}

fn theme_reload(opts: &TuiOptions, config_dir: Option<&Path>) -> event_loop::ThemeReload {
    let user_dir = config_dir.map(|d| d.join("themes"));
    let name = opts.theme.clone().unwrap_or_else(|| theme::DEFAULT_THEME.to_string());
    let as_path = Path::new(&name);
    let is_path = name.ends_with(".toml") || name.contains('/');
    let file_name =
        if is_path { as_path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string() } else { format!("{name}.toml") };
    let mut dirs: Vec<&Path> = Vec::new();
    if let Some(d) = user_dir.as_deref() {
        dirs.push(d);
    }
    let parent = as_path.parent().filter(|p| is_path && !p.as_os_str().is_empty());
    if let Some(p) = parent {
        dirs.push(p);
    } else if is_path {
        dirs.push(Path::new("."));
    }
    let watch = theme_watch::ThemeWatch::new(&dirs);
    event_loop::ThemeReload {
        name,
        user_dir: user_dir.clone(),
        no_color: opts.no_color.unwrap_or_else(theme::no_color_from_env),
        watch,
        file_name,
    }
}
