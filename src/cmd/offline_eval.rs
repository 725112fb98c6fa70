//! Evaluations of a run that no trainer serves (it finished, stopped or died): a viewer runs them
//! itself, with the evaluation worker the trainer uses, on any checkpoint of the run. Results go
//! to `RUN_DIR/evals/` and `events.jsonl` exactly as a trainer's do, under `evals.lock`, so two
//! viewers of one run never write the same result at once. One runs at a time; the others queue.

use crate::config::TrainConfig;
use crate::eval::worker::EvalWorker;
use crate::files::ShowPath;
use crate::model::EvalWeights;
use crate::protocol::{Command, EvalKind, EvalOutcome, Event};
use crate::run::checkpoint::{self, LATEST};
use crate::run::dir::{CHECKPOINT_DIR, CONFIG_FILE};
use crate::run::lock::RunLock;
use crossbeam_channel::Sender;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// What a queued evaluation runs on.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A checkpoint's sidecar; None: the run's newest usable checkpoint.
    Checkpoint(Option<PathBuf>),
    /// The architecture with random weights (the baseline rows are compared with).
    Random,
}

struct Running {
    worker: EvalWorker,
    // Released when the evaluation is recorded.
    _lock: RunLock,
}

pub struct OfflineEvals {
    run_dir: PathBuf,
    events: Sender<Event>,
    /// Send results as `EvalResult` events too; a viewer that follows `events.jsonl` gets them
    /// from there and leaves this off, so nothing arrives twice.
    announce: bool,
    running: Option<Running>,
    queued: VecDeque<(EvalKind, Target)>,
}

impl OfflineEvals {
    pub fn new(run_dir: &Path, events: Sender<Event>, announce: bool) -> Self {
        Self { run_dir: run_dir.to_path_buf(), events, announce, running: None, queued: VecDeque::new() }
    }

    pub fn is_busy(&self) -> bool {
        self.running.is_some()
    }

    fn tell(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// Starts an evaluation, or queues it behind the running one.
    pub fn request(&mut self, kind: EvalKind, target: Target) {
        if let Some(r) = &self.running {
            let message = format!("{} evaluation queued after the running {} evaluation", kind.label(), r.worker.kind.label());
            self.tell(Event::Warning { message });
            self.queued.push_back((kind, target));
            return;
        }
        if let Err(e) = self.start(kind, target) {
            self.tell(Event::Error { message: format!("{} evaluation not started: {e:#}", kind.label()) });
        }
    }

    fn start(&mut self, kind: EvalKind, target: Target) -> anyhow::Result<()> {
        let config = TrainConfig::from_toml_file(&self.run_dir.join(CONFIG_FILE))?;
        let weights = match target {
            Target::Random => EvalWeights::Random { seed: config.run.seed },
            Target::Checkpoint(Some(path)) => EvalWeights::Checkpoint(path),
            Target::Checkpoint(None) => EvalWeights::Checkpoint(newest_checkpoint(&self.run_dir)?),
        };
        let lock = RunLock::acquire_evals(&self.run_dir)?;
        let device = crate::config::validate::resolve_device(&config.run.device)?;
        let what = match &weights {
            EvalWeights::Checkpoint(p) => format!("the weights of {}", p.shown()),
            _ => "random weights".to_string(),
        };
        self.tell(Event::Warning { message: format!("no trainer serves this run: evaluating {what} here ({} evaluation)", kind.label()) });
        let worker = EvalWorker::spawn(kind, weights, config, device, self.run_dir.clone(), self.events.clone())?;
        self.running = Some(Running { worker, _lock: lock });
        Ok(())
    }

    /// Records the running evaluation's result once it is there (`wait`: blocks until then), then
    /// starts the next queued one.
    pub fn poll(&mut self, wait: bool) {
        let Some(r) = &self.running else { return };
        let outcome = if wait { Some(r.worker.wait()) } else { r.worker.try_finish() };
        let Some(outcome) = outcome else { return };
        match outcome.map_err(anyhow::Error::msg).and_then(|o| self.record(o)) {
            Ok(()) => {}
            Err(e) => self.tell(Event::Error { message: format!("{e:#}") }),
        }
        self.running = None;
        if let Some((kind, target)) = self.queued.pop_front() {
            self.request(kind, target);
        }
    }

    fn record(&self, mut o: EvalOutcome) -> anyhow::Result<()> {
        o.json["seconds"] = o.seconds.into();
        o.json["evaluated_by"] = "viewer".into();
        crate::eval::record::append_event(&self.run_dir, &o.json)?;
        let summary = format!("{}; {:.0} s (evaluated by this viewer: no trainer serves the run)", o.summary, o.seconds);
        tracing::info!("{summary}");
        if self.announce {
            self.tell(Event::EvalResult { kind: o.kind, summary, json: o.json });
        }
        Ok(())
    }
}

/// The stable sidecar of the run's newest usable checkpoint (what `k` means on a finished run).
fn newest_checkpoint(run_dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = run_dir.join(CHECKPOINT_DIR);
    let meta = checkpoint::read_meta(&dir.join(LATEST)).map_err(|e| anyhow::anyhow!("this run has no checkpoint to evaluate: {e:#}"))?;
    let stable = dir.join(checkpoint::stable_name(meta.iter));
    // Runs written before stable names have only `checkpoint-latest.json`.
    Ok(if stable.exists() { stable } else { dir.join(LATEST) })
}

/// How often the command loop looks at a running evaluation when no command comes.
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Forwards a viewer's commands: to the trainer while `send_live` takes them; when it does not
/// (no trainer serves the run), evaluations run here and `other` answers the rest. Returns when the
/// viewer's side of the channel closes; an evaluation still running is abandoned with the viewer.
pub fn serve_commands(
    commands: &crossbeam_channel::Receiver<Command>,
    evals: &mut OfflineEvals,
    mut send_live: impl FnMut(&Command) -> bool,
    mut other: impl FnMut(Command),
) {
    loop {
        match commands.recv_timeout(POLL) {
            Ok(cmd) => {
                if !send_live(&cmd) {
                    match cmd {
                        Command::Eval { kind, checkpoint } => evals.request(kind, Target::Checkpoint(checkpoint)),
                        Command::EvalBaseline { kind } => evals.request(kind, Target::Random),
                        cmd => other(cmd),
                    }
                }
                evals.poll(false);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => evals.poll(false),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// A command as a person would name it.
pub fn describe(cmd: &Command) -> &'static str {
    match cmd {
        Command::Pause => "pause",
        Command::Resume => "resume",
        Command::Checkpoint => "checkpoint now",
        Command::Stop { .. } => "stop",
        Command::EditSchedule(_) => "a schedule edit",
        Command::UndoScheduleEdit { .. } => "undo",
        Command::Eval { .. } | Command::EvalBaseline { .. } => "evaluation",
        Command::Status => "status",
    }
}
