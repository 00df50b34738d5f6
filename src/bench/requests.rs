//! The requests of each workload, for licd and for etcd.
//!
//! Every request gets its headers from [`request`], the one place that knows what a request
//! to the measured cluster carries (`Host`, the bearer token of [`Access`] and, with a body,
//! `Content-Type`); a bench server's re-allocations and heartbeats also present its lease
//! token, derived as the leader derives it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use licd_raft::types::{MacAddr, NodeName, RequestId};

use crate::api::REQUEST_ID_HEADER;
use crate::client::new_request_id;
use crate::lease_token::{LEASE_TOKEN_HEADER, LeaseToken};

/// What every request to the measured cluster presents.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// A bearer token sent as `Authorization: Bearer <token>`, when the cluster needs one.
    pub bearer: Option<String>,
    /// The bench cluster's secret, when the bench started the cluster: each bench server's
    /// first allocation has a fixed request id ([`first_request_id`]), so the bench derives
    /// the server's lease token from it, as the leader does, and presents it on every
    /// re-allocation and heartbeat.
    pub cluster_secret: Option<String>,
}

/// The request id of the first allocation of server `index` of `group`: fixed, so that its
/// lease token can be derived (a re-allocation keeps the token of the first).
pub fn first_request_id(group: u8, index: u32) -> Option<RequestId> {
    RequestId::new(format!("bench-first-{group}-{index}")).ok()
}

/// The lease token of server `index` of `group`, when the bench knows the cluster secret.
pub fn lease_token(access: &Access, group: u8, index: u32) -> Option<LeaseToken> {
    let secret = access.cluster_secret.as_deref()?;
    let node = NodeName::new(bench_node(group, index)).ok()?;
    Some(LeaseToken::derive(
        secret.as_bytes(),
        &first_request_id(group, index)?,
        &node,
    ))
}

/// Adds the lease token header of server `index` of `group`, when there is one.
fn with_lease_token(
    mut r: Request<Full<Bytes>>,
    access: &Access,
    group: u8,
    index: u32,
) -> Request<Full<Bytes>> {
    if let Some(token) = lease_token(access, group, index)
        && let Ok(v) = token.reveal().parse()
    {
        r.headers_mut().insert(LEASE_TOKEN_HEADER, v);
    }
    r
}

/// A request to `addr` (host:port) for `path` (with its query), with every header it needs.
pub fn request(
    access: &Access,
    method: Method,
    addr: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr);
    if let Some(token) = &access.bearer {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    if body.is_some() {
        builder = builder.header(CONTENT_TYPE, "application/json");
    }
    builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("a request built from valid parts")
}

/// The MAC of bench server `index` in `group` (the writers, the heartbeating servers, the
/// failover writer each have their own group): locally administered, so never a real card's.
pub fn bench_mac(group: u8, index: u32) -> MacAddr {
    let [_, b, c, d] = index.to_be_bytes();
    MacAddr::from_bytes([0x02, 0xb0 | (group & 0x0f), b, c, d, 0x00])
}

/// The node name of bench server `index` in `group`.
pub fn bench_node(group: u8, index: u32) -> String {
    format!("bench-{group}-{index}")
}

/// The cores each bench server allocates (the demo license's minimum per node).
pub const BENCH_CORES: u32 = 4;

/// The lease the bench servers allocate, as an application server's agent would.
pub const BENCH_LEASE_MS: u64 = 30_000;

/// licd: the first allocation of server `index` of `group`, under its fixed request id
/// ([`first_request_id`]).
pub fn licd_allocate_first(
    access: &Access,
    addr: &str,
    group: u8,
    index: u32,
) -> Request<Full<Bytes>> {
    let id = first_request_id(group, index).map(|id| id.to_string());
    allocation(access, addr, group, index, id)
}

/// licd: re-allocates server `index` of `group` with a fresh request id (a Raft write),
/// presenting its lease token.
pub fn licd_allocate(access: &Access, addr: &str, group: u8, index: u32) -> Request<Full<Bytes>> {
    let r = allocation(
        access,
        addr,
        group,
        index,
        Some(new_request_id().to_string()),
    );
    with_lease_token(r, access, group, index)
}

fn allocation(
    access: &Access,
    addr: &str,
    group: u8,
    index: u32,
    request_id: Option<String>,
) -> Request<Full<Bytes>> {
    let body = serde_json::json!({
        "mac": bench_mac(group, index).to_string(),
        "cores": BENCH_CORES,
        "ttl_ms": BENCH_LEASE_MS,
    });
    let mut r = request(
        access,
        Method::PUT,
        addr,
        &format!("/v1/nodes/{}/allocation", bench_node(group, index)),
        Some(body.to_string().into_bytes()),
    );
    if let Some(v) = request_id.and_then(|id| id.parse().ok()) {
        r.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    r
}

/// licd: checks server `index` of `group` (a linearizable read).
pub fn licd_check(access: &Access, addr: &str, group: u8, index: u32) -> Request<Full<Bytes>> {
    let path = format!(
        "/v1/nodes/{}/check?mac={}",
        bench_node(group, index),
        bench_mac(group, index)
    );
    request(access, Method::GET, addr, &path, None)
}

/// licd: renews server `index` of `group`'s lease.
pub fn licd_heartbeat(access: &Access, addr: &str, group: u8, index: u32) -> Request<Full<Bytes>> {
    let path = format!("/v1/nodes/{}/heartbeat", bench_node(group, index));
    with_lease_token(
        request(access, Method::POST, addr, &path, None),
        access,
        group,
        index,
    )
}

/// licd: the trivial route.
pub fn licd_healthz(access: &Access, addr: &str) -> Request<Full<Bytes>> {
    request(access, Method::GET, addr, "/healthz", None)
}

fn etcd_key(index: u32) -> String {
    BASE64.encode(format!("bench/{index}"))
}

/// etcd: puts key `index` (a Raft write), through the JSON gateway.
pub fn etcd_put(access: &Access, addr: &str, index: u32, seq: u64) -> Request<Full<Bytes>> {
    let body =
        serde_json::json!({ "key": etcd_key(index), "value": BASE64.encode(seq.to_string()) });
    request(
        access,
        Method::POST,
        addr,
        "/v3/kv/put",
        Some(body.to_string().into_bytes()),
    )
}

/// etcd: reads key `index`, linearizable (etcd's default).
pub fn etcd_range(access: &Access, addr: &str, index: u32) -> Request<Full<Bytes>> {
    let body = serde_json::json!({ "key": etcd_key(index) });
    request(
        access,
        Method::POST,
        addr,
        "/v3/kv/range",
        Some(body.to_string().into_bytes()),
    )
}

/// etcd: its trivial route.
pub fn etcd_version(access: &Access, addr: &str) -> Request<Full<Bytes>> {
    request(access, Method::GET, addr, "/version", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_macs_are_distinct_within_and_across_groups() {
        let mut seen = std::collections::BTreeSet::new();
        for group in 0..3 {
            for i in 0..5000 {
                assert!(seen.insert(bench_mac(group, i)), "{group} {i}");
            }
        }
    }

    #[test]
    fn every_request_carries_the_access_token_when_there_is_one() {
        let access = Access {
            bearer: Some("t0k".into()),
            cluster_secret: None,
        };
        let r = licd_check(&access, "127.0.0.1:1", 0, 1);
        assert_eq!(r.headers()[AUTHORIZATION], "Bearer t0k");
        assert_eq!(r.headers()[HOST], "127.0.0.1:1");
        let r = licd_allocate(&Access::default(), "h:1", 0, 1);
        assert!(r.headers().get(AUTHORIZATION).is_none());
        assert!(r.headers().contains_key(REQUEST_ID_HEADER));
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert!(r.headers().get(LEASE_TOKEN_HEADER).is_none());
    }

    #[test]
    fn re_allocations_and_heartbeats_present_the_token_the_leader_derived() {
        let secret = "bench-cluster-secret-0123456789";
        let access = Access {
            bearer: None,
            cluster_secret: Some(secret.into()),
        };
        let first = licd_allocate_first(&access, "h:1", 1, 7);
        let id = first_request_id(1, 7).unwrap();
        assert_eq!(first.headers()[REQUEST_ID_HEADER], id.as_str());
        assert!(first.headers().get(LEASE_TOKEN_HEADER).is_none());
        // What the leader answered the first allocation with.
        let node = NodeName::new(bench_node(1, 7)).unwrap();
        let expected = LeaseToken::derive(secret.as_bytes(), &id, &node).reveal();
        for r in [
            licd_allocate(&access, "h:1", 1, 7),
            licd_heartbeat(&access, "h:1", 1, 7),
        ] {
            assert_eq!(r.headers()[LEASE_TOKEN_HEADER], expected.as_str());
        }
        let other = licd_heartbeat(&access, "h:1", 1, 8);
        assert_ne!(other.headers()[LEASE_TOKEN_HEADER], expected.as_str());
    }
}
