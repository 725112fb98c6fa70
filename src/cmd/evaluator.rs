//! Wires the evaluation worker of `eval` into the trainer of `train` (which knows only its
//! `Evaluator` trait), so the two library layers stay independent of each other.

use crate::eval::worker::EvalWorker;
use crate::model::EvalWeights;
use crate::protocol::{EvalKind, EvalOutcome};
use crate::train::evaluator::{EvalContext, Evaluator, RunningEval};

/// The evaluator every front-end gives its trainer: `eval::worker` on its own thread.
pub fn evaluator() -> Box<dyn Evaluator> {
    Box::new(WorkerEvaluator)
}

struct WorkerEvaluator;

impl Evaluator for WorkerEvaluator {
    fn start(&self, kind: EvalKind, weights: EvalWeights, ctx: EvalContext) -> anyhow::Result<Box<dyn RunningEval>> {
        Ok(Box::new(EvalWorker::spawn(kind, weights, ctx.config, ctx.device, ctx.run_dir, ctx.events)?))
    }
}

impl RunningEval for EvalWorker {
    fn kind(&self) -> EvalKind {
        self.kind
    }

    fn try_finish(&self) -> Option<Result<EvalOutcome, String>> {
        EvalWorker::try_finish(self)
    }

    fn wait(&self) -> Result<EvalOutcome, String> {
        EvalWorker::wait(self)
    }
}
