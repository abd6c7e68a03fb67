//! `semiseg`: a training run assembled from one config.
//!
//! A [`config::RunConfig`] (one TOML file) names the datasets, the model, the framework, the method terms, the
//! schedule and the evaluation; this crate builds all of it on `core-seg`, `data` and the method crates, and
//! holds what runs on top: the reproduce engine (recipes × seeds → `results.json`, `report.md`, figures),
//! prediction on image files, and diagnostics. `cargo xtask` is a command line over it.
//!
//! - [`config`]: the run config; [`datasets`]: its datasets and the batch stream.
//! - [`train`]: one run ([`Runner`]); [`eval`]: evaluation and inference weights; [`methods`]: the method
//!   plug-ins (one registration line per method crate).
//! - [`reproduce`]: recipes, the engine, reports; [`plots`]: their figures.
//! - [`predict`], [`diagnose`], [`pretrain`], [`bench`], [`gpus`] (devices, the multi-GPU launcher),
//!   [`runtime`] (progress bar, CSV and TensorBoard logs).

pub mod bench;
pub mod config;
pub mod datasets;
pub mod diagnose;
pub mod error;
pub mod eval;
pub mod gpus;
pub mod methods;
pub mod plots;
pub mod predict;
pub mod pretrain;
pub mod reproduce;
pub mod runtime;
pub mod train;

pub use config::RunConfig;
pub use error::{Error, Result};
pub use train::{RunResult, Runner, TrainOptions};
