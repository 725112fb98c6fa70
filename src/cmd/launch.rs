//! `dino train --nproc_per_node N`: starts N copies of the same command on this machine with
//! torchrun's environment (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`,
//! `MASTER_PORT`; `OMP_NUM_THREADS` = cores / N unless set), waits for them, and stops them all as
//! soon as one fails.
//!
//! The store's port is bound here and the bound socket handed to rank 0 (`DINO_MASTER_LISTEN_FD`),
//! so no other job can take the port between choosing and serving it (two jobs on one store
//! would mix their ranks). Each rank gets SIGTERM when the launcher dies, however it dies, so a
//! killed launcher leaves no ranks training on.

use crate::files::ShowPath;
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::process::{Child, Command};
use std::time::Duration;

/// The command line without `--nproc_per_node N` (or `--nproc_per_node=N`).
pub fn strip_nproc(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        let s = a.to_string_lossy();
        if s == "--nproc_per_node" {
            skip = true;
        } else if !s.starts_with("--nproc_per_node=") {
            out.push(a.clone());
        }
    }
    out
}

/// Where rank `rank` > 0 of this launch writes its output.
fn rank_log(rank: usize) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("dino-{}-rank{rank}.log", std::process::id()))
}

/// A listening socket on a free loopback port, for rank 0's store.
fn store_listener() -> Result<std::net::TcpListener> {
    std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port for the rendezvous")
}

/// In the child between fork and exec: SIGTERM when the launcher dies, and `keep_fd` (rank 0's
/// listening socket) left open across the exec.
fn prepare_rank(cmd: &mut Command, keep_fd: Option<i32>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl and fcntl are async-signal-safe and touch only this child's own state.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if let Some(fd) = keep_fd {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Runs `n` ranks of this program with `args` (the program name first); returns the exit code.
pub fn run_local(n: usize, args: &[OsString]) -> Result<i32> {
    let exe = std::env::current_exe().context("cannot find this program to start its ranks")?;
    let listener = store_listener()?;
    let port = listener.local_addr()?.port();
    let mut listener = Some(listener);
    let rest = strip_nproc(&args[1..]);
    // As torchrun: without a setting, each rank's libtorch would start a thread per core.
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
    let threads = std::env::var("OMP_NUM_THREADS").unwrap_or_else(|_| (cores / n).max(1).to_string());
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(n);
    for rank in 0..n {
        let mut cmd = Command::new(&exe);
        cmd.args(&rest)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("OMP_NUM_THREADS", &threads)
            .env_remove("TORCHELASTIC_USE_AGENT_STORE");
        if rank > 0 {
            // Only rank 0 talks to the person (its TUI owns the terminal): the others train
            // headless, their output in a file named when they fail.
            if !rest.iter().any(|a| a == "--headless") {
                cmd.arg("--headless");
            }
            let log = rank_log(rank);
            let file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.shown()))?;
            cmd.stdout(file.try_clone()?).stderr(file);
        }
        let fd = listener.as_ref().filter(|_| rank == 0).map(std::os::fd::AsRawFd::as_raw_fd);
        if let Some(fd) = fd {
            cmd.env(crate::dist::LISTEN_FD_VAR, fd.to_string());
        }
        prepare_rank(&mut cmd, fd);
        let child = cmd.spawn().with_context(|| format!("cannot start rank {rank}"))?;
        if rank == 0 {
            // Rank 0 holds the socket now; ours would only keep the port open if it died.
            listener = None;
        }
        children.push((rank, child));
    }
    loop {
        let mut running = 0;
        for (rank, child) in children.iter_mut() {
            match child.try_wait()? {
                None => running += 1,
                Some(status) if status.success() => {}
                Some(status) => {
                    let output = if *rank > 0 { format!(" (its output: {})", rank_log(*rank).shown()) } else { String::new() };
                    crate::say_err!("dino: rank {rank} exited with {status}{output}; stopping the other ranks");
                    for (_, other) in children.iter_mut() {
                        let _ = other.kill();
                        let _ = other.wait();
                    }
                    return Ok(status.code().unwrap_or(1));
                }
            }
        }
        if running == 0 {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_flag_is_removed_in_both_spellings() {
        let a: Vec<OsString> =
            ["train", "--nproc_per_node", "2", "--epochs", "1", "--nproc_per_node=3"].iter().map(OsString::from).collect();
        assert_eq!(strip_nproc(&a), ["train", "--epochs", "1"].iter().map(OsString::from).collect::<Vec<_>>());
    }
}
