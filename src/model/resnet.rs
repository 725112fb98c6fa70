//! ResNet-18 and ResNet-50 in torchvision's layout and parameter names (`conv1`, `bn1`,
//! `layerN.M.{conv1,bn1,...,downsample.0,downsample.1}`), with the classifier replaced by identity
//! as the reference does (`fc = nn.Identity()`), so the output is the pooled feature.
//!
//! The `cifar` stem (a 3x3 stride-1 `conv1`, no max-pool) is the usual change for 32 px images
//! (SimCLR's CIFAR experiments, solo-learn, lightly): torchvision's 7x7 stride-2 stem plus max-pool
//! shrinks a 32 px crop to 8x8 before the first block and to 1x1 at `layer4`, which throws away
//! most of what such an image shows.

use super::arch::{Arch, ResNetStem};
use super::autocast;
use tch::{nn, nn::ModuleT, Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResNetDepth {
    R18,
    R50,
}

impl ResNetDepth {
    pub fn from_arch(arch: Arch) -> Option<Self> {
        match arch {
            Arch::ResNet18 => Some(Self::R18),
            Arch::ResNet50 => Some(Self::R50),
            _ => None,
        }
    }
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> nn::Conv2D {
    // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu"), no bias.
    let cfg = nn::ConvConfig {
        stride,
        padding: k / 2,
        bias: false,
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

/// `x` through `c`, a convolution made by [`conv`] (padding `k / 2`). On the CPU in bfloat16, a
/// 3x3 convolution of a 1x1 map runs as its centre tap, a 1x1 convolution: the same function for
/// any stride, since the eight other taps see only padding. Why: libtorch 2.11's (oneDNN's) bf16
/// weight gradient of a 3x3, stride-2, padding-1 convolution of a 1x1 map is non-finite in about
/// half the calls on two threads, a race (measured with a 128 x 256 x 1 x 1 input and 512
/// filters: 9 of 20 calls; one thread 0 of 20; float32 0 of 20; 2x2 maps and stride 1
/// unaffected). A 16 px crop reaches `layer4.0.conv1` as such a map through the ImageNet stem, so
/// `--use_fp16 true` runs of the cifar-quick preset stopped with "loss is NaN" within a few steps.
/// Float32 keeps libtorch's convolution, so its results are unchanged.
fn conv_forward(c: &nn::Conv2D, x: &Tensor) -> Tensor {
    let (s, k) = (x.size(), c.ws.size());
    // Shapes first: the autocast query crosses into C++, and almost no call needs it.
    let one_by_one_3x3 = s[2..] == [1, 1] && k[2..] == [3, 3] && x.device() == Device::Cpu;
    if one_by_one_3x3 && (x.kind() == Kind::BFloat16 || autocast::is_enabled(false)) {
        let centre = c.ws.narrow(2, 1, 1).narrow(3, 1, 1);
        return x.conv2d(&centre, c.bs.as_ref(), [1, 1], [0, 0], [1, 1], 1);
    }
    x.apply(c)
}

/// `t` (N, C, H, W) with channels-last strides (N, H, W, C in memory): the same tensor to every
/// operation, but libtorch's CPU convolutions (oneDNN) run on that layout natively and otherwise
/// reorder each input, weight and gradient to it and back. Measured on the cifar-quick step
/// (`examples/bench_step`, ResNet-18, 32/16 px, batch 64, fp32, Zen 3): 1.15-1.37x faster with
/// weights and inputs channels-last, 1.05-1.1x with the inputs alone (the weights are then
/// reordered at every call), so `ResNet::new` stores its convolution weights this way on the CPU.
fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// A residual block. Its ReLUs run in place, as torchvision's (`ReLU(inplace=True)`): each
/// follows a BatchNorm or the residual sum, whose backward passes do not need their outputs, so
/// autograd keeps one activation per ReLU instead of two (about a third less activation memory).
#[derive(Debug)]
struct Unit {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Unit {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut y = x.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, (c, b)) in self.convs.iter().enumerate() {
            y = b.forward_t(&conv_forward(c, &y), train);
            if i < last {
                let _ = y.relu_();
            }
        }
        let identity = match &self.downsample {
            Some((c, b)) => b.forward_t(&conv_forward(c, x), train),
            None => x.shallow_clone(),
        };
        let mut out = y + identity;
        let _ = out.relu_();
        out
    }
}

#[derive(Debug)]
pub struct ResNet {
    depth: ResNetDepth,
    stem: ResNetStem,
    width: i64,
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    units: Vec<Unit>,
    out_dim: i64,
    /// Convolution weights and inputs channels-last (on the CPU; see [`channels_last`]).
    channels_last: bool,
}

impl ResNet {
    /// `width`: channels of the stem and `layer1` (torchvision: 64); each later stage doubles it.
    pub fn new(p: nn::Path, depth: ResNetDepth, stem: ResNetStem, width: i64) -> Self {
        let (counts, bottleneck): ([i64; 4], bool) = match depth {
            ResNetDepth::R18 => ([2, 2, 2, 2], false),
            ResNetDepth::R50 => ([3, 4, 6, 3], true),
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let conv1 = match stem {
            ResNetStem::Imagenet | ResNetStem::Mid => conv(&p / "conv1", 3, width, 7, 2),
            ResNetStem::Cifar => conv(&p / "conv1", 3, width, 3, 1),
        };
        let bn1 = bn(&p / "bn1", width);
        let mut units = vec![];
        let mut c_in = width;
        let base = width;
        for (li, &n) in counts.iter().enumerate() {
            let width = base << li;
            let layer = &p / format!("layer{}", li + 1);
            for bi in 0..n {
                let b = &layer / bi;
                let stride = if bi == 0 && li > 0 { 2 } else { 1 };
                let c_out = width * expansion;
                let convs = if bottleneck {
                    // torchvision (v1.5) puts the stride on the 3x3 convolution.
                    vec![
                        (conv(&b / "conv1", c_in, width, 1, 1), bn(&b / "bn1", width)),
                        (conv(&b / "conv2", width, width, 3, stride), bn(&b / "bn2", width)),
                        (conv(&b / "conv3", width, c_out, 1, 1), bn(&b / "bn3", c_out)),
                    ]
                } else {
                    vec![
                        (conv(&b / "conv1", c_in, width, 3, stride), bn(&b / "bn1", width)),
                        (conv(&b / "conv2", width, width, 3, 1), bn(&b / "bn2", width)),
                    ]
                };
                let downsample = (stride != 1 || c_in != c_out).then(|| {
                    let d = &b / "downsample";
                    (conv(&d / 0, c_in, c_out, 1, stride), bn(&d / 1, c_out))
                });
                units.push(Unit { convs, downsample });
                c_in = c_out;
            }
        }
        let channels_last = p.device() == Device::Cpu;
        let r = Self { depth, stem, width, conv1, bn1, units, out_dim: c_in, channels_last };
        if channels_last {
            r.convolution_weights_to_channels_last();
        }
        r
    }

    /// Re-lays every convolution weight in place (`set_data`: the VarStore's variable is the same
    /// tensor, so optimizers, EMA and checkpoint loads, which `copy_` into it, keep the layout;
    /// checkpoint and export writers make C-order copies).
    fn convolution_weights_to_channels_last(&self) {
        let convs = self.units.iter().flat_map(|u| u.convs.iter().chain(&u.downsample).map(|(c, _)| c));
        for c in std::iter::once(&self.conv1).chain(convs) {
            let mut w = c.ws.shallow_clone();
            tch::no_grad(|| w.set_data(&channels_last(&c.ws)));
        }
    }

    pub fn embed_dim(&self) -> i64 {
        self.out_dim
    }

    pub fn depth(&self) -> ResNetDepth {
        self.depth
    }

    pub fn stem(&self) -> ResNetStem {
        self.stem
    }

    /// Channels of the stem and `layer1` (torchvision's: 64).
    pub fn width(&self) -> i64 {
        self.width
    }

    /// Pooled features [B, 8 width] (ResNet-18: 512) or [B, 32 width] (ResNet-50: 2048).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.feature_map(x, train).adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }

    /// The last stage's spatial map before pooling, [B, C, H/s, W/s] (s: 32 with torchvision's
    /// stem, 16 with the mid one, 8 with the CIFAR one): what PCA maps and copy detection read,
    /// where the pooled vector has lost the layout.
    pub fn feature_map(&self, x: &Tensor, train: bool) -> Tensor {
        let x = if self.channels_last { channels_last(x) } else { x.shallow_clone() };
        let mut y = self.bn1.forward_t(&conv_forward(&self.conv1, &x), train);
        let _ = y.relu_();
        if self.stem == ResNetStem::Imagenet {
            y = y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for u in &self.units {
            y = u.forward_t(&y, train);
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn names(depth: ResNetDepth) -> (nn::VarStore, ResNet) {
        let vs = nn::VarStore::new(Device::Cpu);
        let r = ResNet::new(vs.root(), depth, ResNetStem::Imagenet, 64);
        (vs, r)
    }

    #[test]
    fn resnet18_shapes_and_torchvision_names() {
        let (vs, r) = names(ResNetDepth::R18);
        let vars = vs.variables();
        assert_eq!(vars["conv1.weight"].size(), vec![64, 3, 7, 7]);
        assert_eq!(vars["layer2.0.downsample.0.weight"].size(), vec![128, 64, 1, 1]);
        assert_eq!(vars["layer4.1.bn2.running_var"].size(), vec![512]);
        assert!(!vars.contains_key("layer1.0.downsample.0.weight"));
        assert!(!vars.keys().any(|k| k.starts_with("fc")));
        // torchvision's resnet18 has 62 parameter tensors; without fc, 60.
        assert_eq!(vs.trainable_variables().len(), 60);
        let y = r.forward_t(&Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu)), false);
        assert_eq!(y.size(), vec![2, 512]);
    }

    #[test]
    fn cifar_and_mid_stems_keep_more_resolution_into_layer1() {
        let vs = nn::VarStore::new(Device::Cpu);
        let r = ResNet::new(vs.root(), ResNetDepth::R18, ResNetStem::Cifar, 64);
        let vars = vs.variables();
        assert_eq!(vars["conv1.weight"].size(), vec![64, 3, 3, 3]);
        // Same names and count as torchvision's, so checkpoints differ only in conv1's kernel.
        assert_eq!(vs.trainable_variables().len(), 60);
        let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let stem = r.bn1.forward_t(&x.apply(&r.conv1), false).relu();
        assert_eq!(stem.size(), vec![2, 64, 32, 32], "no stride, no max-pool");
        assert_eq!(r.forward_t(&x, true).size(), vec![2, 512]);
        // The mid stem: torchvision's tensors, half the resolution into layer1 (no max-pool).
        let vs = nn::VarStore::new(Device::Cpu);
        let r = ResNet::new(vs.root(), ResNetDepth::R18, ResNetStem::Mid, 64);
        assert_eq!(vs.variables()["conv1.weight"].size(), vec![64, 3, 7, 7]);
        let mut y = r.bn1.forward_t(&x.apply(&r.conv1), false).relu();
        assert_eq!(y.size(), vec![2, 64, 16, 16]);
        for u in &r.units {
            y = u.forward_t(&y, false);
        }
        assert_eq!(y.size(), vec![2, 512, 2, 2], "layer4 sees 2x2, not 1x1");
    }

    /// `--resnet_width`: the same names and tensor count, every stage scaled, the output 8x the
    /// width (ResNet-18) or 32x (ResNet-50).
    #[test]
    fn width_scales_every_stage_and_keeps_the_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let r = ResNet::new(vs.root(), ResNetDepth::R18, ResNetStem::Cifar, 16);
        let vars = vs.variables();
        assert_eq!(vars["conv1.weight"].size(), vec![16, 3, 3, 3]);
        assert_eq!(vars["layer2.0.downsample.0.weight"].size(), vec![32, 16, 1, 1]);
        assert_eq!(vars["layer4.1.conv2.weight"].size(), vec![128, 128, 3, 3]);
        assert_eq!(vs.trainable_variables().len(), 60);
        assert_eq!((r.width(), r.embed_dim()), (16, 128));
        assert_eq!(r.forward_t(&Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu)), true).size(), vec![2, 128]);
        let vs = nn::VarStore::new(Device::Cpu);
        let r = ResNet::new(vs.root(), ResNetDepth::R50, ResNetStem::Imagenet, 32);
        assert_eq!(vs.variables()["layer1.0.conv3.weight"].size(), vec![128, 32, 1, 1]);
        assert_eq!(r.embed_dim(), 1024);
    }

    /// Channels-last weights on the CPU compute what C-order ones do (the same network read out
    /// with its weights re-laid in C order and `channels_last` off), forward and backward, for
    /// three initialisations.
    #[test]
    fn channels_last_weights_compute_the_same_function() {
        // Relative to the largest value; a weight read in the wrong layout differs by O(1).
        // Outputs: float32 sums taken in another order, measured up to 8e-6 (training mode) and
        // 6e-7 (eval mode) over 20 initialisations. The gradient is looser: where a ReLU input or a
        // max-pool near-tie falls the other way, one element's gradient takes another route, and
        // at `layer4` (1x1 maps, one value per image and channel) that moves the stem's weight
        // gradient by up to 4e-3 (1 initialisation of 20; the others within 1.2e-6).
        let diff = |a: &Tensor, b: &Tensor| f64::try_from((a - b).abs().max()).unwrap() / f64::try_from(b.abs().max()).unwrap();
        for seed in 0..8 {
            tch::manual_seed(seed);
            let vs = nn::VarStore::new(Device::Cpu);
            let r = ResNet::new(vs.root(), ResNetDepth::R18, ResNetStem::Imagenet, 64);
            assert_eq!(vs.variables()["layer2.0.conv1.weight"].stride(), vec![576, 1, 192, 64], "N, H, W, C in memory");
            let plain_vs = nn::VarStore::new(Device::Cpu);
            let mut plain = ResNet::new(plain_vs.root(), ResNetDepth::R18, ResNetStem::Imagenet, 64);
            tch::no_grad(|| {
                for (name, mut t) in plain_vs.variables() {
                    t.set_data(&vs.variables()[&name].contiguous());
                }
            });
            plain.channels_last = false;
            assert!(plain_vs.variables()["layer2.0.conv1.weight"].is_contiguous());
            let x = Tensor::randn([16, 3, 32, 32], (Kind::Float, Device::Cpu));
            let train = tch::no_grad(|| diff(&r.forward_t(&x, true), &plain.forward_t(&x, true)));
            assert!(train < 1e-3, "seed {seed}: training-mode forward differs by {train}");
            let (y, y_plain) = (r.forward_t(&x, false), plain.forward_t(&x, false));
            assert!(diff(&y, &y_plain) < 1e-4, "seed {seed}: forward differs by {}", diff(&y, &y_plain));
            y.square().sum(Kind::Float).backward();
            y_plain.square().sum(Kind::Float).backward();
            let (g, g_plain) = (vs.variables()["conv1.weight"].grad(), plain_vs.variables()["conv1.weight"].grad());
            assert!(diff(&g, &g_plain) < 5e-2, "seed {seed}: weight gradient differs by {}", diff(&g, &g_plain));
        }
    }

    #[test]
    fn resnet50_shapes_and_torchvision_names() {
        let (vs, r) = names(ResNetDepth::R50);
        let vars = vs.variables();
        assert_eq!(vars["layer1.0.conv3.weight"].size(), vec![256, 64, 1, 1]);
        assert_eq!(vars["layer3.5.conv2.weight"].size(), vec![256, 256, 3, 3]);
        assert_eq!(vars["layer4.0.downsample.1.weight"].size(), vec![2048]);
        assert_eq!(vs.trainable_variables().len(), 159);
        let total: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        // torchvision's resnet50 without its fc layer: 25,557,032 - 2,049,000.
        assert_eq!(total, 23_508_032);
        assert_eq!(r.forward_t(&Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu)), true).size(), vec![1, 2048]);
    }

    /// The centre-tap path computes the 3x3 convolution's function: the other taps see only
    /// padding (checked in float64), and in bf16 its output matches to bf16's precision. Whether
    /// libtorch's own kernel would have failed is a race this test cannot force;
    /// `train::step`'s cifar-quick bf16 test shows it.
    #[test]
    fn bf16_convolution_of_a_one_by_one_map_is_its_centre_tap() {
        use crate::model::autocast::{AmpDtype, Autocast, AVAILABLE};
        let vs = nn::VarStore::new(Device::Cpu);
        let c = conv(vs.root() / "c", 256, 512, 3, 2);
        let x = Tensor::randn([128, 256, 1, 1], (Kind::Float, Device::Cpu));
        let double = |t: &Tensor| t.to_kind(Kind::Double);
        let centre = double(&x).conv2d(&double(&c.ws).narrow(2, 1, 1).narrow(3, 1, 1), None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        let full = double(&x).conv2d(&double(&c.ws), None::<Tensor>, [2, 2], [1, 1], [1, 1], 1);
        assert!(f64::try_from((&centre - &full).abs().max()).unwrap() < 1e-12, "the other taps see only padding");
        if !(AVAILABLE && autocast::cpu_has_bf16()) {
            eprintln!("SKIPPED (bf16 part): no CPU bfloat16 autocast here");
            return;
        }
        let y = Autocast { cuda: false, dtype: AmpDtype::Bf16 }.run(|| conv_forward(&c, &x)).unwrap();
        assert_eq!((y.kind(), y.size()), (Kind::BFloat16, vec![128, 512, 1, 1]));
        let err = f64::try_from((double(&y) - &full).abs().max()).unwrap();
        let scale = f64::try_from(full.abs().max()).unwrap();
        assert!(err < 2e-2 * scale, "bf16 centre tap off by {err} (outputs up to {scale})");
    }
}
