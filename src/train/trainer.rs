//! The training loop on its own OS thread: takes `Command`s between iterations, emits `Event`s,
//! writes the run directory and checkpoints, resumes where the last checkpoint left off.

use super::checkpoint;
use super::evaluator::{self, EvalContext, Evaluator, RunningEval};
use super::step::{DinoState, StepError, StepParams};
use crate::config::TrainConfig;
use crate::data::{DataLayout, LoaderConfig, MultiCropLoader, Shard};
use crate::model::EvalWeights;
use crate::protocol::schedule::{Schedule, ScheduleName};
use crate::protocol::*;
use crate::run::checkpoint::{self as checkpoint_files, CheckpointMeta, LoadedCheckpoint};
use crate::run::dir::{now, RunDir};
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
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

/// How often a paused rank 0 tells the other ranks it is still there, and the word that says so.
const PAUSE_HEARTBEAT: Duration = Duration::from_secs(1);
const STILL_PAUSED: f64 = 4.0;

/// Teacher entropy (nats) under which the outputs have collapsed onto one dimension.
const COLLAPSED_ENTROPY: f64 = 0.05;

enum EpochEnd {
    Completed,
    Restored,
    Stop(RunState),
}

struct Trainer {
    config: TrainConfig,
    device: Device,
    state: DinoState,
    files: Vec<std::path::PathBuf>,
    niter: usize,
    schedules: BTreeMap<ScheduleName, Schedule>,
    run_dir: RunDir,
    commands: Receiver<Command>,
    events: Sender<Event>,
    on_non_finite: OnNonFinite,
    /// Next global iteration to run.
    iter: usize,
    last_loss: Option<f64>,
    /// Set after a non-finite loss: the in-memory state must not be checkpointed.
    poisoned: bool,
    paused: bool,
    skipped_files: usize,
    /// The other processes of a data-parallel job, if any.
    group: Option<std::sync::Arc<crate::dist::ProcessGroup>>,
    shard: Shard,
    /// When a paused rank 0 last told the other ranks it is still there.
    last_heartbeat: Instant,
    /// The evaluation running on its own thread, if any (one at a time).
    eval_worker: Option<Box<dyn RunningEval>>,
    evaluator: Box<dyn Evaluator>,
    /// Evaluations asked for while one was running, started in order.
    eval_queue: std::collections::VecDeque<(EvalKind, Option<std::path::PathBuf>)>,
}

impl Trainer {
    fn prepare(
        config: TrainConfig,
        on_non_finite: OnNonFinite,
        commands: Receiver<Command>,
        events: Sender<Event>,
        evaluator: Box<dyn Evaluator>,
    ) -> Result<Self> {
        let layout = DataLayout::discover(&config.run.data_path)?;
        tracing::info!("data: {}", layout.summary());
        let mut files = layout.pretext().files.clone();
        let mut excluded = None;
        if let Some(list) = &config.run.exclude {
            let listed = crate::data::exclude::read_list(list, layout.root())
                .with_context(|| format!("cannot read the --exclude list {}", list.display()))?;
            let e = crate::data::exclude::apply(files, &listed);
            tracing::info!(
                "--exclude {}: {} images left out, {} listed paths match no training image",
                list.display(),
                e.removed,
                e.unmatched.len()
            );
            files = e.kept;
            excluded = Some(serde_json::json!({ "file": list, "removed": e.removed, "unmatched": e.unmatched.len() }));
        }
        let batch = config.optim.batch_size_per_gpu;
        if files.len() < batch {
            anyhow::bail!(
                "{} holds {} training images, fewer than one batch (--batch_size_per_gpu {batch})",
                config.run.data_path.display(),
                files.len()
            );
        }
        let device = crate::config::validate::resolve_device(&config.run.device)?;
        let group = match crate::dist::DistEnv::from_env()? {
            Some(env) => {
                let timeout = crate::dist::timeout_from_env();
                tracing::info!(
                    "rank {} of {}: joining {}:{} (timeout {timeout:?})",
                    env.rank,
                    env.world_size,
                    env.master_addr,
                    env.master_port
                );
                Some(std::sync::Arc::new(crate::dist::ProcessGroup::new(&env, device.is_cuda(), timeout)?))
            }
            None => None,
        };
        let shard = group.as_ref().map(|g| Shard { rank: g.rank, world: g.world_size }).unwrap_or_default();
        let niter = shard.len(files.len()) / batch;
        if niter == 0 {
            anyhow::bail!("{} training images shared by {} processes leave none a full batch of {batch}", files.len(), shard.world);
        }
        tch::manual_seed(config.run.seed as i64);
        let mut state = DinoState::new(&config, device)?;
        if let Some(g) = &group {
            // One starting point for every rank: rank 0's student (the teacher is its copy).
            state.join_group(g.clone())?;
        }
        let main_run = config.run_dir();
        let (ckpt, problems) = checkpoint_files::load_latest(&main_run.join(crate::run::dir::CHECKPOINT_DIR));
        // Only rank 0 writes the run directory; the others keep their own logs beside it.
        let run_path = match &group {
            Some(g) if g.rank > 0 => main_run.join("ranks").join(format!("rank{}", g.rank)),
            _ => main_run.clone(),
        };
        let mut schedules = crate::config::schedules::build(&config, niter, shard.world);
        let (mut iter, mut last_loss) = (0, None);
        if let Some(ckpt) = &ckpt {
            resume_from(&mut state, ckpt, &mut schedules, niter)?;
            iter = ckpt.meta.iter;
            last_loss = ckpt.meta.last_loss;
            // Before the run directory opens metrics.jsonl for appending: the truncation replaces the file.
            RunDir::truncate_metrics_from(&run_path, iter)?;
            tch::manual_seed(config.run.seed as i64 + iter as i64);
        }
        let mut run_dir = RunDir::open(&run_path, &config)?;
        for p in &problems {
            run_dir.event("checkpoint_unusable", &serde_json::json!({ "message": p }))?;
            let _ = events.send(Event::Warning { message: format!("checkpoint unusable, using an older one: {p}") });
        }
        if let Some(details) = &excluded {
            run_dir.event("exclude", details)?;
        }
        if let Some(ckpt) = &ckpt {
            run_dir.event("resume", &serde_json::json!({ "iter": iter, "checkpoint": ckpt.path }))?;
        }
        Ok(Self {
            config,
            device,
            state,
            files,
            niter,
            schedules,
            run_dir,
            commands,
            events,
            on_non_finite,
            iter,
            last_loss,
            poisoned: false,
            paused: false,
            skipped_files: 0,
            group,
            shard,
            last_heartbeat: Instant::now(),
            eval_worker: None,
            evaluator,
            eval_queue: Default::default(),
        })
    }

    fn emit(&self, e: Event) {
        // Nobody listening (a detached run) is fine: the run directory has everything.
        let _ = self.events.send(e);
    }

    fn total_iters(&self) -> usize {
        self.niter * self.config.optim.epochs
    }

    fn run(&mut self) -> Result<RunState> {
        let c = &self.config;
        if self.device == Device::Cpu && c.optim.use_fp16 {
            tracing::info!("--use_fp16 applies to CUDA only; training in float32 on the CPU");
            self.run_dir.event("note", &serde_json::json!({ "message": "use_fp16 ignored on CPU: float32" }))?;
        }
        let info = RunInfo {
            run_dir: self.run_dir.path.clone(),
            name: self.run_dir.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            arch: c.model.arch.to_string(),
            device: format!("{:?}", self.device),
            epochs: c.optim.epochs,
            niter_per_ep: self.niter,
            batch_size: c.optim.batch_size_per_gpu,
            out_dim: c.model.out_dim,
            num_images: self.files.len(),
            start_iter: self.iter,
        };
        self.run_dir.event("start", &info)?;
        self.emit(Event::Started(info));
        self.emit_schedules();
        self.emit(Event::State { state: RunState::Running, iter: self.iter });

        while self.iter < self.total_iters() {
            let epoch = self.iter / self.niter;
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
        while self.eval_worker.is_some() {
            self.poll_eval(true)?;
        }
        self.run_dir.flush()?;
        self.run_dir.event("stop", &serde_json::json!({ "state": state, "iter": self.iter }))?;
        self.emit(Event::State { state, iter: self.iter });
        Ok(state)
    }

    /// Runs the rest of one epoch.
    fn run_epoch(&mut self, epoch: usize) -> Result<EpochEnd> {
        let start_batch = self.iter % self.niter;
        let aug = self.config.augment_config();
        let loader_cfg = LoaderConfig {
            batch_size: self.config.optim.batch_size_per_gpu,
            num_workers: self.config.run.num_workers,
            seed: self.config.run.seed,
            epoch: epoch as u64,
            start_batch,
            prefetch: 0,
            shard: self.shard,
        };
        let mut loader = MultiCropLoader::new(self.files.clone(), aug, loader_cfg)?;
        let mut epoch_loss = 0.0;
        let mut epoch_steps = 0usize;
        let mut near_uniform = 0usize;
        let mut entropy_alarmed = false;
        let ln_k = (self.config.model.out_dim as f64).ln();
        for _ in start_batch..self.niter {
            let asked = self.handle_commands()?;
            let it = self.iter;
            let p = StepParams {
                epoch,
                lr: self.schedules[&ScheduleName::Lr].value(it),
                wd: self.schedules[&ScheduleName::Wd].value(it),
                momentum: self.schedules[&ScheduleName::Momentum].value(it),
                teacher_temp: self.schedules[&ScheduleName::TeacherTemp].value(it),
            };
            let (stop, p) = self.sync_iteration(asked, p)?;
            if let Some(end) = stop {
                return Ok(EpochEnd::Stop(end));
            }
            // On the CPU an evaluation and training would share the cores: training waits.
            self.poll_eval(self.device == Device::Cpu)?;
            let t0 = Instant::now();
            let batch = match loader.next_batch() {
                Some(b) => b?,
                None => break,
            };
            let data_time = t0.elapsed().as_secs_f64();
            for s in &batch.skipped {
                self.skipped_files += 1;
                let message = format!("skipped unreadable image {}: {}", s.path.display(), s.reason);
                tracing::warn!("{message}");
                self.run_dir.event("skipped_file", &serde_json::json!({ "path": s.path, "reason": s.reason }))?;
                self.emit(Event::Warning { message });
            }
            let crops = to_device(&batch.crops, self.device);
            let out = match self.state.step(&crops, p) {
                Ok(o) => o,
                Err(StepError::NonFiniteLoss(v)) => {
                    return Ok(match self.non_finite(v)? {
                        Some(end) => EpochEnd::Stop(end),
                        None => EpochEnd::Restored,
                    });
                }
                Err(e @ StepError::Distributed(_)) => return Err(e.into()),
            };
            let out = self.averaged_over_ranks(out)?;
            let iter_time = t0.elapsed().as_secs_f64();
            let m = IterMetrics {
                iter: it,
                epoch,
                loss: out.loss,
                lr: p.lr,
                wd: p.wd,
                teacher_temp: p.teacher_temp,
                momentum: p.momentum,
                iter_time,
                data_time,
                images_per_s: self.config.optim.batch_size_per_gpu as f64 / iter_time.max(1e-9),
                teacher_entropy: out.teacher_entropy,
                kl: out.kl,
                time: now(),
            };
            self.run_dir.metrics(&m)?;
            self.emit(Event::Metrics(m));
            self.iter += 1;
            self.last_loss = Some(out.loss);
            epoch_loss += out.loss;
            epoch_steps += 1;
            if (out.loss - ln_k).abs() <= 0.01 * ln_k {
                near_uniform += 1;
            }
            if out.teacher_entropy < COLLAPSED_ENTROPY && !entropy_alarmed {
                entropy_alarmed = true;
                self.alarm(
                    AlarmKind::DimensionCollapse,
                    format!("teacher entropy {:.4} is near 0: outputs collapse to one dimension", out.teacher_entropy),
                )?;
            }
        }
        if epoch_steps > 0 && near_uniform == epoch_steps && epoch_steps == self.niter {
            self.alarm(
                AlarmKind::UniformCollapse,
                format!("loss stayed within 1% of ln(out_dim) = {ln_k:.3} for the whole epoch {epoch}: uniform collapse"),
            )?;
        }
        if epoch_steps > 0 {
            let summary = EpochSummary {
                epoch,
                train_loss: epoch_loss / epoch_steps as f64,
                train_lr: self.schedules[&ScheduleName::Lr].value(self.iter - 1),
                train_wd: self.schedules[&ScheduleName::Wd].value(self.iter - 1),
            };
            self.run_dir.epoch(&summary)?;
            self.emit(Event::Epoch(summary));
        }
        Ok(EpochEnd::Completed)
    }

    fn end_epoch(&mut self, epoch: usize) -> Result<()> {
        let freq = self.config.run.saveckp_freq;
        let numbered = (freq > 0 && (epoch + 1).is_multiple_of(freq)).then_some(epoch + 1);
        self.checkpoint(numbered)?;
        let every = self.config.run.eval_knn_every;
        if every > 0 && (epoch + 1).is_multiple_of(every) {
            self.start_eval(EvalKind::Knn, None)?;
        }
        Ok(())
    }

    /// Starts an evaluation of the live teacher (or of a checkpoint) on its own thread. A failed
    /// start or evaluation is reported, never fatal to the run.
    fn start_eval(&mut self, kind: EvalKind, checkpoint: Option<std::path::PathBuf>) -> Result<()> {
        if !self.is_main() {
            return Ok(());
        }
        if let Some(w) = &self.eval_worker {
            let message = format!("{} evaluation queued after the running {} evaluation", kind.label(), w.kind().label());
            self.emit(Event::Warning { message });
            self.eval_queue.push_back((kind, checkpoint));
            return Ok(());
        }
        let weights = match checkpoint {
            Some(path) => EvalWeights::Checkpoint(path),
            None => {
                let (vs, backbone) = evaluator::snapshot_teacher(&self.state.teacher_vs, &self.config, self.device)?;
                EvalWeights::Snapshot { vs, backbone: Box::new(backbone), epoch: self.iter / self.niter, iter: self.iter }
            }
        };
        let ctx = EvalContext {
            config: self.config.clone(),
            device: self.device,
            run_dir: self.run_dir.path.clone(),
            events: self.events.clone(),
        };
        let worker = self.evaluator.start(kind, weights, ctx)?;
        self.eval_worker = Some(worker);
        Ok(())
    }

    /// Records the running evaluation's result once it is there; `wait` blocks until it is.
    fn poll_eval(&mut self, wait: bool) -> Result<()> {
        let Some(worker) = &self.eval_worker else { return Ok(()) };
        let outcome = if wait { Some(worker.wait()) } else { worker.try_finish() };
        let Some(outcome) = outcome else { return Ok(()) };
        self.eval_worker = None;
        match outcome {
            Ok(mut o) => {
                o.json["seconds"] = o.seconds.into();
                self.run_dir.event("eval", &o.json)?;
                let how = if self.device == Device::Cpu { "training paused meanwhile" } else { "training went on meanwhile" };
                let summary = format!("{}; {:.0} s, {how}", o.summary, o.seconds);
                tracing::info!("{summary}");
                self.emit(Event::EvalResult { kind: o.kind, summary, json: o.json });
            }
            Err(message) => {
                tracing::warn!("{message}");
                self.emit(Event::Error { message });
            }
        }
        match self.eval_queue.pop_front() {
            Some((kind, checkpoint)) => self.start_eval(kind, checkpoint),
            None => Ok(()),
        }
    }

    fn alarm(&mut self, kind: AlarmKind, message: String) -> Result<()> {
        tracing::warn!("{message}");
        self.run_dir.event("alarm", &serde_json::json!({ "kind": kind, "message": message, "iter": self.iter }))?;
        self.emit(Event::Alarm { kind, message, iter: self.iter });
        Ok(())
    }

    /// A non-finite loss: the weights were not touched by that step. Headless, stop; with a
    /// person watching, pause, and on resume continue from the last good checkpoint.
    fn non_finite(&mut self, value: f64) -> Result<Option<RunState>> {
        self.poisoned = true;
        self.alarm(AlarmKind::NonFiniteLoss, format!("loss is {value} at iteration {}; the last good checkpoint is kept", self.iter))?;
        if self.on_non_finite == OnNonFinite::Stop {
            return Ok(Some(RunState::Failed));
        }
        self.paused = true;
        self.emit(Event::State { state: RunState::Paused, iter: self.iter });
        if let Some(end) = self.handle_commands()? {
            return Ok(Some(end));
        }
        let (ckpt, problems) = checkpoint_files::load_latest(&self.run_dir.checkpoint_dir());
        let ckpt = ckpt.with_context(|| format!("no usable checkpoint to go back to ({})", problems.join("; ")))?;
        resume_from(&mut self.state, &ckpt, &mut self.schedules, self.niter)?;
        self.iter = ckpt.meta.iter;
        self.poisoned = false;
        self.run_dir.event("restored", &serde_json::json!({ "iter": self.iter, "checkpoint": ckpt.path }))?;
        Ok(None)
    }

    /// Applies pending commands; blocks while paused. Some(state) when training must stop.
    fn handle_commands(&mut self) -> Result<Option<RunState>> {
        loop {
            let cmd = if self.paused {
                match self.commands.recv_timeout(Duration::from_millis(200)) {
                    Ok(c) => c,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        // A paused run still records the evaluations it was asked for.
                        self.poll_eval(false)?;
                        self.pause_heartbeat()?;
                        continue;
                    }
                    // Every client is gone while paused: keep the checkpoint and stop.
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(Some(RunState::Stopped)),
                }
            } else {
                match self.commands.try_recv() {
                    Ok(c) => c,
                    Err(_) => return Ok(None),
                }
            };
            match cmd {
                Command::Pause if !self.paused => {
                    self.paused = true;
                    self.run_dir.flush()?;
                    self.run_dir.event("pause", &serde_json::json!({ "iter": self.iter }))?;
                    self.emit(Event::State { state: RunState::Paused, iter: self.iter });
                }
                Command::Resume if self.paused => {
                    self.paused = false;
                    self.run_dir.event("resume", &serde_json::json!({ "iter": self.iter }))?;
                    self.emit(Event::State { state: RunState::Running, iter: self.iter });
                }
                Command::Pause | Command::Resume => {}
                Command::Checkpoint => self.checkpoint(None)?,
                Command::Stop { checkpoint } => {
                    if checkpoint {
                        self.checkpoint(None)?;
                    }
                    return Ok(Some(RunState::Stopped));
                }
                Command::EditSchedule(edit) => {
                    let from_iter = edit.from_iter.max(self.iter);
                    let edit = crate::protocol::schedule::ScheduleEdit { from_iter, ..edit };
                    if let Some(s) = self.schedules.get_mut(&edit.schedule) {
                        s.apply(edit);
                    }
                    self.run_dir.event("schedule_edit", &edit)?;
                    self.emit(Event::ScheduleEdited { edit });
                    self.emit_schedules();
                }
                Command::UndoScheduleEdit { schedule } => {
                    let undone = self.schedules.get_mut(&schedule).and_then(|s| s.undo());
                    if undone.is_some() {
                        self.run_dir.event("schedule_undo", &serde_json::json!({ "schedule": schedule }))?;
                        self.emit(Event::ScheduleUndone { schedule });
                        self.emit_schedules();
                    }
                }
                Command::Eval { kind, checkpoint } => self.start_eval(kind, checkpoint)?,
                Command::Status => {
                    let state = if self.paused { RunState::Paused } else { RunState::Running };
                    self.emit(Event::State { state, iter: self.iter });
                }
            }
        }
    }

    fn emit_schedules(&self) {
        let schedules = self.schedules.iter().map(|(k, v)| (*k, v.clone())).collect();
        self.emit(Event::Schedules { schedules });
    }

    fn is_main(&self) -> bool {
        self.group.as_ref().is_none_or(|g| g.rank == 0)
    }

    /// While rank 0 is paused the other ranks wait in `sync_iteration`'s broadcast; this keeps
    /// that broadcast from timing out (every second or so, a "still paused" word they wait on).
    fn pause_heartbeat(&mut self) -> Result<()> {
        let Some(g) = &self.group else { return Ok(()) };
        if g.rank != 0 || self.poisoned || self.last_heartbeat.elapsed() < PAUSE_HEARTBEAT {
            return Ok(());
        }
        let mut word = tch::Tensor::from_slice(&[STILL_PAUSED, 0.0, 0.0, 0.0, 0.0]);
        g.broadcast(&mut word, 0)?;
        self.last_heartbeat = Instant::now();
        Ok(())
    }

    /// Rank 0 tells every rank, at each iteration boundary, whether to stop and this iteration's
    /// schedule values: its commands (stop, schedule edits) come from its TUI, socket or signals,
    /// the other ranks have none, and replicas must never step with different hyperparameters.
    /// Single process: `asked` and `p` as they are.
    fn sync_iteration(&self, asked: Option<RunState>, p: StepParams) -> Result<(Option<RunState>, StepParams)> {
        let Some(g) = &self.group else { return Ok((asked, p)) };
        let code = match asked {
            None => 0.0,
            Some(RunState::Finished) => 1.0,
            Some(RunState::Failed) => 2.0,
            Some(_) => 3.0,
        };
        let mut word = tch::Tensor::from_slice(&[code, p.lr, p.wd, p.momentum, p.teacher_temp]);
        g.broadcast(&mut word, 0)?;
        // Rank 0 paused: its heartbeats arrive until the real word does.
        while g.rank != 0 && word.double_value(&[0]) == STILL_PAUSED {
            word = tch::Tensor::from_slice(&[code, p.lr, p.wd, p.momentum, p.teacher_temp]);
            g.broadcast(&mut word, 0)?;
        }
        let v = |i: i64| word.double_value(&[i]);
        let stop = match v(0) as i64 {
            0 => None,
            1 => Some(RunState::Finished),
            2 => Some(RunState::Failed),
            _ => Some(RunState::Stopped),
        };
        Ok((stop, StepParams { lr: v(1), wd: v(2), momentum: v(3), teacher_temp: v(4), ..p }))
    }

    /// The loss and its diagnostics as the mean over ranks, as the reference logs them.
    fn averaged_over_ranks(&self, out: super::step::StepOutput) -> Result<super::step::StepOutput> {
        let Some(g) = &self.group else { return Ok(out) };
        let mut v = tch::Tensor::from_slice(&[out.loss, out.teacher_entropy, out.kl]);
        g.all_reduce_sum(&mut v)?;
        let n = g.world_size as f64;
        Ok(super::step::StepOutput {
            loss: v.double_value(&[0]) / n,
            teacher_entropy: v.double_value(&[1]) / n,
            kl: v.double_value(&[2]) / n,
            ..out
        })
    }

    fn checkpoint(&mut self, numbered: Option<usize>) -> Result<()> {
        if !self.is_main() {
            return Ok(());
        }
        if self.poisoned {
            self.emit(Event::Warning { message: "not checkpointing: the loss went non-finite; the last good checkpoint is kept".into() });
            return Ok(());
        }
        self.run_dir.flush()?;
        let meta = CheckpointMeta {
            format_version: 1,
            tensors: String::new(),
            tensors_bytes: 0,
            epoch: self.iter / self.niter,
            iter: self.iter,
            niter_per_ep: self.niter,
            loader_batch: self.iter % self.niter,
            seed: self.config.run.seed,
            optimizer_steps: self.state.optimizer.state.iter().map(|(k, v)| (k.clone(), v.step)).collect(),
            schedules: self.schedules.iter().map(|(k, v)| (*k, v.clone())).collect(),
            loss_scale: self.state.amp.as_ref().map(|a| a.scale),
            last_loss: self.last_loss,
            time: now(),
            config: self.config.to_toml(),
        };
        let (path, bytes) = checkpoint::save(&self.run_dir.checkpoint_dir(), &self.state, &meta, numbered)?;
        let info = CheckpointInfo { path, epoch: meta.epoch, iter: meta.iter, bytes, loss: self.last_loss, time: meta.time };
        self.run_dir.event("checkpoint", &info)?;
        self.emit(Event::CheckpointSaved(info));
        Ok(())
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

fn resume_from(
    state: &mut DinoState,
    ckpt: &LoadedCheckpoint,
    schedules: &mut BTreeMap<ScheduleName, Schedule>,
    niter: usize,
) -> Result<()> {
    if ckpt.meta.niter_per_ep != niter {
        anyhow::bail!(
            "checkpoint {} was taken with {} iterations per epoch, the data now gives {niter}: the data set or batch size changed",
            ckpt.path.display(),
            ckpt.meta.niter_per_ep
        );
    }
    checkpoint::restore(state, ckpt)?;
    for (name, saved) in &ckpt.meta.schedules {
        if let Some(s) = schedules.get_mut(name) {
            for e in &saved.edits {
                s.apply(*e);
            }
        }
    }
    Ok(())
}
