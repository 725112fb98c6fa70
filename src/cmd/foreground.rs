//! Training in the foreground, for `dino train`, `dino tui` and `dino demo`: the TUI on a
//! terminal, progress lines otherwise, and what became of the run.

use super::interactive::Outcome;
use crate::config::TrainConfig;
use crate::files::ShowPath;
use crate::protocol::RunState;
use anyhow::Result;
use std::io::IsTerminal;

/// Exit code of a finished training command: a failed run is an error for scripts.
fn exit_code(state: RunState) -> i32 {
    match state {
        RunState::Failed => 1,
        _ => 0,
    }
}

/// Trains `config` in this process, the TUI when stdout is a terminal (and `force_headless` is
/// off), progress lines otherwise; the run's final state (None when the person left it training
/// in the background) and the exit code for the process.
pub(super) fn train_to_end(config: TrainConfig, force_headless: bool, theme: Option<String>) -> Result<(Option<RunState>, i32)> {
    let headless = force_headless || config.run.headless || !std::io::stdout().is_terminal();
    if headless {
        let state = super::headless::run(config)?;
        return Ok((Some(state), exit_code(state)));
    }
    match super::interactive::run(config, theme)? {
        Outcome::Ended(state) => {
            match state {
                RunState::Finished => crate::say!("dino: training finished"),
                RunState::Stopped => crate::say!("dino: training stopped after a checkpoint; run the same command to resume"),
                _ => crate::say_err!("dino: training failed; see events.jsonl in the run directory"),
            }
            Ok((Some(state), exit_code(state)))
        }
        Outcome::Detached { pid, log } => {
            crate::say!("dino: training continues in the background (pid {pid}); output in {}", log.shown());
            Ok((None, 0))
        }
    }
}
