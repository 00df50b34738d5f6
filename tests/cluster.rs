//! A three-node licd cluster over real HTTP on loopback: allocation rules end to end, leader
//! failover, restarts, membership changes, lease expiry and exactly-once retries.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, license, mac};
use licd::api::{AllocateBody, LEADER_ADDR_HEADER, LEADER_ID_HEADER};
use licd::client::{Client, ClientError, new_request_id};
use licd_raft::Code;
use licd_raft::types::{Cores, NodeName};
use reqwest::StatusCode;

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

fn alloc_body(mac_index: u8, cores: u32) -> AllocateBody {
    AllocateBody {
        license: None,
        mac: mac(mac_index),
        cores: Cores::new(cores).unwrap(),
        ttl_ms: None,
        request_id: None,
    }
}

async fn allocate(
    client: &Client,
    name: &str,
    mac_index: u8,
    cores: u32,
) -> Result<licd::api::GrantBody, ClientError> {
    client
        .allocate(
            &node(name),
            &alloc_body(mac_index, cores),
            &new_request_id(),
        )
        .await
}

/// Checks `name` in a loop until `stop` is set, recording each call's latency; any error is
/// returned at once.
async fn check_continuously(
    client: Client,
    name: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<(usize, Duration), String> {
    let mut count = 0;
    let mut worst = Duration::ZERO;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let started = Instant::now();
        match client.check(&node(name), None).await {
            Ok(check) if check.check.valid => {}
            Ok(check) => return Err(format!("check answered {:?}", check.check.code)),
            Err(e) => return Err(format!("check failed: {e}")),
        }
        worst = worst.max(started.elapsed());
        count += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((count, worst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_follow_the_license_rules_with_the_field_messages() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 16)).await;
    let client = cluster.client();

    let a = allocate(&client, "app-a", 1, 8).await.unwrap();
    assert_eq!(a.allocation.counted_cores, 8);
    assert!(!a.replaced);
    allocate(&client, "app-b", 2, 6).await.unwrap();

    // 2 cores count as the 4-core minimum: 14 + 4 > 16.
    let err = allocate(&client, "app-c", 3, 2).await.unwrap_err();
    let ClientError::Api { status, body } = err else {
        panic!("expected an API error, got {err}");
    };
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body.code.as_str(), "CPU_LIMIT_EXHAUSTED");
    assert_eq!(
        body.message,
        "CPU limit exhausted. Can't allocate more CPUs."
    );
    assert_eq!(
        (body.requested, body.available, body.licensed),
        (Some(4), Some(2), Some(16))
    );

    let outsider = licd_raft::types::MacAddr::parse("aa:bb:cc:dd:ee:ff").unwrap();
    let err = client
        .allocate(
            &node("app-d"),
            &AllocateBody {
                mac: outsider,
                ..alloc_body(1, 1)
            },
            &new_request_id(),
        )
        .await
        .unwrap_err();
    let ClientError::Api { status, body } = err else {
        panic!("expected an API error, got {err}");
    };
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body.code.as_str(), "INVALID_MULTI_SERVER_LICENSE");
    assert_eq!(
        body.message,
        "Invalid license for multi-server environment setup."
    );

    // Re-allocating with the lease token replaces: app-a shrinks to 4 and app-c now fits.
    let again = client
        .reallocate(
            &node("app-a"),
            &alloc_body(1, 4),
            &new_request_id(),
            &a.lease_token,
        )
        .await
        .unwrap();
    assert!(again.replaced);
    assert_eq!(again.lease_token, a.lease_token);
    allocate(&client, "app-c", 3, 2).await.unwrap();
    let usage = cluster.operator_client().licenses().await.unwrap();
    assert_eq!(usage.licenses[0].allocated_cores, 14);
    assert_eq!(usage.licenses[0].free_cores, 2);

    let check = client.check(&node("app-a"), Some(mac(1))).await.unwrap();
    assert!(check.check.valid, "{check:?}");
    let check = client.check(&node("app-a"), Some(mac(2))).await.unwrap();
    assert_eq!(check.check.code, Code::InvalidMultiServerLicense.into());
    let check = client.check(&node("nobody"), None).await.unwrap();
    assert_eq!(check.check.code, Code::NotAllocated.into());

    // Any node serves any request: ask a follower directly.
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let follower = cluster.addrs.keys().find(|id| **id != leader).unwrap();
    let answer = reqwest::Client::new()
        .get(format!(
            "http://{}/v1/nodes/app-a/check",
            cluster.addrs[follower]
        ))
        .bearer_auth(common::CLIENT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.headers()[LEADER_ID_HEADER].to_str().unwrap(),
        leader.to_string()
    );
    assert_eq!(
        answer.headers()[LEADER_ADDR_HEADER].to_str().unwrap(),
        cluster.addrs[&leader].to_string()
    );
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["code"], "VALID");
    assert_eq!(body["leader_id"], leader);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_leader_costs_checks_latency_not_errors() {
    let mut cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 64)).await;
    let client = cluster.client();
    for (i, name) in ["app-a", "app-b", "app-c"].iter().enumerate() {
        allocate(&client, name, i as u8 + 1, 8).await.unwrap();
    }
    let old_leader = cluster.wait_for_leader(Duration::from_secs(5)).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = tokio::spawn(check_continuously(cluster.client(), "app-b", stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopped_at = Instant::now();
    cluster.stop(old_leader).await;
    println!("stopping the leader took {:?}", stopped_at.elapsed());
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let elected_after = stopped_at.elapsed();
    assert_ne!(new_leader, old_leader);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (checks, worst) = checker.await.unwrap().expect("every check succeeded");
    println!(
        "failover: new leader {new_leader} elected {elected_after:?} after stopping {old_leader}; \
         {checks} checks, slowest {worst:?}"
    );

    // Every earlier allocation is there, and writes work on the new leader.
    let usage = cluster.operator_client().licenses().await.unwrap();
    assert_eq!(usage.licenses[0].allocated_cores, 24);
    assert_eq!(usage.licenses[0].nodes.len(), 3);
    allocate(&client, "app-d", 4, 8).await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_catches_up_from_the_log_and_from_a_snapshot() {
    let mut cluster = Cluster::start_with(3, |c| {
        c.raft.snapshot_every_logs = 20;
        c.raft.logs_kept_after_snapshot = 0;
    })
    .await;
    // Every server has a MAC of its own: a MAC holds one allocation.
    let mut lic = license("lic", 1_000);
    let server_mac = |i: u8| licd_raft::types::MacAddr::from_bytes([2, 0, 0, 0, 1, i]);
    lic.allowed_macs.extend((0..65).map(server_mac));
    cluster.install(&lic).await;
    let client = cluster.client();
    let allocate_own = async |name: String, i: u8| {
        let body = AllocateBody {
            mac: server_mac(i),
            ..alloc_body(1, 4)
        };
        client
            .allocate(&node(&name), &body, &new_request_id())
            .await
            .unwrap();
    };
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let down = *cluster.addrs.keys().find(|id| **id != leader).unwrap();

    // A short absence: the log suffices.
    cluster.stop(down).await;
    for i in 0..5 {
        allocate_own(format!("short-{i}"), i).await;
    }
    cluster.restart(down).await;
    let target = cluster.node(leader).metrics().last_applied.unwrap().index;
    cluster
        .wait_applied(down, target, Duration::from_secs(10))
        .await;

    // A long absence: the leader snapshots and purges the log behind it, so the returning
    // node must be sent the snapshot.
    cluster.stop(down).await;
    for i in 0..60 {
        allocate_own(format!("long-{i}"), 5 + i).await;
    }
    let snapshot = cluster.admin_client().snapshot().await.unwrap();
    let snapshot_index = snapshot.snapshot_index.expect("a snapshot was built");
    let deadline = Instant::now() + Duration::from_secs(10);
    let down_applied = target;
    loop {
        let purged = cluster.node(leader).metrics().purged.map_or(0, |l| l.index);
        if purged > down_applied {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader did not purge past {down_applied} (purged {purged}, snapshot {snapshot_index})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.restart(down).await;
    let target = cluster.node(leader).metrics().last_applied.unwrap().index;
    cluster
        .wait_applied(down, target, Duration::from_secs(15))
        .await;
    assert!(
        cluster.node(down).metrics().snapshot.is_some(),
        "it installed a snapshot"
    );
    let theirs = cluster.node(down).read_local(|s| s.licenses.clone());
    let ours = cluster.node(leader).read_local(|s| s.licenses.clone());
    assert_eq!(theirs.allocations(), ours.allocations());
    assert_eq!(theirs.allocations().len(), 65);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_while_checks_keep_succeeding() {
    let mut cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 64)).await;
    let client = cluster.client();
    allocate(&client, "app-a", 1, 8).await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = tokio::spawn(check_continuously(cluster.client(), "app-a", stop.clone()));

    let admin = cluster.admin_client();
    let addr = cluster.start_new_node(4).await;
    let membership = admin.add_learner(4, &addr.to_string()).await.unwrap();
    assert!(membership.learners.contains(&4));
    let membership = admin.promote(4).await.unwrap();
    assert!(membership.voters.contains(&4));
    // Remove node 1, whatever its role, and stop it.
    let membership = admin.remove_member(1).await.unwrap();
    assert_eq!(membership.voters, vec![2, 3, 4]);
    cluster.stop(1).await;
    cluster.wait_for_leader(Duration::from_secs(10)).await;
    allocate(&client, "app-b", 2, 8).await.unwrap();

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (checks, worst) = checker.await.unwrap().expect("every check succeeded");
    println!("membership change: {checks} checks, slowest {worst:?}");

    let status = admin.status().await.unwrap();
    let voters: Vec<u64> = status.voters();
    assert_eq!(voters, vec![2, 3, 4]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_free_their_cores_and_retries_apply_once() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 16)).await;
    let client = cluster.client();

    let short = AllocateBody {
        ttl_ms: Some(1_000),
        ..alloc_body(1, 12)
    };
    client
        .allocate(&node("short-lived"), &short, &new_request_id())
        .await
        .unwrap();
    let err = allocate(&client, "waiting", 2, 8).await.unwrap_err();
    assert!(err.is(Code::CpuLimitExhausted), "{err}");

    // Nobody writes: the leader's tick must free the cores once the lease passes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let usage = cluster.operator_client().licenses().await.unwrap();
        if usage.licenses[0].allocated_cores == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the expired lease was not freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let check = client.check(&node("short-lived"), None).await.unwrap();
    assert_eq!(check.check.code, Code::NotAllocated.into());
    allocate(&client, "waiting", 2, 8).await.unwrap();

    // The same request id twice: one application, the same answer.
    let id = new_request_id();
    let first = client
        .allocate(&node("retried"), &alloc_body(3, 4), &id)
        .await
        .unwrap();
    let second = client
        .allocate(&node("retried"), &alloc_body(3, 4), &id)
        .await
        .unwrap();
    // The retry is a new log entry whose answer is the first one's.
    assert_eq!(first.allocation, second.allocation);
    assert_eq!(first.request_id, second.request_id);
    assert_eq!(first.lease_token, second.lease_token);
    assert!(second.log.index > first.log.index);
    assert!(
        !second.replaced,
        "the retry was not applied as a re-allocation"
    );
    let usage = cluster.operator_client().licenses().await.unwrap();
    assert_eq!(usage.licenses[0].allocated_cores, 12);
    cluster.shutdown().await;
}

/// The value of an unlabelled counter in a node's metrics.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Writes that arrive together share log entries (group commit), and each still gets its own
/// answer by the license rules and the exactly-once table: nine servers ask for 4 cores each
/// of a 20-core license, every request sent twice at once under one request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_entries_and_each_gets_its_own_answer() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 20)).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let node_of = |id| cluster.node(id);
    let before = node_of(leader).meter().render(node_of(leader));

    let client = std::sync::Arc::new(cluster.client());
    let mut calls = tokio::task::JoinSet::new();
    for i in 1..=9u8 {
        let id = new_request_id();
        for _ in 0..2 {
            let (client, id) = (client.clone(), id.clone());
            calls.spawn(async move {
                let answer = client
                    .allocate(&node(&format!("app-{i}")), &alloc_body(i, 4), &id)
                    .await;
                (i, answer)
            });
        }
    }
    let mut answers: std::collections::BTreeMap<u8, Vec<_>> = Default::default();
    while let Some(joined) = calls.join_next().await {
        let (i, answer) = joined.unwrap();
        answers.entry(i).or_default().push(answer);
    }

    let mut granted = 0;
    for (i, pair) in &answers {
        match (&pair[0], &pair[1]) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.allocation, b.allocation, "app-{i}");
                assert_eq!(a.lease_token, b.lease_token, "app-{i}");
                granted += 1;
            }
            (Err(a), Err(b)) => {
                assert!(a.is(Code::CpuLimitExhausted), "app-{i}: {a}");
                assert!(b.is(Code::CpuLimitExhausted), "app-{i}: {b}");
            }
            (a, b) => panic!("app-{i}: one request id, two answers: {a:?} and {b:?}"),
        }
    }
    assert_eq!(granted, 5, "{answers:?}");
    let usage = cluster.operator_client().licenses().await.unwrap();
    assert_eq!(usage.licenses[0].allocated_cores, 20);

    // The leader proposed the 18 writes (and nothing else wrote meanwhile but its lease
    // keeper) in fewer entries than writes.
    let after = node_of(leader).meter().render(node_of(leader));
    let writes = counter(&after, "licd_writes_total") - counter(&before, "licd_writes_total");
    let entries =
        counter(&after, "licd_write_entries_total") - counter(&before, "licd_write_entries_total");
    assert!(writes >= 18, "{writes} writes proposed");
    assert!(entries < writes, "{writes} writes in {entries} entries");
    cluster.shutdown().await;
}

/// A license install, which may be large, always has a log entry of its own, also when it
/// arrives among writes that share entries: the usage history names the entry of each event.
/// Four installs go out among eight allocations, so that some of them meet other writes in
/// the queue (not every run makes them meet: a batched install is caught in most runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_install_gets_an_entry_of_its_own() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 64)).await;
    let client = std::sync::Arc::new(cluster.client());
    let admin = std::sync::Arc::new(cluster.admin_client());
    let mut calls = tokio::task::JoinSet::new();
    for i in 1..=8u8 {
        let client = client.clone();
        calls.spawn(async move {
            let body = AllocateBody {
                license: Some(licd_raft::types::LicenseId::new("lic").unwrap()),
                ..alloc_body(i, 4)
            };
            let id = new_request_id();
            client
                .allocate(&node(&format!("app-{i}")), &body, &id)
                .await
                .map(|_| ())
        });
        if i % 2 == 0 {
            let file = cluster.license_file(&license(&format!("extra-{i}"), 16));
            let admin = admin.clone();
            calls.spawn(async move {
                admin
                    .install_license(&file, &new_request_id())
                    .await
                    .map(|_| ())
            });
        }
    }
    while let Some(joined) = calls.join_next().await {
        joined.unwrap().unwrap();
    }

    let page = cluster.operator_client().events(0, 100).await.unwrap();
    let json: Vec<String> = page
        .events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let installs: Vec<u64> = page
        .events
        .iter()
        .zip(&json)
        .filter(|(_, j)| j.contains("\"kind\":\"license_installed\"") && j.contains("extra-"))
        .map(|(e, _)| e.index)
        .collect();
    assert_eq!(installs.len(), 4, "{json:?}");
    let allocations = json
        .iter()
        .filter(|j| j.contains("\"kind\":\"allocated\""))
        .count();
    assert_eq!(allocations, 8, "{json:?}");
    for index in installs {
        let sharing = page.events.iter().filter(|e| e.index == index).count();
        assert_eq!(
            sharing, 1,
            "entry {index} carries more than an install: {json:?}"
        );
    }
    cluster.shutdown().await;
}

/// A follower whose leader fell silent stands for election one heartbeat after the leader's
/// lease (`election_timeout_max`), not a drawn election timeout after it: with a 2 s lease
/// and a 1-2 s timeout, openraft alone elects no one before 3 s of silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_leader_is_replaced_one_heartbeat_after_its_lease() {
    let mut cluster = Cluster::start_with(3, |c| {
        c.raft.heartbeat_ms = 50;
        c.raft.election_timeout_min_ms = 1_000;
        c.raft.election_timeout_max_ms = 2_000;
    })
    .await;
    let old = cluster.wait_for_leader(Duration::from_secs(10)).await;
    // Let both followers hear a few heartbeats of this leader.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let silent_from = Instant::now();
    cluster.stop(old).await;
    let new = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let took = silent_from.elapsed();
    assert_ne!(new, old);
    assert!(
        took < Duration::from_millis(2_900),
        "the new leader took {took:?}, as long as openraft's own timer"
    );
    let prompt: u64 = cluster
        .running
        .values()
        .map(|r| {
            let text = r.node.meter().render(&r.node);
            text.lines()
                .find_map(|l| l.strip_prefix("licd_prompt_elections_total "))
                .map_or(0, |v| v.trim().parse().unwrap_or(0))
        })
        .sum();
    assert!(prompt >= 1, "no follower stood promptly");
    println!("a new leader {took:?} after the old one stopped");
    cluster.shutdown().await;
}

/// openraft 0.9 lets a leader restarted within its term resume leading at once, at the
/// committed id it last saved, which is not flushed: after a crash it can be older than
/// writes the leader acknowledged. The leader's reads must hold them all the same.
///
/// Without the start-up gate of `src/node/reads.rs` a round misses the write most of the time
/// (the read is confirmed by the first answer of a follower whose log lacks the write, before
/// the write is committed again), so the test runs three rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_restarted_within_its_term_reads_every_write_it_acknowledged() {
    use openraft::storage::RaftLogStorage;

    let mut cluster = Cluster::start(3).await;
    cluster.install(&license("lic", 64)).await;
    let client = cluster.client();
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let mut others = cluster.addrs.keys().copied().filter(|id| *id != leader);
    let (behind, other) = (others.next().unwrap(), others.next().unwrap());
    let term = cluster.node(leader).metrics().current_term;
    for round in 0..3u8 {
        let before = cluster.node(leader).metrics().last_applied.unwrap();
        // `behind` misses this round's write, which the leader and `other` acknowledge.
        cluster.stop(behind).await;
        let name = format!("app-{round}");
        allocate(&client, &name, round + 1, 4).await.unwrap();
        cluster.stop(other).await;
        cluster.stop(leader).await;
        // As after a crash before the committed id reached the disk: the one before the write.
        {
            let dir = &cluster.configs[&leader].data_dir;
            let (mut log, _sm) = licd_storage::open(dir).expect("reopen the leader's store");
            log.save_committed(Some(before)).await.unwrap();
            log.flush().await.unwrap();
        }

        // The leader comes back alone, so its reads fail for want of a majority until
        // `behind` returns; `behind`'s first answer confirms the leader, before the write
        // can be committed again: the first read that succeeds is the one to judge.
        cluster.restart(leader).await;
        let node = cluster.node(leader).clone();
        let written = NodeName::new(name.as_str()).unwrap();
        let first_read = tokio::spawn(async move {
            for _ in 0..10_000 {
                if let Ok(seen) = node
                    .read(|s| s.licenses.allocations().contains_key(&written))
                    .await
                {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            panic!("no read was confirmed");
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.restart(behind).await;
        let seen = tokio::time::timeout(Duration::from_secs(20), first_read)
            .await
            .expect("a read is confirmed")
            .unwrap();
        assert_eq!(
            cluster.node(leader).metrics().current_term,
            term,
            "the leader resumed in its term (no election)"
        );
        assert!(
            seen,
            "round {round}: the restarted leader's read misses {name}"
        );
        cluster.restart(other).await;
    }
    cluster.shutdown().await;
}
