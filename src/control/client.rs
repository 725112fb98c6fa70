//! The client side of the control socket, for `dino ctl`, `dino attach` and `dino runs`.

use super::lines::MAX_LINE;
use crate::files::ShowPath;
use crate::protocol::{Command, Event};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket, or nobody listening on it (a crashed run leaves the file behind).
    #[error("no trainer is serving {}", path.shown())]
    NotLive { path: PathBuf },
    #[error("{}: {source}", path.shown())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: the trainer closed the connection", path.shown())]
    Closed { path: PathBuf },
    #[error("{}: unreadable message from the trainer: {message}", path.shown())]
    Protocol { path: PathBuf, message: String },
}

pub struct Client {
    pub path: PathBuf,
    reader: UnixStream,
    writer: UnixStream,
    /// Bytes read but not yet a whole line: a read timeout must not lose half a message.
    pending: Vec<u8>,
}

pub use crate::run::dir::socket_path;

impl Client {
    pub fn connect(run_dir: &Path) -> Result<Self, ClientError> {
        let path = socket_path(run_dir);
        let stream = UnixStream::connect(&path).map_err(|source| match source.kind() {
            // InvalidInput: a path over the socket limit (108 bytes), which no trainer can bind
            // either, so no trainer serves it.
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::InvalidInput => {
                ClientError::NotLive { path: path.clone() }
            }
            _ => ClientError::Io { path: path.clone(), source },
        })?;
        let writer = stream.try_clone().map_err(|source| ClientError::Io { path: path.clone(), source })?;
        Ok(Self { path, reader: stream, writer, pending: Vec::new() })
    }

    pub fn send(&mut self, cmd: &Command) -> Result<(), ClientError> {
        let mut line = serde_json::to_vec(cmd).map_err(|e| ClientError::Protocol { path: self.path.clone(), message: e.to_string() })?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|source| ClientError::Io { path: self.path.clone(), source })
    }

    /// An empty line: the server ignores it but counts the client as present, so a watcher that
    /// sends one now and then keeps its slot when the socket runs out of them.
    pub fn keepalive(&mut self) -> Result<(), ClientError> {
        self.writer.write_all(b"\n").map_err(|source| ClientError::Io { path: self.path.clone(), source })
    }

    /// The next event, or None when `timeout` passes first.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                return serde_json::from_slice(&line[..pos])
                    .map(Some)
                    .map_err(|e| ClientError::Protocol { path: self.path.clone(), message: e.to_string() });
            }
            if self.pending.len() > MAX_LINE {
                return Err(ClientError::Protocol { path: self.path.clone(), message: format!("line over {MAX_LINE} bytes") });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let io = |source| ClientError::Io { path: self.path.clone(), source };
            self.reader.set_read_timeout(Some(left)).map_err(io)?;
            let mut chunk = [0u8; 16 * 1024];
            match self.reader.read(&mut chunk) {
                Ok(0) => return Err(ClientError::Closed { path: self.path.clone() }),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ClientError::Io { path: self.path.clone(), source: e }),
            }
        }
    }

    /// Reads events until `done` accepts one (returned) or `timeout` passes (None).
    pub fn wait_for(&mut self, timeout: Duration, mut done: impl FnMut(&Event) -> bool) -> Result<Option<Event>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            if let Some(e) = self.recv(left)? {
                if done(&e) {
                    return Ok(Some(e));
                }
            }
        }
    }

    /// The raw stream, for tests that misbehave on purpose.
    pub fn stream(&self) -> &UnixStream {
        &self.writer
    }
}
