//! Training with no terminal: `dino train --headless` on a run directory, in its own session
//! (setsid: no controlling terminal, so closing the terminal sends it nothing; the headless runner
//! also ignores SIGHUP), output appended to `RUN_DIR/detached.log`.

use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub const DETACHED_LOG: &str = "detached.log";

/// Starts the detached trainer on `run_dir` with `run_dir/config.toml`; returns its pid and log.
pub fn spawn_detached(run_dir: &Path) -> Result<(std::process::Child, PathBuf)> {
    let exe = std::env::current_exe().context("cannot find the dino executable to continue training")?;
    let out_path = run_dir.join(DETACHED_LOG);
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .with_context(|| format!("cannot open {}", out_path.display()))?;
    let err = out.try_clone()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("train")
        .arg("--config")
        .arg(run_dir.join(super::dir::CONFIG_FILE))
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
    Ok((child, out_path))
}
