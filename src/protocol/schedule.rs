//! Per-iteration schedules (learning rate, weight decay, teacher momentum, teacher temperature).
//!
//! A schedule is its generating curve plus the edits a person made while training ("from iteration
//! N on, the learning rate is 1e-4"), folded into a bounded list of pieces (`folded`), so the TUI
//! can preview a curve before applying it, undo the last edit, and a checkpoint can carry them so a
//! resumed run keeps them.

use serde::{Deserialize, Serialize};

mod folded;
pub use folded::{Piece, Schedule, Source, MAX_PIECES, UNDO_DEPTH};

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
    #[error(
        "the {label} already has {MAX_PIECES} pieces (edits from different iterations that still apply); \
         an edit of kind constant, peak, final or warmup_epochs replaces the pieces from its iteration on"
    )]
    TooManyPieces { label: &'static str },
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

/// `linspace(start, stop, num)[i]`, with numpy's arithmetic (see `linspace`).
fn linspace_at(start: f64, stop: f64, num: usize, i: usize) -> f64 {
    match num {
        0 | 1 => start,
        _ if i + 1 >= num => stop,
        _ => i as f64 * ((stop - start) / (num - 1) as f64) + start,
    }
}

impl CurveSpec {
    /// The value at iteration `i` of the curve `render` draws, with the same arithmetic (so the
    /// same bits), computed alone: a schedule looks values up without keeping its whole curve.
    pub fn value_at(&self, i: usize, epochs: usize, niter_per_ep: usize) -> f64 {
        let warm_end = self.warmup_end(epochs, niter_per_ep);
        match *self {
            CurveSpec::Cosine { start_warmup_value, base, .. } if i < warm_end => linspace_at(start_warmup_value, base, warm_end, i),
            CurveSpec::Cosine { base, final_value, .. } => {
                let n = epochs * niter_per_ep - warm_end;
                let t = std::f64::consts::PI * (i - warm_end) as f64 / n as f64;
                final_value + 0.5 * (base - final_value) * (1.0 + t.cos())
            }
            CurveSpec::WarmupConstant { start, value, warmup_epochs } => {
                let epoch = i / niter_per_ep.max(1);
                let warm = warmup_epochs.min(epochs);
                if epoch < warm {
                    linspace_at(start, value, warm, epoch)
                } else {
                    value
                }
            }
        }
    }

    /// The first iteration after the warm-up. On each side of it the curve is monotone (a
    /// linear ramp, then a half cosine or a constant), so its extremes over a range are at the
    /// range's ends and around this point.
    pub fn warmup_end(&self, epochs: usize, niter_per_ep: usize) -> usize {
        let total = epochs * niter_per_ep;
        match *self {
            CurveSpec::Cosine { warmup_epochs, .. } => warmup_epochs.saturating_mul(niter_per_ep).min(total),
            CurveSpec::WarmupConstant { warmup_epochs, .. } => warmup_epochs.min(epochs) * niter_per_ep,
        }
    }

    #[cfg(test)]
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

    /// The curve regenerated by a `peak`, `final` or `warmup_epochs` edit; other kinds leave it.
    pub fn with(self, kind: EditKind) -> Self {
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
        assert_eq!(s.edit_count, 0);
        s.try_apply(edit(ScheduleName::Lr, EditKind::Peak(2e-3))).expect("a new peak");
        assert_eq!(s.edit_count, 1);
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

    /// The curves as the list of edits rendered them before edits were folded: every value
    /// rewritten from each edit's iteration on, in order.
    fn rendered_the_old_way(spec: CurveSpec, epochs: usize, niter: usize, edits: &[ScheduleEdit]) -> Vec<f64> {
        let mut spec_now = spec;
        let mut v = spec.render(epochs, niter);
        for e in edits {
            let from = e.from_iter.min(v.len());
            match e.kind {
                EditKind::Constant(x) => v[from..].iter_mut().for_each(|y| *y = x),
                EditKind::Scale(f) => v[from..].iter_mut().for_each(|y| *y *= f),
                kind => {
                    spec_now = spec_now.with(kind);
                    let fresh = spec_now.render(epochs, niter);
                    v[from..].copy_from_slice(&fresh[from..]);
                }
            }
        }
        v
    }

    #[test]
    fn folded_edits_draw_the_curve_the_edit_list_drew() {
        use EditKind::*;
        let specs = [
            CurveSpec::Cosine { base: 1e-3, final_value: 1e-6, warmup_epochs: 2, start_warmup_value: 0.0 },
            CurveSpec::WarmupConstant { start: 0.04, value: 0.07, warmup_epochs: 3 },
        ];
        let kinds = [Constant(0.5), Scale(0.5), Peak(2e-3), Final(1e-5), WarmupEpochs(1), Scale(3.0), Constant(1e-4), WarmupEpochs(0)];
        for spec in specs {
            assert_eq!((0..60).map(|i| spec.value_at(i, 6, 10)).collect::<Vec<_>>(), spec.render(6, 10), "value_at is render");
            let mut s = Schedule::new(spec, 6, 10);
            let mut edits = vec![];
            // A deterministic mix of kinds and iterations, some past the end, some repeated.
            for i in 0..200usize {
                let e = ScheduleEdit { schedule: ScheduleName::Lr, from_iter: (i * 37) % 70, kind: kinds[(i * 7) % kinds.len()] };
                s.apply(e);
                edits.push(e);
                let old = rendered_the_old_way(spec, 6, 10, &edits);
                for (k, (a, b)) in s.values().iter().zip(&old).enumerate() {
                    assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-300), "edit {i}, iteration {k}: {a} against {b}");
                }
                assert!(s.pieces.len() <= 61, "one piece per iteration at most: {}", s.pieces.len());
            }
            assert_eq!(s.edit_count, 200);
        }
    }

    #[test]
    fn edits_fold_so_the_description_stays_bounded() {
        let mut s = lr(100);
        for i in 0..10_000usize {
            // People set the same few things over and over: each replaces the last.
            s.try_apply(ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 100 + i % 5, kind: EditKind::Constant(1e-4) })
                .expect("in range");
        }
        assert_eq!(s.edit_count, 10_000);
        assert!(s.pieces.len() <= 5, "{:?}", s.pieces);
        // Pieces from more different iterations than the bound are refused with the reason.
        let mut s = lr(100);
        let refused = (0..MAX_PIECES + 5)
            .map(|i| s.try_apply(ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 10 + i, kind: EditKind::Scale(1.1) }))
            .filter_map(Result::err)
            .collect::<Vec<_>>();
        assert_eq!(refused.len(), 5);
        assert!(refused[0].to_string().contains("32 pieces"), "{}", refused[0]);
        // A constant from an early iteration folds them all away.
        s.try_apply(ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 5, kind: EditKind::Constant(1e-4) }).expect("folds");
        assert_eq!(s.pieces.len(), 1);
    }

    /// The largest `Schedules` event: four schedules with every piece taken, each a regenerated
    /// curve with the longest numbers, stays under 3/4 of the line limit both sides enforce.
    #[test]
    fn the_largest_schedules_message_fits_a_line() {
        let long = 1.2345678901234567e-300;
        let spec = CurveSpec::Cosine { base: long, final_value: long, warmup_epochs: usize::MAX, start_warmup_value: long };
        let mut s = Schedule::new(spec, usize::MAX / 1_000_000, 1_000_000);
        s.latest = spec;
        s.edit_count = usize::MAX;
        s.pieces = (0..MAX_PIECES).map(|i| Piece { from_iter: usize::MAX - i, source: Source::Curve(spec), factor: long }).collect();
        let e = crate::protocol::Event::Schedules { schedules: ScheduleName::ALL.iter().map(|n| (*n, s.clone())).collect() };
        let line = serde_json::to_string(&e).expect("json");
        assert!(line.len() < crate::protocol::MAX_LINE * 3 / 4, "{} bytes", line.len());
    }

    #[test]
    fn checkpoints_with_a_list_of_edits_still_read() {
        let json = r#"{"spec":{"shape":"cosine","base":1.0,"final_value":0.0,"warmup_epochs":0,"start_warmup_value":0.0},
            "epochs":2,"niter_per_ep":5,"edits":[{"schedule":"lr","from_iter":4,"kind":"constant","value":0.5}]}"#;
        let s: Schedule = serde_json::from_str(json).expect("old format");
        assert_eq!((s.value(3), s.value(4), s.edit_count), (lr_like(3), 0.5, 1));
        let back: Schedule = serde_json::from_str(&serde_json::to_string(&s).expect("json")).expect("new format");
        assert_eq!(back, s);
        // A piece out of range (an edited file) is left out on resume, with the reason.
        let mut bad = s.clone();
        bad.pieces[0].source = Source::Constant(-1.0);
        let mut fresh = Schedule::new(s.spec, 2, 5);
        let problems = fresh.adopt(ScheduleName::Lr, &bad);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(fresh.pieces.is_empty());
    }

    fn lr_like(i: usize) -> f64 {
        CurveSpec::Cosine { base: 1.0, final_value: 0.0, warmup_epochs: 0, start_warmup_value: 0.0 }.value_at(i, 2, 5)
    }
}
