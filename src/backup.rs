//! The backup file: what `GET /admin/snapshot` answers and `licd snapshot save` writes, and
//! what `licd snapshot restore` reads.
//!
//! ```text
//! "LICDSNAP"              8 bytes, the magic
//! file version            u32, little-endian (FILE_VERSION)
//! body length             u64, little-endian
//! body                    a Backup, licd_raft::codec-encoded
//! SHA-256                 32 bytes, of everything before it
//! ```
//!
//! The body holds the leader's state machine snapshot as openraft built it (its data is
//! opaque here: the versioned applied state of licd-storage), the snapshot's metadata (last
//! log id, membership, snapshot id), the stored format version of the data, the cluster id
//! it was taken from, and who took it when. A file that was cut short, has bytes added, or
//! has any byte changed is refused before anything is decoded from it.

use licd_raft::RaftNodeId;
use licd_raft::codec::{CodecError, decode, encode};
use openraft::{BasicNode, LogId, SnapshotMeta};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"LICDSNAP";

/// The version of the file layout this build writes and reads.
pub const FILE_VERSION: u32 = 1;

const HEAD_LEN: usize = MAGIC.len() + 4 + 8;
const CHECKSUM_LEN: usize = 32;

/// A consistent snapshot of a cluster, as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// The stored format version of `data` (`licd_storage::format::FORMAT_VERSION` of the
    /// licd that took it).
    pub stored_format: u32,
    /// The id of the cluster it was taken from (none for a cluster initialized before
    /// cluster ids).
    pub cluster_id: Option<String>,
    /// The node that took it (the leader).
    pub taken_by: RaftNodeId,
    /// When, in milliseconds since the Unix epoch, by that node's clock.
    pub taken_at_ms: u64,
    /// openraft's snapshot metadata: last log id, membership, snapshot id.
    pub meta: SnapshotMeta<RaftNodeId, BasicNode>,
    /// The state machine snapshot, as the node built it.
    pub data: Vec<u8>,
}

/// Why bytes are not a usable backup file.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file does not start like a backup file.
    #[error(
        "not a licd backup file (it does not start with {:?})",
        String::from_utf8_lossy(MAGIC)
    )]
    NotABackup,
    /// The file has another layout version.
    #[error("backup file version {found}, but this licd reads version {FILE_VERSION} only")]
    FileVersion {
        /// The version found.
        found: u32,
    },
    /// The file is shorter than its header says.
    #[error("the backup file is truncated: {found} bytes, its header says {expected}")]
    Truncated {
        /// The length the header implies.
        expected: u64,
        /// The length found.
        found: u64,
    },
    /// The file is longer than its header says.
    #[error("the backup file has {extra} bytes after its end: it is not the file that was saved")]
    Trailing {
        /// How many bytes too many.
        extra: u64,
    },
    /// The checksum does not match.
    #[error("the backup file is corrupt: its SHA-256 checksum does not match its content")]
    Checksum,
    /// The body does not decode.
    #[error("the backup file's content does not decode: {0}")]
    Decode(#[from] CodecError),
    /// The snapshot is of a stored format this build does not read.
    #[error(
        "the backup holds stored format version {found}, but this licd reads version {} only",
        licd_storage::format::FORMAT_VERSION
    )]
    StoredFormat {
        /// The version found.
        found: u32,
    },
}

impl Backup {
    /// The file's bytes.
    pub fn to_file(&self) -> Result<Vec<u8>, CodecError> {
        let body = encode(self)?;
        let mut out = Vec::with_capacity(HEAD_LEN + body.len() + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FILE_VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        Ok(out)
    }

    /// Reads and checks a file: layout, length, checksum, then the body and its format.
    pub fn from_file(bytes: &[u8]) -> Result<Backup, BackupError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(BackupError::NotABackup);
        }
        let found = bytes.len() as u64;
        let Some(head) = bytes.get(..HEAD_LEN) else {
            return Err(BackupError::Truncated {
                expected: (HEAD_LEN + CHECKSUM_LEN) as u64,
                found,
            });
        };
        let version = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
        if version != FILE_VERSION {
            return Err(BackupError::FileVersion { found: version });
        }
        let body_len = u64::from_le_bytes(head[12..20].try_into().unwrap_or_default());
        let expected = body_len.saturating_add((HEAD_LEN + CHECKSUM_LEN) as u64);
        if found < expected {
            return Err(BackupError::Truncated { expected, found });
        }
        if found > expected {
            return Err(BackupError::Trailing {
                extra: found - expected,
            });
        }
        // expected == found fits in usize.
        let end = bytes.len() - CHECKSUM_LEN;
        let sum = Sha256::digest(&bytes[..end]);
        if sum.as_slice() != &bytes[end..] {
            return Err(BackupError::Checksum);
        }
        let backup: Backup = decode(&bytes[HEAD_LEN..end])?;
        if backup.stored_format != licd_storage::format::FORMAT_VERSION {
            return Err(BackupError::StoredFormat {
                found: backup.stored_format,
            });
        }
        Ok(backup)
    }

    /// The last log entry the snapshot covers.
    pub fn last_log_id(&self) -> Option<LogId<RaftNodeId>> {
        self.meta.last_log_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Backup {
        Backup {
            stored_format: licd_storage::format::FORMAT_VERSION,
            cluster_id: Some("00112233445566778899aabbccddeeff".into()),
            taken_by: 1,
            taken_at_ms: 1_700_000_000_000,
            meta: SnapshotMeta::default(),
            data: vec![1, 2, 3, 4, 5],
        }
    }

    #[test]
    fn a_file_round_trips() {
        let b = sample();
        assert_eq!(Backup::from_file(&b.to_file().unwrap()).unwrap(), b);
    }

    #[test]
    fn every_damage_is_refused_by_name() {
        let file = sample().to_file().unwrap();
        assert!(matches!(
            Backup::from_file(b"hello"),
            Err(BackupError::NotABackup)
        ));
        assert!(matches!(
            Backup::from_file(&[]),
            Err(BackupError::NotABackup)
        ));
        for cut in [9, HEAD_LEN, HEAD_LEN + 3, file.len() - 1] {
            let err = Backup::from_file(&file[..cut]).unwrap_err();
            assert!(matches!(err, BackupError::Truncated { .. }), "{cut}: {err}");
            assert!(err.to_string().contains("truncated"), "{err}");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(matches!(
            Backup::from_file(&longer),
            Err(BackupError::Trailing { extra: 1 })
        ));
        // Any changed byte after the header: the checksum.
        for i in [HEAD_LEN, HEAD_LEN + 4, file.len() - 1] {
            let mut bad = file.clone();
            bad[i] ^= 0x40;
            let err = Backup::from_file(&bad).unwrap_err();
            assert!(matches!(err, BackupError::Checksum), "{i}: {err}");
        }
        let mut other = file.clone();
        other[8] = 9;
        assert!(matches!(
            Backup::from_file(&other),
            Err(BackupError::FileVersion { found: 9 })
        ));
        // A length field that lies is a truncation, not an allocation.
        let mut huge = file.clone();
        huge[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Backup::from_file(&huge),
            Err(BackupError::Truncated { .. })
        ));
    }

    #[test]
    fn another_stored_format_is_named() {
        let mut b = sample();
        b.stored_format = 2;
        let err = Backup::from_file(&b.to_file().unwrap()).unwrap_err();
        assert!(err.to_string().contains("stored format version 2"), "{err}");
    }
}
