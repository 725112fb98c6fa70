//! Test helper: the Python of the PyTorch venv that `scripts/setup-libtorch.sh` installs, to write
//! fixtures with the real torch and to check our files with the real readers (torch, numpy,
//! tensorboard). Tests that need a module the machine lacks print why and skip.
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let cache =
        std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(cache) = cache {
        out.push(cache.join("dino-tui/torch-2.11.0/bin/python"));
    }
    // LIBTORCH is VENV/lib/pythonX.Y/site-packages/torch.
    if let Some(lib) = std::env::var_os("LIBTORCH") {
        if let Some(venv) = Path::new(&lib).ancestors().nth(4) {
            out.push(venv.join("bin/python"));
        }
    }
    out
}

/// A Python that can `import module`, or `None` after saying why the test skips.
pub fn python_with(module: &str) -> Option<PathBuf> {
    let found = candidates()
        .into_iter()
        .find(|py| py.exists() && Command::new(py).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success()));
    if found.is_none() {
        let why = format!("no Python with `{module}` (looked at {:?})", candidates());
        // Under CI a missing venv fails the test: CI must not pass by running nothing.
        let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        assert!(!ci, "prerequisite missing under CI=true: {why}");
        eprintln!("skipping the Python side of this test: {why}");
    }
    found
}

/// Runs `script` with `args` as `sys.argv[1:]` and returns its stdout; panics with its stderr.
pub fn run(py: &Path, script: &str, args: &[&OsStr]) -> String {
    let out = Command::new(py).arg("-c").arg(script).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed:\n{script}\n--- stderr ---\n{stderr}");
    String::from_utf8(out.stdout).unwrap()
}
