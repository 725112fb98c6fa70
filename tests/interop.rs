//! The Python ecosystem end to end, with the real torch where the venv is here: a reference-layout
//! `checkpoint.pth` (written by torch, with an `argparse.Namespace` and AdamW state inside) and a
//! plain state dict evaluate as the same weights in safetensors do; `--resume_from` maps the
//! optimizer's moments by the reference's parameter order; `dino export` loads with
//! `strict=True` into reference-structured modules and gives `dino`'s features; `dino embed` rows
//! are the evaluation's features in the CSV's order; TensorBoard files equal `metrics.jsonl`.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{dino, python_with, run_python};
use dino_tui::config::TrainConfig;
use dino_tui::eval::features::{eval_pixels, extract_split, EvalTransform, ExtractOptions, FeatureKind};
use dino_tui::eval::source::{self, SourceSpec};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Modules with the reference's structure and names (`vision_transformer.py`, `DINOHead`,
/// `MultiCropWrapper`, `utils.get_params_groups`, torchvision's `resnet.py`), only what the
/// tests' small networks need.
const REFERENCE_MODULES: &str = r#"
import sys, argparse, torch, torch.nn as nn, warnings
warnings.filterwarnings("ignore")

class Mlp(nn.Module):
    def __init__(s, d, h):
        super().__init__(); s.fc1 = nn.Linear(d, h); s.act = nn.GELU(); s.fc2 = nn.Linear(h, d)
    def forward(s, x): return s.fc2(s.act(s.fc1(x)))

class Attention(nn.Module):
    def __init__(s, d, heads):
        super().__init__(); s.num_heads = heads; s.scale = (d // heads) ** -0.5
        s.qkv = nn.Linear(d, d * 3, bias=True); s.proj = nn.Linear(d, d)
    def forward(s, x):
        B, N, C = x.shape
        qkv = s.qkv(x).reshape(B, N, 3, s.num_heads, C // s.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * s.scale).softmax(dim=-1)
        return s.proj((attn @ v).transpose(1, 2).reshape(B, N, C))

class Block(nn.Module):
    def __init__(s, d, heads):
        super().__init__()
        s.norm1 = nn.LayerNorm(d, eps=1e-6); s.attn = Attention(d, heads)
        s.norm2 = nn.LayerNorm(d, eps=1e-6); s.mlp = Mlp(d, 4 * d)
    def forward(s, x):
        x = x + s.attn(s.norm1(x))
        return x + s.mlp(s.norm2(x))

class PatchEmbed(nn.Module):
    def __init__(s, p, d):
        super().__init__(); s.proj = nn.Conv2d(3, d, kernel_size=p, stride=p)
    def forward(s, x): return s.proj(x).flatten(2).transpose(1, 2)

class VisionTransformer(nn.Module):
    def __init__(s, img_size, patch_size, embed_dim, depth, num_heads):
        super().__init__()
        s.patch_embed = PatchEmbed(patch_size, embed_dim)
        s.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        s.pos_embed = nn.Parameter(torch.zeros(1, (img_size // patch_size) ** 2 + 1, embed_dim))
        s.pos_drop = nn.Dropout(0.0)
        s.blocks = nn.ModuleList([Block(embed_dim, num_heads) for _ in range(depth)])
        s.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        s.head = nn.Identity()
    def forward(s, x):
        x = s.patch_embed(x)
        x = torch.cat((s.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + s.pos_embed
        for b in s.blocks:
            x = b(x)
        return s.norm(x)[:, 0]

class DINOHead(nn.Module):
    def __init__(s, in_dim, out_dim, hidden_dim, bottleneck_dim):
        super().__init__()
        s.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
                              nn.Linear(hidden_dim, bottleneck_dim))
        s.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        s.last_layer.weight_g.data.fill_(1); s.last_layer.weight_g.requires_grad = False
    def forward(s, x):
        return s.last_layer(nn.functional.normalize(s.mlp(x), dim=-1, p=2))

class MultiCropWrapper(nn.Module):
    def __init__(s, backbone, head):
        super().__init__(); s.backbone = backbone; s.head = head
    def forward(s, x): return s.head(s.backbone(x))

def get_params_groups(model):
    regularized, not_regularized = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(".bias") or len(param.shape) == 1:
            not_regularized.append(param)
        else:
            regularized.append(param)
    return [{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}]

class BasicBlock(nn.Module):
    expansion = 1
    def __init__(s, cin, w, stride, down):
        super().__init__()
        s.conv1 = nn.Conv2d(cin, w, 3, stride, 1, bias=False); s.bn1 = nn.BatchNorm2d(w); s.relu = nn.ReLU()
        s.conv2 = nn.Conv2d(w, w, 3, 1, 1, bias=False); s.bn2 = nn.BatchNorm2d(w); s.downsample = down
    def forward(s, x):
        y = s.relu(s.bn1(s.conv1(x))); y = s.bn2(s.conv2(y))
        return s.relu(y + (x if s.downsample is None else s.downsample(x)))

class Bottleneck(nn.Module):
    expansion = 4
    def __init__(s, cin, w, stride, down):
        super().__init__()
        s.conv1 = nn.Conv2d(cin, w, 1, bias=False); s.bn1 = nn.BatchNorm2d(w)
        s.conv2 = nn.Conv2d(w, w, 3, stride, 1, bias=False); s.bn2 = nn.BatchNorm2d(w)
        s.conv3 = nn.Conv2d(w, w * 4, 1, bias=False); s.bn3 = nn.BatchNorm2d(w * 4); s.relu = nn.ReLU(); s.downsample = down
    def forward(s, x):
        y = s.relu(s.bn1(s.conv1(x))); y = s.relu(s.bn2(s.conv2(y))); y = s.bn3(s.conv3(y))
        return s.relu(y + (x if s.downsample is None else s.downsample(x)))

class ResNet(nn.Module):
    def __init__(s, block, counts):
        super().__init__()
        s.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False); s.bn1 = nn.BatchNorm2d(64); s.relu = nn.ReLU()
        s.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, n in enumerate(counts):
            w, blocks = 64 << i, []
            for j in range(n):
                stride = 2 if (j == 0 and i > 0) else 1
                down = None
                if stride != 1 or cin != w * block.expansion:
                    down = nn.Sequential(nn.Conv2d(cin, w * block.expansion, 1, stride, bias=False), nn.BatchNorm2d(w * block.expansion))
                blocks.append(block(cin, w, stride, down)); cin = w * block.expansion
            setattr(s, f"layer{i + 1}", nn.Sequential(*blocks))
        s.avgpool = nn.AdaptiveAvgPool2d(1); s.fc = nn.Identity()
    def forward(s, x):
        x = s.maxpool(s.relu(s.bn1(s.conv1(x))))
        for i in range(4):
            x = getattr(s, f"layer{i + 1}")(x)
        return s.fc(torch.flatten(s.avgpool(x), 1))

def resnet(arch):
    return ResNet(BasicBlock, [2, 2, 2, 2]) if arch == "resnet18" else ResNet(Bottleneck, [3, 4, 6, 3])

def tiny_vit():
    return VisionTransformer(16, 4, 24, 1, 2)
"#;

/// From our checkpoint's tensors (argv[1], a flat .pth): a reference-layout `ckpt.pth` (student
/// under DDP's `module.`, a real AdamW state in the reference's two groups after one step),
/// `one_group.pth` (the same with all parameters in one group), `plain.pth` (the teacher's
/// backbone alone, as the official releases) and `moments.pth` (the student's AdamW `exp_avg` and
/// new weights by name, to compare with).
const WRITE_REFERENCE_FILES: &str = r#"
flat, out = torch.load(sys.argv[1]), sys.argv[2]
student = MultiCropWrapper(tiny_vit(), DINOHead(24, 32, 32, 16))
student.load_state_dict({k[len("student."):]: v for k, v in flat.items() if k.startswith("student.")}, strict=True)
teacher = {k[len("teacher."):]: v for k, v in flat.items() if k.startswith("teacher.")}
args = argparse.Namespace(arch="vit_tiny", patch_size=4, out_dim=32, norm_last_layer=True, use_bn_in_head=False,
    momentum_teacher=0.996, warmup_teacher_temp=0.04, teacher_temp=0.04, warmup_teacher_temp_epochs=0, use_fp16=False,
    weight_decay=0.04, weight_decay_end=0.4, clip_grad=3.0, batch_size_per_gpu=8, epochs=5, freeze_last_layer=1, lr=0.0005,
    warmup_epochs=1, min_lr=1e-6, optimizer="adamw", drop_path_rate=0.0, global_crops_scale=(0.4, 1.0), local_crops_number=2,
    local_crops_scale=(0.05, 0.4), data_path="/datasets/imagenet/train", output_dir="/checkpoints/dino", saveckp_freq=20,
    seed=0, num_workers=10, dist_url="env://", local_rank=0, rank=0, world_size=1, gpu=0)
torch.manual_seed(0)
def step(groups):
    opt = torch.optim.AdamW(groups, lr=0.01, weight_decay=0.04)
    student(torch.randn(4, 3, 16, 16)).pow(2).sum().backward()
    opt.step()
    return opt
opt = step(get_params_groups(student))
ckpt = {"student": {"module." + k: v for k, v in student.state_dict().items()}, "teacher": teacher,
        "optimizer": opt.state_dict(), "epoch": 1, "args": args, "dino_loss": {"center": flat["loss.center"] + 0.5},
        "fp16_scaler": None, "unknown_extra": 3}
torch.save(ckpt, out + "/ckpt.pth")
names = {id(p): n for n, p in student.named_parameters()}
moments = {}
for group in opt.param_groups:
    for p in group["params"]:
        moments["exp_avg." + names[id(p)]] = opt.state[p]["exp_avg"]
        moments["step." + names[id(p)]] = opt.state[p]["step"].reshape(1)
moments.update({"weight." + k: v for k, v in student.state_dict().items()})
torch.save(moments, out + "/moments.pth")
one = step([{"params": [p for p in student.parameters() if p.requires_grad]}])
torch.save(dict(ckpt, optimizer=one.state_dict(), student={"module." + k: v for k, v in student.state_dict().items()}), out + "/one_group.pth")
torch.save({k[len("backbone."):]: v for k, v in teacher.items() if k.startswith("backbone.")}, out + "/plain.pth")
"#;

/// A finished tiny run: 1 epoch of `common::tiny_config` (2 iterations) on the demo data.
struct Run {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    run: PathBuf,
    config: PathBuf,
}

fn trained(arch: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let data = root.join("data");
    common::demo_data(&data, 4);
    let run = root.join("run");
    let mut c = common::tiny_config(&data, &run);
    c.model.arch = dino_tui::config::Arch::parse(arch).unwrap();
    c.optim.epochs = 1;
    let config = root.join("tiny.toml");
    std::fs::write(&config, c.to_toml()).unwrap();
    let mut args: Vec<&OsStr> = vec!["train".as_ref(), "--config".as_ref(), config.as_os_str(), "--headless".as_ref()];
    args.extend(extra.iter().map(OsStr::new));
    dino(&args);
    Run { _dir: dir, root, data, run, config }
}

/// Command-line words of mixed types (`&str`, paths) as one list.
fn os(parts: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_os_string()).collect()
}

/// `dino eval knn --json` on the demo data: the `results` array.
fn knn(run: &Run, weights: &Path, with_config: bool) -> serde_json::Value {
    let mut args =
        os(&[&"eval", &"knn", &"--pretrained_weights", &weights, &"--data_path", &run.data, &"--json", &"--no_cache", &"--device", &"cpu"]);
    if with_config {
        args.extend([OsString::from("--config"), run.config.clone().into_os_string()]);
    }
    let out = dino(&args);
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(json["results"].as_array().is_some_and(|r| !r.is_empty()), "{out}");
    json["results"].clone()
}

/// Our latest checkpoint's tensors as a flat `.pth`, for torch to read.
fn checkpoint_as_pth(run: &Run) -> PathBuf {
    let ckpt = dino_tui::run::checkpoint::load_latest(&run.run.join("checkpoints")).0.unwrap();
    let flat: Vec<(String, Tensor)> = ckpt.tensors.into_iter().filter(|(k, _)| !k.starts_with("optim.")).collect();
    let path = run.root.join("flat.pth");
    dino_tui::interop::pth::write(&path, &flat).unwrap();
    path
}

fn reference_files(run: &Run) -> Option<PathBuf> {
    let py = python_with(&["torch"])?;
    let out = run.root.join("ref");
    std::fs::create_dir_all(&out).unwrap();
    let flat = checkpoint_as_pth(run);
    run_python(&py, &format!("{REFERENCE_MODULES}\n{WRITE_REFERENCE_FILES}"), &[flat.as_os_str(), out.as_os_str()]);
    Some(out)
}

fn pth_tensors(path: &Path) -> BTreeMap<String, Tensor> {
    dino_tui::interop::pth::state_dict(&dino_tui::interop::pth::read(path).unwrap()).into_iter().collect()
}

#[test]
fn reference_checkpoint_and_plain_state_dict_give_the_knn_of_safetensors() {
    let run = trained("vit_tiny", &[]);
    let ours = knn(&run, &run.run, false);
    let backbone = run.root.join("backbone.safetensors");
    dino(&os(&[&"export", &run.run, &"--output", &backbone]));
    assert_eq!(knn(&run, &backbone, true), ours, "exported safetensors backbone");
    let Some(refs) = reference_files(&run) else { return };
    assert_eq!(knn(&run, &refs.join("ckpt.pth"), true), ours, "reference checkpoint.pth, teacher");
    assert_eq!(knn(&run, &refs.join("plain.pth"), true), ours, "plain state dict");
    // What could not be used is told, by name.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dino"))
        .args(os(&[&"eval", &"knn", &"--pretrained_weights", &refs.join("ckpt.pth"), &"--data_path", &run.data, &"--no_cache"]))
        .args(["--arch", "resnet18", "--device", "cpu"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("ckpt.pth") && err.contains("18 unexpected tensors: blocks.0.attn.proj.bias"), "{err}");
    assert!(err.contains("missing tensors: ") && err.contains("conv1.weight"), "{err}");
}

#[test]
fn resume_from_maps_the_reference_optimizer_and_pretrained_starts_from_weights() {
    let run = trained("vit_tiny", &[]);
    let Some(refs) = reference_files(&run) else { return };
    imports_into_a_training_state(&run, &refs);
    train_commands_take_reference_files(&run, &refs);
}

/// `train::import` on the files: every AdamW moment at its parameter, problems named, a plain
/// backbone for both networks.
fn imports_into_a_training_state(run: &Run, refs: &Path) {
    let config = TrainConfig::from_toml_file(&run.config).unwrap();
    let moments = pth_tensors(&refs.join("moments.pth"));

    let mut state = dino_tui::train::step::DinoState::new(&config, Device::Cpu).unwrap();
    let file = dino_tui::run::pytorch::read(&refs.join("ckpt.pth")).unwrap();
    assert!(file.notes.iter().any(|n| n.contains("unknown_extra")), "{:?}", file.notes);
    let r = dino_tui::train::import::resume(&mut state, &file, config.optim.optimizer).unwrap();
    assert_eq!(r.epoch, 1);
    assert!(r.optimizer_restored, "{:?}", r.warnings);
    let student = dino_tui::model::weights::named_tensors(&state.student_vs);
    let mut checked = 0;
    for (name, exp_avg) in moments.iter().filter_map(|(k, v)| k.strip_prefix("exp_avg.").map(|n| (n, v))) {
        let st = &state.optimizer.state[name];
        assert!(st.buf1.as_ref().unwrap().equal(exp_avg), "{name}: exp_avg not at its parameter");
        assert_eq!(st.step as f64, moments[&format!("step.{name}")].double_value(&[0]), "{name}");
        assert!(student[name].equal(&moments[&format!("weight.{name}")]), "{name}: weights");
        checked += 1;
    }
    assert_eq!(checked, state.optimizer.params().len());
    assert!(state.loss.center.allclose(&(pth_tensors(&refs.join("ckpt.pth"))["dino_loss.center"].shallow_clone()), 0.0, 0.0, false));

    // Another head: the shape that differs is named, with the file.
    let mut wider = config.clone();
    wider.model.out_dim = 64;
    let mut state = dino_tui::train::step::DinoState::new(&wider, Device::Cpu).unwrap();
    let err = dino_tui::train::import::resume(&mut state, &file, config.optim.optimizer).unwrap_err().to_string();
    assert!(err.contains("ckpt.pth") && err.contains("last_layer.weight_v: shape [32, 16] in file, [64, 16] in model"), "{err}");

    // Groups that do not line up: the moments are not guessed, the optimizer starts fresh, told why.
    let mut state = dino_tui::train::step::DinoState::new(&config, Device::Cpu).unwrap();
    let file = dino_tui::run::pytorch::read(&refs.join("one_group.pth")).unwrap();
    let r = dino_tui::train::import::resume(&mut state, &file, config.optim.optimizer).unwrap();
    assert!(!r.optimizer_restored && state.optimizer.state.is_empty());
    assert!(r.warnings[0].contains("parameter groups hold [") && r.warnings[0].contains("starts fresh"), "{:?}", r.warnings);

    // A plain backbone: both backbones from it, heads fresh.
    let mut state = dino_tui::train::step::DinoState::new(&config, Device::Cpu).unwrap();
    let plain = pth_tensors(&refs.join("plain.pth"));
    let notes = dino_tui::train::import::start_from(&mut state, &dino_tui::run::pytorch::read(&refs.join("plain.pth")).unwrap()).unwrap();
    assert!(notes.iter().any(|n| n.contains("no DINO head")), "{notes:?}");
    let teacher = dino_tui::model::weights::named_tensors(&state.teacher_vs);
    for (k, v) in &plain {
        assert!(teacher[&format!("backbone.{k}")].equal(v), "{k}");
    }
    assert!(dino_tui::train::import::resume(
        &mut state,
        &dino_tui::run::pytorch::read(&refs.join("plain.pth")).unwrap(),
        config.optim.optimizer
    )
    .unwrap_err()
    .to_string()
    .contains("--pretrained_weights"));
}

/// `dino train --resume_from` / `--pretrained_weights`: without --config the settings come from
/// the file's args; a continued run goes on at epoch 1 = iteration 2 with the optimizer restored.
fn train_commands_take_reference_files(run: &Run, refs: &Path) {
    let printed = dino(&os(&[&"train", &"--resume_from", &refs.join("ckpt.pth"), &"--print-config"]));
    for line in ["arch = \"vit_tiny\"", "embed_dim = 24", "patch_size = 4", "epochs = 5", "global_crop_size = 16", "out_dim = 32"] {
        assert!(printed.contains(line), "{line} missing:\n{printed}");
    }
    assert!(!printed.contains("/datasets/imagenet"), "the machine's paths are not taken");
    let continued = run.root.join("continued");
    dino(&os(&[
        &"train",
        &"--config",
        &run.config,
        &"--resume_from",
        &refs.join("ckpt.pth"),
        &"--epochs",
        &"2",
        &"--output_dir",
        &continued,
        &"--headless",
    ]));
    let events = std::fs::read_to_string(continued.join("events.jsonl")).unwrap();
    let resume: serde_json::Value =
        events.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|v| v["type"] == "resume").unwrap();
    assert_eq!(
        (resume["iter"].as_u64(), resume["optimizer"].as_str(), resume["reference"].as_bool()),
        (Some(2), Some("restored"), Some(true))
    );
    let first_iter = std::fs::read_to_string(continued.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .next()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["iter"].clone());
    assert_eq!(first_iter, Some(serde_json::json!(2)));
    let started = run.root.join("started");
    dino(&os(&[
        &"train",
        &"--config",
        &run.config,
        &"--pretrained_weights",
        &refs.join("plain.pth"),
        &"--output_dir",
        &started,
        &"--headless",
    ]));
    assert!(std::fs::read_to_string(started.join("events.jsonl")).unwrap().contains("\"type\":\"pretrained\""));
}

/// Features of the first `n` val images by a Python module, from the same pixels `dino` sees.
fn python_features(py: &Path, run: &Run, build: &str, weights: &Path, n: usize) -> (Vec<PathBuf>, Tensor) {
    let layout = dino_tui::data::DataLayout::discover(&run.data).unwrap();
    let files: Vec<PathBuf> = layout.val().unwrap().files.iter().take(n).cloned().collect();
    let pixels = eval_pixels(&files, EvalTransform::for_crop(16), 1).unwrap();
    let px = run.root.join("pixels.pth");
    dino_tui::interop::pth::write(&px, &[("x".to_string(), pixels)]).unwrap();
    let out = run.root.join("features.pth");
    let script = format!(
        "{REFERENCE_MODULES}\nm = {build}\nm.load_state_dict(torch.load(sys.argv[1]), strict=True)\nm.eval()\n\
         with torch.no_grad():\n    f = m(torch.load(sys.argv[2])['x'])\ntorch.save({{'f': f}}, sys.argv[3])\nprint(len(m.state_dict()))"
    );
    run_python(py, &script, &[weights.as_os_str(), px.as_os_str(), out.as_os_str()]);
    (files, pth_tensors(&out)["f"].shallow_clone())
}

/// `dino embed` into `output`: the features and the CSV's (path, label) rows.
fn embed(run: &Run, weights: &[&dyn AsRef<OsStr>], output: &Path) -> (Tensor, Vec<(String, String)>) {
    let mut args =
        os(&[&"embed", &"--data_path", &run.data, &"--output", &output, &"--no_cache", &"--device", &"cpu", &"--pretrained_weights"]);
    args.extend(os(weights));
    dino(&args);
    let features = if output.extension().is_some_and(|e| e == "npy") {
        read_npy(output)
    } else {
        Tensor::read_safetensors(output).unwrap().into_iter().find(|(n, _)| n == "features").unwrap().1
    };
    let mut csv = csv::Reader::from_path(output.with_extension("csv")).unwrap();
    assert_eq!(csv.headers().unwrap(), vec!["path", "label"]);
    let rows = csv.records().map(|r| r.unwrap()).map(|r| (r[0].to_string(), r[1].to_string())).collect();
    (features, rows)
}

/// A float32 C-order 2-D `.npy` (what `interop::npy` writes), read back by hand.
fn read_npy(path: &Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let dims: Vec<i64> = shape[..shape.find(')').unwrap()].split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let data: Vec<f32> = bytes[10 + len..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    Tensor::from_slice(&data).reshape(&dims)
}

fn row_of(rows: &[(String, String)], file: &Path) -> i64 {
    rows.iter().position(|(p, _)| Path::new(p) == file).unwrap() as i64
}

#[test]
fn exported_vit_loads_strictly_in_the_reference_structure_with_the_same_features() {
    let run = trained("vit_tiny", &[]);
    let (features, rows) = embed(&run, &[&run.run], &run.root.join("e.npy"));
    let Some(py) = python_with(&["torch"]) else { return };
    for names in ["reference", "timm"] {
        let vit = run.root.join(format!("vit-{names}.pth"));
        let printed = dino(&os(&[&"export", &run.run, &"--format", &"pth", &"--names", &names, &"--output", &vit]));
        assert!(printed.contains("strict=True"), "{printed}");
        let (files, theirs) = python_features(&py, &run, "tiny_vit()", &vit, 5);
        let idx = Tensor::from_slice(&files.iter().map(|f| row_of(&rows, f)).collect::<Vec<_>>());
        let ours = features.index_select(0, &idx);
        assert!(ours.allclose(&theirs, 1e-4, 1e-5, false), "{names}: max diff {}", (&ours - &theirs).abs().max().double_value(&[]));
    }
}

#[test]
fn exported_resnets_load_strictly_in_torchvision_structure_with_the_same_features() {
    let run = trained("resnet18", &[]);
    let (features, rows) = embed(&run, &[&run.run], &run.root.join("e.safetensors"));
    let Some(py) = python_with(&["torch"]) else { return };
    let r18 = run.root.join("r18.pth");
    dino(&os(&[&"export", &run.run, &"--format", &"pth", &"--output", &r18]));
    let (files, theirs) = python_features(&py, &run, "resnet('resnet18')", &r18, 5);
    let idx = Tensor::from_slice(&files.iter().map(|f| row_of(&rows, f)).collect::<Vec<_>>());
    let ours = features.index_select(0, &idx);
    assert!(ours.allclose(&theirs, 1e-4, 1e-5, false), "max diff {}", (&ours - &theirs).abs().max().double_value(&[]));
    // ResNet-50: the key set and shapes of torchvision's, checked by a strict load.
    let r50 = run.root.join("r50.pth");
    dino(&os(&[&"export", &"random", &"--arch", &"resnet50", &"--format", &"pth", &"--output", &r50]));
    let check = format!(
        "{REFERENCE_MODULES}\nm = resnet('resnet50')\nm.load_state_dict(torch.load(sys.argv[1]), strict=True)\nprint(len(m.state_dict()))"
    );
    assert_eq!(run_python(&py, &check, &[r50.as_os_str()]).trim(), "318", "torchvision's resnet50 without fc: 318 entries");
    // With torchvision itself when the venv has it.
    if let Some(tv) = python_with(&["torch", "torchvision"]) {
        let script = "import sys, torch, torchvision\nfor arch, f in (('resnet18', sys.argv[1]), ('resnet50', sys.argv[2])):\n    m = getattr(torchvision.models, arch)()\n    m.fc = torch.nn.Identity()\n    m.load_state_dict(torch.load(f), strict=True)\nprint('ok')";
        assert_eq!(run_python(&tv, script, &[r18.as_os_str(), r50.as_os_str()]).trim(), "ok");
    }
}

#[test]
fn embed_rows_are_the_evaluation_features_in_the_csv_order() {
    let run = trained("vit_tiny", &[]);
    let npy = run.root.join("out/e.npy");
    let (features, rows) = embed(&run, &[&run.run], &npy);
    let spec = SourceSpec::teacher(run.run.display().to_string(), Device::Cpu, 0);
    let model = source::load(&spec).unwrap();
    let layout = dino_tui::data::DataLayout::discover(&run.data).unwrap();
    let opts = ExtractOptions::new(16, 7, 1, Device::Cpu, FeatureKind::Cls);
    let mut want_rows = vec![];
    let mut want = vec![];
    for split in [layout.pretext(), layout.train().unwrap(), layout.val().unwrap()] {
        want.push(extract_split(&model.backbone, split, &opts, None, &mut |_, _| {}).unwrap().features);
        for (f, &l) in split.files.iter().zip(&split.labels) {
            want_rows.push((f.display().to_string(), split.classes.get(l).cloned().unwrap_or_default()));
        }
    }
    assert_eq!(rows, want_rows);
    assert!(rows.iter().any(|(_, l)| l.is_empty()) && rows.iter().any(|(_, l)| !l.is_empty()));
    let want = Tensor::cat(&want, 0);
    assert_eq!(features.size(), want.size());
    assert!(features.allclose(&want, 1e-5, 1e-6, false));
    let (st, st_rows) = embed(&run, &[&run.run], &run.root.join("e.safetensors"));
    assert!(st.equal(&features) && st_rows == rows);
    // numpy reads the file as we do.
    if let Some(py) = python_with(&["numpy"]) {
        let out = run_python(
            &py,
            "import sys, numpy as np\na = np.load(sys.argv[1])\nprint(a.dtype, a.shape, repr(float(a[3, 2])))",
            &[npy.as_os_str()],
        );
        let (n, d) = features.size2().unwrap();
        assert_eq!(out.trim(), format!("float32 ({n}, {d}) {:?}", features.double_value(&[3, 2])));
    }
    // A folder of loose images at any depth embeds too, unlabeled.
    let loose = run.root.join("loose/deep");
    std::fs::create_dir_all(&loose).unwrap();
    for f in &layout.val().unwrap().files[..3] {
        std::fs::copy(f, loose.join(f.file_name().unwrap())).unwrap();
    }
    let out = dino(&os(&[
        &"embed",
        &"--pretrained_weights",
        &run.run,
        &"--data_path",
        &run.root.join("loose"),
        &"--output",
        &run.root.join("l.npy"),
        &"--no_cache",
        &"--device",
        &"cpu",
    ]));
    assert!(out.contains("3 images x 24 features"), "{out}");
}

/// `(tag, step) -> value` of every TensorBoard file of a run, failing on a step written twice.
fn tensorboard_scalars(run_dir: &Path) -> BTreeMap<(String, i64), f32> {
    let mut all = BTreeMap::new();
    for f in dino_tui::run::tensorboard::event_files(run_dir) {
        for (tag, step, v) in dino_tui::interop::tensorboard::read_scalars(&f).unwrap() {
            assert!(all.insert((tag.clone(), step), v).is_none(), "{tag} at step {step} twice");
        }
    }
    all
}

fn metrics_lines(run_dir: &Path) -> Vec<dino_tui::protocol::IterMetrics> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn assert_tensorboard_is_metrics(run_dir: &Path) -> BTreeMap<(String, i64), f32> {
    let tb = tensorboard_scalars(run_dir);
    let metrics = metrics_lines(run_dir);
    for m in &metrics {
        for (name, v) in dino_tui::run::tensorboard::metric_scalars(m) {
            assert_eq!(tb.get(&(format!("train/{name}"), m.iter as i64)), Some(&(v as f32)), "train/{name} at {}", m.iter);
        }
    }
    let train_points = tb.keys().filter(|(t, _)| t.starts_with("train/")).count();
    assert_eq!(train_points, metrics.len() * 10, "nothing but metrics.jsonl's lines");
    tb
}

#[test]
fn tensorboard_files_hold_the_metrics_and_evaluations_once_across_a_resume() {
    let run = trained("vit_tiny", &["--eval_knn_every", "1"]);
    let tb = assert_tensorboard_is_metrics(&run.run);
    let events = std::fs::read_to_string(run.run.join("events.jsonl")).unwrap();
    let eval: serde_json::Value =
        // The run's own k-NN (the random-weights baseline before it has no iteration).
        events.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|v| v["type"] == "eval" && v["random_weights"] != true).unwrap();
    let step = eval["iter"].as_i64().unwrap();
    for r in eval["results"].as_array().unwrap() {
        let k = r["k"].as_u64().unwrap();
        assert_eq!(tb.get(&(format!("eval/knn_top1_k{k}"), step)), Some(&(r["top1"].as_f64().unwrap() as f32)));
    }
    // A second epoch resumes: a new event file, no step twice, still equal to metrics.jsonl.
    dino(&os(&[&"train", &"--config", &run.config, &"--epochs", &"2", &"--headless", &"--eval_knn_every", &"0"]));
    assert_eq!(dino_tui::run::tensorboard::event_files(&run.run).len(), 2);
    let tb = assert_tensorboard_is_metrics(&run.run);
    assert_eq!(metrics_lines(&run.run).len(), 4);
    // TensorBoard's own reader sees the same curves.
    let Some(py) = python_with(&["tensorboard"]) else { return };
    let script = r#"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
for e in acc.Scalars("train/loss"):
    print(e.step, repr(e.value))
"#;
    let out = run_python(&py, script, &[run.run.join("tb").as_os_str()]);
    let theirs: Vec<(i64, f32)> =
        out.lines().map(|l| l.split_once(' ').unwrap()).map(|(s, v)| (s.parse().unwrap(), v.parse::<f64>().unwrap() as f32)).collect();
    let ours: Vec<(i64, f32)> = tb.iter().filter(|((t, _), _)| t == "train/loss").map(|((_, s), v)| (*s, *v)).collect();
    assert_eq!(theirs, ours);
}

#[test]
fn the_random_baseline_exports_and_embeds_without_a_run() {
    // Kept cheap: no Python, no training; the file-format side of the commands.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::demo_data(&data, 2);
    let c = common::tiny_config(&data, &dir.path().join("unused"));
    let cfg = dir.path().join("tiny.toml");
    std::fs::write(&cfg, c.to_toml()).unwrap();
    let st = dir.path().join("b.safetensors");
    dino(&os(&[&"export", &"random", &"--config", &cfg, &"--output", &st]));
    let pth = dir.path().join("b.pth");
    dino(&os(&[&"export", &st, &"--config", &cfg, &"--format", &"pth", &"--output", &pth]));
    let a: BTreeMap<String, Tensor> = Tensor::read_safetensors(&st).unwrap().into_iter().collect();
    let b = pth_tensors(&pth);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert!(a.iter().all(|(k, v)| v.to_kind(Kind::Float).equal(&b[k].to_kind(Kind::Float))));
}

/// A `.pth` whose `data.pkl` is `pickle` (a zip archive as torch.save writes one).
fn pth_with_pickle(path: &Path, pickle: &[u8]) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    zip.start_file("archive/data.pkl", zip::write::FileOptions::default()).unwrap();
    zip.write_all(pickle).unwrap();
    zip.finish().unwrap();
}

/// "Billion laughs" pickles are refused with an error that names the file, before their copies
/// fill the memory: run under a 1.5 GB address-space limit, where expanding them (to 10^9 values,
/// or 2^40 by DUPs) aborted with std::bad_alloc.
#[test]
fn pickles_that_fan_out_are_refused_before_they_fill_the_memory() {
    use std::os::unix::process::ExitStatusExt;
    let d = tempfile::tempdir().unwrap();
    // Ten lists, each holding ten refs to the one before: 10^9 values once expanded.
    let mut refs = b"\x80\x02]q\x00".to_vec();
    for level in 1u8..=9 {
        refs.extend([b']', b'q', level, b'(']);
        for _ in 0..10 {
            refs.extend([b'h', level - 1]);
        }
        refs.extend(b"e0");
    }
    refs.extend(b"h\x09.");
    // A list appended with a copy of itself (DUP, APPEND), forty times over.
    let mut dups = b"\x80\x02]".to_vec();
    for _ in 0..40 {
        dups.extend(b"2a");
    }
    dups.push(b'.');
    for (name, pickle, why) in [("refs.pth", refs, "expands to more than"), ("dups.pth", dups, "DUPs copy more than")] {
        let bomb = d.path().join(name);
        pth_with_pickle(&bomb, &pickle);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dino"));
        cmd.args([OsStr::new("export"), bomb.as_os_str(), OsStr::new("--output"), d.path().join("out.safetensors").as_os_str()]);
        common::with_rlimit(&mut cmd, libc::RLIMIT_AS, 3 << 29);
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!((o.status.code(), o.status.signal()), (Some(1), None), "{name}: {err}");
        assert!(err.contains(why) && err.contains(name), "{name}: {err}");
    }
}

/// The PNG files `dino attention` wrote into `dir`, with their sizes.
fn pngs(dir: &Path) -> BTreeMap<String, (u32, u32)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), image::image_dimensions(&p).unwrap()))
        .collect()
}

/// `dino attention` on a ViT run writes the reference's files (the image, one map and one mask
/// per head) plus the overlay and the sheet, at the image's size cut to whole patches; a
/// reference `checkpoint.pth` of the same weights draws the same maps; a ResNet run draws its
/// PCA map with `--pca` and is told to use it without.
#[test]
fn attention_maps_of_a_vit_run_a_reference_checkpoint_and_a_resnet_pca() {
    let run = trained("vit_tiny", &[]);
    let image = std::fs::read_dir(run.data.join("val").join("checkers")).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    let out = run.root.join("attn");
    dino(&os(&[&"attention", &"--pretrained_weights", &run.run, &"--image", &image, &"--output_dir", &out, &"--image_size", &"30"]));
    // 30 px tall and wide (the demo images are square), cut to 28 = 7 patches of 4 px; 2 heads.
    let want: BTreeMap<String, (u32, u32)> =
        ["img.png", "attn-head0.png", "attn-head1.png", "mask_th0.6_head0.png", "mask_th0.6_head1.png", "attn-overlay.png"]
            .iter()
            .map(|n| (n.to_string(), (28, 28)))
            .chain([("attention-sheet.png".to_string(), (160 * 4 + 4 * 3, 160))])
            .collect();
    assert_eq!(pngs(&out), want);
    // The maps are not flat: a head's map holds more than one colour.
    let head = image::open(out.join("attn-head0.png")).unwrap().to_rgb8();
    assert!(head.pixels().any(|p| p != head.get_pixel(0, 0)), "a uniform attention map");

    if let Some(refs) = reference_files(&run) {
        let from_pth = run.root.join("attn-pth");
        dino(&os(&[
            &"attention",
            &"--pretrained_weights",
            &refs.join("ckpt.pth"),
            &"--config",
            &run.config,
            &"--image",
            &image,
            &"--output_dir",
            &from_pth,
            &"--image_size",
            &"30",
        ]));
        for name in ["attn-head0.png", "attn-head1.png", "mask_th0.6_head1.png"] {
            assert_eq!(
                std::fs::read(out.join(name)).unwrap(),
                std::fs::read(from_pth.join(name)).unwrap(),
                "{name} from the reference checkpoint"
            );
        }
    }

    let resnet = trained("resnet18", &[]);
    let pca = resnet.root.join("pca");
    dino(&os(&[&"attention", &"--pretrained_weights", &resnet.run, &"--image", &image, &"--output_dir", &pca, &"--pca"]));
    let files = pngs(&pca);
    assert_eq!(files.get("pca.png"), Some(&(16, 16)), "{files:?}");
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_dino"))
        .args(os(&[&"attention", &"--pretrained_weights", &resnet.run, &"--image", &image, &"--output_dir", &pca]))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--pca"), "{}", String::from_utf8_lossy(&refused.stderr));
}
