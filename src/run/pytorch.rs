//! Weights people already hold, as this project's names: a reference `checkpoint.pth` (`student`,
//! `teacher`, `optimizer`, `epoch`, `args`, `dino_loss`, `fp16_scaler`), a plain state dict (the
//! official `dino_deitsmall16_pretrain.pth`, `dino_resnet50_pretrain.pth`, or a `MultiCropWrapper`'s
//! `backbone.*`/`head.*`), and the same two shapes in safetensors (a bare backbone, or our own
//! checkpoint tensors `student.*`/`teacher.*`). Read without Python (`interop::pth`); whatever a
//! file holds that is not used is listed in `notes`, so nothing is dropped unsaid.

use crate::files::ShowPath;
use crate::interop::pth::{self, Value};
use crate::model::weights;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Why a weights file could not be used; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Pth(#[from] pth::PthError),
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
    #[error("{}: {message}", path.shown())]
    Layout { path: PathBuf, message: String },
}

/// A backbone and, when the file has one, a DINO head, each under the reference's names without
/// prefix (`blocks.0.attn.qkv.weight`, `mlp.0.weight`, `last_layer.weight_g`).
#[derive(Debug, Default)]
pub struct Network {
    pub backbone: BTreeMap<String, Tensor>,
    pub head: BTreeMap<String, Tensor>,
}

/// What a weights file holds, as far as this project uses it.
#[derive(Debug)]
pub struct ImportedFile {
    pub path: PathBuf,
    /// A training checkpoint (student and teacher) rather than one network's weights.
    pub is_checkpoint: bool,
    pub student: Option<Network>,
    pub teacher: Option<Network>,
    /// The optimizer's `state_dict()` as pickled: `state` by parameter index, `param_groups`.
    pub optimizer: Option<Value>,
    /// `dino_loss.center`, [1, out_dim].
    pub center: Option<Tensor>,
    /// The epoch the run continues with (the reference saves `epoch + 1`).
    pub epoch: Option<usize>,
    /// The run's `argparse.Namespace`.
    pub args: Option<Value>,
    pub fp16_scale: Option<f64>,
    /// What the file holds that is not used (unknown keys, a classifier), for people.
    pub notes: Vec<String>,
}

impl ImportedFile {
    /// The network a `--checkpoint_key` names (`teacher` or `student`); a file of one network's
    /// weights answers with it whatever the key.
    pub fn network(&self, key: &str) -> Result<&Network, ImportError> {
        let net = match key {
            "student" => self.student.as_ref(),
            _ => self.teacher.as_ref(),
        };
        net.ok_or_else(|| self.layout(format!("no `{key}` network in this checkpoint (try --checkpoint_key student or teacher)")))
    }

    fn layout(&self, message: String) -> ImportError {
        ImportError::Layout { path: self.path.clone(), message }
    }
}

/// Whether `path` is a `torch.save` file rather than safetensors: zip archives (PyTorch 1.6+), and
/// `.pth`/`.pt`/`.tar` files that are not safetensors (legacy pickles, for the reader to name).
pub fn is_pytorch_file(path: &Path) -> bool {
    let mut head = [0u8; 9];
    let read = crate::files::open_regular(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    if read >= 4 && head.starts_with(b"PK\x03\x04") {
        return true;
    }
    // A safetensors file starts with its header's length, then the header's `{`.
    let safetensors = read == 9 && head[8] == b'{';
    let pytorch_name = path.extension().is_some_and(|e| ["pth", "pt", "tar", "ckpt"].contains(&e.to_string_lossy().as_ref()));
    pytorch_name && !safetensors
}

/// Reads a weights file: `torch.save` files through `interop::pth`, anything else as safetensors.
pub fn read(path: &Path) -> Result<ImportedFile, ImportError> {
    if is_pytorch_file(path) {
        let root = pth::read(path)?;
        if root.get("student").is_some() || root.get("teacher").is_some() {
            return Ok(reference_checkpoint(path, &root));
        }
        let dict = plain_dict(&root).ok_or_else(|| ImportError::Layout {
            path: path.to_path_buf(),
            message: format!("holds {}, not a state dict or a DINO checkpoint", kind_of(&root)),
        })?;
        return Ok(one_network(path, pth::state_dict(dict), vec![]));
    }
    let tensors: Vec<(String, Tensor)> = weights::read(path)?.into_iter().collect();
    if tensors.iter().any(|(k, _)| k.starts_with("teacher.") || k.starts_with("student.")) {
        return Ok(our_checkpoint_tensors(path, tensors));
    }
    Ok(one_network(path, tensors, vec![]))
}

fn kind_of(v: &Value) -> String {
    match v {
        Value::Object(o) => format!("a {}.{}", o.module, o.name),
        Value::Tensor(_) => "a single tensor".into(),
        Value::List(_) | Value::Tuple(_) => "a list".into(),
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

/// The state dict of a plain file: the top-level dict, or the one under `state_dict` / `model`
/// that some trainers wrap it in.
fn plain_dict(root: &Value) -> Option<&Value> {
    root.as_dict()?;
    for wrapper in ["state_dict", "model"] {
        if let Some(inner @ Value::Dict(_)) = root.get(wrapper) {
            return Some(inner);
        }
    }
    Some(root)
}

fn empty(path: &Path, is_checkpoint: bool) -> ImportedFile {
    ImportedFile {
        path: path.to_path_buf(),
        is_checkpoint,
        student: None,
        teacher: None,
        optimizer: None,
        center: None,
        epoch: None,
        args: None,
        fp16_scale: None,
        notes: vec![],
    }
}

fn reference_checkpoint(path: &Path, root: &Value) -> ImportedFile {
    let mut file = empty(path, true);
    for (k, v) in root.as_dict().unwrap_or_default() {
        let key = k.as_str().map(str::to_owned).unwrap_or_else(|| format!("{k:?}"));
        match key.as_str() {
            "student" | "teacher" => {
                let net = network(pth::state_dict(v), &format!("{key}."), &mut file.notes);
                if key == "student" {
                    file.student = Some(net);
                } else {
                    file.teacher = Some(net);
                }
            }
            "optimizer" => file.optimizer = Some(v.clone()),
            "epoch" => file.epoch = v.as_int().and_then(|e| usize::try_from(e).ok()),
            "args" => file.args = Some(v.clone()),
            "dino_loss" => file.center = v.get("center").and_then(Value::as_tensor).map(float),
            "fp16_scaler" => file.fp16_scale = v.get("scale").and_then(Value::as_f64),
            other => file.notes.push(format!("`{other}` not used")),
        }
    }
    file
}

fn our_checkpoint_tensors(path: &Path, tensors: Vec<(String, Tensor)>) -> ImportedFile {
    let mut file = empty(path, true);
    let pick =
        |prefix: &str| tensors.iter().filter_map(|(k, t)| k.strip_prefix(prefix).map(|k| (k.to_owned(), t.shallow_clone()))).collect();
    file.student = Some(network(pick("student."), "student.", &mut file.notes));
    file.teacher = Some(network(pick("teacher."), "teacher.", &mut file.notes));
    file.center = tensors.iter().find(|(k, _)| k == "loss.center").map(|(_, t)| t.shallow_clone());
    file
}

/// A file of one network: a bare backbone (a classifier `fc.*`/`head.*` is left out with a note)
/// or a wrapper's `backbone.*` and `head.*`. It stands for both networks.
fn one_network(path: &Path, tensors: Vec<(String, Tensor)>, mut notes: Vec<String>) -> ImportedFile {
    let net = network(tensors, "", &mut notes);
    let mut file = empty(path, false);
    file.student = Some(Network { backbone: share(&net.backbone), head: share(&net.head) });
    file.teacher = Some(net);
    file.notes = notes;
    file
}

fn share(map: &BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    map.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect()
}

/// Floating-point tensors as float32 (the file may hold halves); counters stay integers.
fn float(t: &Tensor) -> Tensor {
    if t.is_floating_point() && t.kind() != Kind::Float {
        t.to_kind(Kind::Float)
    } else {
        t.shallow_clone()
    }
}

/// Splits a state dict into backbone and head. `module.` (DistributedDataParallel) is dropped;
/// the head's weight norm may be the old `weight_g`/`weight_v` or the parametrization's
/// `original0`/`original1`. `label` prefixes the names in notes.
fn network(entries: Vec<(String, Tensor)>, label: &str, notes: &mut Vec<String>) -> Network {
    let entries = pth::strip_prefix(entries, "module.");
    let mut net = Network::default();
    let wrapped = entries.iter().any(|(k, _)| k.starts_with("backbone."));
    let mut classifier = vec![];
    for (k, t) in entries {
        let t = float(&t);
        if wrapped {
            if let Some(b) = k.strip_prefix("backbone.") {
                net.backbone.insert(b.to_owned(), t);
            } else if let Some(h) = k.strip_prefix("head.") {
                let h = h.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v");
                net.head.insert(h, t);
            } else {
                notes.push(format!("tensor {label}{k} is neither backbone nor head: not used"));
            }
        } else if k.starts_with("fc.") || k.starts_with("head.") {
            classifier.push(k);
        } else {
            net.backbone.insert(k, t);
        }
    }
    if !classifier.is_empty() {
        notes.push(format!("classifier {} not used (a DINO backbone ends at its features)", classifier.join(", ")));
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(n: i64) -> Tensor {
        Tensor::zeros([n], (Kind::Float, Device::Cpu))
    }

    #[test]
    fn wrapped_and_bare_state_dicts_split_into_backbone_and_head() {
        let mut notes = vec![];
        let net = network(
            vec![
                ("module.backbone.cls_token".into(), t(2)),
                ("module.head.mlp.0.weight".into(), t(2)),
                ("module.head.last_layer.parametrizations.weight.original0".into(), t(1)),
                ("module.extra".into(), t(1)),
            ],
            "student.",
            &mut notes,
        );
        assert_eq!(net.backbone.keys().collect::<Vec<_>>(), ["cls_token"]);
        assert_eq!(net.head.keys().collect::<Vec<_>>(), ["last_layer.weight_g", "mlp.0.weight"]);
        assert_eq!(notes, ["tensor student.extra is neither backbone nor head: not used"]);
        let mut notes = vec![];
        let bare = network(vec![("conv1.weight".into(), t(1)), ("fc.weight".into(), t(1)), ("fc.bias".into(), t(1))], "", &mut notes);
        assert_eq!(bare.backbone.len(), 1);
        assert!(bare.head.is_empty());
        assert!(notes[0].contains("fc.weight, fc.bias"), "{notes:?}");
    }

    #[test]
    fn safetensors_files_are_not_taken_for_pytorch_ones() {
        let d = tempfile::tempdir().unwrap();
        let st = d.path().join("w.pth");
        Tensor::write_safetensors(&[("a", t(3))], &st).unwrap();
        assert!(!is_pytorch_file(&st), "safetensors named .pth");
        let p = d.path().join("w.bin");
        pth::write(&p, &[("a".to_string(), t(3))]).unwrap();
        assert!(is_pytorch_file(&p), "a zip archive whatever its name");
        let f = read(&p).unwrap();
        assert!(!f.is_checkpoint);
        assert_eq!(f.network("student").unwrap().backbone.len(), 1);
        let f = read(&st).unwrap();
        assert_eq!(f.network("teacher").unwrap().backbone.len(), 1);
    }
}
