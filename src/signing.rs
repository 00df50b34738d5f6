//! Signed check answers: how a caller tells a real licd cluster from an emulator that
//! answers `VALID` to everything.
//!
//! Every node of a cluster holds the same *answer-signing key* (an Ed25519 key, configured
//! like the cluster secret: `answer_signing_key_file`). The leader signs each check answer
//! over the caller's *nonce*, a random value the caller chose for this one request, so an
//! answer recorded once cannot be replayed to a later check: only a holder of the key can
//! answer a fresh nonce. A caller that knows the cluster's public key (`licd answer-key
//! public FILE` prints it) verifies the answer with [`verify`]; the client library does when
//! it is given the key, and so do `licd check --answer-key` and `licd agent --answer-key`.
//!
//! **The signed message** is one canonical byte string, the same in every language: the
//! ASCII line `licd-check-v1`, then one `name=value` line per field, in this order, each line
//! ending with a single `\n` (0x0A), no spaces, UTF-8 (every value is ASCII):
//!
//! | line | value |
//! |---|---|
//! | `node=` | the server asked about (the path's name) |
//! | `mac=` | the `mac` query parameter as `aa:bb:cc:dd:ee:ff` (lowercase), empty when none was sent |
//! | `valid=` | `true` or `false` |
//! | `code=` | the answer's code, such as `VALID` or `NOT_ALLOCATED` |
//! | `license=` | the id of the license the server is allocated under, empty when none |
//! | `lease_remaining_ms=` | the lease time left in decimal milliseconds, empty when none |
//! | `checked_at=` | the cluster calendar time of the answer, decimal milliseconds since the Unix epoch |
//! | `answered_by=` | the id of the node that answered (the leader), decimal |
//! | `nonce=` | the caller's nonce bytes as lowercase hex, empty when none was sent |
//!
//! Every value is drawn from a character set without `\n` or `=` trouble: names and license
//! ids are `[A-Za-z0-9._-]`, codes `[A-Z_]`, numbers decimal digits without leading zeros.
//! The signature is Ed25519 (RFC 8032, pure, no pre-hash) over exactly those bytes, sent as
//! base64 (standard alphabet, padded) in the answer's `signature.value`, with the key's id
//! (`signature.key_id`: the first 8 bytes of the SHA-256 of the 32-byte public key, as 16
//! lowercase hex digits). The other fields of an answer (`message`, the cores, the license
//! summary) are not signed: decide on the signed ones only.
//!
//! **Without a nonce** an answer is still signed, with an empty `nonce=` line. Such an
//! answer proves the cluster made it once, but anyone who recorded it can replay it for
//! ever: callers that rely on the signature must send a nonce (the client library always
//! does). **A node without a key** answers unsigned (no `signature` field), and a caller
//! that requires a signature refuses the answer.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use licd_raft::RaftNodeId;
use licd_raft::types::{LicenseId, MacAddr, NodeName, Timestamp};
use sha2::{Digest as _, Sha256};

use crate::api::{AnswerSignature, CheckBody, ErrorCode};

/// The first line of the signed message; a new encoding gets a new version.
pub const SCHEME: &str = "licd-check-v1";
/// The shortest nonce accepted, in bytes: enough that a recorded answer never matches.
pub const MIN_NONCE_BYTES: usize = 16;
/// The longest nonce accepted, in bytes.
pub const MAX_NONCE_BYTES: usize = 64;
/// The length of the nonce the client library draws, in bytes.
pub const CLIENT_NONCE_BYTES: usize = 32;

/// A caller's nonce: 16 to 64 bytes, written as hex on the wire (`?nonce=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(Vec<u8>);

/// Why a nonce was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the nonce must be {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes written as hex: {reason}")]
pub struct NonceError {
    /// What is wrong with it.
    reason: &'static str,
}

impl NonceError {
    fn new(reason: &'static str) -> Self {
        NonceError { reason }
    }
}

impl Nonce {
    /// A fresh nonce of [`CLIENT_NONCE_BYTES`] random bytes.
    pub fn random() -> Nonce {
        let bytes: [u8; CLIENT_NONCE_BYTES] = rand::random();
        Nonce(bytes.to_vec())
    }

    /// A nonce of the given bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Nonce, NonceError> {
        if bytes.len() < MIN_NONCE_BYTES {
            return Err(NonceError::new("too short"));
        }
        if bytes.len() > MAX_NONCE_BYTES {
            return Err(NonceError::new("too long"));
        }
        Ok(Nonce(bytes.to_vec()))
    }

    /// Reads a nonce written as hex (either case).
    pub fn parse(text: &str) -> Result<Nonce, NonceError> {
        if text.len() % 2 != 0 {
            return Err(NonceError::new("an odd number of hex digits"));
        }
        let digits = text.as_bytes();
        let mut bytes = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks(2) {
            let high = hex_value(pair[0]).ok_or(NonceError::new("not hex"))?;
            let low = hex_value(pair[1]).ok_or(NonceError::new("not hex"))?;
            bytes.push(high << 4 | low);
        }
        Nonce::from_bytes(&bytes)
    }

    /// The nonce as lowercase hex, as the signed message and the query string write it.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The nonce's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The fields of a check answer a signature covers, in the order the message writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFields<'a> {
    /// The server asked about.
    pub node: &'a NodeName,
    /// The MAC the caller asked to match, if any.
    pub mac: Option<MacAddr>,
    /// The verdict.
    pub valid: bool,
    /// Its code.
    pub code: ErrorCode,
    /// The license the server is allocated under.
    pub license: Option<&'a LicenseId>,
    /// Lease time left, in milliseconds.
    pub lease_remaining_ms: Option<u64>,
    /// The cluster calendar time of the answer.
    pub checked_at: Timestamp,
    /// The node that answered.
    pub answered_by: RaftNodeId,
    /// The caller's nonce, if it sent one.
    pub nonce: Option<&'a Nonce>,
}

impl<'a> SignedFields<'a> {
    /// The signed fields of `body`, an answer to a check with `mac` and `nonce`.
    pub fn of(body: &'a CheckBody, mac: Option<MacAddr>, nonce: Option<&'a Nonce>) -> Self {
        let c = &body.check;
        SignedFields {
            node: &c.node,
            mac,
            valid: c.valid,
            code: c.code,
            license: c.license.as_ref().map(|l| &l.id),
            lease_remaining_ms: c.lease_remaining_ms,
            checked_at: c.checked_at,
            answered_by: body.leader_id,
            nonce,
        }
    }

    /// The canonical message, as the module documentation defines it.
    pub fn message(&self) -> Vec<u8> {
        let mut m = String::with_capacity(256);
        let _ = writeln!(m, "{SCHEME}");
        let _ = writeln!(m, "node={}", self.node);
        let _ = writeln!(
            m,
            "mac={}",
            self.mac.map(|a| a.to_string()).unwrap_or_default()
        );
        let _ = writeln!(m, "valid={}", self.valid);
        let _ = writeln!(m, "code={}", self.code.as_str());
        let _ = writeln!(m, "license={}", self.license.map_or("", |l| l.as_str()));
        let remaining = self
            .lease_remaining_ms
            .map(|ms| ms.to_string())
            .unwrap_or_default();
        let _ = writeln!(m, "lease_remaining_ms={remaining}");
        let _ = writeln!(m, "checked_at={}", self.checked_at.0);
        let _ = writeln!(m, "answered_by={}", self.answered_by);
        let nonce = self.nonce.map(Nonce::to_hex).unwrap_or_default();
        let _ = writeln!(m, "nonce={nonce}");
        m.into_bytes()
    }
}

/// The id of a public key in answers: the first 8 bytes of its SHA-256, as lowercase hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex(&Sha256::digest(key.as_bytes())[..8])
}

/// The cluster's answer-signing key, as a node holds it. `Debug` shows only the key id.
#[derive(Clone)]
pub struct AnswerSigner {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for AnswerSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnswerSigner {{ key_id: {} }}", self.key_id)
    }
}

impl AnswerSigner {
    /// A signer with `key`.
    pub fn new(key: SigningKey) -> Self {
        let key_id = key_id(&key.verifying_key());
        AnswerSigner { key, key_id }
    }

    /// The public key callers verify against.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key's id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs the fields of an answer.
    pub fn sign(&self, fields: &SignedFields<'_>) -> AnswerSignature {
        let signature = self.key.sign(&fields.message());
        AnswerSignature {
            scheme: SCHEME.to_string(),
            key_id: self.key_id.clone(),
            nonce: fields.nonce.map(Nonce::to_hex).unwrap_or_default(),
            value: BASE64.encode(signature.to_bytes()),
        }
    }
}

/// Why a check answer was not accepted as the cluster's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The answer carries no signature.
    #[error("the answer is not signed (is the node configured with answer_signing_key_file?)")]
    Missing,
    /// The signature is of an encoding this build does not know.
    #[error("the answer is signed with scheme {0:?}, not {SCHEME}")]
    UnknownScheme(String),
    /// No trusted key has the signature's key id.
    #[error("the answer is signed by key {0}, which is not a trusted answer key")]
    UnknownKey(String),
    /// The answer is about another server than the one asked about.
    #[error("the answer is about server {answered}, not {asked}")]
    WrongNode {
        /// The server asked about.
        asked: String,
        /// The server the answer names.
        answered: String,
    },
    /// The answer does not echo the nonce sent (a replayed answer).
    #[error("the answer does not echo the nonce sent (a replayed or forged answer)")]
    WrongNonce,
    /// The signature is not valid base64 of 64 bytes.
    #[error("the signature is not base64 of an Ed25519 signature")]
    Malformed,
    /// The signature does not match the answer (a forged or altered answer).
    #[error("the signature does not match the answer (a forged or altered answer)")]
    Invalid,
}

/// Checks that `body` is the cluster's signed answer to a check of `node` with `mac` and
/// `nonce`, signed by one of `keys`.
pub fn verify(
    body: &CheckBody,
    node: &NodeName,
    mac: Option<MacAddr>,
    nonce: Option<&Nonce>,
    keys: &[VerifyingKey],
) -> Result<(), SignatureError> {
    let signature = body.signature.as_ref().ok_or(SignatureError::Missing)?;
    if signature.scheme != SCHEME {
        return Err(SignatureError::UnknownScheme(signature.scheme.clone()));
    }
    if body.check.node != *node {
        return Err(SignatureError::WrongNode {
            asked: node.to_string(),
            answered: body.check.node.to_string(),
        });
    }
    let sent = nonce.map(Nonce::to_hex).unwrap_or_default();
    if signature.nonce != sent {
        return Err(SignatureError::WrongNonce);
    }
    let key = keys
        .iter()
        .find(|k| key_id(k) == signature.key_id)
        .ok_or_else(|| SignatureError::UnknownKey(signature.key_id.clone()))?;
    let bytes: [u8; 64] = BASE64
        .decode(signature.value.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SignatureError::Malformed)?;
    // The message is built from the caller's own node, MAC and nonce, so an answer about
    // something else cannot verify even if its echoes were altered to match.
    let mut fields = SignedFields::of(body, mac, nonce);
    fields.node = node;
    key.verify(&fields.message(), &Signature::from_bytes(&bytes))
        .map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests;
