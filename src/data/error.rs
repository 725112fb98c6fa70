use super::decode::DecodeError;
use std::path::PathBuf;

/// Everything that can go wrong in the data pipeline. Messages name the path involved, because
/// the person reading them usually has to go and look at that folder or file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data-set folder {0} does not exist")]
    MissingRoot(PathBuf),
    #[error("data path {path} is not a folder (it is {kind}); expected a folder with pretext/ or class folders")]
    NotAFolder { path: PathBuf, kind: &'static str },
    #[error(
        "no training images in {0}: expected a pretext/ folder (images at any depth) or class \
         folders holding images (ImageFolder layout)"
    )]
    NoImages(PathBuf),
    #[error("{split} split at {path} holds no images (extensions: jpg, jpeg, png, webp, bmp, tif, tiff, gif)")]
    EmptySplit { split: String, path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("every one of the {count} images is unreadable (last: {last})")]
    AllUnreadable { count: usize, last: String },
    #[error("data set of {images} images is smaller than one batch of {batch_size} (drop_last)")]
    TooFewImages { images: usize, batch_size: usize },
    #[error("no class of {val} matches a class of {train} by name: val/ has {val_classes}, train/ has {train_classes}")]
    NoCommonClass { train: PathBuf, val: PathBuf, train_classes: String, val_classes: String },
    #[error("invalid data setting: {0}")]
    Invalid(String),
    #[error("a loader worker stopped unexpectedly: {0}")]
    Worker(String),
    #[error("tensor creation failed: {0}")]
    Tensor(#[from] tch::TchError),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
