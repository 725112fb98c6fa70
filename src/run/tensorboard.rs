//! TensorBoard scalars of a run, `RUN_DIR/tb/events.out.tfevents.*`, written as training goes so
//! `tensorboard --logdir runs` shows every run (next to reference runs): each iteration's metrics,
//! the `metrics.jsonl` line with the global iteration as step, and evaluation results with the
//! evaluated weights' iteration as step. Storage only, like the rest of `run`: `RunDir` writes
//! through it, and evaluations run outside the trainer add their own small event file.
//!
//! A resumed run writes a new event file, after the old files lose the iterations at and past the
//! checkpoint it resumes from (the same cut `metrics.jsonl` gets) and the evaluations of weights
//! past it, so every step is in the files once and equals the `metrics.jsonl` line of its
//! iteration.

use crate::interop::tensorboard::{self, EventWriter, TbError};
use crate::protocol::IterMetrics;
use std::path::{Path, PathBuf};

pub const TB_DIR: &str = "tb";

/// The tag prefix of each iteration's metrics and of evaluation results.
const TRAIN: &str = "train";
const EVAL: &str = "eval";

/// The event file a trainer writes.
pub struct TbLog {
    writer: EventWriter,
}

impl TbLog {
    /// A new event file in `RUN_DIR/tb/`.
    pub fn create(run_dir: &Path) -> Result<Self, TbError> {
        Ok(Self { writer: EventWriter::create(run_dir.join(TB_DIR))? })
    }

    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    /// One iteration's scalars (buffered: [`flush`](Self::flush) makes them visible).
    pub fn metrics(&mut self, m: &IterMetrics) -> Result<(), TbError> {
        for (name, v) in metric_scalars(m) {
            self.writer.add_scalar(&format!("{TRAIN}/{name}"), m.iter as i64, v as f32, m.time)?;
        }
        Ok(())
    }

    /// An evaluation's accuracies, written at once (they are rare).
    pub fn eval(&mut self, json: &serde_json::Value) -> Result<(), TbError> {
        let Some((step, scalars)) = eval_scalars(json) else { return Ok(()) };
        let now = tensorboard::wall_time_now();
        for (tag, v) in scalars {
            self.writer.add_scalar(&tag, step, v as f32, now)?;
        }
        self.writer.flush()
    }

    pub fn flush(&mut self) -> Result<(), TbError> {
        self.writer.flush()
    }
}

/// The metrics of an iteration as (name, value), in `metrics.jsonl`'s order; the tags are
/// `train/NAME`. `koleo` only when the run has the term on, as in `metrics.jsonl`.
pub fn metric_scalars(m: &IterMetrics) -> Vec<(&'static str, f64)> {
    let mut out = vec![
        ("loss", m.loss),
        ("lr", m.lr),
        ("wd", m.wd),
        ("teacher_temp", m.teacher_temp),
        ("momentum", m.momentum),
        ("iter_time", m.iter_time),
        ("data_time", m.data_time),
        ("images_per_s", m.images_per_s),
        ("teacher_entropy", m.teacher_entropy),
        ("kl", m.kl),
    ];
    out.extend(m.koleo.map(|v| ("koleo", v)));
    out
}

/// An evaluation record's step (the evaluated weights' iteration) and accuracies:
/// `eval/knn_top1_kK`, `eval/knn_top5_kK` per k, `eval/linear_top1`, `eval/linear_top5`; a
/// checkpoint's student (`"network": "student"`) under `eval_student/`, a curve of its own. `None`
/// when the record has no iteration or no accuracy (outlier scores).
pub fn eval_scalars(json: &serde_json::Value) -> Option<(i64, Vec<(String, f64)>)> {
    let step = json["iter"].as_i64()?;
    // Starts with EVAL too, so `truncate_from` treats it as an evaluation.
    let group = if crate::protocol::is_student_result(json) { "eval_student" } else { EVAL };
    let mut out = vec![];
    if let Some(results) = json["results"].as_array() {
        for r in results {
            let Some(k) = r["k"].as_u64() else { continue };
            for which in ["top1", "top5"] {
                if let Some(v) = r[which].as_f64() {
                    out.push((format!("{group}/knn_{which}_k{k}"), v));
                }
            }
        }
    }
    for (field, name) in [("test_acc1", "linear_top1"), ("test_acc5", "linear_top5")] {
        if let Some(v) = json[field].as_f64() {
            out.push((format!("{group}/{name}"), v));
        }
    }
    (!out.is_empty()).then_some((step, out))
}

/// The event files of a run, oldest name first.
pub fn event_files(run_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(run_dir.join(TB_DIR)) else { return vec![] };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().contains("tfevents") && !n.to_string_lossy().ends_with(".tmp"))
        })
        .collect();
    files.sort();
    files
}

/// Before a run resumes at iteration `iter`: drops from every event file of the run the metrics
/// of iterations `iter` and later (the resumed run writes them again) and the evaluations of
/// weights past `iter` (weights the resumed run recomputes); evaluations of the checkpoint itself
/// and earlier stay.
pub fn truncate_from(run_dir: &Path, iter: usize) -> Result<(), TbError> {
    let iter = iter as i64;
    for f in event_files(run_dir) {
        tensorboard::retain(&f, |tag, step| if tag.starts_with(EVAL) { step <= iter } else { step < iter })?;
    }
    Ok(())
}

/// Records an evaluation run outside the trainer (`dino eval` on a run) in an event file of its
/// own, since the trainer may be appending to its file at the same time.
pub fn append_eval(run_dir: &Path, json: &serde_json::Value) -> Result<(), TbError> {
    if eval_scalars(json).is_none() {
        return Ok(());
    }
    TbLog::create(run_dir)?.eval(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An iteration's metrics, its loss the iteration's number (to tell the steps apart).
    fn metrics_at(iter: usize) -> IterMetrics {
        IterMetrics::sample(iter, iter as f64, 1_700_000_000.0 + iter as f64)
    }

    /// One tag's (step, value) pairs over every event file of the run, in file order.
    fn curve(run_dir: &Path, tag: &str) -> Vec<(i64, f32)> {
        event_files(run_dir)
            .iter()
            .flat_map(|f| tensorboard::read_scalars(f).unwrap())
            .filter(|(t, _, _)| t == tag)
            .map(|(_, s, v)| (s, v))
            .collect()
    }

    #[test]
    fn evaluation_records_become_accuracy_curves() {
        let knn = serde_json::json!({"iter": 40, "results": [{"k": 10, "top1": 40.5, "top5": 90.0}, {"k": 20, "top1": 45.5}]});
        let (step, s) = eval_scalars(&knn).unwrap();
        assert_eq!(step, 40);
        let tags: Vec<&str> = s.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(tags, ["eval/knn_top1_k10", "eval/knn_top5_k10", "eval/knn_top1_k20"]);
        let linear = serde_json::json!({"iter": 7, "test_acc1": 61.25});
        assert_eq!(eval_scalars(&linear), Some((7, vec![("eval/linear_top1".into(), 61.25)])));
        assert_eq!(eval_scalars(&serde_json::json!({"iter": null, "test_acc1": 1.0})), None, "no step: nothing to draw");
        assert_eq!(eval_scalars(&serde_json::json!({"iter": 3, "kind": "outliers"})), None);
        let student = serde_json::json!({"iter": 40, "network": "student", "results": [{"k": 20, "top1": 41.0}]});
        assert_eq!(eval_scalars(&student), Some((40, vec![("eval_student/knn_top1_k20".into(), 41.0)])));
    }

    #[test]
    fn koleo_is_a_curve_only_when_the_run_has_the_term() {
        let mut m = metrics_at(3);
        assert!(metric_scalars(&m).iter().all(|(name, _)| *name != "koleo"));
        m.koleo = Some(-1.25);
        assert_eq!(metric_scalars(&m).last(), Some(&("koleo", -1.25)));
        let d = tempfile::tempdir().unwrap();
        let mut log = TbLog::create(d.path()).unwrap();
        log.metrics(&m).unwrap();
        log.flush().unwrap();
        assert_eq!(curve(d.path(), "train/koleo"), vec![(3, -1.25)]);
    }

    #[test]
    fn a_resume_cuts_every_file_at_the_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let mut first = TbLog::create(d.path()).unwrap();
        for i in 0..6 {
            first.metrics(&metrics_at(i)).unwrap();
        }
        first.flush().unwrap();
        truncate_from(d.path(), 4).unwrap();
        let mut second = TbLog::create(d.path()).unwrap();
        for i in 4..8 {
            second.metrics(&metrics_at(i)).unwrap();
        }
        second.flush().unwrap();
        let mut losses = curve(d.path(), "train/loss");
        losses.sort_by_key(|p| p.0);
        assert_eq!(losses, (0..8).map(|i| (i, i as f32)).collect::<Vec<_>>());
    }
}
