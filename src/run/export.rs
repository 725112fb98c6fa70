//! A backbone as other code loads it (`dino export`): the reference's `vision_transformer.py` ViT
//! and torchvision's `resnet50()`/`resnet18()` (with `fc = nn.Identity()`) with `strict=True`,
//! and timm's `vit_*` / `resnet*` models created with `num_classes=0`. Tensors come in the order
//! PyTorch lists them, and a ResNet gets the BatchNorm counters `num_batches_tracked` that
//! PyTorch's state dicts carry and tch does not keep (0: they matter only to a BatchNorm without
//! momentum, which neither torchvision nor timm builds).
//!
//! timm's names for these models are the reference's: `cls_token`, `pos_embed`,
//! `patch_embed.proj.*`, `blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*`, `norm.*`
//! (its `ls1`/`ls2`, `q_norm`/`k_norm`, `norm_pre`, `fc_norm`, `head` are parameter-free
//! identities in the DINO configurations), and torchvision's for ResNets. `docs/interop.md`
//! states what differs between the loaders (shapes, not names).

use crate::files::ShowPath;
use crate::interop::pth;
use crate::model::names::reference_order;
use crate::model::weights;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Kind, Tensor};

/// Whose names the export uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// The reference DINO code's and torchvision's.
    Reference,
    /// timm's (the same keys for every backbone this project builds).
    Timm,
}

impl Names {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "reference" => Ok(Self::Reference),
            "timm" => Ok(Self::Timm),
            other => Err(format!("invalid --names {other}: use reference or timm")),
        }
    }

    /// The name `name` (reference spelling) has under these names.
    pub fn rename(self, name: &str) -> String {
        match self {
            // The same module paths: see the module comment and docs/interop.md.
            Self::Reference | Self::Timm => name.to_string(),
        }
    }
}

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    /// A `torch.save`-compatible `OrderedDict` (`torch.load(..., weights_only=True)` reads it).
    Pth,
}

impl Format {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "safetensors" => Ok(Self::Safetensors),
            "pth" => Ok(Self::Pth),
            other => Err(format!("invalid --format {other}: use safetensors or pth")),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Safetensors => "safetensors",
            Self::Pth => "pth",
        }
    }
}

/// The variables of `vs` under `prefix` (removed), renamed, in PyTorch's order, on the CPU,
/// with a `num_batches_tracked` after each BatchNorm's running statistics.
pub fn backbone_tensors(vs: &VarStore, prefix: &str, names: Names) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = weights::named_tensors(vs)
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.detach().to_device(tch::Device::Cpu).contiguous())))
        .collect();
    let counters: Vec<(String, Tensor)> = out
        .iter()
        .filter_map(|(k, _)| {
            k.strip_suffix("running_var").map(|m| (format!("{m}num_batches_tracked"), Tensor::from(0i64).to_kind(Kind::Int64)))
        })
        .collect();
    out.extend(counters);
    out.sort_by(|a, b| reference_order(&a.0, &b.0));
    out.into_iter().map(|(k, v)| (names.rename(&k), v)).collect()
}

/// Writes `tensors` as `format` to `path` (through a temporary file, renamed when complete). A
/// safetensors file records `crop_size`, the image size the network trained at, for the
/// evaluations that read it back (a `.pth` state dict has no place for it).
pub fn write(path: &Path, tensors: &[(String, Tensor)], format: Format, crop_size: usize) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.shown()))?;
    }
    match format {
        Format::Pth => pth::write(path, tensors)?,
        Format::Safetensors => {
            let metadata = [(crate::model::weights::CROP_SIZE_KEY, crop_size.to_string())];
            crate::files::write_output_via(path, |tmp| -> anyhow::Result<()> {
                Tensor::write_safetensors(tensors, tmp)?;
                Ok(crate::model::weights::add_safetensors_metadata(tmp, &metadata)?)
            })
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e:#}", path.shown()))?;
        }
    }
    Ok(())
}

/// Where an export goes when no `--output` is given: `RUN_DIR/export/` for a run's weights,
/// else the current folder.
pub fn default_path(run_dir: Option<&Path>, key: &str, epoch: Option<usize>, format: Format) -> PathBuf {
    let epoch = epoch.map(|e| format!("-ep{e:04}")).unwrap_or_default();
    let name = format!("backbone-{key}{epoch}.{}", format.extension());
    match run_dir {
        Some(r) => r.join("export").join(name),
        None => PathBuf::from(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ResNet, ResNetDepth, ResNetStem};

    #[test]
    fn resnet_exports_carry_batchnorm_counters_in_torchvision_order() {
        let vs = VarStore::new(tch::Device::Cpu);
        let _r = ResNet::new(vs.root() / "backbone", ResNetDepth::R18, ResNetStem::Imagenet, 64);
        let t = backbone_tensors(&vs, "backbone.", Names::Reference);
        let names: Vec<&str> = t.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            &names[..6],
            ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"]
        );
        // torchvision's resnet18 state dict without fc: 120 entries.
        assert_eq!(names.len(), 120);
        assert_eq!(Names::Timm.rename("layer1.0.conv1.weight"), "layer1.0.conv1.weight");
    }
}
