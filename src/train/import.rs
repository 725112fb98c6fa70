//! Training from PyTorch weights (files read by `run::pytorch`): a run that starts from a
//! reference checkpoint or an official backbone (`--pretrained_weights`: networks from the file,
//! optimizer and centre fresh), and a reference run continued (`--resume_from`: student, teacher,
//! optimizer moments, loss centre, loss scale, epoch).
//!
//! The reference's optimizer state is stored by parameter index: `get_params_groups(student)`
//! puts the student's trainable parameters, in `named_parameters()` order, into a weight-decayed
//! group and a group without decay (biases and 1-D tensors), and `torch.optim` numbers them
//! group after group. The same order is rebuilt here from our names (`model::names`) and the same
//! rule (`optim::is_regularized`); when the file's groups do not line up with ours exactly, the
//! moments are not guessed at: the optimizer starts fresh and the caller is told why.

use super::optim::{is_regularized, ParamState};
use super::step::DinoState;
use crate::config::OptimizerKind;
use crate::files::ShowPath;
use crate::interop::pth::Value;
use crate::model::names::{is_reference_name, reference_order};
use crate::model::weights;
use crate::run::pytorch::{ImportedFile, Network};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use tch::{nn::VarStore, Kind, Tensor};

/// A continued reference run: where it goes on, and what could not be taken.
#[derive(Debug)]
pub struct Resumed {
    /// The epoch to run next (the file's `epoch`: the reference saves `epoch + 1`).
    pub epoch: usize,
    /// Whether the optimizer's moments were taken from the file.
    pub optimizer_restored: bool,
    /// Problems that did not stop the run (an optimizer started fresh, a missing centre).
    pub warnings: Vec<String>,
}

fn load_network(vs: &VarStore, net: &Network, file: &ImportedFile) -> Result<()> {
    weights::load_into(vs, "backbone.", &net.backbone, &file.path)?;
    if net.head.is_empty() {
        bail!("{}: the checkpoint holds no head for this network", file.path.shown());
    }
    weights::load_into(vs, "head.", &net.head, &file.path)?;
    Ok(())
}

/// Starts a run from a file's networks: the student's backbone (and head, when the file has one
/// of the same shape) from the file's student, the teacher's from its teacher (a file of one
/// network gives both). A head that does not fit (another `out_dim`) starts fresh, the same for
/// both networks. Returns notes for the run's events.
pub fn start_from(state: &mut DinoState, file: &ImportedFile) -> Result<Vec<String>> {
    let (student, teacher) = (file.network("student")?, file.network("teacher")?);
    let mut notes = file.notes.clone();
    weights::load_into(&state.student_vs, "backbone.", &student.backbone, &file.path)?;
    let head_taken = if student.head.is_empty() {
        notes.push("the file holds no DINO head: the heads start fresh".into());
        false
    } else {
        match weights::load_into(&state.student_vs, "head.", &student.head, &file.path) {
            Ok(()) => true,
            Err(e) => {
                notes.push(format!("head not taken, it starts fresh: {e}"));
                false
            }
        }
    };
    tch::no_grad(|| state.teacher_vs.copy(&state.student_vs))?;
    if file.is_checkpoint {
        weights::load_into(&state.teacher_vs, "backbone.", &teacher.backbone, &file.path)?;
        if head_taken {
            weights::load_into(&state.teacher_vs, "head.", &teacher.head, &file.path)?;
        }
    }
    Ok(notes)
}

/// Continues a reference run: both networks must load whole; the optimizer's moments are taken
/// when they map exactly onto our parameters (else it starts fresh, with a warning).
pub fn resume(state: &mut DinoState, file: &ImportedFile, kind: OptimizerKind) -> Result<Resumed> {
    if !file.is_checkpoint {
        bail!(
            "{}: holds one network's weights, not a training checkpoint (student, teacher, epoch): use --pretrained_weights to start from it",
            file.path.shown()
        );
    }
    let epoch = file.epoch.with_context(|| format!("{}: no `epoch` to continue from", file.path.shown()))?;
    load_network(&state.student_vs, file.network("student")?, file)?;
    load_network(&state.teacher_vs, file.network("teacher")?, file)?;
    let mut warnings = vec![];
    match &file.center {
        Some(c) if c.size() == state.loss.center.size() => state.loss.center = c.to_kind(Kind::Float).to_device(state.loss.center.device()),
        Some(c) => {
            bail!("{}: dino_loss.center has shape {:?}, this run's centre {:?}", file.path.shown(), c.size(), state.loss.center.size())
        }
        None => warnings.push(format!("{}: no dino_loss.center: the centre starts at zero", file.path.shown())),
    }
    let optimizer_restored = match optimizer_state(state, file.optimizer.as_ref(), kind) {
        Ok(map) => {
            state.optimizer.state = map;
            true
        }
        Err(why) => {
            warnings.push(format!("optimizer state of {} not restored ({why}): the optimizer starts fresh", file.path.shown()));
            false
        }
    };
    if let (Some(scale), Some(amp)) = (file.fp16_scale, state.amp.as_mut()) {
        amp.scale = scale;
    }
    Ok(Resumed { epoch, optimizer_restored, warnings })
}

/// Our trainable parameters as the reference numbers them: group 0 (decayed) then group 1, each
/// in `named_parameters()` order.
pub fn reference_groups(params: &[(String, Tensor)]) -> Result<[Vec<(String, Tensor)>; 2], String> {
    if let Some((n, _)) = params.iter().find(|(n, _)| !is_reference_name(n)) {
        return Err(format!("parameter {n} has no place in the reference's order"));
    }
    let mut ordered: Vec<(String, Tensor)> = params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    ordered.sort_by(|a, b| reference_order(&a.0, &b.0));
    let (decayed, plain): (Vec<_>, Vec<_>) = ordered.into_iter().partition(|(n, t)| is_regularized(n, t));
    Ok([decayed, plain])
}

/// The file's optimizer state under our parameter names, or why it does not map.
fn optimizer_state(state: &DinoState, opt: Option<&Value>, kind: OptimizerKind) -> Result<BTreeMap<String, ParamState>, String> {
    let opt = opt.ok_or("the file has no optimizer state")?;
    let groups = opt.get("param_groups").and_then(Value::as_slice).ok_or("no param_groups")?;
    let ids: Vec<Vec<i64>> = groups
        .iter()
        .map(|g| g.get("params").and_then(Value::as_slice).map(|p| p.iter().filter_map(Value::as_int).collect()))
        .collect::<Option<_>>()
        .ok_or("a parameter group without params")?;
    let ours = reference_groups(state.optimizer.params())?;
    let (theirs_len, ours_len): (Vec<usize>, Vec<usize>) = (ids.iter().map(Vec::len).collect(), ours.iter().map(Vec::len).collect());
    if theirs_len != ours_len {
        return Err(format!("its parameter groups hold {theirs_len:?} parameters, this run's {ours_len:?}"));
    }
    let by_id = opt.get("state").and_then(Value::as_dict).ok_or("no state")?;
    let mut out = BTreeMap::new();
    for (group_ids, group) in ids.iter().zip(&ours) {
        for (id, (name, param)) in group_ids.iter().zip(group) {
            // A parameter never stepped (the frozen last layer of epoch 0) has no state yet.
            let Some((_, entry)) = by_id.iter().find(|(k, _)| k.as_int() == Some(*id)) else { continue };
            out.insert(name.clone(), param_state(entry, kind, param).map_err(|e| format!("parameter {id} ({name}): {e}"))?);
        }
    }
    Ok(out)
}

/// One parameter's `torch.optim` state as ours: AdamW's `step`, `exp_avg`, `exp_avg_sq`; SGD's
/// `momentum_buffer`; the reference LARS's `mu`.
fn param_state(entry: &Value, kind: OptimizerKind, param: &Tensor) -> Result<ParamState, String> {
    let buffer = |key: &str| -> Result<Option<Tensor>, String> {
        match entry.get(key) {
            None | Some(Value::None) => Ok(None),
            Some(Value::Tensor(t)) if t.size() == param.size() => Ok(Some(t.to_kind(Kind::Float).to_device(param.device()))),
            Some(Value::Tensor(t)) => Err(format!("{key} has shape {:?}, the parameter {:?}", t.size(), param.size())),
            Some(other) => Err(format!("{key} is {other:?}, not a tensor")),
        }
    };
    let required = |key: &str| buffer(key)?.map(Some).ok_or_else(|| format!("no {key}: the file's optimizer is not {kind:?}"));
    Ok(match kind {
        OptimizerKind::Adamw => {
            let step = match entry.get("step") {
                Some(Value::Tensor(t)) => t.double_value(&[]),
                Some(v) => v.as_f64().ok_or("step is not a number")?,
                None => return Err("no step: the file's optimizer is not Adamw".into()),
            };
            ParamState { step: step.max(0.0) as u64, buf1: required("exp_avg")?, buf2: required("exp_avg_sq")? }
        }
        OptimizerKind::Sgd if entry.get("exp_avg").is_some() || entry.get("mu").is_some() => {
            return Err("no momentum_buffer: the file's optimizer is not Sgd".into())
        }
        OptimizerKind::Sgd => ParamState { step: 0, buf1: buffer("momentum_buffer")?, buf2: None },
        OptimizerKind::Lars => ParamState { step: 0, buf1: required("mu")?, buf2: None },
    })
}
