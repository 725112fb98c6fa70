//! Training with the terminal UI in this process. The trainer runs on its own thread; the TUI owns
//! the terminal. When the person quits with "leave training running", the run is checkpointed and
//! handed to a detached `dino train --headless` process (its own session, no terminal, SIGHUP
//! ignored) that resumes it at the exact iteration, so closing the terminal loses nothing.

use super::offline_eval::{describe, serve_commands, OfflineEvals};
use crate::cmd::serve;
use crate::config::TrainConfig;
use crate::files::ShowPath;
use crate::protocol::{Command, Event, RunState};
use crate::train::trainer::OnNonFinite;
use crate::tui::{self, TuiExit, TuiOptions};
use anyhow::Result;
use crossbeam_channel::{Receiver, Sender};

/// How an interactive session ended.
#[derive(Debug)]
pub enum Outcome {
    Ended(RunState),
    /// Training goes on in a detached process.
    Detached {
        pid: u32,
        log: std::path::PathBuf,
    },
}

pub fn run(mut config: TrainConfig, theme: Option<String>) -> Result<Outcome> {
    let (log, user) = crate::cmd::logging::init_from_user_config();
    let theme = theme.or(user.theme);
    // Fix the run directory once, so the hand-over below resumes this run and no other.
    let run_dir = config.run_dir();
    config.run.output_dir = Some(run_dir.clone());
    let handle = serve::spawn(config, OnNonFinite::Pause)?;
    let (ui_events, ui_commands) = relay(&handle, &run_dir)?;
    let opts = TuiOptions { theme, run_dir: Some(run_dir.clone()), ..Default::default() };
    let exit = tui::run_tui(opts, ui_commands, ui_events);
    match exit {
        Ok(TuiExit::StopTraining) | Ok(TuiExit::TrainingOver) => Ok(Outcome::Ended(handle.join()?)),
        Ok(TuiExit::LeaveRunning) => hand_over(handle, &run_dir),
        Err(e) => {
            let _ = handle.commands.send(crate::protocol::Command::Stop { checkpoint: true });
            let _ = handle.join();
            let hint = log.map(|p| format!(" (log: {})", p.shown())).unwrap_or_default();
            Err(e.context(format!("terminal UI failed; training stopped after a checkpoint{hint}")))
        }
    }
}

/// "Leave training running": checkpoints and stops the trainer, then continues the run in a
/// detached `dino train --headless`. A stop a client asked for meanwhile wins: the server records
/// it before the trainer sees it, and it is looked for here, after this trainer is gone and before
/// the next starts (which looks again, holding the lock).
pub fn hand_over(handle: serve::ServedTrainer, run_dir: &std::path::Path) -> Result<Outcome> {
    let _ = handle.commands.send(Command::Stop { checkpoint: true });
    let state = handle.join()?;
    // Only a run our stop ended is handed over: one that finished or failed while the quit
    // dialog was open has nothing left to run in the background.
    if state != RunState::Stopped {
        return Ok(Outcome::Ended(state));
    }
    // Written before the new trainer exists: nobody else writes events.jsonl now.
    if crate::run::dir::take_stop_request(run_dir) {
        let reason = "a stop was asked (dino ctl, the socket) while the run was being handed over";
        if let Err(e) = crate::run::dir::append_event(run_dir, "handover_cancelled", &serde_json::json!({ "reason": reason })) {
            tracing::warn!("cannot record the cancelled hand-over: {e:#}");
        }
        return Ok(Outcome::Ended(state));
    }
    // Said in the run's own record, so a viewer (and `dino attach` later) reads the stop and
    // restart that follow as the hand-over they are.
    let iter = crate::run::runs::file_state(run_dir).iter.unwrap_or(0);
    if let Err(e) = crate::run::dir::append_event(run_dir, "handover", &serde_json::json!({ "iter": iter })) {
        tracing::warn!("cannot record the hand-over: {e:#}");
    }
    let (child, out) = crate::cmd::detach::spawn_detached(run_dir, true)?;
    Ok(Outcome::Detached { pid: child.id(), log: out })
}

/// The TUI's channels: events from the trainer (and, once it has ended, from evaluations run
/// here), and commands to the trainer while it runs; after it finished, stopped or failed,
/// evaluations of its checkpoints run in this process (`offline_eval`).
fn relay(handle: &serve::ServedTrainer, run_dir: &std::path::Path) -> Result<(Receiver<Event>, Sender<Command>)> {
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded::<Command>();
    let (from_trainer, tx) = (handle.events.clone(), ev_tx.clone());
    std::thread::Builder::new().name("tui-events".into()).spawn(move || {
        let (mut ended, mut next_iter) = (false, 0);
        for e in from_trainer.iter() {
            match &e {
                Event::State { state, .. } => ended = state.is_over(),
                Event::Metrics(m) => next_iter = m.iter + 1,
                _ => {}
            }
            if tx.send(e).is_err() {
                return;
            }
        }
        // A trainer that died without saying how (a panic) is reported as failed, as the closed
        // channel used to tell the TUI.
        if !ended {
            let _ = tx.send(Event::Error { message: "the trainer ended without a final state; see the log file".into() });
            let _ = tx.send(Event::State { state: RunState::Failed, iter: next_iter });
        }
    })?;
    let (to_trainer, dir) = (handle.commands.clone(), run_dir.to_path_buf());
    std::thread::Builder::new().name("tui-commands".into()).spawn(move || {
        let mut evals = OfflineEvals::new(&dir, ev_tx.clone(), true);
        serve_commands(
            &cmd_rx,
            &mut evals,
            |c| to_trainer.send(c.clone()).is_ok(),
            |c| {
                let message = format!("training is over: {} needs a trainer (q quits; run the same command to resume)", describe(&c));
                let _ = ev_tx.send(Event::Error { message });
            },
        );
    })?;
    Ok((ev_rx, cmd_tx))
}
