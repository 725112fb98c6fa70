//! Everything a run needs before its first iteration: the training images (minus `--exclude`),
//! the device, the process group of a data-parallel job, the schedules, and the checkpoint to
//! resume from.

use super::evals::EvalQueue;
use super::foreign::{self, Begun};
use super::sync::RankSync;
use super::{resume_from, OnNonFinite, Trainer, TrainingData};
use crate::config::{recipe, TrainConfig};
use crate::data::{DataLayout, LeftOut, Shard};
use crate::dist::ProcessGroup;
use crate::files::ShowPath;
use crate::protocol::{Command, Event};
use crate::run::checkpoint::{self as checkpoint_files, LoadedCheckpoint};
use crate::run::dir::RunDir;
use crate::train::evaluator::Evaluator;
use crate::train::step::DinoState;
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use std::path::PathBuf;
use std::sync::Arc;
use tch::Device;

impl Trainer {
    pub(super) fn prepare(
        config: TrainConfig,
        on_non_finite: OnNonFinite,
        commands: Receiver<Command>,
        events: Sender<Event>,
        evaluator: Box<dyn Evaluator>,
    ) -> Result<Self> {
        let (files, excluded, left_out) = training_files(&config)?;
        let dist = crate::dist::DistEnv::from_env()?;
        let device = crate::config::validate::resolve_device(&config.run.device)?;
        let gpus = if device.is_cuda() { tch::Cuda::device_count().max(0) as usize } else { 0 };
        let device = rank_device(device, &config.run.device, dist.as_ref().map(|e| e.local_rank), gpus)?;
        let group = join_group(dist, device)?;
        let shard = group.as_ref().map(|g| Shard { rank: g.rank, world: g.world_size }).unwrap_or_default();
        let batch = config.optim.batch_size_per_gpu;
        let niter = shard.len(files.len()) / batch;
        if niter == 0 {
            anyhow::bail!("{} training images shared by {} processes leave none a full batch of {batch}", files.len(), shard.world);
        }
        let memory_warning = check_memory(&config, niter, device)?;
        tch::manual_seed(config.run.seed as i64);
        let mut state = DinoState::new(&config, device)?;
        if let Some(g) = &group {
            // One starting point for every rank: rank 0's student (the teacher is its copy).
            state.join_group(g.clone())?;
        }
        let main_run = config.run_dir();
        let ckpt_dir = main_run.join(crate::run::dir::CHECKPOINT_DIR);
        let (ckpt, problems) = checkpoint_files::load_latest(&ckpt_dir);
        if ckpt.is_none() && !problems.is_empty() {
            // Starting over would append a second history to this run's files: refuse, delete nothing.
            anyhow::bail!(
                "no usable checkpoint in {}: {}; nothing was deleted. Move that folder away to start this run over, \
                 or train into a new --output_dir",
                ckpt_dir.shown(),
                problems.join("; ")
            );
        }
        // Only rank 0 writes the run directory; the others keep their own logs beside it.
        let run_path = match &group {
            Some(g) if g.rank > 0 => main_run.join("ranks").join(format!("rank{}", g.rank)),
            _ => main_run.clone(),
        };
        let mut schedules = crate::config::schedules::build(&config, niter, shard.world);
        let (mut iter, mut last_loss, mut begun) = (0, None, None);
        if let Some(ckpt) = &ckpt {
            resume_from(&mut state, ckpt, Some(&mut schedules), niter)?;
            iter = ckpt.meta.iter;
            last_loss = ckpt.meta.last_loss;
            tch::manual_seed(config.run.seed as i64 + iter as i64);
        } else if let Some(b) = foreign::begin(&mut state, &config, niter)? {
            iter = b.iter;
            tch::manual_seed(config.run.seed as i64 + iter as i64);
            begun = Some(b);
        }
        // Before the run directory opens its files for appending (the truncation replaces them):
        // what was written past the resume point goes, all of it when the run starts from 0.
        RunDir::truncate_to(&run_path, iter, niter)?;
        let mut run_dir = RunDir::open(&run_path, &config)?;
        if group.as_ref().is_some_and(|g| g.rank > 0) {
            run_dir.without_tensorboard();
        }
        let start = StartRecord {
            problems: &problems,
            excluded: excluded.as_ref(),
            left_out: &left_out,
            ckpt: ckpt.as_ref(),
            begun: begun.as_ref(),
            iter,
            plan_warnings: plan_warnings(&config, files.len(), niter, memory_warning),
        };
        start.write(&mut run_dir, &events)?;
        Ok(Self {
            config,
            device,
            state,
            data: TrainingData { files, niter, shard, skipped_files: 0 },
            schedules,
            run_dir,
            commands,
            events,
            on_non_finite,
            iter,
            last_loss,
            paused: false,
            ranks: RankSync::new(group),
            evals: EvalQueue::new(evaluator),
            health: Default::default(),
        })
    }
}

/// What `events.jsonl` says about how the run started.
struct StartRecord<'a> {
    problems: &'a [String],
    excluded: Option<&'a serde_json::Value>,
    left_out: &'a [LeftOut],
    ckpt: Option<&'a LoadedCheckpoint>,
    begun: Option<&'a Begun>,
    iter: usize,
    /// Settings that make this plan fail (`config::recipe::warnings`).
    plan_warnings: Vec<String>,
}

impl StartRecord<'_> {
    fn write(&self, run_dir: &mut RunDir, events: &Sender<Event>) -> Result<()> {
        for p in self.problems {
            run_dir.event("checkpoint_unusable", &serde_json::json!({ "message": p }))?;
            let _ = events.send(Event::Warning { message: format!("checkpoint unusable, resuming from an older one: {p}") });
        }
        if let Some(details) = self.excluded {
            run_dir.event("exclude", details)?;
        }
        for o in self.left_out {
            let message = format!("skipped {}: {}", o.path.shown(), o.reason);
            tracing::warn!("{message}");
            // Lossy: a file name need not be UTF-8, and JSON holds only text.
            run_dir.event("skipped_file", &serde_json::json!({ "path": o.path.to_string_lossy(), "reason": o.reason }))?;
            let _ = events.send(Event::Warning { message });
        }
        for w in &self.plan_warnings {
            tracing::warn!("{w}");
            run_dir.event("warning", &serde_json::json!({ "message": w }))?;
            let _ = events.send(Event::Warning { message: w.clone() });
        }
        if let Some(ckpt) = self.ckpt {
            run_dir.event("resume", &serde_json::json!({ "iter": self.iter, "checkpoint": ckpt.path.to_string_lossy() }))?;
        }
        if let Some(b) = self.begun {
            run_dir.event(b.kind, &b.details)?;
            for w in &b.warnings {
                tracing::warn!("{w}");
                run_dir.event("warning", &serde_json::json!({ "message": w }))?;
                let _ = events.send(Event::Warning { message: w.clone() });
            }
        }
        Ok(())
    }
}

/// The pretext images, minus the `--exclude` list (with what it removed, for `events.jsonl`),
/// and what discovery left out (FIFOs and the like, link loops).
/// Before anything is allocated: a plan that cannot fit is refused with its estimate; one that
/// may not fit gets a warning.
fn check_memory(config: &TrainConfig, niter: usize, device: Device) -> Result<Option<String>> {
    use crate::config::memory::{available_memory, check, MemoryEstimate};
    check(&MemoryEstimate::of(config, niter), available_memory(), device.is_cuda()).map_err(anyhow::Error::msg)
}

/// The recipe's warnings about a plan, and the memory's.
fn plan_warnings(config: &TrainConfig, images: usize, niter: usize, memory: Option<String>) -> Vec<String> {
    let plan = recipe::Plan { images, steps_per_epoch: niter, epochs: config.optim.epochs };
    recipe::warnings(config, &plan).into_iter().chain(memory).collect()
}

fn training_files(config: &TrainConfig) -> Result<(Vec<PathBuf>, Option<serde_json::Value>, Vec<LeftOut>)> {
    let layout = DataLayout::discover(&config.run.data_path)?;
    tracing::info!("data: {}", layout.summary());
    let mut files = layout.pretext().files.clone();
    let mut excluded = None;
    if let Some(list) = &config.run.exclude {
        let listed = crate::data::exclude::read_list(list, layout.root())
            .with_context(|| format!("cannot read the --exclude list {}", list.shown()))?;
        let e = crate::data::exclude::apply(files, &listed);
        tracing::info!(
            "--exclude {}: {} images left out, {} listed paths match no training image",
            list.shown(),
            e.removed,
            e.unmatched.len()
        );
        files = e.kept;
        excluded = Some(serde_json::json!({ "file": list.to_string_lossy(), "removed": e.removed, "unmatched": e.unmatched.len() }));
    }
    let batch = config.optim.batch_size_per_gpu;
    if files.len() < batch {
        anyhow::bail!(
            "{} holds {} training images, fewer than one batch (--batch_size_per_gpu {batch})",
            config.run.data_path.shown(),
            files.len()
        );
    }
    Ok((files, excluded, layout.left_out().to_vec()))
}

/// The process group of a data-parallel job (torchrun / SLURM environment), or None.
/// The GPU of a process of a multi-process job: its `LOCAL_RANK`'s, as torchrun jobs and the
/// reference's `init_distributed_mode` (`torch.cuda.set_device(args.gpu)`) do, unless `--device`
/// names one (`cuda:N`). One process or the CPU: the device as resolved.
fn rank_device(device: Device, asked: &str, local_rank: Option<usize>, gpus: usize) -> Result<Device> {
    match (device, local_rank) {
        (Device::Cuda(_), Some(rank)) if !asked.starts_with("cuda:") => {
            if rank >= gpus {
                anyhow::bail!("LOCAL_RANK {rank} has no GPU of its own: this machine has {gpus} (one process per GPU)");
            }
            Ok(Device::Cuda(rank))
        }
        _ => Ok(device),
    }
}

fn join_group(env: Option<crate::dist::DistEnv>, device: Device) -> Result<Option<Arc<ProcessGroup>>> {
    let Some(env) = env else { return Ok(None) };
    let timeout = crate::dist::timeout_from_env();
    tracing::info!("rank {} of {}: joining {}:{} (timeout {timeout:?})", env.rank, env.world_size, env.master_addr, env.master_port);
    Ok(Some(Arc::new(ProcessGroup::new(&env, device.is_cuda(), timeout)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_process_of_a_cuda_job_takes_the_gpu_of_its_local_rank() {
        let cuda = |i| Device::Cuda(i);
        assert_eq!(rank_device(cuda(0), "cuda", Some(1), 2).unwrap(), cuda(1));
        assert_eq!(rank_device(cuda(0), "auto", Some(0), 2).unwrap(), cuda(0));
        // Named on the command line: kept.
        assert_eq!(rank_device(cuda(1), "cuda:1", Some(0), 2).unwrap(), cuda(1));
        // One process, or the CPU: as resolved.
        assert_eq!(rank_device(cuda(0), "cuda", None, 2).unwrap(), cuda(0));
        assert_eq!(rank_device(Device::Cpu, "cpu", Some(3), 0).unwrap(), Device::Cpu);
        let err = rank_device(cuda(0), "cuda", Some(2), 2).unwrap_err().to_string();
        assert!(err.contains("LOCAL_RANK 2") && err.contains("2"), "{err}");
    }
}
