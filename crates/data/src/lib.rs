//! Datasets (PASCAL VOC + SBD, Cityscapes, folder datasets with CamVid / Weizmann Horse / Stanford Background
//! presets, procedural synthetic scenes), UniMatch augmentations and loaders.
//!
//! Everything random is drawn from [`core_seg::rng::SegRng`] streams keyed by `(seed, epoch, position)`, so
//! batches do not depend on thread scheduling.

pub mod augment;
mod batch;
pub mod check;
pub mod dataset;
pub mod error;
pub mod folder;
pub mod io;
pub mod loader;
pub mod palette;
pub mod prefetch;
pub mod sparse;
pub mod splits;
pub mod synthetic;

pub use augment::AugConfig;
pub use dataset::{Dataset, DatasetKind, FileDataset, RawSample};
pub use error::{Error, Result};
pub use io::{Mask, RgbImage};
pub use loader::{val_samples, Loader, LoaderConfig, MixPartner, ValSample};
