use licd_raft::Code;
use licd_raft::query::{CheckResult, LicenseSummary};

use super::*;
use crate::api::CheckAnswer;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn nonce() -> Nonce {
    Nonce::parse("000102030405060708090a0b0c0d0e0f").unwrap()
}

fn node() -> NodeName {
    NodeName::new("app-1").unwrap()
}

fn mac() -> MacAddr {
    MacAddr::from_bytes([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01])
}

/// A VALID answer about app-1 from leader 2.
fn answer() -> CheckBody {
    let result = CheckResult {
        node: node(),
        valid: true,
        code: Code::Valid,
        message: Code::Valid.default_message().into(),
        license: Some(LicenseSummary {
            id: LicenseId::new("acme-2026").unwrap(),
            customer: "Acme".into(),
            serial: 2,
            issued_at: Timestamp(1_000),
            expires_at: None,
            max_cores: 16,
            min_cores_per_node: 4,
            features: vec![],
        }),
        counted_cores: Some(8),
        allocated_cores: Some(14),
        licensed_cores: Some(16),
        lease_remaining_ms: Some(25_500),
        checked_at: Timestamp(1_795_835_510_000),
    };
    CheckBody {
        check: CheckAnswer::from(&result),
        leader_id: 2,
        term: 7,
        signature: None,
    }
}

fn signed(body: &CheckBody, mac: Option<MacAddr>, nonce: Option<&Nonce>) -> CheckBody {
    let mut body = body.clone();
    body.signature = Some(AnswerSigner::new(key(7)).sign(&SignedFields::of(&body, mac, nonce)));
    body
}

#[test]
fn the_message_has_the_documented_bytes() {
    let body = answer();
    let n = nonce();
    let message = SignedFields::of(&body, Some(mac()), Some(&n)).message();
    assert_eq!(
        String::from_utf8(message).unwrap(),
        "licd-check-v1\n\
         node=app-1\n\
         mac=aa:bb:cc:dd:ee:01\n\
         valid=true\n\
         code=VALID\n\
         license=acme-2026\n\
         lease_remaining_ms=25500\n\
         checked_at=1795835510000\n\
         answered_by=2\n\
         nonce=000102030405060708090a0b0c0d0e0f\n"
    );
}

#[test]
fn absent_fields_are_empty_lines() {
    let mut body = answer();
    body.check.valid = false;
    body.check.code = ErrorCode::NotAllocated;
    body.check.license = None;
    body.check.lease_remaining_ms = None;
    let message = SignedFields::of(&body, None, None).message();
    assert_eq!(
        String::from_utf8(message).unwrap(),
        "licd-check-v1\nnode=app-1\nmac=\nvalid=false\ncode=NOT_ALLOCATED\nlicense=\n\
         lease_remaining_ms=\nchecked_at=1795835510000\nanswered_by=2\nnonce=\n"
    );
}

#[test]
fn the_key_id_and_the_signature_are_fixed_for_a_fixed_key() {
    // The figures were computed apart from this code (Python's hashlib and cryptography),
    // for the seed [7; 32] and the documented message of `answer()`.
    let signer = AnswerSigner::new(key(7));
    assert_eq!(
        licd_raft::license_file::encode_public_key(&signer.public_key()),
        "6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw="
    );
    assert_eq!(signer.key_id(), "fe812c12f3ab4ce6");
    assert_ne!(signer.key_id(), key_id(&key(8).verifying_key()));
    let body = answer();
    let n = nonce();
    let a = signer.sign(&SignedFields::of(&body, Some(mac()), Some(&n)));
    let b = signer.sign(&SignedFields::of(&body, Some(mac()), Some(&n)));
    // Ed25519 is deterministic: the same answer has the same signature.
    assert_eq!(a, b);
    assert_eq!(a.scheme, "licd-check-v1");
    assert_eq!(a.nonce, "000102030405060708090a0b0c0d0e0f");
    assert_eq!(
        a.value,
        "0SV21bNJzXZWAYaFAG1af0VvaJ/v/3x7o+AazMnv0k3ylegrpPZ9g53DOuLgr6NI/QXcMOwp8RgoCc7dwbWSCg=="
    );
    assert_eq!(
        format!("{signer:?}"),
        format!("AnswerSigner {{ key_id: {} }}", a.key_id)
    );
}

#[test]
fn a_signed_answer_verifies() {
    let n = nonce();
    let body = signed(&answer(), Some(mac()), Some(&n));
    let keys = [key(1).verifying_key(), key(7).verifying_key()];
    assert_eq!(verify(&body, &node(), Some(mac()), Some(&n), &keys), Ok(()));
    let unnonced = signed(&answer(), None, None);
    assert_eq!(verify(&unnonced, &node(), None, None, &keys), Ok(()));
}

/// A change made to an answer.
type Change = fn(&mut CheckBody);

#[test]
fn every_signed_field_changed_breaks_verification() {
    let n = nonce();
    let good = signed(&answer(), Some(mac()), Some(&n));
    let keys = [key(7).verifying_key()];
    let changes: [(&str, Change); 8] = [
        ("valid", |b| b.check.valid = false),
        ("code", |b| b.check.code = ErrorCode::LeaseExpired),
        ("license", |b| b.check.license = None),
        ("license id", |b| {
            if let Some(l) = &mut b.check.license {
                l.id = LicenseId::new("other").unwrap();
            }
        }),
        ("lease", |b| b.check.lease_remaining_ms = Some(99_000)),
        ("no lease", |b| b.check.lease_remaining_ms = None),
        ("time", |b| b.check.checked_at = Timestamp(1)),
        ("answered by", |b| b.leader_id = 3),
    ];
    for (what, change) in changes {
        let mut forged = good.clone();
        change(&mut forged);
        assert_eq!(
            verify(&forged, &node(), Some(mac()), Some(&n), &keys),
            Err(SignatureError::Invalid),
            "changing {what} must break the signature"
        );
    }
    // The caller's own inputs: another MAC asked, another server.
    assert_eq!(
        verify(&good, &node(), None, Some(&n), &keys),
        Err(SignatureError::Invalid)
    );
    let mut renamed = good.clone();
    renamed.check.node = NodeName::new("app-2").unwrap();
    assert!(matches!(
        verify(
            &renamed,
            &NodeName::new("app-2").unwrap(),
            Some(mac()),
            Some(&n),
            &keys
        ),
        Err(SignatureError::Invalid)
    ));
    assert!(matches!(
        verify(
            &good,
            &NodeName::new("app-2").unwrap(),
            Some(mac()),
            Some(&n),
            &keys
        ),
        Err(SignatureError::WrongNode { .. })
    ));
    // Fields outside the signature may change (they are not to be decided on).
    let mut reworded = good.clone();
    reworded.check.message = "anything".into();
    assert_eq!(
        verify(&reworded, &node(), Some(mac()), Some(&n), &keys),
        Ok(())
    );
}

#[test]
fn a_replayed_an_unsigned_or_a_foreign_answer_is_refused() {
    let n = nonce();
    let good = signed(&answer(), Some(mac()), Some(&n));
    let keys = [key(7).verifying_key()];
    let other = Nonce::random();
    assert_eq!(
        verify(&good, &node(), Some(mac()), Some(&other), &keys),
        Err(SignatureError::WrongNonce)
    );
    // The echo altered to the new nonce: the signature still covers the old one.
    let mut replayed = good.clone();
    if let Some(s) = &mut replayed.signature {
        s.nonce = other.to_hex();
    }
    assert_eq!(
        verify(&replayed, &node(), Some(mac()), Some(&other), &keys),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        verify(&answer(), &node(), Some(mac()), Some(&n), &keys),
        Err(SignatureError::Missing)
    );
    let foreign = {
        let mut b = answer();
        b.signature =
            Some(AnswerSigner::new(key(9)).sign(&SignedFields::of(&b, Some(mac()), Some(&n))));
        b
    };
    assert!(matches!(
        verify(&foreign, &node(), Some(mac()), Some(&n), &keys),
        Err(SignatureError::UnknownKey(_))
    ));
    // Signed by another key under the trusted key's id.
    let mut impostor = foreign.clone();
    if let Some(s) = &mut impostor.signature {
        s.key_id = key_id(&keys[0]);
    }
    assert_eq!(
        verify(&impostor, &node(), Some(mac()), Some(&n), &keys),
        Err(SignatureError::Invalid)
    );
    let mut garbled = good.clone();
    if let Some(s) = &mut garbled.signature {
        s.value = "not base64!".into();
    }
    assert_eq!(
        verify(&garbled, &node(), Some(mac()), Some(&n), &keys),
        Err(SignatureError::Malformed)
    );
    let mut later = good.clone();
    if let Some(s) = &mut later.signature {
        s.scheme = "licd-check-v9".into();
    }
    assert!(matches!(
        verify(&later, &node(), Some(mac()), Some(&n), &keys),
        Err(SignatureError::UnknownScheme(_))
    ));
}

#[test]
fn nonces_are_hex_of_16_to_64_bytes() {
    assert_eq!(Nonce::parse(&"ab".repeat(16)).unwrap().as_bytes().len(), 16);
    assert_eq!(
        Nonce::parse(&"AB".repeat(64)).unwrap().to_hex(),
        "ab".repeat(64)
    );
    for bad in [
        "",
        "abc",
        &"ab".repeat(15),
        &"ab".repeat(65),
        &"zz".repeat(16),
    ] {
        assert!(Nonce::parse(bad).is_err(), "{bad:?} must be refused");
    }
    let multibyte = "é".repeat(16);
    assert!(Nonce::parse(&multibyte).is_err());
    let a = Nonce::random();
    assert_eq!(a.as_bytes().len(), CLIENT_NONCE_BYTES);
    assert_ne!(a, Nonce::random());
    assert!(
        Nonce::parse("zz")
            .unwrap_err()
            .to_string()
            .contains("16 to 64 bytes")
    );
}
