//! How long building a snapshot holds up apply: a bench that prints figures.
//!
//! It fills a state machine the way a long-running cluster fills it (many application
//! servers, the exactly-once table at its capacity of 100,000 request ids, the usage history
//! with one event per allocation up to its default cap), then, several
//! times, builds a snapshot while another task applies one entry after another, and reports
//! how long the build took and the longest single apply while it ran, against the median
//! apply when no snapshot is being built.
//!
//! ```text
//! cargo run --release -p licd-storage --example snapshot_stall [-- SERVERS REQUESTS ROUNDS]
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use licd_raft::command::Allocate;
use licd_raft::license::License;
use licd_raft::types::{
    Cores, LeaseTtl, LicenseId, MacAddr, NodeName, RequestId, Timestamp, TokenHash,
};
use licd_raft::{Command, Request, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

fn mac(server: u64) -> MacAddr {
    let b = server.to_be_bytes();
    MacAddr::from_bytes([2, 0, b[4], b[5], b[6], b[7]])
}

fn entry(index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            time: Some(Timestamp(1_000_000 + index)),
            request_id: RequestId::new(format!("request-{index:012}")).unwrap(),
            command,
        }),
    }
}

fn allocate(server: u64) -> Command {
    let token = TokenHash([(server % 251) as u8; 32]);
    Command::Allocate(Allocate {
        node: NodeName::new(format!("app-server-{server:06}")).unwrap(),
        license: None,
        mac: mac(server),
        cores: Cores::new(4).unwrap(),
        lease_ttl: LeaseTtl::from_millis(30_000).unwrap(),
        token_hash: Some(token),
        presented: Some(token),
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are numbers"))
        .collect();
    let servers = args.first().copied().unwrap_or(20_000);
    let requests = args.get(1).copied().unwrap_or(100_000).max(servers + 1);
    let rounds = args.get(2).copied().unwrap_or(7);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let (_log, mut sm) = licd_storage::open(dir.path()).expect("open the store");
    let license = License {
        id: LicenseId::new("lic").unwrap(),
        customer: "Example".into(),
        issued_at: Timestamp(0),
        expires_at: None,
        max_cores: u32::try_from(4 * servers + 4).expect("cores fit"),
        min_cores_per_node: 1,
        allowed_macs: (0..servers).map(mac).collect::<BTreeSet<_>>(),
        features: BTreeSet::new(),
        serial: 1,
    };
    let filling = Instant::now();
    let mut index = 1;
    // The usage history at its default retention: every allocation below is an event.
    let mut batch = vec![
        entry(index, Command::InstallLicense(license)),
        entry(
            index + 1,
            Command::SetEventRetention {
                retention: licd_raft::events::Retention::default(),
            },
        ),
    ];
    index += 1;
    while index < requests {
        index += 1;
        batch.push(entry(index, allocate(index % servers)));
        if batch.len() == 1_000 {
            sm.apply(std::mem::take(&mut batch)).await.expect("apply");
        }
    }
    sm.apply(batch).await.expect("apply");
    let filled = filling.elapsed();
    {
        let state = sm.state();
        let state = state.read().unwrap();
        println!(
            "state: {} allocations, {} remembered request ids, {} events, applied up to {} in {:.0} ms ({:.1} us per entry)",
            state.licenses.allocations().len(),
            state.licenses.remembered_requests(),
            state.events.len(),
            index,
            ms(filled),
            ms(filled) * 1_000.0 / index as f64
        );
    }

    let mut quiet = Vec::new();
    for _ in 0..2_000 {
        index += 1;
        let e = entry(index, allocate(index % servers));
        let t = Instant::now();
        sm.apply([e]).await.expect("apply");
        quiet.push(t.elapsed());
    }
    let quiet_median = median(quiet);

    let mut builds = Vec::new();
    let mut worst = Vec::new();
    let mut bytes = 0;
    for _ in 0..rounds {
        let mut builder = sm.get_snapshot_builder().await;
        let started = Instant::now();
        let build = tokio::spawn(async move {
            let snapshot = builder.build_snapshot().await.expect("build a snapshot");
            (started.elapsed(), snapshot.snapshot.get_ref().len())
        });
        let mut longest = Duration::ZERO;
        while !build.is_finished() {
            index += 1;
            let e = entry(index, allocate(index % servers));
            let t = Instant::now();
            sm.apply([e]).await.expect("apply");
            longest = longest.max(t.elapsed());
            tokio::task::yield_now().await;
        }
        let (took, size) = build.await.expect("the build task");
        builds.push(took);
        bytes = size;
        worst.push(longest);
    }
    println!(
        "{rounds} snapshot builds of {:.1} MB: median build {:.1} ms; longest apply during a build, median of rounds {:.2} ms (each round: {}); median apply without a build {:.3} ms",
        bytes as f64 / 1e6,
        ms(median(builds.clone())),
        ms(median(worst.clone())),
        worst
            .iter()
            .map(|d| format!("{:.2}", ms(*d)))
            .collect::<Vec<_>>()
            .join(", "),
        ms(quiet_median)
    );
}
