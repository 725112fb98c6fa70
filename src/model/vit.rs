//! Vision Transformer with the reference's structure and parameter names (`patch_embed.proj`,
//! `cls_token`, `pos_embed`, `blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`),
//! so weights move between this project and the reference / timm-style code unchanged.

use super::init::trunc_normal_;
use tch::{nn, nn::Module, Kind, Tensor};

/// Shape of a ViT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VitSpec {
    pub img_size: i64,
    pub patch_size: i64,
    pub embed_dim: i64,
    pub depth: i64,
    pub num_heads: i64,
    pub mlp_ratio: f64,
    pub drop_path_rate: f64,
}

impl VitSpec {
    pub fn dim_and_heads(&self) -> (i64, i64) {
        (self.embed_dim, self.num_heads)
    }

    fn grid(&self) -> i64 {
        self.img_size / self.patch_size
    }
}

const LN_EPS: f64 = 1e-6;

fn layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], nn::LayerNormConfig { eps: LN_EPS, ..Default::default() })
}

/// Linear layer initialised as the reference's `_init_weights`: truncated normal (std 0.02), bias 0.
fn linear(p: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    let cfg = nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true };
    let l = nn::linear(p, in_dim, out_dim, cfg);
    trunc_normal_(&l.ws, 0.02);
    l
}

/// Stochastic depth: drops a sample's whole residual branch with probability `rate` in training.
fn drop_path(x: &Tensor, rate: f64, train: bool) -> Tensor {
    if rate == 0.0 || !train {
        return x.shallow_clone();
    }
    let keep = 1.0 - rate;
    let mut shape = vec![x.size()[0]];
    shape.extend(std::iter::repeat_n(1, x.dim() - 1));
    let mask = (Tensor::rand(&shape, (x.kind(), x.device())) + keep).floor();
    x / keep * mask
}

/// Up to this many tokens, bfloat16 attention on the CPU is computed as matmul, softmax, matmul
/// instead of by libtorch's fused kernel. Measured with PyTorch 2.11 on 2 Zen 4 cores (forward +
/// backward, head_dim 64; fused in fp32 / fused in bf16 / explicit in bf16): 65 tokens x 3 heads
/// x 64 images 19.5 / 49.7 / 8.6 ms, 17 x 3 x 384 23.4 / 67.0 / 15.8 ms, 197 x 6 x 64 167 / 236 /
/// 88 ms, 785 x 6 x 16 445 / 418 / 463 ms. The fused kernel's bf16 backward is the slow part (it
/// took 29 % of a vit_tiny/4 bf16 step). The explicit path keeps the map (images x heads x N²
/// values) for backward: 50 MB per block at 256 tokens x 6 heads x 64 images, in bf16.
const EXPLICIT_BF16_CPU_ATTENTION_MAX_TOKENS: i64 = 256;

#[derive(Debug)]
struct Attention {
    qkv: nn::Linear,
    proj: nn::Linear,
    num_heads: i64,
    scale: f64,
}

impl Attention {
    fn new(p: nn::Path, dim: i64, num_heads: i64) -> Self {
        let head_dim = dim / num_heads;
        Self { qkv: linear(&p / "qkv", dim, dim * 3), proj: linear(&p / "proj", dim, dim), num_heads, scale: (head_dim as f64).powf(-0.5) }
    }

    /// q, k, v as [B, heads, N, head_dim].
    fn qkv(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (b, n, c) = x.size3().unwrap_or((0, 0, 0));
        let qkv = self.qkv.forward(x).reshape([b, n, 3, self.num_heads, c / self.num_heads]).permute([2, 0, 3, 1, 4]);
        (qkv.get(0), qkv.get(1), qkv.get(2))
    }

    /// softmax(q kᵀ * scale) over the keys, the softmax in float32.
    fn probabilities(&self, q: &Tensor, k: &Tensor) -> Tensor {
        (q.matmul(&k.transpose(-2, -1)) * self.scale).softmax(-1, Kind::Float)
    }

    /// Explicit softmax attention: needed when the attention map itself is wanted.
    fn attention_map(&self, x: &Tensor) -> Tensor {
        let (q, k, _) = self.qkv(x);
        self.probabilities(&q, &k).to_kind(q.kind())
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, c) = x.size3().unwrap_or((0, 0, 0));
        let (q, k, v) = self.qkv(x);
        let y = if q.kind() == Kind::BFloat16 && q.device() == tch::Device::Cpu && n <= EXPLICIT_BF16_CPU_ATTENTION_MAX_TOKENS {
            // Scores and softmax in float32, as inside the fused kernel: with bf16 scores (8 bits
            // of mantissa before the exponential) the parity step's first loss was 3.4e-3 from
            // float32's, with these 2.1e-3 (the fused kernel: 1.7e-3), at the same speed. That
            // product is about 3 % of the block's multiply-adds at 65 tokens.
            let probs = super::autocast::suspended(false, || self.probabilities(&q.to_kind(Kind::Float), &k.to_kind(Kind::Float)));
            probs.to_kind(Kind::BFloat16).matmul(&v)
        } else {
            // libtorch's fused kernel computes softmax(q k^T * scale) v without materialising the map.
            Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, false, self.scale, false)
        };
        self.proj.forward(&y.transpose(1, 2).reshape([b, n, c]))
    }
}

#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    drop_path: f64,
}

impl Block {
    fn new(p: nn::Path, dim: i64, heads: i64, mlp_ratio: f64, drop_path: f64) -> Self {
        let hidden = (dim as f64 * mlp_ratio) as i64;
        Self {
            norm1: layer_norm(&p / "norm1", dim),
            attn: Attention::new(&p / "attn", dim, heads),
            norm2: layer_norm(&p / "norm2", dim),
            fc1: linear(&p / "mlp" / "fc1", dim, hidden),
            fc2: linear(&p / "mlp" / "fc2", hidden, dim),
            drop_path,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x + drop_path(&self.attn.forward(&self.norm1.forward(x)), self.drop_path, train);
        let mlp = self.fc2.forward(&self.fc1.forward(&self.norm2.forward(&x)).gelu("none"));
        &x + drop_path(&mlp, self.drop_path, train)
    }
}

#[derive(Debug)]
pub struct VisionTransformer {
    pub spec: VitSpec,
    patch_embed: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
}

impl VisionTransformer {
    pub fn new(p: nn::Path, spec: VitSpec) -> Self {
        let d = spec.embed_dim;
        let conv_cfg = nn::ConvConfig { stride: spec.patch_size, ..Default::default() };
        // The patch projection keeps PyTorch's default Conv2d init, as in the reference.
        let patch_embed = nn::conv2d(&p / "patch_embed" / "proj", 3, d, spec.patch_size, conv_cfg);
        let num_patches = spec.grid() * spec.grid();
        let cls_token = p.var("cls_token", &[1, 1, d], nn::Init::Const(0.0));
        let pos_embed = p.var("pos_embed", &[1, num_patches + 1, d], nn::Init::Const(0.0));
        trunc_normal_(&pos_embed, 0.02);
        trunc_normal_(&cls_token, 0.02);
        // Stochastic depth rises linearly across depth (torch.linspace(0, rate, depth)).
        let rates: Vec<f64> = if spec.depth > 1 {
            (0..spec.depth).map(|i| spec.drop_path_rate * i as f64 / (spec.depth - 1) as f64).collect()
        } else {
            vec![0.0; spec.depth as usize]
        };
        let blocks = (0..spec.depth).map(|i| Block::new(&p / "blocks" / i, d, spec.num_heads, spec.mlp_ratio, rates[i as usize])).collect();
        let norm = layer_norm(&p / "norm", d);
        Self { spec, patch_embed, cls_token, pos_embed, blocks, norm }
    }

    pub fn embed_dim(&self) -> i64 {
        self.spec.embed_dim
    }

    /// The reference `interpolate_pos_encoding`: bicubic resize of the patch position grid with
    /// the scale factor (grid + 0.1) / sqrt(N) passed to the kernel itself, which is what makes
    /// its numbers differ from a plain resize to the target size.
    fn interpolate_pos_encoding(&self, npatch: i64, w: i64, h: i64) -> Tensor {
        let n = self.pos_embed.size()[1] - 1;
        if npatch == n && w == h {
            return self.pos_embed.shallow_clone();
        }
        let dim = self.spec.embed_dim;
        let class_pos = self.pos_embed.narrow(1, 0, 1);
        let side = (n as f64).sqrt();
        let w0 = (w / self.spec.patch_size) as f64 + 0.1;
        let h0 = (h / self.spec.patch_size) as f64 + 0.1;
        let (sh, sw) = (w0 / side, h0 / side);
        let grid = self.pos_embed.narrow(1, 1, n).reshape([1, side as i64, side as i64, dim]).permute([0, 3, 1, 2]);
        let out_h = (side.floor() * sh).floor() as i64;
        let out_w = (side.floor() * sw).floor() as i64;
        let patch_pos = grid.upsample_bicubic2d([out_h, out_w], false, sh, sw).permute([0, 2, 3, 1]).reshape([1, -1, dim]);
        Tensor::cat(&[class_pos, patch_pos], 1)
    }

    fn prepare_tokens(&self, x: &Tensor) -> Tensor {
        let size = x.size();
        let (b, w, h) = (size[0], size[2], size[3]);
        let tokens = self.patch_embed.forward(x).flatten(2, -1).transpose(1, 2);
        let cls = self.cls_token.expand([b, -1, -1], false);
        let tokens = Tensor::cat(&[cls, tokens], 1);
        let npatch = tokens.size()[1] - 1;
        &tokens + self.interpolate_pos_encoding(npatch, w, h)
    }

    /// The normalised CLS token, [B, D].
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut t = self.prepare_tokens(x);
        for blk in &self.blocks {
            t = blk.forward_t(&t, train);
        }
        self.norm.forward(&t).select(1, 0)
    }

    /// Normalised outputs (all tokens) of the last `n` blocks, oldest first.
    pub fn intermediate_layers(&self, x: &Tensor, n: usize) -> Vec<Tensor> {
        let mut t = self.prepare_tokens(x);
        let mut out = vec![];
        let depth = self.blocks.len();
        for (i, blk) in self.blocks.iter().enumerate() {
            t = blk.forward_t(&t, false);
            if depth - i <= n {
                out.push(self.norm.forward(&t));
            }
        }
        out
    }

    /// The last block's normalised tokens as a spatial map: the patch tokens [B, D, H/p, W/p]
    /// and the CLS token [B, D] (the reference's `eval_copy_detection.py` pools the first and
    /// concatenates the second).
    pub fn patch_map(&self, x: &Tensor) -> (Tensor, Tensor) {
        let size = x.size();
        let p = self.spec.patch_size;
        let (b, h, w) = (size[0], size[2] / p, size[3] / p);
        let last = self.intermediate_layers(x, 1).pop().unwrap_or_else(|| self.prepare_tokens(x));
        let d = last.size()[2];
        let patches = last.narrow(1, 1, h * w).reshape([b, h, w, d]).permute([0, 3, 1, 2]);
        (patches, last.select(1, 0))
    }

    /// Attention map of the last block, [B, heads, N, N].
    pub fn last_self_attention(&self, x: &Tensor) -> Tensor {
        let mut t = self.prepare_tokens(x);
        let last = self.blocks.len().saturating_sub(1);
        for blk in &self.blocks[..last] {
            t = blk.forward_t(&t, false);
        }
        match self.blocks.last() {
            Some(blk) => blk.attn.attention_map(&blk.norm1.forward(&t)),
            None => Tensor::zeros([0], (Kind::Float, x.device())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::autocast::{AmpDtype, Autocast, AVAILABLE};

    /// bf16 CPU attention computes what the fused float32 kernel does, to bf16's precision,
    /// forward and backward: at 17 and 65 tokens (the explicit path) and just past its limit (the
    /// fused kernel in bf16).
    #[test]
    fn explicit_bf16_cpu_attention_matches_the_fused_float32_kernel() {
        if !AVAILABLE || !crate::model::autocast::cpu_has_bf16() {
            eprintln!("SKIPPED: no CPU bf16 autocast here");
            return;
        }
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let attn = Attention::new(vs.root() / "attn", 48, 3);
        let bf16 = Autocast { cuda: false, dtype: AmpDtype::Bf16 };
        for tokens in [17, 65, EXPLICIT_BF16_CPU_ATTENTION_MAX_TOKENS + 1] {
            let x = Tensor::randn([4, tokens, 48], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
            let reference = attn.forward(&x);
            let grad_ref = Tensor::run_backward(&[reference.sum(Kind::Float)], &[&x], false, false).remove(0);
            let mixed = bf16.run(|| attn.forward(&x)).unwrap().to_kind(Kind::Float);
            let grad_mixed = Tensor::run_backward(&[mixed.sum(Kind::Float)], &[&x], false, false).remove(0);
            let rel = |a: &Tensor, b: &Tensor| (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-12);
            let (out_err, grad_err) = (rel(&mixed, &reference), rel(&grad_mixed, &grad_ref));
            // bf16 keeps 8 bits of mantissa: relative errors of a few 2^-8 over a block.
            assert!(out_err < 2e-2 && grad_err < 3e-2, "{tokens} tokens: output {out_err:.2e}, input gradient {grad_err:.2e}");
        }
    }
}
