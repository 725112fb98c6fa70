//! Evaluations a trainer runs (asked for by clients or `--eval_knn_every`): one at a time on the
//! evaluator's thread, the others queued in order; results recorded in the run directory.

use super::Trainer;
use crate::model::EvalWeights;
use crate::protocol::{EvalKind, Event};
use crate::train::evaluator::{self, EvalContext, Evaluator, RunningEval};
use anyhow::Result;
use std::collections::VecDeque;
use std::path::PathBuf;
use tch::Device;

pub(super) struct EvalQueue {
    evaluator: Box<dyn Evaluator>,
    /// The evaluation running on its own thread, if any.
    running: Option<Box<dyn RunningEval>>,
    /// Evaluations asked for while one was running, started in order.
    queued: VecDeque<(EvalKind, Requested)>,
}

/// The weights an evaluation was asked for.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Requested {
    /// The teacher as it is now (copied between two iterations), with the content id of the
    /// checkpoint just saved of these very weights (an epoch's end), if one was.
    Live(Option<String>),
    Checkpoint(PathBuf),
    /// The architecture with random weights: the baseline.
    Random,
}

impl EvalQueue {
    pub(super) fn new(evaluator: Box<dyn Evaluator>) -> Self {
        Self { evaluator, running: None, queued: VecDeque::new() }
    }

    pub(super) fn is_running(&self) -> bool {
        self.running.is_some()
    }
}

impl Trainer {
    /// Starts an evaluation of the live teacher (or of a checkpoint) on its own thread. A failed
    /// start or evaluation is reported, never fatal to the run.
    pub(super) fn start_eval(&mut self, kind: EvalKind, requested: Requested) -> Result<()> {
        if !self.is_main() {
            return Ok(());
        }
        if let Some(w) = &self.evals.running {
            let message = format!("{} evaluation queued after the running {} evaluation", kind.label(), w.kind().label());
            self.emit(Event::Warning { message });
            self.evals.queued.push_back((kind, requested));
            return Ok(());
        }
        let weights = match requested {
            Requested::Checkpoint(path) => EvalWeights::Checkpoint(path),
            Requested::Random => EvalWeights::Random { seed: self.config.run.seed },
            Requested::Live(content_id) => {
                let (vs, backbone) = evaluator::snapshot_teacher(&self.state.teacher_vs, &self.config, self.device)?;
                let epoch = self.iter / self.data.niter;
                EvalWeights::Snapshot { vs, backbone: Box::new(backbone), epoch, iter: self.iter, content_id }
            }
        };
        let ctx = EvalContext {
            config: self.config.clone(),
            device: self.device,
            run_dir: self.run_dir.path.clone(),
            events: self.events.clone(),
        };
        let worker = self.evals.evaluator.start(kind, weights, ctx)?;
        self.evals.running = Some(worker);
        Ok(())
    }

    /// The random-weights k-NN the health verdict compares the run's k-NN with, measured once at
    /// the start of a run that evaluates k-NN (`--eval_knn_every`) and kept in `evals/` for its
    /// resumes. (The file name is the evaluation worker's `knn-random-DATA.json`.)
    pub(super) fn measure_baseline(&mut self) -> Result<()> {
        if self.config.run.eval_knn_every == 0 || !self.is_main() {
            return Ok(());
        }
        let measured = std::fs::read_dir(self.run_dir.path.join("evals"))
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("knn-random-")))
            .unwrap_or(false);
        if measured {
            return Ok(());
        }
        self.start_eval(EvalKind::Knn, Requested::Random)
    }

    /// Records the running evaluation's result once it is there; `wait` blocks until it is.
    pub(super) fn poll_eval(&mut self, wait: bool) -> Result<()> {
        let Some(worker) = &self.evals.running else { return Ok(()) };
        let outcome = if wait { Some(worker.wait()) } else { worker.try_finish() };
        let worker_kind = worker.kind();
        let Some(outcome) = outcome else { return Ok(()) };
        self.evals.running = None;
        match outcome {
            Ok(mut o) => {
                o.json["seconds"] = o.seconds.into();
                if let Some(p) = crate::protocol::health::KnnPoint::from_record(&o.json) {
                    self.health.tracker.push_knn(p);
                }
                self.run_dir.event("eval", &o.json)?;
                self.run_dir.eval_scalars(&o.json);
                let how = if self.device == Device::Cpu { "training paused meanwhile" } else { "training went on meanwhile" };
                let summary = format!("{}; {:.0} s, {how}", o.summary, o.seconds);
                tracing::info!("{summary}");
                self.emit(Event::EvalResult { kind: o.kind, summary, json: o.json });
            }
            Err(message) => {
                tracing::warn!("{message}");
                // A failure every epoch must leave a trace in the run directory, not only on screen.
                self.run_dir.event("eval_failed", &serde_json::json!({ "eval": worker_kind.label(), "message": message }))?;
                self.emit(Event::Error { message });
            }
        }
        match self.evals.queued.pop_front() {
            Some((kind, checkpoint)) => self.start_eval(kind, checkpoint),
            None => Ok(()),
        }
    }
}
