//! The health verdict on real short runs of the demo preset (issue 33): a run made to collapse
//! (teacher temperature 0.2, above the student's 0.1: the teacher's targets flatten) and one made
//! to diverge (lr x 100) are called so after their first epoch, by the headless epoch lines (and,
//! for the collapse that lasts, `dino runs` and `dino ctl status`); neither is judged in its first
//! epoch.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

/// Trains the demo preset headless on `data` into `out` with `flags`; returns stdout and stderr.
fn train(data: &Path, out: &Path, flags: &[&str]) -> (String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dino"));
    cmd.args(["train", "--headless", "--config", "demo", "--eval_knn_every", "0", "--data_path"])
        .arg(data)
        .arg("--output_dir")
        .arg(out)
        .args(flags);
    let o = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(o.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// The verdict of each epoch line (`dino: epoch N done, ...; health: VERDICT: evidence`).
fn epoch_verdicts(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("dino: epoch "))
        .map(|l| l.split("; health: ").nth(1).unwrap_or_else(|| panic!("no verdict in '{l}'")).split(':').next().unwrap().to_string())
        .collect()
}

/// The verdict `dino ctl RUN status` and `dino runs` give of a finished run.
fn offline_verdicts(run: &Path) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dino")).arg("ctl").arg(run).arg("status").output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let table = common::dino(&["runs".as_ref(), run.parent().unwrap().as_os_str()]);
    let name = run.file_name().unwrap().to_str().unwrap();
    let row = table.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} not listed:\n{table}"));
    (status["health"]["verdict"].as_str().unwrap_or_default().to_string(), row.to_string())
}

/// The iterations of the run's alarms, and its iterations per epoch, from `events.jsonl`.
fn alarms(run: &Path) -> (Vec<u64>, u64) {
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = events.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let niter = lines.iter().find(|v| v["type"] == "start").unwrap()["niter_per_ep"].as_u64().unwrap();
    (lines.iter().filter(|v| v["type"] == "alarm").map(|v| v["iter"].as_u64().unwrap()).collect(), niter)
}

/// The first epoch's line says unknown, every later one `want`; an alarm came, after epoch 0.
fn assert_judged(run: &Path, stdout: &str, stderr: &str, want: &str) {
    let verdicts = epoch_verdicts(stdout);
    assert_eq!(verdicts.first().map(String::as_str), Some("unknown"), "nothing judged in the first epoch:\n{stdout}");
    assert!(verdicts[1..].iter().all(|v| v == want), "every later epoch {want}: {verdicts:?}\n{stdout}");
    let (alarms, niter) = alarms(run);
    assert!(!alarms.is_empty() && stderr.contains("ALARM"), "the verdict raised an alarm:\n{stderr}");
    assert!(alarms.iter().all(|&i| i >= niter), "no alarm in the first epoch ({niter} it): {alarms:?}");
}

#[test]
fn a_run_made_to_collapse_and_one_made_to_diverge_are_called_so_after_their_first_epoch() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    // The set `dino demo` trains on.
    dino_tui::data::write_demo_dataset(&data, 60, 0, 48).unwrap();
    let runs = d.path().join("runs");

    let collapsed = runs.join("collapsed");
    let (stdout, stderr) = train(&data, &collapsed, &["--epochs", "3", "--teacher_temp", "0.2", "--warmup_teacher_temp", "0.2"]);
    assert_judged(&collapsed, &stdout, &stderr, "collapsed");
    assert!(stdout.contains("uniform: the teacher's outputs are flat"), "{stdout}");
    let (ctl, row) = offline_verdicts(&collapsed);
    assert_eq!(ctl, "collapsed");
    assert!(row.contains("collapsed"), "{row}");

    // lr x 100 on the recipe the thresholds were measured with (the demo preset before it learned:
    // out_dim 1024, teacher momentum 0.99, no KoLeo): the loss climbs to ln K in epochs 1-2, then
    // the decaying learning rate lets it recover.
    let diverging = runs.join("diverging");
    let old_recipe = ["--out_dim", "1024", "--momentum_teacher", "0.99", "--koleo_loss_weight", "0"];
    let (stdout, stderr) = train(&data, &diverging, &[&["--epochs", "4", "--lr", "0.1"][..], &old_recipe].concat());
    let verdicts = epoch_verdicts(&stdout);
    assert_eq!(verdicts.first().map(String::as_str), Some("unknown"), "{stdout}");
    assert!(verdicts[1..].iter().any(|v| v == "diverging"), "lr x 100: {verdicts:?}\n{stdout}\n{stderr}");
    assert!(!verdicts.iter().any(|v| v == "learning" || v == "collapsed"), "{verdicts:?}");
    let (alarms, niter) = alarms(&diverging);
    assert!(!alarms.is_empty() && alarms.iter().all(|&i| i >= niter), "an alarm, after the first epoch: {alarms:?}");
}
