//! The four schedules a config implies (learning rate, weight decay, teacher momentum, teacher
//! temperature), as the reference builds them in `main_dino.py`; the trainer starts from these and
//! a viewer with no trainer rebuilds them from a run's `config.toml`.

use super::TrainConfig;
use crate::protocol::schedule::{CurveSpec, Schedule, ScheduleName};
use std::collections::BTreeMap;

/// The run's schedules; the learning rate follows the global batch of `world_size` processes.
pub fn build(c: &TrainConfig, niter: usize, world_size: usize) -> BTreeMap<ScheduleName, Schedule> {
    let epochs = c.epochs as usize;
    let cos = |base, final_value, warmup_epochs: usize| CurveSpec::Cosine { base, final_value, warmup_epochs, start_warmup_value: 0.0 };
    BTreeMap::from([
        (ScheduleName::Lr, Schedule::new(cos(c.scaled_lr(world_size.max(1) as i64), c.min_lr, c.warmup_epochs as usize), epochs, niter)),
        (ScheduleName::Wd, Schedule::new(cos(c.weight_decay, c.weight_decay_end, 0), epochs, niter)),
        (ScheduleName::Momentum, Schedule::new(cos(c.momentum_teacher, 1.0, 0), epochs, niter)),
        (
            ScheduleName::TeacherTemp,
            Schedule::new(
                CurveSpec::WarmupConstant {
                    start: c.warmup_teacher_temp,
                    value: c.teacher_temp,
                    warmup_epochs: c.warmup_teacher_temp_epochs as usize,
                },
                epochs,
                niter,
            ),
        ),
    ])
}
