//! Validated value types: every identifier, address and quantity that enters licd from outside
//! is checked once, when it is constructed, and is valid for the rest of its life.
//!
//! Each type validates in its constructor and again when it is deserialized (through
//! `#[serde(try_from = ...)]`), so a value read from JSON, from the Raft log or from a snapshot
//! can never hold what its constructor would have refused. Invalid input is an [`InvalidInput`]
//! value, never a panic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a value offered to one of the constructors in this module was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidInput {
    /// Which kind of value was refused, such as `node id` or `mac address`.
    pub field: &'static str,
    /// What is wrong with it, in words an operator understands.
    pub reason: String,
}

impl InvalidInput {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        InvalidInput {
            field,
            reason: reason.into(),
        }
    }
}

/// The longest identifier licd accepts, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Checks the identifier rule shared by node ids, license ids and request ids:
/// 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9._-]`.
fn validate_id(field: &'static str, s: &str) -> Result<(), InvalidInput> {
    if s.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if s.len() > MAX_ID_LEN {
        return Err(InvalidInput::new(
            field,
            format!(
                "is {} characters long, at most {MAX_ID_LEN} are allowed",
                s.len()
            ),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(InvalidInput::new(
            field,
            format!("contains {c:?}; only letters, digits, '.', '_' and '-' are allowed"),
        ));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        // Written as its text, borrowed: the bytes of a string, without the copy into a new
        // `String` that `#[serde(into = "String")]` makes for every id of every entry.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl $name {
            /// Validates `s` as this kind of identifier.
            pub fn new(s: impl Into<String>) -> Result<Self, InvalidInput> {
                let s = s.into();
                validate_id($field, &s)?;
                Ok($name(s))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidInput;
            fn try_from(s: String) -> Result<Self, InvalidInput> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, InvalidInput> {
                $name::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The name of an application server that holds a core allocation (not a Raft member: those
    /// are numbered). 1 to 128 characters of `[A-Za-z0-9._-]`.
    NodeName,
    "node id"
);

id_type!(
    /// The identifier of a license, chosen by the vendor when it issues the license file.
    LicenseId,
    "license id"
);

id_type!(
    /// A client-chosen identifier of one logical request. A retry carries the same id, and the
    /// state machine applies it once (see [`crate::state::LicenseState`]).
    RequestId,
    "request id"
);

/// A 6-byte hardware (MAC) address, written `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` in either
/// case, stored and displayed in the normalized lower-case, colon-separated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct MacAddr([u8; 6]);

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.text().as_str())
    }
}

/// The normalized text of a [`MacAddr`], on the stack: `aa:bb:cc:dd:ee:ff`.
struct MacText([u8; 17]);

impl MacText {
    fn as_str(&self) -> &str {
        // Hex digits and colons only, so always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl MacAddr {
    /// Builds an address from its six bytes.
    pub const fn from_bytes(bytes: [u8; 6]) -> Self {
        MacAddr(bytes)
    }

    /// The six bytes of the address.
    pub const fn bytes(&self) -> [u8; 6] {
        self.0
    }

    /// The normalized text, written without the formatting machinery (every entry, answer
    /// and snapshot writes addresses).
    fn text(&self) -> MacText {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b':'; 17];
        for (i, byte) in self.0.iter().enumerate() {
            out[3 * i] = HEX[usize::from(byte >> 4)];
            out[3 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        MacText(out)
    }

    /// Parses `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` (one separator kind throughout).
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let bad = || {
            InvalidInput::new(
                "mac address",
                format!(
                    "{s:?} is not six hex bytes written aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff"
                ),
            )
        };
        let sep = if s.contains(':') { ':' } else { '-' };
        let mut bytes = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in bytes.iter_mut() {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(bytes))
    }
}

impl TryFrom<String> for MacAddr {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        MacAddr::parse(&s)
    }
}

impl From<MacAddr> for String {
    fn from(mac: MacAddr) -> String {
        mac.text().as_str().to_string()
    }
}

impl FromStr for MacAddr {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        MacAddr::parse(s)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.text().as_str())
    }
}

/// The number of CPU cores one application server asks for: 1 to [`Cores::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Cores(u32);

impl Cores {
    /// The most cores a single server may ask for.
    pub const MAX: u32 = 4096;

    /// Validates a core count.
    pub fn new(n: u32) -> Result<Self, InvalidInput> {
        if (1..=Self::MAX).contains(&n) {
            Ok(Cores(n))
        } else {
            Err(InvalidInput::new(
                "cores",
                format!("{n} is out of range; a server has 1 to {} cores", Self::MAX),
            ))
        }
    }

    /// The count as a number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Cores {
    type Error = InvalidInput;
    fn try_from(n: u32) -> Result<Self, InvalidInput> {
        Cores::new(n)
    }
}

impl From<Cores> for u32 {
    fn from(c: Cores) -> u32 {
        c.0
    }
}

/// How long an allocation lives without a heartbeat, in milliseconds:
/// [`LeaseTtl::MIN_MS`] (1 second) to [`LeaseTtl::MAX_MS`] (7 days).
///
/// The lower bound keeps a lease longer than a Raft failover plus a client retry; the upper
/// bound keeps a crashed server from holding cores for longer than a week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct LeaseTtl(u64);

impl LeaseTtl {
    /// The shortest lease: one second.
    pub const MIN_MS: u64 = 1_000;
    /// The longest lease: seven days.
    pub const MAX_MS: u64 = 7 * 24 * 3600 * 1_000;

    /// Validates a lease duration given in milliseconds.
    pub fn from_millis(ms: u64) -> Result<Self, InvalidInput> {
        if (Self::MIN_MS..=Self::MAX_MS).contains(&ms) {
            Ok(LeaseTtl(ms))
        } else {
            Err(InvalidInput::new(
                "lease ttl",
                format!(
                    "{ms} ms is out of range; a lease lasts {} ms (1 s) to {} ms (7 days)",
                    Self::MIN_MS,
                    Self::MAX_MS
                ),
            ))
        }
    }

    /// The duration in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }
}

impl TryFrom<u64> for LeaseTtl {
    type Error = InvalidInput;
    fn try_from(ms: u64) -> Result<Self, InvalidInput> {
        LeaseTtl::from_millis(ms)
    }
}

impl From<LeaseTtl> for u64 {
    fn from(t: LeaseTtl) -> u64 {
        t.0
    }
}

/// A wall-clock instant: milliseconds since the Unix epoch (UTC).
///
/// The state machine never reads a clock; every instant it uses arrives in a log entry.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This instant moved `ms` milliseconds later, saturating at the end of time.
    pub const fn plus_millis(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}

/// The SHA-256 hash of a lease token: what the log, the snapshots and the state hold in place
/// of the token itself, so that no stored byte lets anyone renew or release an allocation.
///
/// The token is drawn (or derived) by the leader; only its hash is ever replicated. Its
/// `Debug` form shows the first bytes only, enough to tell two apart in a test failure.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_the_documented_alphabet_and_length() {
        assert!(NodeName::new("app-server_01.example").is_ok());
        assert!(NodeName::new("a".repeat(MAX_ID_LEN)).is_ok());
        let empty = NodeName::new("").unwrap_err();
        assert_eq!(empty.field, "node id");
        assert!(NodeName::new("a".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(NodeName::new("has space").is_err());
        assert!(NodeName::new("slash/").is_err());
        assert!(NodeName::new("ünicode").is_err());
    }

    #[test]
    fn deserializing_an_invalid_id_fails() {
        let err = serde_json::from_str::<NodeName>("\"bad name\"").unwrap_err();
        assert!(err.to_string().contains("invalid node id"), "{err}");
        let ok: LicenseId = serde_json::from_str("\"lic-1\"").unwrap();
        assert_eq!(ok.as_str(), "lic-1");
    }

    #[test]
    fn mac_addresses_are_parsed_in_both_notations_and_normalized() {
        let colon = MacAddr::parse("AA:bb:0C:dd:Ee:01").unwrap();
        let dash = MacAddr::parse("aa-BB-0c-DD-ee-01").unwrap();
        assert_eq!(colon, dash);
        assert_eq!(colon.to_string(), "aa:bb:0c:dd:ee:01");
        assert_eq!(
            serde_json::to_string(&dash).unwrap(),
            "\"aa:bb:0c:dd:ee:01\""
        );
    }

    #[test]
    fn a_mac_address_is_written_as_its_text_everywhere() {
        use proptest::prelude::*;
        proptest!(|(bytes in any::<[u8; 6]>())| {
            let mac = MacAddr::from_bytes(bytes);
            let [a, b, c, d, e, g] = bytes;
            let text = format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}");
            prop_assert_eq!(mac.to_string(), text.clone());
            prop_assert_eq!(String::from(mac), text.clone());
            prop_assert_eq!(MacAddr::parse(&text).unwrap(), mac);
            // The stored and sent bytes are those of the text, as before.
            prop_assert_eq!(crate::codec::encode(&mac).unwrap(), crate::codec::encode(&text).unwrap());
            prop_assert_eq!(serde_json::to_string(&mac).unwrap(), format!("{text:?}"));
        });
        let mac = MacAddr::from_bytes([0, 0x0f, 0xf0, 0xff, 0x10, 0x01]);
        assert_eq!(format!("[{mac:>19}]"), "[  00:0f:f0:ff:10:01]");
    }

    #[test]
    fn an_id_is_written_as_its_text() {
        let node = NodeName::new("app-server_01.example").unwrap();
        assert_eq!(
            crate::codec::encode(&node).unwrap(),
            crate::codec::encode("app-server_01.example").unwrap()
        );
        assert_eq!(
            serde_json::to_string(&node).unwrap(),
            "\"app-server_01.example\""
        );
        let back: NodeName = crate::codec::decode(&crate::codec::encode(&node).unwrap()).unwrap();
        assert_eq!(back, node);
    }

    #[test]
    fn malformed_mac_addresses_are_refused() {
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee:fg",
            "aa:bb-cc:dd:ee:ff",
            "aabb.ccdd.eeff",
            "a:bb:cc:dd:ee:fff",
            "+a:bb:cc:dd:ee:ff",
            "aa::cc:dd:ee:ff",
        ] {
            let err = MacAddr::parse(bad).unwrap_err();
            assert_eq!(err.field, "mac address", "{bad:?}");
        }
    }

    #[test]
    fn cores_are_bounded() {
        assert!(Cores::new(0).is_err());
        assert_eq!(Cores::new(1).unwrap().get(), 1);
        assert_eq!(Cores::new(Cores::MAX).unwrap().get(), 4096);
        assert!(Cores::new(Cores::MAX + 1).is_err());
        assert!(serde_json::from_str::<Cores>("0").is_err());
    }

    #[test]
    fn lease_ttls_are_bounded() {
        assert!(LeaseTtl::from_millis(LeaseTtl::MIN_MS - 1).is_err());
        assert!(LeaseTtl::from_millis(LeaseTtl::MIN_MS).is_ok());
        assert!(LeaseTtl::from_millis(LeaseTtl::MAX_MS).is_ok());
        assert!(LeaseTtl::from_millis(LeaseTtl::MAX_MS + 1).is_err());
    }
}
