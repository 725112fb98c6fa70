//! How good the features behind an outlier report are, and so which claims the report may make:
//! the cross-validated k-NN accuracy of the features on the labelled split beside the same network
//! with random weights (the same folds), and the rule that decides when an image may be called a
//! likely label error.
//!
//! A "likely label error" says that the image's folder label is probably wrong. The report only
//! knows that two classifiers of the features, trained out of fold, vote for another class; that
//! points at the label only when the classifiers are right most of the time. With k-NN at about
//! 50 % on four classes (random weights 48 %), half of all images are out-voted, label error or
//! not: calling 541 of 1,000 images "likely label errors" there is a claim the evidence does not
//! carry. So the claim is made only when the features are shown to be good (`supports_claims`) and,
//! per image, when the vote is confident and both classifiers name the same class
//! (`likely_class`); otherwise the report ranks by disagreement and says why, in one line.

use super::confident::stratified_folds;
use super::knn::knn_classifier;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// Gain over random weights, in k-NN points, that counts as "the features learned something": the
/// health verdict's (and so the demo's) margin, one rule for every claim. Fold-to-fold and seed-to-seed
/// spreads of random weights are 1-3 points on the sets measured (docs/outliers.md), so 10 points
/// is several spreads.
pub const MIN_GAIN: f64 = crate::protocol::health::LEARNING_MARGIN;
/// The gain must also be this many standard errors of the difference of the two accuracies
/// (binomial, n images): on a small split 10 points can be noise (n = 100: one standard error
/// of a 50 % accuracy is 5 points).
pub const MIN_STANDARD_ERRORS: f64 = 3.0;
/// Cross-validated k-NN accuracy (percent) at which the features separate the classes whatever
/// random weights do: at most 1 image in 10 is out-voted at all, so a confident vote against a
/// label is rare enough to be worth a look as a label error. An architecture whose random weights
/// already separate the classes (flat colours, say) gives evidence about the labels too; beating
/// random weights only says that training helped.
pub const SEPARATES: f64 = 90.0;
/// Per image: the voted class's share of the weighted k-NN vote minus the label's share (the
/// `disagreement` score) must reach this. Measured on the colour set of `tests/outliers.rs`
/// (random tiny ViT, k = 5): the four misfiled images, filed in pairs so that each pair vouches
/// for itself in the wrong folder, have margins 0.30-0.56; every clean image -0.21 or less. 0.2
/// keeps the pairs and leaves out a vote won by a hair (a near tie of two classes).
pub const CONFIDENT_MARGIN: f64 = 0.2;

/// Cross-validated k-NN of the features of a labelled split and of random weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureEvidence {
    /// Top-1 accuracy (percent) of the weighted k-NN, each fold classified by the others.
    pub knn: f64,
    /// The same with the same network's random weights; `None` when not measured.
    pub random: Option<f64>,
    /// 100 / number of classes.
    pub chance: f64,
    pub images: usize,
    pub folds: usize,
    pub k: usize,
}

impl FeatureEvidence {
    /// One standard error (points) of the difference of the two accuracies, binomial on `images`.
    pub fn standard_error(&self) -> f64 {
        let n = self.images.max(1) as f64;
        let var = |pct: f64| {
            let p = (pct / 100.0).clamp(0.0, 1.0);
            p * (1.0 - p) / n
        };
        100.0 * (var(self.knn) + self.random.map_or(0.0, var)).sqrt()
    }

    /// The gain over random weights the features need (points).
    pub fn needed_gain(&self) -> f64 {
        MIN_GAIN.max(MIN_STANDARD_ERRORS * self.standard_error())
    }

    /// Whether images may be called likely label errors: the features separate the classes
    /// (`SEPARATES`), or they beat the same network's random weights by `needed_gain`.
    pub fn supports_claims(&self) -> bool {
        self.knn >= SEPARATES || self.random.is_some_and(|r| self.knn - r >= self.needed_gain())
    }

    /// A few words for a log line: the two accuracies and whether the report claims label errors.
    pub fn short(&self) -> String {
        let random = self.random.map_or_else(|| "random not measured".to_string(), |r| format!("random {r:.1} %"));
        let claim = if self.supports_claims() { "label errors claimed" } else { "no label-error claim" };
        format!("k-NN {:.1} % vs {random}: {claim}", self.knn)
    }

    /// One line for people: the numbers and what the report claims because of them.
    pub fn line(&self) -> String {
        let random = self.random.map_or_else(|| "random weights not measured".to_string(), |r| format!("random weights {r:.1} %"));
        let numbers =
            format!("k-NN of the features {:.1} % ({}-fold, k = {}; {random}; chance {:.1} %)", self.knn, self.folds, self.k, self.chance);
        if self.supports_claims() {
            let why = if self.knn >= SEPARATES {
                format!("the features separate the classes (at least {SEPARATES:.0} %)")
            } else {
                format!("the features beat random weights by at least {:.1} points", self.needed_gain())
            };
            format!("{numbers}: {why}; confident votes against a label are called likely label errors")
        } else {
            let why = match self.random {
                Some(r) if self.knn - r < self.needed_gain() => {
                    format!("features barely beat random weights ({:.1} % vs {r:.1} %, {:.1} points needed)", self.knn, self.needed_gain())
                }
                _ => format!("features below {SEPARATES:.0} % without a random-weights baseline beaten"),
            };
            format!("{numbers}: {why}: ranking by disagreement, no label-error claim")
        }
    }
}

/// Top-1 accuracy (percent) of the weighted k-NN (`knn_classifier`, the reference's) on
/// L2-normalised features, each of `folds` stratified folds (`stratified_folds`, the folds of the
/// mislabel probe) classified with the other folds as the bank.
pub fn cross_validated_knn(
    normed: &Tensor,
    labels: &[usize],
    num_classes: usize,
    k: usize,
    temperature: f64,
    folds: usize,
    seed: u64,
) -> f64 {
    let n = labels.len();
    let fold = stratified_folds(labels, folds, seed);
    let x = normed.to_device(Device::Cpu);
    let index = |ids: &[usize]| Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let lab = |ids: &[usize]| Tensor::from_slice(&ids.iter().map(|&i| labels[i] as i64).collect::<Vec<_>>());
    let mut correct = 0.0;
    let mut counted = 0usize;
    for f in 0..folds.max(2) {
        let held: Vec<usize> = (0..n).filter(|&i| fold[i] == f).collect();
        let bank: Vec<usize> = (0..n).filter(|&i| fold[i] != f).collect();
        if held.is_empty() || bank.is_empty() {
            continue;
        }
        let r = knn_classifier(
            &x.index_select(0, &index(&bank)),
            &lab(&bank),
            &x.index_select(0, &index(&held)),
            &lab(&held),
            k,
            temperature,
            num_classes,
        );
        correct += r.top1 * held.len() as f64 / 100.0;
        counted += held.len();
    }
    if counted == 0 {
        0.0
    } else {
        100.0 * correct / counted as f64
    }
}

/// The class an image is called a likely label error for, if any: only when the evidence supports
/// claims, the k-NN vote (`voted`, margin `margin`) is confident against the label, and confident
/// learning's class (`joint`) is the same class. Two out-of-fold classifiers of different kinds
/// agreeing is what makes the claim; and a row never reads "voted X ... likely Y".
pub fn likely_class(supports: bool, label: usize, voted: usize, margin: f64, joint: Option<usize>) -> Option<usize> {
    (supports && voted != label && margin >= CONFIDENT_MARGIN && joint == Some(voted)).then_some(voted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(knn: f64, random: Option<f64>, images: usize) -> FeatureEvidence {
        FeatureEvidence { knn, random, chance: 25.0, images, folds: 5, k: 10 }
    }

    #[test]
    fn claims_need_features_that_separate_or_clearly_beat_random_weights() {
        // The numbers: 50 % against 48 % on 1,000 images.
        let weak = evidence(50.1, Some(48.0), 1000);
        assert!(!weak.supports_claims());
        assert!(weak.line().contains("features barely beat random weights (50.1 % vs 48.0 %"), "{}", weak.line());
        assert!(weak.line().ends_with("ranking by disagreement, no label-error claim"), "{}", weak.line());
        // +12 points on 1,000 images: 3 standard errors are about 6.6 points, the floor 10.
        let learned = evidence(60.0, Some(48.0), 1000);
        assert!((learned.standard_error() - 2.22).abs() < 0.01, "{}", learned.standard_error());
        assert!(learned.supports_claims(), "{}", learned.line());
        // The same gain on 60 images is within the noise (3 standard errors: 27 points).
        assert!(!evidence(60.0, Some(48.0), 60).supports_claims());
        // Features that separate the classes, random weights as good: claims (the colour set).
        assert!(evidence(98.0, Some(98.0), 60).supports_claims());
        assert!(!evidence(80.0, None, 1000).supports_claims(), "no baseline, not separating: no claim");
    }

    #[test]
    fn a_claim_needs_the_vote_and_confident_learning_to_name_the_same_confident_class() {
        let (airplane, ship, truck) = (0, 2, 3);
        // The row: the neighbours vote ship, confident learning says airplane; label truck.
        assert_eq!(likely_class(true, truck, ship, 0.9, Some(airplane)), None, "voted ship ... likely airplane");
        assert_eq!(likely_class(true, truck, ship, 0.9, Some(ship)), Some(ship));
        assert_eq!(likely_class(true, truck, ship, 0.1, Some(ship)), None, "an unsure vote");
        assert_eq!(likely_class(false, truck, ship, 0.9, Some(ship)), None, "weak features");
        assert_eq!(likely_class(true, truck, truck, -0.9, None), None);
    }
}
