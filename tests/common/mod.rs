//! Shared helpers for the end-to-end tests: a tiny real model on generated images.
#![allow(dead_code)]

use dino_tui::config::TrainConfig;
use std::path::Path;

/// Writes the synthetic demo set (5 classes x `per_class`, as many again unlabeled in pretext/).
pub fn demo_data(dir: &Path, per_class: usize) {
    dino_tui::data::write_demo_dataset(dir, per_class, 7, 24).expect("demo data");
}

/// A ViT small enough that an iteration takes milliseconds on a CPU.
pub fn tiny_config(data: &Path, out: &Path) -> TrainConfig {
    TrainConfig {
        arch: dino_tui::config::Arch::VitTiny,
        patch_size: 4,
        embed_dim: Some(24),
        depth: Some(1),
        num_heads: Some(2),
        out_dim: 32,
        head_hidden_dim: 32,
        head_bottleneck_dim: 16,
        global_crop_size: 16,
        local_crop_size: 8,
        local_crops_number: 2,
        batch_size_per_gpu: 8,
        epochs: 3,
        warmup_epochs: 1,
        drop_path_rate: 0.0,
        use_fp16: false,
        num_workers: 1,
        saveckp_freq: 1,
        data_path: data.to_path_buf(),
        output_dir: Some(out.to_path_buf()),
        device: "cpu".into(),
        print_freq: 1,
        ..Default::default()
    }
}
