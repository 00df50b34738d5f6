//! Lease tokens on a real three-node cluster: a name or a MAC holds one live allocation, a
//! heartbeat or a release must present the allocation's token (refused before the log
//! otherwise), a retry is answered the same token, and a name whose lease ended is free.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, license, mac};
use licd::api::{AllocateBody, ErrorCode, GrantBody, LEASE_TOKEN_HEADER};
use licd::client::{Client, ClientError, new_request_id};
use licd::lease_token::LeaseToken;
use licd_raft::types::{Cores, NodeName};
use reqwest::StatusCode;

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

/// An allocation body; a long lease unless `ttl_ms` says otherwise, so that no checkpoint
/// falls due while a test counts log entries.
fn body(mac_index: u8, ttl_ms: u64) -> AllocateBody {
    AllocateBody {
        license: None,
        mac: mac(mac_index),
        cores: Cores::new(4).unwrap(),
        ttl_ms: Some(ttl_ms),
        request_id: None,
    }
}

const LONG_MS: u64 = 60_000;

async fn allocate(client: &Client, name: &str, mac_index: u8) -> Result<GrantBody, ClientError> {
    client
        .allocate(&node(name), &body(mac_index, LONG_MS), &new_request_id())
        .await
}

/// The API refusal's status and code.
fn refusal(e: ClientError) -> (StatusCode, ErrorCode) {
    match e {
        ClientError::Api { status, body } => (status, body.code),
        other => panic!("expected an API refusal, got {other}"),
    }
}

/// The leader's last log index, after the cluster settled.
async fn last_log_index(cluster: &Cluster) -> Option<u64> {
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    cluster.node(leader).metrics().last_log_index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_and_a_mac_hold_one_live_allocation() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 64)).await;
    let client = cluster.client();
    let first = allocate(&client, "app-1", 1).await.unwrap();

    // Another host, another licensed MAC, the same name, no token: refused.
    let stolen = allocate(&client, "app-1", 2).await.unwrap_err();
    assert_eq!(
        refusal(stolen),
        (StatusCode::CONFLICT, ErrorCode::NodeInUse)
    );
    // Declaring the first host's MAC proves nothing either.
    let stolen = allocate(&client, "app-1", 1).await.unwrap_err();
    assert_eq!(
        refusal(stolen),
        (StatusCode::CONFLICT, ErrorCode::NodeInUse)
    );
    // A wrong token is no better.
    let guess: LeaseToken = "00000000000000000000000000000000".parse().unwrap();
    let stolen = client
        .reallocate(&node("app-1"), &body(2, LONG_MS), &new_request_id(), &guess)
        .await
        .unwrap_err();
    assert_eq!(
        refusal(stolen),
        (StatusCode::CONFLICT, ErrorCode::NodeInUse)
    );
    // The first host is still licensed; the thief's MAC is not.
    let check = client.check(&node("app-1"), Some(mac(1))).await.unwrap();
    assert_eq!(check.check.code, ErrorCode::Valid, "{check:?}");
    let check = client.check(&node("app-1"), Some(mac(2))).await.unwrap();
    assert!(!check.check.valid, "{check:?}");
    assert_eq!(check.check.code, ErrorCode::InvalidMultiServerLicense);

    // Another name with the first host's MAC: refused.
    let shared = allocate(&client, "app-2", 1).await.unwrap_err();
    assert_eq!(refusal(shared), (StatusCode::CONFLICT, ErrorCode::MacInUse));

    // With its token the holder re-allocates, keeping the token.
    let again = client
        .reallocate(
            &node("app-1"),
            &AllocateBody {
                cores: Cores::new(8).unwrap(),
                ..body(1, LONG_MS)
            },
            &new_request_id(),
            &first.lease_token,
        )
        .await
        .unwrap();
    assert!(again.replaced);
    assert_eq!(again.allocation.cores.get(), 8);
    assert_eq!(again.lease_token, first.lease_token);
    // The usage listing never shows a token.
    let usage =
        serde_json::to_string(&cluster.operator_client().licenses().await.unwrap()).unwrap();
    assert!(!usage.contains(&first.lease_token.reveal()), "{usage}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_releases_need_the_token_and_a_refusal_writes_nothing() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 64)).await;
    let client = cluster.client();
    let grant = allocate(&client, "app-1", 1).await.unwrap();
    let wrong: LeaseToken = "0123456789abcdef0123456789abcdef".parse().unwrap();
    let app = node("app-1");

    let before = last_log_index(&cluster).await;
    let missing = client.heartbeat(&app, None, &new_request_id()).await;
    let expected = (StatusCode::UNAUTHORIZED, ErrorCode::LeaseTokenRequired);
    assert_eq!(refusal(missing.unwrap_err()), expected);
    let mismatch = client
        .heartbeat(&app, Some(&wrong), &new_request_id())
        .await;
    let expected_wrong = (StatusCode::FORBIDDEN, ErrorCode::LeaseTokenMismatch);
    assert_eq!(refusal(mismatch.unwrap_err()), expected_wrong);
    let missing = client.release(&app, None, &new_request_id()).await;
    assert_eq!(refusal(missing.unwrap_err()), expected);
    let mismatch = client.release(&app, Some(&wrong), &new_request_id()).await;
    assert_eq!(refusal(mismatch.unwrap_err()), expected_wrong);
    // A header that is no token at all is bad input.
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let answer = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/nodes/app-1/heartbeat",
            cluster.addrs[&leader]
        ))
        .bearer_auth(common::CLIENT_TOKEN)
        .header(LEASE_TOKEN_HEADER, "not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let error: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(error["code"], "BAD_REQUEST");
    // The right token renews, without a log write either.
    let renewed = client
        .heartbeat(&app, Some(&grant.lease_token), &new_request_id())
        .await
        .unwrap();
    assert!(renewed.lease_remaining_ms > LONG_MS / 2);
    assert_eq!(
        last_log_index(&cluster).await,
        before,
        "a refusal wrote to the log"
    );
    let check = client.check(&app, None).await.unwrap();
    assert_eq!(check.check.code, ErrorCode::Valid);

    // The right token releases.
    let released = client
        .release(&app, Some(&grant.lease_token), &new_request_id())
        .await
        .unwrap();
    assert!(released.released);
    let check = client.check(&app, None).await.unwrap();
    assert_eq!(check.check.code, ErrorCode::NotAllocated);

    // The administrator's release needs no token.
    allocate(&client, "app-2", 2).await.unwrap();
    let forced = cluster
        .admin_client()
        .force_release(&node("app-2"), &new_request_id())
        .await
        .unwrap();
    assert!(forced.released);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_gets_the_same_token_and_an_ended_lease_frees_the_name() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 64)).await;
    let client = cluster.client();

    // The same request id twice: the retry is answered the first token, from any leader
    // (the token is derived, only its hash is in the log).
    let id = new_request_id();
    let short = body(1, 1_000);
    let first = client.allocate(&node("app-1"), &short, &id).await.unwrap();
    let retry = client.allocate(&node("app-1"), &short, &id).await.unwrap();
    assert_eq!(retry.lease_token, first.lease_token);
    assert_eq!(retry.allocation, first.allocation);
    // Another request is another token.
    let other = allocate(&client, "app-2", 2).await.unwrap();
    assert_ne!(other.lease_token, first.lease_token);

    // app-1 stops heartbeating; once its lease ended another host may take the name.
    let deadline = Instant::now() + Duration::from_secs(15);
    let taken = loop {
        match allocate(&client, "app-1", 3).await {
            Ok(grant) => break grant,
            Err(e) => {
                assert_eq!(refusal(e).1, ErrorCode::NodeInUse);
                assert!(
                    Instant::now() < deadline,
                    "the ended lease never freed the name"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(!taken.replaced);
    assert_ne!(taken.lease_token, first.lease_token);
    // The old token speaks for nothing now.
    let stale = client
        .heartbeat(&node("app-1"), Some(&first.lease_token), &new_request_id())
        .await;
    let expected = (StatusCode::FORBIDDEN, ErrorCode::LeaseTokenMismatch);
    assert_eq!(refusal(stale.unwrap_err()), expected);
    let check = client.check(&node("app-1"), Some(mac(3))).await.unwrap();
    assert_eq!(check.check.code, ErrorCode::Valid);
    // And its MAC is free for another name.
    allocate(&client, "app-3", 1).await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_release_gets_its_first_answer_after_the_name_changed_hands() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 64)).await;
    let client = cluster.client();
    let app = node("app-1");
    let first = allocate(&client, "app-1", 1).await.unwrap();
    let id = new_request_id();
    let released = client
        .release(&app, Some(&first.lease_token), &id)
        .await
        .unwrap();
    assert!(released.released);
    // Another host takes the name while the holder, which never saw the answer, retries.
    let taken = allocate(&client, "app-1", 2).await.unwrap();
    assert_ne!(taken.lease_token, first.lease_token);
    let retry = client
        .release(&app, Some(&first.lease_token), &id)
        .await
        .expect("a retry is answered as the release was, not refused for the new holder's token");
    assert!(retry.released);
    assert_eq!(
        format!("{:?}", retry.freed),
        format!("{:?}", released.freed)
    );
    // The answer names the entry the retry went into (docs/api.md), after the first one.
    assert!(
        retry.log.index > released.log.index,
        "{:?} {:?}",
        retry.log,
        released.log
    );
    // And it released nothing a second time.
    let check = client.check(&app, Some(mac(2))).await.unwrap();
    assert_eq!(check.check.code, ErrorCode::Valid);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_refused_for_its_token_only_by_a_confirmed_leader() {
    let mut cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 64)).await;
    allocate(&cluster.client(), "app-1", 1).await.unwrap();
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let wrong = "0123456789abcdef0123456789abcdef";
    let release = |addr: std::net::SocketAddr| {
        reqwest::Client::new()
            .delete(format!("http://{addr}/v1/nodes/app-1/allocation"))
            .bearer_auth(common::CLIENT_TOKEN)
            .header(LEASE_TOKEN_HEADER, wrong)
            .header("x-request-id", new_request_id().as_str())
            .timeout(Duration::from_secs(15))
            .send()
    };
    // Alone, the leader still believes it leads, but its state could be behind a newer
    // leader's: it cannot tell this token from the allocation's, so it must not refuse it.
    let followers: Vec<u64> = cluster
        .running
        .keys()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    for id in &followers {
        cluster.stop(*id).await;
    }
    assert!(cluster.node(leader).is_leader());
    let alone = release(cluster.addrs[&leader]).await.unwrap();
    let status = alone.status();
    let error: serde_json::Value = alone.json().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert_ne!(error["code"], "LEASE_TOKEN_MISMATCH");
    // With a majority again, the token is refused.
    for id in &followers {
        cluster.restart(*id).await;
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = release(cluster.addrs[&leader]).await.unwrap();
        if answer.status() == StatusCode::FORBIDDEN {
            let error: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(error["code"], "LEASE_TOKEN_MISMATCH");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never refused: {}",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.shutdown().await;
}
