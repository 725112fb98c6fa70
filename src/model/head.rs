//! The DINO projection head: MLP (optionally with BatchNorm), L2 normalisation, and a
//! weight-normalised last layer, with the reference's parameter names (`mlp.N`, `last_layer.weight_g`,
//! `last_layer.weight_v`).

use super::init::trunc_normal_;
use tch::{nn, nn::Module, nn::ModuleT, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadSpec {
    pub in_dim: i64,
    pub out_dim: i64,
    pub use_bn: bool,
    pub norm_last_layer: bool,
    pub nlayers: i64,
    pub hidden_dim: i64,
    pub bottleneck_dim: i64,
}

#[derive(Debug)]
enum Layer {
    Linear(nn::Linear),
    BatchNorm(nn::BatchNorm),
    Gelu,
}

#[derive(Debug)]
pub struct DinoHead {
    mlp: Vec<Layer>,
    weight_g: Tensor,
    weight_v: Tensor,
}

impl DinoHead {
    pub fn new(p: nn::Path, spec: HeadSpec) -> Self {
        let mlp_path = &p / "mlp";
        let mut mlp = vec![];
        let linear = |i: usize, a: i64, b: i64| {
            let cfg = nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true };
            let l = nn::linear(&mlp_path / i, a, b, cfg);
            trunc_normal_(&l.ws, 0.02);
            Layer::Linear(l)
        };
        let nlayers = spec.nlayers.max(1);
        if nlayers == 1 {
            mlp.push(linear(0, spec.in_dim, spec.bottleneck_dim));
        } else {
            let mut dims = vec![spec.in_dim];
            dims.extend(std::iter::repeat_n(spec.hidden_dim, (nlayers - 1) as usize));
            for w in dims.windows(2) {
                mlp.push(linear(mlp.len(), w[0], w[1]));
                if spec.use_bn {
                    mlp.push(Layer::BatchNorm(nn::batch_norm1d(&mlp_path / mlp.len(), w[1], Default::default())));
                }
                mlp.push(Layer::Gelu);
            }
            mlp.push(linear(mlp.len(), spec.hidden_dim, spec.bottleneck_dim));
        }
        let last = &p / "last_layer";
        // weight_v keeps nn.Linear's default init (weight_norm wraps it after _init_weights ran).
        let bound = 1.0 / (spec.bottleneck_dim as f64).sqrt();
        let weight_v = last.var("weight_v", &[spec.out_dim, spec.bottleneck_dim], nn::Init::Uniform { lo: -bound, up: bound });
        let weight_g = if spec.norm_last_layer {
            last.ones_no_train("weight_g", &[spec.out_dim, 1])
        } else {
            last.var("weight_g", &[spec.out_dim, 1], nn::Init::Const(1.0))
        };
        Self { mlp, weight_g, weight_v }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut x = x.shallow_clone();
        for layer in &self.mlp {
            x = match layer {
                Layer::Linear(l) => l.forward(&x),
                Layer::BatchNorm(bn) => bn.forward_t(&x, train),
                Layer::Gelu => x.gelu("none"),
            };
        }
        let x = x.f_normalize(2.0, -1, 1e-12);
        let weight = Tensor::internal_weight_norm(&self.weight_v, &self.weight_g, 0);
        x.matmul(&weight.tr())
    }
}

trait Normalize {
    fn f_normalize(&self, p: f64, dim: i64, eps: f64) -> Tensor;
}

impl Normalize for Tensor {
    /// `F.normalize`: x / max(||x||_p, eps).
    fn f_normalize(&self, p: f64, dim: i64, eps: f64) -> Tensor {
        let norm = self.norm_scalaropt_dim(p, [dim], true).clamp_min(eps);
        self / norm.expand_as(self)
    }
}
