//! The error type of the run assembly. Messages name the file, the key or the recipe they concern; errors of the
//! crates below keep their type (`#[from]`), and [`Context`] adds what was being done.

use std::fmt::Display;
use std::path::PathBuf;

/// Errors of `semiseg`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] core_seg::Error),
    #[error(transparent)]
    Data(#[from] data::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Pretrained weights: a checksum, an archive, a checkpoint file or its layout.
    #[error(transparent)]
    Pretrained(#[from] core_seg::model::pretrained::PretrainedError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    TomlWrite(#[from] toml::ser::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A value the run cannot use (a config key, a recipe, an option), saying what was expected.
    #[error("{0}")]
    Invalid(String),
    /// Drawing or writing a figure failed.
    #[error("{path}: {msg}")]
    Plot { path: PathBuf, msg: String },
    /// A child process (a benchmark case, PyTorch, a rank of `--gpus`) failed or could not start.
    #[error("{0}")]
    Process(String),
    /// An error with what was being done when it happened.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] naming `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// Adds what was being done to an error (or turns a `None` into an error saying so).
pub trait Context<T> {
    fn context(self, context: impl Display) -> Result<T>;
    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| Error::Context { context: context.to_string(), source: Box::new(e.into()) })
    }

    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Context { context: context().to_string(), source: Box::new(e.into()) })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Display) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(context.to_string()))
    }

    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(context().to_string()))
    }
}

/// Returns `Err(Error::Invalid)` with a formatted message.
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($t)*)))
    };
}
pub(crate) use bail;

/// `std::fs` calls whose errors name the file.
pub mod fs {
    use std::path::Path;

    use super::{Error, Result};

    pub fn read(path: &Path) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| Error::io(path, e))
    }

    pub fn read_to_string(path: &Path) -> Result<String> {
        std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
    }

    pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
        std::fs::write(path, contents).map_err(|e| Error::io(path, e))
    }

    /// Replaces `path` whole or not at all ([`core_seg::files::write_atomic`]): records, reports and configs that
    /// `--resume` and readers trust are never left half-written by a killed process.
    pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
        core_seg::files::write_atomic(path, contents.as_ref()).map_err(|e| Error::io(path, e))
    }

    pub fn create_dir_all(path: &Path) -> Result<()> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A context keeps the error it wraps as its source; a data error keeps its type.
    #[test]
    fn context_keeps_the_source() {
        let data: std::result::Result<(), data::Error> = Err(data::Error::invalid("m.png", "label 300"));
        let e = data.context("building the datasets").expect_err("an error");
        assert_eq!(e.to_string(), "building the datasets");
        let source = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("m.png: label 300"));
        assert!(
            matches!(e, Error::Context { source, .. } if matches!(*source, Error::Data(data::Error::Invalid { .. })))
        );
        let none: Option<u8> = None;
        assert!(matches!(none.context("no rows"), Err(Error::Invalid(m)) if m == "no rows"));
    }
}
