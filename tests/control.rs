//! Runs that outlive their terminal: a headless trainer serves `RUN_DIR/control.sock`, `dino ctl`
//! steers it, `dino runs` lists it, and bad clients (garbage, oversized lines, killed mid-message)
//! never disturb training. Each test drives the real binary.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// Trainers are separate processes, but the machine's cores are few: one at a time keeps
/// iteration times, and so the timeouts below, sane.
static ONE_TRAINER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_TRAINER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    run: PathBuf,
    config: PathBuf,
}

/// Demo data and a tiny config with far more iterations than any test waits for.
fn setup() -> Env {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().to_path_buf();
    let data = root.join("data");
    common::demo_data(&data, 16); // 80 images: 10 iterations per epoch
    let run = root.join("runs").join("ctl-run");
    let mut c = common::tiny_config(&data, &run);
    c.optim.epochs = 5000;
    c.run.saveckp_freq = 0;
    let config = root.join("tiny.toml");
    std::fs::write(&config, c.to_toml()).expect("config");
    Env { _tmp: tmp, root, run, config }
}

fn dino(env: &Env) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dino"));
    // The run index and log go into the test's folder, not the user's home.
    c.env("XDG_DATA_HOME", env.root.join("xdg-data")).env("XDG_STATE_HOME", env.root.join("xdg-state")).current_dir(&env.root);
    c
}

/// Killed when the test lets go of it, failed assertions included.
fn start_trainer(env: &Env) -> common::KillOnDrop {
    common::spawn_guarded(
        dino(env)
            .args(["train", "--headless", "--config"])
            .arg(&env.config)
            .stdout(std::fs::File::create(env.root.join("trainer.out")).expect("out"))
            .stderr(std::fs::File::create(env.root.join("trainer.err")).expect("err")),
    )
}

fn ctl(env: &Env, args: &[&str]) -> Output {
    dino(env).arg("ctl").arg(&env.run).args(args).output().expect("dino ctl")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn event_types(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["type"].as_str().map(String::from))
        .collect()
}

fn socket(env: &Env) -> PathBuf {
    env.run.join("control.sock")
}

/// Waits until the trainer serves and has reported `n` iterations.
fn wait_serving(env: &Env, child: &mut Child, n: usize) {
    wait_for("the trainer to serve and train", Duration::from_secs(180), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("trainer exited early ({status}): {}", std::fs::read_to_string(env.root.join("trainer.err")).unwrap_or_default());
        }
        UnixStream::connect(socket(env)).is_ok() && metrics(&env.run).len() >= n
    });
}

/// A raw client: reads JSON lines with a timeout.
struct Raw {
    s: UnixStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(env: &Env) -> Raw {
        let s = UnixStream::connect(socket(env)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        Raw { s, buf: vec![] }
    }

    /// The next line satisfying `f`, or None when the connection closed; panics after 60 s.
    fn until(&mut self, mut f: impl FnMut(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        let t0 = Instant::now();
        let mut seen: Vec<String> = Vec::new();
        loop {
            while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let v: serde_json::Value = serde_json::from_slice(&line).expect("server lines are JSON");
                if f(&v) {
                    return Some(v);
                }
                if v["event"] != "metrics" {
                    seen.push(v.to_string());
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no matching line from the server; last lines: {:?}",
                &seen[seen.len().saturating_sub(4)..]
            );
            let mut chunk = [0u8; 8192];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }

    fn error(&mut self) -> Option<String> {
        self.until(|v| v["event"] == "error").map(|v| v["message"].as_str().unwrap_or_default().to_string())
    }
}

#[test]
fn ctl_steers_a_headless_run_and_every_command_is_recorded() {
    let _serial = serial();
    let env = setup();
    // A crashed run's leftover: a socket file nobody listens on.
    std::fs::create_dir_all(&env.run).expect("run dir");
    drop(UnixListener::bind(socket(&env)).expect("stale socket"));
    assert!(UnixStream::connect(socket(&env)).is_err(), "the stale socket refuses connections");

    let mut trainer = start_trainer(&env);
    wait_serving(&env, &mut trainer, 2);
    let mode = std::fs::metadata(socket(&env)).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket must be owner-only");

    // A watching client, present through all the commands, killed at the end.
    let mut watcher = Raw::connect(&env);
    assert!(watcher.until(|v| v["event"] == "hello").is_some());

    let o = ctl(&env, &["pause"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("\"paused\""), "{}", text(&o));
    let o = ctl(&env, &["status"]);
    assert!(o.status.success(), "{}", text(&o));
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status is JSON");
    assert_eq!((status["live"].as_bool(), status["state"].as_str()), (Some(true), Some("paused")), "{status}");
    assert!(status["schedules"]["lr"].as_f64().is_some(), "{status}");
    let paused_at = status["iter"].as_u64().expect("iter") as usize;
    let o = dino(&env).args(["runs", "runs"]).output().expect("runs");
    assert!(text(&o).contains("ctl-run") && text(&o).contains("live (paused)"), "{}", text(&o));

    let o = ctl(&env, &["resume"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = ctl(&env, &["checkpoint"]);
    assert!(o.status.success() && text(&o).contains("checkpoint_saved"), "{}", text(&o));
    let o = ctl(&env, &["set", "lr=0.00123", "--timeout", "60"]);
    assert!(o.status.success(), "{}", text(&o));
    let ack: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).expect("ack JSON");
    let from_iter = ack["edit"]["from_iter"].as_u64().expect("from_iter") as usize;
    assert!(from_iter >= paused_at);

    // The watcher saw everything, then dies in the middle of a message.
    for kind in ["state", "checkpoint_saved", "schedule_edited"] {
        assert!(watcher.until(|v| v["event"] == kind).is_some(), "watcher missed {kind}");
    }
    watcher.s.write_all(br#"{"cmd":"pa"#).expect("half a command");
    drop(watcher);

    // Training continued, with the new learning rate from the edit's iteration on.
    wait_for("iterations after the edit", Duration::from_secs(120), || {
        metrics(&env.run).iter().any(|m| m["iter"].as_u64() >= Some(from_iter as u64 + 3))
    });
    for m in metrics(&env.run) {
        let (i, lr) = (m["iter"].as_u64().expect("iter") as usize, m["lr"].as_f64().expect("lr"));
        if i >= from_iter {
            assert_eq!(lr, 0.00123, "iteration {i}");
        }
    }
    let o = ctl(&env, &["stop"]);
    assert!(o.status.success(), "{}", text(&o));
    let status = trainer.wait().expect("trainer exit");
    assert!(status.success(), "{}", std::fs::read_to_string(env.root.join("trainer.err")).unwrap_or_default());
    assert!(!socket(&env).exists(), "a finished trainer removes its socket");

    let types = event_types(&env.run);
    for t in ["start", "pause", "resume", "checkpoint", "schedule_edit", "stop"] {
        assert!(types.iter().any(|x| x == t), "events.jsonl lacks {t}: {types:?}");
    }
    let log = std::fs::read_to_string(env.run.join("events.jsonl")).expect("events");
    assert!(log.contains(r#""state":"stopped""#), "{log}");

    // Not live any more: exit code 3 and the status from the files.
    let o = ctl(&env, &["pause"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("no trainer is serving") && text(&o).contains("stopped"), "{}", text(&o));
    let o = dino(&env).args(["runs", "runs"]).output().expect("runs");
    let t = text(&o);
    let row = t.lines().find(|l| l.contains("ctl-run")).unwrap_or_default();
    assert!(row.contains("stopped") && row.contains("/5000"), "{t}");
}

#[test]
fn bad_clients_are_answered_and_dropped_while_training_goes_on() {
    let _serial = serial();
    let env = setup();
    let mut trainer = start_trainer(&env);
    wait_serving(&env, &mut trainer, 1);

    // A second trainer on the same run directory refuses, naming the lock and the way to attach.
    let o = dino(&env).args(["train", "--headless", "--config"]).arg(&env.config).output().expect("second trainer");
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("in use by another trainer") && t.contains("trainer.lock") && t.contains("dino attach"), "{t}");

    // Garbage of every kind gets an error line; the connection stays usable.
    let mut c = Raw::connect(&env);
    c.s.write_all(b"\xff\xfe\x00garbage\n").expect("write");
    assert!(c.error().expect("reply").contains("not JSON"));
    c.s.write_all(b"[1,2,3]\n").expect("write");
    assert!(c.error().expect("reply").contains("\"cmd\""));
    c.s.write_all(b"{\"cmd\":\"dance\"}\n").expect("write");
    assert!(c.error().expect("reply").contains("unknown command"));
    c.s.write_all(b"{\"cmd\":\"status\"}\n").expect("write");
    assert!(c.until(|v| v["event"] == "state").is_some(), "a good command after garbage still works");
    // A client that keeps sending garbage is dropped.
    for _ in 0..8 {
        let _ = c.s.write_all(b"nope\n");
    }
    assert!(c.until(|v| v["message"].as_str().is_some_and(|m| m.contains("closing the connection"))).is_some());
    assert!(c.until(|_| false).is_none(), "the server closed the connection");

    // An oversized line: error reply, then closed.
    let mut big = Raw::connect(&env);
    let _ = big.s.write_all(&vec![b'x'; 70 * 1024]);
    let msg = big.error().expect("reply to an oversized line");
    assert!(msg.contains("longer than"), "{msg}");
    assert!(big.until(|_| false).is_none());

    // Killed mid-message, several times over.
    for _ in 0..3 {
        let mut half = UnixStream::connect(socket(&env)).expect("connect");
        half.write_all(br#"{"cmd":"checkp"#).expect("half");
    }

    // Edits by file: a bad file is reported with its line and changes nothing; a good one applies.
    let edits = env.run.join("schedule-edits.toml");
    let mut watch = Raw::connect(&env);
    // The hello proves the server has subscribed this client; connect() alone only queues it.
    assert!(watch.until(|v| v["event"] == "hello").is_some());
    std::fs::write(&edits, "[[edit]]\nschedule = \"lr\"\nkind = \"constant\"\nvalue = \"fast\"\n").expect("bad edits");
    let msg = watch.error().expect("error event for a bad file");
    assert!(msg.contains("schedule-edits.toml line") && msg.contains("no edit applied"), "{msg}");
    std::fs::write(&edits, "[[edit]]\nschedule = \"teacher_temp\"\nkind = \"constant\"\nvalue = 0.05\n").expect("good edits");
    let ack = watch.until(|v| v["event"] == "schedule_edited").expect("the file's edit applied");
    assert_eq!(ack["edit"]["schedule"], "teacher_temp");
    let from = ack["edit"]["from_iter"].as_u64().expect("from_iter");

    // Through all of that, training went on.
    let before = metrics(&env.run).len();
    wait_for("more iterations", Duration::from_secs(120), || metrics(&env.run).len() >= before + 3);
    assert!(metrics(&env.run).iter().filter(|m| m["iter"].as_u64() >= Some(from)).all(|m| m["teacher_temp"] == 0.05));
    let o = ctl(&env, &["stop", "--no-checkpoint"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(trainer.wait().expect("exit").success());
    let types = event_types(&env.run);
    assert!(types.iter().any(|t| t == "schedule_file_error") && types.iter().any(|t| t == "schedule_file_edit"), "{types:?}");
}

#[test]
fn ctl_and_runs_without_a_trainer() {
    let env = setup();
    let o = ctl(&env, &["status"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("no trainer is serving"), "{}", text(&o));
    let o = ctl(&env, &["fly"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = ctl(&env, &["set", "lr=abc"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A finished run, written by hand as a trainer would.
    let done = env.root.join("runs").join("old-run");
    std::fs::create_dir_all(&done).expect("dir");
    std::fs::write(
        done.join("events.jsonl"),
        concat!(
            r#"{"type":"start","time":1,"run_dir":"x","name":"old-run","arch":"vit_tiny","device":"Cpu","epochs":2,"niter_per_ep":5,"batch_size":8,"out_dim":32,"num_images":40,"start_iter":0}"#,
            "\n",
            r#"{"type":"stop","state":"finished","iter":10,"time":2}"#,
            "\n"
        ),
    )
    .expect("events");
    std::fs::write(done.join("metrics.jsonl"), r#"{"iter":9,"epoch":1,"loss":2.5,"lr":0.1,"wd":0.04,"teacher_temp":0.04,"momentum":0.99,"iter_time":0.1,"data_time":0.0,"images_per_s":80,"teacher_entropy":3,"kl":0.1,"time":2}"#.to_string() + "\n").expect("metrics");
    let o = dino(&env).args(["runs"]).output().expect("runs");
    let t = text(&o);
    let row = t.lines().find(|l| l.contains("old-run")).unwrap_or_default();
    // Epochs counted from 0 as everywhere (docs/tui.md, "Numbers"): the last iteration was in
    // epoch 1 of epochs 0-1.
    assert!(row.contains("finished") && row.contains("1/2") && row.contains("2.5000"), "{t}");
}

#[test]
fn out_of_range_schedule_edits_are_refused_by_every_front_end_and_never_checkpointed() {
    let _serial = serial();
    let env = setup();
    let mut trainer = start_trainer(&env);
    wait_serving(&env, &mut trainer, 1);

    // The CLI: refused with the reason, exit 1, before the trainer is bothered.
    for (set, needle) in [("teacher_temp=0", "(0, 1]"), ("momentum=2", "[0, 1]"), ("lr=-1", ">= 0"), ("wd=-5", ">= 0")] {
        let o = ctl(&env, &["set", set]);
        assert_eq!(o.status.code(), Some(1), "{set}: {}", text(&o));
        assert!(text(&o).contains("schedule edit refused") && text(&o).contains(needle), "{set}: {}", text(&o));
    }
    // The socket (the TUI's protocol): the value, then the curve the edit would make (momentum
    // rises to 1, so scaling it by 1.05 leaves [0, 1] later on).
    let mut c = Raw::connect(&env);
    assert!(c.until(|v| v["event"] == "hello").is_some());
    for (line, needle) in [
        (r#"{"cmd":"edit_schedule","schedule":"lr","from_iter":0,"kind":"constant","value":-1}"#, ">= 0"),
        (r#"{"cmd":"edit_schedule","schedule":"teacher_temp","from_iter":0,"kind":"constant","value":-1}"#, "(0, 1]"),
        (r#"{"cmd":"edit_schedule","schedule":"wd","from_iter":0,"kind":"constant","value":-5}"#, ">= 0"),
        (r#"{"cmd":"edit_schedule","schedule":"momentum","from_iter":0,"kind":"scale","value":1.05}"#, "at iteration"),
    ] {
        c.s.write_all(format!("{line}\n").as_bytes()).expect("write");
        let msg = c.error().expect("a refusal");
        assert!(msg.starts_with("schedule edit refused") && msg.contains(needle), "{line}: {msg}");
    }
    // The file: refused with its line, nothing applied.
    std::fs::write(env.run.join("schedule-edits.toml"), "[[edit]]\nschedule = \"momentum\"\nkind = \"constant\"\nvalue = 3\n")
        .expect("edits");
    let msg = c.error().expect("the file's error");
    assert!(msg.contains("schedule-edits.toml line 1") && msg.contains("[0, 1]"), "{msg}");
    // A good edit still applies.
    let o = ctl(&env, &["set", "teacher_temp=0.05"]);
    assert!(o.status.success(), "{}", text(&o));

    let o = ctl(&env, &["stop"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(trainer.wait().expect("exit").success());
    let refused = event_types(&env.run).iter().filter(|t| *t == "schedule_edit_refused").count();
    assert_eq!(refused, 4, "each socket refusal in events.jsonl");
    let meta = dino_tui::run::checkpoint::read_meta(&env.run.join("checkpoints/checkpoint-latest.json")).expect("checkpoint");
    let edits: usize = meta.schedules.iter().map(|(_, s)| s.edit_count).sum();
    assert_eq!(edits, 1, "only the good edit is checkpointed: {:?}", meta.schedules);
    assert!(metrics(&env.run).iter().all(|m| m["lr"].as_f64() >= Some(0.0) && m["momentum"].as_f64() <= Some(1.0)));
}

#[test]
fn idle_and_stalled_clients_never_lock_dino_ctl_out() {
    let _serial = serial();
    let env = setup();
    let mut trainer = start_trainer(&env);
    wait_serving(&env, &mut trainer, 1);

    // More idle connections than there are slots, none of them saying anything.
    let idle: Vec<UnixStream> = (0..80).map(|_| UnixStream::connect(socket(&env)).expect("connect")).collect();
    std::thread::sleep(Duration::from_secs(3));
    let o = ctl(&env, &["status"]);
    assert!(o.status.success(), "dino ctl status with {} idle clients: {}", idle.len(), text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"live\":true"), "{}", text(&o));

    // Every slot busy (each client talking): ctl says busy, with its own exit code.
    drop(idle);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let talkers: Vec<UnixStream> = (0..64).map(|_| UnixStream::connect(socket(&env)).expect("connect")).collect();
    let s = stop.clone();
    let chatter = std::thread::spawn(move || {
        while !s.load(std::sync::atomic::Ordering::SeqCst) {
            for mut t in &talkers {
                let _ = t.write_all(b"\n");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let o = ctl(&env, &["status"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("busy"), "{}", text(&o));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    chatter.join().expect("chatter");
    std::thread::sleep(Duration::from_secs(3));
    let o = ctl(&env, &["status"]);
    assert!(o.status.success(), "once they fall silent, ctl gets through: {}", text(&o));

    // A client stalled in the middle of a message is dropped after the read deadline (with a
    // free slot: with none, it would be the first to give its slot up).
    let mut stalled = Raw::connect(&env);
    stalled.s.write_all(br#"{"cmd":"sta"#).expect("half a message");
    let stalled_at = Instant::now();
    let msg = stalled.error().expect("the stalled client is told");
    assert!(msg.contains("unfinished"), "{msg}");
    assert!(stalled.until(|_| false).is_none(), "and closed");
    assert!(stalled_at.elapsed() >= Duration::from_secs(9), "{:?}", stalled_at.elapsed());
    let o = ctl(&env, &["stop", "--no-checkpoint"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(trainer.wait().expect("exit").success());
}

/// A trainer stopped by SIGSTOP holds the run's lock and its socket accepts connections (the
/// kernel does), but nothing answers: `dino ctl` says so with exit 4 within its timeout, for
/// `status` as for `pause`, instead of reporting a live run "starting" or a refusal.
#[test]
fn a_trainer_that_does_not_answer_is_reported_as_such() {
    let _serial = serial();
    let env = setup();
    let mut trainer = start_trainer(&env);
    wait_serving(&env, &mut trainer, 1);
    let pid = trainer.id() as libc::pid_t;
    // SAFETY: signals to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    for args in [&["status", "--timeout", "3"][..], &["pause", "--timeout", "3"]] {
        let t0 = Instant::now();
        let o = ctl(&env, args);
        assert_eq!(o.status.code(), Some(4), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("did not answer within 3 s"), "{args:?}: {}", text(&o));
        assert!(t0.elapsed() < Duration::from_secs(30), "{args:?} took {:?}", t0.elapsed());
    }
    // Absurd durations are usage errors that name the flag, not panics.
    for bad in ["1e19", "inf", "-3", "nan"] {
        let o = ctl(&env, &["pause", "--timeout", bad]);
        assert_eq!(o.status.code(), Some(2), "--timeout {bad}: {}", text(&o));
        assert!(text(&o).contains("--timeout"), "{}", text(&o));
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let o = ctl(&env, &["status"]);
    assert!(o.status.success() && text(&o).contains("\"live\":true"), "answers again once continued: {}", text(&o));
    let o = ctl(&env, &["stop", "--no-checkpoint"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(trainer.wait().expect("exit").success());
}

/// `schedule-edits.toml` with 10,000 entries of every kind: a few of the same from each
/// iteration, as a script steering a run over and over would write.
fn many_edits(n: usize) -> String {
    let kinds = [
        ("lr", "constant", "1e-4"),
        ("lr", "scale", "0.5"),
        ("lr", "peak", "1e-3"),
        ("wd", "final", "0.4"),
        ("wd", "constant", "0.04"),
        ("teacher_temp", "constant", "0.05"),
        ("momentum", "constant", "0.996"),
        ("lr", "final", "1e-6"),
    ];
    let mut text = String::new();
    for i in 0..n {
        let (schedule, kind, value) = kinds[i % kinds.len()];
        text +=
            &format!("[[edit]]\nschedule = \"{schedule}\"\nkind = \"{kind}\"\nvalue = {value}\nfrom_iter = {}\n", 1000 + (i * 7 % 20) * 50);
    }
    text
}

/// 10,000 schedule edits (through the file and the socket) are applied in seconds while
/// training goes on, the state a new client gets stays well within the line limit clients
/// accept, and `dino ctl` still pauses, resumes and stops the run. Before edits were folded,
/// 1,500 edits made that state 91,540 bytes (over the limit: every `dino ctl` failed) and 5,000
/// took 110 s to apply.
#[test]
fn ten_thousand_schedule_edits_leave_the_socket_usable() {
    let _serial = serial();
    let env = setup();
    let mut trainer = start_trainer(&env);
    wait_serving(&env, &mut trainer, 1);
    let mut watcher = Raw::connect(&env);
    let t0 = Instant::now();
    let iter0 = metrics(&env.run).len();
    std::fs::write(env.run.join("schedule-edits.toml"), many_edits(9_000)).expect("edits file");
    let mut socket = Raw::connect(&env);
    for i in 0..1_000 {
        let edit =
            format!("{{\"cmd\":\"edit_schedule\",\"schedule\":\"wd\",\"from_iter\":{},\"kind\":\"scale\",\"value\":1.01}}\n", 900 + i % 10);
        socket.s.write_all(edit.as_bytes()).expect("send edit");
    }
    // Closing after the last line: the server still reads every line sent before.
    drop(socket);
    // Applied, or refused with a reason: either way answered, each of them.
    let mut answered = 0;
    watcher.until(|v| {
        let refused = v["event"] == "error" && v["message"].as_str().unwrap_or_default().starts_with("schedule edit refused");
        answered += usize::from(v["event"] == "schedule_edited" || refused);
        answered == 10_000
    });
    let took = t0.elapsed();
    let trained = metrics(&env.run).len() - iter0;
    eprintln!("10,000 edits applied in {:.2} s; {trained} iterations trained meanwhile", took.as_secs_f64());
    // What a new client gets first, the schedules among it.
    let mut fresh = Raw::connect(&env);
    let mut longest = 0;
    fresh.until(|v| {
        longest = longest.max(v.to_string().len());
        v["event"] == "state"
    });
    assert!(longest < 48 * 1024, "a {longest}-byte line");
    for (cmd, state) in [("pause", "paused"), ("resume", "running")] {
        let o = ctl(&env, &[cmd]);
        assert!(o.status.success() && text(&o).contains(state), "{cmd}: {}", text(&o));
    }
    let o = ctl(&env, &["stop"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(trainer.wait().expect("exit").success());
    // Every edit stays in the run's history.
    let kept = event_types(&env.run).iter().filter(|t| matches!(t.as_str(), "schedule_edit" | "schedule_edit_refused")).count();
    assert_eq!(kept, 10_000);
}

/// "Leave training running" with a `dino ctl stop` arriving as the run changes hands: the stop
/// wins. Made deterministic by letting the stop reach the interactive trainer (and be
/// acknowledged) before the hand-over looks: the hand-over then starts no background trainer. A
/// background trainer started anyway (the stop recorded after the hand-over looked) stops at
/// once, and a recorded stop does not hold a later, ordinary start.
#[test]
fn a_stop_during_a_hand_over_wins() {
    use dino_tui::cmd::interactive::{hand_over, Outcome};
    use dino_tui::protocol::RunState;
    let _serial = serial();
    let env = setup();
    // The in-process trainer records its run in the index under these, as the binary's do.
    std::env::set_var("XDG_DATA_HOME", env.root.join("xdg-data"));
    std::env::set_var("XDG_STATE_HOME", env.root.join("xdg-state"));
    let config = dino_tui::config::TrainConfig::from_toml_file(&env.config).expect("config");
    let handle = dino_tui::cmd::serve::spawn(config, dino_tui::train::trainer::OnNonFinite::Pause).expect("trainer");
    wait_for("the in-process trainer to train", Duration::from_secs(180), || {
        UnixStream::connect(socket(&env)).is_ok() && !metrics(&env.run).is_empty()
    });
    let o = ctl(&env, &["stop", "--no-checkpoint"]);
    assert!(o.status.success(), "the stop is acknowledged: {}", text(&o));
    let outcome = hand_over(handle, &env.run).expect("hand-over");
    assert!(matches!(outcome, Outcome::Ended(RunState::Stopped)), "{outcome:?}");
    let types = event_types(&env.run);
    assert!(types.contains(&"handover_cancelled".to_string()) && !types.contains(&"handover".to_string()), "{types:?}");
    assert_eq!(dino_tui::run::lock::holder(&env.run), None, "no trainer left");

    // A hand-over that found no stop, then `dino ctl stop` before its background trainer serves:
    // recorded, and that trainer stops on start.
    dino_tui::run::dir::append_event(&env.run, "handover", &serde_json::json!({ "iter": 1 })).expect("handover");
    let o = ctl(&env, &["stop"]);
    assert!(o.status.success() && text(&o).contains("recorded"), "{}", text(&o));
    let trained = metrics(&env.run).len();
    let o = dino(&env).env("DINO_HANDOVER", "1").args(["train", "--headless", "--config"]).arg(&env.config).output().expect("dino train");
    assert!(o.status.success() && text(&o).contains("stays stopped"), "{}", text(&o));
    assert_eq!(metrics(&env.run).len(), trained, "it did not train");
    assert_eq!(event_types(&env.run).last().map(String::as_str), Some("stop"));
    assert_eq!(dino_tui::run::runs::status(&env.run).label(), "stopped");

    // A stop recorded for an earlier trainer does not stop an ordinary start.
    dino_tui::run::dir::record_stop_request(&env.run).expect("record");
    let mut trainer = start_trainer(&env);
    wait_serving(&env, &mut trainer, 1);
    let o = ctl(&env, &["status"]);
    assert!(o.status.success() && text(&o).contains("\"state\":\"running\""), "{}", text(&o));
    let o = ctl(&env, &["stop", "--no-checkpoint"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(trainer.wait().expect("exit").success());
}
