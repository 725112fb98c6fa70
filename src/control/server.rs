//! The control socket: `RUN_DIR/control.sock`, a Unix socket only its owner may open (mode 0600;
//! no TCP, so nothing is reachable from the network). Each client gets the hub's snapshot, then
//! every event, as JSON lines; each line it sends is a `Command`. A client that sends garbage
//! gets an error line back (`{"event":"error","message":"bad request: ..."}`) and, after a few,
//! is dropped; a client that goes away is forgotten. Training never waits for any of them.

use super::hub::Hub;
use super::lines::{read_line, Line, MAX_LINE};
use crate::protocol::{Command, Event};
use crate::run::dir::SOCKET_FILE;
use crossbeam_channel::{Receiver, Sender};
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bad messages a client may send before it is dropped; one typo from a person at `socat` is
/// forgiven, a client speaking another protocol is not.
const MAX_BAD_MESSAGES: usize = 8;
/// Connections served at once; beyond this, new ones get an error line and are closed.
const MAX_CLIENTS: usize = 64;
/// A client that does not read for this long is considered stuck and dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Binds `RUN_DIR/control.sock` readable and writable by the owner only. The caller must hold the
/// run's lock: any socket file already there is then a leftover of a crashed run and is removed.
pub fn bind(run_dir: &Path) -> Result<(UnixListener, PathBuf), ServerError> {
    let path = run_dir.join(SOCKET_FILE);
    let shown = path.display().to_string();
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
        let thread = std::thread::Builder::new().name("control-socket".into()).spawn(move || accept_loop(listener, hub, commands, s))?;
        Ok(Self { path, stop, thread: Some(thread) })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept; it sees the flag and returns.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: UnixListener, hub: Hub, commands: Sender<Command>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
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
        if active.load(Ordering::SeqCst) >= MAX_CLIENTS {
            let _ = reply(&stream, &Event::Error { message: format!("too many clients (limit {MAX_CLIENTS})") });
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (id, queue) = hub.subscribe();
        tracing::info!("control client {id} connected");
        let (commands, active) = (commands.clone(), active.clone());
        let spawned = std::thread::Builder::new().name(format!("control-client-{id}")).spawn(move || {
            session(id, stream, queue, commands);
            active.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            tracing::warn!("control client {id}: cannot start its thread: {e}");
        }
    }
}

fn reply(stream: &UnixStream, e: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
    line.push(b'\n');
    (&*stream).write_all(&line)
}

/// One client: this thread reads its commands; a second writes its events. Either side ending
/// shuts the socket down, which ends the other.
fn session(id: u64, stream: UnixStream, queue: Receiver<Event>, commands: Sender<Command>) {
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
    read_commands(id, &stream, &out, &commands);
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

fn read_commands(id: u64, stream: &UnixStream, out: &Mutex<BufWriter<UnixStream>>, commands: &Sender<Command>) {
    let mut reader = BufReader::new(stream);
    let mut bad = 0usize;
    let error = |message: String| {
        let _ = write_event(out, &Event::Error { message }, true);
    };
    loop {
        let line = match read_line(&mut reader, MAX_LINE) {
            Ok(Line::Text(l)) => l,
            Ok(Line::Eof) => {
                tracing::info!("control client {id} disconnected");
                return;
            }
            Ok(Line::Truncated(rest)) => {
                tracing::info!("control client {id} disconnected in the middle of a message ({} bytes dropped)", rest.len());
                return;
            }
            Ok(Line::TooLong) => {
                tracing::warn!("control client {id} sent a line over {MAX_LINE} bytes; dropped");
                error(format!("bad request: message longer than {MAX_LINE} bytes; closing the connection"));
                return;
            }
            Err(e) => {
                tracing::info!("control client {id}: read failed ({e}); dropped");
                return;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_command(&line) {
            Ok(cmd) => {
                tracing::info!("control client {id}: {cmd:?}");
                if commands.send(cmd).is_err() {
                    error("the trainer has ended; the command was not carried out".into());
                }
            }
            Err(message) => {
                bad += 1;
                tracing::warn!("control client {id}: {message}");
                error(message);
                if bad >= MAX_BAD_MESSAGES {
                    tracing::warn!("control client {id} sent {bad} bad messages; dropped");
                    error(format!("{bad} bad messages; closing the connection"));
                    return;
                }
            }
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
}
