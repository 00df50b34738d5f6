//! The one binary encoding licd writes: bincode 2 over serde, with a fixed configuration.
//!
//! Log entries, snapshots and Raft messages between nodes all go through these two functions,
//! so the format is defined in one place. Decoding is bounded ([`MAX_DECODE_LEN`]) so that a
//! corrupt length prefix cannot make the decoder allocate without limit.

use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// Decodes a value, refusing bytes left over after it.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config())?;
    if read != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - read));
    }
    Ok(value)
}
