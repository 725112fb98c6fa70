//! A trainer with its run served: the run directory locked to it, its events fanned out to the
//! local consumer and to control-socket clients, `schedule-edits.toml` watched. Headless and
//! in-process-TUI training both start here, so every trainer can be attached to and steered.

use crate::config::TrainConfig;
use crate::control::hub::Hub;
use crate::control::schedule_file::EditsWatch;
use crate::control::server::{self, ControlServer};
use crate::protocol::{Command, Event, RunState};
use crate::run::lock::RunLock;
use crate::train::trainer::{self, OnNonFinite};
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use std::path::PathBuf;

/// The trainer a hand-over started found a stop asked during the hand-over: it did not train.
#[derive(Debug, thiserror::Error)]
#[error("a stop was asked while the run was being handed over to this background trainer; the run stays stopped")]
pub struct StoppedInHandover;

pub struct ServedTrainer {
    pub run_dir: PathBuf,
    pub commands: Sender<Command>,
    /// Every event, for the local consumer.
    pub events: Receiver<Event>,
    pub hub: Hub,
    thread: std::thread::JoinHandle<Result<RunState>>,
    fanout: std::thread::JoinHandle<()>,
    // Dropped in this order after the trainer ends: no new edits, socket removed, lock released.
    watch: Option<EditsWatch>,
    server: Option<ControlServer>,
    /// None on the secondary ranks of a data-parallel job, which do not own the run directory.
    lock: Option<RunLock>,
}

/// Locks the run directory, then starts the trainer and serves it. The run directory is fixed
/// here (`config.output_dir` set), so a later hand-over resumes this run and no other.
pub fn spawn(mut config: TrainConfig, on_non_finite: OnNonFinite) -> Result<ServedTrainer> {
    let run_dir = config.run_dir();
    config.run.output_dir = Some(run_dir.clone());
    // Ranks other than 0 of a data-parallel job follow rank 0: no lock, socket or edits file.
    let secondary = crate::dist::DistEnv::from_env()?.is_some_and(|e| !e.is_main());
    // Before the trainer touches anything: a second trainer would truncate the first's metrics.
    let created = !run_dir.exists();
    let lock = if secondary { None } else { Some(RunLock::acquire(&run_dir)?) };
    // Holding the lock: a stop recorded now was asked of an earlier trainer. The one a hand-over
    // starts honours it (it was asked while the run changed hands); any other forgets it.
    if lock.is_some() && crate::run::dir::take_stop_request(&run_dir) && std::env::var_os(super::detach::HANDOVER_ENV).is_some() {
        let iter = crate::run::runs::file_state(&run_dir).iter.unwrap_or(0);
        let details = serde_json::json!({ "state": RunState::Stopped, "iter": iter, "reason": StoppedInHandover.to_string() });
        crate::run::dir::append_event(&run_dir, "stop", &details)?;
        return Err(StoppedInHandover.into());
    }
    if let Some(index) = crate::run::index::default_index_path().filter(|_| !secondary) {
        crate::run::index::record(&index, &run_dir);
    }
    // The socket is bound before training starts, so a client can connect as soon as a
    // detached trainer is reported started.
    let bound = if secondary { None } else { Some(server::bind(&run_dir)) };
    let listener = match bound {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            // Remote control is a convenience: training goes on without it.
            tracing::warn!("{e}");
            crate::say_err!("dino: warning: {e}; training goes on without remote control");
            None
        }
    };
    let handle = match trainer::spawn(config, on_non_finite, super::evaluator::evaluator()) {
        Ok(h) => h,
        Err(e) => {
            if let Some((_, path)) = &listener {
                let _ = std::fs::remove_file(path);
            }
            // A run that never started (a bad data path, say) leaves no directory of litter.
            if created && lock.is_some() {
                drop(lock);
                crate::run::dir::remove_if_abandoned(&run_dir);
            }
            return Err(e);
        }
    };
    let (hub, events, fanout) = Hub::start(handle.events).context("cannot start the event hub")?;
    if !secondary {
        report_resources(hub.clone());
    }
    let server = match listener {
        Some((l, path)) => Some(ControlServer::start(l, path, hub.clone(), handle.commands.clone())?),
        None => None,
    };
    let watching = if secondary { None } else { Some(EditsWatch::start(&run_dir, handle.commands.clone(), hub.clone())) };
    let watch = match watching {
        None => None,
        Some(Ok(w)) => Some(w),
        Some(Err(e)) => {
            tracing::warn!("cannot watch {}: {e}", crate::control::schedule_file::EDITS_FILE);
            None
        }
    };
    Ok(ServedTrainer { run_dir, commands: handle.commands, events, hub, thread: handle.thread, fanout, watch, server, lock })
}

/// How often the trainer reports its own CPU, memory and threads to its viewers.
const RESOURCES_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Publishes the trainer process's resources (`Event::Resources`) about once a second until the
/// hub closes: a viewer in another process shows them as the trainer's. One read of `/proc` per
/// second; a thread that cannot start only costs the viewers that line.
fn report_resources(hub: Hub) {
    let started = std::thread::Builder::new().name("resources".into()).spawn(move || {
        let mut monitor = crate::telemetry::ProcessMonitor::new();
        while !hub.is_closed() {
            std::thread::sleep(RESOURCES_EVERY);
            hub.publish(Event::Resources(monitor.sample()));
        }
    });
    if let Err(e) = started {
        tracing::warn!("cannot start the resources reporter: {e}");
    }
}

impl ServedTrainer {
    /// The control socket's path, when it could be bound.
    pub fn socket_path(&self) -> Option<&std::path::Path> {
        self.server.as_ref().map(|s| s.path.as_path())
    }

    /// Waits for the trainer to end, then stops serving and releases the run directory.
    pub fn join(self) -> Result<RunState> {
        let ServedTrainer { thread, fanout, watch, server, lock, events, commands, .. } = self;
        let result = thread.join();
        let _ = fanout.join();
        drop((watch, server, events, commands));
        drop(lock);
        match result {
            Ok(r) => r,
            Err(_) => anyhow::bail!("the training thread panicked; see the log file"),
        }
    }
}
