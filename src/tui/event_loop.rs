//! The TUI's event loop on a current-thread tokio runtime: terminal input (read on its own thread,
//! since crossterm's reads block), a redraw tick (at most 10 per second, and only when something
//! changed), telemetry about once a second, trainer events drained each tick, theme reloads, and
//! signals.

use super::app::App;
use super::clipboard;
use super::draw::{draw, prepare};
use super::log_view::LogLevel;
use super::terminal::Term;
use super::theme;
use super::theme_watch::ThemeWatch;
use super::trainer_events::apply_event;
use super::update::{handle_key, handle_mouse};
use super::TuiExit;
use crate::protocol::{Command, Event};
use crate::telemetry::TelemetrySampler;
use crossbeam_channel::{Receiver, TryRecvError};
use crossterm::event::Event as TermEvent;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const FRAME: Duration = Duration::from_millis(100);
const TELEMETRY: Duration = Duration::from_secs(1);
/// How long the input thread blocks before checking whether it should stop.
const INPUT_POLL: Duration = Duration::from_millis(50);
/// How long a footer message stays once nothing it talks about is pending.
const NOTICE_TTL: Duration = Duration::from_secs(8);

/// When the footer's message was set, so an answered or stale one goes (the key hints come back)
/// while one waiting for an outcome stays.
#[derive(Default)]
struct NoticeClock {
    text: Option<String>,
    since: Option<std::time::Instant>,
}

impl NoticeClock {
    /// Clears the footer message when it has stood unchanged for `NOTICE_TTL` with nothing
    /// pending; true when it did.
    fn expire(&mut self, app: &mut App, now: std::time::Instant) -> bool {
        if app.shell.status != self.text {
            self.text = app.shell.status.clone();
            self.since = Some(now);
            return false;
        }
        let old = self.since.is_some_and(|t| now.duration_since(t) >= NOTICE_TTL);
        if app.shell.status.is_some() && old && app.shell.pending.is_empty() {
            app.shell.status = None;
            self.text = None;
            return true;
        }
        false
    }
}

/// What the loop needs to reload the theme when its file changes.
pub struct ThemeReload {
    pub name: String,
    pub user_dir: Option<PathBuf>,
    pub no_color: bool,
    pub watch: Option<ThemeWatch>,
    /// File name whose change triggers a reload.
    pub file_name: String,
}

pub async fn run(app: &mut App, term: &mut Term, events: &Receiver<Event>, mut reload: ThemeReload) -> anyhow::Result<TuiExit> {
    let size = term.size()?;
    app.resize(size.width, size.height);
    let (input_tx, mut input_rx) = mpsc::unbounded_channel::<TermEvent>();
    let stop = Arc::new(AtomicBool::new(false));
    let input_thread = spawn_input_thread(input_tx, stop.clone());
    let result = run_inner(app, term, events, &mut reload, &mut input_rx).await;
    stop.store(true, Ordering::SeqCst);
    // The input thread notices `stop` within one poll; joining keeps it from reading keys meant
    // for the shell after the TUI has gone. A thread stuck in a read of a dead terminal is left
    // behind rather than keeping the process from exiting.
    if let Some(t) = input_thread {
        let deadline = std::time::Instant::now() + 4 * INPUT_POLL;
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
    result
}

/// True when the terminal on stdin has been hung up (the SSH connection or the tmux server is
/// gone): reads would then return at once forever, and the input thread must stop instead of spin.
fn terminal_hung_up() -> bool {
    let mut fds = libc::pollfd { fd: libc::STDIN_FILENO, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut fds, 1, 0) };
    n > 0 && (fds.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL)) != 0
}

fn spawn_input_thread(tx: mpsc::UnboundedSender<TermEvent>, stop: Arc<AtomicBool>) -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tui-input".into())
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if terminal_hung_up() {
                    tracing::warn!("terminal hung up; the UI stops reading keys");
                    break;
                }
                match crossterm::event::poll(INPUT_POLL) {
                    Ok(true) => match crossterm::event::read() {
                        Ok(ev) => {
                            if tx.send(ev).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::error!("terminal input: {e}");
                            break;
                        }
                    },
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!("terminal input: {e}");
                        break;
                    }
                }
            }
        })
        .map_err(|e| tracing::error!("cannot start the input thread: {e}"))
        .ok()
}

async fn run_inner(
    app: &mut App,
    term: &mut Term,
    events: &Receiver<Event>,
    reload: &mut ThemeReload,
    input_rx: &mut mpsc::UnboundedReceiver<TermEvent>,
) -> anyhow::Result<TuiExit> {
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut telemetry_tick = tokio::time::interval(TELEMETRY);
    telemetry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // NVML is loaded once, here, not per sample.
    let mut sampler = TelemetrySampler::new();
    let mut signals = Signals::new();
    let mut notice = NoticeClock::default();
    let mut dirty = true;
    loop {
        tokio::select! {
            ev = input_rx.recv() => match ev {
                Some(TermEvent::Key(k)) => { handle_key(app, k); dirty = true; }
                Some(TermEvent::Mouse(m)) => { handle_mouse(app, m); dirty = true; }
                Some(TermEvent::Resize(w, h)) => { app.resize(w, h); dirty = true; }
                Some(_) => {}
                None => {
                    // The input thread ended: no way to steer any more, but training goes on.
                    app.log_line(LogLevel::Error, "terminal input closed; leaving training running");
                    return Ok(TuiExit::LeaveRunning);
                }
            },
            _ = tick.tick() => {
                dirty |= drain_events(app, events);
                dirty |= app.outliers.poll_lens();
                // New rows are checked against the disk before they are drawn, not up to a
                // second later: until then a rotated-away checkpoint would look present.
                if app.checkpoint_tab.files.len() != app.checkpoint_tab.rows.len() {
                    dirty |= super::checkpoint_files::refresh(app);
                }
                dirty |= notice.expire(app, std::time::Instant::now());
                if let Some(w) = &reload.watch {
                    if w.changed(&reload.file_name) {
                        reload_theme(app, reload);
                        dirty = true;
                    }
                }
                if dirty {
                    prepare(app);
                    term.draw(|f| draw(app, f))?;
                    dirty = false;
                    if let Some(text) = app.shell.clipboard.take() {
                        if let Err(e) = clipboard::copy(&mut std::io::stdout(), &text) {
                            tracing::warn!("clipboard (OSC 52): {e}");
                        }
                    }
                }
            },
            _ = telemetry_tick.tick() => {
                dirty |= super::checkpoint_files::refresh(app);
                let t = sampler.sample();
                // An idle machine reads the same each second; only a change is worth a frame.
                if t != app.trainer.telemetry {
                    app.trainer.telemetry = t;
                    dirty = true;
                }
            },
            exit = signals.next() => {
                app.log_line(LogLevel::Warn, format!("signal received: {exit:?}"));
                if exit == TuiExit::StopTraining && !app.training_over() {
                    app.send(Command::Stop { checkpoint: true });
                }
                return Ok(exit);
            },
        }
        if let Some(exit) = app.shell.exit {
            return Ok(exit);
        }
    }
}

/// Applies every pending trainer event; returns whether any arrived.
fn drain_events(app: &mut App, events: &Receiver<Event>) -> bool {
    let mut any = false;
    loop {
        match events.try_recv() {
            Ok(ev) => {
                apply_event(app, ev);
                any = true;
            }
            Err(TryRecvError::Empty) => return any,
            Err(TryRecvError::Disconnected) => {
                if !app.trainer.gone {
                    app.trainer.gone = true;
                    if !app.trainer.state.is_over() {
                        app.log_line(LogLevel::Error, "the trainer's event channel closed without a final state");
                    }
                    any = true;
                }
                return any;
            }
        }
    }
}

fn reload_theme(app: &mut App, r: &ThemeReload) {
    let (t, err) = theme::load_or_default(&r.name, r.user_dir.as_deref());
    app.shell.theme = t.with_no_color(r.no_color);
    match err {
        Some(e) => app.log_line(LogLevel::Error, format!("{e}; using the default theme")),
        None => app.log_line(LogLevel::Info, format!("theme `{}` reloaded", r.name)),
    }
}

/// SIGINT and SIGTERM ask to stop training (with a checkpoint), as Ctrl-C does outside a TUI;
/// SIGHUP (the SSH connection dropped) leaves training running.
struct Signals {
    /// SIGINT, SIGTERM, SIGHUP; None where one could not be registered.
    #[cfg(unix)]
    streams: [Option<tokio::signal::unix::Signal>; 3],
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = [SignalKind::interrupt(), SignalKind::terminate(), SignalKind::hangup()].map(|k| signal(k).ok());
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> TuiExit {
        #[cfg(unix)]
        {
            let [interrupt, terminate, hangup] = &mut self.streams;
            tokio::select! {
                Some(()) = recv(interrupt) => TuiExit::StopTraining,
                Some(()) = recv(terminate) => TuiExit::StopTraining,
                Some(()) = recv(hangup) => TuiExit::LeaveRunning,
                else => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        std::future::pending().await
    }
}

/// The next delivery of a signal we could register; None (never ready) for one we could not.
#[cfg(unix)]
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::fixtures;

    #[test]
    fn draining_applies_events_and_notices_a_closed_channel() {
        let (mut app, _rx) = fixtures::app(0);
        let (tx, events) = crossbeam_channel::unbounded();
        for e in fixtures::events(5) {
            tx.send(e).expect("open channel");
        }
        assert!(drain_events(&mut app, &events));
        assert_eq!(app.trainer.store.len(), 5);
        assert!(!drain_events(&mut app, &events), "nothing new");
        drop(tx);
        assert!(drain_events(&mut app, &events));
        assert!(app.trainer.gone);
        assert!(app.training_over());
    }

    #[test]
    fn footer_messages_expire_unless_an_outcome_is_pending() {
        let (mut app, _rx) = fixtures::app(10);
        let mut clock = NoticeClock::default();
        let t0 = std::time::Instant::now();
        app.shell.status = Some("copied: x".into());
        assert!(!clock.expire(&mut app, t0));
        assert!(!clock.expire(&mut app, t0 + Duration::from_secs(1)));
        assert!(clock.expire(&mut app, t0 + NOTICE_TTL + Duration::from_secs(1)));
        assert_eq!(app.shell.status, None);
        app.shell.status = Some("checkpoint requested".into());
        app.shell.pending.push(crate::tui::app::Pending::Checkpoint);
        clock.expire(&mut app, t0);
        assert!(!clock.expire(&mut app, t0 + NOTICE_TTL * 3), "a request waiting for its outcome stays");
    }

    #[test]
    fn theme_file_changes_are_noticed_and_bad_ones_fall_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("mine.toml");
        std::fs::write(&file, "[colors]\nloss = \"red\"\n").expect("write");
        let (mut app, _rx) = fixtures::app(0);
        let reload = ThemeReload {
            name: "mine".into(),
            user_dir: Some(dir.path().to_path_buf()),
            no_color: false,
            watch: ThemeWatch::new(&[dir.path()]),
            file_name: "mine.toml".into(),
        };
        let Some(watch) = &reload.watch else {
            // No inotify in this sandbox: live reload is off, which the UI treats as normal.
            return;
        };
        std::fs::write(&file, "[colors]\nloss = \"not-a-colour\"\n").expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !watch.changed("mine.toml") {
            assert!(std::time::Instant::now() < deadline, "no change notification");
            std::thread::sleep(Duration::from_millis(20));
        }
        reload_theme(&mut app, &reload);
        assert_eq!(app.shell.theme, crate::tui::theme::Theme::default_theme());
        let last = app.log_tab.entries.last().map(|e| e.text.clone()).unwrap_or_default();
        assert!(last.contains("mine.toml") && last.contains("colors.loss"), "{last}");
    }
}
