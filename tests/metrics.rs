//! `GET /metrics`: Prometheus text with license usage, request outcomes and latencies,
//! refusals by code, Raft progress and peers, as the node asked sees them.

mod common;

use std::time::Duration;

use common::{Cluster, license, mac};
use licd::api::AllocateBody;
use licd::client::new_request_id;
use licd_raft::types::{Cores, NodeName};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_exports_usage_outcomes_refusals_and_raft_progress() {
    let cluster = Cluster::start(3).await;
    let mut lic = license("lic", 16);
    lic.expires_at = Some(licd::node::now().plus_millis(86_400_000));
    cluster.install(&lic).await;
    let client = cluster.client();
    let body = |m: u8, cores: u32| AllocateBody {
        license: None,
        mac: mac(m),
        cores: Cores::new(cores).unwrap(),
        ttl_ms: None,
        request_id: None,
    };
    let app = NodeName::new("app-1").unwrap();
    let grant = client
        .allocate(&app, &body(1, 12), &new_request_id())
        .await
        .unwrap();
    let refused = client
        .allocate(
            &NodeName::new("app-2").unwrap(),
            &body(2, 8),
            &new_request_id(),
        )
        .await
        .unwrap_err();
    assert!(refused.is(licd_raft::Code::CpuLimitExhausted));
    client
        .heartbeat(&app, Some(&grant.lease_token), &new_request_id())
        .await
        .unwrap();
    client.check(&app, None).await.unwrap();

    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let url = format!("http://{}/metrics", cluster.addrs[&leader]);
    // Metrics are an operator's: without a token they are refused.
    let refused = reqwest::get(&url).await.unwrap();
    assert_eq!(refused.status(), 401);
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(common::OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    for expected in [
        r#"licd_license_cores{license="lic",kind="licensed"} 16"#,
        r#"licd_license_cores{license="lic",kind="allocated"} 12"#,
        r#"licd_license_cores{license="lic",kind="free"} 4"#,
        r#"licd_license_servers{license="lic"} 1"#,
        r#"licd_requests_total{kind="allocate",outcome="ok"} 1"#,
        r#"licd_requests_total{kind="allocate",outcome="refused"} 1"#,
        r#"licd_requests_total{kind="heartbeat",outcome="ok"} 1"#,
        r#"licd_requests_total{kind="check",outcome="ok"} 1"#,
        r#"licd_refusals_total{code="CPU_LIMIT_EXHAUSTED"} 1"#,
        r#"licd_check_answers_total{code="VALID"} 1"#,
        r#"licd_request_duration_seconds_count{kind="check"} 1"#,
        "licd_raft_leader 1",
        "licd_voters 3",
        "licd_voters_up 3",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    for family in [
        "licd_raft_term",
        "licd_raft_applied_index",
        "licd_license_expiry_seconds",
        "licd_peer_healthy",
        "licd_peer_replication_lag",
        "licd_peer_last_contact_seconds",
    ] {
        assert!(text.contains(family), "missing {family} in:\n{text}");
    }
    let expiry: f64 = text
        .lines()
        .find(|l| l.starts_with("licd_license_expiry_seconds"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!((86_000.0..=86_400.0).contains(&expiry), "{expiry}");
    // A follower answers its own view: it does not lead.
    let follower = cluster.addrs.keys().find(|id| **id != leader).unwrap();
    let text = scrape(cluster.addrs[follower]).await;
    assert!(text.contains("licd_raft_leader 0"), "{text}");

    // A lease that ends without a heartbeat is counted by the leader that ended it.
    let short = AllocateBody {
        ttl_ms: Some(1_000),
        ..body(3, 2)
    };
    client
        .allocate(&NodeName::new("app-3").unwrap(), &short, &new_request_id())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
        let text = scrape(cluster.addrs[&leader]).await;
        if text.contains("licd_lease_expirations_total 1") {
            assert!(
                text.contains(r#"licd_license_cores{license="lic",kind="allocated"} 12"#),
                "{text}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no lease expiration counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.shutdown().await;
}

/// The metrics text of the node at `addr`, read with the operator's token.
async fn scrape(addr: std::net::SocketAddr) -> String {
    reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(common::OPERATOR_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
