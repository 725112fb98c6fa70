//! The UI's whole state. `update` (update.rs) is the only writer besides the event loop's
//! bookkeeping; `draw` reads it and nothing else, so a test can build an `App`, feed it events and
//! actions, and check what a screen shows.

use super::edit_form::EditForm;
use super::keymap::KeyMap;
use super::log_view::{LogEntry, LogLevel};
use super::store::MetricStore;
use super::theme::Theme;
use super::TuiExit;
use crate::protocol::schedule::{Schedule, ScheduleName};
use crate::protocol::{CheckpointInfo, Command, EvalKind, RunInfo, RunState};
use crate::telemetry::Telemetry;
use crossbeam_channel::Sender;

/// Log entries kept for the Log tab; older ones are dropped (the run directory keeps everything).
pub const LOG_CAPACITY: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Dashboard,
    Schedules,
    Evaluation,
    Outliers,
    Checkpoints,
    Log,
}

impl Tab {
    pub const ALL: [Tab; 6] = [Tab::Dashboard, Tab::Schedules, Tab::Evaluation, Tab::Outliers, Tab::Checkpoints, Tab::Log];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Dashboard => "Dashboard",
            Tab::Schedules => "Schedules",
            Tab::Evaluation => "Evaluation",
            Tab::Outliers => "Outliers",
            Tab::Checkpoints => "Checkpoints",
            Tab::Log => "Log",
        }
    }

    pub fn short_title(self) -> &'static str {
        match self {
            Tab::Dashboard => "Dash",
            Tab::Schedules => "Sched",
            Tab::Evaluation => "Eval",
            Tab::Outliers => "Outl",
            Tab::Checkpoints => "Ckpt",
            Tab::Log => "Log",
        }
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    pub fn from_index(i: usize) -> Tab {
        Tab::ALL[i % Tab::ALL.len()]
    }
}

/// Zoom steps for the time-series charts: the whole run, then a quarter of it, a sixteenth, ...:
/// relative to the run's length, so every step shows something new on a short run as on a long
/// one.
pub const ZOOM_STEPS: usize = 5;
/// The narrowest zoom window, in iterations.
pub const MIN_ZOOM_WINDOW: usize = 10;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChartView {
    /// Zoom step, 0 (whole run) to `ZOOM_STEPS - 1`.
    pub zoom: usize,
    /// The last iteration shown while frozen; new data is stored but not shown.
    pub frozen_at: Option<usize>,
    pub log_scale: bool,
}

impl ChartView {
    /// The iterations shown for a run of `run_len` iterations: None for the whole run.
    pub fn window(&self, run_len: usize) -> Option<usize> {
        let zoom = self.zoom.min(ZOOM_STEPS - 1) as u32;
        if zoom == 0 {
            return None;
        }
        let n = (run_len / 4usize.pow(zoom)).max(MIN_ZOOM_WINDOW);
        (n < run_len).then_some(n)
    }

    pub fn label(&self, run_len: usize) -> String {
        match self.window(run_len) {
            None => "whole run".into(),
            Some(n) => format!("last {n} it"),
        }
    }
}

/// A request whose outcome the footer waits to report (`checkpoint requested` becomes
/// `checkpoint saved at it 57, 14.8 MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    Pause,
    Resume,
    Checkpoint,
    Eval(EvalKind),
    Edit(ScheduleName),
    Undo(ScheduleName),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuitChoice {
    StopAndCheckpoint,
    LeaveRunning,
    Cancel,
}

impl QuitChoice {
    pub const ALL: [QuitChoice; 3] = [QuitChoice::StopAndCheckpoint, QuitChoice::LeaveRunning, QuitChoice::Cancel];
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalRecord {
    pub kind: EvalKind,
    pub summary: String,
    /// Iteration of the weights evaluated (of the run when the result arrived, if unknown).
    pub iter: Option<usize>,
    /// Epoch of the weights evaluated, when the result says.
    pub epoch: Option<usize>,
    /// The accuracy that stands for the result (k-NN at k=20, probe top-1), in percent.
    pub top1: Option<f64>,
    /// The content id of the checkpoint evaluated (None: the live teacher, or an older record).
    pub content_id: Option<String>,
    /// Evaluated with random weights: the baseline, not a checkpoint.
    pub random: bool,
    /// The student of a checkpoint (`dino eval knn --checkpoint_key student`): listed, but not the
    /// checkpoint's result nor a point of the run's curve, which are the teacher's.
    pub student: bool,
    /// k-NN top-1 for every k evaluated.
    pub per_k: Vec<(usize, f64)>,
    /// Classes of the data set (chance is 100 / this).
    pub num_classes: Option<usize>,
}

impl EvalRecord {
    /// Whether this is a teacher's result of a checkpoint, which stands for the run (its curve,
    /// "vs previous", a checkpoint's row): not the random-weights baseline, not a student's.
    pub fn stands_for_the_run(&self) -> bool {
        !self.random && !self.student
    }

    /// Whether this result is about the teacher of `c`: by content id when both have one, else by
    /// iteration (live evaluations, and runs recorded before content ids).
    pub fn is_of(&self, c: &CheckpointInfo) -> bool {
        if !self.stands_for_the_run() {
            return false;
        }
        match (&self.content_id, &c.content_id) {
            (Some(a), Some(b)) => a == b,
            (Some(_), None) => false,
            (None, _) => self.iter == Some(c.iter),
        }
    }
}

/// What a checkpoint row's file holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Present,
    /// Deleted (by retention, or by hand).
    Gone,
    /// The file now holds other weights (`checkpoint-latest.json` rows of older runs).
    Replaced,
}

/// A schedule as the trainer last sent it, with its curve rendered once (in `f32`) for drawing.
#[derive(Debug, Clone)]
pub struct ScheduleCurve {
    pub name: ScheduleName,
    pub schedule: Schedule,
    pub values: Vec<f32>,
}

/// The whole UI state, one struct per concern so that a tab's code touches its own part: what the
/// trainer has said (`trainer`), the frame around the tabs (`shell`), and each tab's state.
pub struct App {
    pub commands: Sender<Command>,
    pub trainer: TrainerView,
    pub shell: Shell,
    pub schedule_tab: ScheduleTab,
    pub eval_tab: EvalTab,
    pub checkpoint_tab: CheckpointTab,
    pub log_tab: LogTab,
    pub outliers: super::outlier_view::OutlierView,
}

/// What the trainer has reported, as every tab reads it.
pub struct TrainerView {
    pub info: Option<RunInfo>,
    pub state: RunState,
    /// Set when the trainer's event channel closed without a final state.
    pub gone: bool,
    pub store: MetricStore,
    /// The latest collapse or non-finite-loss alarm, shown on the dashboard.
    pub last_alarm: Option<String>,
    /// The health verdict, fed by the same events as the charts.
    pub health: crate::protocol::health::HealthTracker,
    /// This machine, sampled by the viewer.
    pub telemetry: Telemetry,
    /// The trainer's own process, as it reports itself (`Event::Resources`): in `dino attach`
    /// the viewer is another process, whose own memory says nothing of training.
    pub process: Option<crate::protocol::ProcessSample>,
}

/// The frame around the tabs: which tab, keys, theme, chart view, dialogs, the footer line.
pub struct Shell {
    pub keymap: KeyMap,
    pub theme: Theme,
    pub tab: Tab,
    pub view: ChartView,
    pub help: bool,
    pub quit_dialog: Option<QuitChoice>,
    /// A one-line message in the footer until the next key, a newer message, or (the event
    /// loop's clock) a few seconds once nothing is pending.
    pub status: Option<String>,
    /// Requests sent whose outcome has not arrived yet; the events that answer them replace the
    /// footer's "requested" with what happened.
    pub pending: Vec<Pending>,
    /// Help page: 0 the keys by topic, 1 every action's `keys.toml` name.
    pub help_page: u8,
    /// `p` on a stopped or failed run starts a detached trainer on it (`dino attach`).
    pub can_relaunch: bool,
    /// Text to put on the clipboard (OSC 52); the event loop writes it after drawing.
    pub clipboard: Option<String>,
    pub exit: Option<TuiExit>,
    /// Last known terminal size, for mouse hit-testing.
    pub size: (u16, u16),
}

#[derive(Default)]
pub struct ScheduleTab {
    pub curves: Vec<ScheduleCurve>,
    /// Schedules edited so far, oldest first, so `u` undoes the most recent one.
    pub edit_history: Vec<ScheduleName>,
    pub form: EditForm,
}

#[derive(Default)]
pub struct EvalTab {
    pub records: Vec<EvalRecord>,
    pub progress: Vec<(EvalKind, usize, usize)>,
}

#[derive(Default)]
pub struct CheckpointTab {
    /// Newest last, as they arrive; drawn newest first.
    pub rows: Vec<CheckpointInfo>,
    /// Row in the newest-first checkpoint table.
    pub selected: usize,
    /// What each row's file holds now, by row (refreshed from the disk about once a second; a row
    /// not checked yet counts as present).
    pub files: Vec<FileState>,
    /// Content ids the user marked to keep (`checkpoints/keep.json`).
    pub kept: std::collections::BTreeSet<String>,
    /// Bytes the checkpoint folder takes on disk.
    pub disk_bytes: Option<u64>,
}

impl CheckpointTab {
    pub fn file_state(&self, row: usize) -> FileState {
        self.files.get(row).copied().unwrap_or(FileState::Present)
    }
}

#[derive(Default)]
pub struct LogTab {
    pub entries: Vec<LogEntry>,
    /// Lines scrolled up from the newest entry; 0 follows the log.
    pub scroll: usize,
}

impl App {
    pub fn new(commands: Sender<Command>, theme: Theme, keymap: KeyMap) -> Self {
        Self {
            commands,
            trainer: TrainerView {
                info: None,
                state: RunState::Starting,
                gone: false,
                store: MetricStore::default(),
                last_alarm: None,
                health: Default::default(),
                telemetry: Telemetry::default(),
                process: None,
            },
            shell: Shell {
                keymap,
                theme,
                tab: Tab::Dashboard,
                view: ChartView::default(),
                help: false,
                quit_dialog: None,
                status: None,
                pending: Vec::new(),
                help_page: 0,
                can_relaunch: false,
                clipboard: None,
                exit: None,
                size: (80, 24),
            },
            schedule_tab: ScheduleTab::default(),
            eval_tab: EvalTab::default(),
            checkpoint_tab: CheckpointTab::default(),
            log_tab: LogTab::default(),
            outliers: Default::default(),
        }
    }

    /// The last iteration the trainer reported (metrics first, else the run's start).
    pub fn current_iter(&self) -> Option<usize> {
        self.trainer.store.last().map(|m| m.iter).or_else(|| self.trainer.info.as_ref().map(|r| r.start_iter.saturating_sub(1)))
    }

    pub fn total_iters(&self) -> Option<usize> {
        self.trainer.info.as_ref().map(|r| r.epochs * r.niter_per_ep)
    }

    /// Where the run stands between iterations, as every view names it: the number of
    /// iterations done, which is also the 0-based `iter` of the next one to run (the `iter` of
    /// `events.jsonl`'s pause, checkpoint and stop lines and of `dino ctl status`).
    pub fn position(&self) -> Option<usize> {
        self.trainer.store.last().map(|m| m.iter + 1).or_else(|| self.trainer.info.as_ref().map(|r| r.start_iter))
    }

    /// The 0-based epoch (`log.txt`'s) of the last iteration done: the one in progress, or just
    /// finished.
    pub fn epoch(&self) -> Option<usize> {
        self.trainer.store.last().map(|m| m.epoch)
    }

    /// The run's length in iterations for zooming: the planned total, else what is recorded.
    /// The iterations the charts hold, first to latest: what the zoom steps divide, so the first
    /// step on a run 61 iterations into 620 shows its last 15, not "the last 155".
    pub fn held_len(&self) -> usize {
        match (self.trainer.store.first_iter(), self.trainer.store.last()) {
            (Some(first), Some(m)) => m.iter.saturating_sub(first) + 1,
            _ => 1,
        }
    }

    /// Forgets a pending request; true when it was pending.
    pub fn resolve(&mut self, p: Pending) -> bool {
        let before = self.shell.pending.len();
        self.shell.pending.retain(|x| *x != p);
        self.shell.pending.len() != before
    }

    /// Whether quitting needs no confirmation: the run is over or its trainer is gone.
    pub fn training_over(&self) -> bool {
        self.trainer.state.is_over() || self.trainer.gone
    }

    pub fn schedule(&self, name: ScheduleName) -> Option<&ScheduleCurve> {
        self.schedule_tab.curves.iter().find(|s| s.name == name)
    }

    /// The terminal's new size, and what depends on it outside the frame (the encoded preview).
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.shell.size = (cols, rows);
        self.outliers.resize(cols, rows);
    }

    pub fn log_line(&mut self, level: LogLevel, text: impl Into<String>) {
        let text = text.into();
        match level {
            LogLevel::Info => tracing::info!("{text}"),
            LogLevel::Warn => tracing::warn!("{text}"),
            LogLevel::Error => tracing::error!("{text}"),
        }
        let iter = self.trainer.store.last().map(|m| m.iter + 1);
        self.log_tab.entries.push(LogEntry { level, iter, text });
        if self.log_tab.entries.len() > LOG_CAPACITY {
            let drop = self.log_tab.entries.len() - LOG_CAPACITY;
            self.log_tab.entries.drain(..drop);
        }
    }

    /// Sends a command; a closed channel (trainer gone) is reported, not fatal.
    pub fn send(&mut self, cmd: Command) -> bool {
        tracing::info!("command: {cmd:?}");
        match self.commands.send(cmd) {
            Ok(()) => true,
            Err(e) => {
                self.trainer.gone = true;
                self.log_line(LogLevel::Error, format!("trainer is not listening; {:?} not sent", e.0));
                self.shell.status = Some("trainer is not listening".into());
                false
            }
        }
    }
}
