//! The agent and its lease token on a real three-node cluster: restarted with its state file
//! it renews the allocation it held; restarted without it (a lost token) it is refused
//! `NODE_IN_USE`, says so, and allocates once the old lease has ended.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, license, mac};
use licd::agent::saved::StateFile;
use licd::agent::{Agent, AgentConfig};
use licd::client::{Client, RetryPolicy};
use licd_raft::types::{Cores, LeaseTtl, NodeName};

const TTL_MS: u64 = 3_000;

fn agent(cluster: &Cluster, state_file: Option<StateFile>) -> Agent {
    let client = Client::with_policy(
        &cluster.endpoints(),
        RetryPolicy {
            deadline: Duration::from_millis(TTL_MS / 3),
            attempt_timeout: Duration::from_millis(500),
            ..RetryPolicy::default()
        },
    )
    .unwrap()
    .with_token(common::CLIENT_TOKEN);
    Agent::spawn(
        client,
        AgentConfig {
            node: NodeName::new("app-1").unwrap(),
            license: None,
            mac: mac(1),
            cores: Cores::new(8).unwrap(),
            lease_ttl: LeaseTtl::from_millis(TTL_MS).unwrap(),
            refused_retry: Duration::from_millis(300),
            state_file,
        },
    )
}

/// The grant number app-1 holds, as the leader's state has it.
async fn grant_of_app_1(cluster: &Cluster) -> Option<u64> {
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let name = NodeName::new("app-1").unwrap();
    cluster
        .node(leader)
        .read_local(|s| s.licenses.allocations().get(&name).map(|a| a.grant))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_renews_the_grant_it_held_with_its_saved_token() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 16)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.json");
    let first = agent(&cluster, Some(StateFile::new(&path)));
    common::wait_for_agent(&first, Duration::from_secs(10), |s| s.code == "VALID").await;
    let grant = grant_of_app_1(&cluster).await.expect("app-1 is allocated");
    let saved = StateFile::new(&path)
        .load_token(&NodeName::new("app-1").unwrap())
        .expect("the token is in the state file");
    // The agent crashes (no release) and starts again while the cluster is up.
    first.abort();
    let second = agent(&cluster, Some(StateFile::new(&path)));
    // It renews (a heartbeat, no new allocation) past the first lease's end.
    let restarted = Instant::now();
    tokio::time::sleep(Duration::from_millis(TTL_MS + 500)).await;
    let status = second.status();
    assert_eq!(status.code, "VALID", "{status:?}");
    assert_eq!(
        grant_of_app_1(&cluster).await,
        Some(grant),
        "it re-allocated"
    );
    println!(
        "restarted agent renewed grant {grant} for {:?}",
        restarted.elapsed()
    );
    // Its token is the one it saved; shutting down releases with it.
    let token = StateFile::new(&path).load_token(&NodeName::new("app-1").unwrap());
    assert_eq!(token, Some(saved));
    second.shutdown().await;
    assert_eq!(grant_of_app_1(&cluster).await, None, "not released");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_lost_its_token_waits_until_the_old_lease_ends() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 16)).await;
    let first = agent(&cluster, None);
    common::wait_for_agent(&first, Duration::from_secs(10), |s| s.code == "VALID").await;
    let grant = grant_of_app_1(&cluster).await.expect("app-1 is allocated");
    // A crash without a state file: the token is gone with the process.
    first.abort();
    let crashed = Instant::now();
    let second = agent(&cluster, None);
    let refused =
        common::wait_for_agent(&second, Duration::from_secs(5), |s| s.code != "STARTING").await;
    assert!(!refused.licensed);
    assert_eq!(refused.code, "NODE_IN_USE", "{refused:?}");
    assert!(
        refused.message.contains("until that lease ends"),
        "{refused:?}"
    );
    // Once the old lease ended and was freed, it allocates: a new grant.
    let admitted =
        common::wait_for_agent(&second, Duration::from_secs(20), |s| s.code == "VALID").await;
    assert_eq!(admitted.cores, 8);
    let waited = crashed.elapsed();
    assert!(
        waited >= Duration::from_millis(TTL_MS / 2),
        "took a live allocation over after {waited:?}"
    );
    assert_ne!(grant_of_app_1(&cluster).await, Some(grant));
    println!("an agent without its token waited {waited:?} for the old lease to end");
    second.shutdown().await;
    cluster.shutdown().await;
}
