//! One scored image (a row of the outliers CSV), the score kinds a list can be ordered by, and the
//! one ordering every front-end uses (`dino outliers`, its CSV and the TUI's Outliers tab), with
//! each kind's tie-breaker, so the three never disagree on which image comes first.
//!
//! `auto` combines a mislabel and a stranger ranking without their units: each becomes a percentile
//! (its rank among the split's images), and an image scores the higher of its two percentiles. An
//! image is as suspicious as its most suspicious score; the top of the list interleaves the most
//! likely mislabels and the most likely strangers. (The mislabel side ranks by the vote margin,
//! `outlier_report` says why.)

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Which score orders the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    /// The higher of the mislabel and stranger percentiles (stranger alone without labels).
    Auto,
    /// Confident learning: 1 - the out-of-fold probe probability of the image's label.
    Mislabel,
    /// Distance to the k-th nearest neighbour in the reference set.
    Stranger,
    /// Vote margin of the nearest images of another class over those of the own label.
    Disagreement,
    /// Mean cosine distance to the k nearest images of the split.
    Isolation,
}

impl ScoreKind {
    pub const ALL: [ScoreKind; 5] = [Self::Auto, Self::Mislabel, Self::Stranger, Self::Disagreement, Self::Isolation];

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("invalid --score {s}: use auto, mislabel, stranger, disagreement or isolation"))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Mislabel => "mislabel",
            Self::Stranger => "stranger",
            Self::Disagreement => "disagreement",
            Self::Isolation => "isolation",
        }
    }

    /// Whether the kind needs folder labels.
    pub fn needs_labels(self) -> bool {
        matches!(self, Self::Mislabel | Self::Disagreement)
    }

    /// The score that breaks this one's ties.
    pub fn tie_breaker(self) -> Self {
        match self {
            Self::Auto | Self::Isolation => Self::Stranger,
            Self::Mislabel => Self::Disagreement,
            Self::Stranger => Self::Isolation,
            Self::Disagreement => Self::Mislabel,
        }
    }
}

/// One image: a row of the CSV, in its column order. Columns added after the first release are
/// optional so that older reports (a run directory's `evals/outliers-*.csv`) still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlierRow {
    /// Relative to the data set root.
    pub path: String,
    pub split: String,
    /// Folder label; empty on unlabeled splits.
    pub label: String,
    #[serde(default)]
    pub auto: Option<f64>,
    /// Which score made `auto`: `mislabel` or `stranger`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub mislabel: Option<f64>,
    #[serde(default)]
    pub stranger: Option<f64>,
    pub isolation: f64,
    pub disagreement: Option<f64>,
    /// The class the neighbours vote for; empty on unlabeled splits.
    pub predicted: String,
    /// The class confident learning counts the image under when that is not its label (a likely
    /// label error); empty otherwise.
    #[serde(default)]
    pub suggested: String,
    /// Paths of the nearest neighbours, nearest first, separated by `;`.
    pub neighbours: String,
    pub umap_x: f32,
    pub umap_y: f32,
}

impl OutlierRow {
    /// The row's value of a score, falling back to the nearest kind an older report has.
    pub fn score(&self, kind: ScoreKind) -> f64 {
        match kind {
            ScoreKind::Auto => self.auto.or(self.mislabel).or(self.disagreement).unwrap_or(self.isolation),
            ScoreKind::Mislabel => self.mislabel.or(self.disagreement).unwrap_or(self.isolation),
            ScoreKind::Stranger => self.stranger.unwrap_or(self.isolation),
            ScoreKind::Disagreement => self.disagreement.unwrap_or(self.isolation),
            ScoreKind::Isolation => self.isolation,
        }
    }

    pub fn neighbour_paths(&self) -> impl Iterator<Item = &str> {
        self.neighbours.split(';').filter(|s| !s.is_empty())
    }
}

/// The order of a list by `kind`: highest first, ties broken by the kind's second score, then by
/// path (only images whose scores are all equal get there).
pub fn compare(kind: ScoreKind, a: &OutlierRow, b: &OutlierRow) -> Ordering {
    let second = kind.tie_breaker();
    b.score(kind).total_cmp(&a.score(kind)).then_with(|| b.score(second).total_cmp(&a.score(second))).then_with(|| a.path.cmp(&b.path))
}

/// Percentile of every value: its 1-based rank from the lowest, over n, ties broken by `second`
/// (then by position), so every image gets its own percentile.
pub fn percentiles(values: &[f64], second: &[f64]) -> Vec<f64> {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(second[a].total_cmp(&second[b])).then(a.cmp(&b)));
    let mut out = vec![0.0; n];
    for (rank, i) in order.into_iter().enumerate() {
        out[i] = (rank + 1) as f64 / n as f64;
    }
    out
}

/// The `auto` score and the kind that made it, from the mislabel and stranger percentiles: the
/// higher percentile, plus the lower one / n and the stranger one / n² so that two images tie only
/// when both percentiles are equal (they are multiples of 1 / n).
pub fn auto_scores(mislabel: Option<&[f64]>, stranger: &[f64]) -> Vec<(f64, &'static str)> {
    let n = stranger.len().max(1) as f64;
    match mislabel {
        Some(m) => m
            .iter()
            .zip(stranger)
            .map(|(&um, &us)| {
                let kind = if um >= us { "mislabel" } else { "stranger" };
                (um.max(us) + um.min(us) / n + us / (n * n), kind)
            })
            .collect(),
        None => stranger.iter().map(|&us| (us, "stranger")).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_rank_every_value_apart() {
        let p = percentiles(&[0.5, 0.1, 0.5, 0.9], &[1.0, 0.0, 2.0, 0.0]);
        assert_eq!(p, vec![0.5, 0.25, 0.75, 1.0], "the tie of 0.5 goes to the higher second score");
    }

    #[test]
    fn auto_takes_the_higher_percentile_and_never_ties_swapped_ranks() {
        let um = [1.0, 0.5, 0.25];
        let us = [0.5, 1.0, 0.75];
        let a = auto_scores(Some(&um), &us);
        assert_eq!((a[0].1, a[1].1, a[2].1), ("mislabel", "stranger", "stranger"));
        assert!(a[0].0 != a[1].0, "swapped percentiles still differ: {a:?}");
        assert!(a[0].0 > 1.0 && a[0].0 < 1.0 + 1.0 / 3.0 + 0.1 && a[2].0 < a[1].0);
        assert_eq!(auto_scores(None, &us)[1], (1.0, "stranger"));
    }

    #[test]
    fn old_rows_fall_back_and_kinds_parse_by_name() {
        let mut r = OutlierRow {
            path: "a".into(),
            split: "train".into(),
            label: "x".into(),
            auto: None,
            kind: String::new(),
            mislabel: None,
            stranger: None,
            isolation: 0.2,
            disagreement: Some(0.7),
            predicted: "y".into(),
            suggested: String::new(),
            neighbours: String::new(),
            umap_x: 0.0,
            umap_y: 0.0,
        };
        assert_eq!(r.score(ScoreKind::Auto), 0.7);
        assert_eq!(r.score(ScoreKind::Stranger), 0.2);
        let mut b = r.clone();
        b.path = "b".into();
        b.isolation = 0.3;
        assert_eq!(compare(ScoreKind::Disagreement, &r, &b), Ordering::Less, "equal disagreement: ties by the next score");
        r.mislabel = Some(0.1);
        assert_eq!(r.score(ScoreKind::Mislabel), 0.1);
        for k in ScoreKind::ALL {
            assert_eq!(ScoreKind::parse(k.name()), Ok(k));
        }
        assert!(ScoreKind::parse("odd").unwrap_err().contains("auto"));
    }
}
