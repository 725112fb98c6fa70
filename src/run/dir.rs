//! The run directory, the single source of truth of a run: `config.toml`, `metrics.jsonl` (one
//! object per iteration), `log.txt` (one reference-style JSON line per epoch), `events.jsonl`
//! (start, pause, resume, checkpoints, skipped files, alarms, stop) and `checkpoints/`.
//! Everything a TUI shows can be rebuilt from these files. The same metrics and evaluation
//! results also go to `tb/` as TensorBoard scalars (`run::tensorboard`), for TensorBoard users.

use crate::config::TrainConfig;
use crate::files::ShowPath;
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
/// Written when a client asks the trainer to stop, before the trainer sees the command: a stop
/// that reaches a trainer as it hands the run over (`dino tui`'s "leave running") must still win,
/// and the hand-over and the trainer it starts look for this (`take_stop_request`).
pub const STOP_REQUEST_FILE: &str = "stop-requested";

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
    append_with_mode(path, 0o666)
}

/// Opens for appending, creating with `mode` (less the umask) when new.
fn append_with_mode(path: &Path, mode: u32) -> Result<File> {
    crate::files::open_append(path, mode).with_context(|| format!("cannot open {}", path.shown()))
}

/// Modes of a private run: only its owner reads checkpoints, metrics and events.
const PRIVATE_DIR: u32 = 0o700;
const PRIVATE_FILE: u32 = 0o600;

/// Makes everything this process creates from now on (checkpoints, evals/ and its cache, tb/,
/// export/, their folders) the owner's alone, whichever module writes it: the trainer of a
/// private run, and `dino eval` and `dino export` writing into one (issue 37 found their
/// evals/ and export/ files 0644).
pub fn private_umask() {
    // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
}

/// The run's control socket (mode 0600; see `control::server`).
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(SOCKET_FILE)
}

/// Whether a trainer listens on the run's socket: a connection is accepted, or refused only for a
/// full backlog. The connect does not wait: a blocking one waits for good on a trainer that
/// stopped accepting (SIGSTOP) once its backlog is full, and `dino runs` with it.
pub fn socket_answers(run_dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let path = socket_path(run_dir);
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: a zeroed sockaddr_un is a valid (empty) address; the path is copied in below.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return false;
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, b) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *b as libc::c_char;
    }
    // SAFETY: a new socket owned here and closed below; connect reads `addr`, which outlives it.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let connected = libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) == 0;
        let full = !connected && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN);
        libc::close(fd);
        connected || full
    }
}

pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl RunDir {
    /// Opens (creating when new) the run directory and writes the effective config. Leftover
    /// temporary files of an interrupted write are removed (the caller holds the run's lock, so
    /// no one else is writing them), a torn last line of `events.jsonl` is cut, and with
    /// `private_files` the folders become 0700 and the files written here 0600.
    pub fn open(path: &Path, config: &TrainConfig) -> Result<Self> {
        let private = config.run.private_files;
        if private {
            private_umask();
        }
        // `--output_dir /tmp` must not make /tmp private: the folder's own mode is changed only
        // when it is a run directory (or nothing but this run's start in it).
        let own_folder = is_run_folder(path);
        let checkpoints = path.join(CHECKPOINT_DIR);
        std::fs::create_dir_all(&checkpoints).with_context(|| format!("cannot create run directory {}", path.shown()))?;
        if private {
            if own_folder {
                set_mode(path, PRIVATE_DIR)?;
            }
            set_mode(&checkpoints, PRIVATE_DIR)?;
        }
        remove_tmp_files(path);
        remove_tmp_files(&checkpoints);
        let file_mode = if private { PRIVATE_FILE } else { 0o666 };
        let cfg = path.join(CONFIG_FILE);
        write_atomic(&cfg, config.to_toml().as_bytes())?;
        let events = path.join(EVENTS_FILE);
        cut_torn_tail(&events)?;
        let files = [cfg.clone(), path.join(METRICS_FILE), events.clone(), path.join(LOG_FILE)];
        let run = Self {
            path: path.to_path_buf(),
            metrics: BufWriter::new(append_with_mode(&path.join(METRICS_FILE), file_mode)?),
            last_flush: std::time::Instant::now(),
            events: append_with_mode(&events, file_mode)?,
            log: append_with_mode(&path.join(LOG_FILE), file_mode)?,
            tb: Tb::Pending,
        };
        if private {
            // Files of older runs (or made before this run's first open) become private too.
            for f in files {
                set_mode(&f, PRIVATE_FILE)?;
            }
            if own_folder {
                for sub in [CHECKPOINT_DIR, "tb", "evals", "export"] {
                    make_private_below(&path.join(sub))?;
                }
            }
        }
        Ok(run)
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

    /// The reference's `log.txt` line: `{"train_loss": .., "train_lr": .., "train_wd": .., "epoch": ..}`,
    /// in one write so a kill never leaves half a line.
    pub fn epoch(&mut self, e: &EpochSummary) -> Result<()> {
        let line = format!("{}\n", serde_json::to_string(e)?);
        self.log.write_all(line.as_bytes()).context("cannot write log.txt")
    }

    /// An event with a timestamp, written at once (events are rare and must survive a kill).
    pub fn event<T: Serialize>(&mut self, kind: &str, details: &T) -> Result<()> {
        let line = event_line(kind, details)?;
        self.events.write_all(line.as_bytes()).context("cannot write events.jsonl")
    }

    /// Makes `metrics.jsonl` and `log.txt` end where a run resuming at iteration `iter` (0: from
    /// scratch) continues: records of iterations (epochs) at or past it go, torn lines (a kill or a
    /// full disk in the middle of a write) go, and of records repeated by an older trainer the
    /// last run of them stays. Called before the run directory opens the files for appending.
    /// The TensorBoard files lose the same steps (the resumed run writes them again into a new
    /// event file).
    pub fn truncate_to(path: &Path, iter: usize, niter_per_ep: usize) -> Result<()> {
        if let Err(e) = tensorboard::truncate_from(path, iter) {
            tracing::warn!("TensorBoard files keep steps from {iter} on, which the resumed run writes again: {e}");
        }
        keep_records_before(&path.join(METRICS_FILE), "iter", iter)?;
        keep_records_before(&path.join(LOG_FILE), "epoch", iter / niter_per_ep.max(1))
    }

    /// `truncate_to` for `metrics.jsonl` alone (what older callers did).
    pub fn truncate_metrics_from(path: &Path, iter: usize) -> Result<()> {
        keep_records_before(&path.join(METRICS_FILE), "iter", iter)
    }
}

/// Whether `path` is (or is about to be) a run directory: absent, holding a run's config or
/// events, or holding only what starting a trainer puts there first.
fn is_run_folder(path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(path) else { return true };
    let names: Vec<std::ffi::OsString> = entries.flatten().map(|e| e.file_name()).collect();
    let run_file = |n: &std::ffi::OsString| n == CONFIG_FILE || n == EVENTS_FILE;
    let start_litter = |n: &std::ffi::OsString| n == crate::run::lock::LOCK_FILE || n == SOCKET_FILE || n == "detached.log";
    names.iter().any(run_file) || names.iter().all(start_litter)
}

/// Rewrites a JSON-lines file keeping the records whose `key` is below `end`: read from the end,
/// a record stays when its key is below every key kept after it, so the file ends strictly
/// increasing, with the most recent writing of each record. Unparseable lines go. An unchanged
/// file is not rewritten.
fn keep_records_before(file: &Path, key: &str, end: usize) -> Result<()> {
    let text = match crate::files::read(file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.shown())),
    };
    let mut bound = end;
    let mut kept: Vec<&str> = Vec::new();
    for line in text.split_inclusive('\n').rev() {
        let Some(body) = line.strip_suffix('\n') else { continue };
        let k = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v[key].as_u64()).map(|k| k as usize);
        if let Some(k) = k.filter(|k| *k < bound) {
            bound = k;
            kept.push(line);
        }
    }
    kept.reverse();
    let out: String = kept.concat();
    if out != text {
        write_atomic_like(file, out.as_bytes())?;
    }
    Ok(())
}

/// `write_atomic`, keeping the mode of the file it replaces.
fn write_atomic_like(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o777);
    write_atomic(path, bytes)?;
    if let Some(mode) = mode {
        set_mode(path, mode)?;
    }
    Ok(())
}

/// Cuts a last line that has no newline: half of a record whose write was interrupted, which the
/// next record would otherwise fuse with.
fn cut_torn_tail(file: &Path) -> Result<()> {
    let Ok(bytes) = crate::files::read(file) else { return Ok(()) };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let f = OpenOptions::new().write(true).open(file).with_context(|| format!("cannot repair {}", file.shown()))?;
    f.set_len(keep as u64).with_context(|| format!("cannot repair {}", file.shown()))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r.with_context(|| format!("cannot make {} private (mode {mode:o})", path.shown())),
    }
}

/// Folders 0700 and regular files 0600 below `dir` (symbolic links are left alone: their
/// targets need not be the run's).
fn make_private_below(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    set_mode(dir, PRIVATE_DIR)?;
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => make_private_below(&e.path())?,
            Ok(t) if t.is_file() => set_mode(&e.path(), PRIVATE_FILE)?,
            _ => {}
        }
    }
    Ok(())
}

/// Removes the `*.tmp` files of a folder: what a write interrupted by a kill left behind.
fn remove_tmp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let is_tmp = p.extension().is_some_and(|x| x == "tmp");
        if is_tmp && e.file_type().is_ok_and(|t| t.is_file()) {
            match std::fs::remove_file(&p) {
                Ok(()) => tracing::info!("removed {} (left by an interrupted write)", p.shown()),
                Err(e) => tracing::warn!("cannot remove {}: {e}", p.shown()),
            }
        }
    }
}

/// After a trainer failed before writing anything: removes `run_dir` when it holds nothing but
/// what starting it made (the lock, temporary files, empty folders), so a typo in a data path
/// leaves no empty run behind. Anything else in it (a config, metrics, events) keeps it.
pub fn remove_if_abandoned(run_dir: &Path) {
    fn only_litter(dir: &Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else { return false };
        entries.flatten().all(|e| {
            let name = e.file_name();
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => only_litter(&p),
                Ok(_) => name == crate::run::lock::LOCK_FILE || name == SOCKET_FILE || p.extension().is_some_and(|x| x == "tmp"),
                Err(_) => false,
            }
        })
    }
    if only_litter(run_dir) {
        if let Err(e) = std::fs::remove_dir_all(run_dir) {
            tracing::warn!("cannot remove the empty run directory {}: {e}", run_dir.shown());
        }
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
    append_event_lines(run_dir, &event_line(kind, details)?)
}

/// Appends lines made by `event_line` in one write: thousands of them (a big schedule-edits
/// file) cost one open, not thousands.
pub fn append_event_lines(run_dir: &Path, lines: &str) -> Result<()> {
    append(&run_dir.join(EVENTS_FILE))?.write_all(lines.as_bytes()).context("cannot write events.jsonl")
}

/// Records that a client asked for a stop (`STOP_REQUEST_FILE`, with the time).
pub fn record_stop_request(run_dir: &Path) -> Result<()> {
    let line = event_line("stop_requested", &serde_json::json!({}))?;
    write_atomic(&run_dir.join(STOP_REQUEST_FILE), line.as_bytes())
}

/// Whether a stop was recorded, forgetting it: each is honoured once, and a trainer starting on
/// the run later (a resume after that stop) is not held to it.
pub fn take_stop_request(run_dir: &Path) -> bool {
    std::fs::remove_file(run_dir.join(STOP_REQUEST_FILE)).is_ok()
}

/// Writes a file so that a crash at any moment leaves either the old or the new content:
/// temporary file, fsync, rename, fsync of the folder.
/// A device or a link in its place is written through, never replaced (`files::Output`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::files::write_output(path, bytes).with_context(|| format!("cannot write {}", path.shown()))
}

pub use crate::files::{sync_parent, tmp_path};

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that accepts nobody (a stopped trainer) with its backlog full still counts as
    /// live, and asking returns at once instead of waiting for a slot.
    #[test]
    fn a_socket_answers_even_with_its_backlog_full_and_without_waiting() {
        let d = tempfile::tempdir().unwrap();
        assert!(!socket_answers(d.path()));
        let _listener = std::os::unix::net::UnixListener::bind(socket_path(d.path())).unwrap();
        assert!(socket_answers(d.path()));
        // Each look leaves a connection queued (nobody accepts it): more looks than the largest
        // backlog (the system's somaxconn, 4096 by default) fill it. A blocking connect would
        // wait for good from there on.
        let t0 = std::time::Instant::now();
        assert!((0..5000).all(|_| socket_answers(d.path())));
        assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{:?}", t0.elapsed());
    }

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
        let m = |iter: usize, loss: f64| IterMetrics::sample(iter, loss, now());
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
    fn a_folder_that_is_not_a_run_directory_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let shared = d.path().join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join("someone-elses.txt"), b"x").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = TrainConfig::default();
        c.run.output_dir = Some(shared.clone());
        drop(RunDir::open(&shared, &c).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&shared), 0o755, "--output_dir pointing at a shared folder");
        assert_eq!(mode(&shared.join(CHECKPOINT_DIR)), 0o700);
        assert_eq!(mode(&shared.join(METRICS_FILE)), 0o600);
        let fresh = d.path().join("fresh");
        drop(RunDir::open(&fresh, &c).unwrap());
        assert_eq!(mode(&fresh), 0o700);
    }

    #[test]
    fn records_past_the_resume_point_repeated_or_torn_go() {
        let d = tempfile::tempdir().unwrap();
        let m = |i: usize| format!("{{\"iter\":{i}}}\n");
        // An older trainer restarted from 0 without truncating (0..3 then 0..6), then a torn line.
        let text: String = (0..3).map(m).chain((0..6).map(m)).collect::<String>() + "{\"iter\":6,\"lo";
        std::fs::write(d.path().join(METRICS_FILE), text).unwrap();
        std::fs::write(d.path().join(LOG_FILE), "{\"epoch\":0}\n{\"epoch\":1}\n{\"epoch\":1}\n").unwrap();
        RunDir::truncate_to(d.path(), 4, 2).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join(METRICS_FILE)).unwrap(), (0..4).map(m).collect::<String>());
        assert_eq!(std::fs::read_to_string(d.path().join(LOG_FILE)).unwrap(), "{\"epoch\":0}\n{\"epoch\":1}\n");
        RunDir::truncate_to(d.path(), 0, 2).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join(METRICS_FILE)).unwrap(), "", "from scratch: nothing kept");
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
