use super::decode::DecodeError;
use crate::files::ShowPath;
use std::path::PathBuf;

/// Everything that can go wrong in the data pipeline. Messages name the path involved, because
/// the person reading them usually has to go and look at that folder or file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data-set folder {} does not exist", .0.shown())]
    MissingRoot(PathBuf),
    #[error("data path {} is not a folder (it is {kind}); expected a folder with pretext/ or class folders", path.shown())]
    NotAFolder { path: PathBuf, kind: &'static str },
    #[error(
        "no training images in {}: expected a pretext/ folder (images at any depth) or class \
         folders holding images (ImageFolder layout)",
        .0.shown()
    )]
    NoImages(PathBuf),
    #[error("{split} split at {} holds no images (extensions: jpg, jpeg, png, webp, bmp, tif, tiff, gif)", path.shown())]
    EmptySplit { split: String, path: PathBuf },
    #[error("cannot read {}: {source}", path.shown())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("cannot write {}: {reason}", path.shown())]
    Write { path: PathBuf, reason: String },
    #[error("every one of the {count} images is unreadable (last: {last})")]
    AllUnreadable { count: usize, last: String },
    #[error("data set of {images} images is smaller than one batch of {batch_size} (drop_last)")]
    TooFewImages { images: usize, batch_size: usize },
    #[error("no class of {} matches a class of {} by name: val/ has {val_classes}, train/ has {train_classes}", val.shown(), train.shown())]
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
