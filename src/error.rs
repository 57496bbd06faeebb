//! Error types. Every failure that concerns a sample names the sample and the operator,
//! so a user can find the offending file without a debugger.

use std::fmt;

/// Where a sample came from: its dataset index and a human-readable origin (path, shard + offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleId {
    pub index: u64,
    pub origin: String,
}

impl fmt::Display for SampleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sample #{} ({})", self.index, self.origin)
    }
}

/// A failure while processing one sample inside one operator.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{sample}: operator `{operator}` failed: {message}")]
pub struct SampleError {
    pub sample: SampleId,
    pub operator: String,
    pub message: String,
}

/// Errors surfaced by the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sample(#[from] SampleError),
    #[error("invalid pipeline: {0}")]
    InvalidPipeline(String),
    #[error("data source: {0}")]
    Source(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("worker thread failed: {0}")]
    Worker(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
