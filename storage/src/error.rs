//! Errors of opening a store, and the mapping of sled and codec failures onto openraft's
//! `StorageError`.

use licd_raft::RaftNodeId;
use licd_raft::codec::CodecError;
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};

/// Why a node's database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// sled could not open the database (missing permissions, locked by another process, ...).
    #[error("cannot open the database at {path}: {source}")]
    Sled {
        /// The database directory.
        path: String,
        /// sled's error.
        source: sled::Error,
    },
    /// A tree could not be opened.
    #[error("cannot open a tree of the database: {0}")]
    Tree(#[from] sled::Error),
    /// The stored snapshot is unreadable.
    #[error("the stored snapshot is unreadable: {0}")]
    Snapshot(#[from] CodecError),
    /// The database or its snapshot is in another stored format.
    #[error("{0}")]
    Format(#[from] crate::format::FormatError),
    /// The stored snapshot's data disagrees with its metadata.
    #[error("the stored snapshot is inconsistent: {0}")]
    Inconsistent(String),
}

/// A storage failure as openraft wants it.
pub(crate) type StorageResult<T> = Result<T, StorageError<RaftNodeId>>;

/// Builds a `StorageError` about `subject` from any error.
pub(crate) fn io_error(
    subject: ErrorSubject<RaftNodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError<RaftNodeId> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}
