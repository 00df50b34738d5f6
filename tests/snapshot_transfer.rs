//! A follower that was away while 100,000 allocations were made catches up by snapshot
//! transfer over the Raft HTTP transport (the log behind the snapshot is purged).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Cluster, license, mac};
use licd_raft::command::Allocate;
use licd_raft::types::{Cores, LeaseTtl, NodeName, RequestId};
use licd_raft::{Command, Outcome};

const ALLOCATIONS: usize = 100_000;

const WRITERS: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_100k_allocations_reaches_a_returning_follower() {
    let mut cluster = Cluster::start_with(3, |c| {
        c.raft.snapshot_every_logs = 1_000_000;
        c.raft.logs_kept_after_snapshot = 0;
    })
    .await;
    let mut big = license("big", 1_000_000);
    big.min_cores_per_node = 1;
    cluster.install(&big).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let away = *cluster.addrs.keys().find(|id| **id != leader).unwrap();
    cluster.stop(away).await;

    // Write straight into the leader's Raft, many writers at once so entries batch.
    let started = Instant::now();
    let node = Arc::new(cluster.node(leader).clone());
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let node = node.clone();
        writers.push(tokio::spawn(async move {
            for i in (w..ALLOCATIONS).step_by(WRITERS) {
                let command = Command::Allocate(Allocate {
                    node: NodeName::new(format!("server-{i:06}")).unwrap(),
                    license: None,
                    mac: mac(1),
                    cores: Cores::new(1 + (i % 8) as u32).unwrap(),
                    lease_ttl: LeaseTtl::from_millis(LeaseTtl::MAX_MS).unwrap(),
                    // Entries in the shape stored format 2 logged (no token hash) apply
                    // without the one-allocation-per-MAC rule, so that 100 000 servers need
                    // not all be in the license (a license file that large is over the API's
                    // body limit).
                    token_hash: None,
                    presented: None,
                });
                let id = RequestId::new(format!("bulk-{i}")).unwrap();
                let proposed = node.propose(id, command).await.expect("write");
                assert!(matches!(proposed.result, Ok(Outcome::Allocated(_))));
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    println!(
        "{ALLOCATIONS} allocations written in {:?}",
        started.elapsed()
    );

    let snapshot = cluster.admin_client().snapshot().await.unwrap();
    let snapshot_index = snapshot.snapshot_index.expect("snapshot built");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.node(leader).metrics().purged.map_or(0, |l| l.index) < snapshot_index {
        assert!(
            Instant::now() < deadline,
            "the leader did not purge its log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = Instant::now();
    cluster.restart(away).await;
    let target = cluster.node(leader).metrics().last_applied.unwrap().index;
    cluster
        .wait_applied(away, target, Duration::from_secs(120))
        .await;
    println!(
        "snapshot of {ALLOCATIONS} allocations transferred and installed in {:?}",
        started.elapsed()
    );
    let theirs = cluster
        .node(away)
        .read_local(|s| s.licenses.allocations().len());
    assert_eq!(theirs, ALLOCATIONS);
    let equal = cluster.node(away).read_local(|a| {
        cluster
            .node(leader)
            .read_local(|b| a.licenses == b.licenses)
    });
    assert!(equal, "the follower's state equals the leader's");
    cluster.shutdown().await;
}
