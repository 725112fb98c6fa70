//! The evaluations a trainer starts (k-NN, the quick probe, outlier scores of its live teacher or
//! of one of its checkpoints) are carried out by an `Evaluator` it is given, so `train` does not
//! depend on `eval`: the front-end wires in the evaluation worker (`cmd::evaluator`), and a test
//! that needs no evaluation wires in `NoEvaluator`.

use crate::config::TrainConfig;
use crate::model::{Backbone, EvalWeights};
use crate::protocol::{EvalKind, EvalOutcome, Event};
use crossbeam_channel::Sender;
use std::path::PathBuf;
use tch::{nn::VarStore, Device};

/// What an evaluation needs besides its weights.
pub struct EvalContext {
    pub config: TrainConfig,
    pub device: Device,
    pub run_dir: PathBuf,
    /// Progress events go here as the evaluation runs.
    pub events: Sender<Event>,
}

/// An evaluation running on its own thread.
pub trait RunningEval: Send {
    fn kind(&self) -> EvalKind;
    /// The outcome once it has finished, without waiting.
    fn try_finish(&self) -> Option<Result<EvalOutcome, String>>;
    /// Waits for the outcome.
    fn wait(&self) -> Result<EvalOutcome, String>;
}

pub trait Evaluator: Send {
    fn start(&self, kind: EvalKind, weights: EvalWeights, ctx: EvalContext) -> anyhow::Result<Box<dyn RunningEval>>;
}

/// Refuses every evaluation: for trainers that are not asked for any (tests, tools).
pub struct NoEvaluator;

impl Evaluator for NoEvaluator {
    fn start(&self, kind: EvalKind, _: EvalWeights, _: EvalContext) -> anyhow::Result<Box<dyn RunningEval>> {
        anyhow::bail!("this trainer runs no {} evaluations", kind.label())
    }
}

/// Copies the teacher's backbone into a fresh `VarStore` on the same device.
pub fn snapshot_teacher(teacher_vs: &VarStore, config: &TrainConfig, device: Device) -> anyhow::Result<(VarStore, Backbone)> {
    let mut vs = VarStore::new(device);
    // Built under `backbone` so the names match the teacher's, which `copy` requires.
    let backbone = Backbone::new(vs.root() / "backbone", &config.backbone_spec(0.0));
    tch::no_grad(|| vs.copy(teacher_vs))?;
    Ok((vs, backbone))
}
