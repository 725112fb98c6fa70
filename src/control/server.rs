//! The control socket: `RUN_DIR/control.sock`, a Unix socket only its owner may open (mode 0600;
//! no TCP, so nothing is reachable from the network). Each client gets the hub's snapshot, then
//! every event, as JSON lines; each line it sends is a `Command`. A client that sends garbage
//! gets an error line back (`{"event":"error","message":"bad request: ..."}`) and, after a few,
//! is dropped; a client that goes away is forgotten. Training never waits for any of them.
//!
//! No client can lock the others out: a message begun must end within `READ_DEADLINE`, a client
//! that does not read its events is dropped after `WRITE_TIMEOUT`, and when all `MAX_CLIENTS`
//! slots are taken a newcomer (`dino ctl`, say) gets the slot of the client that has been silent
//! longest (watchers send an empty line now and then to show they are there), so 64 idle
//! connections cannot keep a person out. Only when every slot heard from its client within
//! `EVICT_AFTER` is a newcomer refused, with a message starting `BUSY`.

use super::hub::Hub;
use super::lines::{Line, LineBuffer, MAX_LINE};
use crate::files::ShowPath;
use crate::protocol::{Command, Event};
use crate::run::dir::SOCKET_FILE;
use crossbeam_channel::{Receiver, Sender};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bad messages a client may send before it is dropped; one typo from a person at `socat` is
/// forgiven, a client speaking another protocol is not.
const MAX_BAD_MESSAGES: usize = 8;
/// Connections served at once.
pub const MAX_CLIENTS: usize = 64;
/// A client that does not read for this long is considered stuck and dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A message begun must be finished within this (a client stalled mid-line holds nothing).
pub const READ_DEADLINE: Duration = Duration::from_secs(10);
/// With every slot taken, a client silent for this long gives its slot to a newcomer.
const EVICT_AFTER: Duration = Duration::from_secs(2);
/// How often a reader wakes to check its deadline.
const READ_TICK: Duration = Duration::from_millis(500);
/// How a refusal for want of slots begins, so clients can tell "busy" from "not live".
pub const BUSY: &str = "BUSY";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot remove the stale control socket {path}: {source}")]
    Stale { path: String, source: std::io::Error },
    #[error("{path} exists and is not a socket; move it away")]
    NotASocket { path: String },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: String, source: std::io::Error },
}

/// Serves while alive; dropping it stops accepting and removes the socket file, so a finished
/// run's directory shows no live socket.
pub struct ControlServer {
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    /// The listening socket itself (a second handle), to wake the blocking accept on drop
    /// without going through the socket file, which may be gone (run directory removed).
    wake: Option<UnixListener>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Binds `RUN_DIR/control.sock` readable and writable by the owner only. The caller must hold the
/// run's lock: any socket file already there is then a leftover of a crashed run and is removed.
pub fn bind(run_dir: &Path) -> Result<(UnixListener, PathBuf), ServerError> {
    let path = run_dir.join(SOCKET_FILE);
    let shown = path.shown().to_string();
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_socket() => {
            tracing::info!("removing stale control socket {shown} (its trainer is gone: we hold the run lock)");
            std::fs::remove_file(&path).map_err(|source| ServerError::Stale { path: shown.clone(), source })?;
        }
        Ok(_) => return Err(ServerError::NotASocket { path: shown }),
        Err(_) => {}
    }
    // The umask makes the socket 0600 from its first instant; the chmod after is for systems
    // whose bind ignores the umask. The umask is process-wide, so it is restored at once.
    // SAFETY: umask only swaps an integer in the process's state.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(&path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|source| ServerError::Bind { path: shown.clone(), source })?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|source| ServerError::Bind { path: shown, source })?;
    Ok((listener, path))
}

impl ControlServer {
    pub fn start(listener: UnixListener, path: PathBuf, hub: Hub, commands: Sender<Command>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let wake = listener.try_clone().ok();
        let run_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let forward = Forward { commands, run_dir };
        let thread = std::thread::Builder::new().name("control-socket".into()).spawn(move || accept_loop(listener, hub, forward, s))?;
        Ok(Self { path, stop, wake, thread: Some(thread) })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept; it sees the flag and returns. Shutting the listening socket
        // down makes Linux end the accept with an error, socket file or not; connecting is the
        // fallback where it does not. Without a wake the join below would wait forever.
        if let Some(l) = &self.wake {
            // SAFETY: shutdown on a file descriptor this struct owns (the listener's clone).
            unsafe {
                libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(l), libc::SHUT_RDWR);
            }
        }
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The connections being served, with when each last sent anything.
#[derive(Default)]
struct Slots {
    /// Every connection's clock starts here; `heard` holds milliseconds since.
    epoch: Option<Instant>,
    conns: Mutex<Vec<Slot>>,
}

struct Slot {
    id: u64,
    stream: UnixStream,
    heard: Arc<AtomicU64>,
}

impl Slots {
    fn now_ms(&self) -> u64 {
        self.epoch.map_or(0, |e| e.elapsed().as_millis() as u64)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for a new connection: a free one, else the one of the client silent longest
    /// (dropped with an explanation) if it has been silent for `EVICT_AFTER`. None: all busy.
    fn take(&self, id: u64, stream: &UnixStream) -> Option<Arc<AtomicU64>> {
        let now = self.now_ms();
        let mut conns = self.lock();
        if conns.len() >= MAX_CLIENTS {
            let (i, quiet) =
                conns.iter().enumerate().map(|(i, c)| (i, now.saturating_sub(c.heard.load(Ordering::SeqCst)))).max_by_key(|x| x.1)?;
            if quiet < EVICT_AFTER.as_millis() as u64 {
                return None;
            }
            let old = conns.swap_remove(i);
            tracing::info!("control client {}: silent for {} s with every slot taken; dropped for a newcomer", old.id, quiet / 1000);
            // No goodbye line: its writer may be mid-line, and a client that does not read would
            // block this thread. Shutting the socket down ends both of its threads.
            let _ = old.stream.shutdown(std::net::Shutdown::Both);
        }
        let heard = Arc::new(AtomicU64::new(now));
        let stream = stream.try_clone().ok()?;
        conns.push(Slot { id, stream, heard: heard.clone() });
        Some(heard)
    }

    fn release(&self, id: u64) {
        self.lock().retain(|c| c.id != id);
    }
}

fn accept_loop(listener: UnixListener, hub: Hub, commands: Forward, stop: Arc<AtomicBool>) {
    let slots = Arc::new(Slots { epoch: Some(Instant::now()), conns: Mutex::default() });
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                // EMFILE and the like: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        next_id += 1;
        let Some(heard) = slots.take(next_id, &stream) else {
            tracing::warn!("control socket: all {MAX_CLIENTS} connections active; refusing a newcomer");
            let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
            let message = format!("{BUSY}: all {MAX_CLIENTS} connections of this trainer are active; try again");
            let _ = reply(&stream, &Event::Error { message });
            continue;
        };
        let (id, queue) = hub.subscribe();
        tracing::info!("control client {id} connected");
        let (commands, slots, slot) = (commands.clone(), slots.clone(), next_id);
        let clock = Clock { slots: slots.clone(), heard };
        let spawned = std::thread::Builder::new().name(format!("control-client-{id}")).spawn(move || {
            session(id, stream, queue, commands, &clock);
            slots.release(slot);
        });
        if let Err(e) = spawned {
            tracing::warn!("control client {id}: cannot start its thread: {e}");
        }
    }
}

/// Where a session's commands go: the trainer's channel, and for a stop first the run's record
/// of it (`run::dir::record_stop_request`), so a stop that reaches a trainer handing the run over
/// is still honoured by the hand-over.
#[derive(Clone)]
struct Forward {
    commands: Sender<Command>,
    run_dir: PathBuf,
}

impl Forward {
    fn send(&self, cmd: Command) -> Result<(), crossbeam_channel::SendError<Command>> {
        if matches!(cmd, Command::Stop { .. }) {
            if let Err(e) = crate::run::dir::record_stop_request(&self.run_dir) {
                tracing::warn!("cannot record the stop request: {e:#}");
            }
        }
        self.commands.send(cmd)
    }
}

/// Where a session records that its client was heard from.
struct Clock {
    slots: Arc<Slots>,
    heard: Arc<AtomicU64>,
}

impl Clock {
    fn heard_now(&self) {
        self.heard.store(self.slots.now_ms(), Ordering::SeqCst);
    }
}

fn reply(stream: &UnixStream, e: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
    line.push(b'\n');
    (&*stream).write_all(&line)
}

/// One client: this thread reads its commands; a second writes its events. Either side ending
/// shuts the socket down, which ends the other.
fn session(id: u64, stream: UnixStream, queue: Receiver<Event>, commands: Forward, clock: &Clock) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let writer_stream = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("control client {id}: {e}; dropped");
            return;
        }
    };
    // Error replies come from the reader while the writer streams events: one lock orders lines.
    let out = Arc::new(Mutex::new(BufWriter::new(writer_stream)));
    let w_out = out.clone();
    let done = Arc::new(AtomicBool::new(false));
    let w_done = done.clone();
    let writer = std::thread::Builder::new().name(format!("control-writer-{id}")).spawn(move || {
        // Wakes now and then so a client that left while the run is quiet (paused) is noticed.
        while !w_done.load(Ordering::SeqCst) {
            let e = match queue.recv_timeout(Duration::from_millis(250)) {
                Ok(e) => e,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            };
            if let Err(err) = write_event(&w_out, &e, queue.is_empty()) {
                tracing::info!("control client {id}: write failed ({err}); dropped");
                break;
            }
        }
        // Queue closed (run over, or client dropped as stuck) or write failed: end the session.
        if let Ok(w) = w_out.lock() {
            let _ = w.get_ref().shutdown(std::net::Shutdown::Both);
        }
    });
    read_commands(id, &stream, &out, &commands, clock);
    done.store(true, Ordering::SeqCst);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    if let Ok(t) = writer {
        let _ = t.join();
    }
}

fn write_event(out: &Mutex<BufWriter<UnixStream>>, e: &Event, flush: bool) -> std::io::Result<()> {
    let mut w = out.lock().map_err(|_| std::io::Error::other("writer lock poisoned"))?;
    serde_json::to_writer(&mut *w, e).map_err(std::io::Error::other)?;
    w.write_all(b"\n")?;
    // Batches bursts (a fast run's metrics) into few writes; flushes when the queue is drained.
    if flush {
        w.flush()?;
    }
    Ok(())
}

/// Reads lines with a deadline: each read waits at most `READ_TICK`, so a message begun and not
/// finished within `READ_DEADLINE` ends the session.
fn read_commands(id: u64, stream: &UnixStream, out: &Mutex<BufWriter<UnixStream>>, commands: &Forward, clock: &Clock) {
    let error = |message: String| {
        let _ = write_event(out, &Event::Error { message }, true);
    };
    if let Err(e) = stream.set_read_timeout(Some(READ_TICK)) {
        tracing::warn!("control client {id}: {e}; dropped");
        return;
    }
    let mut buf = LineBuffer::default();
    let mut bad = 0usize;
    let mut line_since: Option<Instant> = None;
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(line) = buf.next_line(MAX_LINE) {
            line_since = None;
            let Line::Text(line) = line else {
                tracing::warn!("control client {id} sent a line over {MAX_LINE} bytes; dropped");
                error(format!("bad request: message longer than {MAX_LINE} bytes; closing the connection"));
                return;
            };
            if !handle_line(id, &line, commands, &error, &mut bad) {
                return;
            }
        }
        let started = *line_since.get_or_insert_with(Instant::now);
        if buf.has_partial() && started.elapsed() > READ_DEADLINE {
            tracing::info!("control client {id} left a message unfinished for {READ_DEADLINE:?}; dropped");
            error(format!("bad request: message unfinished after {} s; closing the connection", READ_DEADLINE.as_secs()));
            return;
        }
        if !buf.has_partial() {
            line_since = None;
        }
        match (&*stream).read(&mut chunk) {
            Ok(0) if buf.has_partial() => {
                tracing::info!("control client {id} disconnected in the middle of a message ({} bytes dropped)", buf.len());
                return;
            }
            Ok(0) => {
                tracing::info!("control client {id} disconnected");
                return;
            }
            Ok(n) => {
                clock.heard_now();
                buf.push(&chunk[..n]);
            }
            Err(e)
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
            Err(e) => {
                tracing::info!("control client {id}: read failed ({e}); dropped");
                return;
            }
        }
    }
}

/// One complete line: a command to pass on, a blank keep-alive, or garbage to answer. False when
/// the client has sent too much garbage and must go.
fn handle_line(id: u64, line: &[u8], commands: &Forward, error: &dyn Fn(String), bad: &mut usize) -> bool {
    if line.iter().all(u8::is_ascii_whitespace) {
        return true;
    }
    match parse_command(line) {
        Ok(cmd) => {
            tracing::info!("control client {id}: {cmd:?}");
            if commands.send(cmd).is_err() {
                error("the trainer has ended; the command was not carried out".into());
            }
            true
        }
        Err(message) => {
            *bad += 1;
            tracing::warn!("control client {id}: {message}");
            error(message);
            if *bad >= MAX_BAD_MESSAGES {
                tracing::warn!("control client {id} sent {bad} bad messages; dropped");
                error(format!("{bad} bad messages; closing the connection"));
                return false;
            }
            true
        }
    }
}

/// A command, or the error reply explaining why the line is not one.
pub fn parse_command(line: &[u8]) -> Result<Command, String> {
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| format!("bad request: not JSON ({e})"))?;
    let Some(name) = v.get("cmd").and_then(|c| c.as_str()) else {
        return Err("bad request: expected an object with a \"cmd\" field, e.g. {\"cmd\":\"status\"}".into());
    };
    let name = name.to_string();
    serde_json::from_value::<Command>(v).map_err(|e| {
        if e.to_string().contains("unknown variant") {
            format!("bad request: unknown command {name:?} ({e})")
        } else {
            format!("bad request: invalid {name:?} command ({e})")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_get_explanations() {
        assert_eq!(parse_command(br#"{"cmd":"pause"}"#), Ok(Command::Pause));
        assert!(parse_command(b"\xff\xfe").unwrap_err().contains("not JSON"));
        assert!(parse_command(b"[1,2]").unwrap_err().contains("\"cmd\""));
        assert!(parse_command(br#"{"cmd":"dance"}"#).unwrap_err().contains("unknown command \"dance\""));
        assert!(parse_command(br#"{"cmd":"stop"}"#).unwrap_err().contains("invalid \"stop\""));
    }

    /// The run directory removed under a live trainer (or its socket file deleted): stopping the
    /// server must not wait forever on an accept nobody can reach through the path any more.
    #[test]
    fn dropping_the_server_returns_when_the_socket_file_is_gone() {
        let d = tempfile::tempdir().unwrap();
        let (listener, path) = bind(d.path()).unwrap();
        let (_tx, trainer_events) = crossbeam_channel::unbounded();
        let (hub, _local, _hub_thread) = Hub::start(trainer_events).unwrap();
        let (commands, _rx) = crossbeam_channel::unbounded();
        let server = ControlServer::start(listener, path.clone(), hub, commands).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            drop(server);
            let _ = done_tx.send(());
        });
        assert!(done.recv_timeout(Duration::from_secs(10)).is_ok(), "the server's drop hung in accept");
    }
}
