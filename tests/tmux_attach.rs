//! The whole story in a real terminal: `dino tui` in a tmux pane, "leave running" on `q`, then
//! `dino attach` in another window shows the run's history and follows it live. Skipped (with a
//! message) where tmux is not installed; CI installs it.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn tmux_available() -> bool {
    Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success())
}

/// A private tmux server (its own socket name), killed with everything in it when dropped, along
/// with the detached trainer the test leaves behind.
struct Session {
    server: String,
    dino: PathBuf,
    run: PathBuf,
    env: Vec<(String, PathBuf)>,
}

impl Session {
    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux").arg("-L").arg(&self.server).arg("-f").arg("/dev/null").args(args).output().expect("tmux runs")
    }

    /// A shell command running `dino ARGS` with the test's private directories; the pane stays
    /// open after it exits so its last screen can be read.
    fn dino_cmd(&self, args: &str) -> String {
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={}", v.display())).collect();
        format!("env {} {} {args}; echo DINO-EXITED; sleep 600", env.join(" "), self.dino.display())
    }

    fn capture(&self, target: &str) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", target]).stdout).into_owned()
    }

    fn wait_screen(&self, target: &str, what: &str, timeout: Duration, f: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.capture(target);
            if f(&s) {
                return s;
            }
            assert!(t0.elapsed() < timeout, "timed out waiting for {what}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new(&self.dino).arg("ctl").arg(&self.run).args(["stop", "--no-checkpoint", "--timeout", "20"]).output();
        let _ = self.tmux(&["kill-server"]);
        // A detached trainer that did not answer the stop must not outlive the test.
        if let Some(pid) = std::fs::read_to_string(self.run.join("trainer.lock")).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
            // SAFETY: kill with a pid read from the run's lock file; at worst the process is gone.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric_count(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).map(|t| t.lines().count()).unwrap_or(0)
}

/// "it 123/50000" on the dashboard's progress line.
fn shown_iteration(screen: &str) -> Option<usize> {
    let at = screen.find("it ")?;
    screen[at + 3..].split('/').next()?.trim().parse().ok()
}

#[test]
fn leave_running_then_attach_shows_history_and_live_updates() {
    if !common::prerequisite(tmux_available(), "tmux is not installed (make test installs it where it can)") {
        return;
    }
    let d = tempfile::tempdir().expect("tmp");
    let root = d.path();
    let data = root.join("data");
    common::demo_data(&data, 16); // 10 iterations per epoch
    let run = root.join("tmux-run");
    let mut c = common::tiny_config(&data, &run);
    c.optim.epochs = 5000;
    c.run.saveckp_freq = 0;
    let config = root.join("tiny.toml");
    std::fs::write(&config, c.to_toml()).expect("config");
    let s = Session {
        server: format!("dino-test-{}", std::process::id()),
        dino: PathBuf::from(env!("CARGO_BIN_EXE_dino")),
        run: run.clone(),
        env: ["XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"].iter().map(|k| (k.to_string(), root.join(k.to_lowercase()))).collect(),
    };
    let tui = s.dino_cmd(&format!("tui --config {}", config.display()));
    let o = s.tmux(&["new-session", "-d", "-s", "dino", "-x", "120", "-y", "40", &tui]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    s.wait_screen("dino:0", "the TUI training", Duration::from_secs(120), |t| shown_iteration(t).is_some_and(|i| i >= 15));
    s.tmux(&["send-keys", "-t", "dino:0", "q"]);
    s.wait_screen("dino:0", "the quit dialog", Duration::from_secs(20), |t| t.contains("leave training running"));
    s.tmux(&["send-keys", "-t", "dino:0", "l"]);
    let screen = s.wait_screen("dino:0", "the hand-over", Duration::from_secs(60), |t| t.contains("DINO-EXITED"));
    assert!(screen.contains("training continues in the background"), "{screen}");
    let handed_over_at = metric_count(&run);
    let t0 = Instant::now();
    while !(std::os::unix::net::UnixStream::connect(run.join("control.sock")).is_ok() && metric_count(&run) > handed_over_at + 5) {
        if t0.elapsed() > Duration::from_secs(120) {
            let log = std::fs::read_to_string(run.join("detached.log")).unwrap_or_default();
            let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap_or_default();
            panic!("the detached trainer did not serve; metrics {} (handed over at {handed_over_at})\ndetached.log:\n{log}\nevents:\n{events}\nscreen:\n{screen}", metric_count(&run));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let attach = s.dino_cmd(&format!("attach {}", run.display()));
    s.tmux(&["new-window", "-t", "dino", &attach]);
    let first = s.wait_screen("dino:1", "the attached dashboard", Duration::from_secs(60), |t| {
        shown_iteration(t).is_some_and(|i| i > handed_over_at) && t.contains("loss")
    });
    let first_iter = shown_iteration(&first).unwrap_or(0);
    // The loss chart spans the whole history, from iteration 0, not just the detached session.
    assert!(
        first.lines().any(|l| l.trim_start_matches(['│', ' ']).starts_with("0 ")),
        "loss chart does not start at iteration 0:\n{first}"
    );
    // Live: the iteration shown keeps moving.
    s.wait_screen("dino:1", "live updates", Duration::from_secs(60), |t| shown_iteration(t).is_some_and(|i| i > first_iter + 5));
    // History: the Log tab holds both sessions' starts and the first session's first checkpoint.
    s.tmux(&["send-keys", "-t", "dino:1", "6"]);
    let log = s.wait_screen("dino:1", "the log tab", Duration::from_secs(20), |t| t.contains("started"));
    assert!(log.contains("run tmux-run started"), "{log}");
    assert!(log.contains("handed over at iteration"), "the stop and restart read as the hand-over they are:\n{log}");
    // Quitting an attached TUI leaves training running.
    s.tmux(&["send-keys", "-t", "dino:1", "q"]);
    s.wait_screen("dino:1", "the quit dialog", Duration::from_secs(20), |t| t.contains("leave training running"));
    s.tmux(&["send-keys", "-t", "dino:1", "l"]);
    let after = s.wait_screen("dino:1", "attach to exit", Duration::from_secs(20), |t| t.contains("DINO-EXITED"));
    assert!(after.contains("training goes on"), "{after}");
    let n = metric_count(&run);
    wait_for("training to continue after detaching", Duration::from_secs(60), || metric_count(&run) > n + 3);
}
