//! Access control over real HTTP: every route against every kind of credential, token
//! rotation, anonymous clients, refused writes that leave the log alone, and the forwarding
//! marker. Forwarding paths, strict bodies and limits are in tests/access_limits.rs.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    ADMIN_TOKEN, CLIENT_TOKEN, CLIENT_TOKEN_2, CLUSTER_SECRET, Cluster, OPERATOR_TOKEN, license,
};
use licd::auth::{Need, ROUTES, Role};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The role of every route, written out independently of `licd::auth::ROUTES`: a wrong or
/// missing entry in the table fails the matrix.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("PUT", "/v1/nodes/{node}/allocation", "client"),
    ("DELETE", "/v1/nodes/{node}/allocation", "client"),
    ("POST", "/v1/nodes/{node}/heartbeat", "client"),
    ("GET", "/v1/nodes/{node}/check", "client"),
    ("GET", "/v1/licenses", "operator"),
    ("GET", "/v1/licenses/{id}", "operator"),
    ("GET", "/v1/events", "operator"),
    ("GET", "/v1/cluster", "any"),
    ("POST", "/admin/init", "admin"),
    ("GET", "/admin/status", "operator"),
    ("POST", "/admin/elect", "admin"),
    ("POST", "/admin/learners", "admin"),
    ("PUT", "/admin/voters", "admin"),
    ("POST", "/admin/voters/{id}", "admin"),
    ("DELETE", "/admin/members/{id}", "admin"),
    ("POST", "/admin/licenses", "admin"),
    ("DELETE", "/admin/licenses/{id}", "admin"),
    ("DELETE", "/admin/nodes/{node}/allocation", "admin"),
    ("POST", "/admin/snapshot", "admin"),
    ("GET", "/admin/snapshot", "admin"),
    ("GET", "/metrics", "operator"),
    ("POST", "/raft/append", "cluster"),
    ("POST", "/raft/vote", "cluster"),
    ("POST", "/raft/snapshot", "cluster"),
    ("GET", "/healthz", "open"),
    ("GET", "/readyz", "open"),
    ("GET", "/openapi.json", "open"),
    ("GET", "/ui", "open"),
    ("GET", "/ui/app.js", "open"),
    ("GET", "/ui/style.css", "open"),
];

fn need_name(need: Need) -> String {
    match need {
        Need::Open => "open".into(),
        Need::ClusterSecret => "cluster".into(),
        Need::AnyRole => "any".into(),
        Need::Role(r) => r.as_str().into(),
    }
}

/// A concrete path for a route template, aimed at nothing that matters: unknown members,
/// licenses and servers.
fn concrete(path: &str) -> String {
    let id = if path.contains("/voters/") || path.contains("/members/") {
        "99"
    } else {
        "no-such-license"
    };
    path.replace("{node}", "mx-node").replace("{id}", id)
}

#[derive(Debug, Clone, Copy)]
enum Credential {
    None,
    Wrong,
    Role(Role),
}

fn token_of(role: Role) -> &'static str {
    match role {
        Role::Admin => ADMIN_TOKEN,
        Role::Operator => OPERATOR_TOKEN,
        Role::Client => CLIENT_TOKEN,
    }
}

async fn send(
    http: &reqwest::Client,
    addr: &str,
    method: &str,
    path: &str,
    credential: Credential,
) -> (StatusCode, serde_json::Value) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = http.request(method, format!("http://{addr}{path}"));
    request = match credential {
        Credential::None => request,
        Credential::Wrong => request.bearer_auth("licd-client-not-a-configured-token"),
        Credential::Role(r) => request.bearer_auth(token_of(r)),
    };
    let response = request.send().await.expect("the node answers");
    let status = response.status();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_answers_each_credential_as_its_role_allows() {
    // The table and the independent expectation name the same routes with the same needs.
    let table: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.into(), r.path.into(), need_name(r.need)))
        .collect();
    let expected: BTreeSet<(String, String, String)> = EXPECTED
        .iter()
        .map(|(m, p, n)| ((*m).into(), (*p).into(), (*n).into()))
        .collect();
    assert_eq!(
        table, expected,
        "the route table differs from the expectation"
    );

    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let http = reqwest::Client::new();
    for target in [leader, follower] {
        let addr = cluster.addrs[&target].to_string();
        for route in ROUTES {
            let path = concrete(route.path);
            let credentials = [
                Credential::None,
                Credential::Wrong,
                Credential::Role(Role::Admin),
                Credential::Role(Role::Operator),
                Credential::Role(Role::Client),
            ];
            for credential in credentials {
                let (status, body) = send(&http, &addr, route.method, &path, credential).await;
                let what = format!(
                    "{} {path} on node {target} with {credential:?}",
                    route.method
                );
                assert_ne!(body["code"], "NOT_FOUND", "{what}: no such route");
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}");
                let allowed = match (route.need, credential) {
                    (Need::Open, _) => true,
                    (Need::ClusterSecret, _) => false,
                    (_, Credential::None | Credential::Wrong) => false,
                    (Need::AnyRole, Credential::Role(_)) => true,
                    (Need::Role(need), Credential::Role(role)) => {
                        role == Role::Admin || role == need
                    }
                };
                if allowed {
                    assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "{what}: refused with {status} {body}"
                    );
                    continue;
                }
                let wanted = match (route.need, credential) {
                    (_, Credential::None) | (Need::ClusterSecret, _) => StatusCode::UNAUTHORIZED,
                    _ => StatusCode::FORBIDDEN,
                };
                assert_eq!(status, wanted, "{what}: {body}");
                let code = if wanted == StatusCode::UNAUTHORIZED {
                    "UNAUTHORIZED"
                } else {
                    "FORBIDDEN"
                };
                assert_eq!(body["code"], code, "{what}");
                assert!(
                    body["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{what}"
                );
            }
            // The Raft transport: the cluster secret, not a token, and the cluster's id.
            if route.need == Need::ClusterSecret {
                let own = cluster
                    .node(target)
                    .cluster_id()
                    .expect("an initialized node has a cluster id");
                let other = licd::cluster_id::ClusterId::generate().to_string();
                for (secret, id, wanted) in [
                    (
                        "wrong-cluster-secret-0123456789",
                        Some(&*own),
                        StatusCode::FORBIDDEN,
                    ),
                    (CLUSTER_SECRET, Some(&*own), StatusCode::BAD_REQUEST),
                    (CLUSTER_SECRET, Some(other.as_str()), StatusCode::CONFLICT),
                    (CLUSTER_SECRET, None, StatusCode::CONFLICT),
                ] {
                    let mut request = http
                        .post(format!("http://{addr}{path}"))
                        .header(licd::api::CLUSTER_SECRET_HEADER, secret);
                    if let Some(id) = id {
                        request = request.header(licd::api::CLUSTER_ID_HEADER, id);
                    }
                    let response = request.body("not bincode").send().await.unwrap();
                    let status = response.status();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    assert_eq!(
                        status, wanted,
                        "{path} with secret {secret}, cluster id {id:?}: {body}"
                    );
                    if wanted == StatusCode::CONFLICT {
                        assert_eq!(body["code"], "CLUSTER_MISMATCH", "{path}: {body}");
                    }
                }
            }
        }
    }
    cluster.shutdown().await;
}

/// A client of node `id` only, with `token`.
fn one_node_client(cluster: &Cluster, id: u64, token: &str) -> licd::client::Client {
    licd::client::Client::with_policy(
        &[cluster.addrs[&id].to_string()],
        licd::client::RetryPolicy {
            deadline: Duration::from_secs(5),
            ..Default::default()
        },
    )
    .unwrap()
    .with_token(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_client_tokens_both_work_and_a_removed_one_is_refused_after_a_restart() {
    let mut cluster = Cluster::start(3).await;
    cluster.install(&license("acme", 64)).await;
    let node = |n: &str| licd_raft::types::NodeName::new(n).unwrap();
    for (token, server) in [(CLIENT_TOKEN, "rot-a"), (CLIENT_TOKEN_2, "rot-b")] {
        let answer = cluster
            .client()
            .with_token(token)
            .check(&node(server), None)
            .await;
        assert!(answer.is_ok(), "{token}: {answer:?}");
    }
    // Rotation: the old token leaves node 2's configuration; node 2 restarts with it, and
    // with an election timeout shorter than the others' so that it campaigns first.
    let config = cluster.configs.get_mut(&2).unwrap();
    config
        .auth
        .tokens
        .retain(|t| t.name.as_deref() != Some("test-client"));
    config.raft.election_timeout_min_ms = 120;
    config.raft.election_timeout_max_ms = 150;
    cluster.stop(2).await;
    cluster.restart(2).await;
    // Node 2 leads: every request reaches it, forwarded or not. A healthy leader keeps its
    // followers' votes (they refuse a campaign while its lease lasts), so stop the leader
    // and let node 2 win the next election; a bounded number of times.
    let mut leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    for _ in 0..5 {
        if leader == 2 {
            break;
        }
        let applied = cluster
            .node(leader)
            .metrics()
            .last_applied
            .map_or(0, |l| l.index);
        cluster
            .wait_applied(2, applied, Duration::from_secs(10))
            .await;
        cluster.stop(leader).await;
        let stopped = leader;
        leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
        cluster.restart(stopped).await;
    }
    assert_eq!(leader, 2, "node 2 did not win an election");
    let refused = one_node_client(&cluster, 2, CLIENT_TOKEN)
        .check(&node("rot-a"), None)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(licd::api::ErrorCode::Forbidden),
        "{refused}"
    );
    // Node 1 still accepts the old token, and forwards the check with it: the leader checks
    // the token again and refuses it.
    let refused = one_node_client(&cluster, 1, CLIENT_TOKEN)
        .check(&node("rot-a"), None)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(licd::api::ErrorCode::Forbidden),
        "{refused}"
    );
    for via in [1, 2] {
        one_node_client(&cluster, via, CLIENT_TOKEN_2)
            .check(&node("rot-b"), None)
            .await
            .expect("the new token works everywhere");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_clients_are_served_only_when_the_operator_allows_them() {
    let closed = Cluster::start(1).await;
    let node = licd_raft::types::NodeName::new("anon").unwrap();
    let refused = closed
        .anonymous_client()
        .check(&node, None)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(licd::api::ErrorCode::Unauthorized),
        "{refused}"
    );
    closed.shutdown().await;

    let open = Cluster::start_with(1, |c| c.auth.allow_anonymous_clients = true).await;
    open.install(&license("acme", 64)).await;
    let anonymous = open.anonymous_client();
    anonymous
        .check(&node, None)
        .await
        .expect("an anonymous check");
    anonymous
        .cluster_health()
        .await
        .expect("the health summary, as a client");
    // Only the client routes: the licenses with their MACs stay an operator's.
    let refused = anonymous.licenses().await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(licd::api::ErrorCode::Unauthorized),
        "{refused}"
    );
    open.shutdown().await;
}

/// Every node's last log index and applied index.
fn log_positions(cluster: &Cluster) -> Vec<(Option<u64>, Option<u64>)> {
    cluster
        .running
        .values()
        .map(|r| {
            let m = r.node.metrics();
            (m.last_log_index, m.last_applied.map(|l| l.index))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_writes_never_reach_the_log_on_the_leader_or_a_follower() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("acme", 64)).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = log_positions(&cluster);
    let http = reqwest::Client::new();
    let body = json!({"license": "acme", "mac": "02:00:00:00:00:01", "cores": 4});
    for target in [leader, follower] {
        let addr = cluster.addrs[&target];
        let attempts: [(Method, &str, Option<&str>, StatusCode); 5] = [
            (
                Method::PUT,
                "/v1/nodes/x/allocation",
                None,
                StatusCode::UNAUTHORIZED,
            ),
            (
                Method::PUT,
                "/v1/nodes/x/allocation",
                Some("licd-bogus-token"),
                StatusCode::FORBIDDEN,
            ),
            (
                Method::PUT,
                "/v1/nodes/x/allocation",
                Some(OPERATOR_TOKEN),
                StatusCode::FORBIDDEN,
            ),
            (
                Method::DELETE,
                "/admin/licenses/acme",
                Some(CLIENT_TOKEN),
                StatusCode::FORBIDDEN,
            ),
            (
                Method::DELETE,
                "/admin/licenses/acme",
                Some(OPERATOR_TOKEN),
                StatusCode::FORBIDDEN,
            ),
        ];
        for (method, path, token, wanted) in attempts {
            let mut request = http
                .request(method.clone(), format!("http://{addr}{path}"))
                .json(&body);
            if let Some(t) = token {
                request = request.bearer_auth(t);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                wanted,
                "{method} {path} on node {target} with {token:?}"
            );
            // Refused by the node asked, not forwarded (a forwarded answer names the
            // leader as the node that answered).
            let answered_by = response.headers()[licd::api::NODE_ID_HEADER]
                .to_str()
                .unwrap();
            assert_eq!(
                answered_by,
                target.to_string(),
                "{method} {path}: forwarded"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        log_positions(&cluster),
        before,
        "a refused write reached the log"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outsiders_forwarded_marker_is_ignored() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let http = reqwest::Client::new();
    for (path, token) in [
        ("/v1/licenses", OPERATOR_TOKEN),
        ("/admin/status", ADMIN_TOKEN),
    ] {
        let response = http
            .get(format!("http://{}{path}", cluster.addrs[&follower]))
            .bearer_auth(token)
            .header(licd::api::FORWARDED_HEADER, "9")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{path} with a forged marker"
        );
        let answered_by = response.headers()[licd::api::NODE_ID_HEADER]
            .to_str()
            .unwrap();
        assert_eq!(
            answered_by,
            leader.to_string(),
            "{path}: forwarded to the leader"
        );
    }
    // With the cluster secret beside it the marker is a node's, and a follower refuses to
    // forward again.
    let response = http
        .get(format!("http://{}/v1/licenses", cluster.addrs[&follower]))
        .bearer_auth(OPERATOR_TOKEN)
        .header(licd::api::FORWARDED_HEADER, "9")
        .header(licd::api::CLUSTER_SECRET_HEADER, CLUSTER_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    cluster.shutdown().await;
}
