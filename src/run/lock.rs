//! One trainer per run directory. Two trainers on the same directory would interleave
//! `metrics.jsonl` and overwrite each other's checkpoints, so a trainer holds an exclusive `flock`
//! on `RUN_DIR/trainer.lock` for its whole life. The kernel drops the lock when the process dies,
//! however it dies, so a crashed run never leaves a stale lock behind (unlike a pid file).

use crate::files::ShowPath;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "trainer.lock";
/// Held by a viewer evaluating a run no trainer serves, so two viewers never write one result.
pub const EVALS_LOCK_FILE: &str = "evals.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{dir} is in use by another trainer{pid} (lock {lock}); watch it with `dino attach {dir}` or stop it with `dino ctl {dir} stop`"
    )]
    Busy { dir: String, lock: String, pid: String },
    #[error("another viewer{pid} is evaluating {dir} (lock {lock}); try again when its evaluation is done")]
    Evaluating { dir: String, lock: String, pid: String },
    #[error("cannot lock {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Held for as long as the trainer runs; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    // The lock lives as long as this descriptor is open.
    _file: File,
    pub path: PathBuf,
}

impl RunLock {
    /// Takes the lock without waiting; `Busy` names the holder's pid when it wrote one.
    pub fn acquire(run_dir: &Path) -> Result<Self, LockError> {
        Self::acquire_file(run_dir, LOCK_FILE)
    }

    /// The evaluations lock of a run that no trainer serves (`EVALS_LOCK_FILE`).
    pub fn acquire_evals(run_dir: &Path) -> Result<Self, LockError> {
        Self::acquire_file(run_dir, EVALS_LOCK_FILE).map_err(|e| match e {
            LockError::Busy { dir, lock, pid } => LockError::Evaluating { dir, lock, pid },
            other => other,
        })
    }

    fn acquire_file(run_dir: &Path, name: &str) -> Result<Self, LockError> {
        let path = run_dir.join(name);
        let io = |source| LockError::Io { path: path.shown().to_string(), source };
        std::fs::create_dir_all(run_dir).map_err(io)?;
        // Owner-only, as a private run's files are: it holds the trainer's pid, nothing others need.
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path).map_err(io)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Busy {
                    dir: run_dir.shown().to_string(),
                    lock: path.shown().to_string(),
                    pid: if holder.is_empty() { String::new() } else { format!(" (pid {holder})") },
                });
            }
            return Err(io(err));
        }
        // The pid is only informative (for the message above); the flock is what excludes.
        let _ = file.set_len(0).and_then(|_| file.seek(SeekFrom::Start(0))).and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(Self { _file: file, path })
    }
}

/// The process holding the run's lock, when one does: a live trainer, even when its socket does
/// not answer (every slot busy, or hung). Read from `/proc/locks` (the kernel's list of `flock`
/// holders, matched by the lock file's inode), without taking the lock: a probe that took it,
/// even shared, could make a trainer starting at that moment refuse the directory.
pub fn holder(run_dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(run_dir.join(LOCK_FILE)).ok()?;
    let (dev, ino) = (meta.dev(), meta.ino());
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let want = format!("{major:02x}:{minor:02x}:{ino}");
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 4424 fe:00:7315470 0 EOF"
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str())).then(|| f.get(4)?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let d = tempfile::tempdir().expect("tmp");
        let first = RunLock::acquire(d.path()).expect("first lock");
        // flock locks belong to the open file description, so a second open in the same process
        // conflicts just as another process would.
        let err = RunLock::acquire(d.path()).expect_err("second lock must fail");
        let msg = err.to_string();
        assert!(msg.contains("in use by another trainer") && msg.contains(&std::process::id().to_string()), "{msg}");
        assert_eq!(holder(d.path()), Some(std::process::id()), "the holder is found without taking the lock");
        drop(first);
        assert_eq!(holder(d.path()), None);
        assert!(RunLock::acquire(d.path()).is_ok());
    }
}
