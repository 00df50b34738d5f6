//! One node's wall clock an hour ahead (an NTP mistake), as real `licd serve` processes, the
//! skewed one under `faketime`: while it leads, a heartbeating server stays VALID, a license
//! that expires in ten minutes of real time is not treated as expired, the skew is reported,
//! and a server that stops heartbeating has its cores freed within the bound, also after the
//! skewed node stops leading.
//!
//! Needs `faketime` (Debian's package of that name; `.ci/run` installs it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use licd::api::{AllocateBody, ErrorCode, InitBody};
use licd::client::{Client, RetryPolicy, new_request_id};
use licd::config::{NodeConfig, RaftTiming};
use licd::lease_token::LeaseToken;
use licd::node::status::Role;
use licd::process::{SpawnOptions, Supervised};
use licd_raft::license::License;
use licd_raft::license_file::{LicenseFile, encode_public_key, generate_signing_key};
use licd_raft::types::{Cores, LicenseId, MacAddr, NodeName, Timestamp};

const LICD: &str = env!("CARGO_BIN_EXE_licd");
const ADMIN_TOKEN: &str = "skew-admin-token-0123456789";
const CLUSTER_SECRET: &str = "skew-cluster-secret-0123456789";
const TTL_MS: u64 = 8_000;
const CHECKPOINT_MS: u64 = 1_000;
const HOUR_MS: i64 = 3_600_000;

fn free_port_block(len: u16) -> u16 {
    let base = 30_000 + (std::process::id() % 900) as u16 * 10;
    for start in (base..39_000).step_by(usize::from(len) + 3) {
        if (start..start + len).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return start;
        }
    }
    panic!("no free port block");
}

fn mac(i: u8) -> MacAddr {
    MacAddr::from_bytes([2, 0, 0, 0, 0, i])
}

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

/// Starts node `id` at `port`, under `faketime -f skew` when given.
fn start(dir: &Path, id: u64, ports: &[u16], key: &str, skew: Option<&str>) -> Supervised {
    let config = NodeConfig {
        node_id: id,
        listen: format!("127.0.0.1:{}", ports[id as usize - 1])
            .parse()
            .unwrap(),
        advertise: None,
        data_dir: dir.join(format!("node-{id}")),
        trusted_keys: vec![key.to_string()],
        default_lease_ttl_ms: TTL_MS,
        raft_bind_ip: None,
        admin_token_file: None,
        cluster_secret_file: None,
        answer_signing_key_file: None,
        raft: RaftTiming {
            lease_checkpoint_ms: CHECKPOINT_MS,
            tick_ms: 200,
            ..RaftTiming::default()
        },
        // The admin token (LICD_ADMIN_TOKEN) is the only one: the clients use it for all.
        auth: Default::default(),
        limits: Default::default(),
        tls: None,
        server: Default::default(),
        events: Default::default(),
    };
    let path = dir.join(format!("node-{id}.toml"));
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let log = std::fs::File::create(dir.join(format!("node-{id}.log"))).unwrap();
    let mut command = match skew {
        Some(offset) => {
            let mut c = Command::new("faketime");
            c.args(["-f", offset]).arg(LICD);
            c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
            c
        }
        None => Command::new(LICD),
    };
    command
        .args(["serve", "--config"])
        .arg(&path)
        .env("LICD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("LICD_CLUSTER_SECRET", CLUSTER_SECRET)
        .env("LICD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
    let options = SpawnOptions {
        own_group: true,
        ..SpawnOptions::default()
    };
    Supervised::spawn(&mut command, options).expect("start licd serve")
}

fn client_of(ports: &[u16]) -> Client {
    let endpoints: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    Client::with_policy(
        &endpoints,
        RetryPolicy {
            deadline: Duration::from_secs(20),
            ..RetryPolicy::default()
        },
    )
    .unwrap()
    .with_admin_token(ADMIN_TOKEN)
}

/// Makes node `id` lead (it campaigns until it does).
async fn make_lead(ports: &[u16], id: u64) {
    let one = client_of(&ports[id as usize - 1..id as usize]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(status) = one.elect().await
            && status.node_id == id
            && status.state == Role::Leader
        {
            return;
        }
        assert!(Instant::now() < deadline, "node {id} never led");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Heartbeats `name` every second and checks it every 250 ms for `span`: every answer must
/// say the server is licensed.
async fn stays_valid(client: &Client, name: &str, token: &LeaseToken, span: Duration) -> usize {
    let until = Instant::now() + span;
    let mut next_heartbeat = Instant::now();
    let mut checks = 0;
    while Instant::now() < until {
        if Instant::now() >= next_heartbeat {
            let renewal = client
                .heartbeat(&node(name), Some(token), &new_request_id())
                .await;
            assert!(renewal.is_ok(), "heartbeat of {name}: {renewal:?}");
            next_heartbeat += Duration::from_secs(1);
        }
        let check = client.check(&node(name), None).await.expect("check");
        assert_eq!(check.check.code, ErrorCode::Valid, "{name}: {check:?}");
        checks += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    checks
}

/// Waits until `name` holds nothing; returns how long after `since` that was seen.
async fn freed_after(client: &Client, name: &str, since: Instant) -> Duration {
    loop {
        let usage = client.licenses().await.expect("usage");
        if !usage.licenses[0]
            .nodes
            .iter()
            .any(|n| n.node.as_str() == name)
        {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "{name} never freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_leader_an_hour_ahead_ends_no_lease_and_no_license_early() {
    assert!(
        Command::new("faketime").arg("-h").output().is_ok(),
        "this test needs faketime (apt-get install faketime)"
    );
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_block(3);
    let ports = [base, base + 1, base + 2];
    let vendor = generate_signing_key(&mut rand::rngs::OsRng);
    let key = encode_public_key(&vendor.verifying_key());
    let _nodes: Vec<Supervised> = (1..=3)
        .map(|id| start(dir.path(), id, &ports, &key, (id == 1).then_some("+1h")))
        .collect();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = client_of(&ports);
        let members = (1..=3u64)
            .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize - 1])))
            .collect();
        client.init(&InitBody { members }).await.expect("init");
        // A license that expires ten minutes from now, in real time.
        let now_ms = licd::node::now().0;
        let license = License {
            id: LicenseId::new("lic").unwrap(),
            customer: "Skew Test".into(),
            issued_at: Timestamp(now_ms - 60_000),
            expires_at: Some(Timestamp(now_ms + 600_000)),
            max_cores: 16,
            min_cores_per_node: 4,
            allowed_macs: (1..=4).map(mac).collect(),
            features: Default::default(),
            serial: 1,
        };
        let file = LicenseFile::issue(&license, &vendor).unwrap();
        let mut installed = client.install_license(&file, &new_request_id()).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        // Right after a start, the voters' clocks may not have been compared yet.
        while installed.is_err() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            installed = client.install_license(&file, &new_request_id()).await;
        }
        installed.expect("install the license");
        let mut tokens = Vec::new();
        for (name, m) in [("app-1", 1), ("app-2", 2)] {
            let body = AllocateBody {
                license: None,
                mac: mac(m),
                cores: Cores::new(4).unwrap(),
                ttl_ms: Some(TTL_MS),
                request_id: None,
            };
            let grant = client
                .allocate(&node(name), &body, &new_request_id())
                .await
                .expect("allocate");
            tokens.push(grant.lease_token);
        }
        let app_1 = &tokens[0];

        // The skewed node leads: leases and the license live on.
        make_lead(&ports, 1).await;
        let skewed_since = Instant::now();
        let checks = stays_valid(
            &client,
            "app-1",
            app_1,
            Duration::from_millis(TTL_MS + 4_000),
        )
        .await;
        let status = client.status().await.expect("status");
        assert_eq!(status.leader_id, Some(1));
        let skew = status
            .members
            .iter()
            .find(|m| m.id == 1)
            .and_then(|m| m.clock_skew_ms);
        assert!(
            skew.is_some_and(|s| (s - HOUR_MS).abs() < 5_000),
            "node 1's skew: {skew:?}"
        );
        assert!(
            status
                .warnings
                .iter()
                .any(|w| w.starts_with("clock skew: node 1's clock is")
                    && w.contains("ahead of the cluster's")),
            "{:?}",
            status.warnings
        );
        // app-2 never heartbeated: its lease ran out while the skewed node led.
        let usage = client.licenses().await.expect("usage");
        assert!(
            !usage.licenses[0]
                .nodes
                .iter()
                .any(|n| n.node.as_str() == "app-2"),
            "a dead server kept its cores under the skewed leader: {usage:?}"
        );
        let health = client.cluster_health().await.expect("cluster health");
        assert!(health.clock_skew_ms.get(&1).is_some_and(|s| *s > 30_000));
        println!(
            "node 1 (+1 h) led for {:?}: {checks} checks of a heartbeating server, all VALID",
            skewed_since.elapsed()
        );

        // app-2 stopped heartbeating when it was allocated; it is freed within the bound
        // (no change of leader counted twice here: one election, to node 1).
        let last = Instant::now();
        let body = AllocateBody {
            license: None,
            mac: mac(3),
            cores: Cores::new(4).unwrap(),
            ttl_ms: Some(TTL_MS),
            request_id: None,
        };
        client
            .allocate(&node("app-3"), &body, &new_request_id())
            .await
            .expect("allocate app-3");
        // Another node leads now; app-3 never heartbeats and must be freed in time, while
        // app-1, heartbeating, stays licensed throughout.
        make_lead(&ports, 2).await;
        let (held, checks) = tokio::join!(
            freed_after(&client, "app-3", last),
            stays_valid(
                &client,
                "app-1",
                app_1,
                Duration::from_millis(TTL_MS + 3_000)
            )
        );
        let bound = Duration::from_millis(TTL_MS + CHECKPOINT_MS + 500 + 200);
        println!(
            "app-3 held its cores {held:?} after its allocation (bound {bound:?}); app-1 \
             stayed VALID in {checks} checks after the skewed node stopped leading"
        );
        assert!(
            held <= bound + Duration::from_millis(1_000),
            "held {held:?}"
        );
    });
}
