//! [`ClusterId`]: which cluster a node's data belongs to.
//!
//! A cluster gets a random id when it is initialized (`POST /admin/init`) or restored from a
//! backup (`licd snapshot restore`, always a new id). Every Raft message carries the sender's
//! id in [`CLUSTER_ID_HEADER`], and a node refuses messages of another cluster
//! ([`crate::node::Node::admit_peer`] holds the rules), so a node restored from a backup can
//! never vote or replicate in the cluster the backup came from, nor the other way round.

use std::fmt;

/// The header of every Raft message that names the sender's cluster.
pub const CLUSTER_ID_HEADER: &str = "x-licd-cluster-id";

/// A cluster id: 32 lower-case hex digits (128 random bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(String);

impl ClusterId {
    /// A new random id.
    pub fn generate() -> ClusterId {
        let bytes: [u8; 16] = rand::random();
        ClusterId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Reads an id: 32 hex digits, any case (kept lower-case).
    pub fn parse(s: &str) -> Result<ClusterId, String> {
        let s = s.trim();
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{s:?} is not a cluster id (32 hex digits)"));
        }
        Ok(ClusterId(s.to_ascii_lowercase()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ClusterId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        ClusterId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_hex_and_parse_back() {
        let a = ClusterId::generate();
        let b = ClusterId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(ClusterId::parse(a.as_str()).unwrap(), a);
        assert_eq!(
            ClusterId::parse(&a.as_str().to_ascii_uppercase()).unwrap(),
            a
        );
        assert!(ClusterId::parse("").is_err());
        assert!(ClusterId::parse("xyz").is_err());
        assert!(ClusterId::parse(&"g".repeat(32)).is_err());
        assert!(ClusterId::parse(&"a".repeat(33)).is_err());
    }
}
