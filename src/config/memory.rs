//! The memory a training plan needs, estimated from the settings before anything is allocated, so
//! that sizes which pass validation one by one but not together (`--out_dim 1048576
//! --head_bottleneck_dim 65536`, a 65536-wide 256-block ViT, a million epochs of one-image batches)
//! are refused with the estimate instead of aborting in an allocation minutes later.
//!
//! Two parts are computed exactly from the shapes: the parameters with what training keeps per
//! parameter (student, teacher, gradients, optimizer moments) and the per-iteration schedules. The
//! activations of one step are a rough figure (what a transformer block or ResNet keeps for the
//! backward pass), so they only warn.

use super::{OptimizerKind, TrainConfig};
use crate::model::arch::{Arch, ResNetStem};

/// What a plan needs, in bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEstimate {
    /// Parameters of one network (backbone and head).
    pub parameters: f64,
    /// Student, teacher, gradients and optimizer state, in bytes.
    pub weights_bytes: f64,
    /// The per-iteration schedules (rendered, with the copy rendering makes), in bytes.
    pub schedules_bytes: f64,
    /// Activations of one training step (rough), in bytes; on the GPU for a CUDA run.
    pub activations_bytes: f64,
}

/// Float32 everywhere the estimate counts (the master weights stay float32 under AMP).
const FLOAT: f64 = 4.0;
/// Schedules rendered per iteration: lr, weight decay, teacher momentum, teacher temperature.
const SCHEDULES: f64 = 4.0;
/// Bytes a schedule holds per iteration while it renders (an f64 and the copy concatenation makes).
const SCHEDULE_BYTES_PER_ITER: f64 = 16.0;

impl MemoryEstimate {
    /// The estimate for `config` with `iterations_per_epoch` steps per epoch.
    pub fn of(config: &TrainConfig, iterations_per_epoch: usize) -> Self {
        let parameters = backbone_parameters(config) + head_parameters(config, backbone_width(config));
        // Student and teacher, the student's gradients, and the optimizer's moments.
        let moments = match config.optim.optimizer {
            OptimizerKind::Adamw => 2.0,
            OptimizerKind::Sgd | OptimizerKind::Lars => 1.0,
        };
        let weights_bytes = parameters * FLOAT * (3.0 + moments);
        let iterations = config.optim.epochs as f64 * iterations_per_epoch as f64;
        let schedules_bytes = iterations * SCHEDULES * SCHEDULE_BYTES_PER_ITER;
        Self { parameters, weights_bytes, schedules_bytes, activations_bytes: activations(config) }
    }

    /// What is known for certain to be needed in host memory (`on_gpu`: the weights live there).
    pub fn host_bytes(&self, on_gpu: bool) -> f64 {
        self.schedules_bytes + if on_gpu { 0.0 } else { self.weights_bytes }
    }

    /// One line: the total and its parts.
    pub fn describe(&self) -> String {
        format!(
            "{} parameters per network: {} for student, teacher, gradients and optimizer state; {} of schedules; about {} of activations per step",
            count(self.parameters),
            bytes(self.weights_bytes),
            bytes(self.schedules_bytes),
            bytes(self.activations_bytes)
        )
    }
}

/// Refuses a plan whose certain needs exceed `available` bytes of host memory (an error naming the
/// estimate); a plan that fits only without its rough activations gets a warning.
pub fn check(estimate: &MemoryEstimate, available: Option<u64>, on_gpu: bool) -> Result<Option<String>, String> {
    let Some(available) = available.map(|a| a as f64) else { return Ok(None) };
    let certain = estimate.host_bytes(on_gpu);
    if certain > available {
        return Err(format!(
            "this plan needs at least {} of memory and {} is available: {}. Make the model (embed_dim, depth, out_dim, \
             head_bottleneck_dim, head_hidden_dim) or the run (epochs x iterations per epoch) smaller",
            bytes(certain),
            bytes(available),
            estimate.describe()
        ));
    }
    let with_activations = certain + if on_gpu { 0.0 } else { estimate.activations_bytes };
    Ok((with_activations > available).then(|| {
        format!(
            "this plan may need more memory than the {} available: {} (lower batch_size_per_gpu if it runs out)",
            bytes(available),
            estimate.describe()
        )
    }))
}

/// Host memory this process can still use: the least of what the kernel calls available, the
/// address-space limit (`ulimit -v`) less what is mapped, and the cgroup's limit less its use.
/// None when none of them can be read.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let field = |text: &str, key: &str| -> Option<u64> {
        text.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
    };
    let kernel = meminfo.as_deref().and_then(|m| Some(field(m, "MemAvailable:")? + field(m, "SwapFree:").unwrap_or(0)));
    let mapped = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| field(&s, "VmSize:")).unwrap_or(0);
    let address_space = address_space_limit().map(|limit| limit.saturating_sub(mapped));
    let cgroup = cgroup_room();
    [kernel, address_space, cgroup].into_iter().flatten().min()
}

fn address_space_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The cgroup (v2) memory limit less its current use, where one is set.
fn cgroup_room() -> Option<u64> {
    let read = |name: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{name}")).ok()?.trim().parse::<u64>().ok();
    Some(read("memory.max")?.saturating_sub(read("memory.current").unwrap_or(0)))
}

/// The backbone's output width (the head's input).
fn backbone_width(c: &TrainConfig) -> f64 {
    if c.is_vit() {
        return c.vit_spec().embed_dim as f64;
    }
    let last_stage = if c.model.arch == Arch::ResNet50 { 2048.0 } else { 512.0 };
    last_stage * c.model.resnet_width as f64 / 64.0
}

fn backbone_parameters(c: &TrainConfig) -> f64 {
    if !c.is_vit() {
        return resnet_parameters(c.model.arch == Arch::ResNet50, c.model.resnet_stem, c.model.resnet_width as f64);
    }
    let v = c.vit_spec();
    let (d, p) = (v.embed_dim as f64, v.patch_size as f64);
    let tokens = (v.img_size as f64 / p).powi(2) + 1.0;
    // Patch embedding, class token and positions, then per block two norms, qkv, projection and
    // the 4x MLP (12 d^2 + 13 d), then the final norm.
    3.0 * p * p * d + d + d + tokens * d + v.depth as f64 * (12.0 * d * d + 13.0 * d) + 2.0 * d
}

/// torchvision's ResNet without `fc`, at stem width `w` (each stage doubles it): convolutions,
/// and two parameters per channel of each batch norm.
fn resnet_parameters(bottleneck: bool, stem: ResNetStem, w: f64) -> f64 {
    let conv = |i: f64, o: f64, k: f64| i * o * k * k + 2.0 * o;
    let kernel = if stem == ResNetStem::Cifar { 3.0 } else { 7.0 };
    let mut total = conv(3.0, w, kernel);
    let (blocks, expansion) = if bottleneck { ([3, 4, 6, 3], 4.0) } else { ([2, 2, 2, 2], 1.0) };
    let mut channels = w;
    for (stage, n) in blocks.into_iter().enumerate() {
        let planes = w * 2f64.powi(stage as i32);
        let out = planes * expansion;
        for block in 0..n {
            total += match bottleneck {
                true => conv(channels, planes, 1.0) + conv(planes, planes, 3.0) + conv(planes, out, 1.0),
                false => conv(channels, planes, 3.0) + conv(planes, planes, 3.0),
            };
            // The first block of a stage that changes the width or strides gets a 1x1 shortcut.
            if block == 0 && (stage > 0 || channels != out) {
                total += conv(channels, out, 1.0);
            }
            channels = out;
        }
    }
    total
}

fn head_parameters(c: &TrainConfig, in_dim: f64) -> f64 {
    let m = &c.model;
    let (h, b, k) = (m.head_hidden_dim as f64, m.head_bottleneck_dim as f64, m.out_dim as f64);
    let norms = if m.use_bn_in_head { 4.0 * h } else { 0.0 };
    // Three linear layers, then the weight-normalised last layer (weight_v and weight_g).
    in_dim * h + h + h * h + h + h * b + b + norms + b * k + k
}

/// Rough bytes the student keeps for the backward pass of one step, all crops of a batch.
fn activations(c: &TrainConfig) -> f64 {
    let batch = c.optim.batch_size_per_gpu as f64;
    let crops = [(2.0, c.crops.global_crop_size as f64), (c.crops.local_crops_number as f64, c.crops.local_crop_size as f64)];
    let per_image: f64 = crops.iter().map(|&(n, size)| n * crop_activations(c, size)).sum();
    batch * per_image * FLOAT
}

/// Floats one crop of side `size` keeps through the network.
fn crop_activations(c: &TrainConfig, size: f64) -> f64 {
    if c.is_vit() {
        let v = c.vit_spec();
        let t = (size / v.patch_size as f64).powi(2) + 1.0;
        let (d, heads) = (v.embed_dim as f64, v.num_heads as f64);
        // Per block: the inputs of both norms, qkv, attention output, MLP hidden before and after
        // GELU, residuals (16 t d), and the attention scores and probabilities (2 h t^2).
        return v.depth as f64 * (16.0 * t * d + 2.0 * heads * t * t);
    }
    // About 25 M floats for a 224 px image through ResNet-50 with torchvision's stem (10 M for
    // ResNet-18), scaled by the pixels the blocks see and the width.
    let at_224 = if c.model.arch == Arch::ResNet50 { 25e6 } else { 10e6 };
    let stem = match c.model.resnet_stem {
        ResNetStem::Imagenet => 1.0,
        ResNetStem::Mid => 4.0,
        ResNetStem::Cifar => 16.0,
    };
    at_224 * (size / 224.0).powi(2) * stem * c.model.resnet_width as f64 / 64.0
}

fn bytes(b: f64) -> String {
    // Saturating: the sizes refused here can pass u64 only in absurd plans, and say so anyway.
    crate::human::fmt_bytes(b.min(u64::MAX as f64) as u64)
}

fn count(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1} G", n / 1e9),
        n if n >= 1e6 => format!("{:.1} M", n / 1e6),
        n => format!("{:.0} k", n / 1e3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trainable parameters of the network `c` builds (batch-norm statistics are buffers).
    fn built(c: &TrainConfig) -> f64 {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _model = crate::model::DinoModel::new(&vs.root(), &c.backbone_spec(0.0), c.head_spec(true));
        vs.trainable_variables().iter().map(|t| t.numel() as f64).sum()
    }

    #[test]
    fn parameters_are_those_of_the_networks_torch_builds() {
        let mut c = TrainConfig::default();
        c.model.out_dim = 1000;
        c.model.head_hidden_dim = 256;
        c.model.head_bottleneck_dim = 64;
        for (arch, patch, crop, width, bn) in [
            (Arch::VitTiny, 16, 224, 64, false),
            (Arch::VitSmall, 8, 32, 64, true),
            (Arch::ResNet18, 16, 32, 64, false),
            (Arch::ResNet18, 16, 32, 32, false),
            (Arch::ResNet50, 16, 224, 64, true),
        ] {
            c.model.arch = arch;
            c.model.patch_size = patch;
            c.crops.global_crop_size = crop;
            c.model.resnet_width = width;
            c.model.use_bn_in_head = bn;
            let e = MemoryEstimate::of(&c, 1);
            // Plus the last layer's weight_g, frozen (not trainable) with norm_last_layer.
            assert_eq!(e.parameters, built(&c) + 1000.0, "{arch:?} patch {patch} crop {crop} width {width} bn {bn}");
        }
    }

    #[test]
    fn plans_that_cannot_fit_are_refused_with_the_estimate_and_rough_ones_warn() {
        let mut c = TrainConfig::default();
        c.model.out_dim = 1 << 20;
        c.model.head_bottleneck_dim = 65536;
        let e = MemoryEstimate::of(&c, 100);
        let err = check(&e, Some(64 << 30), false).unwrap_err();
        assert!(err.contains("needs at least") && err.contains("68.9 G parameters"), "{err}");
        // On a GPU the weights are not the host's: only the schedules count there.
        assert!(check(&e, Some(64 << 30), true).is_ok());

        let mut long = TrainConfig::default();
        long.optim.epochs = 1_000_000;
        let e = MemoryEstimate::of(&long, 100);
        assert_eq!(e.schedules_bytes, 1e8 * 64.0);
        assert!(check(&e, Some(4 << 30), true).unwrap_err().contains("6.0 GiB of schedules"));

        let small = MemoryEstimate::of(&TrainConfig::default(), 100);
        assert_eq!(check(&small, Some(64 << 30), false), Ok(None));
        assert!(check(&small, Some((small.host_bytes(false) as u64) + 1), false).unwrap().is_some(), "activations warn");
        assert_eq!(check(&small, None, false), Ok(None), "nothing known, nothing refused");
    }
}
