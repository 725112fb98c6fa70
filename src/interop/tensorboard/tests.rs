//! Tests of the event writer and reader against real files, and against TensorBoard's own reader
//! and PyTorch's SummaryWriter where the venv has `tensorboard`.
use super::*;
use crate::interop::testpy;

fn sample(dir: &Path) -> (PathBuf, Vec<(String, i64, f32)>) {
    let mut w = EventWriter::create(dir).unwrap();
    let mut points = Vec::new();
    for step in 0..50i64 {
        let loss = 10.0 / (step as f32 + 1.0);
        w.add_scalar("train/loss", step, loss, 1_700_000_000.0 + step as f64).unwrap();
        points.push(("train/loss".to_string(), step, loss));
        if step % 10 == 0 {
            w.add_scalar("eval/knn_top1", step, step as f32 * 0.01, 1_700_000_000.5).unwrap();
            points.push(("eval/knn_top1".to_string(), step, step as f32 * 0.01));
        }
    }
    w.add_scalar("train/lr", 1 << 40, -1.5e-4, wall_time_now()).unwrap();
    points.push(("train/lr".to_string(), 1 << 40, -1.5e-4));
    w.flush().unwrap();
    (w.path().to_path_buf(), points)
}

#[test]
fn crc32c_and_mask_match_tfrecord() {
    // CRC-32C's check value, and masked CRCs as TensorBoard's own `masked_crc32c` computes them.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    assert_eq!(masked_crc(&[0; 8]), 0x0798_0329);
    assert_eq!(masked_crc(b"brain.Event:2"), 0x7c06_01ee);
}

#[test]
fn writes_event_files_that_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (path, points) = sample(&dir.path().join("run1"));
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    let secs: u64 = name.split('.').nth(3).unwrap().parse().unwrap();
    assert!(secs.abs_diff(wall_time_now() as u64) < 600);
    assert_eq!(read_scalars(&path).unwrap(), points);

    // A second writer in the same second gets its own file.
    let other = EventWriter::create(dir.path().join("run1")).unwrap();
    assert_ne!(other.path(), path);

    // The first record is the file-version event.
    let bytes = std::fs::read(&path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let first = &bytes[12..12 + len];
    assert!(first.windows(13).any(|w| w == b"brain.Event:2"));
}

#[test]
fn reader_checks_crcs_and_tolerates_a_cut_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, points) = sample(dir.path());
    let bytes = std::fs::read(&path).unwrap();

    let cut = dir.path().join("cut.tfevents");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    assert_eq!(read_scalars(&cut).unwrap(), points[..points.len() - 1]);

    let mut flipped = bytes.clone();
    let at = bytes.len() - 10;
    flipped[at] ^= 1;
    std::fs::write(&cut, &flipped).unwrap();
    let err = read_scalars(&cut).unwrap_err().to_string();
    assert!(err.contains("data CRC mismatch"), "{err}");

    let mut flipped = bytes;
    flipped[3] ^= 1;
    std::fs::write(&cut, &flipped).unwrap();
    let err = read_scalars(&cut).unwrap_err().to_string();
    assert!(err.contains("record at byte 0: length CRC mismatch"), "{err}");
}

#[test]
fn tensorboard_reads_our_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_, points) = sample(dir.path());
    let Some(py) = testpy::python_with("tensorboard") else { return };
    let script = r#"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
for tag in sorted(acc.Tags()["scalars"]):
    for e in acc.Scalars(tag):
        print(tag, e.step, repr(e.value))
"#;
    let out = testpy::run(&py, script, &[dir.path().as_os_str()]);
    let got: Vec<(String, i64, f32)> = out
        .lines()
        .map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            (parts[0].to_string(), parts[1].parse().unwrap(), parts[2].parse::<f64>().unwrap() as f32)
        })
        .collect();
    let mut want = points;
    want.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    assert_eq!(got, want);
}

#[test]
fn reads_pytorch_summary_writer_files() {
    let Some(py) = testpy::python_with("tensorboard") else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import sys
import torch
from torch.utils.tensorboard import SummaryWriter
w = SummaryWriter(sys.argv[1])
for step in range(5):
    w.add_scalar("loss", 1.0 / (step + 1), step)
w.add_histogram("weights", torch.tensor([1.0, 2.0, 3.0]), 0)
w.add_scalar("lr", 0.25, 4)
w.close()
"#;
    testpy::run(&py, script, &[dir.path().as_os_str()]);
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().contains("tfevents"))
        .unwrap();
    let got = read_scalars(file.path()).unwrap();
    let mut want: Vec<(String, i64, f32)> = (0..5).map(|s| ("loss".to_string(), s, 1.0 / (s as f32 + 1.0))).collect();
    want.push(("lr".into(), 4, 0.25));
    assert_eq!(got, want);
}

#[test]
fn resumed_steps_are_dropped_and_the_rest_kept_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (path, points) = sample(dir.path());
    let before = std::fs::read(&path).unwrap();
    assert_eq!(retain(&path, |_, _| true).unwrap(), 0);
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing to drop: the file is untouched");
    let keep = |tag: &str, step: i64| step < 30 || (tag.starts_with("eval/") && step <= 30);
    let dropped = retain(&path, keep).unwrap();
    let kept: Vec<_> = points.iter().filter(|p| keep(&p.0, p.1)).cloned().collect();
    assert!(kept.iter().any(|p| p.0 == "eval/knn_top1" && p.1 == 30));
    assert_eq!(dropped, points.len() - kept.len());
    assert_eq!(read_scalars(&path).unwrap(), kept);
    // The file-version event stays, so the file is still an event file.
    assert_eq!(retain(&path, |_, _| false).unwrap(), kept.len());
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.windows(13).any(|w| w == b"brain.Event:2"));
    assert!(read_scalars(&path).unwrap().is_empty());
}
