//! The schedule edit form: pick a schedule, pick how to change it, type a value. It only builds a
//! `ScheduleEdit`; the Schedules tab draws its preview and `update` sends it.

use crate::protocol::schedule::{EditKind, Schedule, ScheduleEdit, ScheduleName};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditChoice {
    Constant,
    Scale,
    Peak,
    Final,
    WarmupEpochs,
}

impl EditChoice {
    pub const ALL: [EditChoice; 5] =
        [EditChoice::Constant, EditChoice::Scale, EditChoice::Peak, EditChoice::Final, EditChoice::WarmupEpochs];

    pub fn label(self) -> &'static str {
        match self {
            EditChoice::Constant => "constant from now",
            EditChoice::Scale => "scale by factor",
            EditChoice::Peak => "new peak",
            EditChoice::Final => "new final",
            EditChoice::WarmupEpochs => "warm-up epochs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormField {
    Schedule,
    Kind,
    Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EditForm {
    /// Whether keys go to the form (typing digits must not switch tabs).
    pub active: bool,
    pub field: FormField,
    pub schedule: usize,
    pub kind: usize,
    pub value: String,
}

impl Default for EditForm {
    fn default() -> Self {
        Self { active: false, field: FormField::Value, schedule: 0, kind: 0, value: String::new() }
    }
}

/// Longest value a person plausibly types; keeps the field inside its box.
const MAX_VALUE_LEN: usize = 16;

impl EditForm {
    pub fn schedule_name(&self) -> ScheduleName {
        ScheduleName::ALL[self.schedule % ScheduleName::ALL.len()]
    }

    pub fn choice(&self) -> EditChoice {
        EditChoice::ALL[self.kind % EditChoice::ALL.len()]
    }

    pub fn next_field(&mut self, forward: bool) {
        use FormField::*;
        self.field = match (self.field, forward) {
            (Schedule, true) => Kind,
            (Kind, true) => Value,
            (Value, true) => Schedule,
            (Schedule, false) => Value,
            (Kind, false) => Schedule,
            (Value, false) => Kind,
        };
    }

    /// Left/Right: cycles the focused choice; the value field has none (one key, one job per
    /// field).
    pub fn cycle(&mut self, forward: bool) {
        let step = |i: usize, n: usize| if forward { (i + 1) % n } else { (i + n - 1) % n };
        match self.field {
            FormField::Schedule => self.schedule = step(self.schedule, ScheduleName::ALL.len()),
            FormField::Kind => self.kind = step(self.kind, EditChoice::ALL.len()),
            FormField::Value => {}
        }
    }

    /// Characters a number can contain; anything else is ignored so stray keys do no harm.
    pub fn type_char(&mut self, c: char) -> bool {
        if (c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')) && self.value.len() < MAX_VALUE_LEN {
            self.value.push(c);
            true
        } else {
            false
        }
    }

    pub fn backspace(&mut self) {
        self.value.pop();
    }

    /// The edit the form describes, starting at `from_iter`, or why it is not valid yet.
    pub fn edit(&self, from_iter: usize) -> Result<ScheduleEdit, String> {
        let schedule = self.schedule_name();
        let text = self.value.trim();
        if text.is_empty() {
            return Err("type a value".into());
        }
        let kind = match self.choice() {
            EditChoice::WarmupEpochs => {
                EditKind::WarmupEpochs(text.parse::<usize>().map_err(|_| format!("`{text}` is not a whole number of epochs"))?)
            }
            choice => {
                let v: f64 = text.parse().map_err(|_| format!("`{text}` is not a number"))?;
                match choice {
                    EditChoice::Constant => EditKind::Constant(v),
                    EditChoice::Scale => EditKind::Scale(v),
                    EditChoice::Peak => EditKind::Peak(v),
                    _ => EditKind::Final(v),
                }
            }
        };
        let edit = ScheduleEdit { schedule, from_iter, kind };
        edit.check_value().map_err(|e| e.to_string())?;
        Ok(edit)
    }

    /// `edit`, and the curve it makes checked against the schedule when the trainer sent it: the
    /// form refuses what the trainer would.
    pub fn checked_edit(&self, from_iter: usize, schedule: Option<&Schedule>) -> Result<ScheduleEdit, String> {
        let edit = self.edit(from_iter)?;
        if let Some(s) = schedule {
            s.check(&edit).map_err(|e| e.to_string())?;
        }
        Ok(edit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_each_kind_of_edit() {
        let mut f = EditForm::default();
        for c in "2.5e-4".chars() {
            assert!(f.type_char(c));
        }
        assert!(!f.type_char('x'));
        assert_eq!(f.edit(11), Ok(ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 11, kind: EditKind::Constant(2.5e-4) }));
        f.cycle(true);
        assert_eq!(f.choice(), EditChoice::Constant, "←/→ in the value field leave the kind alone");
        f.field = FormField::Kind;
        f.cycle(true);
        assert_eq!(f.edit(11).map(|e| e.kind), Ok(EditKind::Scale(2.5e-4)));
        f.field = FormField::Schedule;
        f.cycle(false);
        assert_eq!(f.schedule_name(), ScheduleName::Momentum);
        f.field = FormField::Kind;
        f.kind = 4;
        f.value = "3".into();
        assert_eq!(f.edit(0).map(|e| e.kind), Ok(EditKind::WarmupEpochs(3)));
        f.value = "1.5".into();
        assert!(f.edit(0).is_err());
    }

    #[test]
    fn rejects_nonsense_values() {
        let mut f = EditForm { value: "-1".into(), ..EditForm::default() };
        assert!(f.edit(0).is_err());
        f.value = "abc".into();
        assert!(f.edit(0).is_err());
        f.value.clear();
        assert!(f.edit(0).is_err());
        f.schedule = 3;
        f.value = "1.5".into();
        assert!(f.edit(0).unwrap_err().contains("momentum"));
        // The teacher temperature: 0 divides by zero.
        f.schedule = 2;
        f.value = "0".into();
        assert!(f.edit(0).unwrap_err().contains("(0, 1]"));
    }

    #[test]
    fn the_curve_is_checked_when_the_schedule_is_known() {
        use crate::protocol::schedule::CurveSpec;
        let momentum = Schedule::new(CurveSpec::Cosine { base: 0.9, final_value: 1.0, warmup_epochs: 0, start_warmup_value: 0.0 }, 2, 5);
        let f = EditForm { schedule: 3, kind: 1, value: "1.05".into(), ..EditForm::default() };
        assert!(f.edit(0).is_ok(), "a factor alone is fine");
        let why = f.checked_edit(0, Some(&momentum)).unwrap_err();
        assert!(why.contains("iteration") && why.contains("[0, 1]"), "{why}");
    }
}
