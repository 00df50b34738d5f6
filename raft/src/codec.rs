//! The one binary encoding licd writes: bincode 2 over serde, with a fixed configuration.
//!
//! Log entries, snapshots and Raft messages between nodes all go through these two functions,
//! so the format is defined in one place. Decoding is bounded ([`MAX_DECODE_LEN`]) so that a
//! corrupt length prefix cannot make the decoder allocate without limit.

use openraft::raft::InstallSnapshotRequest;
use openraft::{BasicNode, SnapshotMeta, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{RaftNodeId, TypeConfig};

/// The largest value [`decode`] accepts, in bytes: 1 GiB, far above any snapshot licd makes.
pub const MAX_DECODE_LEN: usize = 1 << 30;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_LEN>()
}

/// Why bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The bytes are not a valid encoding of the expected type.
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The bytes hold a valid value followed by more bytes.
    #[error("decode: {0} trailing bytes after the value")]
    Trailing(usize),
}

/// Encodes a value.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// Appends the encoding of a value to `out`, the same bytes [`encode`] returns. Into a
/// buffer made with room for it, a value of megabytes (a snapshot) is written in place
/// instead of through a vector that grows, and is copied again, as it goes.
pub fn encode_append<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    struct Append<'a>(&'a mut Vec<u8>);
    impl bincode::enc::write::Writer for Append<'_> {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.0.extend_from_slice(bytes);
            Ok(())
        }
    }
    bincode::serde::encode_into_writer(value, Append(out), config())?;
    Ok(())
}

/// Decodes a value, refusing bytes left over after it.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config())?;
    if read != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - read));
    }
    Ok(value)
}

/// openraft's snapshot chunk message as licd sends it: the same fields in the same order,
/// hence the very same bytes (bincode writes a byte vector and a sequence of `u8` alike;
/// `raft/tests/wire.rs` holds them to it), but its data is encoded and decoded as one run of
/// bytes rather than element by element, which for a chunk of megabytes is the difference
/// between a copy and a loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// As [`InstallSnapshotRequest::vote`].
    pub vote: Vote<RaftNodeId>,
    /// As [`InstallSnapshotRequest::meta`].
    pub meta: SnapshotMeta<RaftNodeId, BasicNode>,
    /// As [`InstallSnapshotRequest::offset`].
    pub offset: u64,
    /// As [`InstallSnapshotRequest::data`].
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// As [`InstallSnapshotRequest::done`].
    pub done: bool,
}

impl From<InstallSnapshotRequest<TypeConfig>> for SnapshotChunk {
    fn from(r: InstallSnapshotRequest<TypeConfig>) -> Self {
        SnapshotChunk {
            vote: r.vote,
            meta: r.meta,
            offset: r.offset,
            data: r.data,
            done: r.done,
        }
    }
}

impl From<SnapshotChunk> for InstallSnapshotRequest<TypeConfig> {
    fn from(c: SnapshotChunk) -> Self {
        InstallSnapshotRequest {
            vote: c.vote,
            meta: c.meta,
            offset: c.offset,
            data: c.data,
            done: c.done,
        }
    }
}
