//! Training: DINO loss, schedules, optimizers, the training step and loop, checkpoints.
pub mod checkpoint;
pub mod evaluator;
pub mod import;
pub mod loss;
pub mod optim;
pub mod precision;
pub mod step;
pub mod trainer;
