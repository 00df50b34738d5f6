//! The usage history over a real cluster: allocations, refusals with their codes, a release
//! and a license install are recorded; every node holds the same history, the one that leads
//! after the leader stopped and the old leader restarted too; pages follow; bad queries are
//! 400s; `licd events` (also `--follow`) and `licd report --format csv` show them; and the
//! leader's configured retention is the one every node applies.

mod common;
#[path = "support/cli.rs"]
mod support;

use std::time::Duration;

use common::{Cluster, OPERATOR_TOKEN, license, mac};
use licd::api::{AllocateBody, ErrorCode, EventBody, EventWhat, EventsBody, FreedReason};
use licd::client::{Client, new_request_id};
use licd_raft::types::{Cores, NodeName};
use support::{licd, run_for, text};

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

async fn allocate(
    client: &Client,
    name: &str,
    mac_index: u8,
    cores: u32,
) -> Result<licd::api::GrantBody, licd::client::ClientError> {
    let body = AllocateBody {
        license: None,
        mac: mac(mac_index),
        cores: Cores::new(cores).unwrap(),
        ttl_ms: None,
        request_id: None,
    };
    client.allocate(&node(name), &body, &new_request_id()).await
}

/// The whole history, read in pages of `limit`.
async fn read_pages(client: &Client, limit: usize) -> (Vec<EventBody>, usize) {
    let (mut all, mut pages, mut since) = (Vec::new(), 0, 0);
    loop {
        let page = client.events(since, limit).await.expect("a page");
        pages += 1;
        assert!(page.events.len() <= limit);
        let full = page.events.len() == limit;
        since = page.next;
        all.extend(page.events);
        if !full || pages > 100 {
            return (all, pages);
        }
    }
}

/// Each event in a word or three, for comparing a history with what happened.
fn summary(e: &EventBody) -> String {
    match &e.what {
        EventWhat::RetentionChanged { .. } => "retention".into(),
        EventWhat::LicenseInstalled { license, max_cores } => {
            format!("installed {license} {max_cores}")
        }
        EventWhat::Allocated {
            node,
            counted_cores,
            ..
        } => format!("allocated {node} {counted_cores}"),
        EventWhat::Refused { node, code, .. } => format!("refused {node} {code}"),
        EventWhat::Freed { node, reason, .. } => {
            assert_eq!(*reason, FreedReason::Released);
            format!("freed {node}")
        }
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_history_records_usage_alike_on_every_node_and_reports_it() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    cluster.install(&license("lic", 16)).await;
    let client = cluster.client();

    let a = allocate(&client, "app-a", 1, 8).await.expect("a fits");
    let refused = allocate(&client, "app-b", 2, 12).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::CpuLimitExhausted));
    let refused = allocate(&client, "app-c", 10, 4).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::InvalidMultiServerLicense));
    allocate(&client, "app-b", 2, 6).await.expect("b fits");
    client
        .release(&node("app-a"), Some(&a.lease_token), &new_request_id())
        .await
        .expect("release a");
    cluster.install(&license("lic-2", 32)).await;

    let operator = cluster.operator_client();
    let (events, pages) = read_pages(&operator, 3).await;
    let summaries: Vec<String> = events.iter().map(summary).collect();
    assert_eq!(
        summaries,
        [
            "retention",
            "installed lic 16",
            "allocated app-a 8",
            "refused app-b CPU_LIMIT_EXHAUSTED",
            "refused app-c INVALID_MULTI_SERVER_LICENSE",
            "allocated app-b 6",
            "freed app-a",
            "installed lic-2 32",
        ]
    );
    assert_eq!(pages, 3, "8 events in pages of 3");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
    assert!(
        events.iter().all(|e| e.time.is_some()),
        "the nodes' clocks agree"
    );
    // A page after the last event is empty and keeps its place.
    let after = operator.events(8, 10).await.unwrap();
    assert_eq!((after.events.len(), after.next), (0, 8));

    // Another leader serves the same history.
    cluster.stop(leader).await;
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    assert_ne!(new_leader, leader);
    let (again, _) = read_pages(&operator, 1_000).await;
    assert_eq!(again, events);

    // Every node holds the same history, the old leader too once restarted (from its
    // snapshot and log), read from its own state once it applied it all.
    cluster.restart(leader).await;
    let applied = cluster
        .node(new_leader)
        .metrics()
        .last_applied
        .unwrap()
        .index;
    for id in 1..=3 {
        cluster
            .wait_applied(id, applied, Duration::from_secs(10))
            .await;
    }
    let histories: Vec<_> = (1..=3)
        .map(|id| cluster.node(id).read_local(|s| s.events.clone()))
        .collect();
    assert_eq!(histories[0].len(), 8);
    assert!(histories.iter().all(|h| *h == histories[0]));
    let leader = new_leader;

    // Bad queries are 400 with the JSON error, on any node.
    let http = reqwest::Client::new();
    for query in [
        "limit=0",
        "limit=10001",
        "since=-1",
        "since=9223372036854775808",
        "since=abc",
        "colour=red",
    ] {
        let response = http
            .get(format!(
                "http://{}/v1/events?{query}",
                cluster.addrs[&leader]
            ))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            reqwest::StatusCode::BAD_REQUEST,
            "{query}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "BAD_REQUEST", "{query}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // The command line: the events as JSON, and the report as CSV.
    let endpoints = cluster.endpoints().join(",");
    let cli = |args: &[&str]| {
        let mut cmd = licd();
        cmd.args(args)
            .args(["--endpoints", &endpoints, "--token", OPERATOR_TOKEN]);
        run_for(cmd, Duration::from_secs(30))
    };
    let out = cli(&["events", "--json", "--since", "2", "--page", "4"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body: EventsBody = serde_json::from_slice(&out.stdout).expect("events JSON");
    assert_eq!(body.events, events[2..]);
    assert_eq!(body.next, 8);
    let out = cli(&["events"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = text(&out.stdout);
    assert_eq!(lines.lines().count(), 8, "{lines}");
    assert!(
        lines.contains("refused app-b lic: 12 cores, CPU_LIMIT_EXHAUSTED"),
        "{lines}"
    );

    let out = cli(&["report", "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("license,day,peak_cores,avg_cores,peak_servers,refusals,refusals_by_code")
    );
    // The events may straddle midnight (UTC): combine a license's rows.
    let (mut lic, mut lic2) = ((0u64, 0u64, 0u64), (0u64, 0u64, 0u64));
    let mut codes = Vec::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 7, "{line}");
        let figures = (
            cells[2].parse::<u64>().unwrap(),
            cells[4].parse::<u64>().unwrap(),
            cells[5].parse::<u64>().unwrap(),
        );
        let avg: f64 = cells[3].parse().unwrap();
        assert!(avg >= 0.0 && avg <= figures.0 as f64, "{line}");
        let target = match cells[0] {
            "lic" => &mut lic,
            "lic-2" => &mut lic2,
            other => panic!("unexpected license {other} in\n{csv}"),
        };
        target.0 = target.0.max(figures.0);
        target.1 = target.1.max(figures.1);
        target.2 += figures.2;
        if !cells[6].is_empty() {
            codes.push(cells[6].to_string());
        }
    }
    // 8 + 6 cores on two servers at the peak; two refusals, one of each code.
    assert_eq!(lic, (14, 2, 2), "{csv}");
    assert_eq!(lic2, (0, 0, 0), "{csv}");
    let codes = codes.join(";");
    assert!(codes.contains("CPU_LIMIT_EXHAUSTED=1"), "{csv}");
    assert!(codes.contains("INVALID_MULTI_SERVER_LICENSE=1"), "{csv}");

    // A bad date is a readable failure.
    let out = cli(&["report", "--from", "2026-02-30"]);
    support::assert_readable_failure(&out, "is not a date");

    // `licd events --follow` prints what is there, then what happens, until Ctrl-C.
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = licd();
    cmd.args(["events", "--follow", "--json", "--since", "6"])
        .args(["--endpoints", &endpoints, "--token", OPERATOR_TOKEN])
        .stdout(file.reopen().unwrap());
    let mut follower = licd::process::Supervised::spawn(
        &mut cmd,
        licd::process::SpawnOptions {
            drop_grace: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .expect("spawn licd events --follow");
    let path = file.path().to_path_buf();
    let followed = |count: usize| {
        let path = path.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                let lines: Vec<EventBody> = std::fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
                    .collect();
                if lines.len() >= count {
                    return lines;
                }
                assert!(std::time::Instant::now() < deadline, "followed {lines:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(followed(2).await, events[6..]);
    // Two licenses are installed now: naming none is refused, and recorded so.
    let refused = allocate(&client, "app-d", 4, 4).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::LicenseRequired));
    let lines = followed(3).await;
    assert_eq!(summary(&lines[2]), "refused app-d LICENSE_REQUIRED");
    assert!(matches!(
        lines[2].what,
        EventWhat::Refused { license: None, .. }
    ));
    follower.signal(libc::SIGINT).unwrap();
    let status = follower
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("Ctrl-C stops --follow");
    assert!(status.success(), "{status:?}");
    cluster.shutdown().await;
}

/// The retention node `id` is configured with: each node's differs.
fn retention_of(id: u64) -> (u32, u64) {
    (30 * id as u32, 1_000 * id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leaders_retention_is_the_clusters() {
    let mut cluster = Cluster::start_with(3, |c| {
        let (days, max) = retention_of(c.node_id);
        c.events.retention_days = days;
        c.events.max_events = max;
    })
    .await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let operator = cluster.operator_client();
    assert!(
        operator.events(0, 10).await.unwrap().events.is_empty(),
        "no history before the first write"
    );
    cluster.install(&license("lic", 16)).await;
    let retention = |e: &EventBody| match e.what {
        EventWhat::RetentionChanged {
            retention_days,
            max_events,
        } => Some((retention_days, max_events)),
        _ => None,
    };
    let (first, _) = read_pages(&operator, 100).await;
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(retention(&first[0]), Some(retention_of(leader)));

    // A leader configured otherwise proposes its own retention, which every node applies,
    // the old leader too: its own setting is not applied where it does not lead.
    cluster.stop(leader).await;
    let other = cluster.wait_for_leader(Duration::from_secs(10)).await;
    assert_ne!(other, leader);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let last = loop {
        let (events, _) = read_pages(&operator, 100).await;
        if events.len() > 2 {
            break events;
        }
        assert!(std::time::Instant::now() < deadline, "{events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(last.len(), 3, "{last:?}");
    assert_eq!(retention(&last[2]), Some(retention_of(other)));
    cluster.restart(leader).await;
    let applied = cluster.node(other).metrics().last_applied.unwrap().index;
    for id in 1..=3 {
        cluster
            .wait_applied(id, applied, Duration::from_secs(10))
            .await;
        let held = cluster.node(id).read_local(|s| s.events.retention());
        assert_eq!(
            held.map(|r| (r.max_age_days, r.max_events)),
            Some(retention_of(other)),
            "node {id}"
        );
    }
    cluster.shutdown().await;
}
