//! Shared helpers for the end-to-end tests: a tiny real model on generated images.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use dino_tui::config::TrainConfig;
use std::path::Path;

/// Writes the synthetic demo set (5 classes x `per_class`, as many again unlabeled in pretext/).
pub fn demo_data(dir: &Path, per_class: usize) {
    dino_tui::data::write_demo_dataset(dir, per_class, 7, 24).expect("demo data");
}

/// A ViT small enough that an iteration takes milliseconds on a CPU.
pub fn tiny_config(data: &Path, out: &Path) -> TrainConfig {
    {
        let mut c = TrainConfig::default();
        c.model.arch = dino_tui::config::Arch::VitTiny;
        c.model.patch_size = 4;
        c.model.embed_dim = Some(24);
        c.model.depth = Some(1);
        c.model.num_heads = Some(2);
        c.model.out_dim = 32;
        c.model.head_hidden_dim = 32;
        c.model.head_bottleneck_dim = 16;
        c.crops.global_crop_size = 16;
        c.crops.local_crop_size = 8;
        c.crops.local_crops_number = 2;
        c.optim.batch_size_per_gpu = 8;
        c.optim.epochs = 3;
        c.optim.warmup_epochs = 1;
        c.model.drop_path_rate = 0.0;
        c.optim.use_fp16 = false;
        c.run.num_workers = 1;
        c.run.saveckp_freq = 1;
        c.run.data_path = data.to_path_buf();
        c.run.output_dir = Some(out.to_path_buf());
        c.run.device = "cpu".into();
        c.run.print_freq = 1;
        c
    }
}

/// A child process that is killed (and reaped) when the test lets go of it, failed assertions
/// included: a test that panics must not leave a 10,000-epoch trainer running and loading the
/// machine for the tests after it.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` with `SIGKILL` sent to it if the test process dies (a test binary killed by a
/// signal runs no destructors), and kills it when the guard is dropped.
pub fn spawn_guarded(cmd: &mut std::process::Command) -> KillOnDrop {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and changes only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    KillOnDrop(cmd.spawn().expect("spawn"))
}
