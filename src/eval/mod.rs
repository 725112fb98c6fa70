//! Evaluation of frozen features: extraction (with a cache), the reference's weighted k-NN, the
//! linear probe, label-efficiency experiments, image search and copy detection, and the records
//! they leave in a run directory.
//!
//! Every entry point takes a backbone already built (from a checkpoint, a weights file or random
//! initialisation, see `source`), so the CLI, the trainer thread and the tests share one code path.

pub mod attention;
pub mod confident;
pub mod copy_detection;
pub mod copy_pairs;
pub mod curves;
mod error;
pub mod evidence;
pub mod features;
pub mod figure;
pub mod heatmap;
pub mod knn;
pub mod label_efficiency;
pub mod linear;
pub mod live;
pub mod outlier_report;
pub mod outlier_row;
pub mod outliers;
pub mod plot;
pub mod record;
pub mod sampling;
pub mod search;
pub mod source;
pub mod supervised;
pub mod umap;
pub mod worker;

pub use error::EvalError;
pub use features::{EvalTransform, ExtractOptions, FeatureCache, FeatureKind, LabeledFeatures};
pub use knn::{knn_classifier, KnnReport, KnnResult};
pub use source::{CheckpointKey, ModelSource, SourceSpec};
