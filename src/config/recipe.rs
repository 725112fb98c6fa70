//! A training plan that fits the data: `--recipe auto` derives the settings the reference tuned
//! for 1.28 M ImageNet images (out_dim, teacher temperature and its warm-up, teacher momentum,
//! warm-ups, last-layer freeze) from the data set's size and the planned number of steps, and
//! `warnings` names the settings of any plan known to fail whatever the recipe: a teacher whose
//! EMA half-life outlasts the run barely moves, warm-ups or a freeze as long as the run leave no
//! training after them, and an out_dim far above the number of images is the reference tracker's
//! most reported failure (loss stuck at ln(out_dim): dino#246, dinov2#407, dino#279).
//!
//! The small-data values follow LightlyTrain's (out_dim 1024, teacher temperature 0.02 and
//! momentum 0.99 below 20k images, warm-ups capped at 10 % / 30 % of the steps); the large-data
//! ones are the reference's and the paper's. Warm-ups are worked out in steps and written back in
//! whole epochs, the unit of the reference's flags and of the run directory's config.

use super::TrainConfig;

/// Below this many images the small-data values apply (LightlyTrain's threshold).
pub const SMALL_DATA: usize = 20_000;
/// out_dim above this multiple of the number of images draws a warning.
pub const OUT_DIM_PER_IMAGE: usize = 4;

/// What the run will see: its images and its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub images: usize,
    pub steps_per_epoch: usize,
    pub epochs: usize,
}

impl Plan {
    /// The plan of `c` over `images` images shared by `world` processes (the loader drops the
    /// last partial batch, as the reference's).
    pub fn new(c: &TrainConfig, images: usize, world: usize) -> Self {
        let global_batch = c.optim.batch_size_per_gpu.max(1) * world.max(1);
        Self { images, steps_per_epoch: images / global_batch, epochs: c.optim.epochs }
    }

    pub fn total_steps(&self) -> usize {
        self.steps_per_epoch * self.epochs
    }
}

/// One setting the recipe chose, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub setting: &'static str,
    pub value: String,
    pub reason: String,
}

/// Steps for the teacher's EMA to close half the gap to the student at momentum `m` (infinite
/// at m = 1).
pub fn ema_half_life(m: f64) -> f64 {
    if m <= 0.0 {
        return 0.0;
    }
    if m >= 1.0 {
        return f64::INFINITY;
    }
    0.5f64.ln() / m.ln()
}

/// The largest power of two at most `n`, at least 1.
fn pow2_floor(n: usize) -> usize {
    if n <= 1 {
        1
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

/// Whole epochs covering at most `steps` (at least `min`), for settings kept in epochs.
fn epochs_within(steps: f64, steps_per_epoch: usize, min: usize) -> usize {
    ((steps / steps_per_epoch.max(1) as f64).floor() as usize).max(min)
}

/// Applies the recipe to `c` for `plan`, leaving the settings named in `pinned` (given on the
/// command line) as they are; returns what it chose and why.
pub fn apply_auto(c: &mut TrainConfig, plan: &Plan, pinned: &[&str]) -> Vec<Derived> {
    let mut out = vec![];
    let mut set = |setting: &'static str, value: String, reason: String| {
        if !pinned.contains(&setting) {
            out.push(Derived { setting, value, reason });
            true
        } else {
            false
        }
    };
    let (n, steps, spe) = (plan.images, plan.total_steps(), plan.steps_per_epoch.max(1));
    let small = n < SMALL_DATA;

    let out_dim = if small {
        pow2_floor(n / 2).clamp(64, 1024)
    } else if n < 200_000 {
        16384
    } else {
        65536
    };
    if set(
        "out_dim",
        out_dim.to_string(),
        format!(
            "{n} images: {} prototypes",
            if small {
                "at most 1024, at most half as many"
            } else if n < 200_000 {
                "16384"
            } else {
                "the reference's 65536"
            }
        ),
    ) {
        c.model.out_dim = out_dim;
    }

    let (warm_temp, temp) = if small { (0.02, 0.02) } else { (0.04, 0.07) };
    if set(
        "teacher_temp",
        temp.to_string(),
        format!(
            "{} images: sharper targets keep a small set from collapsing",
            if small { "fewer than 20k" } else { "20k or more: the paper's 0.04 -> 0.07" }
        ),
    ) {
        c.teacher.teacher_temp = temp;
    }
    if set("warmup_teacher_temp", warm_temp.to_string(), "starts the temperature warm-up".into()) {
        c.teacher.warmup_teacher_temp = warm_temp;
    }
    let temp_warm = if warm_temp == temp { 0 } else { epochs_within((0.3 * steps as f64).min(30.0 * spe as f64), spe, 0) };
    let why = if temp_warm == 0 && warm_temp == temp {
        "no warm-up: the temperature is constant".to_string()
    } else {
        format!("{} steps: 30 % of the run's {steps} at most (the paper's 30 epochs)", temp_warm * spe)
    };
    if set("warmup_teacher_temp_epochs", temp_warm.to_string(), why) {
        c.teacher.warmup_teacher_temp_epochs = temp_warm;
    }

    // The half-life at most a tenth of the run, so the teacher follows the student many times.
    let base: f64 = if small { 0.99 } else { 0.996 };
    let cap = 0.5f64.powf(10.0 / steps.max(1) as f64);
    let m = (base.min(cap) * 1e4).floor() / 1e4;
    let m = m.max(0.9);
    if set("momentum_teacher", m.to_string(), format!("EMA half-life {:.0} steps, at most a tenth of the run's {steps}", ema_half_life(m)))
    {
        c.teacher.momentum_teacher = m;
    }

    let warm = epochs_within((0.1 * steps as f64).min(10.0 * spe as f64), spe, 0);
    if set("warmup_epochs", warm.to_string(), format!("{} steps: 10 % of the run at most (the reference's 10 epochs)", warm * spe)) {
        c.optim.warmup_epochs = warm;
    }
    let freeze = epochs_within(0.05 * steps as f64, spe, 0).min(1);
    if set("freeze_last_layer", freeze.to_string(), format!("{} steps: one epoch, if that is at most 5 % of the run", freeze * spe)) {
        c.optim.freeze_last_layer = freeze;
    }
    out
}

/// Sentences naming each setting of `c` that makes `plan` fail; empty when none does.
pub fn warnings(c: &TrainConfig, plan: &Plan) -> Vec<String> {
    let steps = plan.total_steps();
    let mut w = vec![];
    let half = ema_half_life(c.teacher.momentum_teacher);
    if half > steps as f64 {
        w.push(format!(
            "momentum_teacher {}: the teacher's EMA half-life ({half:.0} steps) is longer than the run ({steps} steps); the teacher will barely move (try --recipe auto)",
            c.teacher.momentum_teacher
        ));
    }
    let e = plan.epochs;
    for (setting, value) in [("warmup_epochs", c.optim.warmup_epochs), ("warmup_teacher_temp_epochs", c.teacher.warmup_teacher_temp_epochs)]
    {
        if value >= e && value > 0 {
            w.push(format!("{setting} {value}: the warm-up is as long as the run ({e} epochs); it never ends"));
        }
    }
    if c.optim.freeze_last_layer >= e && c.optim.freeze_last_layer > 0 {
        w.push(format!(
            "freeze_last_layer {}: the head's last layer stays frozen for the whole run ({e} epochs)",
            c.optim.freeze_last_layer
        ));
    }
    if c.model.out_dim > OUT_DIM_PER_IMAGE * plan.images {
        w.push(format!(
            "out_dim {}: far more prototypes than the {} training images; the loss tends to sit at ln(out_dim) = {:.2} (try --recipe auto)",
            c.model.out_dim,
            plan.images,
            (c.model.out_dim as f64).ln()
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_for(c: &TrainConfig, images: usize) -> Plan {
        Plan::new(c, images, 1)
    }

    #[test]
    fn small_data_gets_the_small_data_values_and_no_warnings() {
        // cifar-vehicles' 4,000 pretext images, batch 64, 10 epochs: 62 steps an epoch, 620 steps.
        let mut c = TrainConfig::default();
        c.optim.epochs = 10;
        let plan = plan_for(&c, 4000);
        assert_eq!((plan.steps_per_epoch, plan.total_steps()), (62, 620));
        assert!(warnings(&c, &plan).len() >= 2, "the reference defaults fail here: {:?}", warnings(&c, &plan));
        let why = apply_auto(&mut c, &plan, &[]);
        assert_eq!(c.model.out_dim, 1024);
        assert_eq!((c.teacher.teacher_temp, c.teacher.warmup_teacher_temp, c.teacher.warmup_teacher_temp_epochs), (0.02, 0.02, 0));
        assert!(ema_half_life(c.teacher.momentum_teacher) <= 62.0, "{}", c.teacher.momentum_teacher);
        assert_eq!(c.optim.warmup_epochs, 1, "10 % of 10 epochs");
        assert_eq!(c.optim.freeze_last_layer, 0, "one epoch would be 10 % of the run");
        assert_eq!(why.len(), 7);
        assert!(why.iter().all(|d| !d.reason.is_empty()));
        assert!(warnings(&c, &plan).is_empty(), "{:?}", warnings(&c, &plan));
        c.validate().unwrap();
    }

    #[test]
    fn tiny_data_caps_out_dim_by_the_number_of_images() {
        let mut c = TrainConfig::default();
        c.optim.batch_size_per_gpu = 16;
        c.optim.epochs = 20;
        let plan = plan_for(&c, 300);
        apply_auto(&mut c, &plan, &[]);
        assert_eq!(c.model.out_dim, 128);
        assert!(warnings(&c, &plan).is_empty(), "{:?}", warnings(&c, &plan));
    }

    #[test]
    fn large_data_keeps_the_reference_values() {
        // ImageNet, the reference's 100 epochs at batch 1024 (16 x 64).
        let mut c = TrainConfig::default();
        let plan = Plan::new(&c, 1_281_167, 16);
        assert!(warnings(&c, &plan).is_empty(), "the reference's plan is fine: {:?}", warnings(&c, &plan));
        apply_auto(&mut c, &plan, &[]);
        assert_eq!(c.model.out_dim, 65536);
        assert_eq!(c.teacher.momentum_teacher, 0.996);
        assert_eq!((c.teacher.warmup_teacher_temp, c.teacher.teacher_temp, c.teacher.warmup_teacher_temp_epochs), (0.04, 0.07, 30));
        assert_eq!((c.optim.warmup_epochs, c.optim.freeze_last_layer), (10, 1));
        assert!(warnings(&c, &plan).is_empty());
    }

    #[test]
    fn pinned_settings_are_left_alone() {
        let mut c = TrainConfig::default();
        c.model.out_dim = 4096;
        c.optim.epochs = 10;
        let plan = plan_for(&c, 4000);
        let why = apply_auto(&mut c, &plan, &["out_dim"]);
        assert_eq!(c.model.out_dim, 4096);
        assert!(why.iter().all(|d| d.setting != "out_dim"));
    }

    #[test]
    fn each_failing_plan_names_its_setting() {
        let mut c = TrainConfig::default();
        c.optim.epochs = 2;
        c.optim.warmup_epochs = 2;
        c.optim.freeze_last_layer = 3;
        c.teacher.warmup_teacher_temp_epochs = 5;
        c.model.out_dim = 65536;
        let w = warnings(&c, &plan_for(&c, 640)).join("\n");
        for setting in ["momentum_teacher", "warmup_epochs 2", "warmup_teacher_temp_epochs 5", "freeze_last_layer 3", "out_dim 65536"] {
            assert!(w.contains(setting), "{setting} not named in:\n{w}");
        }
        assert!((ema_half_life(0.996) - 172.9).abs() < 0.1);
    }
}
