//! The data crate's error type: every message names the file (or split line) and the problem.

use std::path::PathBuf;

/// Errors from reading, checking and loading datasets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: I/O error: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file exists but does not decode as the expected image/mask.
    #[error("{path}: cannot decode: {msg}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// A file decodes, but its content breaks a dataset rule (size mismatch, label value, ...).
    #[error("{path}: {msg}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A split list line cannot be parsed.
    #[error("{path}:{line}: {msg}")]
    Split {
        /// The split file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A configuration value is out of range.
    #[error("config: {0}")]
    Config(String),
    /// Dataset check failed (summary of [`crate::check::Report`]).
    #[error("dataset check failed: {0}")]
    Check(String),
    /// Tensor creation failed.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Data errors inside the training loop and evaluation (`core_seg` APIs) keep their type and message.
impl From<Error> for core_seg::Error {
    fn from(e: Error) -> Self {
        core_seg::Error::Data(Box::new(e))
    }
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    /// An [`Error::Decode`] for `path`.
    pub fn decode(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Decode { path: path.into(), msg: msg.into() }
    }
    /// An [`Error::Invalid`] for `path`.
    pub fn invalid(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Invalid { path: path.into(), msg: msg.into() }
    }
}
