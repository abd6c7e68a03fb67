pub mod error;
pub mod rng;
pub use error::{Error, Result};
