//! The `dino` binary as a person uses it: help, config printing, validation errors, headless
//! training, and resuming after the process is killed with SIGKILL mid-epoch.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn dino() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dino"))
}

fn run(args: &[&str]) -> Output {
    dino().args(args).output().expect("dino runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// libtorch_cuda and the CUDA libraries behind it (~350 MB and 0.3 s of every start) are opened
/// only where an NVIDIA driver is, or with DINO_CUDA=1 (src/model/cuda_backend.rs); glibc's loader
/// names every library it opens under LD_DEBUG=libs. `--version` says what became of the backend.
#[test]
fn the_cuda_backend_is_opened_only_with_a_driver_or_when_asked() {
    let version = |cuda: Option<&str>| {
        let mut c = dino();
        c.arg("--version").env("LD_DEBUG", "libs").env_remove("DINO_CUDA");
        if let Some(v) = cuda {
            c.env("DINO_CUDA", v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let opened = String::from_utf8_lossy(&o.stderr).lines().any(|l| l.contains("libtorch_cuda.so") && l.contains("calling init"));
        (String::from_utf8_lossy(&o.stdout).into_owned(), opened)
    };
    let (said, opened) = version(Some("0"));
    assert!(said.contains("CUDA backend not loaded: DINO_CUDA=0") && !opened, "{said}");
    let (said, opened) = version(Some("1"));
    let cuda_build = std::env::var_os("LIBTORCH").is_none_or(|t| Path::new(&t).join("lib/libtorch_cuda.so").exists());
    if cuda_build {
        assert!(said.contains("CUDA backend loaded (CUDA ") && opened, "{said}");
    } else {
        assert!(said.contains("this libtorch is a CPU build") && !opened, "{said}");
    }
    // Without DINO_CUDA the machine decides; on one without a driver nothing is opened.
    let (said, opened) = version(None);
    if said.contains("no NVIDIA driver") {
        assert!(!opened, "{said}");
    } else {
        assert_eq!(opened, cuda_build, "{said}");
    }
}

#[test]
fn help_lists_every_command_and_reference_flag() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let t = text(&o);
    for cmd in ["train", "tui", "attach", "ctl", "eval", "outliers", "search", "duplicates", "runs", "demo", "make-demo-data"] {
        assert!(t.contains(cmd), "--help lacks {cmd}:\n{t}");
    }
    let t = text(&run(&["train", "--help"]));
    for flag in [
        "--arch",
        "--patch_size",
        "--out_dim",
        "--norm_last_layer",
        "--momentum_teacher",
        "--use_bn_in_head",
        "--warmup_teacher_temp",
        "--teacher_temp",
        "--warmup_teacher_temp_epochs",
        "--use_fp16",
        "--weight_decay",
        "--weight_decay_end",
        "--clip_grad",
        "--batch_size_per_gpu",
        "--epochs",
        "--freeze_last_layer",
        "--lr",
        "--warmup_epochs",
        "--min_lr",
        "--optimizer",
        "--drop_path_rate",
        "--global_crops_scale",
        "--local_crops_number",
        "--local_crops_scale",
        "--data_path",
        "--output_dir",
        "--saveckp_freq",
        "--seed",
        "--num_workers",
        "--config",
        "--device",
        "--global_crop_size",
        "--local_crop_size",
        "--headless",
        "--name",
    ] {
        assert!(t.contains(flag), "train --help lacks {flag}");
    }
    let t = text(&run(&["eval", "--help"]));
    for sub in ["knn", "linear", "label-efficiency"] {
        assert!(t.contains(sub), "eval --help lacks {sub}");
    }
}

#[test]
fn print_config_shows_the_effective_values() {
    let o = run(&["train", "--config", "cifar-quick", "--epochs", "3", "--print-config"]);
    assert!(o.status.success(), "{}", text(&o));
    let c = dino_tui::config::TrainConfig::from_toml_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(
        (c.optim.epochs, c.model.arch, c.crops.global_crop_size, c.crops.blur_sigma),
        (3, dino_tui::config::Arch::ResNet18, 32, (0.0, 0.0))
    );
}

#[test]
fn colour_flags_reach_the_config() {
    let o = run(&[
        "train",
        "--color_jitter",
        "0.3",
        "0.2",
        "0.1",
        "0",
        "--color_jitter_prob",
        "0.5",
        "--grayscale_prob",
        "0",
        "--solarize_prob",
        "0.1",
        "--print-config",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let c = dino_tui::config::TrainConfig::from_toml_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(
        (c.crops.color_jitter, c.crops.color_jitter_prob, c.crops.grayscale_prob, c.crops.solarize_prob),
        ([0.3, 0.2, 0.1, 0.0], 0.5, 0.0, 0.1)
    );
    // Without the flags: the reference's hard-coded values.
    let o = run(&["train", "--print-config"]);
    let c = dino_tui::config::TrainConfig::from_toml_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(
        (c.crops.color_jitter, c.crops.color_jitter_prob, c.crops.grayscale_prob, c.crops.solarize_prob),
        ([0.4, 0.4, 0.2, 0.1], 0.8, 0.2, 0.2)
    );
}

#[test]
fn bad_values_fail_with_the_setting_named() {
    for (args, needle) in [
        (vec!["train", "--lr", "-0.1", "--print-config"], "--lr"),
        (vec!["train", "--arch", "nonsense", "--print-config"], "--arch"),
        (vec!["train", "--global_crops_scale", "0.4", "1.2", "--print-config"], "--global_crops_scale"),
        (vec!["train", "--color_jitter", "0.4", "0.4", "0.2", "--print-config"], "--color_jitter"),
        (vec!["train", "--color_jitter", "0.4", "0.4", "0.2", "0.7", "--print-config"], "--color_jitter"),
        (vec!["train", "--grayscale_prob", "2", "--print-config"], "--grayscale_prob"),
        (vec!["train", "--headless", "--data_path", "/nonexistent/dino-data"], "/nonexistent/dino-data"),
        (vec!["train", "--config", "/nonexistent/preset.toml"], "/nonexistent/preset.toml"),
    ] {
        let o = run(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        let t = text(&o);
        assert!(t.contains(needle), "{args:?}: message does not name {needle}:\n{t}");
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metric_iters(run_dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["iter"].as_u64())
        .collect()
}

#[test]
fn resumes_after_kill_9_mid_epoch() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 16); // 80 images, 10 iterations per epoch
    let out = d.path().join("run");
    let mut c = common::tiny_config(&data, &out);
    c.optim.epochs = 3;
    // Slow enough that the kill lands mid-epoch: a bigger head and more local crops.
    c.model.out_dim = 4096;
    c.crops.local_crops_number = 6;
    let cfg = d.path().join("tiny.toml");
    std::fs::write(&cfg, c.to_toml()).unwrap();
    let args = ["train", "--config", cfg.to_str().unwrap(), "--headless"];

    let mut child = dino().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let ckpt = out.join("checkpoints/checkpoint-latest.json");
    wait_for("first checkpoint", Duration::from_secs(120), || ckpt.exists());
    // Metrics are flushed at checkpoints; the kill comes once epoch 2 is under way.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let meta = dino_tui::run::checkpoint::read_meta(&ckpt).unwrap();
    assert!(meta.iter >= 10, "checkpoint at {}", meta.iter);

    let o = dino().args(args).output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains(&format!("from iteration {}", meta.iter)), "did not resume from {}:\n{t}", meta.iter);
    assert!(t.contains("finished at it 30"), "{t}");
    assert_eq!(metric_iters(&out), (0..30).collect::<Vec<u64>>());
}

/// Shell completions and man pages are generated from the clap definitions, so every flag is in
/// them (a flag added later is too).
#[test]
fn completions_and_man_pages_are_generated_from_the_flags() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef dino"), ("fish", "complete -c dino")] {
        let out = run(&["completions", shell]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains(marker), "{shell}: {text:.300}");
        for flag in ["nproc_per_node", "pretrained_weights", "teacher_temp"] {
            assert!(text.contains(flag), "{shell} completion lacks --{flag}");
        }
    }
    assert!(!run(&["completions", "tcsh"]).status.success(), "an unknown shell is refused");
    let d = tempfile::tempdir().unwrap();
    let pages = d.path().join("man1");
    let out = dino().args(["man", "--output_dir"]).arg(&pages).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in ["dino.1", "dino-train.1", "dino-eval-knn.1", "dino-ctl.1"] {
        let text = std::fs::read_to_string(pages.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page} is not a man page: {text:.200}");
    }
    let train = std::fs::read_to_string(pages.join("dino-train.1")).unwrap();
    assert!(train.contains("batch_size_per_gpu"), "dino-train.1 lists the training flags");
}

/// `make install`'s script: a copy of the binary under PREFIX that starts from another folder
/// with no library path set (its rpath finds libtorch), with completions and man pages beside it.
#[test]
fn install_puts_a_working_dino_with_completions_and_man_pages_under_a_prefix() {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("prefix");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install.sh");
    let out = Command::new("bash").arg(&script).arg(env!("CARGO_BIN_EXE_dino")).arg(&prefix).output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let installed = prefix.join("bin/dino");
    let help =
        Command::new(&installed).arg("--help").current_dir(d.path()).env_remove("LD_LIBRARY_PATH").env_remove("LIBTORCH").output().unwrap();
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("Usage: dino"));
    for f in [
        "share/bash-completion/completions/dino",
        "share/zsh/site-functions/_dino",
        "share/fish/vendor_completions.d/dino.fish",
        "share/man/man1/dino.1",
        "share/man/man1/dino-train.1",
    ] {
        let len = std::fs::metadata(prefix.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 100, "{f} missing or empty under the prefix");
    }
}

#[test]
fn a_run_named_as_dino_runs_lists_it_works_in_ctl_and_train_without_data_says_what_to_give() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("runs/quick");
    std::fs::create_dir_all(&run).unwrap();
    let start = r#"{"type":"start","time":1,"run_dir":"r","name":"quick","arch":"vit_tiny","device":"Cpu","epochs":3,"niter_per_ep":5,"batch_size":8,"out_dim":32,"num_images":40,"start_iter":0}"#;
    std::fs::write(run.join("events.jsonl"), format!("{start}\n{{\"type\":\"stop\",\"state\":\"finished\",\"iter\":15,\"time\":3}}\n"))
        .unwrap();
    let listed = dino().current_dir(d.path()).arg("runs").output().unwrap();
    assert!(text(&listed).lines().any(|l| l.starts_with("quick ")), "{}", text(&listed));
    // The name, from the folder `dino runs` was run in: the run's offline status, exit 3.
    let o = dino().current_dir(d.path()).args(["ctl", "quick", "status"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!((o.status.code(), status["status"].as_str()), (Some(3), Some("finished")), "{}", text(&o));
    // And where weights are taken: the run's folder is looked in (it has no checkpoint here).
    for args in [&["export", "quick"][..], &["eval", "knn", "--pretrained_weights", "quick", "--data_path", "."]] {
        let o = dino().current_dir(d.path()).args(args).output().unwrap();
        let why = text(&o);
        assert!(!o.status.success() && why.contains("runs/quick") && !why.contains("does not exist"), "{args:?}: {why}");
    }

    // No --data_path: named, and nothing created.
    let empty = tempfile::tempdir().unwrap();
    let o = dino().current_dir(empty.path()).args(["train", "--headless"]).output().unwrap();
    assert!(!o.status.success() && text(&o).contains("no data: give --data_path DIR"), "{}", text(&o));
    assert!(!text(&o).contains("/path/to/imagenet"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0, "nothing created");
}
