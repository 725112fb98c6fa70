//! A schedule as its base curve plus the pieces its edits left: each edit is folded in as it
//! comes (an edit from iteration N that replaces the curve drops every piece from N on; a scale
//! splits the piece it starts in and multiplies the ones after), so the description stays bounded
//! however many edits a run has had (`MAX_PIECES`), applying one costs O(pieces), and a value is a
//! lookup. Every edit itself is kept in `events.jsonl`, for the history.

use super::{CurveSpec, EditKind, EditRefused, ScheduleEdit, ScheduleName};
use serde::{Deserialize, Serialize};

/// Most pieces a schedule may have: bounds the `Schedules` message a client gets (four schedules
/// of this many pieces, each with the longest numbers, stay under 3/4 of the clients' line limit;
/// a test checks it). Edits that replace the curve fold away the pieces after them, and an edit
/// that changes nothing adds none, so only edits from this many different iterations that all
/// still apply can reach it.
pub const MAX_PIECES: usize = 32;
/// Edits `undo` can take back (snapshots kept in memory, not sent or saved).
pub const UNDO_DEPTH: usize = 32;

/// What a piece draws before its factor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A generated curve (the base one, or one a `peak`/`final`/`warmup_epochs` edit regenerated).
    Curve(CurveSpec),
    Constant(f64),
}

/// The curve from `from_iter` up to the next piece (or the end).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    pub from_iter: usize,
    pub source: Source,
    /// The product of the `scale` edits that apply here.
    pub factor: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "ScheduleData")]
pub struct Schedule {
    /// The curve before any edit (the config's).
    pub spec: CurveSpec,
    pub epochs: usize,
    pub niter_per_ep: usize,
    /// In order of `from_iter`, no two from the same iteration; before the first, `spec` holds.
    pub pieces: Vec<Piece>,
    /// What the next regenerating edit changes: `spec` with every `peak`, `final` and
    /// `warmup_epochs` edit so far, even those whose pieces later edits replaced.
    pub latest: CurveSpec,
    /// Edits applied in all (for "12 edits" in the TUI); the edits themselves are in events.jsonl.
    pub edit_count: usize,
    /// The states before the last edits, newest last.
    #[serde(skip)]
    undo: Vec<(Vec<Piece>, CurveSpec, usize)>,
}

impl PartialEq for Schedule {
    /// What the schedule is, not what it could undo.
    fn eq(&self, o: &Self) -> bool {
        (self.spec, self.epochs, self.niter_per_ep, &self.pieces, self.latest, self.edit_count)
            == (o.spec, o.epochs, o.niter_per_ep, &o.pieces, o.latest, o.edit_count)
    }
}

/// A schedule as it travels (checkpoints, the control socket). Checkpoints written before edits
/// were folded carry the list of edits instead of pieces: it is folded on reading.
#[derive(Deserialize)]
struct ScheduleData {
    spec: CurveSpec,
    epochs: usize,
    niter_per_ep: usize,
    #[serde(default)]
    pieces: Vec<Piece>,
    latest: Option<CurveSpec>,
    #[serde(default)]
    edit_count: usize,
    #[serde(default)]
    edits: Vec<ScheduleEdit>,
}

impl From<ScheduleData> for Schedule {
    fn from(d: ScheduleData) -> Self {
        let mut s = Schedule::new(d.spec, d.epochs, d.niter_per_ep);
        for e in d.edits {
            s.apply(e);
        }
        if !s.pieces.is_empty() {
            s.undo.clear();
            return s;
        }
        // Order is what lookups rely on; a hand-edited file may not keep it.
        let mut pieces = d.pieces;
        pieces.sort_by_key(|p| p.from_iter);
        pieces.dedup_by_key(|p| p.from_iter);
        Schedule { pieces, latest: d.latest.unwrap_or(d.spec), edit_count: d.edit_count, ..s }
    }
}

impl Piece {
    fn value(&self, i: usize, epochs: usize, niter_per_ep: usize) -> f64 {
        match self.source {
            Source::Curve(spec) => spec.value_at(i, epochs, niter_per_ep) * self.factor,
            Source::Constant(x) => x * self.factor,
        }
    }
}

impl Schedule {
    pub fn new(spec: CurveSpec, epochs: usize, niter_per_ep: usize) -> Self {
        Self { spec, epochs, niter_per_ep, pieces: vec![], latest: spec, edit_count: 0, undo: vec![] }
    }

    pub fn len(&self) -> usize {
        self.epochs * self.niter_per_ep
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The piece in force at iteration `i` (the base curve, as a piece, before the first).
    fn piece_at(&self, i: usize) -> Piece {
        match self.pieces.partition_point(|p| p.from_iter <= i) {
            0 => Piece { from_iter: 0, source: Source::Curve(self.spec), factor: 1.0 },
            k => self.pieces[k - 1],
        }
    }

    /// The value at a global iteration; past the end the last value holds.
    pub fn value(&self, iter: usize) -> f64 {
        let i = iter.min(self.len().saturating_sub(1));
        self.piece_at(i).value(i, self.epochs, self.niter_per_ep)
    }

    /// The whole curve as it is now.
    pub fn values(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.value(i)).collect()
    }

    /// The curve as it would be with one more edit: the preview the TUI draws before applying.
    pub fn preview(&self, edit: &ScheduleEdit) -> Vec<f64> {
        let mut s = self.clone();
        s.fold(*edit);
        s.values()
    }

    /// Whether `edit` may be applied: its value (`ScheduleEdit::check_value`), the curve it
    /// makes at every iteration from its first on (a `scale` of a momentum that rises to 1, or a
    /// `peak` reached after a warm-up, can leave the range where the value alone does not), and
    /// the number of pieces it leaves.
    pub fn check(&self, edit: &ScheduleEdit) -> Result<(), EditRefused> {
        edit.check_value()?;
        let mut s = self.clone();
        s.fold(*edit);
        if s.pieces.len() > MAX_PIECES {
            return Err(EditRefused::TooManyPieces { label: edit.schedule.label() });
        }
        s.check_range(edit.schedule, edit.from_iter, s.len())
    }

    /// Whether every value of iterations `from..to` is one `name` allows. Each piece is monotone
    /// on each side of its curve's warm-up end, so looking at the ends of those stretches covers
    /// every value in between: O(pieces), not O(iterations).
    pub fn check_range(&self, name: ScheduleName, from: usize, to: usize) -> Result<(), EditRefused> {
        let to = to.min(self.len());
        let starts = self.pieces.iter().map(|p| p.from_iter).filter(|f| *f > from && *f < to);
        let mut bounds: Vec<usize> = std::iter::once(from.min(to)).chain(starts).collect();
        bounds.push(to);
        for w in bounds.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a >= b {
                continue;
            }
            let piece = self.piece_at(a);
            let mut probes = vec![a, b - 1];
            if let Source::Curve(spec) = piece.source {
                let turn = spec.warmup_end(self.epochs, self.niter_per_ep);
                probes.extend([turn.saturating_sub(1), turn].into_iter().filter(|t| (a..b).contains(t)));
            }
            for i in probes {
                let v = piece.value(i, self.epochs, self.niter_per_ep);
                if !name.allows(v) {
                    return Err(EditRefused::Curve { label: name.label(), value: v, iter: i, expected: name.range_text() });
                }
            }
        }
        Ok(())
    }

    /// Applies an edit after `check`; a refused edit changes nothing.
    pub fn try_apply(&mut self, edit: ScheduleEdit) -> Result<(), EditRefused> {
        self.check(&edit)?;
        self.apply(edit);
        Ok(())
    }

    /// Applies an edit, unchecked (`try_apply` checks), keeping the state before it for `undo`.
    pub fn apply(&mut self, edit: ScheduleEdit) {
        if self.undo.len() == UNDO_DEPTH {
            self.undo.remove(0);
        }
        self.undo.push((self.pieces.clone(), self.latest, self.edit_count));
        self.fold(edit);
    }

    /// Takes back the last edit (of the last `UNDO_DEPTH`); returns whether there was one.
    pub fn undo(&mut self) -> Option<()> {
        let (pieces, latest, edit_count) = self.undo.pop()?;
        (self.pieces, self.latest, self.edit_count) = (pieces, latest, edit_count);
        Some(())
    }

    /// The pieces after `edit`. As the list of edits did: values from `from_iter` on (clamped
    /// to the run) replaced or multiplied, a regenerating edit changing `latest` even where
    /// nothing of its curve is left.
    fn fold(&mut self, edit: ScheduleEdit) {
        let from = edit.from_iter.min(self.len());
        self.edit_count += 1;
        let source = match edit.kind {
            // A factor of 1 changes nothing and leaves no piece.
            EditKind::Scale(1.0) => return,
            EditKind::Scale(f) => {
                self.split_at(from);
                self.pieces.iter_mut().filter(|p| p.from_iter >= from).for_each(|p| p.factor *= f);
                return;
            }
            EditKind::Constant(x) => Source::Constant(x),
            kind => {
                self.latest = self.latest.with(kind);
                Source::Curve(self.latest)
            }
        };
        self.pieces.truncate(self.pieces.partition_point(|p| p.from_iter < from));
        let piece = Piece { from_iter: from, source, factor: 1.0 };
        // The same value set again (a script repeating itself) continues the piece in force.
        if self.pieces.last().map(|p| (p.source, p.factor)) != Some((source, 1.0)) {
            self.pieces.push(piece);
        }
    }

    /// Makes a piece start at `from` (a copy of the one in force there), so a scale from `from`
    /// on leaves the iterations before it alone.
    fn split_at(&mut self, from: usize) {
        let k = self.pieces.partition_point(|p| p.from_iter < from);
        if self.pieces.get(k).is_some_and(|p| p.from_iter == from) {
            return;
        }
        let piece = Piece { from_iter: from, ..self.piece_at(from) };
        self.pieces.insert(k, piece);
    }

    /// This (fresh) schedule with the pieces a checkpoint's copy of it holds, for a resumed run.
    /// Pieces whose values leave the schedule's range (a checkpoint written before edits were
    /// checked, or edited by hand) and pieces beyond `MAX_PIECES` are left out: returns why.
    pub fn adopt(&mut self, name: ScheduleName, saved: &Schedule) -> Vec<String> {
        let mut problems = vec![];
        if saved.pieces.len() > MAX_PIECES {
            let extra = saved.pieces.len() - MAX_PIECES;
            problems.push(format!("{extra} pieces of the {} beyond the first {MAX_PIECES} left out", name.label()));
        }
        (self.pieces, self.latest, self.edit_count) =
            (saved.pieces.iter().take(MAX_PIECES).copied().collect(), saved.latest, saved.edit_count);
        // Each piece over the iterations it is in force; leaving one out hands its iterations to
        // the piece before, which is then looked at again.
        let mut k = 0;
        while k < self.pieces.len() {
            let (from, to) = (self.pieces[k].from_iter, self.pieces.get(k + 1).map_or(self.len(), |p| p.from_iter));
            match self.check_range(name, from, to) {
                Ok(()) => k += 1,
                Err(reason) => {
                    problems.push(format!("a piece from iteration {from} left out: {reason}"));
                    self.pieces.remove(k);
                    k = k.saturating_sub(1);
                }
            }
        }
        problems
    }
}
