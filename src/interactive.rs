//! Training with the terminal UI in this process. The trainer runs on its own thread; the TUI owns
//! the terminal. When the person quits with "leave training running", the run is checkpointed and
//! handed to a detached `dino train --headless` process (its own session, no terminal, SIGHUP
//! ignored) that resumes it at the exact iteration, so closing the terminal loses nothing.

use crate::config::TrainConfig;
use crate::run::protocol::RunState;
use crate::train::trainer::{self, OnNonFinite, TrainerHandle};
use crate::tui::{self, TuiExit, TuiOptions};
use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

/// How an interactive session ended.
#[derive(Debug)]
pub enum Outcome {
    Ended(RunState),
    /// Training goes on in a detached process.
    Detached { pid: u32, log: std::path::PathBuf },
}

fn wait(handle: TrainerHandle) -> Result<RunState> {
    // Events are no longer read: drop them so the trainer never blocks on a full queue.
    drop(handle.events);
    match handle.thread.join() {
        Ok(r) => r,
        Err(_) => anyhow::bail!("the training thread panicked; see the log file"),
    }
}

pub fn run(mut config: TrainConfig, theme: Option<String>) -> Result<Outcome> {
    let (log, user) = crate::logging::init_from_user_config();
    let theme = theme.or(user.theme);
    // Fix the run directory once, so the hand-over below resumes this run and no other.
    let run_dir = config.run_dir();
    config.output_dir = Some(run_dir.clone());
    let handle = trainer::spawn(config, OnNonFinite::Pause)?;
    let opts = TuiOptions { theme, run_dir: Some(run_dir.clone()), ..Default::default() };
    let exit = tui::run_tui(opts, handle.commands.clone(), handle.events.clone());
    match exit {
        Ok(TuiExit::StopTraining) | Ok(TuiExit::TrainingOver) => Ok(Outcome::Ended(wait(handle)?)),
        Ok(TuiExit::LeaveRunning) => {
            let _ = handle.commands.send(crate::run::protocol::Command::Stop { checkpoint: true });
            let state = wait(handle)?;
            if state == RunState::Failed {
                return Ok(Outcome::Ended(state));
            }
            let (pid, out) = detach(&run_dir)?;
            Ok(Outcome::Detached { pid, log: out })
        }
        Err(e) => {
            let _ = handle.commands.send(crate::run::protocol::Command::Stop { checkpoint: true });
            let _ = wait(handle);
            let hint = log.map(|p| format!(" (log: {})", p.display())).unwrap_or_default();
            Err(e.context(format!("terminal UI failed; training stopped after a checkpoint{hint}")))
        }
    }
}

/// Starts `dino train --headless` on the run directory in a new session, output to
/// `RUN_DIR/detached.log`.
fn detach(run_dir: &Path) -> Result<(u32, std::path::PathBuf)> {
    let exe = std::env::current_exe().context("cannot find the dino executable to continue training")?;
    let out_path = run_dir.join("detached.log");
    let out = std::fs::OpenOptions::new().create(true).append(true).open(&out_path)
        .with_context(|| format!("cannot open {}", out_path.display()))?;
    let err = out.try_clone()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("train")
        .arg("--config")
        .arg(run_dir.join(crate::run::dir::CONFIG_FILE))
        .arg("--output_dir")
        .arg(run_dir)
        .arg("--headless")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe and touches nothing of the parent's state.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().context("cannot start the detached trainer")?;
    Ok((child.id(), out_path))
}
