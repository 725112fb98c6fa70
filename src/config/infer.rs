//! A config read off weights that came without one of ours. A backbone's tensors tell its family
//! (ViT or ResNet), a ViT's width, depth, patch and image size and a ResNet's depth and stem; a
//! reference checkpoint's `args` (the `argparse.Namespace` of `main_dino.py`) hold the run's
//! settings under the very names our config uses. Evaluation uses this for bare backbone files,
//! training for starting from or continuing a reference run, so neither needs the flags repeated.

use super::{Arch, ResNetStem, TrainConfig};
use crate::interop::pth::Value;
use std::collections::BTreeMap;
use tch::Tensor;

/// Reads what `tensors` (a backbone under the reference's names, no prefix) tell into `config`.
/// With `arch_given` (the person named an architecture, or a config did) the family stays the
/// config's and only its shape is read; otherwise the family is read too.
pub fn from_backbone(config: &mut TrainConfig, tensors: &BTreeMap<String, Tensor>, arch_given: bool) {
    if !arch_given {
        if let Some(arch) = arch_of(tensors) {
            config.model.arch = arch;
        }
    }
    vit_shape(config, tensors);
    resnet_stem_and_width(config, tensors);
}

/// The family a backbone's tensors show: a ViT by its patch projection (the preset whose width
/// it has, else ViT-S with the width overridden), a ResNet-50 by its bottleneck's third
/// convolution, a ResNet-18 by its first block.
pub fn arch_of(tensors: &BTreeMap<String, Tensor>) -> Option<Arch> {
    if let Some(w) = tensors.get("patch_embed.proj.weight") {
        let width = w.size().first().copied()?;
        let preset = Arch::ALL.into_iter().find(|a| a.vit_dims().is_some_and(|(d, _, _)| d == width));
        return Some(preset.unwrap_or(Arch::VitSmall));
    }
    if tensors.contains_key("layer1.0.conv3.weight") {
        return Some(Arch::ResNet50);
    }
    tensors.contains_key("layer1.0.conv1.weight").then_some(Arch::ResNet18)
}

/// A ResNet's stem shows in the size of `conv1`'s kernel (7: torchvision's or the mid one, 3: the
/// CIFAR one), its width in `conv1`'s number of filters.
fn resnet_stem_and_width(config: &mut TrainConfig, tensors: &BTreeMap<String, Tensor>) {
    if config.is_vit() {
        return;
    }
    let Some(shape) = tensors.get("conv1.weight").map(|w| w.size()) else {
        return;
    };
    match shape[..] {
        [_, _, 3, 3] => config.model.resnet_stem = ResNetStem::Cifar,
        // The mid stem has torchvision's tensors: a config that names it stands.
        [_, _, 7, 7] if config.model.resnet_stem != ResNetStem::Mid => config.model.resnet_stem = ResNetStem::Imagenet,
        _ => {}
    }
    // Its width shows in `conv1`'s number of filters (64 in torchvision's).
    if let Some(&width) = shape.first().filter(|&&w| w > 0) {
        config.model.resnet_width = width as usize;
    }
}

/// A ViT's width, depth, patch and image size are readable from its tensors (the number of heads
/// is not: it comes from the arch preset or the config).
fn vit_shape(config: &mut TrainConfig, tensors: &BTreeMap<String, Tensor>) {
    if !config.is_vit() {
        return;
    }
    if let Some(w) = tensors.get("patch_embed.proj.weight") {
        let s = w.size();
        if s.len() == 4 {
            let preset_width = config.model.arch.vit_dims().map(|(d, _, _)| d);
            // The preset's own width is left implicit, so the config reads as the preset.
            config.model.embed_dim = if preset_width == Some(s[0]) { None } else { usize::try_from(s[0]).ok() };
            config.model.patch_size = usize::try_from(s[2]).unwrap_or(config.model.patch_size);
        }
    }
    let depth = tensors.keys().filter_map(|k| k.strip_prefix("blocks.")?.split('.').next()?.parse::<usize>().ok()).max().map(|d| d + 1);
    if let Some(depth) = depth {
        let preset_depth = config.model.arch.vit_dims().map(|(_, d, _)| d as usize);
        config.model.depth = (preset_depth != Some(depth)).then_some(depth);
    }
    if let Some(p) = tensors.get("pos_embed") {
        let n = usize::try_from(p.size().get(1).copied().unwrap_or(1) - 1).unwrap_or(0);
        let side = (n as f64).sqrt().round() as usize;
        if side * side == n && side > 0 {
            config.crops.global_crop_size = side * config.model.patch_size;
        }
    }
}

/// Which of a reference run's settings to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgScope {
    /// The networks' shape only (arch, patch size, head): to build a model that loads the weights.
    Model,
    /// Every setting our config shares with `main_dino.py`, except those of the machine it ran on
    /// (paths, workers, device): to continue the run with the same schedules.
    Training,
}

const MODEL_KEYS: &[&str] = &["arch", "patch_size", "out_dim", "norm_last_layer", "use_bn_in_head"];
const MACHINE_KEYS: &[&str] =
    &["data_path", "output_dir", "exclude", "name", "device", "headless", "num_workers", "print_freq", "pretrained_weights", "resume_from"];

/// What [`apply_reference_args`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ArgsReport {
    /// Settings taken, as `name = value`.
    pub taken: Vec<String>,
    /// Settings of ours the file gave a value we cannot use, with why.
    pub refused: Vec<String>,
    /// The reference's number of processes (`args.world_size`), which scales its learning rate
    /// and divides its epochs into iterations.
    pub world_size: Option<i64>,
}

/// The attributes of an `argparse.Namespace` (or of a plain dict of them).
fn attributes(args: &Value) -> Option<&[(Value, Value)]> {
    match args {
        Value::Object(o) => o.attributes(),
        Value::Dict(d) => Some(d),
        _ => None,
    }
}

/// A Python value as the TOML our config reads; `None` for values TOML has no form for.
fn to_toml(v: &Value, like: Option<&toml::Value>) -> Option<toml::Value> {
    let wants_float = matches!(like, Some(toml::Value::Float(_)));
    Some(match v {
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Int(i) if wants_float => toml::Value::Float(*i as f64),
        Value::Int(i) => toml::Value::Integer(*i),
        Value::Float(f) => toml::Value::Float(*f),
        Value::Str(s) => toml::Value::String(s.clone()),
        Value::List(items) | Value::Tuple(items) => {
            let like = match like {
                Some(toml::Value::Array(a)) => a.first(),
                _ => None,
            };
            toml::Value::Array(items.iter().map(|i| to_toml(i, like)).collect::<Option<Vec<_>>>()?)
        }
        _ => return None,
    })
}

/// Takes the settings of a reference run's `args` that our config shares by name (all of
/// `main_dino.py`'s training flags are spelled as ours), one at a time, so a value we cannot use
/// (an architecture we do not build) is reported and the others still apply.
pub fn apply_reference_args(config: &mut TrainConfig, args: &Value, scope: ArgScope) -> ArgsReport {
    let mut report = ArgsReport::default();
    let Some(attrs) = attributes(args) else { return report };
    let Ok(mut table) = toml::from_str::<toml::Table>(&config.to_toml()) else { return report };
    for (k, v) in attrs {
        let Some(key) = k.as_str() else { continue };
        if key == "world_size" {
            report.world_size = v.as_int();
        }
        let wanted = match scope {
            ArgScope::Model => MODEL_KEYS.contains(&key),
            ArgScope::Training => !MACHINE_KEYS.contains(&key),
        };
        // Settings that are not ours (dist_url, local_rank, ...) are not a problem.
        if !wanted || !table.contains_key(key) {
            continue;
        }
        let Some(value) = to_toml(v, table.get(key)) else {
            report.refused.push(format!("{key}: {v:?} is not a plain value"));
            continue;
        };
        let previous = table.insert(key.to_string(), value.clone());
        let parsed = toml::to_string(&table).ok().map(|text| TrainConfig::from_toml_str(&text));
        match parsed {
            Some(Ok(c)) => {
                *config = c;
                report.taken.push(format!("{key} = {value}"));
            }
            other => {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "cannot be written as a setting".into(),
                };
                report.refused.push(format!("{key} = {value}: {why}"));
                if let Some(p) = previous {
                    table.insert(key.to_string(), p);
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interop::pth::Object;
    use tch::{Device, Kind};

    fn zeros(shape: &[i64]) -> Tensor {
        Tensor::zeros(shape, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn a_bare_resnet_file_tells_its_depth_stem_and_width() {
        let mut config = TrainConfig::default();
        let with_kernel = |k: i64| {
            BTreeMap::from([
                ("conv1.weight".to_string(), zeros(&[64, 3, k, k])),
                ("layer1.0.conv1.weight".to_string(), zeros(&[64, 64, 3, 3])),
            ])
        };
        from_backbone(&mut config, &with_kernel(3), false);
        assert_eq!((config.model.arch, config.model.resnet_stem), (Arch::ResNet18, ResNetStem::Cifar));
        assert_eq!(config.model.resnet_width, 64);
        from_backbone(&mut config, &with_kernel(7), true);
        assert_eq!(config.model.resnet_stem, ResNetStem::Imagenet);
        config.model.resnet_stem = ResNetStem::Mid;
        from_backbone(&mut config, &with_kernel(7), true);
        assert_eq!(config.model.resnet_stem, ResNetStem::Mid, "torchvision's tensors fit the mid stem a config names");
        config.model.resnet_stem = ResNetStem::Imagenet;
        let narrow = BTreeMap::from([("conv1.weight".to_string(), zeros(&[16, 3, 3, 3]))]);
        from_backbone(&mut config, &narrow, true);
        assert_eq!((config.model.resnet_stem, config.model.resnet_width), (ResNetStem::Cifar, 16));
        let mut r50 = with_kernel(7);
        r50.insert("layer1.0.conv3.weight".into(), zeros(&[256, 64, 1, 1]));
        from_backbone(&mut config, &r50, false);
        assert_eq!(config.model.arch, Arch::ResNet50);
        from_backbone(&mut config, &BTreeMap::new(), false);
        assert_eq!(config.model.arch, Arch::ResNet50, "nothing to read: unchanged");
    }

    #[test]
    fn a_vit_file_tells_its_preset_width_depth_and_image_size() {
        let mut t = BTreeMap::from([
            ("patch_embed.proj.weight".to_string(), zeros(&[384, 3, 16, 16])),
            ("pos_embed".to_string(), zeros(&[1, 197, 384])),
        ]);
        for i in 0..12 {
            t.insert(format!("blocks.{i}.norm1.weight"), zeros(&[384]));
        }
        let mut config = TrainConfig::default();
        config.model.arch = Arch::ResNet50;
        from_backbone(&mut config, &t, false);
        assert_eq!(config.model.arch, Arch::VitSmall);
        assert_eq!((config.model.embed_dim, config.model.depth, config.model.patch_size), (None, None, 16));
        assert_eq!(config.crops.global_crop_size, 224);
        t.insert("patch_embed.proj.weight".into(), zeros(&[24, 3, 4, 4]));
        t.insert("pos_embed".into(), zeros(&[1, 17, 24]));
        from_backbone(&mut config, &t, true);
        assert_eq!((config.model.embed_dim, config.model.depth, config.model.patch_size), (Some(24), None, 4));
        assert_eq!(config.crops.global_crop_size, 16);
    }

    fn namespace(pairs: Vec<(&str, Value)>) -> Value {
        Value::Object(Box::new(Object {
            module: "argparse".into(),
            name: "Namespace".into(),
            args: vec![],
            state: Value::Dict(pairs.into_iter().map(|(k, v)| (Value::Str(k.into()), v)).collect()),
            items: vec![],
            entries: vec![],
        }))
    }

    #[test]
    fn reference_args_fill_the_settings_we_share() {
        let args = namespace(vec![
            ("arch", Value::Str("vit_tiny".into())),
            ("patch_size", Value::Int(8)),
            ("lr", Value::Int(1)),
            ("global_crops_scale", Value::Tuple(vec![Value::Float(0.3), Value::Int(1)])),
            ("data_path", Value::Str("/datasets/imagenet/train".into())),
            ("dist_url", Value::Str("env://".into())),
            ("world_size", Value::Int(8)),
            ("optimizer", Value::Str("adam".into())),
            ("epochs", Value::Int(300)),
        ]);
        let mut c = TrainConfig::default();
        let r = apply_reference_args(&mut c, &args, ArgScope::Training);
        assert_eq!((c.model.arch, c.model.patch_size, c.optim.lr, c.optim.epochs), (Arch::VitTiny, 8, 1.0, 300));
        assert_eq!(c.crops.global_crops_scale, (0.3, 1.0));
        assert_ne!(c.run.data_path, std::path::PathBuf::from("/datasets/imagenet/train"), "the machine's paths stay ours");
        assert_eq!(r.world_size, Some(8));
        assert_eq!(r.refused.len(), 1, "{r:?}");
        assert!(r.refused[0].starts_with("optimizer = \"adam\""), "{r:?}");
        let mut m = TrainConfig::default();
        apply_reference_args(&mut m, &args, ArgScope::Model);
        assert_eq!((m.model.arch, m.optim.epochs), (Arch::VitTiny, TrainConfig::default().optim.epochs));
    }
}
