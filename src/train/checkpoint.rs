//! A training state as checkpoint tensors and back: the student's and teacher's parameters under
//! the reference's names, the optimizer's moments, the loss centre. The files themselves (format,
//! atomic writes, fallback to the previous checkpoint) are `run::checkpoint`'s.

use super::optim::ParamState;
use super::step::DinoState;
use crate::files::ShowPath;
use crate::model::weights;
use crate::run::checkpoint::{self as files, CheckpointMeta, LoadedCheckpoint, Retention, Saved};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

pub fn tensors_of(state: &DinoState) -> Vec<(String, Tensor)> {
    let mut out = vec![];
    for (k, v) in weights::named_tensors(&state.student_vs) {
        out.push((format!("student.{k}"), v));
    }
    for (k, v) in weights::named_tensors(&state.teacher_vs) {
        out.push((format!("teacher.{k}"), v));
    }
    for (k, st) in &state.optimizer.state {
        if let Some(b) = &st.buf1 {
            out.push((format!("optim.{k}.buf1"), b.shallow_clone()));
        }
        if let Some(b) = &st.buf2 {
            out.push((format!("optim.{k}.buf2"), b.shallow_clone()));
        }
    }
    out.push(("loss.center".into(), state.loss.center.shallow_clone()));
    out.into_iter().map(|(k, v)| (k, v.to_device(tch::Device::Cpu).contiguous())).collect()
}

/// Writes the state as a checkpoint of `dir` (see `run::checkpoint::save`).
pub fn save(dir: &Path, state: &DinoState, meta: &CheckpointMeta, numbered: Option<usize>, retention: &Retention) -> Result<Saved> {
    files::save(dir, &tensors_of(state), meta, numbered, retention)
}

/// Puts a loaded checkpoint's tensors back into the models, optimizer and loss.
pub fn restore(state: &mut DinoState, ckpt: &LoadedCheckpoint) -> Result<()> {
    let pick = |prefix: &str| -> BTreeMap<String, Tensor> {
        ckpt.tensors.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.shallow_clone()))).collect()
    };
    weights::load_into(&state.student_vs, "", &pick("student."), &ckpt.path)?;
    weights::load_into(&state.teacher_vs, "", &pick("teacher."), &ckpt.path)?;
    let device = state.loss.center.device();
    let center = ckpt.tensors.get("loss.center").with_context(|| format!("{}: no loss.center", ckpt.path.shown()))?;
    state.loss.center = center.to_device(device);
    state.optimizer.state.clear();
    let params: BTreeMap<String, Tensor> = state.optimizer.params().iter().map(|(k, p)| (k.clone(), p.shallow_clone())).collect();
    for (name, steps) in &ckpt.meta.optimizer_steps {
        // In the parameter's memory layout (a ResNet's convolutions are channels-last on the CPU;
        // files hold C order), so the optimizer's element-wise updates run on matching strides.
        let like_param = |t: &Tensor| match params.get(name) {
            Some(p) if p.size() == t.size() => {
                let mut b = p.empty_like();
                b.copy_(t);
                b
            }
            _ => t.to_device(device),
        };
        let buf = |i: u8| ckpt.tensors.get(&format!("optim.{name}.buf{i}")).map(like_param);
        state.optimizer.state.insert(name.clone(), ParamState { step: *steps, buf1: buf(1), buf2: buf(2) });
    }
    if let (Some(scale), Some(amp)) = (ckpt.meta.loss_scale, state.amp.as_mut()) {
        amp.scale = scale;
    }
    Ok(())
}
