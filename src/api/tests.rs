//! The wire format pinned as text: a change to a `licd-raft` struct (the log and snapshot
//! format) must not change these answers, and a change to the API must be made here on
//! purpose.

use licd_raft::Code;
use licd_raft::command::{Allocation, Grant};
use licd_raft::query::{CheckResult, LicenseSummary};
use licd_raft::types::{Cores, LeaseTtl, LicenseId, MacAddr, NodeName, RequestId, Timestamp};

use super::*;

fn allocation() -> Allocation {
    Allocation {
        license: LicenseId::new("acme-2026").unwrap(),
        mac: MacAddr::from_bytes([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01]),
        cores: Cores::new(8).unwrap(),
        counted_cores: 8,
        lease_ttl: LeaseTtl::from_millis(30_000).unwrap(),
        allocated_at: Timestamp(1_795_835_505_292),
        grant: 41,
        remaining_ms: 30_000,
        token_hash: Some(licd_raft::types::TokenHash([7; 32])),
    }
}

#[test]
fn a_grant_answer_keeps_its_documented_shape() {
    let grant = Grant {
        node: NodeName::new("app-1").unwrap(),
        allocation: allocation(),
        replaced: false,
        allocated_cores: 14,
        licensed_cores: 16,
    };
    let body = GrantBody::new(
        &grant,
        None,
        RequestId::new("c-1").unwrap(),
        LogPosition {
            term: 3,
            index: 118,
        },
        "0123456789abcdef0123456789abcdef".parse().unwrap(),
    );
    // The token hash the state holds is never on the wire; the token only here.
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        r#"{"node":"app-1","allocation":{"license":"acme-2026","mac":"aa:bb:cc:dd:ee:01","cores":8,"counted_cores":8,"lease_ttl":30000,"allocated_at":1795835505292,"lease_remaining_ms":30000},"replaced":false,"allocated_cores":14,"licensed_cores":16,"request_id":"c-1","log":{"term":3,"index":118},"lease_token":"0123456789abcdef0123456789abcdef"}"#
    );
    // Nor in its Debug form, which a log line might show.
    assert!(!format!("{body:?}").contains("0123456789abcdef"));
}

#[test]
fn a_release_and_a_renewal_show_no_token() {
    let freed = AllocationBody::from(&allocation());
    let body = ReleaseBody {
        node: NodeName::new("app-1").unwrap(),
        released: true,
        freed: Some(freed),
        request_id: RequestId::new("c-2").unwrap(),
        log: LogPosition {
            term: 3,
            index: 119,
        },
    };
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        r#"{"node":"app-1","released":true,"freed":{"license":"acme-2026","mac":"aa:bb:cc:dd:ee:01","cores":8,"counted_cores":8,"lease_ttl":30000,"allocated_at":1795835505292,"lease_remaining_ms":30000},"request_id":"c-2","log":{"term":3,"index":119}}"#
    );
}

#[test]
fn the_lease_token_codes_have_their_wire_names_and_statuses() {
    use crate::http::error::rejection_status;
    use axum::http::StatusCode;
    for (code, wire, status) in [
        (Code::NodeInUse, "NODE_IN_USE", StatusCode::CONFLICT),
        (Code::MacInUse, "MAC_IN_USE", StatusCode::CONFLICT),
        (
            Code::LeaseTokenRequired,
            "LEASE_TOKEN_REQUIRED",
            StatusCode::UNAUTHORIZED,
        ),
        (
            Code::LeaseTokenMismatch,
            "LEASE_TOKEN_MISMATCH",
            StatusCode::FORBIDDEN,
        ),
    ] {
        let body = ErrorBody::new(code.into(), code.default_message());
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"code":"{wire}","message":{:?}}}"#,
                code.default_message()
            )
        );
        assert_eq!(rejection_status(code), status, "{wire}");
    }
}

#[test]
fn a_check_answer_is_flat_with_the_leader_and_term() {
    let result = CheckResult {
        node: NodeName::new("app-1").unwrap(),
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
            features: vec!["ocr".into()],
        }),
        counted_cores: Some(8),
        allocated_cores: Some(14),
        licensed_cores: Some(16),
        lease_remaining_ms: Some(5_000),
        checked_at: Timestamp(4_000),
    };
    let body = CheckBody {
        check: CheckAnswer::from(&result),
        leader_id: 2,
        term: 7,
        signature: None,
    };
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        r#"{"node":"app-1","valid":true,"code":"VALID","message":"The server is licensed.","license":{"id":"acme-2026","customer":"Acme","serial":2,"issued_at":1000,"expires_at":null,"max_cores":16,"min_cores_per_node":4,"features":["ocr"]},"counted_cores":8,"allocated_cores":14,"licensed_cores":16,"lease_remaining_ms":5000,"checked_at":4000,"leader_id":2,"term":7}"#
    );
}

#[test]
fn a_signed_check_answer_ends_with_its_signature() {
    let mut body: CheckBody = serde_json::from_str(
        r#"{"node":"app-1","valid":false,"code":"NOT_ALLOCATED","message":"m","license":null,"counted_cores":null,"allocated_cores":null,"licensed_cores":null,"lease_remaining_ms":null,"checked_at":4000,"leader_id":2,"term":7}"#,
    )
    .unwrap();
    assert_eq!(body.signature, None);
    body.signature = Some(AnswerSignature {
        scheme: "licd-check-v1".into(),
        key_id: "fe812c12f3ab4ce6".into(),
        nonce: "00ff".into(),
        value: "c2ln".into(),
    });
    let text = serde_json::to_string(&body).unwrap();
    assert!(
        text.ends_with(r#""leader_id":2,"term":7,"signature":{"scheme":"licd-check-v1","key_id":"fe812c12f3ab4ce6","nonce":"00ff","value":"c2ln"}}"#),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<CheckBody>(&text).unwrap(), body);
}

#[test]
fn an_error_body_omits_absent_figures() {
    let body = ErrorBody::new(ErrorCode::NotLeader, "this node is not the leader");
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        r#"{"code":"NOT_LEADER","message":"this node is not the leader"}"#
    );
}

#[test]
fn a_rate_limited_answer_carries_its_wait() {
    let mut body = ErrorBody::new(ErrorCode::RateLimited, "slow down");
    body.retry_after_ms = Some(250);
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        r#"{"code":"RATE_LIMITED","message":"slow down","retry_after_ms":250}"#
    );
    let overloaded = ErrorBody::new(ErrorCode::Overloaded, "busy");
    assert_eq!(
        serde_json::to_string(&overloaded).unwrap(),
        r#"{"code":"OVERLOADED","message":"busy"}"#
    );
}
