//! The stored format's version: written once into a new database, checked at every open, and
//! carried at the head of every snapshot, so that a licd never reads state it would
//! misinterpret (from an older licd, or a newer one) and says which version it found instead.
//!
//! Version 1 was the format before leases became leader-measured elapsed time (its entries
//! carried lease expiry instants and heartbeats); it had no version marker, so a database with
//! data and no marker is version 1. Version 2 stored allocations without a lease token; a
//! database of version 2 is upgraded in place when it is opened (`crate::upgrade`). Version 3
//! added lease token hashes; its snapshots hold no usage history. Version 4, whose snapshots
//! carry the usage history (`licd_raft::events`), is the current one; a database of version
//! 3 is upgraded in place too (its log entries read as they are, its snapshot gets an empty
//! history that has not started).

use licd_raft::codec::{CodecError, decode, encode, encode_append};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::OpenError;

/// The stored format this build writes and reads.
pub const FORMAT_VERSION: u32 = 4;

/// The `meta` key holding the database's format version.
pub(crate) const FORMAT_KEY: &[u8] = b"format";

/// Why stored bytes are not in this build's format.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Written by a licd of another stored format.
    #[error(
        "stored format version {found}, but this licd reads version {FORMAT_VERSION} only; \
         restore from a backup made by this version, or start the node with a fresh data \
         directory and let it catch up from the cluster"
    )]
    Version {
        /// The version found.
        found: u32,
    },
    /// Too short to hold a version.
    #[error("stored state is truncated: no format version")]
    Truncated,
    /// The payload does not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Checks the database's format version, upgrades a database of version 2 or 3, and marks a
/// new database with this build's.
pub(crate) fn check_database(db: &sled::Db) -> Result<(), OpenError> {
    let meta = db.open_tree("meta")?;
    if let Some(bytes) = meta.get(FORMAT_KEY)? {
        let found: u32 = decode(&bytes)?;
        if found == crate::upgrade::FROM_VERSION {
            return crate::upgrade::from_format_2(db);
        }
        if found == crate::upgrade::FROM_VERSION_3 {
            return crate::upgrade::from_format_3(db);
        }
        if found != FORMAT_VERSION {
            return Err(FormatError::Version { found }.into());
        }
        return Ok(());
    }
    let has_data = !meta.is_empty()
        || !db.open_tree("log")?.is_empty()
        || !db.open_tree("snapshot")?.is_empty();
    if has_data {
        return Err(FormatError::Version { found: 1 }.into());
    }
    meta.insert(FORMAT_KEY, encode(&FORMAT_VERSION)?)?;
    db.flush()?;
    Ok(())
}

/// Encodes a value behind this build's format version (four bytes, little-endian).
pub fn encode_versioned<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode_versioned_sized(value, 0)
}

/// [`encode_versioned`] into a buffer made with room for `expected` bytes: the size of the
/// last snapshot, for the next one.
pub fn encode_versioned_sized<T: Serialize>(
    value: &T,
    expected: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(expected.max(4));
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    encode_append(value, &mut out)?;
    Ok(out)
}

/// Decodes a value written by [`encode_versioned`], refusing another version by name.
pub fn decode_versioned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FormatError> {
    let Some((head, rest)) = bytes.split_first_chunk::<4>() else {
        return Err(FormatError::Truncated);
    };
    let found = u32::from_le_bytes(*head);
    if found != FORMAT_VERSION {
        return Err(FormatError::Version { found });
    }
    Ok(decode(rest)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_versioned_value_round_trips_and_another_version_is_named() {
        let bytes = encode_versioned(&(7u64, "x".to_string())).unwrap();
        // The version, then exactly the value's own encoding, whatever room was made.
        let mut expected = FORMAT_VERSION.to_le_bytes().to_vec();
        expected.extend(encode(&(7u64, "x".to_string())).unwrap());
        assert_eq!(bytes, expected);
        for room in [0, 3, 5, 1 << 16] {
            assert_eq!(
                encode_versioned_sized(&(7u64, "x".to_string()), room).unwrap(),
                expected
            );
        }
        let back: (u64, String) = decode_versioned(&bytes).unwrap();
        assert_eq!(back, (7, "x".to_string()));
        let mut old = bytes.clone();
        old[..4].copy_from_slice(&1u32.to_le_bytes());
        let err = decode_versioned::<(u64, String)>(&old).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("stored format version 1, but this licd reads version 4"),
            "{err}"
        );
        assert!(matches!(
            decode_versioned::<u64>(&[2, 0]),
            Err(FormatError::Truncated)
        ));
    }

    #[test]
    fn a_new_database_is_marked_and_an_unmarked_one_with_data_is_version_1() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        check_database(&db).unwrap();
        check_database(&db).unwrap();

        let old = sled::Config::new().temporary(true).open().unwrap();
        old.open_tree("log")
            .unwrap()
            .insert(1u64.to_be_bytes(), vec![0])
            .unwrap();
        let err = check_database(&old).unwrap_err();
        assert!(err.to_string().contains("stored format version 1"), "{err}");

        let newer = sled::Config::new().temporary(true).open().unwrap();
        newer
            .open_tree("meta")
            .unwrap()
            .insert(FORMAT_KEY, encode(&5u32).unwrap())
            .unwrap();
        let err = check_database(&newer).unwrap_err();
        assert!(err.to_string().contains("stored format version 5"), "{err}");
    }
}
