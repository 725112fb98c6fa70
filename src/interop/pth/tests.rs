//! Tests of `.pth` reading and writing against real files: fixtures written by the real torch (when
//! its venv is here), our output loaded by the real torch, and hand-made broken files.
use std::io::Write;
use std::path::Path;

use serde_json::Value as Json;
use tch::{Kind, Tensor};

use super::*;
use crate::interop::testpy;

/// Writes a DINO-like checkpoint, a plain state dict and the expected flat tensors (as JSON) into
/// `dir` with the real torch.
const FIXTURES: &str = r#"
import sys, json, argparse, torch
out = sys.argv[1]
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5))
opt = torch.optim.AdamW(net.parameters(), lr=0.01)
net(torch.randn(2, 3, 8, 8)).sum().backward()
opt.step()
sd = net.state_dict()
base = torch.randn(3, 4)
ckpt = {
    "student": {"module.backbone." + k: v for k, v in sd.items()},
    "teacher": {"backbone." + k: v.clone() for k, v in sd.items()},
    "optimizer": opt.state_dict(),
    "epoch": 7,
    "args": argparse.Namespace(arch="vit_small", lr=0.0005, out_dim=65536, use_fp16=True,
                               global_crops_scale=(0.4, 1.0), seed=-3, big=2**70, output_dir=None),
    "dino_loss": {"center": torch.randn(1, 16)},
    "extra": {"half": torch.randn(5).half(), "long": torch.tensor([3, -2**40, 2**62]), "base": base,
              "t": base.t(), "view": base[1, 1:], "bf16": torch.randn(3).bfloat16(),
              "flag": torch.tensor([True, False]), "double": torch.randn(2, dtype=torch.float64),
              "param": torch.nn.Parameter(torch.randn(2, 2))},
}
torch.save(ckpt, out + "/ckpt.pth")
torch.save(sd, out + "/plain.pth")
torch.save(sd, out + "/plain_p5.pth", pickle_protocol=5)
torch.save({"w": torch.ones(2)}, out + "/legacy.pth", _use_new_zipfile_serialization=False)
def desc(t):
    ints = not (t.is_floating_point() or t.dtype == torch.bool)
    values = t.flatten().tolist() if ints else t.double().flatten().tolist()
    return {"dtype": str(t.dtype), "shape": list(t.shape), "stride": list(t.stride()), "values": values}
def flat(d, prefix=""):
    res = {}
    for k, v in d.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, torch.Tensor):
            res[name] = desc(v)
        elif isinstance(v, dict):
            res.update(flat(v, name))
    return res
json.dump({"ckpt": flat(ckpt), "plain": flat(sd)}, open(out + "/expected.json", "w"))
"#;

fn fixtures(py: &Path, dir: &Path) -> Json {
    testpy::run(py, FIXTURES, &[dir.as_os_str()]);
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

fn dtype(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "torch.float32",
        Kind::Double => "torch.float64",
        Kind::Half => "torch.float16",
        Kind::BFloat16 => "torch.bfloat16",
        Kind::Int64 => "torch.int64",
        Kind::Int => "torch.int32",
        Kind::Uint8 => "torch.uint8",
        Kind::Bool => "torch.bool",
        other => panic!("no dtype name for {other:?}"),
    }
}

/// Compares a tensor with torch's description of it: dtype, shape, strides and every value.
fn check(name: &str, t: &Tensor, want: &Json) {
    assert_eq!(dtype(t.kind()), want["dtype"], "{name}: dtype");
    let shape: Vec<i64> = serde_json::from_value(want["shape"].clone()).unwrap();
    let stride: Vec<i64> = serde_json::from_value(want["stride"].clone()).unwrap();
    assert_eq!(t.size(), shape, "{name}: shape");
    assert_eq!(t.stride(), stride, "{name}: stride");
    if matches!(t.kind(), Kind::Int64 | Kind::Int | Kind::Uint8) {
        let got = Vec::<i64>::try_from(&t.to_kind(Kind::Int64).reshape([-1])).unwrap();
        let want: Vec<i64> = serde_json::from_value(want["values"].clone()).unwrap();
        assert_eq!(got, want, "{name}: values");
    } else {
        let got = Vec::<f64>::try_from(&t.to_kind(Kind::Double).reshape([-1])).unwrap();
        let want: Vec<f64> = serde_json::from_value(want["values"].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{name}: numel");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-12 * w.abs().max(1.0), "{name}[{i}]: {g} vs {w}");
        }
    }
}

fn check_all(entries: &[(String, Tensor)], want: &Json) {
    let want = want.as_object().unwrap();
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let want_names: Vec<&str> = want.keys().map(String::as_str).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    let mut want_sorted = want_names.clone();
    want_sorted.sort_unstable();
    assert_eq!(sorted, want_sorted);
    for (name, t) in entries {
        check(name, t, &want[name]);
    }
}

#[test]
fn reads_a_dino_checkpoint_written_by_torch() {
    let Some(py) = testpy::python_with("torch") else { return };
    let dir = tempfile::tempdir().unwrap();
    let want = fixtures(&py, dir.path());
    let ckpt = read(dir.path().join("ckpt.pth")).unwrap();
    check_all(&state_dict(&ckpt), &want["ckpt"]);

    assert_eq!(ckpt.get("epoch").and_then(Value::as_int), Some(7));
    let Some(Value::Object(args)) = ckpt.get("args") else { panic!("args is not an object: {:?}", ckpt.get("args")) };
    assert_eq!((args.module.as_str(), args.name.as_str()), ("argparse", "Namespace"));
    let args = ckpt.get("args").unwrap();
    assert_eq!(args.get("arch").and_then(Value::as_str), Some("vit_small"));
    assert_eq!(args.get("lr").and_then(Value::as_f64), Some(0.0005));
    assert_eq!(args.get("out_dim").and_then(Value::as_int), Some(65536));
    assert_eq!(args.get("seed").and_then(Value::as_int), Some(-3));
    assert_eq!(args.get("use_fp16").and_then(Value::as_bool), Some(true));
    assert!(matches!(args.get("output_dir"), Some(Value::None)));
    let mut big = vec![0u8; 9];
    big[8] = 0x40; // 2**70, little-endian two's complement
    assert!(matches!(args.get("big"), Some(Value::BigInt(b)) if *b == big), "{:?}", args.get("big"));
    let scale: Vec<f64> = args.get("global_crops_scale").and_then(Value::as_slice).unwrap().iter().filter_map(Value::as_f64).collect();
    assert_eq!(scale, [0.4, 1.0]);

    let center = ckpt.get("dino_loss").and_then(|d| d.get("center")).and_then(Value::as_tensor).unwrap();
    assert_eq!(center.size(), [1, 16]);
    let groups = ckpt.get("optimizer").and_then(|o| o.get("param_groups")).and_then(Value::as_slice).unwrap();
    assert_eq!(groups[0].get("lr").and_then(Value::as_f64), Some(0.01));
    assert_eq!(groups[0].get("params").and_then(Value::as_slice).map(<[Value]>::len), Some(6));

    // Views of one storage share memory, as in Python.
    let extra = ckpt.get("extra").unwrap();
    let base = extra.get("base").and_then(Value::as_tensor).unwrap();
    let view = extra.get("view").and_then(Value::as_tensor).unwrap();
    assert_eq!(view.data_ptr() as usize, base.data_ptr() as usize + 5 * 4);
}

#[test]
fn reads_a_plain_state_dict_and_strips_prefixes() {
    let Some(py) = testpy::python_with("torch") else { return };
    let dir = tempfile::tempdir().unwrap();
    let want = fixtures(&py, dir.path());
    let plain = state_dict(&read(dir.path().join("plain.pth")).unwrap());
    check_all(&plain, &want["plain"]);
    check_all(&state_dict(&read(dir.path().join("plain_p5.pth")).unwrap()), &want["plain"]);
    assert!(plain.iter().any(|(n, t)| n == "1.num_batches_tracked" && t.kind() == Kind::Int64 && t.dim() == 0));

    let ckpt = read(dir.path().join("ckpt.pth")).unwrap();
    let student = strip_prefix(strip_prefix(state_dict(ckpt.get("student").unwrap()), "module."), "backbone.");
    let teacher = select_prefix(state_dict(ckpt.get("teacher").unwrap()), "backbone.");
    let names = |v: &[(String, Tensor)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&student), names(&plain));
    assert_eq!(names(&teacher), names(&plain));
    for ((_, a), (_, b)) in teacher.iter().zip(&plain) {
        assert!(a.equal(b));
    }
}

#[test]
fn legacy_torch_files_get_a_clear_error() {
    let Some(py) = testpy::python_with("torch") else { return };
    let dir = tempfile::tempdir().unwrap();
    fixtures(&py, dir.path());
    let err = read(dir.path().join("legacy.pth")).unwrap_err();
    assert!(matches!(err.problem, Problem::Legacy), "{err}");
    assert!(err.to_string().contains("legacy.pth: legacy torch.save format"), "{err}");
}

#[test]
fn non_zip_files_get_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.pth");
    std::fs::write(&text, "not a checkpoint\n").unwrap();
    let err = read(&text).unwrap_err();
    assert!(matches!(err.problem, Problem::NotZip));
    assert_eq!(
        err.to_string(),
        format!("{}: not a PyTorch file: it is not a zip archive (torch.save writes zip archives since PyTorch 1.6)", text.display())
    );

    // The legacy format's opening: PROTO 2, LONG1 of the magic number.
    let legacy = dir.path().join("old.pth");
    std::fs::write(&legacy, b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.").unwrap();
    assert!(matches!(read(&legacy).unwrap_err().problem, Problem::Legacy));

    let missing = read(dir.path().join("absent.pth")).unwrap_err();
    assert!(matches!(missing.problem, Problem::Io(_)) && missing.to_string().contains("absent.pth"));
}

/// A zip archive with the given `archive/` entries, stored.
fn zip_with(path: &Path, entries: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, data) in entries {
        zip.start_file(format!("archive/{name}"), zip::write::FileOptions::default()).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

/// A pickle of `_rebuild_tensor_v2(FloatStorage key 0 of `numel`, offset, (size,), (1,))`.
fn tensor_pickle(numel: i32, offset: u8, size: i32) -> Vec<u8> {
    let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ".to_vec();
    p.extend_from_slice(&numel.to_le_bytes());
    p.extend_from_slice(b"tQK");
    p.push(offset);
    p.push(b'J');
    p.extend_from_slice(&size.to_le_bytes());
    p.extend_from_slice(b"\x85K\x01\x85\x89)tR.");
    p
}

#[test]
fn malformed_files_are_refused_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.pth");
    let data = [0u8; 16];

    zip_with(&path, &[("data.pkl", &tensor_pickle(4, 1, 3)), ("data/0", &data)]);
    let ok = read(&path).unwrap();
    assert_eq!(ok.as_tensor().unwrap().size(), [3]);

    zip_with(&path, &[("data.pkl", &tensor_pickle(1 << 30, 0, 1)), ("data/0", &data)]);
    let err = read(&path).unwrap_err().to_string();
    assert!(err.contains("archive/data/0 should hold 4294967296 bytes but its entry holds 16"), "{err}");

    zip_with(&path, &[("data.pkl", &tensor_pickle(4, 2, 3)), ("data/0", &data)]);
    let err = read(&path).unwrap_err().to_string();
    assert!(err.contains("reaches element 4 of a storage of 4"), "{err}");

    zip_with(&path, &[("data.pkl", b"\x80\x02X\xff\xff\xff\x7fabc.")]);
    let err = read(&path).unwrap_err().to_string();
    assert!(err.contains("data.pkl at byte 2 (opcode 0x58): needs 2147483647 bytes but only 4 are left"), "{err}");

    let mut deep = b"\x80\x02".to_vec();
    deep.extend(std::iter::repeat_n(b']', 300));
    deep.extend(std::iter::repeat_n(b'a', 299));
    deep.push(b'.');
    zip_with(&path, &[("data.pkl", &deep)]);
    let err = read(&path).unwrap_err().to_string();
    assert!(err.contains("nested deeper than 200 levels"), "{err}");

    zip_with(&path, &[("version", b"3\n")]);
    let err = read(&path).unwrap_err().to_string();
    assert!(err.contains("without a FOLDER/data.pkl entry"), "{err}");

    std::fs::write(&path, b"PK\x03\x04truncated").unwrap();
    assert!(matches!(read(&path).unwrap_err().problem, Problem::Zip(_)));
}

#[test]
fn unknown_classes_stay_readable_objects() {
    // Python 3.11's `pickle.dumps({"x": Fraction(3, 4), "s": {1, 2}, "ns": Namespace(a=1)}, protocol=4)`:
    // FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE, EMPTY_SET/ADDITEMS on a memoized set, NEWOBJ.
    let pickle = b"\x80\x04\x95\x61\x00\x00\x00\x00\x00\x00\x00\x7d\x94\x28\x8c\x01\x78\x94\x8c\x09\x66\x72\x61\x63\x74\x69\x6f\x6e\x73\x94\x8c\x08\x46\x72\x61\x63\x74\x69\x6f\x6e\x94\x93\x94\x4b\x03\x4b\x04\x86\x94\x52\x94\x8c\x01\x73\x94\x8f\x94\x28\x4b\x01\x4b\x02\x90\x8c\x02\x6e\x73\x94\x8c\x08\x61\x72\x67\x70\x61\x72\x73\x65\x94\x8c\x09\x4e\x61\x6d\x65\x73\x70\x61\x63\x65\x94\x93\x94\x29\x81\x94\x7d\x94\x8c\x01\x61\x94\x4b\x01\x73\x62\x75\x2e";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("obj.pth");
    zip_with(&path, &[("data.pkl", pickle)]);
    let v = read(&path).unwrap();
    let Some(Value::Object(x)) = v.get("x") else { panic!("{v:?}") };
    assert_eq!((x.module.as_str(), x.name.as_str()), ("fractions", "Fraction"));
    assert_eq!(x.args.iter().filter_map(Value::as_int).collect::<Vec<_>>(), [3, 4]);
    let Some(Value::Object(s)) = v.get("s") else { panic!("{v:?}") };
    assert_eq!(s.items.iter().filter_map(Value::as_int).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(v.get("ns").and_then(|ns| ns.get("a")).and_then(Value::as_int), Some(1));

    // numpy 2.4's `pickle.dumps({"np": np.float64(0.5), "arr": np.arange(3, dtype=np.int32)}, protocol=2)`:
    // bytes arrive as `_codecs.encode(text, "latin1")`.
    let pickle = b"\x80\x02\x7d\x71\x00\x28\x58\x02\x00\x00\x00\x6e\x70\x71\x01\x63\x6e\x75\x6d\x70\x79\x2e\x5f\x63\x6f\x72\x65\x2e\x6d\x75\x6c\x74\x69\x61\x72\x72\x61\x79\x0a\x73\x63\x61\x6c\x61\x72\x0a\x71\x02\x63\x6e\x75\x6d\x70\x79\x0a\x64\x74\x79\x70\x65\x0a\x71\x03\x58\x02\x00\x00\x00\x66\x38\x71\x04\x89\x88\x87\x71\x05\x52\x71\x06\x28\x4b\x03\x58\x01\x00\x00\x00\x3c\x71\x07\x4e\x4e\x4e\x4a\xff\xff\xff\xff\x4a\xff\xff\xff\xff\x4b\x00\x74\x71\x08\x62\x63\x5f\x63\x6f\x64\x65\x63\x73\x0a\x65\x6e\x63\x6f\x64\x65\x0a\x71\x09\x58\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc3\xa0\x3f\x71\x0a\x58\x06\x00\x00\x00\x6c\x61\x74\x69\x6e\x31\x71\x0b\x86\x71\x0c\x52\x71\x0d\x86\x71\x0e\x52\x71\x0f\x58\x03\x00\x00\x00\x61\x72\x72\x71\x10\x63\x6e\x75\x6d\x70\x79\x2e\x5f\x63\x6f\x72\x65\x2e\x6d\x75\x6c\x74\x69\x61\x72\x72\x61\x79\x0a\x5f\x72\x65\x63\x6f\x6e\x73\x74\x72\x75\x63\x74\x0a\x71\x11\x63\x6e\x75\x6d\x70\x79\x0a\x6e\x64\x61\x72\x72\x61\x79\x0a\x71\x12\x4b\x00\x85\x71\x13\x68\x09\x58\x01\x00\x00\x00\x62\x71\x14\x68\x0b\x86\x71\x15\x52\x71\x16\x87\x71\x17\x52\x71\x18\x28\x4b\x01\x4b\x03\x85\x71\x19\x68\x03\x58\x02\x00\x00\x00\x69\x34\x71\x1a\x89\x88\x87\x71\x1b\x52\x71\x1c\x28\x4b\x03\x68\x07\x4e\x4e\x4e\x4a\xff\xff\xff\xff\x4a\xff\xff\xff\xff\x4b\x00\x74\x71\x1d\x62\x89\x68\x09\x58\x0c\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x71\x1e\x68\x0b\x86\x71\x1f\x52\x71\x20\x74\x71\x21\x62\x75\x2e";
    zip_with(&path, &[("data.pkl", pickle)]);
    let v = read(&path).unwrap();
    let Some(Value::Object(scalar)) = v.get("np") else { panic!("{v:?}") };
    assert_eq!((scalar.module.as_str(), scalar.name.as_str()), ("numpy._core.multiarray", "scalar"));
    assert!(matches!(&scalar.args[1], Value::Bytes(b) if b[..] == 0.5f64.to_le_bytes()), "{scalar:?}");
    let Some(Value::Object(arr)) = v.get("arr") else { panic!("{v:?}") };
    assert_eq!(arr.name, "_reconstruct");
    let data = arr.state.as_slice().and_then(|s| s.last()).unwrap();
    assert!(matches!(data, Value::Bytes(b) if b[..] == [0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]), "{data:?}");
}

fn written_tensors() -> Vec<(String, Tensor)> {
    let w = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 0.0, 1e-8, 7.0]).reshape([2, 3]);
    vec![
        ("w".into(), w.shallow_clone()),
        ("w_t".into(), w.tr()), // non-contiguous: saved contiguous
        ("h".into(), Tensor::from_slice(&[0.5f32, -1.0, 65504.0]).to_kind(Kind::Half)),
        ("bf".into(), Tensor::from_slice(&[0.15625f32, 3.0]).to_kind(Kind::BFloat16)),
        ("steps".into(), Tensor::from(123_456_789_012i64)),
        ("ids".into(), Tensor::from_slice(&[-1i64, 1 << 40, 300, 70000])),
        ("mask".into(), Tensor::from_slice(&[true, false, true])),
        ("empty".into(), Tensor::zeros([0, 3], (Kind::Float, tch::Device::Cpu))),
        ("big".into(), Tensor::arange(5000, (Kind::Float, tch::Device::Cpu)).reshape([50, 100]) / 7.0),
    ]
}

#[test]
fn our_writes_read_back_and_align_storages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.pth");
    let tensors = written_tensors();
    write(&path, &tensors).unwrap();
    assert!(!dir.path().join("out.pth.tmp").exists());
    let back = state_dict(&read(&path).unwrap());
    assert_eq!(back.len(), tensors.len());
    for ((n, a), (m, b)) in tensors.iter().zip(&back) {
        assert_eq!(n, m);
        assert_eq!(a.kind(), b.kind(), "{n}");
        assert!(a.equal(b), "{n}");
    }
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    for i in 0..zip.len() {
        let entry = zip.by_index(i).unwrap();
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored);
        assert_eq!(entry.data_start() % 64, 0, "{} is not aligned", entry.name());
    }
}

#[test]
fn torch_loads_our_writes_with_weights_only() {
    let Some(py) = testpy::python_with("torch") else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.pth");
    let tensors = written_tensors();
    write(&path, &tensors).unwrap();
    let script = r#"
import sys, json, collections, torch
sd = torch.load(sys.argv[1], weights_only=True)
assert type(sd) is collections.OrderedDict, type(sd)
mapped = torch.load(sys.argv[1], weights_only=True, mmap=True)
assert all(torch.equal(sd[k], mapped[k]) for k in sd)
def desc(t):
    ints = not (t.is_floating_point() or t.dtype == torch.bool)
    values = t.flatten().tolist() if ints else t.double().flatten().tolist()
    return {"dtype": str(t.dtype), "shape": list(t.shape), "stride": list(t.stride()), "values": values}
print(json.dumps({k: desc(v) for k, v in sd.items()}))
"#;
    let want: Json = serde_json::from_str(&testpy::run(&py, script, &[path.as_os_str()])).unwrap();
    let contiguous: Vec<(String, Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t.contiguous())).collect();
    check_all(&contiguous, &want);
}
