//! Weight I/O as safetensors with the reference's parameter names.
//!
//! Names are written exactly as a PyTorch `state_dict()` of the same module would hold them, so a
//! backbone trained here loads into the reference ViT / timm-style code and back. BatchNorm's
//! `num_batches_tracked`, which tch does not keep, is skipped on import.

use crate::files::ShowPath;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn::VarStore, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read weights {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot write weights {path}: {message}")]
    Write { path: String, message: String },
    #[error("weights {path}: {message}")]
    Mismatch { path: String, message: String },
}

/// Every variable of a store, sorted by name: one fixed order for every process and every run.
pub fn named_tensors(vs: &VarStore) -> BTreeMap<String, Tensor> {
    vs.variables().into_iter().collect()
}

/// Writes the variables whose name starts with `prefix`, with the prefix removed (for example
/// `backbone.` to export a bare backbone the reference's `vit_small()` loads).
pub fn save(vs: &VarStore, prefix: &str, path: &Path) -> Result<(), WeightsError> {
    let tensors: Vec<(String, Tensor)> = named_tensors(vs)
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.to_device(tch::Device::Cpu).contiguous())))
        .collect();
    Tensor::write_safetensors(&tensors, path).map_err(|e| WeightsError::Write { path: path.shown().to_string(), message: e.to_string() })
}

pub fn read(path: &Path) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let list = read_safetensors(path).map_err(|e| WeightsError::Read { path: path.shown().to_string(), message: e.to_string() })?;
    Ok(list.into_iter().collect())
}

/// The `__metadata__` key of a safetensors file under which `dino export` records the image size
/// its network trained at: a bare backbone carries no config, and evaluated at another size
/// (224 for a 32 px ResNet) it measures worse than it is.
pub const CROP_SIZE_KEY: &str = "global_crop_size";

/// The header of a safetensors file: its length (8 bytes, little-endian) and the JSON after it.
fn safetensors_header(bytes: &[u8]) -> Option<(usize, serde_json::Map<String, serde_json::Value>)> {
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = serde_json::from_slice(bytes.get(8..8usize.checked_add(len)?)?).ok()?;
    Some((len, header))
}

/// Rewrites the safetensors file `path` with `metadata` in its header (the tensors as they
/// were): tch writes none. The header is padded with spaces to 8 bytes, as safetensors does.
pub fn add_safetensors_metadata(path: &Path, metadata: &[(&str, String)]) -> std::io::Result<()> {
    let bytes = crate::files::read(path)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a safetensors file");
    let (len, mut header) = safetensors_header(&bytes).ok_or_else(bad)?;
    let meta: serde_json::Map<String, serde_json::Value> = metadata.iter().map(|(k, v)| (k.to_string(), v.clone().into())).collect();
    header.insert("__metadata__".into(), meta.into());
    let mut text = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    text.resize(text.len().div_ceil(8) * 8, b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + len..]);
    std::fs::write(path, out)
}

/// The crop size a safetensors file records (`CROP_SIZE_KEY`), if any; only the header is read.
pub fn recorded_crop_size(path: &Path) -> Option<usize> {
    use std::io::Read;
    let mut f = crate::files::open_regular(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    // A header is a few KB; a length beyond 100 MB is not one this reads.
    let n = u64::from_le_bytes(len).min(100 << 20);
    let mut head = len.to_vec();
    f.take(n).read_to_end(&mut head).ok()?;
    let (_, header) = safetensors_header(&head)?;
    header.get("__metadata__")?.get(CROP_SIZE_KEY)?.as_str()?.parse().ok()
}

/// `Tensor::read_safetensors` of a regular file only (tch reads by name, and a FIFO would block
/// it for good): the one way a safetensors file is read.
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>, tch::TchError> {
    crate::files::open_regular(path).map_err(tch::TchError::Io)?;
    Tensor::read_safetensors(path)
}

/// Copies `tensors` (names without `prefix`) into the store's variables under `prefix`. Every
/// variable under the prefix must be present with the same shape; extra names are an error too
/// unless they are BatchNorm counters, so a wrong file never loads half-way silently. Every
/// problem is listed (unexpected, missing, shape), each by name, before anything is copied.
pub fn load_into(vs: &VarStore, prefix: &str, tensors: &BTreeMap<String, Tensor>, source: &Path) -> Result<(), WeightsError> {
    let vars = named_tensors(vs);
    let targets: BTreeMap<&str, &Tensor> = vars.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s, v))).collect();
    let unexpected: Vec<&str> =
        tensors.keys().map(String::as_str).filter(|n| !targets.contains_key(n) && !n.ends_with("num_batches_tracked")).collect();
    let missing: Vec<&str> = targets.keys().copied().filter(|n| !tensors.contains_key(*n)).collect();
    let shapes: Vec<String> = targets
        .iter()
        .filter_map(|(n, var)| {
            let src = tensors.get(*n)?;
            (src.size() != var.size()).then(|| format!("{n}: shape {:?} in file, {:?} in model", src.size(), var.size()))
        })
        .collect();
    let mut problems = vec![];
    if !unexpected.is_empty() {
        problems.push(listed("unexpected tensor", &unexpected));
    }
    if !missing.is_empty() {
        problems.push(listed("missing tensor", &missing));
    }
    problems.extend(shapes);
    if !problems.is_empty() {
        return Err(WeightsError::Mismatch { path: source.shown().to_string(), message: problems.join("; ") });
    }
    tch::no_grad(|| {
        for (name, var) in &targets {
            if let Some(src) = tensors.get(*name) {
                let mut dst = var.shallow_clone();
                dst.f_copy_(src)
                    .map_err(|e| WeightsError::Mismatch { path: source.shown().to_string(), message: format!("{name}: {e}") })?;
            }
        }
        Ok(())
    })
}

/// `what NAME`, or `N whats: A, B, ...` (at most 8 named).
fn listed(what: &str, names: &[&str]) -> String {
    match names {
        [one] => format!("{what} {one}"),
        _ => {
            let shown: Vec<&str> = names.iter().take(8).copied().collect();
            let more = if names.len() > 8 { format!(" and {} more", names.len() - 8) } else { String::new() };
            format!("{} {what}s: {}{more}", names.len(), shown.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackboneSpec, DinoModel, HeadSpec, VitSpec};
    use tch::Device;

    fn tiny(vs: &VarStore) -> DinoModel {
        let vit = VitSpec { img_size: 16, patch_size: 4, embed_dim: 24, depth: 2, num_heads: 2, mlp_ratio: 4.0, drop_path_rate: 0.0 };
        let head = HeadSpec { in_dim: 0, out_dim: 16, use_bn: false, norm_last_layer: true, nlayers: 3, hidden_dim: 32, bottleneck_dim: 8 };
        DinoModel::new(&vs.root(), &BackboneSpec::Vit(vit), head)
    }

    #[test]
    fn round_trip_through_safetensors_with_reference_names() {
        let dir = tempfile::tempdir().unwrap();
        let vs_a = VarStore::new(Device::Cpu);
        let _a = tiny(&vs_a);
        let path = dir.path().join("backbone.safetensors");
        save(&vs_a, "backbone.", &path).unwrap();
        let file = read(&path).unwrap();
        for name in
            ["cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.1.attn.qkv.bias", "blocks.0.mlp.fc2.weight", "norm.weight"]
        {
            assert!(file.contains_key(name), "missing {name}");
        }
        let vs_b = VarStore::new(Device::Cpu);
        let _b = tiny(&vs_b);
        load_into(&vs_b, "backbone.", &file, &path).unwrap();
        let (a, b) = (named_tensors(&vs_a), named_tensors(&vs_b));
        for (k, v) in &a {
            if k.starts_with("backbone.") {
                assert!(v.equal(&b[k]), "{k} differs after round trip");
            }
        }
        // Head names are the reference's too.
        let full = dir.path().join("full.safetensors");
        save(&vs_a, "", &full).unwrap();
        let f = read(&full).unwrap();
        for name in ["head.mlp.0.weight", "head.mlp.4.bias", "head.last_layer.weight_g", "head.last_layer.weight_v"] {
            assert!(f.contains_key(name), "missing {name}");
        }
    }

    #[test]
    fn wrong_shapes_and_missing_names_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let vs = VarStore::new(Device::Cpu);
        let _m = tiny(&vs);
        let mut file = named_tensors(&vs)
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("backbone.").map(|k| (k.to_string(), v)))
            .collect::<BTreeMap<_, _>>();
        file.remove("norm.bias");
        let e = load_into(&vs, "backbone.", &file, dir.path()).unwrap_err().to_string();
        assert!(e.contains("missing tensor norm.bias"), "{e}");
        file.insert("norm.bias".into(), Tensor::zeros([3], (tch::Kind::Float, Device::Cpu)));
        let e = load_into(&vs, "backbone.", &file, dir.path()).unwrap_err().to_string();
        assert!(e.contains("norm.bias: shape"), "{e}");
    }
}
