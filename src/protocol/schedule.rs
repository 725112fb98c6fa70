//! Per-iteration schedules (learning rate, weight decay, teacher momentum, teacher temperature).
//!
//! A schedule is its generating curve plus the edits a person made while training ("from iteration
//! N on, the learning rate is 1e-4"). Edits are data, not mutations, so the TUI can preview a curve
//! before applying it, undo the last edit, and a checkpoint can carry them so a resumed run keeps them.

use serde::{Deserialize, Serialize};

/// The reference `utils.cosine_scheduler`: linear warm-up from `start_warmup_value` to `base_value`
/// over `warmup_epochs`, then a half cosine from `base_value` to `final_value`; one value per iteration.
pub fn cosine_schedule(
    base_value: f64,
    final_value: f64,
    epochs: usize,
    niter_per_ep: usize,
    warmup_epochs: usize,
    start_warmup_value: f64,
) -> Vec<f64> {
    let total = epochs * niter_per_ep;
    // Saturating: a warm-up edit of absurd length must shorten to the run, not overflow.
    let warmup_iters = warmup_epochs.saturating_mul(niter_per_ep).min(total);
    let mut out = Vec::with_capacity(total);
    if warmup_epochs > 0 {
        out.extend(linspace(start_warmup_value, base_value, warmup_iters));
    }
    let n = total - warmup_iters;
    for i in 0..n {
        let t = std::f64::consts::PI * i as f64 / n as f64;
        out.push(final_value + 0.5 * (base_value - final_value) * (1.0 + t.cos()));
    }
    out
}

/// numpy's `linspace(start, stop, num)` with its arithmetic (i * step + start, last value exact), so
/// warm-ups match the reference to the last bit.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
            v[num - 1] = stop;
            v
        }
    }
}

/// The reference's per-epoch teacher temperature: linear warm-up, then constant.
pub fn teacher_temp_schedule(warmup_temp: f64, temp: f64, warmup_epochs: usize, epochs: usize) -> Vec<f64> {
    let warm = warmup_epochs.min(epochs);
    let mut v = linspace(warmup_temp, temp, warm);
    v.resize(epochs, temp);
    v
}

/// Which schedule an edit addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleName {
    Lr,
    Wd,
    TeacherTemp,
    Momentum,
}

impl ScheduleName {
    pub const ALL: [ScheduleName; 4] = [Self::Lr, Self::Wd, Self::TeacherTemp, Self::Momentum];

    pub fn label(self) -> &'static str {
        match self {
            Self::Lr => "learning rate",
            Self::Wd => "weight decay",
            Self::TeacherTemp => "teacher temperature",
            Self::Momentum => "teacher momentum",
        }
    }

    /// Whether `v` is a value this schedule may take: the config's ranges (a learning rate or
    /// weight decay >= 0 and finite, a temperature in (0, 1] since a softmax divides by it, a
    /// momentum in [0, 1] since the teacher is an average).
    pub fn allows(self, v: f64) -> bool {
        match self {
            Self::Lr | Self::Wd => v.is_finite() && v >= 0.0,
            Self::TeacherTemp => v.is_finite() && v > 0.0 && v <= 1.0,
            Self::Momentum => (0.0..=1.0).contains(&v),
        }
    }

    /// The range of `allows`, for messages.
    pub fn range_text(self) -> &'static str {
        match self {
            Self::Lr | Self::Wd => "a finite number >= 0",
            Self::TeacherTemp => "a number in (0, 1]",
            Self::Momentum => "a number in [0, 1]",
        }
    }
}

/// How the trainer's `Event::Error` for a refused edit begins, so a client can tell it apart.
pub const SCHEDULE_EDIT_REFUSED: &str = "schedule edit refused";

/// Longest warm-up an edit may ask for: the config's bound on epochs.
pub const MAX_WARMUP_EPOCHS: usize = 1_000_000;

/// Why a schedule edit is refused. Every front-end (the CLI, the socket, the TUI form, the
/// schedule-edits file) and the trainer check with the same functions, so a value that reaches a
/// checkpoint has passed them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EditRefused {
    #[error("{what} {value} for the {label}: expected {expected}")]
    Value { label: &'static str, what: &'static str, value: String, expected: &'static str },
    #[error("the edit would take the {label} to {} at iteration {iter}: expected {expected}", readable(*.value))]
    Curve { label: &'static str, value: f64, iter: usize, expected: &'static str },
}

/// A value as people read it: four significant digits, not every digit of the float.
pub fn readable(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-3..1e4).contains(&v.abs()) {
        let text = format!("{v:.4}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    } else {
        format!("{v:.3e}")
    }
}

impl ScheduleEdit {
    /// The checks that need no schedule: the value itself in range (a factor finite and >= 0,
    /// > 0 for a temperature; a warm-up of at most `MAX_WARMUP_EPOCHS`).
    pub fn check_value(&self) -> Result<(), EditRefused> {
        let name = self.schedule;
        let refuse = |what: &'static str, value: String, expected: &'static str| {
            Err(EditRefused::Value { label: name.label(), what, value, expected })
        };
        match self.kind {
            EditKind::Constant(v) | EditKind::Peak(v) | EditKind::Final(v) if !name.allows(v) => {
                refuse("value", v.to_string(), name.range_text())
            }
            EditKind::Scale(f) if !(f.is_finite() && f >= 0.0) => refuse("factor", f.to_string(), "a finite number >= 0"),
            EditKind::Scale(f) if f == 0.0 && name == ScheduleName::TeacherTemp => {
                refuse("factor", f.to_string(), "a number > 0 (a temperature of 0 divides by zero)")
            }
            EditKind::WarmupEpochs(w) if w > MAX_WARMUP_EPOCHS => refuse("warm-up", format!("{w} epochs"), "at most 1000000 epochs"),
            _ => Ok(()),
        }
    }
}

/// How an edit changes a curve from its starting iteration on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum EditKind {
    /// Hold this value from now on.
    Constant(f64),
    /// Multiply the planned values by this factor.
    Scale(f64),
    /// Regenerate the curve with this peak (the value reached after warm-up).
    Peak(f64),
    /// Regenerate the curve with this final value.
    Final(f64),
    /// Regenerate the curve with this many warm-up epochs.
    WarmupEpochs(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleEdit {
    pub schedule: ScheduleName,
    /// First iteration (global, 0-based) that sees the new values.
    pub from_iter: usize,
    #[serde(flatten)]
    pub kind: EditKind,
}

/// What generates a curve before edits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "shape")]
pub enum CurveSpec {
    Cosine {
        base: f64,
        final_value: f64,
        warmup_epochs: usize,
        start_warmup_value: f64,
    },
    /// Per-epoch linear warm-up then constant, repeated for each iteration of its epoch.
    WarmupConstant {
        start: f64,
        value: f64,
        warmup_epochs: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ScheduleData")]
pub struct Schedule {
    pub spec: CurveSpec,
    pub epochs: usize,
    pub niter_per_ep: usize,
    pub edits: Vec<ScheduleEdit>,
    /// The rendered curve, kept in step with `edits` so that `value` is a lookup; not
    /// serialised, rendered again on deserialisation.
    #[serde(skip)]
    values: Vec<f64>,
}

/// A schedule as it travels (checkpoints, the control socket): everything but the rendered curve.
#[derive(Deserialize)]
struct ScheduleData {
    spec: CurveSpec,
    epochs: usize,
    niter_per_ep: usize,
    edits: Vec<ScheduleEdit>,
}

impl From<ScheduleData> for Schedule {
    fn from(d: ScheduleData) -> Self {
        let mut s = Schedule { spec: d.spec, epochs: d.epochs, niter_per_ep: d.niter_per_ep, edits: d.edits, values: vec![] };
        s.values = s.render_with(&[]);
        s
    }
}

impl CurveSpec {
    fn render(&self, epochs: usize, niter_per_ep: usize) -> Vec<f64> {
        match *self {
            CurveSpec::Cosine { base, final_value, warmup_epochs, start_warmup_value } => {
                cosine_schedule(base, final_value, epochs, niter_per_ep, warmup_epochs, start_warmup_value)
            }
            CurveSpec::WarmupConstant { start, value, warmup_epochs } => teacher_temp_schedule(start, value, warmup_epochs, epochs)
                .into_iter()
                .flat_map(|v| std::iter::repeat_n(v, niter_per_ep))
                .collect(),
        }
    }

    fn with(self, kind: EditKind) -> Self {
        match (self, kind) {
            (CurveSpec::Cosine { final_value, warmup_epochs, start_warmup_value, .. }, EditKind::Peak(base)) => {
                CurveSpec::Cosine { base, final_value, warmup_epochs, start_warmup_value }
            }
            (CurveSpec::Cosine { base, warmup_epochs, start_warmup_value, .. }, EditKind::Final(final_value)) => {
                CurveSpec::Cosine { base, final_value, warmup_epochs, start_warmup_value }
            }
            (CurveSpec::Cosine { base, final_value, start_warmup_value, .. }, EditKind::WarmupEpochs(w)) => {
                CurveSpec::Cosine { base, final_value, warmup_epochs: w, start_warmup_value }
            }
            (CurveSpec::WarmupConstant { start, warmup_epochs, .. }, EditKind::Peak(v) | EditKind::Final(v)) => {
                CurveSpec::WarmupConstant { start, value: v, warmup_epochs }
            }
            (CurveSpec::WarmupConstant { start, value, .. }, EditKind::WarmupEpochs(w)) => {
                CurveSpec::WarmupConstant { start, value, warmup_epochs: w }
            }
            (spec, _) => spec,
        }
    }
}

impl Schedule {
    pub fn new(spec: CurveSpec, epochs: usize, niter_per_ep: usize) -> Self {
        let mut s = Self { spec, epochs, niter_per_ep, edits: vec![], values: vec![] };
        s.values = s.render_with(&[]);
        s
    }

    pub fn len(&self) -> usize {
        self.epochs * self.niter_per_ep
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at a global iteration; past the end the last value holds.
    pub fn value(&self, iter: usize) -> f64 {
        self.values[iter.min(self.values.len().saturating_sub(1))]
    }

    /// The whole curve as it is now.
    pub fn values(&self) -> Vec<f64> {
        self.values.clone()
    }

    /// The curve as it would be with one more edit: the preview the TUI draws before applying.
    pub fn preview(&self, edit: &ScheduleEdit) -> Vec<f64> {
        self.render_with(std::slice::from_ref(edit))
    }

    /// Whether `edit` may be applied: its value (`ScheduleEdit::check_value`), then the curve it
    /// makes, at every iteration from its first on (a `scale` of a momentum that rises to 1, or a
    /// `peak` reached after a warm-up, can leave the range where the value alone does not).
    pub fn check(&self, edit: &ScheduleEdit) -> Result<(), EditRefused> {
        edit.check_value()?;
        let name = edit.schedule;
        let curve = self.preview(edit);
        let from = edit.from_iter.min(curve.len());
        match curve[from..].iter().position(|v| !name.allows(*v)) {
            Some(i) => Err(EditRefused::Curve { label: name.label(), value: curve[from + i], iter: from + i, expected: name.range_text() }),
            None => Ok(()),
        }
    }

    /// Applies an edit after `check`; a refused edit changes nothing.
    pub fn try_apply(&mut self, edit: ScheduleEdit) -> Result<(), EditRefused> {
        self.check(&edit)?;
        self.apply(edit);
        Ok(())
    }

    pub fn apply(&mut self, edit: ScheduleEdit) {
        self.edits.push(edit);
        self.values = self.render_with(&[]);
    }

    /// Removes the last edit; returns it, or None when there was none.
    pub fn undo(&mut self) -> Option<ScheduleEdit> {
        let e = self.edits.pop();
        self.values = self.render_with(&[]);
        e
    }

    fn render_with(&self, extra: &[ScheduleEdit]) -> Vec<f64> {
        let mut spec = self.spec;
        let mut v = spec.render(self.epochs, self.niter_per_ep);
        for e in self.edits.iter().chain(extra) {
            let from = e.from_iter.min(v.len());
            match e.kind {
                EditKind::Constant(x) => v[from..].iter_mut().for_each(|y| *y = x),
                EditKind::Scale(f) => v[from..].iter_mut().for_each(|y| *y *= f),
                kind => {
                    spec = spec.with(kind);
                    let fresh = spec.render(self.epochs, self.niter_per_ep);
                    v[from..].copy_from_slice(&fresh[from..]);
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_curve_names_its_value_readably() {
        let e = EditRefused::Curve { label: "teacher momentum", value: 1.4853215699556934, iter: 95, expected: "a number in [0, 1]" };
        assert_eq!(e.to_string(), "the edit would take the teacher momentum to 1.4853 at iteration 95: expected a number in [0, 1]");
        assert_eq!((readable(0.000125), readable(2.0), readable(-0.5)), ("1.250e-4".to_string(), "2".to_string(), "-0.5".to_string()));
    }

    #[test]
    fn cosine_ends_near_final_and_warms_up_linearly() {
        let s = cosine_schedule(1.0, 0.0, 4, 10, 1, 0.0);
        assert_eq!(s.len(), 40);
        assert_eq!(s[0], 0.0);
        assert_eq!(s[9], 1.0);
        assert_eq!(s[10], 1.0);
        assert!(s[39] < 0.01 && s[39] > 0.0);
    }

    #[test]
    fn teacher_temp_warms_up_per_epoch() {
        let t = teacher_temp_schedule(0.04, 0.07, 3, 5);
        let expected = [0.04, 0.055, 0.07, 0.07, 0.07];
        assert_eq!(t.len(), 5);
        for (a, b) in t.iter().zip(expected) {
            assert!((a - b).abs() < 1e-15, "{t:?}");
        }
        // A warm-up longer than the run ends inside the warm-up instead of failing.
        assert_eq!(teacher_temp_schedule(0.04, 0.07, 10, 2).len(), 2);
        assert_eq!(cosine_schedule(1.0, 0.0, 2, 3, 10, 0.0).len(), 6);
    }

    #[test]
    fn edits_apply_from_their_iteration_and_undo() {
        let spec = CurveSpec::Cosine { base: 1.0, final_value: 0.0, warmup_epochs: 0, start_warmup_value: 0.0 };
        let mut s = Schedule::new(spec, 2, 5);
        let before = s.values();
        let edit = ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 4, kind: EditKind::Constant(0.5) };
        let preview = s.preview(&edit);
        assert_eq!(s.values(), before, "preview must not change the schedule");
        s.apply(edit);
        assert_eq!(s.values(), preview);
        assert_eq!(s.value(3), before[3]);
        assert_eq!(s.value(4), 0.5);
        assert_eq!(s.value(100), 0.5);
        s.apply(ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 6, kind: EditKind::Scale(2.0) });
        assert_eq!(s.value(6), 1.0);
        assert!(s.undo().is_some());
        assert_eq!(s.value(6), 0.5);
        s.undo();
        assert_eq!(s.values(), before);
        assert!(s.undo().is_none());
    }

    fn lr(epochs: usize) -> Schedule {
        Schedule::new(CurveSpec::Cosine { base: 1e-3, final_value: 1e-6, warmup_epochs: 1, start_warmup_value: 0.0 }, epochs, 5)
    }

    fn edit(schedule: ScheduleName, kind: EditKind) -> ScheduleEdit {
        ScheduleEdit { schedule, from_iter: 3, kind }
    }

    #[test]
    fn edits_out_of_the_config_ranges_are_refused_with_the_reason() {
        use EditKind::*;
        use ScheduleName::*;
        for (name, kind, needle) in [
            (TeacherTemp, Constant(0.0), "(0, 1]"),
            (TeacherTemp, Constant(-1.0), "(0, 1]"),
            (TeacherTemp, Constant(1.5), "(0, 1]"),
            (TeacherTemp, Scale(0.0), "> 0"),
            (Momentum, Constant(2.0), "[0, 1]"),
            (Momentum, Final(3.0), "[0, 1]"),
            (Lr, Constant(-1.0), ">= 0"),
            (Lr, Constant(f64::INFINITY), ">= 0"),
            (Lr, Peak(f64::NAN), ">= 0"),
            (Wd, Constant(-5.0), ">= 0"),
            (Lr, Scale(-2.0), "factor"),
            (Lr, WarmupEpochs(usize::MAX), "warm-up"),
        ] {
            let e = edit(name, kind).check_value().expect_err(&format!("{name:?} {kind:?}"));
            assert!(e.to_string().contains(needle) && e.to_string().contains(name.label()), "{e}");
        }
        for (name, kind) in
            [(TeacherTemp, Constant(1.0)), (Momentum, Constant(0.0)), (Lr, Constant(0.0)), (Lr, Constant(1e6)), (Wd, Scale(0.0))]
        {
            assert_eq!(edit(name, kind).check_value(), Ok(()), "{name:?} {kind:?}");
        }
    }

    #[test]
    fn the_curve_an_edit_makes_must_stay_in_range_at_every_iteration() {
        let momentum = Schedule::new(CurveSpec::Cosine { base: 0.9, final_value: 1.0, warmup_epochs: 0, start_warmup_value: 0.0 }, 4, 5);
        // 0.9 x 1.05 is fine at first, but the curve rises to 1 and the scaled one past it.
        let e = momentum.check(&edit(ScheduleName::Momentum, EditKind::Scale(1.05))).expect_err("scale past 1");
        assert!(matches!(e, EditRefused::Curve { iter, value, .. } if iter > 3 && value > 1.0), "{e}");
        assert!(momentum.check(&edit(ScheduleName::Momentum, EditKind::Scale(1.0))).is_ok());
        let temp = Schedule::new(CurveSpec::WarmupConstant { start: 0.04, value: 0.5, warmup_epochs: 2 }, 4, 5);
        assert!(temp.check(&edit(ScheduleName::TeacherTemp, EditKind::Scale(3.0))).is_err(), "0.5 x 3 > 1 after the warm-up");
        assert!(temp.check(&edit(ScheduleName::TeacherTemp, EditKind::WarmupEpochs(1000))).is_ok(), "a warm-up longer than the run");
        // A refused edit changes nothing; a good one applies.
        let mut s = lr(3);
        let before = s.values();
        assert!(s.try_apply(edit(ScheduleName::Lr, EditKind::Constant(-1.0))).is_err());
        assert_eq!(s.values(), before);
        assert!(s.edits.is_empty());
        s.try_apply(edit(ScheduleName::Lr, EditKind::Peak(2e-3))).expect("a new peak");
        assert_eq!(s.edits.len(), 1);
        // Huge warm-ups are clamped to the run instead of overflowing.
        assert_eq!(cosine_schedule(1.0, 0.0, 2, 3, usize::MAX, 0.0).len(), 6);
    }

    #[test]
    fn regenerating_edits_change_the_spec() {
        let spec = CurveSpec::Cosine { base: 1.0, final_value: 0.0, warmup_epochs: 0, start_warmup_value: 0.0 };
        let mut s = Schedule::new(spec, 2, 5);
        s.apply(ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 0, kind: EditKind::Final(0.5) });
        assert_eq!(s.value(0), 1.0);
        assert!((s.value(9) - 0.5).abs() < 0.05);
        let json = serde_json::to_string(&s).unwrap();
        let back: Schedule = serde_json::from_str(&json).unwrap();
        assert_eq!(back.values(), s.values());
        assert_eq!(back, s);
    }
}
