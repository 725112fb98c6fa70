//! Exact-number tests against the reference implementation's outputs in `../shared/parity`.
//! When that folder is absent they say so and skip; when it is present every file is checked.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use dino_tui::config::{OptimizerKind, TrainConfig};
use dino_tui::model::{weights, DinoHead, HeadSpec, VisionTransformer, VitSpec};
use dino_tui::protocol::schedule::{cosine_schedule, teacher_temp_schedule};
use dino_tui::train::loss::DinoLoss;
use dino_tui::train::step::{DinoState, StepParams};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn parity_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("DINO_PARITY_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/parity"));
    let what = format!("parity vectors not found at {} (set DINO_PARITY_DIR)", dir.display());
    common::prerequisite(dir.join("scalars.json").exists(), &what).then_some(dir)
}

fn load(dir: &std::path::Path, file: &str) -> BTreeMap<String, Tensor> {
    weights::read(&dir.join(file)).expect("parity file readable")
}

fn scalars(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("scalars.json")).unwrap()).unwrap()
}

fn with_prefix(t: &BTreeMap<String, Tensor>, prefix: &str) -> BTreeMap<String, Tensor> {
    t.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.shallow_clone()))).collect()
}

/// Max |a-b| / (atol + rtol*|b|) must be <= 1.
fn assert_close(what: &str, a: &Tensor, b: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(a.size(), b.size(), "{what}: shape");
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let ratio = ((&a - &b).abs() / (b.abs() * rtol + atol)).max().double_value(&[]);
    let maxdiff = (&a - &b).abs().max().double_value(&[]);
    assert!(ratio <= 1.0, "{what}: max abs diff {maxdiff:e} exceeds rtol {rtol:e} / atol {atol:e}");
}

fn vec_f64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

#[test]
fn schedules_match_reference() {
    let Some(dir) = parity_dir() else { return };
    let t = load(&dir, "schedules.safetensors");
    let s = scalars(&dir);
    for name in ["lr", "wd", "momentum", "lr_warm_start"] {
        let a = &s[format!("schedule.{name}.args")];
        let ours = cosine_schedule(
            a["base_value"].as_f64().unwrap(),
            a["final_value"].as_f64().unwrap(),
            a["epochs"].as_u64().unwrap() as usize,
            a["niter_per_ep"].as_u64().unwrap() as usize,
            a["warmup_epochs"].as_u64().unwrap() as usize,
            a["start_warmup_value"].as_f64().unwrap(),
        );
        let reference = vec_f64(&t[&format!("schedule.{name}")]);
        assert_eq!(ours.len(), reference.len(), "{name}: length");
        for (i, (x, y)) in ours.iter().zip(&reference).enumerate() {
            assert!((x - y).abs() <= 1e-12, "{name}[{i}]: {x} vs {y}");
        }
    }
}

#[test]
fn loss_and_center_match_reference() {
    let Some(dir) = parity_dir() else { return };
    let t = load(&dir, "loss.safetensors");
    let a = &scalars(&dir)["loss.args"];
    let temps = teacher_temp_schedule(
        a["warmup_teacher_temp"].as_f64().unwrap(),
        a["teacher_temp"].as_f64().unwrap(),
        a["warmup_teacher_temp_epochs"].as_u64().unwrap() as usize,
        a["nepochs"].as_u64().unwrap() as usize,
    );
    let reference_temps = vec_f64(&t["loss.teacher_temp_schedule"]);
    for (x, y) in temps.iter().zip(&reference_temps) {
        assert!((x - y).abs() < 1e-12, "teacher temp {x} vs {y}");
    }
    let ncrops = a["ncrops"].as_i64().unwrap();
    let out_dim = a["out_dim"].as_i64().unwrap();
    for epoch in [0usize, 1, 4] {
        let mut loss = DinoLoss::new(out_dim, ncrops, Device::Cpu);
        loss.center = t["loss.center_before"].copy();
        let out = loss.forward(&t["loss.student_output"], &t["loss.teacher_output"], temps[epoch]);
        let expected = t[&format!("loss.value_epoch{epoch}")].double_value(&[0]);
        let got = out.loss.double_value(&[]);
        assert!(((got - expected) / expected).abs() < 1e-5, "epoch {epoch}: loss {got} vs {expected}");
        assert_close(&format!("center epoch {epoch}"), &loss.center, &t[&format!("loss.center_after_epoch{epoch}")], 1e-5, 1e-7);
        assert!(out.teacher_entropy > 0.0 && out.kl >= -1e-4, "diagnostics {} {}", out.teacher_entropy, out.kl);
    }
}

fn parity_vit(dir: &std::path::Path) -> (VarStore, VisionTransformer, BTreeMap<String, Tensor>) {
    let t = load(dir, "vit.safetensors");
    let a = &scalars(dir)["vit.args"];
    let spec = VitSpec {
        img_size: a["img_size"].as_i64().unwrap(),
        patch_size: a["patch_size"].as_i64().unwrap(),
        embed_dim: a["embed_dim"].as_i64().unwrap(),
        depth: a["depth"].as_i64().unwrap(),
        num_heads: a["num_heads"].as_i64().unwrap(),
        mlp_ratio: a["mlp_ratio"].as_f64().unwrap(),
        drop_path_rate: 0.0,
    };
    let vs = VarStore::new(Device::Cpu);
    let vit = VisionTransformer::new(vs.root(), spec);
    weights::load_into(&vs, "", &with_prefix(&t, "weights."), &dir.join("vit.safetensors")).unwrap();
    (vs, vit, t)
}

#[test]
fn vit_outputs_match_reference() {
    let Some(dir) = parity_dir() else { return };
    let (_vs, vit, t) = parity_vit(&dir);
    tch::no_grad(|| {
        for size in [32, 16, 24] {
            let cls = vit.forward_t(&t[&format!("input{size}")], false);
            assert_close(&format!("cls{size}"), &cls, &t[&format!("cls{size}")], 1e-5, 1e-5);
        }
        let inter = vit.intermediate_layers(&t["input32"], 2);
        assert_eq!(inter.len(), 2);
        for (i, x) in inter.iter().enumerate() {
            assert_close(&format!("intermediate block {i}"), x, &t[&format!("intermediate32.last2_block{i}")], 1e-5, 1e-5);
        }
        let attn = vit.last_self_attention(&t["input32"]);
        assert_close("last self-attention", &attn, &t["last_selfattention32"], 1e-5, 1e-6);
    });
}

#[test]
fn head_output_matches_reference() {
    let Some(dir) = parity_dir() else { return };
    let t = load(&dir, "head.safetensors");
    let a = &scalars(&dir)["head.args"];
    let spec = HeadSpec {
        in_dim: a["in_dim"].as_i64().unwrap(),
        out_dim: a["out_dim"].as_i64().unwrap(),
        use_bn: a["use_bn"].as_bool().unwrap(),
        norm_last_layer: a["norm_last_layer"].as_bool().unwrap(),
        nlayers: a["nlayers"].as_i64().unwrap(),
        hidden_dim: a["hidden_dim"].as_i64().unwrap(),
        bottleneck_dim: a["bottleneck_dim"].as_i64().unwrap(),
    };
    let vs = VarStore::new(Device::Cpu);
    let head = DinoHead::new(vs.root(), spec);
    weights::load_into(&vs, "", &with_prefix(&t, "weights."), &dir.join("head.safetensors")).unwrap();
    let out = tch::no_grad(|| head.forward_t(&t["input"], false));
    assert_close("head output", &out, &t["output"], 1e-5, 1e-6);
}

/// The reference's three-step configuration (`scalars.json` `train_steps.args`), in float32.
/// The training state the reference's steps start from: student and teacher both loaded with its
/// `student_init.` weights.
fn reference_start(config: &TrainConfig, t: &BTreeMap<String, Tensor>, dir: &std::path::Path) -> DinoState {
    let state = DinoState::new(config, Device::Cpu).unwrap();
    let init = with_prefix(t, "student_init.");
    let src = dir.join("train_steps.safetensors");
    weights::load_into(&state.student_vs, "", &init, &src).unwrap();
    weights::load_into(&state.teacher_vs, "", &init, &src).unwrap();
    state
}

fn parity_step_config(t: &BTreeMap<String, Tensor>, s: &serde_json::Value) -> TrainConfig {
    let a = &s["train_steps.args"];
    let v = &s["vit.args"];
    let h = &s["head.args"];
    let f = |k: &str| a[k].as_f64().unwrap();
    let batch = t["step0.crop0"].size()[0];
    {
        let mut c = TrainConfig::default();
        c.model.arch = dino_tui::config::Arch::VitTiny;
        c.model.patch_size = v["patch_size"].as_u64().unwrap() as usize;
        c.model.embed_dim = Some(v["embed_dim"].as_u64().unwrap() as usize);
        c.model.depth = Some(v["depth"].as_u64().unwrap() as usize);
        c.model.num_heads = Some(v["num_heads"].as_u64().unwrap() as usize);
        c.model.out_dim = h["out_dim"].as_u64().unwrap() as usize;
        c.model.head_hidden_dim = h["hidden_dim"].as_u64().unwrap() as usize;
        c.model.head_bottleneck_dim = h["bottleneck_dim"].as_u64().unwrap() as usize;
        c.model.norm_last_layer = false;
        c.model.drop_path_rate = 0.0;
        c.crops.global_crop_size = 32;
        c.crops.local_crop_size = 16;
        c.crops.local_crops_number = a["ncrops"].as_u64().unwrap() as usize - 2;
        c.optim.batch_size_per_gpu = batch as usize;
        c.optim.lr = f("lr");
        c.optim.min_lr = f("min_lr");
        c.optim.weight_decay = f("wd");
        c.optim.weight_decay_end = f("wd_end");
        c.teacher.momentum_teacher = f("momentum_teacher");
        c.optim.clip_grad = 3.0;
        c.optim.freeze_last_layer = 1;
        c.optim.optimizer = OptimizerKind::Adamw;
        c.optim.use_fp16 = false;
        c
    }
}

#[test]
fn three_training_steps_match_reference() {
    let Some(dir) = parity_dir() else { return };
    let t = load(&dir, "train_steps.safetensors");
    let s = scalars(&dir);
    let a = &s["train_steps.args"];
    let f = |k: &str| a[k].as_f64().unwrap();
    let u = |k: &str| a[k].as_u64().unwrap() as usize;
    let config = parity_step_config(&t, &s);
    config.validate().unwrap();
    let (epochs, niter) = (u("epochs"), u("niter_per_ep"));
    // The vectors were made with the base value already scaled (0.001 is the peak itself).
    let lr = cosine_schedule(f("lr"), f("min_lr"), epochs, niter, u("warmup_epochs"), 0.0);
    let wd = cosine_schedule(f("wd"), f("wd_end"), epochs, niter, 0, 0.0);
    let mom = cosine_schedule(f("momentum_teacher"), 1.0, epochs, niter, 0, 0.0);
    for (name, ours) in [("lr", &lr), ("wd", &wd), ("momentum", &mom)] {
        for (x, y) in ours.iter().zip(vec_f64(&t[&format!("schedule.{name}")])) {
            assert!((x - y).abs() < 1e-12, "schedule {name}: {x} vs {y}");
        }
    }

    let mut state = reference_start(&config, &t, &dir);

    let losses = a["losses"].as_array().unwrap();
    for step in 0..losses.len() {
        let crops: Vec<Tensor> = (0..config.ncrops()).map(|j| t[&format!("step{step}.crop{j}")].shallow_clone()).collect();
        let p = StepParams { epoch: step / niter, lr: lr[step], wd: wd[step], momentum: mom[step], teacher_temp: f("teacher_temp") };
        let out = state.step(&crops, p).unwrap();
        let expected = t[&format!("step{step}.loss")].double_value(&[0]);
        assert!(((out.loss - expected) / expected).abs() < 1e-5, "step {step}: loss {} vs {expected}", out.loss);
        assert_close(&format!("center after step {step}"), &state.loss.center, &t[&format!("step{step}.center_after")], 1e-5, 1e-7);
    }
    for (prefix, vs) in [("student_final.", &state.student_vs), ("teacher_final.", &state.teacher_vs)] {
        let expected = with_prefix(&t, prefix);
        let ours = weights::named_tensors(vs);
        assert_eq!(expected.len(), ours.len(), "{prefix} tensor count");
        // Everything agrees to ~3e-7 except the key part of `attn.qkv.bias`, whose true gradient
        // is zero (softmax ignores a constant added to every key): AdamW turns float noise there
        // into updates of ~1e-5, different noise in each implementation. Hence 1e-4 absolute, the
        // tolerance the parity README gives for three optimizer steps.
        for (name, e) in &expected {
            assert_close(&format!("{prefix}{name}"), &ours[name], e, 1e-4, 1e-4);
        }
        let tight: Vec<&String> = expected.keys().filter(|n| !n.ends_with("attn.qkv.bias")).collect();
        for name in tight {
            assert_close(&format!("{prefix}{name} (tight)"), &ours[name], &expected[name], 1e-5, 1e-6);
        }
    }
}

/// Largest |a - b| over every tensor the two name maps share.
fn max_abs_diff(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for (name, x) in a {
        let d = (x.to_kind(Kind::Double) - b[name].to_kind(Kind::Double)).abs().max().double_value(&[]);
        if d > worst.0 {
            worst = (d, name.clone());
        }
    }
    worst
}

/// The same three reference steps under CPU bfloat16 autocast (`use_fp16` on a CPU with bfloat16
/// instructions). bfloat16 keeps 8 bits of mantissa, so the numbers are not the reference's; the
/// tolerances say how far they may drift: every weight within 3 AdamW steps' worth of change
/// (3 x lr): AdamW's update is about lr per step whatever the gradient's size, so a gradient whose
/// sign the rounding flips moves a weight by up to 2 lr the other way. The first loss (no update
/// yet: the forward's rounding alone) within 1 % of float32's, later ones within 5 %: after those
/// sign flips the loss drifts by a few percent, whatever the attention does (step 2, measured:
/// 0.6 % with libtorch's fused bf16 attention, 2.0 % with the attention wholly in float32, 2.6 %
/// with the explicit bf16 path of src/model/vit.rs). The centre within 1e-3. Skipped on a CPU
/// without bfloat16 instructions.
#[test]
fn three_bf16_training_steps_stay_close_to_float32() {
    let Some(dir) = parity_dir() else { return };
    let t = load(&dir, "train_steps.safetensors");
    let s = scalars(&dir);
    let a = &s["train_steps.args"];
    let f = |k: &str| a[k].as_f64().unwrap();
    let u = |k: &str| a[k].as_u64().unwrap() as usize;
    let mut config = parity_step_config(&t, &s);
    config.optim.use_fp16 = true;
    let choice = dino_tui::train::precision::choose(&config, Device::Cpu);
    if choice.autocast.is_none() {
        eprintln!("SKIPPED: {}", choice.note.unwrap_or_default());
        return;
    }
    let (epochs, niter) = (u("epochs"), u("niter_per_ep"));
    let lr = cosine_schedule(f("lr"), f("min_lr"), epochs, niter, u("warmup_epochs"), 0.0);
    let wd = cosine_schedule(f("wd"), f("wd_end"), epochs, niter, 0, 0.0);
    let mom = cosine_schedule(f("momentum_teacher"), 1.0, epochs, niter, 0, 0.0);
    let mut state = reference_start(&config, &t, &dir);
    assert!(state.autocast.is_some() && state.amp.is_none(), "bf16 needs no loss scaler");
    let losses = a["losses"].as_array().unwrap();
    for step in 0..losses.len() {
        let crops: Vec<Tensor> = (0..config.ncrops()).map(|j| t[&format!("step{step}.crop{j}")].shallow_clone()).collect();
        let p = StepParams { epoch: step / niter, lr: lr[step], wd: wd[step], momentum: mom[step], teacher_temp: f("teacher_temp") };
        let out = state.step(&crops, p).unwrap();
        assert!(out.applied);
        let expected = t[&format!("step{step}.loss")].double_value(&[0]);
        let rel = ((out.loss - expected) / expected).abs();
        eprintln!("bf16 step {step}: loss {} vs float32 {expected} (relative {rel:.2e})", out.loss);
        let tolerance = if step == 0 { 1e-2 } else { 5e-2 };
        assert!(rel < tolerance, "step {step}: bf16 loss {} vs float32 {expected}", out.loss);
        assert_close(&format!("bf16 center after step {step}"), &state.loss.center, &t[&format!("step{step}.center_after")], 0.0, 1e-3);
    }
    let peak = lr.iter().cloned().fold(0.0, f64::max);
    for (prefix, vs) in [("student_final.", &state.student_vs), ("teacher_final.", &state.teacher_vs)] {
        let (d, name) = max_abs_diff(&weights::named_tensors(vs), &with_prefix(&t, prefix));
        eprintln!("bf16 {prefix}: largest weight difference {d:.2e} ({name}); 3 x lr = {:.2e}", 3.0 * peak);
        assert!(d <= 3.0 * peak, "{prefix}{name}: {d:e} from float32 after three bf16 steps");
    }
    assert!(!dino_tui::model::autocast::is_enabled(false), "autocast is left off after the steps");
}

/// The mechanism behind "no silent skips in CI": this very test binary, run again on one parity
/// test with the parity files taken away, skips outside CI and fails under `CI=true`, naming
/// what is missing.
#[test]
fn a_missing_prerequisite_skips_here_and_fails_under_ci() {
    if std::env::var_os("DINO_PARITY_CHILD").is_some() {
        return; // the child's own copy of this test
    }
    let run = |ci: &str| {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "schedules_match_reference", "--nocapture", "--test-threads", "1"])
            .env("DINO_PARITY_DIR", "/nonexistent/parity")
            .env("DINO_PARITY_CHILD", "1")
            .env("CI", ci);
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (passed, said) = run("false");
    assert!(passed && said.contains("SKIPPED: parity vectors not found at /nonexistent/parity"), "{said}");
    let (passed, said) = run("true");
    assert!(!passed, "under CI=true a missing prerequisite must fail:\n{said}");
    assert!(said.contains("prerequisite missing under CI=true: parity vectors not found at /nonexistent/parity"), "{said}");
}

/// `dino attention`'s maps are `visualize_attention.py`'s: the image cut to whole patches, the
/// CLS row of the last block's attention per head, nearest-upsampled by the patch size, and the
/// mask keeping 60 % of each head's mass.
#[test]
fn attention_maps_match_visualize_attention() {
    let Some(dir) = parity_dir() else { return };
    let (_vs, vit, _) = parity_vit(&dir);
    let t = load(&dir, "attention.safetensors");
    let threshold = scalars(&dir)["attention.args"]["threshold"].as_f64().unwrap();
    let backbone = dino_tui::model::Backbone::Vit(vit);
    let maps = dino_tui::eval::attention::cls_attention(&backbone, &t["input"], Some(threshold)).unwrap();
    assert_close("attentions", &maps.attention, &t["attentions"], 1e-5, 1e-6);
    let mask = maps.mask.expect("a threshold gives masks");
    let differing = (&mask - &t["th_attn"].to_kind(Kind::Float)).abs().sum(Kind::Float).double_value(&[]);
    assert_eq!(differing, 0.0, "threshold masks differ in {differing} pixels");
    // The masks are not trivial: each head keeps some patches and drops others.
    let kept = t["th_attn"].to_kind(Kind::Float).mean_dim(&[1i64, 2][..], false, Kind::Float);
    assert!(vec_f64(&kept).iter().all(|&k| k > 0.0 && k < 1.0), "kept shares {kept:?}");
}

/// An image too large for its attention map to fit is refused with the way out, before anything
/// is allocated.
#[test]
fn attention_of_too_many_patches_is_refused_naming_image_size() {
    let Some(dir) = parity_dir() else { return };
    let (_vs, vit, _) = parity_vit(&dir);
    let backbone = dino_tui::model::Backbone::Vit(vit);
    let side = 4 * 81; // 81 x 81 patches of 4 px: 6,561 > 6,400
    let err = dino_tui::eval::attention::cls_attention(&backbone, &Tensor::zeros([3, side, side], (Kind::Float, Device::Cpu)), Some(0.6))
        .unwrap_err();
    assert!(err.to_string().contains("--image_size") && err.to_string().contains("6561 patches"), "{err}");
}
