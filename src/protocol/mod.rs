//! The one protocol between a trainer and whoever watches it: the in-process TUI, an attached TUI,
//! `dino ctl`. Both directions are plain serde enums, sent over channels in-process and as JSON
//! lines over the run's control socket, so every client speaks the same language. It depends on nothing of
//! ours, so the wire format changes only when this module does.

pub mod health;
pub mod schedule;

use schedule::{Schedule, ScheduleEdit, ScheduleName};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Longest message either side of the control socket accepts. Commands are tens of bytes and
/// events a few hundred; a `Schedules` event is the largest, and its schedules' pieces are
/// bounded (`schedule::MAX_PIECES`) so that it stays under this however many edits a run has had.
pub const MAX_LINE: usize = 64 * 1024;

/// A path as JSON text, lossily: a path need not be UTF-8 and JSON holds only text (serde's own
/// `Path` impl fails on such a path, and `serde_json::json!` panics on it).
pub fn lossy_path<P: AsRef<Path>, S: serde::Serializer>(p: &P, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.as_ref().to_string_lossy())
}

fn lossy_opt_path<S: serde::Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => lossy_path(p, s),
        None => s.serialize_none(),
    }
}

/// What a client asks of the trainer; taken between iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "cmd")]
pub enum Command {
    Pause,
    Resume,
    /// Write `checkpoint-latest` now (and report it).
    Checkpoint,
    /// Stop after the current iteration; checkpoint first when asked.
    Stop {
        checkpoint: bool,
    },
    /// Change a schedule from an iteration on.
    EditSchedule(ScheduleEdit),
    /// Remove the last edit of a schedule.
    UndoScheduleEdit {
        schedule: ScheduleName,
    },
    /// Run an evaluation on the current teacher, or on the teacher of a checkpoint of the run.
    Eval {
        kind: EvalKind,
        #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "lossy_opt_path")]
        checkpoint: Option<PathBuf>,
    },
    /// Evaluate the run's architecture with random weights on its data: the baseline its
    /// checkpoints are compared with.
    EvalBaseline {
        kind: EvalKind,
    },
    /// Ask for a `Status` event.
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalKind {
    Knn,
    Linear,
    Outliers,
}

impl EvalKind {
    /// The name people read in logs, results and the TUI.
    pub fn label(self) -> &'static str {
        match self {
            Self::Knn => "k-NN",
            Self::Linear => "linear",
            Self::Outliers => "outliers",
        }
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Starting,
    Running,
    Paused,
    /// Stopped on request before the last epoch.
    Stopped,
    Finished,
    /// Ended by an error or a non-finite loss.
    Failed,
}

impl RunState {
    pub fn is_over(self) -> bool {
        matches!(self, Self::Stopped | Self::Finished | Self::Failed)
    }
}

/// One training iteration, as written to `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterMetrics {
    /// Global iteration, 0-based.
    pub iter: usize,
    pub epoch: usize,
    pub loss: f64,
    pub lr: f64,
    pub wd: f64,
    pub teacher_temp: f64,
    pub momentum: f64,
    /// Wall time of the iteration in seconds, data wait included.
    pub iter_time: f64,
    /// Seconds the trainer waited for the loader.
    pub data_time: f64,
    pub images_per_s: f64,
    /// Mean entropy of the teacher's softmax output (near 0: one-dimension collapse).
    pub teacher_entropy: f64,
    /// Mean KL(teacher || student) over the loss's view pairs.
    pub kl: f64,
    /// The KoLeo term before its weight, summed over the global views, when it is on
    /// (`--koleo_loss_weight`); `loss` is the DINO loss without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub koleo: Option<f64>,
    /// Unix time in seconds.
    pub time: f64,
}

#[cfg(test)]
impl IterMetrics {
    /// An iteration's metrics for tests of what stores and draws them: the given step, loss and
    /// time, the rest plausible constants.
    pub(crate) fn sample(iter: usize, loss: f64, time: f64) -> Self {
        Self {
            iter,
            epoch: 0,
            loss,
            lr: 0.1,
            wd: 0.04,
            teacher_temp: 0.04,
            momentum: 0.996,
            iter_time: 0.5,
            data_time: 0.1,
            images_per_s: 16.0,
            teacher_entropy: 2.0,
            kl: 1.0,
            koleo: None,
            time,
        }
    }
}

/// Reference-style per-epoch summary (`log.txt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_lr: f64,
    pub train_wd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// The sidecar that names this checkpoint for good (never `checkpoint-latest.json`, which moves on;
    /// runs recorded before stable names may show it).
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    pub epoch: usize,
    /// Iterations completed when it was written.
    pub iter: usize,
    pub bytes: u64,
    pub loss: Option<f64>,
    pub time: f64,
    /// Start of the tensors' SHA-256: what an evaluation result records, so it is filed under the
    /// weights it evaluated whatever a file is called now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
}

/// Static facts about a run, sent once when a client connects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    #[serde(serialize_with = "lossy_path")]
    pub run_dir: PathBuf,
    pub name: String,
    pub arch: String,
    pub device: String,
    pub epochs: usize,
    pub niter_per_ep: usize,
    pub batch_size: usize,
    pub out_dim: usize,
    pub num_images: usize,
    /// Iteration the run (re)started from.
    pub start_iter: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    NonFiniteLoss,
    UniformCollapse,
    DimensionCollapse,
    /// The loss far above ln K over a window: the student is pushed away from its targets.
    Diverging,
}

/// Version of the JSON-lines protocol on the control socket; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// What the trainer reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// First line a control-socket client receives: who is serving and which protocol version.
    Hello {
        protocol: u32,
        pid: u32,
    },
    Started(RunInfo),
    Metrics(IterMetrics),
    Epoch(EpochSummary),
    State {
        state: RunState,
        iter: usize,
    },
    CheckpointSaved(CheckpointInfo),
    /// The full current curves (sent at start and after every edit or undo).
    Schedules {
        schedules: Vec<(ScheduleName, Schedule)>,
    },
    ScheduleEdited {
        edit: ScheduleEdit,
    },
    ScheduleUndone {
        schedule: ScheduleName,
    },
    Alarm {
        kind: AlarmKind,
        message: String,
        iter: usize,
    },
    /// A file the loader could not decode, or another recoverable problem.
    Warning {
        message: String,
    },
    EvalProgress {
        kind: EvalKind,
        done: usize,
        total: usize,
    },
    EvalResult {
        kind: EvalKind,
        summary: String,
        json: serde_json::Value,
    },
    /// A command could not be carried out, or the trainer failed.
    Error {
        message: String,
    },
    /// The trainer's own process, about once a second while a client is connected: a viewer in
    /// another process shows these as the trainer's, beside its own machine's.
    Resources(ProcessSample),
}

/// What one process uses: CPU (percent of one core, so 150 is one and a half cores), resident
/// memory, threads, and on CUDA its GPU memory and SM utilisation summed over devices.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProcessSample {
    pub pid: u32,
    pub cpu_percent: f32,
    pub rss: u64,
    pub threads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_mem: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_util: Option<u32>,
}

/// A finished evaluation: the full record (written to `evals/`) and a line for people.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOutcome {
    pub kind: EvalKind,
    pub json: serde_json::Value,
    pub summary: String,
    pub seconds: f64,
}

/// The k whose top-1 stands for a k-NN evaluation in summaries and charts.
pub const HEADLINE_K: usize = 20;

/// The one accuracy (top-1, %) that stands for an evaluation's JSON record in charts and tables:
/// k-NN at `HEADLINE_K` (else its first k), a probe's `test_acc1`.
pub fn headline_top1(json: &serde_json::Value) -> Option<f64> {
    if let Some(results) = json["results"].as_array() {
        let pick = results.iter().find(|r| r["k"].as_u64() == Some(HEADLINE_K as u64)).or(results.first())?;
        return pick["top1"].as_f64();
    }
    json["test_acc1"].as_f64()
}

/// The `network` of an evaluation record of a checkpoint's student (`dino eval knn
/// --checkpoint_key student`); a record without the field is of the teacher.
pub const STUDENT_NETWORK: &str = "student";

/// Whether an evaluation record is of a checkpoint's student. The teacher's results stand for the
/// run (its curve, its best, "vs previous"); a student's are listed apart.
pub fn is_student_result(json: &serde_json::Value) -> bool {
    json["network"].as_str() == Some(STUDENT_NETWORK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_is_k20_then_first_k_then_probe_accuracy() {
        let knn = serde_json::json!({"results": [{"k": 10, "top1": 40.0}, {"k": 20, "top1": 45.5}]});
        assert_eq!(headline_top1(&knn), Some(45.5));
        let knn = serde_json::json!({"results": [{"k": 10, "top1": 40.0}]});
        assert_eq!(headline_top1(&knn), Some(40.0));
        assert_eq!(headline_top1(&serde_json::json!({"test_acc1": 61.25})), Some(61.25));
        assert_eq!(headline_top1(&serde_json::json!({"results": []})), None);
        assert_eq!(headline_top1(&serde_json::json!({})), None);
    }

    #[test]
    fn a_record_is_the_teachers_unless_it_names_the_student() {
        assert!(is_student_result(&serde_json::json!({"network": "student", "results": []})));
        assert!(!is_student_result(&serde_json::json!({"network": "teacher", "results": []})));
        assert!(!is_student_result(&serde_json::json!({"results": []})));
    }
    use schedule::EditKind;

    #[test]
    fn commands_round_trip_as_json_lines() {
        let cmds = [
            Command::Pause,
            Command::Stop { checkpoint: true },
            Command::EditSchedule(ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 10, kind: EditKind::Constant(1e-4) }),
            Command::Eval { kind: EvalKind::Knn, checkpoint: None },
            Command::Eval { kind: EvalKind::Linear, checkpoint: Some("runs/a/checkpoints/checkpoint0005.json".into()) },
        ];
        for c in cmds {
            let line = serde_json::to_string(&c).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Command>(&line).unwrap(), c);
        }
        assert_eq!(serde_json::to_string(&Command::Pause).unwrap(), r#"{"cmd":"pause"}"#);
        // A path that is not UTF-8 travels lossily instead of failing the event.
        use std::os::unix::ffi::OsStrExt;
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"runs/caf\xe9/checkpoint-latest.json"));
        let info = CheckpointInfo { path: odd, epoch: 1, iter: 2, bytes: 3, loss: None, time: 0.0, content_id: None };
        let line = serde_json::to_string(&Event::CheckpointSaved(info)).unwrap();
        assert!(line.contains("runs/caf\u{fffd}/checkpoint-latest.json"), "{line}");
        // Clients written before `checkpoint` existed still parse.
        assert_eq!(
            serde_json::from_str::<Command>(r#"{"cmd":"eval","kind":"knn"}"#).unwrap(),
            Command::Eval { kind: EvalKind::Knn, checkpoint: None }
        );
    }
}
