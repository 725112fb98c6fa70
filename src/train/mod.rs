//! Training: DINO loss, schedules, optimizers, the training step and loop, checkpoints.
pub mod schedule;
