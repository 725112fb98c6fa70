//! Owning the terminal: raw mode, alternate screen and mouse capture on entry, and their undoing on
//! every way out — drop (normal return and `?` errors), a panic (hook), and signals (the event loop
//! returns, so the drop runs).

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::{stdout, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// Whether this process has the terminal in TUI mode, so restoring twice (drop after a panic
/// hook) writes nothing the second time and a panic outside the TUI leaves the terminal alone.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

pub type Term = Terminal<CrosstermBackend<Stdout>>;

pub struct TerminalGuard {
    /// Never dropped: ratatui's `Terminal` shows the cursor in its destructor and `eprintln!`s if
    /// that fails, which panics when the terminal is gone (SSH dropped, tmux killed). `restore`
    /// shows the cursor itself, ignoring errors; the struct holds nothing else worth freeing.
    pub terminal: std::mem::ManuallyDrop<Term>,
}

impl TerminalGuard {
    pub fn enter() -> anyhow::Result<Self> {
        install_panic_hook();
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        // From here on a failure must undo what was done, hence the guard before the rest.
        let mut out = stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, EnableMouseCapture) {
            restore();
            return Err(e.into());
        }
        match Terminal::new(CrosstermBackend::new(stdout())) {
            Ok(mut terminal) => {
                // A hidden cursor is cosmetic; failing to hide it is no reason to stop.
                let _ = terminal.hide_cursor();
                Ok(Self { terminal: std::mem::ManuallyDrop::new(terminal) })
            }
            Err(e) => {
                restore();
                Err(e.into())
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back as the shell expects it. Errors are ignored: this runs on the way out,
/// often after something else failed, and there is nobody left to tell.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(stdout(), DisableMouseCapture, LeaveAlternateScreen, crossterm::cursor::Show);
    }
}

fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Restore first so the panic message lands on a normal screen, not the alternate one.
            restore();
            tracing::error!("panic: {info}\n{}", std::backtrace::Backtrace::force_capture());
            previous(info);
        }));
    });
}
