//! The agent against a real three-node cluster on loopback: licensed through a leader
//! failover, bounded grace while every server is down, license refusals with the field's
//! messages, and release on shutdown. Leases are short (3 s) so the tests finish quickly.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, license, mac};
use licd::agent::{Agent, AgentConfig, AgentStatus};
use licd::client::{Client, RetryPolicy};
use licd_raft::types::{Cores, LeaseTtl, MacAddr, NodeName};

const TTL_MS: u64 = 3_000;

fn agent_client(cluster: &Cluster) -> Client {
    Client::with_policy(
        &cluster.endpoints(),
        RetryPolicy {
            deadline: Duration::from_millis(TTL_MS / 3),
            attempt_timeout: Duration::from_millis(500),
            ..RetryPolicy::default()
        },
    )
    .unwrap()
    .with_token(common::CLIENT_TOKEN)
}

fn agent(cluster: &Cluster, name: &str, mac: MacAddr, cores: u32) -> Agent {
    Agent::spawn(
        agent_client(cluster),
        AgentConfig {
            node: NodeName::new(name).unwrap(),
            license: None,
            mac,
            cores: Cores::new(cores).unwrap(),
            lease_ttl: LeaseTtl::from_millis(TTL_MS).unwrap(),
            refused_retry: Duration::from_millis(300),
            state_file: None,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_stays_licensed_while_the_leader_stops() {
    let mut cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 16)).await;
    let agent = agent(&cluster, "app-1", mac(1), 8);
    let first =
        common::wait_for_agent(&agent, Duration::from_secs(10), |s| s.code == "VALID").await;
    assert!(first.licensed);
    assert_eq!(first.cores, 8);
    common::wait_for_agent(&agent, Duration::from_secs(5), |s| {
        s.cluster.voters == Some(3)
    })
    .await;

    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let started = Instant::now();
    let stopper = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster.stop(leader).await;
        cluster.wait_for_leader(Duration::from_secs(10)).await
    };
    let poller = async {
        let mut polls = 0;
        let mut codes = std::collections::BTreeSet::new();
        while started.elapsed() < Duration::from_millis(TTL_MS * 2) {
            let status = agent.status();
            assert!(
                status.licensed,
                "unlicensed during failover after {:?}: {status:?}",
                started.elapsed()
            );
            codes.insert(status.code);
            polls += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (polls, codes)
    };
    let (new_leader, (polls, codes)) = tokio::join!(stopper, poller);
    println!(
        "agent stayed licensed for all {polls} polls over {:?} while leader {leader} stopped and \
         {new_leader} took over; codes seen: {codes:?}",
        started.elapsed()
    );
    // Heartbeats continue on the new leader: past the first lease's end the agent holds a
    // lease that the new leader renewed.
    let later = common::wait_for_agent(&agent, Duration::from_secs(5), |s| {
        s.code == "VALID"
            && s.cluster.leader == Some(new_leader)
            && s.lease_remaining_ms.is_some_and(|left| left > 0)
    })
    .await;
    assert!(later.licensed);
    assert!(started.elapsed() > Duration::from_millis(TTL_MS));
    agent.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_lasts_until_the_confirmed_lease_ends_and_licensing_returns_with_the_cluster() {
    let mut cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 16)).await;
    let agent = agent(&cluster, "app-1", mac(1), 8);
    common::wait_for_agent(&agent, Duration::from_secs(10), |s| s.code == "VALID").await;

    let ids: Vec<u64> = cluster.running.keys().copied().collect();
    for id in &ids {
        cluster.stop(*id).await;
    }
    let stopped = Instant::now();
    // The last lease was confirmed before the servers stopped, so it ends less than a ttl
    // after they stopped: the agent is never licensed past that.
    let mut saw_grace = false;
    let unlicensed = loop {
        let status = agent.status();
        if status.licensed {
            assert!(
                stopped.elapsed() < Duration::from_millis(TTL_MS),
                "licensed past the granted lease: {status:?}"
            );
            assert!(status.lease_remaining_ms.is_some_and(|left| left <= TTL_MS));
            saw_grace |= status.code == "GRACE";
        } else {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_millis(TTL_MS * 3),
            "never left grace"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(saw_grace, "the agent reported GRACE before the lease ended");
    assert_eq!(unlicensed.code, "SERVERS_UNREACHABLE", "{unlicensed:?}");
    println!(
        "grace: licensed (GRACE) for {:?} after every server stopped, then SERVERS_UNREACHABLE",
        stopped.elapsed()
    );

    for id in &ids {
        cluster.restart(*id).await;
    }
    let back = Instant::now();
    let status =
        common::wait_for_agent(&agent, Duration::from_secs(20), |s| s.code == "VALID").await;
    assert!(status.licensed);
    println!(
        "licensed again {:?} after the servers restarted",
        back.elapsed()
    );
    agent.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_during_an_outage_is_licensed_until_its_saved_lease_ends() {
    let mut cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 16)).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent.json");
    let with_state = |cluster: &Cluster| {
        Agent::spawn(
            agent_client(cluster),
            AgentConfig {
                node: NodeName::new("app-1").unwrap(),
                license: None,
                mac: mac(1),
                cores: Cores::new(8).unwrap(),
                lease_ttl: LeaseTtl::from_millis(TTL_MS).unwrap(),
                refused_retry: Duration::from_millis(300),
                state_file: Some(licd::agent::saved::StateFile::new(&state)),
            },
        )
    };
    let first = with_state(&cluster);
    common::wait_for_agent(&first, Duration::from_secs(10), |s| s.code == "VALID").await;
    // The cluster goes away; then the agent crashes and starts again.
    let ids: Vec<u64> = cluster.running.keys().copied().collect();
    for id in &ids {
        cluster.stop(*id).await;
    }
    let stopped = Instant::now();
    first.abort();
    let second = with_state(&cluster);
    let status = second.status();
    assert!(
        status.licensed,
        "not licensed after the restart: {status:?}"
    );
    assert_eq!(status.code, "GRACE");
    assert_eq!(status.cores, 8);
    // ... only until the lease confirmed before the outage ends.
    let unlicensed =
        common::wait_for_agent(&second, Duration::from_millis(TTL_MS * 3), |s| !s.licensed).await;
    assert!(
        stopped.elapsed() <= Duration::from_millis(TTL_MS + 200),
        "licensed for {:?} after the outage began",
        stopped.elapsed()
    );
    assert_eq!(unlicensed.code, "SERVERS_UNREACHABLE", "{unlicensed:?}");
    second.abort();
    // A lease that ended is not restored.
    let third = with_state(&cluster);
    assert!(!third.status().licensed);
    third.abort();
    // Without a state file, a restart during the outage starts unlicensed.
    let plain = agent(&cluster, "app-1", mac(1), 8);
    assert!(!plain.status().licensed);
    plain.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_over_the_cap_waits_for_the_first_to_release() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 16)).await;
    let first = agent(&cluster, "app-1", mac(1), 12);
    common::wait_for_agent(&first, Duration::from_secs(10), |s| s.code == "VALID").await;
    let second = agent(&cluster, "app-2", mac(2), 8);
    let refused =
        common::wait_for_agent(&second, Duration::from_secs(10), |s| s.code != "STARTING").await;
    assert!(!refused.licensed);
    assert_eq!(refused.code, "CPU_LIMIT_EXHAUSTED");
    assert_eq!(
        refused.message,
        "CPU limit exhausted. Can't allocate more CPUs."
    );

    first.shutdown().await;
    let usage = cluster.operator_client().licenses().await.unwrap();
    assert!(
        usage.licenses[0]
            .nodes
            .iter()
            .all(|n| n.node.as_str() != "app-1"),
        "released"
    );
    let admitted =
        common::wait_for_agent(&second, Duration::from_secs(10), |s| s.code == "VALID").await;
    assert_eq!(admitted.cores, 8);
    second.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_a_foreign_mac_is_told_the_license_does_not_cover_it() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 16)).await;
    let outsider = agent(
        &cluster,
        "app-x",
        MacAddr::parse("aa:bb:cc:dd:ee:ff").unwrap(),
        4,
    );
    let status =
        common::wait_for_agent(&outsider, Duration::from_secs(10), |s| s.code != "STARTING").await;
    assert!(!status.licensed);
    assert_eq!(status.code, "INVALID_MULTI_SERVER_LICENSE");
    assert_eq!(
        status.message,
        "Invalid license for multi-server environment setup."
    );

    // The local status endpoint says the same, with 503 for "not licensed".
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = outsider.status_handle();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(licd::agent::status::serve(listener, handle, async {
        let _ = rx.await;
    }));
    let answer = reqwest::get(format!("http://{addr}/status")).await.unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let body: AgentStatus = answer.json().await.unwrap();
    assert_eq!(body.code, "INVALID_MULTI_SERVER_LICENSE");
    let _ = tx.send(());
    let _ = server.await;
    outsider.shutdown().await;
    cluster.shutdown().await;
}
