//! The run directory, the single source of truth of a run: `config.toml`, `metrics.jsonl` (one
//! object per iteration), `log.txt` (one reference-style JSON line per epoch), `events.jsonl`
//! (start, pause, resume, checkpoints, skipped files, alarms, stop) and `checkpoints/`.
//! Everything a TUI shows can be rebuilt from these files. The same metrics and evaluation
//! results also go to `tb/` as TensorBoard scalars (`run::tensorboard`), for TensorBoard users.

use crate::config::TrainConfig;
use crate::protocol::{EpochSummary, IterMetrics};
use crate::run::tensorboard::{self, TbLog};
use anyhow::{Context, Result};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.toml";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const LOG_FILE: &str = "log.txt";
pub const EVENTS_FILE: &str = "events.jsonl";
pub const CHECKPOINT_DIR: &str = "checkpoints";
pub const SOCKET_FILE: &str = "control.sock";

/// Longest time a metrics line waits in the buffer: an attached TUI follows `metrics.jsonl`, so
/// this is how far behind it can be.
const METRICS_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub struct RunDir {
    pub path: PathBuf,
    metrics: BufWriter<File>,
    last_flush: std::time::Instant,
    events: File,
    log: File,
    tb: Tb,
}

/// The TensorBoard file, made on the first scalar (a run that never steps leaves none). A
/// secondary copy of `metrics.jsonl`: when it cannot be written, training goes on without it.
enum Tb {
    Pending,
    Open(TbLog),
    Off,
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("cannot open {}", path.display()))
}

/// The run's control socket (mode 0600; see `control::server`).
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SOCKET_FILE)
}

/// Whether a trainer answers on the run's socket: a connection is accepted.
pub fn socket_answers(run_dir: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket_path(run_dir)).is_ok()
}

pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl RunDir {
    /// Opens (creating when new) the run directory and writes the effective config.
    pub fn open(path: &Path, config: &TrainConfig) -> Result<Self> {
        std::fs::create_dir_all(path.join(CHECKPOINT_DIR)).with_context(|| format!("cannot create run directory {}", path.display()))?;
        let cfg = path.join(CONFIG_FILE);
        write_atomic(&cfg, config.to_toml().as_bytes())?;
        Ok(Self {
            path: path.to_path_buf(),
            metrics: BufWriter::new(append(&path.join(METRICS_FILE))?),
            last_flush: std::time::Instant::now(),
            events: append(&path.join(EVENTS_FILE))?,
            log: append(&path.join(LOG_FILE))?,
            tb: Tb::Pending,
        })
    }

    /// No TensorBoard file for this directory (the non-zero ranks of a data-parallel job, whose
    /// metrics are rank 0's).
    pub fn without_tensorboard(&mut self) {
        self.tb = Tb::Off;
    }

    /// Writes to the TensorBoard file, opening it first when needed; a failure is logged once and
    /// turns TensorBoard output off for the rest of the run.
    fn tensorboard(&mut self, write: impl FnOnce(&mut TbLog) -> Result<(), crate::interop::tensorboard::TbError>) {
        if matches!(self.tb, Tb::Pending) {
            self.tb = match TbLog::create(&self.path) {
                Ok(t) => Tb::Open(t),
                Err(e) => {
                    tracing::warn!("no TensorBoard scalars for this run: {e}");
                    Tb::Off
                }
            };
        }
        if let Tb::Open(t) = &mut self.tb {
            if let Err(e) = write(t) {
                tracing::warn!("TensorBoard scalars stop here: {e}");
                self.tb = Tb::Off;
            }
        }
    }

    /// The run goes back to iteration `iter` (a restored checkpoint): the TensorBoard files lose
    /// the steps from there on, and the next scalar opens a new file.
    pub fn tensorboard_from(&mut self, iter: usize) {
        if matches!(self.tb, Tb::Off) {
            return;
        }
        if let Tb::Open(t) = &mut self.tb {
            let _ = t.flush();
        }
        self.tb = Tb::Pending;
        if let Err(e) = tensorboard::truncate_from(&self.path, iter) {
            tracing::warn!("TensorBoard files keep steps from {iter} on, which the run writes again: {e}");
        }
    }

    /// An evaluation result's accuracies as TensorBoard scalars (the `eval` event is `event`'s).
    pub fn eval_scalars(&mut self, json: &serde_json::Value) {
        self.tensorboard(|t| t.eval(json));
    }

    pub fn checkpoint_dir(&self) -> PathBuf {
        self.path.join(CHECKPOINT_DIR)
    }

    /// Metrics are buffered and written out at least once a second (and with `flush`: each
    /// epoch, checkpoint, pause), so a fast run does not write per iteration while watchers of the
    /// file stay current. Nothing is fsynced: a crash loses at most the lines since the last
    /// checkpoint, which the resumed run rewrites anyway.
    pub fn metrics(&mut self, m: &IterMetrics) -> Result<()> {
        serde_json::to_writer(&mut self.metrics, m)?;
        self.metrics.write_all(b"\n").context("cannot write metrics.jsonl")?;
        self.tensorboard(|t| t.metrics(m));
        if self.last_flush.elapsed() >= METRICS_FLUSH_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.last_flush = std::time::Instant::now();
        if let Tb::Open(t) = &mut self.tb {
            if let Err(e) = t.flush() {
                tracing::warn!("TensorBoard scalars stop here: {e}");
                self.tb = Tb::Off;
            }
        }
        self.metrics.flush().context("cannot write metrics.jsonl")
    }

    /// The reference's `log.txt` line: `{"train_loss": .., "train_lr": .., "train_wd": .., "epoch": ..}`.
    pub fn epoch(&mut self, e: &EpochSummary) -> Result<()> {
        let line = serde_json::to_string(e)?;
        writeln!(self.log, "{line}").context("cannot write log.txt")
    }

    /// An event with a timestamp, written at once (events are rare and must survive a kill).
    pub fn event<T: Serialize>(&mut self, kind: &str, details: &T) -> Result<()> {
        let line = event_line(kind, details)?;
        self.events.write_all(line.as_bytes()).context("cannot write events.jsonl")
    }

    /// Drops metric lines for iterations at or past `iter` (written after the checkpoint a resumed
    /// run starts from), so `metrics.jsonl` continues without duplicates; the TensorBoard files
    /// lose the same steps (the resumed run writes them again into a new event file).
    pub fn truncate_metrics_from(path: &Path, iter: usize) -> Result<()> {
        if let Err(e) = tensorboard::truncate_from(path, iter) {
            tracing::warn!("TensorBoard files keep steps from {iter} on, which the resumed run writes again: {e}");
        }
        let file = path.join(METRICS_FILE);
        let Ok(text) = std::fs::read_to_string(&file) else { return Ok(()) };
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["iter"].as_u64()).is_some_and(|i| (i as usize) < iter)
            })
            .flat_map(|l| [l, "\n"])
            .collect();
        write_atomic(&file, kept.as_bytes())
    }
}

/// One `events.jsonl` line: the details' fields plus `type` and `time`, newline included.
pub fn event_line<T: Serialize>(kind: &str, details: &T) -> Result<String> {
    let mut v = serde_json::to_value(details)?;
    if !v.is_object() {
        v = serde_json::json!({ "value": v });
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), kind.into());
        o.insert("time".into(), now().into());
    }
    Ok(format!("{v}\n"))
}

/// Appends an event from outside the trainer (the schedule-edits file watcher). Each line goes
/// out in one `write` on an append-mode file, so lines from the trainer and from here never
/// interleave inside a line.
pub fn append_event<T: Serialize>(run_dir: &Path, kind: &str, details: &T) -> Result<()> {
    let line = event_line(kind, details)?;
    append(&run_dir.join(EVENTS_FILE))?.write_all(line.as_bytes()).context("cannot write events.jsonl")
}

/// Writes a file so that a crash at any moment leaves either the old or the new content:
/// temporary file, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    {
        let mut f = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("cannot write {} (disk full?)", tmp.display()))?;
        f.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    sync_parent(path);
    Ok(())
}

pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes a rename durable; best effort, as some filesystems refuse to open folders.
pub fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn tensorboard_follows_metrics_and_a_run_that_goes_back() {
        let d = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(d.path(), &TrainConfig::default()).unwrap();
        let m = |iter: usize, loss: f64| IterMetrics {
            iter,
            epoch: 0,
            loss,
            lr: 0.1,
            wd: 0.04,
            teacher_temp: 0.04,
            momentum: 0.996,
            iter_time: 0.5,
            data_time: 0.1,
            images_per_s: 16.0,
            teacher_entropy: 2.0,
            kl: 1.0,
            time: now(),
        };
        for i in 0..5 {
            run.metrics(&m(i, 1.0)).unwrap();
        }
        run.tensorboard_from(3);
        for i in 3..6 {
            run.metrics(&m(i, 2.0)).unwrap();
        }
        run.eval_scalars(&serde_json::json!({"iter": 6, "test_acc1": 50.0}));
        run.flush().unwrap();
        let files = tensorboard::event_files(d.path());
        assert_eq!(files.len(), 2);
        let mut losses: Vec<(i64, f32)> = files
            .iter()
            .flat_map(|f| crate::interop::tensorboard::read_scalars(f).unwrap())
            .filter(|(t, _, _)| t == "train/loss")
            .map(|(_, s, v)| (s, v))
            .collect();
        losses.sort_by_key(|p| p.0);
        assert_eq!(losses, [(0, 1.0), (1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0), (5, 2.0)]);
        let evals: Vec<_> = files
            .iter()
            .flat_map(|f| crate::interop::tensorboard::read_scalars(f).unwrap())
            .filter(|(t, _, _)| t.starts_with("eval/"))
            .collect();
        assert_eq!(evals, [("eval/linear_top1".to_string(), 6, 50.0)]);
    }

    #[test]
    fn metrics_truncate_keeps_earlier_iterations() {
        let d = tempfile::tempdir().unwrap();
        let lines: String = (0..5).map(|i| format!("{{\"iter\":{i}}}\n")).collect();
        std::fs::write(d.path().join(METRICS_FILE), lines).unwrap();
        RunDir::truncate_metrics_from(d.path(), 3).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join(METRICS_FILE)).unwrap(), "{\"iter\":0}\n{\"iter\":1}\n{\"iter\":2}\n");
    }
}
