//! Evaluations asked for while training runs (TUI `k`/`l`, `dino ctl eval`, `eval_knn_every`) run
//! on their own thread with a copy of the weights, so a step never changes them mid-evaluation.
//! On CUDA training goes on meanwhile. On the CPU the two would fight over the same cores (with
//! libgomp's spinning threads that is slower than taking turns), so there the trainer waits for the
//! worker, and the result says so.

use super::live::{knn_of_backbone, linear_of_backbone};
use super::source::{self, SourceSpec};
use super::{record, EvalError};
use crate::config::TrainConfig;
use crate::files::ShowPath;
use crate::model::{Backbone, EvalWeights};
use crate::protocol::{EvalKind, EvalOutcome, Event};
use crossbeam_channel::{Receiver, Sender};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn::VarStore, Device};

pub struct EvalWorker {
    pub kind: EvalKind,
    done: Receiver<Result<EvalOutcome, String>>,
}

impl EvalWorker {
    /// Starts an evaluation; progress goes to `events` as it happens.
    pub fn spawn(
        kind: EvalKind,
        weights: EvalWeights,
        config: TrainConfig,
        device: Device,
        run_dir: PathBuf,
        events: Sender<Event>,
    ) -> anyhow::Result<Self> {
        let (tx, done) = crossbeam_channel::bounded(1);
        std::thread::Builder::new().name("eval".into()).spawn(move || {
            let started = Instant::now();
            let mut progress = |done, total| {
                let _ = events.send(Event::EvalProgress { kind, done, total });
            };
            progress(0, 1);
            let result = evaluate(kind, weights, &config, device, &run_dir, &mut progress).map(|(json, summary)| EvalOutcome {
                kind,
                json,
                summary,
                seconds: started.elapsed().as_secs_f64(),
            });
            if result.is_err() {
                progress(1, 1);
            }
            // The features and batches are freed; without this the process would keep their pages.
            crate::allocator::release_free_memory();
            let _ = tx.send(result.map_err(|e| format!("{} evaluation failed: {e}", kind.label())));
        })?;
        Ok(Self { kind, done })
    }

    /// The outcome once the worker has finished, without waiting.
    pub fn try_finish(&self) -> Option<Result<EvalOutcome, String>> {
        match self.done.try_recv() {
            Ok(r) => Some(r),
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Some(Err(format!("the {} evaluation thread died", self.kind.label()))),
        }
    }

    /// Waits for the outcome.
    pub fn wait(&self) -> Result<EvalOutcome, String> {
        self.done.recv().unwrap_or_else(|_| Err(format!("the {} evaluation thread died", self.kind.label())))
    }
}

/// The weights an evaluation ran on, as its record names them.
struct Evaluated {
    epoch: Option<usize>,
    iter: Option<usize>,
    described: String,
    content_id: Option<String>,
    checkpoint: Option<PathBuf>,
}

/// Builds the backbone `weights` names, with what the record says about it.
fn open(weights: EvalWeights, config: &TrainConfig, device: Device) -> Result<(VarStore, Backbone, Evaluated), EvalError> {
    Ok(match weights {
        EvalWeights::Snapshot { vs, backbone, epoch, iter, content_id } => {
            let e = Evaluated { epoch: Some(epoch), iter: Some(iter), described: "teacher (live)".into(), content_id, checkpoint: None };
            (vs, *backbone, e)
        }
        EvalWeights::Checkpoint(path) => {
            let spec = SourceSpec::teacher(path.display().to_string(), device, config.run.seed);
            let s = source::load(&spec)?;
            let described = format!("teacher of {}", path.shown());
            (s.vs, s.backbone, Evaluated { epoch: s.epoch, iter: s.iter, described, content_id: s.content_id, checkpoint: Some(path) })
        }
        EvalWeights::Random { seed } => {
            let s = source::random_like(config, &SourceSpec::teacher("random", device, seed))?;
            (s.vs, s.backbone, Evaluated { epoch: None, iter: None, described: s.description, content_id: None, checkpoint: None })
        }
    })
}

/// Runs one evaluation and writes `RUN_DIR/evals/KIND-LABEL-DATA.json` (outliers: their CSV and map).
fn evaluate(
    kind: EvalKind,
    weights: EvalWeights,
    config: &TrainConfig,
    device: Device,
    run_dir: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(serde_json::Value, String), EvalError> {
    let random = matches!(weights, EvalWeights::Random { .. });
    let (_vs, backbone, w) = open(weights, config, device)?;
    let data_root = &config.run.data_path;
    let label = if random { format!("random-{}", record::data_tag(data_root)) } else { record::result_label(w.epoch, w.iter, data_root) };
    let (mut json, summary, tag) = match kind {
        EvalKind::Knn => {
            let report = knn_of_backbone(&backbone, config, device, progress)?;
            let mut json = serde_json::to_value(&report).map_err(|e| EvalError::Invalid(e.to_string()))?;
            json["temperature"] = super::live::DEFAULT_TEMPERATURE.into();
            (json, report.summary(), "knn")
        }
        EvalKind::Linear => {
            let report = linear_of_backbone(&backbone, config, device, config.run.seed, progress)?;
            (serde_json::to_value(&report).map_err(|e| EvalError::Invalid(e.to_string()))?, report.summary(), "linear")
        }
        EvalKind::Outliers => {
            let (json, summary) = super::live::outliers_of_backbone(&backbone, config, device, run_dir, &label, progress)?;
            (json, summary, "outliers")
        }
    };
    json["kind"] = tag.into();
    json["weights"] = w.described.into();
    json["epoch"] = w.epoch.into();
    json["iter"] = w.iter.into();
    json["content_id"] = w.content_id.into();
    json["checkpoint"] = w.checkpoint.map(|p| p.display().to_string()).into();
    json["random_weights"] = random.into();
    json["data"] = data_root.display().to_string().into();
    json["data_tag"] = record::data_tag(data_root).into();
    if kind != EvalKind::Outliers {
        // Outlier reports are their CSV and map, already written.
        let file = record::write_result(run_dir, tag, &label, &json)?;
        json["file"] = file.display().to_string().into();
    }
    let at = w.epoch.map(|e| format!(" at epoch {e}")).unwrap_or_default();
    Ok((json, format!("{summary}{at}")))
}
