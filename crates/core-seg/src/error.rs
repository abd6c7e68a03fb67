//! The error type of `core-seg`. Every fallible public function returns [`Result`].

use std::path::PathBuf;

/// Errors raised by the core library. Messages name the offending file, tensor or key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("shape error: {0}")]
    Shape(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("batch norm `{name}` in training mode got {values} value(s) per channel (input {shape:?}); PyTorch raises here too — use a larger batch or eval-mode BN")]
    BatchNormSingleValue { name: String, values: usize, shape: Vec<usize> },
    #[error("weights: {0}")]
    Weights(String),
    #[error("config: {0}")]
    Config(String),
    /// Data-parallel launch: environment, rendezvous, agreement between ranks.
    #[error(transparent)]
    Dist(#[from] crate::dist::DistError),
    #[error("non-finite loss `{term}` = {value} at iteration {iter}; the last good checkpoint is kept")]
    NonFiniteLoss { term: String, value: f64, iter: usize },
    /// An error of the data pipeline (the `data` crate's error, which converts into this one).
    #[error(transparent)]
    Data(#[from] Box<dyn std::error::Error + Send + Sync + 'static>),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    /// A problem with the content of a file.
    pub fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::File { path: path.into(), msg: msg.into() }
    }
}

/// Returns `Err(Error::InvalidArgument)` with a formatted message.
#[macro_export]
macro_rules! bail_arg {
    ($($t:tt)*) => { return Err($crate::Error::InvalidArgument(format!($($t)*))) };
}
