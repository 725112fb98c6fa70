use crate::config::TrainConfig;
pub struct VitSpec { pub embed_dim: i64, pub depth: i64, pub num_heads: i64 }
impl VitSpec {
    pub fn from_config(c: &TrainConfig) -> Self {
        let (d, depth, h) = match c.arch.as_str() { "vit_tiny" => (192, 12, 3), "vit_base" => (768, 12, 12), _ => (384, 12, 6) };
        Self { embed_dim: c.embed_dim.unwrap_or(d), depth: c.depth.unwrap_or(depth), num_heads: c.num_heads.unwrap_or(h) }
    }
    pub fn dim_and_heads(&self) -> (i64, i64) { (self.embed_dim, self.num_heads) }
}
