//! Backups and node replacement, end to end: `licd snapshot save` against a running cluster,
//! `licd snapshot restore` into fresh nodes of a new cluster, the cluster id that keeps the
//! old and the new cluster apart, damaged files refused, and a dead node replaced with the
//! `licd cluster` commands.

mod common;
#[path = "support/cli.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Cluster, license, mac};
use licd::api::AllocateBody;
use licd::backup::Backup;
use licd::client::{Client, new_request_id};
use licd_raft::command::Allocation;
use licd_raft::types::{Cores, LicenseId, NodeName};
use licd_storage::AppliedState;
use support::{assert_readable_failure, licd, run_for, text};

/// Runs `licd ARGS` off the runtime's threads (the nodes it talks to run on them).
async fn cli(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = licd();
        cmd.args(&args);
        run_for(cmd, Duration::from_secs(60))
    })
    .await
    .expect("the command ran")
}

fn s(v: &str) -> String {
    v.to_string()
}

fn endpoints(cluster: &Cluster) -> String {
    cluster.endpoints().join(",")
}

/// `licd ARGS --endpoints ... --admin-token ...` against `cluster`; must succeed.
async fn admin_cli(cluster: &Cluster, args: &[&str]) -> Output {
    let mut full: Vec<String> = args.iter().map(|a| s(a)).collect();
    full.extend([
        s("--endpoints"),
        endpoints(cluster),
        s("--admin-token"),
        s(ADMIN_TOKEN),
    ]);
    let out = cli(full.clone()).await;
    assert!(
        out.status.success(),
        "licd {full:?} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

async fn allocate(client: &Client, name: &str, mac_index: u8) -> licd::api::GrantBody {
    let body = AllocateBody {
        license: Some(LicenseId::new("lic-a").unwrap()),
        mac: mac(mac_index),
        cores: Cores::new(4).unwrap(),
        ttl_ms: None,
        request_id: None,
    };
    client
        .allocate(&node(name), &body, &new_request_id())
        .await
        .expect("allocate")
}

/// The allocations without their remaining lease time, which checkpoints change.
fn allocations(state: &AppliedState) -> BTreeMap<NodeName, Allocation> {
    state
        .licenses
        .allocations()
        .iter()
        .map(|(k, a)| {
            let mut a = a.clone();
            a.remaining_ms = 0;
            (k.clone(), a)
        })
        .collect()
}

/// The state machine state inside a backup file.
fn state_of(file: &Path) -> (Backup, AppliedState) {
    let backup = Backup::from_file(&std::fs::read(file).unwrap()).expect("a valid backup");
    let state: AppliedState =
        licd_storage::format::decode_versioned(&backup.data).expect("snapshot data");
    (backup, state)
}

/// `licd --json snapshot restore FILE` for node `id` of `cluster` (prepared, not running),
/// with every prepared node as a member; returns the new cluster id.
async fn restore(file: &Path, cluster: &Cluster, id: u64, cluster_id: Option<&str>) -> String {
    let mut args = vec![
        s("--json"),
        s("snapshot"),
        s("restore"),
        file.display().to_string(),
        s("--data-dir"),
        cluster.configs[&id].data_dir.display().to_string(),
        s("--node-id"),
        id.to_string(),
    ];
    for (member, addr) in &cluster.addrs {
        args.extend([s("--member"), format!("{member}={addr}")]);
    }
    if let Some(cid) = cluster_id {
        args.extend([s("--cluster-id"), s(cid)]);
    }
    let out = cli(args).await;
    assert!(
        out.status.success(),
        "restore of node {id} failed: {}",
        text(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    body["cluster_id"]
        .as_str()
        .expect("a cluster id")
        .to_string()
}

async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_restores_into_a_new_cluster_with_exactly_the_writes_before_it() {
    let old = Cluster::start(3).await;
    old.install(&license("lic-a", 64)).await;
    let client = old.client();
    let kept = allocate(&client, "app-1", 1).await;
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("cluster.licdsnap");

    let out = admin_cli(
        &old,
        &["--json", "snapshot", "save", file.to_str().unwrap()],
    )
    .await;
    let saved: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(saved["licenses"], 1, "{saved}");
    assert_eq!(saved["allocations"], 1, "{saved}");
    let old_id = old.node(1).cluster_id().expect("the old cluster has an id");
    assert_eq!(saved["cluster_id"], &*old_id);
    // A second save does not replace the file unless told to.
    let again = cli(vec![
        s("snapshot"),
        s("save"),
        file.display().to_string(),
        s("--endpoints"),
        endpoints(&old),
        s("--admin-token"),
        s(ADMIN_TOKEN),
    ])
    .await;
    assert_readable_failure(&again, "--force");

    // Written after the backup: must not come back.
    old.install(&license("lic-b", 16)).await;
    let _later = allocate(&client, "app-2", 2).await;
    let (backup, saved_state) = state_of(&file);
    assert_eq!(backup.cluster_id.as_deref(), Some(&*old_id));
    assert!(
        saved_state
            .licenses
            .licenses()
            .contains_key(&LicenseId::new("lic-a").unwrap())
    );
    let vendor = old.vendor.clone();
    old.shutdown().await;

    // Three fresh nodes of a new cluster: the first restore names the new id, the others
    // take it.
    let mut new = Cluster::unstarted(vendor);
    for id in 1..=3 {
        new.prepare_node(id, None).await;
    }
    let new_id = restore(&file, &new, 1, None).await;
    assert_ne!(new_id, *old_id, "a restore starts a new cluster");
    for id in 2..=3 {
        assert_eq!(restore(&file, &new, id, Some(&new_id)).await, new_id);
    }
    for id in 1..=3 {
        new.restart(id).await;
    }
    let leader = new.wait_for_leader(Duration::from_secs(20)).await;
    new.wait_applied(
        leader,
        backup.last_log_id().unwrap().index + 1,
        Duration::from_secs(10),
    )
    .await;

    // The licenses and allocations are those of the backup: lic-b and app-2 are absent.
    let applied_on_leader = new.node(leader).metrics().last_applied.unwrap().index;
    for id in 1..=3 {
        new.wait_applied(id, applied_on_leader, Duration::from_secs(10))
            .await;
        let n = new.node(id);
        assert_eq!(n.cluster_id().as_deref(), Some(new_id.as_str()));
        n.read_local(|state| {
            assert_eq!(
                state.licenses.licenses(),
                saved_state.licenses.licenses(),
                "node {id}"
            );
            assert_eq!(allocations(state), allocations(&saved_state), "node {id}");
            let members: Vec<u64> = state.last_membership.membership().voter_ids().collect();
            assert_eq!(members, vec![1, 2, 3]);
        });
    }
    // The new cluster serves: the allocation made before the backup renews with its token,
    // and new writes go through.
    let new_client = new.client();
    new_client
        .heartbeat(&node("app-1"), Some(&kept.lease_token), &new_request_id())
        .await
        .expect("the restored allocation renews with its token");
    allocate(&new_client, "app-3", 3).await;
    let status = new.admin_client().status().await.unwrap();
    assert_eq!(status.members.len(), 3);
    new.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_cluster_and_the_old_one_refuse_each_other() {
    // The old cluster keeps node 3; nodes 1 and 2 are rebuilt from a backup on the same
    // addresses (hosts reinstalled), with the old node 3's address as the new member 3.
    let mut old = Cluster::start(3).await;
    old.install(&license("lic-a", 64)).await;
    allocate(&old.client(), "app-1", 1).await;
    let old_id = old.node(1).cluster_id().unwrap().to_string();
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("cluster.licdsnap");
    admin_cli(&old, &["snapshot", "save", file.to_str().unwrap()]).await;
    // A later write, which the old cluster's node 3 holds and the new cluster must not.
    old.install(&license("lic-b", 16)).await;
    let last_old = old.node(1).metrics().last_applied.unwrap().index;
    old.wait_applied(3, last_old, Duration::from_secs(10)).await;
    let addrs = old.addrs.clone();
    old.stop(1).await;
    old.stop(2).await;
    let old_state_3 = old.node(3).read_local(|s| s.licenses.clone());

    let mut new = Cluster::unstarted(old.vendor.clone());
    new.prepare_node(1, Some(addrs[&1])).await;
    new.prepare_node(2, Some(addrs[&2])).await;
    new.addrs.insert(3, addrs[&3]);
    let new_id = restore(&file, &new, 1, None).await;
    restore(&file, &new, 2, Some(&new_id)).await;
    new.restart(1).await;
    new.restart(2).await;
    let leader = new.wait_for_leader(Duration::from_secs(20)).await;

    // Over several election timeouts: the old node 3 (whose log is longer) campaigns and
    // is refused by the new nodes, and it refuses the new leader's appends.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        for id in [1, 2] {
            let m = new.node(id).metrics();
            assert_ne!(
                m.current_leader,
                Some(3),
                "node {id} follows the old node 3"
            );
        }
        assert!(!old.node(3).is_leader(), "the old node 3 leads");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The new cluster writes with two of its three voters, none of it reaching node 3.
    new.install(&license("lic-c", 8)).await;
    new.node(leader).read_local(|s| {
        let ids: Vec<&str> = s.licenses.licenses().keys().map(|l| l.as_str()).collect();
        assert_eq!(ids, vec!["lic-a", "lic-c"], "the new cluster's licenses");
    });
    let old_3 = old.node(3);
    assert_eq!(old_3.cluster_id().as_deref(), Some(old_id.as_str()));
    assert_eq!(old_3.read_local(|s| s.licenses.clone()), old_state_3);
    let status = new.admin_client_of(leader).status().await.unwrap();
    let member_3 = status.members.iter().find(|m| m.id == 3).unwrap();
    assert_eq!(
        member_3.matched_index, None,
        "the old node took no entry: {status:?}"
    );

    // The same refusal as the raw answer a peer gets: JSON, naming both clusters.
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("http://{}/raft/vote", addrs[&1]))
        .header(licd::api::CLUSTER_SECRET_HEADER, common::CLUSTER_SECRET)
        .header(licd::api::CLUSTER_ID_HEADER, &old_id)
        .body(vec![0u8; 8])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::CONFLICT);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["code"], "CLUSTER_MISMATCH");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&new_id) && message.contains(&old_id),
        "{message}"
    );
    new.shutdown().await;
    old.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_backup_files_are_refused_and_write_nothing() {
    let cluster = Cluster::start(1).await;
    cluster.install(&license("lic-a", 64)).await;
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("good.licdsnap");
    admin_cli(&cluster, &["snapshot", "save", file.to_str().unwrap()]).await;
    cluster.shutdown().await;
    let good = std::fs::read(&file).unwrap();
    let inspect = cli(vec![
        s("snapshot"),
        s("inspect"),
        file.display().to_string(),
    ])
    .await;
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    assert!(
        text(&inspect.stdout).contains("1 licenses"),
        "{}",
        text(&inspect.stdout)
    );

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let mut longer = good.clone();
    longer.extend_from_slice(b"x");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() - 10].to_vec(), "truncated"),
        ("cut in its header", good[..12].to_vec(), "truncated"),
        ("one bit changed", flipped, "checksum"),
        ("bytes appended", longer, "after its end"),
        (
            "not a backup",
            b"just some text\n".to_vec(),
            "not a licd backup file",
        ),
        ("empty", Vec::new(), "not a licd backup file"),
    ];
    for (what, bytes, expected) in cases {
        let damaged: PathBuf = files
            .path()
            .join(format!("{}.licdsnap", what.replace(' ', "-")));
        std::fs::write(&damaged, &bytes).unwrap();
        let dir = files
            .path()
            .join(format!("data-{}", what.replace(' ', "-")));
        let out = cli(vec![
            s("snapshot"),
            s("restore"),
            damaged.display().to_string(),
            s("--data-dir"),
            dir.display().to_string(),
            s("--node-id"),
            s("1"),
            s("--member"),
            s("1=127.0.0.1:1"),
        ])
        .await;
        assert_readable_failure(&out, expected);
        assert!(!dir.exists(), "{what}: a data directory was written");
        let out = cli(vec![
            s("snapshot"),
            s("inspect"),
            damaged.display().to_string(),
        ])
        .await;
        assert_readable_failure(&out, expected);
    }

    // A good file is still refused into a directory that holds something, and with the
    // old cluster's own id.
    let busy = files.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("something"), "x").unwrap();
    let restore_into = |dir: &Path, node_id: &str, extra: &[&str]| {
        let mut args = vec![
            s("snapshot"),
            s("restore"),
            file.display().to_string(),
            s("--data-dir"),
            dir.display().to_string(),
            s("--node-id"),
            s(node_id),
            s("--member"),
            s("1=127.0.0.1:1"),
        ];
        args.extend(extra.iter().map(|a| s(a)));
        args
    };
    let out = cli(restore_into(&busy, "1", &[])).await;
    assert_readable_failure(&out, "is not empty");
    let (backup, _) = state_of(&file);
    let old_id = backup.cluster_id.unwrap();
    let fresh = files.path().join("fresh");
    let out = cli(restore_into(&fresh, "1", &["--cluster-id", &old_id])).await;
    assert_readable_failure(&out, "the cluster the backup was taken from");
    let out = cli(restore_into(&fresh, "3", &["--member", "2=127.0.0.1:2"])).await;
    assert_readable_failure(&out, "must include this node");
    assert!(!fresh.exists());
    // And the good file restores.
    let out = cli(restore_into(&fresh, "1", &[])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(fresh.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_disk_died_is_replaced_with_the_cluster_commands() {
    let mut cluster = Cluster::start(3).await;
    cluster.install(&license("lic-a", 64)).await;
    allocate(&cluster.client(), "app-1", 1).await;
    let cluster_id = cluster.node(1).cluster_id().unwrap().to_string();
    // Node 3's disk dies: the process is gone and so is its data directory.
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let dead = if leader == 3 { 2 } else { 3 };
    cluster.stop(dead).await;
    std::fs::remove_dir_all(&cluster.configs[&dead].data_dir).unwrap();
    let live: Vec<u64> = (1..=3).filter(|id| *id != dead).collect();

    // The documented procedure: remove the dead id, add a fresh node as a learner (it
    // catches up), promote it.
    admin_cli(&cluster, &["cluster", "remove", &dead.to_string()]).await;
    let addr = cluster.start_new_node(4).await;
    admin_cli(&cluster, &["cluster", "add", "4", &addr.to_string()]).await;
    admin_cli(&cluster, &["cluster", "promote", "4"]).await;
    let out = admin_cli(&cluster, &["--json", "cluster", "status"]).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut voters: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "voter")
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    voters.sort_unstable();
    let mut expected = live.clone();
    expected.push(4);
    assert_eq!(voters, expected, "{status}");

    // The new node joined this cluster (it took its id) and holds the state.
    let applied = cluster.node(leader).metrics().last_applied.unwrap().index;
    cluster
        .wait_applied(4, applied, Duration::from_secs(10))
        .await;
    assert_eq!(
        cluster.node(4).cluster_id().as_deref(),
        Some(cluster_id.as_str())
    );
    cluster.node(4).read_local(|s| {
        assert!(s.licenses.allocations().contains_key(&node("app-1")));
    });
    // The cluster survives the loss of another original node: node 4 votes.
    let other = *live.iter().find(|id| **id != leader).unwrap();
    cluster.stop(other).await;
    wait_until(
        "a leader among the remaining two",
        Duration::from_secs(20),
        || {
            let l = cluster.node(leader).metrics().current_leader;
            l.is_some() && l == cluster.node(4).metrics().current_leader
        },
    )
    .await;
    allocate(&cluster.client(), "app-2", 2).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_initialized_before_cluster_ids_keeps_working_without_one() {
    let mut cluster = Cluster::start(3).await;
    cluster.install(&license("lic-a", 64)).await;
    let id = cluster.node(1).cluster_id().unwrap().to_string();
    for n in 1..=3 {
        cluster.stop(n).await;
    }
    // Data directories as a licd from before cluster ids left them: no id stored.
    for n in 1..=3 {
        let (log, _) = licd_storage::open(&cluster.configs[&n].data_dir).unwrap();
        log.forget_cluster_id(&id).await.unwrap();
        assert_eq!(log.cluster_id().unwrap(), None);
    }
    for n in 1..=3 {
        cluster.restart(n).await;
    }
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    allocate(&cluster.client(), "app-1", 1).await;
    // A fresh node joins it as a learner, and stays without an id like its cluster.
    let addr = cluster.start_new_node(4).await;
    cluster
        .admin_client()
        .add_learner(4, &addr.to_string())
        .await
        .expect("a learner joins a cluster without an id");
    assert_eq!(cluster.node(4).cluster_id(), None);
    // It takes no message that names a cluster: such a sender is of another cluster.
    let answer = reqwest::Client::new()
        .post(format!("http://{}/raft/vote", cluster.addrs[&1]))
        .header(licd::api::CLUSTER_SECRET_HEADER, common::CLUSTER_SECRET)
        .header(licd::api::CLUSTER_ID_HEADER, &id)
        .body(vec![0u8; 8])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::CONFLICT);
    for n in 1..=4 {
        assert_eq!(cluster.node(n).cluster_id(), None, "node {n}");
    }
    cluster.shutdown().await;
}
