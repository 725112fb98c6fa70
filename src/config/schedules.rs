//! The four schedules a config implies (learning rate, weight decay, teacher momentum, teacher
//! temperature), as the reference builds them in `main_dino.py`; the trainer starts from these and
//! a viewer with no trainer rebuilds them from a run's `config.toml`.

use super::TrainConfig;
use crate::protocol::schedule::{CurveSpec, Schedule, ScheduleName};
use std::collections::BTreeMap;

/// The run's schedules; the learning rate follows the global batch of `world_size` processes.
pub fn build(c: &TrainConfig, niter: usize, world_size: usize) -> BTreeMap<ScheduleName, Schedule> {
    let epochs = c.optim.epochs;
    let cos = |base, final_value, warmup_epochs: usize| CurveSpec::Cosine { base, final_value, warmup_epochs, start_warmup_value: 0.0 };
    BTreeMap::from([
        (ScheduleName::Lr, Schedule::new(cos(c.scaled_lr(world_size.max(1)), c.optim.min_lr, c.optim.warmup_epochs), epochs, niter)),
        (ScheduleName::Wd, Schedule::new(cos(c.optim.weight_decay, c.optim.weight_decay_end, 0), epochs, niter)),
        (ScheduleName::Momentum, Schedule::new(cos(c.teacher.momentum_teacher, 1.0, 0), epochs, niter)),
        (
            ScheduleName::TeacherTemp,
            Schedule::new(
                CurveSpec::WarmupConstant {
                    start: c.teacher.warmup_teacher_temp,
                    value: c.teacher.teacher_temp,
                    warmup_epochs: c.teacher.warmup_teacher_temp_epochs,
                },
                epochs,
                niter,
            ),
        ),
    ])
}
