//! What the ranks of a data-parallel job agree on at every iteration boundary: whether to stop,
//! the schedule values, the logged loss; and the heartbeat that keeps them waiting while rank 0
//! is paused. A single process has no group and every call is a no-op.

use super::Trainer;
use crate::dist::ProcessGroup;
use crate::protocol::RunState;
use crate::train::step::{StepOutput, StepParams};
use anyhow::Result;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a paused rank 0 tells the other ranks it is still there, and the word that says so.
const PAUSE_HEARTBEAT: Duration = Duration::from_secs(1);
const STILL_PAUSED: f64 = 4.0;

pub(super) struct RankSync {
    /// The other processes of a data-parallel job, if any.
    pub(super) group: Option<Arc<ProcessGroup>>,
    /// When a paused rank 0 last told the other ranks it is still there.
    last_heartbeat: Instant,
}

impl RankSync {
    pub(super) fn new(group: Option<Arc<ProcessGroup>>) -> Self {
        Self { group, last_heartbeat: Instant::now() }
    }

    pub(super) fn is_main(&self) -> bool {
        self.group.as_ref().is_none_or(|g| g.rank == 0)
    }
}

impl Trainer {
    /// While rank 0 is paused the other ranks wait in `sync_iteration`'s broadcast; this keeps
    /// that broadcast from timing out (every second or so, a "still paused" word they wait on).
    pub(super) fn pause_heartbeat(&mut self) -> Result<()> {
        let Some(g) = &self.ranks.group else { return Ok(()) };
        if g.rank != 0 || self.health.poisoned || self.ranks.last_heartbeat.elapsed() < PAUSE_HEARTBEAT {
            return Ok(());
        }
        let mut word = tch::Tensor::from_slice(&[STILL_PAUSED, 0.0, 0.0, 0.0, 0.0]);
        g.broadcast(&mut word, 0)?;
        self.ranks.last_heartbeat = Instant::now();
        Ok(())
    }

    /// Rank 0 tells every rank, at each iteration boundary, whether to stop and this iteration's
    /// schedule values: its commands (stop, schedule edits) come from its TUI, socket or signals,
    /// the other ranks have none, and replicas must never step with different hyperparameters.
    /// Single process: `asked` and `p` as they are.
    pub(super) fn sync_iteration(&self, asked: Option<RunState>, p: StepParams) -> Result<(Option<RunState>, StepParams)> {
        let Some(g) = &self.ranks.group else { return Ok((asked, p)) };
        let code = match asked {
            None => 0.0,
            Some(RunState::Finished) => 1.0,
            Some(RunState::Failed) => 2.0,
            Some(_) => 3.0,
        };
        let mut word = tch::Tensor::from_slice(&[code, p.lr, p.wd, p.momentum, p.teacher_temp]);
        g.broadcast(&mut word, 0)?;
        // Rank 0 paused: its heartbeats arrive until the real word does.
        while g.rank != 0 && word.double_value(&[0]) == STILL_PAUSED {
            word = tch::Tensor::from_slice(&[code, p.lr, p.wd, p.momentum, p.teacher_temp]);
            g.broadcast(&mut word, 0)?;
        }
        let v = |i: i64| word.double_value(&[i]);
        let stop = match v(0) as i64 {
            0 => None,
            1 => Some(RunState::Finished),
            2 => Some(RunState::Failed),
            _ => Some(RunState::Stopped),
        };
        Ok((stop, StepParams { lr: v(1), wd: v(2), momentum: v(3), teacher_temp: v(4), ..p }))
    }

    /// The loss and its diagnostics as the mean over ranks, as the reference logs them.
    pub(super) fn averaged_over_ranks(&self, out: StepOutput) -> Result<StepOutput> {
        let Some(g) = &self.ranks.group else { return Ok(out) };
        let mut v = tch::Tensor::from_slice(&[out.loss, out.teacher_entropy, out.kl]);
        g.all_reduce_sum(&mut v)?;
        let n = g.world_size as f64;
        Ok(StepOutput { loss: v.double_value(&[0]) / n, teacher_entropy: v.double_value(&[1]) / n, kl: v.double_value(&[2]) / n, ..out })
    }
}
