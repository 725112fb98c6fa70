use crate::config::ConfigError;
use crate::data::DataError;
use crate::files::ShowPath;
use crate::model::weights::WeightsError;
use std::path::PathBuf;

/// What can go wrong while evaluating. Messages name the file or flag involved, since the fix is
/// usually a different path or a missing flag.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Invalid(String),
    #[error("data set {} has no labeled {split}/ split (expected {split}/CLASS/IMAGE folders)", root.shown())]
    NoLabeledSplit { root: PathBuf, split: String },
    #[error("cannot load model weights: {0}")]
    Source(String),
    #[error("cannot read or write {}: {message}", path.shown())]
    Io { path: PathBuf, message: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl ToString) -> Self {
        Self::Io { path: path.into(), message: e.to_string() }
    }
}
