//! The data pipeline: where the images are (`layout`), how a file becomes pixels (`decode`), the
//! DINO multi-crop views (`augment`), the parallel loader that batches them (`loader`) and the
//! synthetic demo set (`demo`).

pub mod augment;
pub mod classes;
pub mod decode;
pub mod demo;
mod error;
pub mod exclude;
pub mod layout;
pub mod loader;
mod resample;
mod rng;

pub use augment::{
    eval_transform, square_transform, supervised_train_transform, whole_view, AugmentConfig, ColourAugment, MultiCropAugment,
};
pub use decode::{decode_rgb, load_rgb, load_rgb_limited, DecodeError, DecodeLimits};
pub use demo::{write_demo_dataset, DemoSummary};
pub use error::DataError;
pub use layout::{DataLayout, LeftOut, Split};
pub use loader::{Batch, LoaderConfig, MultiCropLoader, Shard, SkippedFile};
