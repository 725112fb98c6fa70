//! Training with no terminal: `dino train --headless` on a run directory, in its own session
//! (setsid: no controlling terminal, so closing the terminal sends it nothing; the headless runner
//! also ignores SIGHUP), output appended to `RUN_DIR/detached.log`.

use crate::files::ShowPath;
use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub const DETACHED_LOG: &str = "detached.log";

/// Set in the environment of the trainer a hand-over starts: it honours a stop asked during the
/// hand-over (`serve::spawn`) instead of training on.
pub const HANDOVER_ENV: &str = "DINO_HANDOVER";

/// Starts the detached trainer on `run_dir` with `run_dir/config.toml`; returns its pid and log.
/// `handover`: it continues a run this process was training (see `HANDOVER_ENV`).
pub fn spawn_detached(run_dir: &Path, handover: bool) -> Result<(std::process::Child, PathBuf)> {
    let exe = std::env::current_exe().context("cannot find the dino executable to continue training")?;
    let out_path = run_dir.join(DETACHED_LOG);
    let out = crate::files::open_append(&out_path, 0o666).with_context(|| format!("cannot open {}", out_path.shown()))?;
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
    if handover {
        cmd.env(HANDOVER_ENV, "1");
    } else {
        cmd.env_remove(HANDOVER_ENV);
    }
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

/// A detached trainer, started and answering on its socket (or still starting when it is slow).
pub struct Detached {
    pub run_dir: PathBuf,
    pub pid: u32,
    pub log: PathBuf,
    /// Whether it answered on the control socket before we stopped waiting.
    pub serving: bool,
}

/// `dino train --detach`: writes the effective config into the run directory, starts the
/// trainer detached on it, and waits until it serves its socket, so a bad data path is reported
/// here and not only in `detached.log`.
pub fn start(mut config: crate::config::TrainConfig, wait: std::time::Duration) -> Result<Detached> {
    let run_dir = config.run_dir();
    config.run.output_dir = Some(run_dir.clone());
    // Refuse now, with the lock's message, rather than from inside the detached process.
    drop(crate::run::lock::RunLock::acquire(&run_dir)?);
    crate::run::dir::write_atomic(&run_dir.join(crate::run::dir::CONFIG_FILE), config.to_toml().as_bytes())?;
    let (mut child, log) = spawn_detached(&run_dir, false)?;
    let pid = child.id();
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            let text = crate::files::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            anyhow::bail!("the detached trainer exited at once ({status}); {}:\n{}", log.shown(), tail.join("\n"));
        }
        if let Ok(mut c) = crate::control::client::Client::connect(&run_dir) {
            // Serving means the trainer thread has started: its first State is in the snapshot.
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if let Ok(Some(_)) = c.wait_for(left, |e| matches!(e, crate::protocol::Event::State { .. })) {
                return Ok(Detached { run_dir, pid, log, serving: true });
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(Detached { run_dir, pid, log, serving: false })
}
