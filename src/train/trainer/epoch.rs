//! One epoch of training: batches from the loader, a step each, metrics to the run directory
//! and the clients, and the collapse diagnostics the reference does not have.

use super::{to_device, EpochEnd, Trainer};
use crate::data::decode::DecodeLimits;
use crate::data::{LoaderConfig, MultiCropLoader, SkippedFile};
use crate::files::ShowPath;
use crate::protocol::health::{HealthTracker, Verdict};
use crate::protocol::schedule::ScheduleName;
use crate::protocol::{AlarmKind, EpochSummary, Event, IterMetrics};
use crate::run::dir::now;
use crate::train::step::{StepError, StepParams};
use anyhow::Result;
use std::time::Instant;
use tch::Device;

/// Teacher entropy (nats) under which the outputs have collapsed onto one dimension.
const COLLAPSED_ENTROPY: f64 = 0.05;

impl Trainer {
    /// Runs the rest of one epoch.
    pub(super) fn run_epoch(&mut self, epoch: usize) -> Result<EpochEnd> {
        let start_batch = self.iter % self.data.niter;
        let loader_cfg = LoaderConfig {
            batch_size: self.config.optim.batch_size_per_gpu,
            num_workers: self.config.run.num_workers,
            seed: self.config.run.seed,
            epoch: epoch as u64,
            start_batch,
            prefetch: 0,
            shard: self.data.shard,
            decode_limits: DecodeLimits { max_pixels: self.config.run.max_image_pixels },
        };
        let mut loader = MultiCropLoader::new(self.data.files.clone(), self.config.augment_config(), loader_cfg)?;
        let mut stats = EpochStats::default();
        for _ in start_batch..self.data.niter {
            match self.iteration(epoch, &mut loader, &mut stats)? {
                Flow::Next => {}
                Flow::LoaderDone => break,
                Flow::End(end) => return Ok(end),
            }
        }
        self.close_epoch(epoch, &stats)?;
        Ok(EpochEnd::Completed)
    }

    /// One iteration: commands first, then the ranks agree, then a batch and a step.
    fn iteration(&mut self, epoch: usize, loader: &mut MultiCropLoader, stats: &mut EpochStats) -> Result<Flow> {
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
            return Ok(Flow::End(EpochEnd::Stop(end)));
        }
        // On the CPU an evaluation and training would share the cores: training waits.
        self.poll_eval(self.device == Device::Cpu)?;
        let t0 = Instant::now();
        let batch = match loader.next_batch() {
            Some(b) => b?,
            None => return Ok(Flow::LoaderDone),
        };
        let data_time = t0.elapsed().as_secs_f64();
        self.record_skipped(&batch.skipped)?;
        let crops = to_device(&batch.crops, self.device);
        let out = match self.state.step(&crops, p) {
            Ok(o) => o,
            Err(StepError::NonFiniteLoss(v)) => {
                return Ok(Flow::End(match self.non_finite(v)? {
                    Some(end) => EpochEnd::Stop(end),
                    None => EpochEnd::Restored,
                }));
            }
            Err(e @ (StepError::Distributed(_) | StepError::Autocast(_))) => return Err(e.into()),
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
            koleo: (self.config.optim.koleo_loss_weight > 0.0).then_some(out.koleo),
            time: now(),
        };
        self.run_dir.metrics(&m)?;
        self.health.tracker.push_metrics(&m);
        self.emit(Event::Metrics(m));
        self.iter += 1;
        self.last_loss = Some(out.loss);
        self.diagnose(out.loss, out.teacher_entropy, stats)?;
        Ok(Flow::Next)
    }

    /// Files the loader could not decode: named in `events.jsonl` and to the clients.
    fn record_skipped(&mut self, skipped: &[SkippedFile]) -> Result<()> {
        for s in skipped {
            self.data.skipped_files += 1;
            let message = format!("skipped unreadable image {}: {}", s.path.shown(), s.reason);
            tracing::warn!("{message}");
            // Lossy: a file name need not be UTF-8, and JSON holds only text.
            self.run_dir.event("skipped_file", &serde_json::json!({ "path": s.path.to_string_lossy(), "reason": s.reason }))?;
            self.emit(Event::Warning { message });
        }
        Ok(())
    }

    /// Collapse diagnostics of one iteration: teacher entropy near 0 alarms at once; the health
    /// verdict (`protocol::health`, over a window of iterations, never in the first epoch) alarms
    /// when it turns to collapsed or diverging.
    fn diagnose(&mut self, loss: f64, teacher_entropy: f64, stats: &mut EpochStats) -> Result<()> {
        stats.loss_sum += loss;
        stats.steps += 1;
        if teacher_entropy < COLLAPSED_ENTROPY && !stats.entropy_alarmed {
            stats.entropy_alarmed = true;
            let message = format!("teacher entropy {teacher_entropy:.4} is near 0: outputs collapse to one dimension");
            self.alarm(AlarmKind::DimensionCollapse, message)?;
        }
        let health = self.health.tracker.health();
        // Once per change of alarming verdict: a verdict that flickers at its threshold does not
        // repeat its alarm.
        if health.verdict.is_alarm() && self.health.alarmed != Some(health.verdict) {
            let kind = if health.verdict == Verdict::Diverging { AlarmKind::Diverging } else { AlarmKind::UniformCollapse };
            let kind = if health.evidence.starts_with("one dimension") { AlarmKind::DimensionCollapse } else { kind };
            self.alarm(kind, format!("{health}"))?;
            self.health.alarmed = Some(health.verdict);
        }
        Ok(())
    }

    /// The epoch's `log.txt` line.
    fn close_epoch(&mut self, epoch: usize, stats: &EpochStats) -> Result<()> {
        if stats.steps == 0 {
            return Ok(());
        }
        let summary = EpochSummary {
            epoch,
            train_loss: stats.loss_sum / stats.steps as f64,
            train_lr: self.schedules[&ScheduleName::Lr].value(self.iter - 1),
            train_wd: self.schedules[&ScheduleName::Wd].value(self.iter - 1),
        };
        self.run_dir.epoch(&summary)?;
        self.emit(Event::Epoch(summary));
        Ok(())
    }
}

/// The run's health as the trainer follows it: the verdict, the alarm last raised from it, and
/// whether a non-finite loss has poisoned the state in memory.
#[derive(Default)]
pub(super) struct HealthWatch {
    pub(super) tracker: HealthTracker,
    /// The alarming verdict already reported, so a lasting collapse alarms once.
    pub(super) alarmed: Option<Verdict>,
    /// Set after a non-finite loss: the in-memory state must not be checkpointed.
    pub(super) poisoned: bool,
}

/// What the iterations of an epoch add up to.
#[derive(Default)]
struct EpochStats {
    loss_sum: f64,
    steps: usize,
    entropy_alarmed: bool,
}

/// What the epoch loop does after an iteration.
enum Flow {
    Next,
    /// The loader has no more batches (the shard is done).
    LoaderDone,
    End(EpochEnd),
}
