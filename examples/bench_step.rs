//! Micro-benchmark of one DINO training step (forward + backward + optimizer + EMA), not a test.
//!
//! Default configuration: the core issue's comparison point — vit_tiny, patch 4, 32 px global and
//! 16 px local crops (2 + 6), batch 64, out_dim 4096, float32 on CPU. The reference PyTorch code
//! measured 9.7 s per iteration (6.6 images/s) and 4.7 GB peak RSS on the same 2-core machine kind.
//!
//! cargo run --release --example bench_step -- [ITERS] [BATCH] [fp32|bf16] [vit_tiny4|cifar-quick]
//!
//! `bf16`: mixed precision as `--use_fp16 true` gives it (CPU bfloat16 autocast where the CPU has
//! bf16 instructions, CUDA autocast on a GPU). `cifar-quick`: the CPU preset's step instead
//! (ResNet-18, batch norm in the head, out_dim 256, 32 px x2 + 16 px x4, its momentum and
//! teacher temperature), the preset scripts/peer-step.py compares with as `cifar-quick`.
//! `STEP_AFTER_BACKWARD=1`: the optimizer steps after the backward pass instead of inside it
//! (`DinoState::optimizer_in_backward`), for A/B runs of the same binary.

use dino_tui::config::TrainConfig;
use dino_tui::train::step::{DinoState, StepParams};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user + system) this process has used: robust to other load on a shared machine.
fn cpu_seconds() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr());
        u.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let iters: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let batch: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let mixed = args.get(3).is_some_and(|s| s == "bf16");
    let which = args.get(4).map(String::as_str).unwrap_or("vit_tiny4");
    let cuda = std::env::var("BENCH_CUDA").is_ok() && dino_tui::config::validate::resolve_device("auto")?.is_cuda();
    let device = if cuda { Device::Cuda(0) } else { Device::Cpu };
    let (mut c, p) = match which {
        "vit_tiny4" => {
            let mut c = TrainConfig::default();
            c.model.arch = dino_tui::config::Arch::VitTiny;
            c.model.patch_size = 4;
            c.crops.global_crop_size = 32;
            c.crops.local_crop_size = 16;
            c.crops.local_crops_number = 6;
            c.model.out_dim = 4096;
            (c, StepParams { epoch: 1, lr: 1e-4, wd: 0.04, momentum: 0.996, teacher_temp: 0.04 })
        }
        "cifar-quick" => {
            let c = dino_tui::config::preset("cifar-quick").ok_or_else(|| anyhow::anyhow!("the cifar-quick preset does not load"))?;
            let p = StepParams { epoch: 1, lr: 1e-3, wd: 0.04, momentum: c.teacher.momentum_teacher, teacher_temp: c.teacher.teacher_temp };
            (c, p)
        }
        other => anyhow::bail!("bench_step: unknown configuration {other:?} (vit_tiny4 or cifar-quick)"),
    };
    c.optim.batch_size_per_gpu = batch as usize;
    c.optim.use_fp16 = device.is_cuda() || mixed;
    c.validate()?;
    tch::manual_seed(0);
    let mut state = DinoState::new(&c, device)?;
    state.optimizer_in_backward = std::env::var_os("STEP_AFTER_BACKWARD").is_none();
    let (global, local) = (c.crops.global_crop_size, c.crops.local_crop_size);
    let crops: Vec<Tensor> = (0..c.ncrops())
        .map(|i| {
            let s = if i < 2 { global } else { local } as i64;
            Tensor::randn([batch, 3, s, s], (Kind::Float, device))
        })
        .collect();
    println!(
        "bench_step: {which} ({:?}), {global}px x2 + {local}px x{}, batch {batch}, out_dim {}, {:?}, {}, {} torch threads, optimizer {} the backward pass",
        c.model.arch,
        c.crops.local_crops_number,
        c.model.out_dim,
        device,
        dino_tui::train::precision::choose(&c, device).describe(),
        tch::get_num_threads(),
        if state.optimizer_in_backward { "in" } else { "after" }
    );
    state.step(&crops, p)?; // warm-up: allocations, first-touch
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    for _ in 0..iters {
        state.step(&crops, p)?;
    }
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let per_iter = t0.elapsed().as_secs_f64() / iters as f64;
    let cpu_per_iter = (cpu_seconds() - cpu0) / iters as f64;
    println!(
        "{:.3} s/iteration, {:.1} images/s, {:.2} CPU-s/iteration, peak RSS {:.0} MB ({} timed iterations)",
        per_iter,
        batch as f64 / per_iter,
        cpu_per_iter,
        peak_rss_mb(),
        iters
    );
    Ok(())
}
