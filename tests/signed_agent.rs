//! The agent with the cluster's answer key, in front of a forger that turns into an emulator
//! of the license cluster: it believes only signed answers, so the emulator gets it no
//! further than an outage would (grace on the last signed lease, then
//! `SERVERS_UNREACHABLE`), while an agent without the key is fooled. Leases are 3 s.

mod common;
#[path = "support/forger.rs"]
mod forger;

use std::time::{Duration, Instant};

use common::{Cluster, license, mac};
use ed25519_dalek::{SigningKey, VerifyingKey};
use forger::{Forger, Mode};
use licd::agent::{Agent, AgentConfig};
use licd::client::{Client, RetryPolicy, new_request_id};
use licd_raft::license_file::encode_signing_key;
use licd_raft::types::{Cores, LeaseTtl, MacAddr, NodeName};

const TTL_MS: u64 = 3_000;

fn agent(endpoint: &str, keys: Vec<VerifyingKey>, name: &str, mac: MacAddr) -> Agent {
    let client = Client::with_policy(
        &[endpoint],
        RetryPolicy {
            deadline: Duration::from_millis(TTL_MS / 3),
            attempt_timeout: Duration::from_millis(500),
            ..RetryPolicy::default()
        },
    )
    .unwrap()
    .with_token(common::CLIENT_TOKEN)
    .with_answer_keys(keys);
    Agent::spawn(
        client,
        AgentConfig {
            node: NodeName::new(name).unwrap(),
            license: None,
            mac,
            cores: Cores::new(4).unwrap(),
            lease_ttl: LeaseTtl::from_millis(TTL_MS).unwrap(),
            refused_retry: Duration::from_millis(300),
            state_file: None,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_the_answer_key_takes_an_emulator_for_an_outage() {
    let keys = tempfile::TempDir::new().unwrap();
    let key = SigningKey::from_bytes(&rand::random());
    let path = keys.path().join("answer-signing.key");
    std::fs::write(&path, format!("{}\n", encode_signing_key(&key))).unwrap();
    let public = key.verifying_key();
    let cluster = Cluster::start_with(3, |c| c.answer_signing_key_file = Some(path.clone())).await;
    cluster.install(&license("lic", 16)).await;
    let forger = Forger::start(&cluster.endpoints()[0]).await;

    // Relayed, the cluster's signed answers license the server.
    let verifying = agent(&forger.endpoint(), vec![public], "app-3", mac(3));
    let first =
        common::wait_for_agent(&verifying, Duration::from_secs(10), |s| s.code == "VALID").await;
    assert!(first.licensed);
    assert_eq!(first.cores, 4);
    // Let a renewal pass through, so the emulator has one to answer with.
    tokio::time::sleep(Duration::from_millis(TTL_MS / 2)).await;
    assert_eq!(verifying.status().code, "VALID");

    // The forger turns emulator, and the cluster frees the server's cores.
    forger.set_mode(Mode::Emulate);
    let switched = Instant::now();
    cluster
        .admin_client()
        .force_release(&NodeName::new("app-3").unwrap(), &new_request_id())
        .await
        .expect("force-release app-3");

    // Renewals "succeed", checks say VALID unsigned: the agent takes that for an outage.
    let grace =
        common::wait_for_agent(&verifying, Duration::from_secs(5), |s| s.code == "GRACE").await;
    assert!(grace.licensed);
    assert!(grace.message.contains("signature"), "{}", grace.message);
    let ended = common::wait_for_agent(&verifying, Duration::from_millis(TTL_MS + 2_000), |s| {
        !s.licensed
    })
    .await;
    assert_eq!(ended.code, "SERVERS_UNREACHABLE", "{ended:?}");
    assert!(
        switched.elapsed() < Duration::from_millis(TTL_MS + 1_000),
        "grace outlived the last signed lease: {:?}",
        switched.elapsed()
    );
    // And it stays so while the emulator answers.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let s = verifying.status();
        assert!(!s.licensed, "licensed by the emulator: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Without the key an agent is fooled by the same emulator: what the key is for.
    let fooled = agent(&forger.endpoint(), vec![], "app-4", mac(4));
    let s = common::wait_for_agent(&fooled, Duration::from_secs(5), |s| s.code == "VALID").await;
    assert!(s.licensed);
    fooled.abort();

    // Answers signed by another key are refused the same way; the cluster's own, relayed
    // again, license the server anew.
    forger.set_mode(Mode::OtherKey);
    tokio::time::sleep(Duration::from_millis(TTL_MS / 2)).await;
    assert!(!verifying.status().licensed, "{:?}", verifying.status());
    forger.set_mode(Mode::Pass);
    common::wait_for_agent(&verifying, Duration::from_secs(10), |s| s.code == "VALID").await;
    verifying.shutdown().await;
    drop(forger);
    cluster.shutdown().await;
}
