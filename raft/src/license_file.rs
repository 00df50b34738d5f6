//! Signed license files: how a vendor ships a [`License`] to a customer, and how licd proves
//! that the license came from a vendor it trusts before it is ever proposed to the cluster.
//!
//! A license file is text, safe to paste into a mail or a ticket:
//!
//! ```text
//! -----BEGIN LICD LICENSE-----
//! Key: <base64 of the vendor's 32-byte Ed25519 public key>
//! Signature: <base64 of the 64-byte Ed25519 signature over the payload bytes>
//!
//! <base64 of the payload: the license as JSON, wrapped at 64 columns>
//! -----END LICD LICENSE-----
//! ```
//!
//! The signature covers the payload bytes exactly as they are encoded, so no canonical JSON
//! form is needed. Parsing ([`LicenseFile::parse`]) and verification ([`LicenseFile::verify`])
//! are separate steps so that `licd license inspect` can show a file it cannot verify; only a
//! verified license should reach the cluster. Each way a file can be malformed is its own
//! [`LicenseFileError`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::license::License;
use crate::types::InvalidInput;

const BEGIN: &str = "-----BEGIN LICD LICENSE-----";
const END: &str = "-----END LICD LICENSE-----";
const KEY_HEADER: &str = "Key: ";
const SIGNATURE_HEADER: &str = "Signature: ";
const LINE_WIDTH: usize = 64;

/// The largest license file accepted, in bytes. A real license is well under 64 KiB; the bound
/// keeps a hostile upload from costing memory.
pub const MAX_LICENSE_FILE_LEN: usize = 1 << 20;

/// Why a license file could not be parsed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseFileError {
    /// The file is larger than [`MAX_LICENSE_FILE_LEN`].
    #[error("license file is {0} bytes, larger than the {MAX_LICENSE_FILE_LEN} bytes allowed")]
    TooLarge(usize),
    /// The BEGIN/END lines or the Key/Signature headers are missing or out of place.
    #[error("license file armor is malformed: {0}")]
    Armor(String),
    /// Something other than whitespace follows the END line.
    #[error("license file has trailing content after the END line")]
    TrailingGarbage,
    /// The key, the signature or the payload is not valid base64.
    #[error("license file {part} is not valid base64")]
    Base64 {
        /// `key`, `signature` or `payload`.
        part: &'static str,
    },
    /// The key is not a valid Ed25519 public key, or the signature is not 64 bytes.
    #[error("license file {0} has the wrong length or form")]
    KeyFormat(&'static str),
    /// The payload is not a license in JSON.
    #[error("license payload is not a valid license JSON document: {0}")]
    Json(String),
    /// The license's content is inconsistent (see [`License::validate`]).
    #[error("license content is invalid: {0}")]
    Invalid(#[from] InvalidInput),
    /// The file names a signing key that is not among the trusted vendor keys.
    #[error("license is signed by key {0}, which is not a trusted vendor key")]
    UntrustedKey(String),
    /// The signature does not match the payload: the file was altered or forged.
    #[error("license signature does not verify: the file was altered or not signed by its key")]
    BadSignature,
}

/// A parsed, not yet verified, license file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseFile {
    /// The license the payload holds.
    pub license: License,
    /// The key the file says signed it.
    pub key: VerifyingKey,
    signature: Signature,
    payload: Vec<u8>,
}

impl LicenseFile {
    /// Signs `license` with the vendor's key and returns the armored file text.
    pub fn issue(license: &License, vendor: &SigningKey) -> Result<String, LicenseFileError> {
        license.validate()?;
        let payload =
            serde_json::to_vec(license).map_err(|e| LicenseFileError::Json(e.to_string()))?;
        let signature = vendor.sign(&payload);
        let body = BASE64.encode(&payload);
        let mut out = String::with_capacity(body.len() + 256);
        out.push_str(BEGIN);
        out.push('\n');
        out.push_str(KEY_HEADER);
        out.push_str(&encode_public_key(&vendor.verifying_key()));
        out.push('\n');
        out.push_str(SIGNATURE_HEADER);
        out.push_str(&BASE64.encode(signature.to_bytes()));
        out.push_str("\n\n");
        for chunk in body.as_bytes().chunks(LINE_WIDTH) {
            // base64 output is ASCII, so every chunk is valid UTF-8.
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
        Ok(out)
    }

    /// Parses an armored license file. Leading and trailing whitespace is ignored; anything else
    /// outside the armor is an error.
    pub fn parse(text: &str) -> Result<LicenseFile, LicenseFileError> {
        if text.len() > MAX_LICENSE_FILE_LEN {
            return Err(LicenseFileError::TooLarge(text.len()));
        }
        let text = text.trim_start();
        let rest = text
            .strip_prefix(BEGIN)
            .ok_or_else(|| LicenseFileError::Armor(format!("the file must start with {BEGIN}")))?;
        let (inner, after) = rest
            .split_once(END)
            .ok_or_else(|| LicenseFileError::Armor(format!("no {END} line")))?;
        if !after.trim().is_empty() {
            return Err(LicenseFileError::TrailingGarbage);
        }
        let mut lines = inner.lines().map(str::trim_end);
        if lines.next() != Some("") {
            return Err(LicenseFileError::Armor(format!(
                "{BEGIN} must be alone on its line"
            )));
        }
        let key_b64 = header(lines.next(), KEY_HEADER)?;
        let sig_b64 = header(lines.next(), SIGNATURE_HEADER)?;
        if lines.next() != Some("") {
            return Err(LicenseFileError::Armor(
                "a blank line must separate the headers from the payload".into(),
            ));
        }
        let body: String = lines.collect();
        if body.is_empty() {
            return Err(LicenseFileError::Armor("the payload is empty".into()));
        }

        let key = decode_public_key(key_b64)?;
        let sig_bytes = BASE64
            .decode(sig_b64)
            .map_err(|_| LicenseFileError::Base64 { part: "signature" })?;
        let signature = Signature::from_slice(&sig_bytes)
            .map_err(|_| LicenseFileError::KeyFormat("signature"))?;
        let payload = BASE64
            .decode(body.as_bytes())
            .map_err(|_| LicenseFileError::Base64 { part: "payload" })?;
        let license: License =
            serde_json::from_slice(&payload).map_err(|e| LicenseFileError::Json(e.to_string()))?;
        Ok(LicenseFile {
            license,
            key,
            signature,
            payload,
        })
    }

    /// Verifies the file against the trusted vendor keys and returns its license, checked for
    /// consistency. The key the file names must be trusted and its signature must match.
    pub fn verify(&self, trusted: &[VerifyingKey]) -> Result<License, LicenseFileError> {
        if !trusted.contains(&self.key) {
            return Err(LicenseFileError::UntrustedKey(encode_public_key(&self.key)));
        }
        self.key
            .verify_strict(&self.payload, &self.signature)
            .map_err(|_| LicenseFileError::BadSignature)?;
        self.license.validate()?;
        Ok(self.license.clone())
    }

    /// Parses and verifies in one step.
    pub fn parse_and_verify(
        text: &str,
        trusted: &[VerifyingKey],
    ) -> Result<License, LicenseFileError> {
        LicenseFile::parse(text)?.verify(trusted)
    }
}

fn header<'a>(line: Option<&'a str>, name: &str) -> Result<&'a str, LicenseFileError> {
    line.and_then(|l| l.strip_prefix(name))
        .map(str::trim)
        .ok_or_else(|| LicenseFileError::Armor(format!("missing {:?} header", name.trim())))
}

/// Generates a new vendor signing key from a cryptographically secure random source
/// (pass `rand::rngs::OsRng` in production).
pub fn generate_signing_key<R: rand_core::CryptoRngCore + ?Sized>(csprng: &mut R) -> SigningKey {
    SigningKey::generate(csprng)
}

/// A public key as configuration and license files write it: base64 of its 32 bytes.
pub fn encode_public_key(key: &VerifyingKey) -> String {
    BASE64.encode(key.as_bytes())
}

/// Reads a public key written by [`encode_public_key`].
pub fn decode_public_key(text: &str) -> Result<VerifyingKey, LicenseFileError> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| LicenseFileError::Base64 { part: "key" })?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| LicenseFileError::KeyFormat("key"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| LicenseFileError::KeyFormat("key"))
}

/// A signing key as the vendor stores it: base64 of its 32-byte secret seed.
pub fn encode_signing_key(key: &SigningKey) -> String {
    BASE64.encode(key.to_bytes())
}

/// Reads a signing key written by [`encode_signing_key`].
pub fn decode_signing_key(text: &str) -> Result<SigningKey, LicenseFileError> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| LicenseFileError::Base64 { part: "key" })?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| LicenseFileError::KeyFormat("key"))?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::license::tests::sample;

    fn vendor(seed: u64) -> SigningKey {
        generate_signing_key(&mut StdRng::seed_from_u64(seed))
    }

    fn issued() -> (SigningKey, String) {
        let key = vendor(1);
        let text = LicenseFile::issue(&sample(), &key).unwrap();
        (key, text)
    }

    #[test]
    fn an_issued_file_parses_and_verifies_to_the_same_license() {
        let (key, text) = issued();
        assert!(text.starts_with(BEGIN));
        // The payload is wrapped for mail and tickets; only the two header lines are longer.
        let payload_lines = text.split("\n\n").nth(1).unwrap().lines();
        assert!(
            payload_lines
                .take_while(|l| *l != END)
                .all(|l| l.len() <= LINE_WIDTH)
        );
        let license = LicenseFile::parse_and_verify(&text, &[key.verifying_key()]).unwrap();
        assert_eq!(license, sample());
        // Surrounding whitespace, CRLF line ends and several trusted keys are fine.
        let crlf = format!("\n  {}\n\n", text.replace('\n', "\r\n"));
        let keys = [vendor(7).verifying_key(), key.verifying_key()];
        assert_eq!(
            LicenseFile::parse_and_verify(&crlf, &keys).unwrap(),
            sample()
        );
    }

    #[test]
    fn an_untrusted_key_is_refused() {
        let (key, text) = issued();
        let err = LicenseFile::parse_and_verify(&text, &[vendor(2).verifying_key()]).unwrap_err();
        assert_eq!(
            err,
            LicenseFileError::UntrustedKey(encode_public_key(&key.verifying_key()))
        );
        assert!(matches!(
            LicenseFile::parse_and_verify(&text, &[]),
            Err(LicenseFileError::UntrustedKey(_))
        ));
    }

    #[test]
    fn an_altered_payload_fails_the_signature() {
        let (key, _) = issued();
        // Sign one license, then put another license's payload under that signature.
        let text = LicenseFile::issue(&sample(), &key).unwrap();
        let other = License {
            max_cores: 1000,
            ..sample()
        };
        let other_text = LicenseFile::issue(&other, &key).unwrap();
        let body = |t: &str| t.split("\n\n").nth(1).unwrap().to_string();
        let forged = text.replace(&body(&text), &body(&other_text));
        assert_ne!(forged, text);
        let err = LicenseFile::parse_and_verify(&forged, &[key.verifying_key()]).unwrap_err();
        assert_eq!(err, LicenseFileError::BadSignature);
    }

    #[test]
    fn a_key_swapped_for_a_trusted_one_fails_the_signature() {
        let (signer, text) = issued();
        let trusted = vendor(3);
        let swapped = text.replace(
            &encode_public_key(&signer.verifying_key()),
            &encode_public_key(&trusted.verifying_key()),
        );
        let err = LicenseFile::parse_and_verify(&swapped, &[trusted.verifying_key()]).unwrap_err();
        assert_eq!(err, LicenseFileError::BadSignature);
    }

    #[test]
    fn malformed_armor_is_its_own_error() {
        let (_, text) = issued();
        let no_begin = text.replace(BEGIN, "");
        assert!(matches!(
            LicenseFile::parse(&no_begin),
            Err(LicenseFileError::Armor(_))
        ));
        let no_end = text.replace(END, "");
        assert!(matches!(
            LicenseFile::parse(&no_end),
            Err(LicenseFileError::Armor(_))
        ));
        let no_key = text.replace(KEY_HEADER, "Kay: ");
        assert!(matches!(
            LicenseFile::parse(&no_key),
            Err(LicenseFileError::Armor(_))
        ));
        let no_blank = text.replacen("\n\n", "\n", 1);
        assert!(matches!(
            LicenseFile::parse(&no_blank),
            Err(LicenseFileError::Armor(_))
        ));
        let leading = format!("hello\n{text}");
        assert!(matches!(
            LicenseFile::parse(&leading),
            Err(LicenseFileError::Armor(_))
        ));
        assert!(matches!(
            LicenseFile::parse(""),
            Err(LicenseFileError::Armor(_))
        ));
    }

    #[test]
    fn trailing_garbage_is_refused() {
        let (_, text) = issued();
        let err = LicenseFile::parse(&format!("{text}extra")).unwrap_err();
        assert_eq!(err, LicenseFileError::TrailingGarbage);
    }

    #[test]
    fn bad_base64_names_the_part() {
        let (key, text) = issued();
        let bad_payload = text.replacen("\n\n", "\n\n!!!!", 1);
        assert_eq!(
            LicenseFile::parse(&bad_payload).unwrap_err(),
            LicenseFileError::Base64 { part: "payload" }
        );
        let sig_line = text.lines().nth(2).unwrap();
        let bad_sig = text.replace(sig_line, "Signature: ***");
        assert_eq!(
            LicenseFile::parse(&bad_sig).unwrap_err(),
            LicenseFileError::Base64 { part: "signature" }
        );
        let short_sig = text.replace(sig_line, "Signature: AAAA");
        assert_eq!(
            LicenseFile::parse(&short_sig).unwrap_err(),
            LicenseFileError::KeyFormat("signature")
        );
        let key_b64 = encode_public_key(&key.verifying_key());
        let bad_key = text.replace(&key_b64, "not base64!");
        assert_eq!(
            LicenseFile::parse(&bad_key).unwrap_err(),
            LicenseFileError::Base64 { part: "key" }
        );
    }

    #[test]
    fn a_payload_that_is_not_a_license_is_a_json_error() {
        let key = vendor(4);
        let payload = br#"{"hello":"world"}"#;
        let text = format!(
            "{BEGIN}\n{KEY_HEADER}{}\n{SIGNATURE_HEADER}{}\n\n{}\n{END}\n",
            encode_public_key(&key.verifying_key()),
            BASE64.encode(key.sign(payload).to_bytes()),
            BASE64.encode(payload)
        );
        assert!(matches!(
            LicenseFile::parse(&text),
            Err(LicenseFileError::Json(_))
        ));
    }

    #[test]
    fn a_signed_but_inconsistent_license_is_refused_at_verification() {
        let key = vendor(5);
        let bad = License {
            max_cores: 0,
            ..sample()
        };
        assert!(matches!(
            LicenseFile::issue(&bad, &key),
            Err(LicenseFileError::Invalid(_))
        ));
        // Signed by hand, bypassing issue()'s check: verify still refuses it.
        let payload = serde_json::to_vec(&bad).unwrap();
        let text = format!(
            "{BEGIN}\n{KEY_HEADER}{}\n{SIGNATURE_HEADER}{}\n\n{}\n{END}\n",
            encode_public_key(&key.verifying_key()),
            BASE64.encode(key.sign(&payload).to_bytes()),
            BASE64.encode(&payload)
        );
        assert!(matches!(
            LicenseFile::parse_and_verify(&text, &[key.verifying_key()]),
            Err(LicenseFileError::Invalid(_))
        ));
    }

    #[test]
    fn oversized_files_are_refused_before_parsing() {
        let huge = " ".repeat(MAX_LICENSE_FILE_LEN + 1);
        assert_eq!(
            LicenseFile::parse(&huge).unwrap_err(),
            LicenseFileError::TooLarge(MAX_LICENSE_FILE_LEN + 1)
        );
    }

    #[test]
    fn keys_round_trip_through_their_text_form() {
        let key = vendor(6);
        let public = decode_public_key(&encode_public_key(&key.verifying_key())).unwrap();
        assert_eq!(public, key.verifying_key());
        let secret = decode_signing_key(&encode_signing_key(&key)).unwrap();
        assert_eq!(secret.to_bytes(), key.to_bytes());
        assert_eq!(
            decode_public_key("AAAA").unwrap_err(),
            LicenseFileError::KeyFormat("key")
        );
    }
}
