//! Training with the terminal UI in this process. The trainer runs on its own thread; the TUI owns
//! the terminal. When the person quits with "leave training running", the run is checkpointed and
//! handed to a detached `dino train --headless` process (its own session, no terminal, SIGHUP
//! ignored) that resumes it at the exact iteration, so closing the terminal loses nothing.

use crate::cmd::serve;
use crate::config::TrainConfig;
use crate::protocol::RunState;
use crate::train::trainer::OnNonFinite;
use crate::tui::{self, TuiExit, TuiOptions};
use anyhow::Result;

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
    let opts = TuiOptions { theme, run_dir: Some(run_dir.clone()), ..Default::default() };
    let exit = tui::run_tui(opts, handle.commands.clone(), handle.events.clone());
    match exit {
        Ok(TuiExit::StopTraining) | Ok(TuiExit::TrainingOver) => Ok(Outcome::Ended(handle.join()?)),
        Ok(TuiExit::LeaveRunning) => {
            let _ = handle.commands.send(crate::protocol::Command::Stop { checkpoint: true });
            let state = handle.join()?;
            if state == RunState::Failed {
                return Ok(Outcome::Ended(state));
            }
            let (child, out) = crate::cmd::detach::spawn_detached(&run_dir)?;
            Ok(Outcome::Detached { pid: child.id(), log: out })
        }
        Err(e) => {
            let _ = handle.commands.send(crate::protocol::Command::Stop { checkpoint: true });
            let _ = handle.join();
            let hint = log.map(|p| format!(" (log: {})", p.display())).unwrap_or_default();
            Err(e.context(format!("terminal UI failed; training stopped after a checkpoint{hint}")))
        }
    }
}
