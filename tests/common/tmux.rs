//! The real binary in a real terminal: a private tmux server driven with send-keys and read with
//! capture-pane, as a person would use it.

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A tmux server of this test's own (`tag` tells the tests of one binary apart); None, after
    /// saying so, when tmux is not installed.
    pub fn start(tag: &str) -> Option<Tmux> {
        let installed = Command::new("tmux").arg("-V").output().is_ok();
        if !super::prerequisite(installed, "tmux is not installed (make test installs it where it can)") {
            return None;
        }
        Some(Tmux { socket: format!("dino-test-{tag}-{}", std::process::id()) })
    }

    pub fn cmd(&self, args: &[&str]) -> String {
        let o = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux runs");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "dino"])
    }

    pub fn keys(&self, keys: &str) {
        self.cmd(&["send-keys", "-t", "dino", keys]);
    }

    pub fn wait_for(&self, what: &str, timeout: Duration, f: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            assert!(t0.elapsed() < timeout, "timed out waiting for {what}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").output();
    }
}
