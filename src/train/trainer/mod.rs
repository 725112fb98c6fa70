//! The training loop on its own OS thread: takes `Command`s between iterations, emits `Event`s,
//! writes the run directory and checkpoints, resumes where the last checkpoint left off.
//!
//! Split by concern: `setup` (data, device, process group, resume), `epoch` (the loop and its
//! collapse diagnostics), `commands` (what clients ask between iterations), `sync` (what ranks of
//! a data-parallel job agree on), `evals` (the evaluation queue); this file holds the run's
//! lifecycle and its checkpoints.

mod commands;
mod epoch;
mod evals;
mod foreign;
mod setup;
mod sync;

use super::checkpoint;
use super::evaluator::Evaluator;
use super::step::DinoState;
use crate::config::TrainConfig;
use crate::data::Shard;
use crate::files::ShowPath;
use crate::protocol::schedule::{Schedule, ScheduleName};
use crate::protocol::*;
use crate::run::checkpoint::{protected, CheckpointMeta, LoadedCheckpoint, Retention};
use crate::run::dir::{now, RunDir};
use anyhow::Result;
use crossbeam_channel::{Receiver, Sender};
use evals::EvalQueue;
use std::collections::BTreeMap;
use std::path::PathBuf;
use sync::RankSync;
use tch::Device;

/// What the trainer does when the loss stops being finite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNonFinite {
    /// Pause and wait for the person at the TUI (resume restores the last checkpoint).
    Pause,
    /// Stop: nobody is watching (headless).
    Stop,
}

pub struct TrainerHandle {
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    pub thread: std::thread::JoinHandle<Result<RunState>>,
}

/// Starts training on a new thread. Data layout and run directory problems surface here,
/// before the thread starts, so they reach the person as a plain error.
pub fn spawn(config: TrainConfig, on_non_finite: OnNonFinite, evaluator: Box<dyn Evaluator>) -> Result<TrainerHandle> {
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let mut trainer = Trainer::prepare(config, on_non_finite, cmd_rx, ev_tx, evaluator)?;
    let thread = std::thread::Builder::new().name("trainer".into()).spawn(move || {
        let result = trainer.run();
        if let Err(e) = &result {
            trainer.emit(Event::Error { message: format!("{e:#}") });
            let _ = trainer.run_dir.event("error", &serde_json::json!({ "message": format!("{e:#}") }));
            trainer.emit(Event::State { state: RunState::Failed, iter: trainer.iter });
        }
        result
    })?;
    Ok(TrainerHandle { commands: cmd_tx, events: ev_rx, thread })
}

enum EpochEnd {
    Completed,
    Restored,
    Stop(RunState),
}

struct Trainer {
    config: TrainConfig,
    device: Device,
    state: DinoState,
    data: TrainingData,
    schedules: BTreeMap<ScheduleName, Schedule>,
    run_dir: RunDir,
    commands: Receiver<Command>,
    events: Sender<Event>,
    on_non_finite: OnNonFinite,
    /// Next global iteration to run.
    iter: usize,
    last_loss: Option<f64>,
    paused: bool,
    ranks: RankSync,
    evals: EvalQueue,
    health: epoch::HealthWatch,
}

/// The images this process trains on and how they divide into iterations.
struct TrainingData {
    files: Vec<PathBuf>,
    /// Iterations per epoch.
    niter: usize,
    /// This process's share of each epoch in a data-parallel job.
    shard: Shard,
    skipped_files: usize,
}

impl Trainer {
    fn emit(&self, e: Event) {
        // Nobody listening (a detached run) is fine: the run directory has everything.
        let _ = self.events.send(e);
    }

    fn total_iters(&self) -> usize {
        self.data.niter * self.config.optim.epochs
    }

    fn run(&mut self) -> Result<RunState> {
        let c = &self.config;
        let precision = crate::train::precision::choose(c, self.device);
        tracing::info!("precision: {}", precision.describe());
        if let Some(note) = &precision.note {
            self.run_dir.event("note", &serde_json::json!({ "message": note }))?;
            self.emit(Event::Warning { message: note.clone() });
        }
        let info = RunInfo {
            run_dir: self.run_dir.path.clone(),
            name: self.run_dir.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            arch: c.model.arch.to_string(),
            device: format!("{:?}", self.device),
            epochs: c.optim.epochs,
            niter_per_ep: self.data.niter,
            batch_size: c.optim.batch_size_per_gpu,
            out_dim: c.model.out_dim,
            num_images: self.data.files.len(),
            start_iter: self.iter,
        };
        self.health.tracker.set_run(info.out_dim, info.niter_per_ep);
        self.run_dir.event("start", &info)?;
        self.emit(Event::Started(info));
        self.emit_schedules();
        self.emit(Event::State { state: RunState::Running, iter: self.iter });
        self.measure_baseline()?;

        while self.iter < self.total_iters() {
            let epoch = self.iter / self.data.niter;
            match self.run_epoch(epoch)? {
                EpochEnd::Completed => self.end_epoch(epoch)?,
                // Went back to the last checkpoint: the loop picks up from its iteration.
                EpochEnd::Restored => {}
                EpochEnd::Stop(final_state) => return self.finish(final_state),
            }
        }
        self.finish(RunState::Finished)
    }

    fn finish(&mut self, state: RunState) -> Result<RunState> {
        while self.evals.is_running() {
            self.poll_eval(true)?;
        }
        self.run_dir.flush()?;
        self.run_dir.event("stop", &serde_json::json!({ "state": state, "iter": self.iter }))?;
        self.emit(Event::State { state, iter: self.iter });
        Ok(state)
    }

    fn end_epoch(&mut self, epoch: usize) -> Result<()> {
        let freq = self.config.run.saveckp_freq;
        let numbered = (freq > 0 && (epoch + 1).is_multiple_of(freq)).then_some(epoch + 1);
        let saved = self.checkpoint(numbered)?;
        let every = self.config.run.eval_knn_every;
        if every > 0 && (epoch + 1).is_multiple_of(every) {
            // The record names the checkpoint of these weights, so retention keeps it and its row
            // in the Checkpoints tab shows the result on a file that is still there.
            self.start_eval(EvalKind::Knn, evals::Requested::Live(saved))?;
        }
        Ok(())
    }

    fn alarm(&mut self, kind: AlarmKind, message: String) -> Result<()> {
        tracing::warn!("{message}");
        self.run_dir.event("alarm", &serde_json::json!({ "kind": kind, "message": message, "iter": self.iter }))?;
        self.emit(Event::Alarm { kind, message, iter: self.iter });
        Ok(())
    }

    fn emit_schedules(&self) {
        let schedules = self.schedules.iter().map(|(k, v)| (*k, v.clone())).collect();
        self.emit(Event::Schedules { schedules });
    }

    fn is_main(&self) -> bool {
        self.ranks.is_main()
    }

    /// Saves a checkpoint of the state as it is; returns its content id (None where this process
    /// saves none).
    fn checkpoint(&mut self, numbered: Option<usize>) -> Result<Option<String>> {
        if !self.is_main() {
            return Ok(None);
        }
        if self.health.poisoned {
            self.emit(Event::Warning { message: "not checkpointing: the loss went non-finite; the last good checkpoint is kept".into() });
            return Ok(None);
        }
        self.run_dir.flush()?;
        let meta = CheckpointMeta {
            format_version: 1,
            tensors: String::new(),
            tensors_bytes: 0,
            tensors_sha256: None,
            epoch: self.iter / self.data.niter,
            iter: self.iter,
            niter_per_ep: self.data.niter,
            loader_batch: self.iter % self.data.niter,
            seed: self.config.run.seed,
            optimizer_steps: self.state.optimizer.state.iter().map(|(k, v)| (k.clone(), v.step)).collect(),
            schedules: self.schedules.iter().map(|(k, v)| (*k, v.clone())).collect(),
            loss_scale: self.state.amp.as_ref().map(|a| a.scale),
            last_loss: self.last_loss,
            time: now(),
            config: self.config.to_toml(),
        };
        let retention = Retention { keep: self.config.run.keep_checkpoints, protected: protected(&self.run_dir.path) };
        let saved = checkpoint::save(&self.run_dir.checkpoint_dir(), &self.state, &meta, numbered, &retention)?;
        let info = CheckpointInfo {
            path: saved.path,
            epoch: meta.epoch,
            iter: meta.iter,
            bytes: saved.bytes,
            loss: self.last_loss,
            time: meta.time,
            content_id: saved.content_id,
        };
        let content_id = info.content_id.clone();
        self.run_dir.event("checkpoint", &info)?;
        self.emit(Event::CheckpointSaved(info));
        Ok(content_id)
    }
}

/// Moves a batch to the training device. On CUDA the crops go through pinned memory with
/// non-blocking copies, so the transfer overlaps the kernels already queued.
fn to_device(crops: &[tch::Tensor], device: Device) -> Vec<tch::Tensor> {
    if device == Device::Cpu {
        return crops.iter().map(|t| t.shallow_clone()).collect();
    }
    crops.iter().map(|t| t.pin_memory(device).to_device_(device, tch::Kind::Float, true, false)).collect()
}

/// Restores a checkpoint into the state and, given the run's fresh schedules, the edits the
/// checkpoint's schedules carry. Going back in the same process (a non-finite loss) passes none:
/// the schedules in force already hold those edits and any made since.
fn resume_from(
    state: &mut DinoState,
    ckpt: &LoadedCheckpoint,
    schedules: Option<&mut BTreeMap<ScheduleName, Schedule>>,
    niter: usize,
) -> Result<()> {
    if ckpt.meta.niter_per_ep != niter {
        anyhow::bail!(
            "checkpoint {} was taken with {} iterations per epoch, the data now gives {niter}: the data set or batch size changed",
            ckpt.path.shown(),
            ckpt.meta.niter_per_ep
        );
    }
    checkpoint::restore(state, ckpt)?;
    let Some(schedules) = schedules else {
        return Ok(());
    };
    for (name, saved) in &ckpt.meta.schedules {
        if let Some(s) = schedules.get_mut(name) {
            // A checkpoint written before edits were range-checked may hold one that is not
            // (lr = -1 trains uphill): it is left out, not resumed.
            for problem in s.adopt(*name, saved) {
                tracing::warn!("{}: {problem}", ckpt.path.shown());
            }
        }
    }
    Ok(())
}
