//! [`LeaseToken`]: the secret that binds an allocation to the application server that made it.
//!
//! Allocate answers a lease token; heartbeats, releases and re-allocations of that allocation
//! present it in the [`LEASE_TOKEN_HEADER`] header. What the token proves is continuity: the
//! caller is the one that was answered the allocation (or was handed its token since). It
//! says nothing about the host itself: a MAC address is self-declared.
//!
//! - **Drawn by the leader, derived for retries.** The token is `HMAC-SHA256(cluster secret,
//!   request id, server name)`, cut to 128 bits. A client that retries an allocation with
//!   the same request id, after a lost answer or a failover, gets the same token from any
//!   leader, although the log holds only its hash. Nobody without the cluster secret can
//!   compute one; the request id is the one input a caller chooses, so it must be
//!   unguessable (the client library's and the agent's are 128 random bits). Whoever sends
//!   the exact request again under the same id while the cluster remembers it (at least
//!   15 minutes) is answered the same token: request ids belong with the token, out of
//!   shared logs.
//! - **Only the hash is stored.** The log, the snapshots and the state hold
//!   `SHA-256(token)` ([`TokenHash`]). The leader compares a presented token by hashing it
//!   and comparing the hashes in constant time.
//! - **Never shown by accident.** `Debug` prints `LeaseToken(..)`; no listing (usage,
//!   licenses, check) carries a token; only the answer to the allocation does.
//!
//! What it leaves out: binding the token to a TLS identity or the host's hardware. An agent
//! that loses its token (and its state file) cannot renew; it waits until the lease ends.

use std::fmt;
use std::str::FromStr;

use licd_raft::Code;
use licd_raft::command::Rejection;
use licd_raft::types::{NodeName, RequestId, TokenHash};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The request header carrying a lease token on allocate (to re-allocate), heartbeat and
/// release.
pub const LEASE_TOKEN_HEADER: &str = "x-licd-lease-token";

/// How many bytes a token has: 128 bits.
const TOKEN_BYTES: usize = 16;

/// A lease token: 128 bits, written as 32 lower-case hex digits.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LeaseToken([u8; TOKEN_BYTES]);

/// Why text is not a lease token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a lease token is 32 hex digits")]
pub struct InvalidLeaseToken;

impl LeaseToken {
    /// The token of the allocation of `node` under `request_id`, keyed by the cluster
    /// secret (see the module documentation).
    pub fn derive(cluster_secret: &[u8], request_id: &RequestId, node: &NodeName) -> LeaseToken {
        let mut message = b"licd lease token\0".to_vec();
        message.extend_from_slice(request_id.as_str().as_bytes());
        message.push(0);
        message.extend_from_slice(node.as_str().as_bytes());
        let mac = hmac_sha256(cluster_secret, &message);
        let mut token = [0; TOKEN_BYTES];
        token.copy_from_slice(&mac[..TOKEN_BYTES]);
        LeaseToken(token)
    }

    /// The hash the state machine keeps of this token.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0).into())
    }

    /// Whether this token's hash is `hash`, compared in constant time.
    pub fn matches(&self, hash: &TokenHash) -> bool {
        self.hash().0.ct_eq(&hash.0).into()
    }

    /// The token as text, for the header and the state file.
    pub fn reveal(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The schema of the API contract: 32 hex digits.
impl utoipa::PartialSchema for LeaseToken {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-fA-F]{32}$"))
            .description(Some(
                "A lease token: 128 bits as 32 hex digits. Keep it secret.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for LeaseToken {}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeaseToken(..)")
    }
}

impl FromStr for LeaseToken {
    type Err = InvalidLeaseToken;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // Hex digits only: `from_str_radix` alone would also take a sign ("+f").
        if s.len() != 2 * TOKEN_BYTES || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidLeaseToken);
        }
        let mut token = [0; TOKEN_BYTES];
        for (i, byte) in token.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| InvalidLeaseToken)?;
        }
        Ok(LeaseToken(token))
    }
}

impl TryFrom<String> for LeaseToken {
    type Error = InvalidLeaseToken;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<LeaseToken> for String {
    fn from(t: LeaseToken) -> String {
        t.reveal()
    }
}

/// Whether `presented` speaks for an allocation whose token hash is `held`: yes when they
/// match (in constant time) or the allocation has no token (stored before lease tokens);
/// otherwise `LEASE_TOKEN_REQUIRED` (none presented) or `LEASE_TOKEN_MISMATCH`.
pub fn check_presented(
    held: Option<&TokenHash>,
    presented: Option<&LeaseToken>,
) -> Result<(), Rejection> {
    match (held, presented) {
        (None, _) => Ok(()),
        (Some(held), Some(token)) if token.matches(held) => Ok(()),
        (Some(_), Some(_)) => Err(Rejection::new(Code::LeaseTokenMismatch)),
        (Some(_), None) => Err(Rejection::new(Code::LeaseTokenRequired)),
    }
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vectors() {
        // Test case 2: a short key.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block, hashed first.
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_token_is_derived_the_same_way_and_differs_by_every_input() {
        let id = RequestId::new("r-1").unwrap();
        let node = NodeName::new("app-1").unwrap();
        let token = LeaseToken::derive(b"secret", &id, &node);
        assert_eq!(token, LeaseToken::derive(b"secret", &id, &node));
        assert_ne!(token, LeaseToken::derive(b"other", &id, &node));
        let other_id = RequestId::new("r-2").unwrap();
        assert_ne!(token, LeaseToken::derive(b"secret", &other_id, &node));
        let other_node = NodeName::new("app-2").unwrap();
        assert_ne!(token, LeaseToken::derive(b"secret", &id, &other_node));
        // The separator keeps ("r-1", "app-1") apart from ("r-1\0app", "-1")-like splits.
        let a = LeaseToken::derive(
            b"s",
            &RequestId::new("ab").unwrap(),
            &NodeName::new("c").unwrap(),
        );
        let b = LeaseToken::derive(
            b"s",
            &RequestId::new("a").unwrap(),
            &NodeName::new("bc").unwrap(),
        );
        assert_ne!(a, b);
    }

    #[test]
    fn text_round_trips_and_bad_text_is_refused() {
        let token = LeaseToken::derive(
            b"k",
            &RequestId::new("r").unwrap(),
            &NodeName::new("n").unwrap(),
        );
        let text = token.reveal();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<LeaseToken>().unwrap(), token);
        assert_eq!(
            serde_json::to_string(&token).unwrap(),
            format!("\"{text}\"")
        );
        for bad in [
            "",
            "abc",
            &text[..31],
            &format!("{text}0"),
            &"zz".repeat(16),
            "é".repeat(16).as_str(),
            // A sign is not a hex digit, though `u8::from_str_radix` takes one.
            &format!("+f{}", &text[2..]),
        ] {
            assert_eq!(bad.parse::<LeaseToken>(), Err(InvalidLeaseToken), "{bad:?}");
        }
        assert_eq!(format!("{token:?}"), "LeaseToken(..)");
    }

    #[test]
    fn a_presented_token_is_checked_against_the_allocation_s_hash() {
        let r = RequestId::new("r").unwrap();
        let n = NodeName::new("n").unwrap();
        let token = LeaseToken::derive(b"k", &r, &n);
        let other = LeaseToken::derive(b"k2", &r, &n);
        let held = token.hash();
        assert!(check_presented(Some(&held), Some(&token)).is_ok());
        let code = |r: Result<(), Rejection>| r.unwrap_err().code;
        assert_eq!(
            code(check_presented(Some(&held), None)),
            Code::LeaseTokenRequired
        );
        assert_eq!(
            code(check_presented(Some(&held), Some(&other))),
            Code::LeaseTokenMismatch
        );
        // An allocation stored before lease tokens has none: anything renews it.
        assert!(check_presented(None, None).is_ok());
        assert!(check_presented(None, Some(&other)).is_ok());
    }

    #[test]
    fn only_its_own_hash_matches() {
        let r = RequestId::new("r").unwrap();
        let n = NodeName::new("n").unwrap();
        let token = LeaseToken::derive(b"k", &r, &n);
        assert!(token.matches(&token.hash()));
        let other = LeaseToken::derive(b"k2", &r, &n);
        assert!(!token.matches(&other.hash()));
    }
}
