//! Leases held by the leader on its monotonic clock: a heartbeat is not a log write, a
//! failover or a restart of the whole cluster never ends a lease a client was promised, and
//! a server that stops heartbeating has its cores freed within the documented bound.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, license, mac};
use licd::api::{AllocateBody, ErrorCode};
use licd::client::{Client, new_request_id};
use licd::lease_token::LeaseToken;
use licd_raft::types::NodeName;

const TTL_MS: u64 = 4_000;
const CHECKPOINT_MS: u64 = 1_000;
const TICK_MS: u64 = 200;

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

async fn cluster() -> Cluster {
    Cluster::start_with(3, |c| {
        c.raft.lease_checkpoint_ms = CHECKPOINT_MS;
        c.raft.tick_ms = TICK_MS;
    })
    .await
}

/// The documented bound for one change of leader (src/node/lessor.rs).
fn bound(cluster: &Cluster) -> Duration {
    let t = &cluster.configs[&1].raft;
    Duration::from_millis(
        TTL_MS + CHECKPOINT_MS.max(TTL_MS / 16) + t.election_timeout_max_ms + t.tick_ms,
    )
}

/// Allocates and returns (send time, promised remaining, lease token).
async fn allocate(client: &Client, name: &str, mac_index: u8) -> (Instant, u64, LeaseToken) {
    allocate_for(client, name, mac_index, TTL_MS).await
}

async fn allocate_for(
    client: &Client,
    name: &str,
    mac_index: u8,
    ttl_ms: u64,
) -> (Instant, u64, LeaseToken) {
    let body = AllocateBody {
        license: None,
        mac: mac(mac_index),
        cores: licd_raft::types::Cores::new(4).unwrap(),
        ttl_ms: Some(ttl_ms),
        request_id: None,
    };
    let sent = Instant::now();
    let grant = client
        .allocate(&node(name), &body, &new_request_id())
        .await
        .expect("allocate");
    (sent, grant.allocation.lease_remaining_ms, grant.lease_token)
}

/// Heartbeats with `token` and returns (send time, promised remaining).
async fn heartbeat(client: &Client, name: &str, token: &LeaseToken) -> (Instant, u64) {
    let sent = Instant::now();
    let renewal = client
        .heartbeat(&node(name), Some(token), &new_request_id())
        .await
        .expect("heartbeat");
    (sent, renewal.lease_remaining_ms)
}

/// Polls usage until `name` holds nothing; returns when.
async fn wait_freed(client: &Client, name: &str, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        let usage = client.licenses().await.expect("usage");
        if !usage.licenses[0]
            .nodes
            .iter()
            .any(|n| n.node.as_str() == name)
        {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{name}'s cores were never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_renew_leases_without_log_writes() {
    let cluster = cluster().await;
    cluster.install(&license("lic", 16)).await;
    let client = cluster.client();
    // A long lease for the log count: no checkpoint is due for half a minute, however slow
    // the machine.
    const LONG_MS: u64 = 60_000;
    let (_, promised, steady) = allocate_for(&client, "steady", 2, LONG_MS).await;
    assert_eq!(promised, LONG_MS);
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let before = cluster.node(leader).metrics().last_log_index;
    let mut promises = Vec::new();
    for _ in 0..20 {
        promises.push(heartbeat(&client, "steady", &steady).await.1);
    }
    let after = cluster.node(leader).metrics().last_log_index;
    assert_eq!(before, after, "a heartbeat wrote to the log");
    // A renewal promises what a successor would honour: the grant's time plus the bound.
    assert!(
        promises.iter().all(|p| *p > LONG_MS / 2 && *p <= LONG_MS),
        "{promises:?}"
    );
    // A short lease lives past its first ttl on heartbeats alone.
    let (_, promised, token) = allocate(&client, "app-1", 1).await;
    assert_eq!(promised, TTL_MS);
    // Past the first lease, heartbeats kept it live.
    tokio::time::sleep(Duration::from_millis(TTL_MS / 2)).await;
    heartbeat(&client, "app-1", &token).await;
    tokio::time::sleep(Duration::from_millis(TTL_MS / 2)).await;
    heartbeat(&client, "app-1", &token).await;
    let check = client.check(&node("app-1"), None).await.unwrap();
    assert_eq!(check.check.code, ErrorCode::Valid, "{check:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_keeps_every_promised_lease_and_frees_a_dead_one_within_the_bound() {
    let mut cluster = cluster().await;
    cluster.install(&license("lic", 16)).await;
    let client = cluster.client();
    let live = allocate(&client, "live", 1).await.2;
    let dead = allocate(&client, "dead", 2).await.2;
    tokio::time::sleep(Duration::from_millis(TTL_MS / 3)).await;
    let (sent, promised) = heartbeat(&client, "live", &live).await;
    let (dead_sent, _) = heartbeat(&client, "dead", &dead).await;
    // "dead" stops heartbeating now; the leader goes away.
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    cluster.stop(leader).await;
    let stopped = Instant::now();
    let mut answered_again: Option<Instant> = None;
    let promised_until = sent + Duration::from_millis(promised);
    // Until the promise runs out, every check of "live" says VALID, across the failover.
    let mut checks = 0;
    while Instant::now() + Duration::from_millis(300) < promised_until {
        let check = client.check(&node("live"), None).await.unwrap();
        answered_again.get_or_insert_with(Instant::now);
        if Instant::now() < promised_until {
            assert_eq!(check.check.code, ErrorCode::Valid, "{check:?}");
            checks += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(checks > 3, "too few checks inside the promise: {checks}");
    // The live server renews on the new leader without reallocating.
    heartbeat(&client, "live", &live).await;
    let freed = wait_freed(&cluster.operator_client(), "dead", Duration::from_secs(20)).await;
    let held = freed - dead_sent;
    // Time with no leader at all lengthens the bound (nobody measures); the first answer
    // after the stop is an upper estimate of it.
    let leaderless = answered_again.map_or(Duration::ZERO, |t| t - stopped);
    println!(
        "dead server held its cores {held:?} after its last heartbeat was sent (bound {:?} \
         + {leaderless:?} without a leader)",
        bound(&cluster)
    );
    assert!(
        held <= bound(&cluster) + leaderless + Duration::from_millis(500),
        "held {held:?}"
    );
    assert!(
        held >= Duration::from_millis(TTL_MS / 2),
        "freed too early: {held:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restart_during_a_lease_does_not_end_it() {
    let mut cluster = cluster().await;
    cluster.install(&license("lic", 16)).await;
    let client = cluster.client();
    let token = allocate(&client, "app-1", 1).await.2;
    let (sent, promised) = heartbeat(&client, "app-1", &token).await;
    let ids: Vec<u64> = cluster.running.keys().copied().collect();
    for id in &ids {
        cluster.stop(*id).await;
    }
    for id in &ids {
        cluster.restart(*id).await;
    }
    cluster.wait_for_leader(Duration::from_secs(10)).await;
    let back = Instant::now();
    assert!(
        back < sent + Duration::from_millis(promised),
        "the restart took longer than the lease; the test proves nothing"
    );
    // The lease survived on the log's checkpoint plus the election bound: it renews.
    let renewal = client
        .heartbeat(&node("app-1"), Some(&token), &new_request_id())
        .await;
    assert!(renewal.is_ok(), "{renewal:?}");
    let check = client.check(&node("app-1"), None).await.unwrap();
    assert_eq!(check.check.code, ErrorCode::Valid, "{check:?}");
    cluster.shutdown().await;
}

/// Every node runs its lease keeper: a node whose keeper ended would never free a dead
/// server's cores while it leads (it once could end as the node was being built).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_keeps_its_background_tasks_running() {
    let cluster = cluster().await;
    tokio::time::sleep(Duration::from_millis(3 * TICK_MS)).await;
    for (id, running) in &cluster.running {
        assert_eq!(running.node.background_tasks_running(), 5, "node {id}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_ran_out_is_not_renewed() {
    let cluster = cluster().await;
    cluster.install(&license("lic", 16)).await;
    let client = cluster.client();
    let token = allocate(&client, "app-1", 1).await.2;
    wait_freed(&cluster.operator_client(), "app-1", Duration::from_secs(20)).await;
    let err = client
        .heartbeat(&node("app-1"), Some(&token), &new_request_id())
        .await
        .unwrap_err();
    assert!(err.is(ErrorCode::NotAllocated), "{err}");
    cluster.shutdown().await;
}
