//! Shared helpers for the end-to-end tests: a tiny real model on generated images.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

pub mod tmux;

/// Whether a test's prerequisite (tmux, the shared data, the parity files, the PyTorch venv, a
/// backend) is there. When it is not, the test says so and skips, except under `CI=true`, where
/// a missing prerequisite fails the run with the reason: CI must not pass by running nothing.
/// Call as `if !common::prerequisite(ok, "why") { return; }`.
pub fn prerequisite(present: bool, what_is_missing: &str) -> bool {
    if present {
        return true;
    }
    assert!(!under_ci(), "prerequisite missing under CI=true: {what_is_missing}");
    eprintln!("SKIPPED: {what_is_missing}");
    false
}

/// `CI=true` (or `1`), as CI runners set it.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A folder of `../shared` (the data and parity files beside the repository).
pub fn shared(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(rel)
}

use dino_tui::config::TrainConfig;
use std::path::Path;

/// Writes the synthetic demo set (5 classes x `per_class`, as many again unlabeled in pretext/).
pub fn demo_data(dir: &Path, per_class: usize) {
    dino_tui::data::write_demo_dataset(dir, per_class, 7, 24).expect("demo data");
}

/// A ViT small enough that an iteration takes milliseconds on a CPU.
pub fn tiny_config(data: &Path, out: &Path) -> TrainConfig {
    {
        let mut c = TrainConfig::default();
        c.model.arch = dino_tui::config::Arch::VitTiny;
        c.model.patch_size = 4;
        c.model.embed_dim = Some(24);
        c.model.depth = Some(1);
        c.model.num_heads = Some(2);
        c.model.out_dim = 32;
        c.model.head_hidden_dim = 32;
        c.model.head_bottleneck_dim = 16;
        c.crops.global_crop_size = 16;
        c.crops.local_crop_size = 8;
        c.crops.local_crops_number = 2;
        c.optim.batch_size_per_gpu = 8;
        c.optim.epochs = 3;
        c.optim.warmup_epochs = 1;
        c.model.drop_path_rate = 0.0;
        c.optim.use_fp16 = false;
        c.run.num_workers = 1;
        c.run.saveckp_freq = 1;
        c.run.data_path = data.to_path_buf();
        c.run.output_dir = Some(out.to_path_buf());
        c.run.device = "cpu".into();
        c.run.print_freq = 1;
        c
    }
}

/// The Python of the PyTorch venv `scripts/setup-libtorch.sh` installs (the tests write fixtures
/// with the real torch and check our files with the real readers), if it can `import` every one
/// of `modules`; otherwise `None`, after saying why the Python side of the test is skipped.
pub fn python_with(modules: &[&str]) -> Option<std::path::PathBuf> {
    let mut candidates = vec![];
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")));
    if let Some(cache) = cache {
        candidates.push(cache.join("dino-tui/torch-2.11.0/bin/python"));
    }
    // LIBTORCH is VENV/lib/pythonX.Y/site-packages/torch.
    if let Some(venv) = std::env::var_os("LIBTORCH").and_then(|l| Path::new(&l).ancestors().nth(4).map(Path::to_path_buf)) {
        candidates.push(venv.join("bin/python"));
    }
    let imports = modules.iter().map(|m| format!("import {m}")).collect::<Vec<_>>().join("; ");
    let found = candidates
        .iter()
        .find(|py| py.exists() && std::process::Command::new(py).args(["-c", &imports]).output().is_ok_and(|o| o.status.success()));
    let what = format!("the Python side of this test: no Python with {modules:?} (looked at {candidates:?})");
    prerequisite(found.is_some(), &what);
    found.cloned()
}

/// Runs a Python script with `args` as `sys.argv[1:]`; its stdout. Fails the test with its stderr.
pub fn run_python(py: &Path, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(py).arg("-c").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "python failed:\n{script}\n--- stderr ---\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs the `dino` binary; its stdout. Fails the test with both streams when it fails.
pub fn dino<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dino")).args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "dino {args:?} failed:\n{stdout}\n--- stderr ---\n{stderr}");
    stdout
}

/// A child process that is killed (and reaped) when the test lets go of it, failed assertions
/// included: a test that panics must not leave a 10,000-epoch trainer running and loading the
/// machine for the tests after it.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` with `SIGKILL` sent to it if the test process dies (a test binary killed by a
/// signal runs no destructors), and kills it when the guard is dropped.
pub fn spawn_guarded(cmd: &mut std::process::Command) -> KillOnDrop {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and changes only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    KillOnDrop(cmd.spawn().expect("spawn"))
}

/// Makes `cmd` start under a resource limit (`ulimit -v` is `RLIMIT_AS` in bytes, `ulimit -f`
/// `RLIMIT_FSIZE` in bytes).
#[allow(dead_code)]
pub fn with_rlimit(cmd: &mut std::process::Command, resource: libc::__rlimit_resource_t, bytes: u64) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
            match libc::setrlimit(resource, &l) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        })
    }
}
