//! Training without a terminal UI: progress lines on stdout, problems on stderr. Used when stdout
//! is not a terminal (CI, `nohup`, batch jobs) or with `--headless`. SIGINT and SIGTERM stop the
//! run after a checkpoint; SIGHUP is ignored, so a dropped SSH session does not end training.
//! The run is served on its control socket, so `dino attach` and `dino ctl` can reach it.

use crate::cmd::serve;
use crate::config::TrainConfig;
use crate::files::ShowPath;
use crate::protocol::health::HealthTracker;
use crate::protocol::{Command, Event, IterMetrics, RunInfo, RunState};
use crate::train::trainer::OnNonFinite;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, request_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, request_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// One progress line, as printed every `--print_freq` iterations. Numbers as in the TUI and
/// `log.txt` (docs/tui.md, "Numbers"): the 0-based epoch, and the iterations done.
pub fn progress_line(info: &RunInfo, m: &IterMetrics, eta_secs: f64) -> String {
    let total = info.epochs * info.niter_per_ep;
    format!(
        "epoch {}/{} it {}/{} loss {:.4} lr {:.3e} wd {:.4} temp {:.4} mom {:.4} {:.1} img/s data {:.0}% eta {}",
        m.epoch,
        info.epochs,
        m.iter + 1,
        total,
        m.loss,
        m.lr,
        m.wd,
        m.teacher_temp,
        m.momentum,
        m.images_per_s,
        100.0 * m.data_time / m.iter_time.max(1e-9),
        crate::human::fmt_duration(eta_secs)
    )
}

/// Runs training to its end; returns how it ended.
pub fn run(config: TrainConfig) -> Result<RunState> {
    install_signal_handlers();
    crate::cmd::logging::init_from_user_config();
    let print_freq = config.run.print_freq.max(1);
    // Nobody watches the terminal: diagnostics (control clients coming and going) go to the log file.
    let _ = crate::cmd::logging::init_default_file_logging();
    let handle = match serve::spawn(config, OnNonFinite::Stop) {
        Ok(h) => h,
        Err(e) if e.is::<serve::StoppedInHandover>() => {
            crate::say_err!("dino: {e}");
            return Ok(RunState::Stopped);
        }
        Err(e) => return Err(e),
    };
    if let Some(server) = handle.socket_path() {
        crate::say!("dino: control socket {}; `dino attach {}` watches and steers this run", server.shown(), handle.run_dir.shown());
    }
    let mut lines = Lines { print_freq, ..Lines::default() };
    let mut stop_sent = false;
    loop {
        if STOP_REQUESTED.load(Ordering::SeqCst) && !stop_sent {
            crate::say_err!("dino: stop requested; checkpointing and stopping after this iteration");
            let _ = handle.commands.send(Command::Stop { checkpoint: true });
            stop_sent = true;
        }
        match handle.events.recv_timeout(Duration::from_millis(200)) {
            Ok(e) => lines.show(e),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
    }
    let final_state = lines.final_state;
    handle.join().map_err(|e| e.context(format!("training ended badly (last state {final_state:?})")))
}

/// What the progress lines follow between events: the run, the pace for the ETA, the verdict.
struct Lines {
    print_freq: usize,
    info: Option<RunInfo>,
    iter_time_ema: Option<f64>,
    last_state: Option<RunState>,
    final_state: RunState,
    health: HealthTracker,
}

impl Default for Lines {
    fn default() -> Self {
        Self {
            print_freq: 1,
            info: None,
            iter_time_ema: None,
            last_state: None,
            final_state: RunState::Failed,
            health: HealthTracker::default(),
        }
    }
}

impl Lines {
    /// Prints what an event says: progress on stdout, problems on stderr.
    fn show(&mut self, event: Event) {
        let paused_before = self.last_state == Some(RunState::Paused);
        if let Event::State { state, .. } = &event {
            self.last_state = Some(*state);
        }
        match event {
            Event::Started(i) => {
                crate::say!(
                    "dino: training {} ({}) on {}: {} images, {} iterations/epoch x {} epochs, from iteration {}; run directory {}",
                    i.name,
                    i.arch,
                    i.device,
                    i.num_images,
                    i.niter_per_ep,
                    i.epochs,
                    i.start_iter,
                    i.run_dir.shown()
                );
                self.health.set_run(i.out_dim, i.niter_per_ep);
                self.info = Some(i);
            }
            Event::Metrics(m) => self.metrics(&m),
            // The verdict once an epoch (docs/tui.md, "The health verdict"): the dashboard's top line.
            Event::Epoch(e) => {
                crate::say!("dino: epoch {} done, train_loss {:.4}; health: {}", e.epoch, e.train_loss, self.health.health())
            }
            Event::EvalResult { kind, summary, json } => {
                self.health.push_knn_record(&json);
                crate::say!("dino: {} result: {summary}", kind.label());
            }
            Event::CheckpointSaved(c) => {
                crate::say!("dino: checkpoint saved at it {}, {}: {}", c.iter, crate::human::fmt_bytes(c.bytes), c.path.shown())
            }
            Event::Alarm { kind, message, iter } => {
                if kind == crate::protocol::AlarmKind::NonFiniteLoss {
                    self.health.push_non_finite(iter);
                }
                crate::say_err!("dino: ALARM: {message}")
            }
            Event::Warning { message } => crate::say_err!("dino: warning: {message}"),
            Event::Error { message } => crate::say_err!("dino: error: {message}"),
            Event::State { state: RunState::Paused, iter } => crate::say!("dino: paused at it {iter}"),
            Event::State { state: RunState::Running, iter } if paused_before => crate::say!("dino: resumed at it {iter}"),
            Event::State { state, iter } if state.is_over() => {
                self.final_state = state;
                match state {
                    RunState::Finished => crate::say!("dino: finished at it {iter}"),
                    RunState::Stopped => {
                        crate::say!("dino: stopped at it {iter}; run the same command again to resume")
                    }
                    _ => crate::say_err!("dino: failed at it {iter}"),
                }
            }
            _ => {}
        }
    }

    fn metrics(&mut self, m: &IterMetrics) {
        self.health.push_metrics(m);
        let ema = self.iter_time_ema.map_or(m.iter_time, |e| 0.9 * e + 0.1 * m.iter_time);
        self.iter_time_ema = Some(ema);
        if let Some(i) = &self.info {
            let total = i.epochs * i.niter_per_ep;
            let last_of_epoch = (m.iter + 1).is_multiple_of(i.niter_per_ep);
            if (m.iter + 1).is_multiple_of(self.print_freq) || last_of_epoch || m.iter == i.start_iter {
                let eta = ema * (total - m.iter - 1) as f64;
                crate::say!("{}", progress_line(i, m, eta));
            }
        }
    }
}
