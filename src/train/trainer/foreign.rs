//! Runs that begin from PyTorch weights rather than from scratch: `--resume_from` continues a
//! reference run at its epoch, `--pretrained_weights` starts a new run from a file's networks.
//! Only for a run directory without checkpoints of its own: once it has one, the run resumes from
//! that as every run does (the settings stay in its config, and are then ignored).

use crate::config::TrainConfig;
use crate::run::pytorch;
use crate::train::import;
use crate::train::step::DinoState;
use anyhow::{bail, Result};

/// How the run began: the iteration it continues at and what its events should say.
pub(super) struct Begun {
    pub iter: usize,
    /// The `events.jsonl` line: `resume` (a continued reference run) or `pretrained`.
    pub kind: &'static str,
    pub details: serde_json::Value,
    pub warnings: Vec<String>,
}

/// Loads what `--resume_from` / `--pretrained_weights` name into `state`; `None` when neither is set.
pub(super) fn begin(state: &mut DinoState, config: &TrainConfig, niter: usize) -> Result<Option<Begun>> {
    match (&config.start.resume_from, &config.start.pretrained_weights) {
        (Some(_), Some(_)) => {
            bail!("give --resume_from (continue a reference run) or --pretrained_weights (start from its weights), not both")
        }
        (Some(path), None) => {
            let file = pytorch::read(path)?;
            let r = import::resume(state, &file, config.optim.optimizer)?;
            let iter = r.epoch * niter;
            let details = serde_json::json!({
                "iter": iter,
                "epoch": r.epoch,
                "checkpoint": path,
                "reference": true,
                "optimizer": if r.optimizer_restored { "restored" } else { "fresh" },
                "notes": file.notes,
            });
            Ok(Some(Begun { iter, kind: "resume", details, warnings: r.warnings }))
        }
        (None, Some(path)) => {
            let file = pytorch::read(path)?;
            let notes = import::start_from(state, &file)?;
            let details = serde_json::json!({ "from": path, "checkpoint": file.is_checkpoint, "notes": notes });
            Ok(Some(Begun { iter: 0, kind: "pretrained", details, warnings: vec![] }))
        }
        (None, None) => Ok(None),
    }
}
