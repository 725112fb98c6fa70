//! Hostile input and faults (issue 16): a data folder holding a FIFO, a decompression bomb, a
//! truncated JPEG, a file whose name is not UTF-8 and symbolic-link loops trains to the end and
//! names each; the run files stay consistent across a kill during the epoch-end checkpoint, torn
//! lines, a restart before the first checkpoint and temporary-file litter, and stay private; bad
//! command lines fail with the setting named and leave no run directory behind; and (long,
//! ignored) a run killed at random moments 20 times ends with the weights of an uninterrupted one.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Trainers are separate processes on few cores: one at a time keeps the timeouts sane.
static ONE_TRAINER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_TRAINER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn dino(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dino"));
    // The run index and log go into the test's folder, not the user's home.
    c.env("XDG_DATA_HOME", home.join("xdg-data")).env("XDG_STATE_HOME", home.join("xdg-state")).current_dir(home);
    c
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs `dino train --headless --config CFG` to its end, failing the test (instead of hanging it)
/// when it takes longer than `limit`.
fn train(home: &Path, cfg: &Path, limit: Duration) -> String {
    let (code, said) = bounded(dino(home).args(["train", "--headless", "--config"]).arg(cfg), limit);
    assert_eq!(code, Some(0), "training failed: {said}");
    said
}

fn json_lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: a line that is not JSON ({e}): {l:?}", p.display())))
        .collect()
}

fn events(run: &Path) -> Vec<serde_json::Value> {
    json_lines(&run.join("events.jsonl"))
}

/// Records in `metrics.jsonl` while a trainer may be writing it: whole lines only (a line being
/// written, or one a kill tore, has no newline yet).
fn metric_records(run: &Path) -> usize {
    std::fs::read(run.join("metrics.jsonl")).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0)
}

fn metric_iters(run: &Path) -> Vec<u64> {
    json_lines(&run.join("metrics.jsonl")).iter().map(|m| m["iter"].as_u64().unwrap()).collect()
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", p.display());
}

/// A PNG that is only a header declaring `w` x `h` RGB pixels and the start of its pixel data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for b in bytes {
            c ^= u32::from(*b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let chunk = |kind: &[u8], data: &[u8]| {
        let body = [kind, data].concat();
        [&(data.len() as u32).to_be_bytes()[..], &body, &crc32(&body).to_be_bytes()].concat()
    };
    let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes()[..], &[8, 2, 0, 0, 0]].concat();
    let idat = [0x78, 0x01, 0x00, 0x00, 0x80, 0xFF, 0x7F];
    [&b"\x89PNG\r\n\x1a\n"[..], &chunk(b"IHDR", &ihdr), &chunk(b"IDAT", &idat), &chunk(b"IEND", &[])].concat()
}

#[test]
fn a_hostile_data_folder_trains_to_the_end_and_every_skipped_file_is_named() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 8); // 40 pretext images: 5 iterations of 8
    let pretext = data.join("pretext");
    let good = dino_tui::data::DataLayout::discover(&data).unwrap().pretext().len();
    // A FIFO named like an image: reading it would block for good.
    mkfifo(&pretext.join("x.jpg"));
    // A decompression bomb: a header declaring 30000 x 30000 (2.7 GB of RGB).
    std::fs::write(pretext.join("bomb.png"), png_header(30000, 30000)).unwrap();
    // A truncated JPEG: the image crate would decode it, grey where the data is missing.
    let img = image::RgbImage::from_fn(48, 48, |x, y| image::Rgb([(x * 5) as u8, (y * 5) as u8, 60]));
    let mut jpeg = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
    std::fs::write(pretext.join("cut.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    // An unreadable file whose name is not UTF-8.
    let odd = pretext.join(std::ffi::OsStr::from_bytes(b"caf\xe9.jpg"));
    std::fs::write(&odd, b"not an image").unwrap();
    // Symbolic-link loops: followed, the set would multiply and take in val/.
    std::os::unix::fs::symlink(".", pretext.join("sub")).unwrap();
    std::os::unix::fs::symlink("..", pretext.join("up")).unwrap();

    let run = d.path().join("run");
    let mut c = common::tiny_config(&data, &run);
    c.optim.epochs = 2;
    c.run.num_workers = 2;
    // One batch of every file, so each unreadable one comes up (and is named) in each epoch.
    c.optim.batch_size_per_gpu = good + 3;
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, c.to_toml()).unwrap();
    let said = train(d.path(), &cfg, Duration::from_secs(180));

    let ev = events(&run);
    let start = ev.iter().find(|e| e["type"] == "start").expect("start event");
    // The good images plus the three unreadable files (skipped as they come up), no FIFO, no loops.
    assert_eq!(start["num_images"].as_u64(), Some(good as u64 + 3), "{start}");
    let skipped: Vec<(String, String)> = ev
        .iter()
        .filter(|e| e["type"] == "skipped_file")
        .map(|e| (e["path"].as_str().unwrap().to_string(), e["reason"].as_str().unwrap().to_string()))
        .collect();
    for (name, why) in [
        ("x.jpg", "FIFO"),
        ("bomb.png", "max_image_pixels"),
        ("cut.jpg", "truncated JPEG"),
        ("caf\u{fffd}.jpg", "not an image"),
        ("pretext/sub", "loop"),
        ("pretext/up", "loop"),
    ] {
        assert!(skipped.iter().any(|(p, r)| p.ends_with(name) && r.contains(why)), "{name} ({why}) not named: {skipped:?}\n{said}");
    }
    assert_eq!(metric_iters(&run), [0, 1]);
}

/// Demo data and a tiny config, 5 iterations per epoch, a checkpoint every epoch.
fn small_run(d: &Path, epochs: usize) -> (PathBuf, PathBuf) {
    let data = d.join("data");
    common::demo_data(&data, 8);
    let run = d.join("run");
    let mut c = common::tiny_config(&data, &run);
    c.optim.epochs = epochs;
    let cfg = d.join("c.toml");
    std::fs::write(&cfg, c.to_toml()).unwrap();
    (run, cfg)
}

fn log_epochs(run: &Path) -> Vec<u64> {
    json_lines(&run.join("log.txt")).iter().map(|m| m["epoch"].as_u64().unwrap()).collect()
}

fn append(p: &Path, bytes: &[u8]) {
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(p).unwrap().write_all(bytes).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn run_files_stay_consistent_and_private_across_every_interruption() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let (run, cfg) = small_run(d.path(), 2);
    let ckpts = run.join("checkpoints");

    // Killed before the first checkpoint: metrics of 3 iterations and an epoch row, no checkpoint.
    let metric = |i: usize| format!("{{\"iter\":{i},\"epoch\":0,\"loss\":1.0}}\n");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("metrics.jsonl"), (0..3).map(metric).collect::<String>()).unwrap();
    std::fs::write(run.join("log.txt"), "{\"epoch\":0,\"train_loss\":1.0,\"train_lr\":0.0,\"train_wd\":0.0}\n").unwrap();
    train(d.path(), &cfg, Duration::from_secs(120));
    assert_eq!(metric_iters(&run), (0..10).collect::<Vec<u64>>(), "restarted from 0: nothing of before kept");
    assert_eq!(log_epochs(&run), [0, 1]);

    // Killed during the epoch-end checkpoint of epoch 1: its log row is written, the checkpoint
    // is not (latest still names the end of epoch 0). Torn lines (a full disk) on top, and the
    // temporary files of an interrupted write.
    // (killed before its own sidecar was written, which comes before latest moves on).
    std::fs::copy(ckpts.join("checkpoint-previous.json"), ckpts.join("checkpoint-latest.json")).unwrap();
    for e in std::fs::read_dir(&ckpts).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") && dino_tui::run::checkpoint::read_meta(&p).unwrap().iter == 10 {
            std::fs::remove_file(p).unwrap();
        }
    }
    append(&run.join("metrics.jsonl"), b"{\"iter\":10,\"epo");
    append(&run.join("log.txt"), b"{\"epoch\":2,\"tr");
    append(&run.join("events.jsonl"), b"{\"type\":\"chec");
    std::fs::write(ckpts.join("state-it00000010.safetensors.tmp"), b"half a tensor file").unwrap();
    std::fs::write(run.join("config.toml.tmp"), b"half a config").unwrap();
    std::fs::set_permissions(run.join("metrics.jsonl"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let said = train(d.path(), &cfg, Duration::from_secs(120));
    assert!(said.contains("from iteration 5"), "{said}");
    assert_eq!(metric_iters(&run), (0..10).collect::<Vec<u64>>(), "no duplicated or fused records");
    assert_eq!(log_epochs(&run), [0, 1], "epoch 1's row once");
    assert!(events(&run).iter().filter(|e| e["type"] == "start").count() == 2, "events.jsonl parses whole");
    assert!(!ckpts.join("state-it00000010.safetensors.tmp").exists() && !run.join("config.toml.tmp").exists(), "litter removed");

    // Private to the user.
    for dir in [&run, &ckpts] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    for f in ["metrics.jsonl", "log.txt", "events.jsonl", "config.toml"] {
        assert_eq!(mode(&run.join(f)), 0o600, "{f}");
    }
    // And everything below: checkpoints, tb/, evals/ (issue 33 found them 0644).
    let mut stack = vec![run.clone()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                stack.push(p);
            } else {
                assert_eq!(mode(&p) & 0o077, 0, "{} is {:o}", p.display(), mode(&p));
                seen += 1;
            }
        }
    }
    assert!(seen > 8, "checked {seen} files");
}

#[test]
fn bad_command_lines_name_the_setting_and_leave_no_run_directory() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path();
    std::fs::write(home.join("afile"), b"x").unwrap();
    for (args, needle) in [
        (vec!["train", "--global_crops_scale", "0.1", "0.5", "0.9", "--print-config"], "--global_crops_scale"),
        (vec!["train", "--min_lr", "0.1", "--lr", "0.01", "--print-config"], "--min_lr"),
        (vec!["train", "--out_dim", "100000000000", "--print-config"], "--out_dim"),
        (vec!["train", "--num_workers", "100000", "--print-config"], "--num_workers"),
        (vec!["train", "--headless", "--data_path", "afile", "--output_dir", "runs/never"], "not a folder"),
        (vec!["train", "--headless", "--data_path", "/nonexistent/dino-data", "--output_dir", "runs/never"], "does not exist"),
    ] {
        let o = dino(home).args(&args).output().unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{args:?} should fail: {t}");
        assert_ne!(o.status.code(), Some(101), "{args:?} panicked: {t}");
        assert!(t.contains(needle), "{args:?}: message does not say {needle}:\n{t}");
    }
    assert!(!home.join("runs/never").exists(), "a run that never started leaves no directory");

    // A preset's name wins over a folder of that name that is not a config.
    std::fs::create_dir_all(home.join("demo/data")).unwrap();
    let o = dino(home).args(["train", "--config", "demo", "--print-config"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let c = dino_tui::config::TrainConfig::from_toml_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    assert_eq!(c, dino_tui::config::preset("demo").unwrap());
    // A folder that is neither says what it found.
    std::fs::create_dir_all(home.join("notes")).unwrap();
    let o = dino(home).args(["train", "--config", "notes", "--print-config"]).output().unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("folder without config.toml"), "{}", text(&o));
}

/// The newest checkpoint of `dir` that loads whole, by iteration: what a resume must start from.
fn newest_good_checkpoint(dir: &Path) -> Option<u64> {
    let sidecars = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json"));
    sidecars.filter_map(|p| dino_tui::run::checkpoint::load_one(&p).ok()).map(|c| c.meta.iter as u64).max()
}

/// The tensors of the checkpoint `checkpoint-latest.json` names.
fn latest_tensors(run: &Path) -> std::collections::BTreeMap<String, tch::Tensor> {
    let dir = run.join("checkpoints");
    let meta = dino_tui::run::checkpoint::read_meta(&dir.join(dino_tui::run::checkpoint::LATEST)).unwrap();
    dino_tui::model::weights::read(&dir.join(meta.tensors)).unwrap()
}

/// Waits until `metrics.jsonl` of `run` holds `lines` records, the child has exited, or `stop()`
/// says so; at the latest after `limit`.
fn wait_for_progress(child: &mut common::KillOnDrop, run: &Path, lines: usize, limit: Duration, stop: impl Fn() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < limit && !stop() && child.try_wait().unwrap().is_none() && metric_records(run) < lines {
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// Kills with SIGKILL when a checkpoint write is under way (a temporary file in `checkpoints/`)
/// or, at the latest, once the run has gone `MAX_ADVANCE` iterations past `from` records without
/// one being seen. Returns whether it caught a write.
fn kill_during_a_checkpoint_write(child: &mut common::KillOnDrop, run: &Path, from: usize, limit: Duration) -> bool {
    let dir = run.join("checkpoints");
    let writing =
        || std::fs::read_dir(&dir).map(|r| r.flatten().any(|e| e.path().extension().is_some_and(|x| x == "tmp"))).unwrap_or(false);
    wait_for_progress(child, run, from + MAX_ADVANCE, limit, writing);
    let caught = writing();
    let _ = child.kill();
    caught
}

/// The most iterations a run may make past the previous one's records before it is killed: the
/// kills are placed by the run's progress, not by wall time, so that at least 20 of them fall
/// within the 200 iterations however loaded the machine is (placed by wall time, a run under the
/// load of a second suite once finished after 16).
const MAX_ADVANCE: usize = 8;

#[test]
fn killed_at_random_moments_20_times_it_ends_with_the_weights_of_an_uninterrupted_run() {
    use rand::{Rng, SeedableRng};
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 8); // 40 images: 5 iterations per epoch
    let make = |name: &str| {
        let run = d.path().join(name);
        let mut c = common::tiny_config(&data, &run);
        c.optim.epochs = 40;
        c.model.out_dim = 4096; // checkpoint writes that take a moment to catch
        let cfg = d.path().join(format!("{name}.toml"));
        std::fs::write(&cfg, c.to_toml()).unwrap();
        (run, cfg)
    };
    let total = 40 * 5;
    let (reference, ref_cfg) = make("reference");
    let t0 = Instant::now();
    train(d.path(), &ref_cfg, Duration::from_secs(600));
    let whole = t0.elapsed();
    eprintln!("uninterrupted run: {whole:.1?}");
    let per_iteration = whole / total as u32;

    let (run, cfg) = make("killed");
    let ckpts = run.join("checkpoints");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    let (mut kills, mut caught_writes, mut starts_seen) = (0, 0, 0);
    let mut expected_starts: Vec<u64> = Vec::new();
    while kills < 20 {
        let expected = newest_good_checkpoint(&ckpts).unwrap_or(0);
        let mut child = common::spawn_guarded(
            dino(d.path()).args(["train", "--headless", "--config"]).arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()),
        );
        // A third of the kills aimed at checkpoint writes, the rest anywhere from start-up on:
        // after 0 to MAX_ADVANCE - 1 more iterations, somewhere within the next one.
        let from = metric_records(&run);
        if kills % 3 == 2 {
            caught_writes += kill_during_a_checkpoint_write(&mut child, &run, from, whole) as usize;
        } else {
            wait_for_progress(&mut child, &run, from + rng.random_range(0..MAX_ADVANCE), whole, || false);
            std::thread::sleep(per_iteration.mul_f64(rng.random_range(0.0..1.0)));
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        assert!(status.code().is_none() || status.success(), "a run failed on its own: {status}");
        kills += 1;
        // Each run that got as far as starting said where it started: the newest good checkpoint.
        let starts: Vec<u64> = events(&run).iter().filter(|e| e["type"] == "start").map(|e| e["start_iter"].as_u64().unwrap()).collect();
        if starts.len() > starts_seen {
            assert_eq!(starts.len(), starts_seen + 1);
            assert_eq!(starts[starts_seen], expected, "kill {kills}: did not resume from the newest good checkpoint");
            expected_starts.push(expected);
            starts_seen += 1;
        }
        if metric_records(&run) >= total {
            break;
        }
    }
    let expected = newest_good_checkpoint(&ckpts).unwrap_or(0);
    train(d.path(), &cfg, Duration::from_secs(600));
    let last_start = events(&run).iter().rfind(|e| e["type"] == "start").unwrap()["start_iter"].as_u64().unwrap();
    assert_eq!(last_start, expected);
    eprintln!("{kills} kills, {caught_writes} during a checkpoint write; runs started from {expected_starts:?}, last from {last_start}");
    assert!(kills >= 20, "only {kills} kills before the run ended: make it longer");

    assert_eq!(metric_iters(&run), (0..total as u64).collect::<Vec<u64>>(), "metrics.jsonl: every iteration once, in order");
    assert_eq!(log_epochs(&run), (0..40).collect::<Vec<u64>>(), "log.txt: every epoch once");
    let (a, b) = (latest_tensors(&reference), latest_tensors(&run));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "{name} differs from the uninterrupted run");
    }
}

// ---- Issue 37: FIFOs where a file is read by name, outputs and paths that escape, smaller items.

/// Runs `cmd` to its end with its output captured, failing the test (instead of hanging it) when
/// it takes longer than `limit`: a FIFO opened for reading blocks for good.
fn bounded(cmd: &mut Command, limit: Duration) -> (Option<i32>, String) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let mut child = common::spawn_guarded(
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::options().create(true).append(true).open(&out).unwrap())
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&out).unwrap())),
    );
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < limit,
            "{cmd:?} still running after {limit:?} (hung?): {}",
            std::fs::read_to_string(&out).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), String::from_utf8_lossy(&std::fs::read(&out).unwrap_or_default()).into_owned())
}

const BOUND: Duration = Duration::from_secs(60);

#[test]
fn a_fifo_in_place_of_any_file_read_by_name_is_refused_and_hangs_nothing() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let home = d.path();
    let (run, cfg) = small_run(home, 1);

    // --config FIFO and --exclude FIFO: refused, naming the file and what it is.
    let fifo = home.join("fifo.toml");
    mkfifo(&fifo);
    let (code, said) = bounded(dino(home).args(["train", "--print-config", "--config"]).arg(&fifo), BOUND);
    assert_ne!(code, Some(0), "{said}");
    assert!(said.contains("fifo.toml") && said.contains("a FIFO"), "{said}");
    let (code, said) = bounded(dino(home).args(["train", "--headless", "--config"]).arg(&cfg).arg("--exclude").arg(&fifo), BOUND);
    assert_ne!(code, Some(0), "{said}");
    assert!(said.contains("--exclude") && said.contains("a FIFO"), "{said}");

    // A FIFO named schedule-edits.toml in the run: trained to the end, the trainer exits, and the
    // FIFO is named once.
    std::fs::create_dir_all(&run).unwrap();
    mkfifo(&run.join("schedule-edits.toml"));
    let (code, said) = bounded(dino(home).args(["train", "--headless", "--config"]).arg(&cfg), Duration::from_secs(180));
    assert_eq!(code, Some(0), "{said}");
    let named =
        events(&run).iter().any(|e| e["type"] == "schedule_file_error" && e["message"].as_str().is_some_and(|m| m.contains("a FIFO")));
    assert!(named, "the FIFO is not named in events.jsonl: {said}");

    // A FIFO in place of events.jsonl: a resume is refused naming it, and `dino runs` (which
    // knows the run from the index) ends; so it does with metrics.jsonl a FIFO too.
    std::fs::remove_file(run.join("events.jsonl")).unwrap();
    mkfifo(&run.join("events.jsonl"));
    let (code, said) = bounded(dino(home).args(["train", "--headless", "--config"]).arg(&cfg), BOUND);
    assert_ne!(code, Some(0), "{said}");
    assert!(said.contains("events.jsonl") && said.contains("a FIFO"), "{said}");
    for f in ["metrics.jsonl", "log.txt", "config.toml"] {
        std::fs::remove_file(run.join(f)).unwrap();
        mkfifo(&run.join(f));
        let (code, said) = bounded(dino(home).arg("runs"), BOUND);
        assert_eq!(code, Some(0), "{f}: {said}");
    }
}

#[test]
fn outputs_write_through_links_and_devices_and_run_paths_stay_in_the_run() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let home = d.path();
    let (run, cfg) = small_run(home, 1);
    train(home, &cfg, Duration::from_secs(120));

    // A link to a device as --output: written through, still a link, nothing beside it.
    let link = home.join("out.safetensors");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let (code, said) = bounded(dino(home).arg("export").arg(&run).arg("--output").arg(&link), BOUND);
    assert_eq!(code, Some(0), "{said}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced: {said}");
    assert!(!home.join("out.safetensors.tmp").exists());

    // A bare backbone file records the crop size it trained at, and an evaluation of it reads it
    // back (a ResNet's tensors do not tell: a 32 px one was evaluated at 224); the flag
    // --global_crop_size overrides it.
    let bare = home.join("bare.safetensors");
    let (code, said) = bounded(dino(home).args(["export", "random", "--config", "cifar-quick", "--output"]).arg(&bare), BOUND);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(dino_tui::model::weights::recorded_crop_size(&bare), Some(32));
    let mut spec = dino_tui::eval::source::SourceSpec::teacher(bare.to_str().unwrap(), tch::Device::Cpu, 0);
    let crop = |spec: &dino_tui::eval::source::SourceSpec| dino_tui::eval::source::load(spec).map(|s| s.config.crops.global_crop_size);
    assert_eq!(crop(&spec).ok(), Some(32));
    spec.global_crop_size = Some(64);
    assert_eq!(crop(&spec).ok(), Some(64));

    // A sidecar naming tensors outside checkpoints/ is refused, even when that file is whole.
    let ckpts = run.join("checkpoints");
    let latest = ckpts.join("checkpoint-latest.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&latest).unwrap()).unwrap();
    let tensors = meta["tensors"].as_str().unwrap().to_string();
    std::fs::copy(ckpts.join(&tensors), home.join("x.safetensors")).unwrap();
    meta["tensors"] = "../../x.safetensors".into();
    let forged = ckpts.join("checkpoint-forged.json");
    std::fs::write(&forged, serde_json::to_vec(&meta).unwrap()).unwrap();
    let e = dino_tui::run::checkpoint::load_one(&forged).err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(e.contains("refused") && e.contains("../../x.safetensors"), "loaded a file outside checkpoints/: {e:?}");
    std::fs::remove_file(&forged).unwrap();

    // A sidecar whose schedule claims 10^12 epochs is refused before it is rendered (it aborted
    // the resume); the run's other checkpoints still load, and the refusal is named.
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&latest).unwrap()).unwrap();
    meta["schedules"][0][1]["epochs"] = 1_000_000_000_000u64.into();
    meta["iter"] = 1_000_000.into();
    let huge = ckpts.join("checkpoint-it99999999.json");
    std::fs::write(&huge, serde_json::to_vec(&meta).unwrap()).unwrap();
    let e = dino_tui::run::checkpoint::load_one(&huge).err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(e.contains("refused") && e.contains("1000000000000 epochs"), "{e:?}");
    let (found, problems) = dino_tui::run::checkpoint::load_latest(&ckpts);
    assert!(found.is_some_and(|c| c.meta.iter < 1_000_000), "the newest sound checkpoint is used");
    assert!(problems.iter().any(|p| p.contains("checkpoint-it99999999.json") && p.contains("epochs")), "{problems:?}");
    std::fs::remove_file(&huge).unwrap();

    // --name stays inside runs/.
    let (code, said) = bounded(dino(home).args(["train", "--print-config", "--name", "../../escape_run"]), BOUND);
    assert_ne!(code, Some(0), "{said}");
    assert!(said.contains("--name"), "{said}");
}

#[test]
fn a_file_name_with_escape_sequences_is_printed_escaped() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let home = d.path();
    // Two epochs: the file comes up (and is named) in each, the second long after the printer
    // listens.
    let (run, cfg) = small_run(home, 2);
    // In place of one of the 40 images, so it falls in a batch (none is dropped) and is skipped.
    let pretext = home.join("data/pretext");
    let first = std::fs::read_dir(&pretext).unwrap().flatten().map(|e| e.path()).find(|p| p.is_file()).unwrap();
    std::fs::remove_file(first).unwrap();
    let evil = "\u{1b}]2;PWNED\u{7}\u{1b}[2Jx.jpg";
    std::fs::write(pretext.join(evil), b"not an image").unwrap();
    let said = train(home, &cfg, Duration::from_secs(120));
    assert!(events(&run).iter().any(|e| e["type"] == "skipped_file" && e["path"].as_str().is_some_and(|p| p.ends_with(evil))));
    assert!(!said.contains('\u{1b}') && !said.contains('\u{7}'), "control characters written raw: {said:?}");
    assert!(said.contains("\\x1b]2;PWNED\\x07"), "the file is not named: {said}");
}

#[test]
fn smaller_hostile_inputs_get_their_own_errors() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path();
    // Numbers with a leading '-' reach the flag's range check.
    let (code, said) = bounded(dino(home).args(["train", "--print-config", "--lr", "-inf"]), BOUND);
    assert_ne!(code, Some(0));
    assert!(said.contains("--lr") && !said.contains("unexpected argument"), "{said}");
    // NaN is no temperature.
    let (code, said) = bounded(dino(home).args(["eval", "label-efficiency", "--temperature", "nan"]), BOUND);
    assert_ne!(code, Some(0));
    assert!(said.contains("--temperature"), "{said}");
    // A figure is PNG or SVG, as its name says.
    let (code, said) = bounded(dino(home).args(["outliers", "--map", "x.bmp"]), BOUND);
    assert_ne!(code, Some(0));
    assert!(said.contains(".bmp"), "{said}");
    assert!(!home.join("x.bmp").exists());
    // A run whose socket path is over the limit is not live: exit 3, as the README says.
    let long = home.join("r".repeat(120));
    std::fs::create_dir_all(&long).unwrap();
    let (code, said) = bounded(dino(home).arg("ctl").arg(&long).arg("status"), BOUND);
    assert_eq!(code, Some(3), "{said}");
}

#[test]
fn an_unreadable_or_too_deep_folder_under_pretext_is_skipped_and_named() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 2);
    // Folders nested past PATH_MAX (4096 bytes): once silently not found. Made relative to
    // each other (mkdirat), as no single call takes the whole path.
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let name = c(&"d".repeat(200));
    let pretext = c(data.join("pretext").to_str().unwrap());
    // SAFETY: plain *at calls on descriptors this loop owns, with NUL-terminated names.
    unsafe {
        let mut fd = libc::open(pretext.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
        for _ in 0..25 {
            assert_eq!(libc::mkdirat(fd, name.as_ptr(), 0o755), 0);
            let next = libc::openat(fd, name.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
            libc::close(fd);
            fd = next;
        }
        libc::close(fd);
    }
    let layout = dino_tui::data::layout::DataLayout::discover(&data).unwrap();
    let named: Vec<String> = layout.left_out().iter().map(|l| l.reason.clone()).collect();
    assert!(named.iter().any(|r| r.contains("PATH_MAX")), "{named:?}");
    // Mode 000 (root reads it anyway: that half needs another user).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let locked = data.join("pretext/locked");
        std::fs::create_dir_all(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let layout = dino_tui::data::layout::DataLayout::discover(&data);
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
        let layout = layout.unwrap();
        assert!(layout.left_out().iter().any(|l| l.path == locked && l.reason.contains("cannot read the folder")));
    }
}

/// Under a file-size limit (`ulimit -f`), a checkpoint that does not fit is a reported error that
/// names the file, not SIGXFSZ; the checkpoint before it still loads.
#[test]
fn a_file_size_limit_is_a_named_write_error_and_the_last_checkpoint_stays() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let (run, cfg) = small_run(d.path(), 1);
    train(d.path(), &cfg, Duration::from_secs(120));
    let saved = newest_good_checkpoint(&run.join("checkpoints")).expect("a checkpoint after epoch 0");
    let biggest = std::fs::read_dir(run.join("checkpoints")).unwrap().flatten().map(|e| e.metadata().unwrap().len()).max().unwrap();
    let mut cmd = dino(d.path());
    cmd.args(["train", "--headless", "--config"]).arg(&cfg).args(["--epochs", "3"]);
    // Killed by SIGXFSZ, the code is None.
    let (code, said) = bounded(common::with_rlimit(&mut cmd, libc::RLIMIT_FSIZE, biggest / 2), Duration::from_secs(120));
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("File too large") && said.contains("checkpoints"), "{said}");
    assert_eq!(newest_good_checkpoint(&run.join("checkpoints")), Some(saved), "the checkpoint before stays usable");
}

/// Sizes that pass validation one by one but cannot fit together are refused before anything is
/// allocated, with the estimate, and leave no run directory: they panicked in tch ("can't
/// allocate 274877906944 bytes") or grew until the kernel killed them.
#[test]
fn oversized_plans_are_refused_with_their_estimate_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 20);
    let base = ["train", "--headless", "--data_path", "data", "--output_dir", "runs/never", "--arch", "vit_tiny"];
    for (extra, limit) in [
        (&["--out_dim", "1048576", "--head_bottleneck_dim", "65536"][..], None),
        (&["--embed_dim", "65536", "--num_heads", "1024", "--depth", "256"], None),
        // 100 images, a million epochs of one-image batches: 10^8 iterations of schedules, under
        // a 4 GB address-space limit.
        (&["--epochs", "1000000", "--batch_size_per_gpu", "1"], Some(4u64 << 30)),
    ] {
        let mut cmd = dino(d.path());
        cmd.args(base).args(extra);
        if let Some(limit) = limit {
            common::with_rlimit(&mut cmd, libc::RLIMIT_AS, limit);
        }
        let (code, said) = bounded(&mut cmd, Duration::from_secs(60));
        assert_eq!(code, Some(1), "{extra:?}: {said}");
        assert!(said.contains("this plan needs at least") && said.contains("parameters per network"), "{extra:?}: {said}");
    }
    assert!(!d.path().join("runs/never").exists(), "a refused plan leaves no directory");
}
