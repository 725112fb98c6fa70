//! What clients ask between iterations (pause, resume, checkpoint, stop, schedule edits,
//! evaluations, status), and the pause that follows a non-finite loss.

use super::evals::Requested;
use super::{resume_from, OnNonFinite, Trainer};
use crate::protocol::schedule::{ScheduleEdit, SCHEDULE_EDIT_REFUSED};
use crate::protocol::{AlarmKind, Command, Event, RunState};
use crate::run::checkpoint as checkpoint_files;
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

impl Trainer {
    /// A non-finite loss: the weights were not touched by that step. Headless, stop; with a
    /// person watching, pause, and on resume continue from the last good checkpoint.
    pub(super) fn non_finite(&mut self, value: f64) -> Result<Option<RunState>> {
        self.health.poisoned = true;
        self.health.tracker.push_non_finite(self.iter);
        self.alarm(AlarmKind::NonFiniteLoss, format!("loss is {value} at iteration {}; the last good checkpoint is kept", self.iter))?;
        if self.on_non_finite == OnNonFinite::Stop {
            return Ok(Some(RunState::Failed));
        }
        self.paused = true;
        self.emit(Event::State { state: RunState::Paused, iter: self.iter });
        if let Some(end) = self.handle_commands()? {
            return Ok(Some(end));
        }
        let (ckpt, problems) = checkpoint_files::load_latest(&self.run_dir.checkpoint_dir());
        let ckpt = ckpt.with_context(|| format!("no usable checkpoint to go back to ({})", problems.join("; ")))?;
        resume_from(&mut self.state, &ckpt, None, self.data.niter)?;
        self.iter = ckpt.meta.iter;
        self.health.poisoned = false;
        self.run_dir.tensorboard_from(self.iter);
        self.run_dir.event("restored", &serde_json::json!({ "iter": self.iter, "checkpoint": ckpt.path.to_string_lossy() }))?;
        Ok(None)
    }

    /// Every schedule edit passes here, whichever front-end sent it: one that leaves the
    /// schedule's range is refused (the clients get the reason, `events.jsonl` a
    /// `schedule_edit_refused` line) and never reaches the schedules, so never a checkpoint.
    /// True when the edit was applied (the caller sends the schedules once for a batch of them).
    fn edit_schedule(&mut self, edit: ScheduleEdit) -> Result<bool> {
        let edit = ScheduleEdit { from_iter: edit.from_iter.max(self.iter), ..edit };
        let applied = match self.schedules.get_mut(&edit.schedule) {
            Some(s) => s.try_apply(edit),
            None => Ok(()),
        };
        if let Err(reason) = applied {
            tracing::warn!("schedule edit refused: {reason}");
            self.run_dir.event("schedule_edit_refused", &serde_json::json!({ "edit": edit, "reason": reason.to_string() }))?;
            self.emit(Event::Error { message: format!("{SCHEDULE_EDIT_REFUSED}: {reason}") });
            return Ok(false);
        }
        self.run_dir.event("schedule_edit", &edit)?;
        self.emit(Event::ScheduleEdited { edit });
        Ok(true)
    }

    /// Applies pending commands; blocks while paused. Some(state) when training must stop.
    /// Training takes at most `COMMAND_BUDGET` of commands between two iterations: thousands of
    /// edits from a file are applied over the next iterations instead of holding training up.
    pub(super) fn handle_commands(&mut self) -> Result<Option<RunState>> {
        let started = Instant::now();
        let (mut edited, mut sent) = (false, Instant::now());
        loop {
            // Each `Schedules` message holds every schedule whole: one per batch of edits, once
            // the queue is drained (or every `COMMAND_BUDGET` of a long one), not one per edit.
            if edited && (self.commands.is_empty() || sent.elapsed() >= COMMAND_BUDGET) {
                self.emit_schedules();
                (edited, sent) = (false, Instant::now());
            }
            let cmd = if self.paused {
                match self.commands.recv_timeout(Duration::from_millis(200)) {
                    Ok(c) => c,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        // A paused run still records the evaluations it was asked for.
                        self.poll_eval(false)?;
                        self.pause_heartbeat()?;
                        continue;
                    }
                    // Every client is gone while paused: keep the checkpoint and stop.
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(Some(RunState::Stopped)),
                }
            } else if started.elapsed() >= COMMAND_BUDGET {
                return Ok(None);
            } else {
                match self.commands.try_recv() {
                    Ok(c) => c,
                    Err(_) => return Ok(None),
                }
            };
            match self.command(cmd)? {
                Handled::Done => {}
                Handled::Edited => edited = true,
                Handled::End(state) => {
                    if edited {
                        self.emit_schedules();
                    }
                    return Ok(Some(state));
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) -> Result<Handled> {
        match cmd {
            Command::Pause if !self.paused => {
                self.paused = true;
                self.run_dir.flush()?;
                self.run_dir.event("pause", &serde_json::json!({ "iter": self.iter }))?;
                self.emit(Event::State { state: RunState::Paused, iter: self.iter });
            }
            Command::Resume if self.paused => {
                self.paused = false;
                self.run_dir.event("resume", &serde_json::json!({ "iter": self.iter }))?;
                self.emit(Event::State { state: RunState::Running, iter: self.iter });
            }
            Command::Pause | Command::Resume => {}
            Command::Checkpoint => {
                self.checkpoint(None)?;
            }
            Command::Stop { checkpoint } => {
                if checkpoint {
                    self.checkpoint(None)?;
                }
                return Ok(Handled::End(RunState::Stopped));
            }
            Command::EditSchedule(edit) if self.edit_schedule(edit)? => return Ok(Handled::Edited),
            Command::EditSchedule(_) => {}
            Command::UndoScheduleEdit { schedule } => {
                if self.schedules.get_mut(&schedule).and_then(|s| s.undo()).is_some() {
                    self.run_dir.event("schedule_undo", &serde_json::json!({ "schedule": schedule }))?;
                    self.emit(Event::ScheduleUndone { schedule });
                    return Ok(Handled::Edited);
                }
            }
            Command::Eval { kind, checkpoint } => {
                let requested = checkpoint.map_or(Requested::Live(None), Requested::Checkpoint);
                self.start_eval(kind, requested)?
            }
            Command::EvalBaseline { kind } => self.start_eval(kind, Requested::Random)?,
            Command::Status => {
                let state = if self.paused { RunState::Paused } else { RunState::Running };
                self.emit(Event::State { state, iter: self.iter });
            }
        }
        Ok(Handled::Done)
    }
}

/// What one command did, for `handle_commands`.
enum Handled {
    Done,
    /// A schedule changed: the schedules are sent again.
    Edited,
    /// Training must end in this state.
    End(RunState),
}

/// The longest a batch of commands may hold training up between two iterations.
const COMMAND_BUDGET: Duration = Duration::from_millis(50);
