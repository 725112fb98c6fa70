//! The reference's weighted k-NN classifier (`eval_knn.py: knn_classifier`): cosine similarity of
//! L2-normalised features, the k most similar training images vote for their class with weight
//! exp(similarity / T), top-1 and top-5 accuracy in percent.
//!
//! Differences from the reference, all where it breaks: the validation set goes in fixed-size
//! chunks (the reference's 100 chunks leave a chunk size of 0, and a crash, below 100 images);
//! k is clamped to the training-set size; top-5 is reported only with at least 5 classes; the
//! number of classes comes from the data. Vote ties go to the lower class index (a stable sort).

use super::features::{l2_normalize, LabeledFeatures};
use crate::files::ShowPath;
use serde::Serialize;
use tch::{Kind, Tensor};

/// Validation images compared with the whole training set at once: bounds the [chunk, N] matrix.
const CHUNK: i64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KnnResult {
    pub k: usize,
    pub top1: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top5: Option<f64>,
}

/// Vote sums, [B, C]: each of the k nearest training features (by dot product, so normalise
/// first) adds exp(similarity / T) to its class.
pub fn knn_votes(train: &Tensor, train_labels: &Tensor, query: &Tensor, k: usize, temperature: f64, num_classes: usize) -> Tensor {
    let k = (k as i64).min(train.size()[0]).max(1);
    let similarity = query.matmul(&train.transpose(0, 1));
    let (distances, indices) = similarity.topk(k, 1, true, true);
    let b = query.size()[0];
    let candidates = train_labels.view([1, -1]).expand([b, -1], false);
    let neighbours = candidates.gather(1, &indices, false);
    let one_hot = neighbours.one_hot(num_classes as i64).to_kind(Kind::Float);
    let weights = (distances / temperature).exp();
    (one_hot * weights.unsqueeze(-1)).sum_dim_intlist(1, false, Kind::Float)
}

/// Top-1 and top-5 accuracy (percent) of the weighted k-NN; features must be L2-normalised.
pub fn knn_classifier(
    train: &Tensor,
    train_labels: &Tensor,
    test: &Tensor,
    test_labels: &Tensor,
    k: usize,
    temperature: f64,
    num_classes: usize,
) -> KnnResult {
    let n_test = test.size()[0];
    let k_eff = (k as i64).min(train.size()[0]).max(1);
    let (mut top1, mut top5) = (0i64, 0i64);
    let mut start = 0;
    while start < n_test {
        let len = CHUNK.min(n_test - start);
        let q = test.narrow(0, start, len);
        let targets = test_labels.narrow(0, start, len);
        let votes = knn_votes(train, train_labels, &q, k, temperature, num_classes);
        let (_, predictions) = votes.sort_stable(true, 1, true);
        let correct = predictions.eq_tensor(&targets.view([-1, 1]));
        top1 += correct.narrow(1, 0, 1).sum(Kind::Int64).int64_value(&[]);
        top5 += correct.narrow(1, 0, 5.min(k_eff).min(num_classes as i64)).sum(Kind::Int64).int64_value(&[]);
        start += len;
    }
    let pct = |n: i64| if n_test == 0 { 0.0 } else { n as f64 * 100.0 / n_test as f64 };
    KnnResult { k, top1: pct(top1), top5: (num_classes >= 5).then(|| pct(top5)) }
}

/// The result of `dino eval knn`; serialises to the documented JSON object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnnReport {
    pub num_classes: usize,
    pub num_train: usize,
    pub num_val: usize,
    pub results: Vec<KnnResult>,
    /// Images of either split left out because they cannot be read: `path: why`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// Classes on one side of train/val only (set by the caller, which knows the layout).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl KnnReport {
    pub fn result(&self, k: usize) -> Option<&KnnResult> {
        self.results.iter().find(|r| r.k == k)
    }

    /// The reference's printout, one line per k, as a small table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "weighted k-NN: {} classes, {} train / {} val images\n{:>6}  {:>7}  {:>7}\n",
            self.num_classes, self.num_train, self.num_val, "k", "top-1", "top-5"
        );
        for r in &self.results {
            let top5 = r.top5.map(|v| format!("{v:>6.2}%")).unwrap_or_else(|| format!("{:>7}", "-"));
            s.push_str(&format!("{:>6}  {:>6.2}%  {top5}\n", r.k, r.top1));
        }
        if self.num_classes < 5 {
            s.push_str("(top-5 is not reported with fewer than 5 classes)\n");
        }
        s
    }

    /// A one-line summary for the TUI and logs: the k=20 result, or the first one.
    pub fn summary(&self) -> String {
        match self.result(20).or(self.results.first()) {
            Some(r) => {
                let skipped =
                    if self.unreadable.is_empty() { String::new() } else { format!(", {} unreadable skipped", self.unreadable.len()) };
                format!("k-NN top-1 {:.2}% (k={}, {} val images{skipped})", r.top1, r.k, self.num_val)
            }
            None => "k-NN: no result".into(),
        }
    }
}

/// Every k of `ks` on a pair of (unnormalised) feature sets.
pub fn knn_report(train: &LabeledFeatures, val: &LabeledFeatures, ks: &[usize], temperature: f64) -> KnnReport {
    let num_classes = train.num_classes().max(val.num_classes());
    let (tf, vf) = (l2_normalize(&train.features), l2_normalize(&val.features));
    let results =
        tch::no_grad(|| ks.iter().map(|&k| knn_classifier(&tf, &train.labels, &vf, &val.labels, k, temperature, num_classes)).collect());
    let unreadable = train.skipped.iter().chain(&val.skipped).map(|u| format!("{}: {}", u.path.shown(), u.reason)).collect();
    KnnReport { num_classes, num_train: train.len(), num_val: val.len(), results, unreadable, warnings: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(rows: &[[f32; 2]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).reshape([rows.len() as i64, 2])
    }

    fn labels(v: &[i64]) -> Tensor {
        Tensor::from_slice(v)
    }

    fn vec2(t: &Tensor) -> Vec<f32> {
        Vec::try_from(t.flatten(0, -1)).unwrap()
    }

    /// Unit vectors at known angles, so every similarity is a cosine we can write down.
    fn unit(deg: f64) -> [f32; 2] {
        let r = deg.to_radians();
        [r.cos() as f32, r.sin() as f32]
    }

    #[test]
    fn votes_are_sums_of_exp_similarity_over_t() {
        // Query at 0 degrees; training points at 0 (class 0), 60 (class 1), 90 (class 1), 180 (class 0).
        let train = t2(&[unit(0.0), unit(60.0), unit(90.0), unit(180.0)]);
        let tl = labels(&[0, 1, 1, 0]);
        let q = t2(&[unit(0.0)]);
        let t = 0.5;
        // k = 3 takes similarities 1, 0.5, 0: class 0 gets e^2, class 1 gets e^1 + e^0.
        let v = vec2(&knn_votes(&train, &tl, &q, 3, t, 2));
        let expect = [(2.0f64).exp(), (1.0f64).exp() + 1.0];
        assert!((v[0] as f64 - expect[0]).abs() < 1e-4, "{v:?}");
        assert!((v[1] as f64 - expect[1]).abs() < 1e-4, "{v:?}");
        // Class 0 wins (7.39 > 3.72): top-1 is right for label 0.
        let r = knn_classifier(&train, &tl, &q, &labels(&[0]), 3, t, 2);
        assert_eq!(r.top1, 100.0);
        assert_eq!(r.top5, None, "fewer than 5 classes: no top-5");
        // With a small temperature the nearest neighbour dominates; with a huge one the
        // count does: k = 3, T = 1000 gives class 1 two votes of ~1 against one.
        let r = knn_classifier(&train, &tl, &q, &labels(&[1]), 3, 1000.0, 2);
        assert_eq!(r.top1, 100.0);
    }

    #[test]
    fn k_larger_than_the_training_set_uses_all_of_it() {
        let train = t2(&[unit(0.0), unit(10.0), unit(170.0)]);
        let tl = labels(&[0, 0, 1]);
        let q = t2(&[unit(175.0)]);
        let all = vec2(&knn_votes(&train, &tl, &q, 200, 0.07, 2));
        let exact = vec2(&knn_votes(&train, &tl, &q, 3, 0.07, 2));
        assert_eq!(all, exact);
        let r = knn_classifier(&train, &tl, &q, &labels(&[1]), 200, 0.07, 2);
        assert_eq!((r.k, r.top1), (200, 100.0));
    }

    #[test]
    fn vote_ties_go_to_the_lower_class_index() {
        // Two neighbours at the same angle on either side: equal weights for classes 1 and 2.
        let train = t2(&[unit(30.0), unit(-30.0)]);
        let tl = labels(&[2, 1]);
        let q = t2(&[unit(0.0)]);
        let v = vec2(&knn_votes(&train, &tl, &q, 2, 0.07, 3));
        assert_eq!(v[0], 0.0);
        assert!((v[1] - v[2]).abs() < 1e-6);
        assert_eq!(knn_classifier(&train, &tl, &q, &labels(&[1]), 2, 0.07, 3).top1, 100.0);
        assert_eq!(knn_classifier(&train, &tl, &q, &labels(&[2]), 2, 0.07, 3).top1, 0.0);
    }

    #[test]
    fn top5_needs_five_classes_and_counts_the_first_five() {
        // Six classes, one training point each at increasing angle from the query.
        let train = t2(&[unit(0.0), unit(10.0), unit(20.0), unit(30.0), unit(40.0), unit(50.0)]);
        let tl = labels(&[0, 1, 2, 3, 4, 5]);
        let q = t2(&[unit(0.0), unit(0.0)]);
        // Truth 4 is the 5th nearest (top-5 hit), truth 5 the 6th (miss).
        let r = knn_classifier(&train, &tl, &q, &labels(&[4, 5]), 6, 0.07, 6);
        assert_eq!(r.top1, 0.0);
        assert_eq!(r.top5, Some(50.0));
        // With 4 classes top-5 is omitted.
        let r = knn_classifier(&train, &labels(&[0, 1, 2, 3, 3, 3]), &q, &labels(&[0, 0]), 6, 0.07, 4);
        assert_eq!(r.top5, None);
    }

    #[test]
    fn any_validation_size_works() {
        let train = l2_normalize(&Tensor::randn([100, 8], (Kind::Float, tch::Device::Cpu)));
        let tl = Tensor::arange(100, (Kind::Int64, tch::Device::Cpu)).remainder(5);
        for n in 1..100i64 {
            let q = train.narrow(0, 0, n);
            let ql = tl.narrow(0, 0, n);
            // Each validation image is also a training image: with k = 1 it finds itself.
            let r = knn_classifier(&train, &tl, &q, &ql, 1, 0.07, 5);
            assert_eq!(r.top1, 100.0, "n = {n}");
        }
        // More than one chunk.
        let big = l2_normalize(&Tensor::randn([600, 8], (Kind::Float, tch::Device::Cpu)));
        let bl = Tensor::arange(600, (Kind::Int64, tch::Device::Cpu)).remainder(5);
        assert_eq!(knn_classifier(&big, &bl, &big, &bl, 1, 0.07, 5).top1, 100.0);
    }

    #[test]
    fn report_serialises_to_the_documented_object() {
        let no_notes = || KnnReport { num_classes: 0, num_train: 0, num_val: 0, results: vec![], unreadable: vec![], warnings: vec![] };
        let r = KnnReport {
            num_classes: 4,
            num_train: 10,
            num_val: 3,
            results: vec![KnnResult { k: 20, top1: 81.25, top5: None }],
            ..no_notes()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v, serde_json::json!({"num_classes": 4, "num_train": 10, "num_val": 3, "results": [{"k": 20, "top1": 81.25}]}));
        assert!(r.table().contains("81.25%"));
    }
}
