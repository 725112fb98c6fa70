//! `dino attach RUN_DIR`: the TUI on a run started elsewhere. The run directory is the source of
//! truth: the charts are rebuilt from `metrics.jsonl` and `events.jsonl` and follow their new
//! lines (`notify`, plus polling each second for filesystems that send no notifications). The
//! control socket carries the person's commands to the trainer and the few events no file
//! records (errors, warnings, evaluation progress, current schedules).
//!
//! When no trainer serves the run, it is shown read-only with how it ended; `p` on a stopped or
//! crashed run starts `dino train --headless` on it, detached, and the view goes live again.

use super::offline_eval::{describe, serve_commands, OfflineEvals};
use crate::control::client::{Client, ClientError};
use crate::files::ShowPath;
use crate::protocol::{Command, Event, RunState};
use crate::run::dir;
use crate::run::follow::Tail;
use crate::run::history;
use crate::run::runs::{self, Status};
use crate::tui::{self, TuiExit, TuiOptions};
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use notify::Watcher;
use std::io::{IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Polling period for the files (the fallback when notifications do not come) and for trying
/// the socket again while the run is not live.
const POLL: Duration = Duration::from_secs(1);

/// The connection to the trainer, shared by the thread reading its events and the one sending
/// the person's commands.
#[derive(Default)]
struct Link {
    writer: Mutex<Option<UnixStream>>,
    live: AtomicBool,
    stop: AtomicBool,
}

impl Link {
    fn set(&self, w: Option<UnixStream>) {
        self.live.store(w.is_some(), Ordering::SeqCst);
        if let Ok(mut g) = self.writer.lock() {
            *g = w;
        }
    }

    fn send(&self, cmd: &Command) -> bool {
        let Ok(mut g) = self.writer.lock() else { return false };
        let Some(w) = g.as_mut() else { return false };
        let mut line = serde_json::to_vec(cmd).unwrap_or_default();
        line.push(b'\n');
        w.write_all(&line).is_ok()
    }
}

pub fn run(run_dir: Option<PathBuf>, theme: Option<String>) -> Result<i32> {
    let run_dir = match run_dir {
        Some(d) => d,
        None => match pick()? {
            Some(d) => d,
            None => return Ok(2),
        },
    };
    if !runs::is_run_dir(&run_dir) {
        anyhow::bail!("{} is not a run directory (no events.jsonl or config.toml)", run_dir.shown());
    }
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("dino attach needs a terminal; use `dino ctl {} status` in scripts", run_dir.shown());
    }
    let (log, user) = crate::cmd::logging::init_from_user_config();
    let theme = theme.or(user.theme);
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let link = Arc::new(Link::default());
    let feeder = {
        let (dir, tx, link) = (run_dir.clone(), ev_tx.clone(), link.clone());
        std::thread::Builder::new().name("attach-feed".into()).spawn(move || feed(&dir, &tx, &link))?
    };
    let commander = {
        let (dir, tx, link) = (run_dir.clone(), ev_tx, link.clone());
        std::thread::Builder::new().name("attach-commands".into()).spawn(move || forward_commands(&dir, cmd_rx, &tx, &link))?
    };
    let opts = TuiOptions { theme, run_dir: Some(run_dir.clone()), can_relaunch: true, ..Default::default() };
    let exit = tui::run_tui(opts, cmd_tx, ev_rx);
    // The command thread ends once the TUI's sender is gone, after writing what it was given
    // (a final "stop" must reach the trainer).
    let _ = commander.join();
    link.stop.store(true, Ordering::SeqCst);
    let _ = feeder.join();
    // Asked of the run, not of our socket reader: that one ends as soon as the TUI stops reading
    // (its next send fails), which made "training goes on" depend on an event's timing.
    let live = runs::status(&run_dir).is_live();
    match exit {
        Ok(TuiExit::StopTraining) => crate::say!("dino: asked the trainer to checkpoint and stop; see `dino runs`"),
        Ok(_) if live => crate::say!("dino: training goes on; `dino attach {}` to watch it again", run_dir.shown()),
        Ok(_) => {}
        Err(e) => {
            let hint = log.map(|p| format!(" (log: {})", p.shown())).unwrap_or_default();
            return Err(e.context(format!("terminal UI failed; training is not affected{hint}")));
        }
    }
    Ok(0)
}

/// No run directory given: at a terminal, a picker of every known run (`./runs` and the run
/// index; Enter attaches); with no one to ask, the most recently active live run. None (after
/// saying why) when there is nothing to attach to or the person left the picker.
fn pick() -> Result<Option<PathBuf>> {
    let index = crate::run::index::default_index_path();
    let all = runs::list(Path::new("runs"), index.as_deref());
    if all.is_empty() {
        crate::say_err!("dino attach: no runs in ./runs or the run index; give a run directory");
        return Ok(None);
    }
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        let theme = crate::tui::theme::Theme::default_theme();
        return tui::picker::pick(all, &theme).context("the run picker failed");
    }
    match all.iter().find(|r| r.status.is_live()) {
        Some(r) => Ok(Some(r.path.clone())),
        None => {
            crate::say_err!("dino attach: no live run found in ./runs or the run index; give a run directory:");
            eprint!("{}", runs::table(&all));
            Ok(None)
        }
    }
}

/// Sends the person's commands to the trainer. On a run nobody serves, evaluations run here
/// (`offline_eval`), "resume" starts a detached trainer on it, and other commands are answered
/// with an explanation.
fn forward_commands(run_dir: &Path, commands: Receiver<Command>, events: &Sender<Event>, link: &Link) {
    // This viewer follows events.jsonl, where the results land: no second copy on the channel.
    let mut evals = OfflineEvals::new(run_dir, events.clone(), false);
    serve_commands(
        &commands,
        &mut evals,
        |cmd| link.send(cmd),
        |cmd| {
            let _ = events.send(answer_offline(run_dir, &cmd));
        },
    );
}

/// What a command that needs a trainer gets when none serves the run.
fn answer_offline(run_dir: &Path, cmd: &Command) -> Event {
    match (cmd, runs::status(run_dir)) {
        (_, Status::Live { .. }) => Event::Warning { message: "connecting to the trainer; try again in a moment".into() },
        (Command::Resume, s) if s.resumable() => match crate::cmd::detach::spawn_detached(run_dir, false) {
            Ok((mut child, log)) => {
                let pid = child.id();
                // Reaped here so it leaves no zombie while this TUI lives on.
                let _ = std::thread::Builder::new().name("detached-reaper".into()).spawn(move || child.wait());
                Event::Warning { message: format!("resuming: started a detached trainer (pid {pid}, output in {})", log.shown()) }
            }
            Err(e) => Event::Error { message: format!("cannot resume: {e:#}") },
        },
        (_, s) => Event::Error { message: format!("the run is {} and no trainer serves it: {} needs a trainer", s.label(), describe(cmd)) },
    }
}

/// Feeds the TUI: history first, then new file lines and socket events, until told to stop.
fn feed(run_dir: &Path, events: &Sender<Event>, link: &Arc<Link>) {
    let (changed_tx, changed) = crossbeam_channel::unbounded::<()>();
    let _watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Only writes, creations and removals: our own reads of the files raise open and close
        // (access) events, and waking on those re-read the files in a loop (most of a core).
        if res.is_ok_and(|e| !e.kind.is_access() && !e.kind.is_other()) {
            let _ = changed_tx.send(());
        }
    })
    .and_then(|mut w| w.watch(run_dir, notify::RecursiveMode::NonRecursive).map(|_| w))
    .map_err(|e| tracing::info!("no change notifications for {} ({e}); polling", run_dir.shown()))
    .ok();
    let mut metrics = Tail::new(&run_dir.join(dir::METRICS_FILE));
    let mut log = Tail::new(&run_dir.join(dir::EVENTS_FILE));
    // Connecting before reading the history means nothing emitted in between is missed.
    let mut reader = connect(run_dir, events, link);
    let was_live = reader.is_some();
    let mut first = true;
    loop {
        let live = link.live.load(Ordering::SeqCst);
        // Events first: a `start` line must reach the TUI before the metrics of that session.
        for l in log.read_new().lines {
            for e in history::events_line(&l, live && !first) {
                if events.send(e).is_err() {
                    return;
                }
            }
        }
        if !send_new_metrics(&mut metrics, events, link) {
            return;
        }
        if first && !was_live {
            show_read_only(run_dir, events);
        }
        first = false;
        if link.stop.load(Ordering::SeqCst) {
            return;
        }
        let _ = changed.recv_timeout(POLL);
        while changed.try_recv().is_ok() {}
        if reader.as_ref().is_some_and(|r| r.is_finished()) {
            reader = None;
            // Lines the trainer wrote last (its `stop`) are read on the next pass.
            let _ = events.send(Event::Warning { message: "the trainer closed the connection".into() });
            for l in log.read_new().lines {
                for e in history::events_line(&l, false) {
                    let _ = events.send(e);
                }
            }
            show_read_only(run_dir, events);
        }
        if reader.is_none() && !link.live.load(Ordering::SeqCst) {
            // A resumed run, or one started again elsewhere, is picked up.
            reader = connect(run_dir, events, link);
        }
    }
}

/// Bytes of `metrics.jsonl` read at a time: a long run's history (320 MB for a million iterations)
/// goes to the TUI in batches, so the viewer never holds the file, its lines or their events whole.
const METRICS_BATCH: u64 = 1 << 20;

/// Events the feeder lets wait for the TUI at most. Parsing a long history can run ahead of the
/// TUI folding it in (the TUI shares the machine's cores, and reads only at its 10 frames a
/// second), and an unbounded queue of a million events would hold a million times an event's
/// size. 100,000 (at most 32 MB: see the test) is more than the feeder parses in a frame's time,
/// so pausing at it does not slow the load.
const MAX_BACKLOG: usize = 100_000;
/// Bytes of history read between two hand-backs of freed memory. The allocator keeps freed pages
/// (its decay is off, for the trainer: see `allocator`), and the batches, channel blocks and
/// events of a long history, allocated on this thread and freed on the TUI's, are not reused
/// page for page: without the hand-back the viewer's peak grew by about 100 bytes an iteration.
const PURGE_EVERY: usize = 32 << 20;
/// How long the feeder waits for the TUI to work the backlog down.
const BACKLOG_WAIT: Duration = Duration::from_millis(2);

/// Sends the metrics lines written since the last call, batch by batch; false when the TUI is gone.
fn send_new_metrics(metrics: &mut Tail, events: &Sender<Event>, link: &Link) -> bool {
    let mut read = 0;
    loop {
        let batch = metrics.read_chunk(METRICS_BATCH);
        if batch.bytes.is_empty() {
            return true;
        }
        read += batch.bytes.len();
        if read >= PURGE_EVERY {
            read = 0;
            // Measured: without this a million iterations left 100 MB of freed pages resident.
            crate::allocator::release_free_memory();
        }
        for e in batch.bytes.split(|b| *b == b'\n').filter_map(history::metrics_bytes) {
            if events.send(e).is_err() {
                return false;
            }
        }
        while events.len() > MAX_BACKLOG && !link.stop.load(Ordering::SeqCst) {
            std::thread::sleep(BACKLOG_WAIT);
        }
        if link.stop.load(Ordering::SeqCst) {
            return true;
        }
    }
}

/// Says the run is read-only and how it ended; a crash recorded no end, so one is given here.
fn show_read_only(run_dir: &Path, events: &Sender<Event>) {
    if let Some(s) = history::schedules(run_dir) {
        let _ = events.send(s);
    }
    let status = runs::status(run_dir);
    if status.is_live() {
        return;
    }
    if status == Status::Crashed {
        let f = runs::file_state(run_dir);
        let iter = runs::last_metrics(run_dir).map_or(0, |m| m.iter + 1);
        let _ = events.send(Event::Error { message: "the trainer is gone without recording an end: killed or crashed".into() });
        let _ = events.send(Event::State { state: RunState::Failed, iter: f.iter.unwrap_or(iter).max(iter) });
    }
    let hint = if status.resumable() { "; press p to resume it in the background (dino train --detach)" } else { "" };
    let _ = events.send(Event::Warning {
        message: format!("read-only: no trainer serves this run; it is {} (from events.jsonl){hint}", status.label()),
    });
}

/// Connects and starts the thread that forwards the socket's events; None when not live.
fn connect(run_dir: &Path, events: &Sender<Event>, link: &Arc<Link>) -> Option<std::thread::JoinHandle<()>> {
    let client = match Client::connect(run_dir) {
        Ok(c) => c,
        Err(ClientError::NotLive { .. }) => return None,
        Err(e) => {
            tracing::warn!("{e}");
            return None;
        }
    };
    link.set(client.stream().try_clone().ok());
    let (events, link) = (events.clone(), link.clone());
    std::thread::Builder::new()
        .name("attach-socket".into())
        .spawn(move || {
            read_socket(client, &events, &link);
            link.set(None);
        })
        .map_err(|e| tracing::warn!("cannot start the socket reader: {e}"))
        .ok()
}

/// How often an attached TUI tells the server it is still there.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);

/// Forwards what only the socket carries; the rest comes from the files.
fn read_socket(mut client: Client, events: &Sender<Event>, link: &Link) {
    let mut keepalive = std::time::Instant::now();
    loop {
        if link.stop.load(Ordering::SeqCst) {
            return;
        }
        // Shows the server this watcher is there (see control::server on slots).
        if keepalive.elapsed() >= KEEPALIVE_EVERY {
            keepalive = std::time::Instant::now();
            if let Err(e) = client.keepalive() {
                tracing::info!("attach: {e}");
                return;
            }
        }
        match client.recv(Duration::from_millis(250)) {
            Ok(Some(e)) => {
                let forward = matches!(
                    e,
                    Event::Hello { .. }
                        | Event::Schedules { .. }
                        | Event::State { .. }
                        | Event::Epoch(_)
                        | Event::Error { .. }
                        | Event::Warning { .. }
                        | Event::Resources(_)
                        | Event::EvalProgress { .. }
                        | Event::EvalResult { .. }
                );
                if forward && events.send(e).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::info!("attach: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_of_a_long_history_stays_small() {
        let bytes = std::mem::size_of::<Event>() * MAX_BACKLOG;
        assert!(bytes <= 32 << 20, "{} bytes an event: {} MB waiting at most", std::mem::size_of::<Event>(), bytes >> 20);
    }
}
