//! The lease workload: application servers with short leases on a license of their own,
//! beside the license workload of [`super::workload`], and an observer of that license.
//!
//! Each server (process `s<i>`, server `lease-<i>`) allocates with a lease of 2 to 5 s
//! chosen from the seed and heartbeats the way licd's agent does: a third of the lease
//! after the send time of its last success, or half the time it was promised, whichever
//! comes first. Told `NOT_ALLOCATED`, it allocates again. Now and then it checks its own
//! status, and now and then it dies on purpose: it records `die`, stops for longer than
//! the bound in which licd must free its cores, records `revive`, and allocates again. The
//! observer (process `obs`) reads the license's usage and the leader's term every few
//! hundred milliseconds. Everything goes into the history as lease operations
//! (`History::lease_ops`), which only the lease checker reads: the license model knows
//! nothing of leases ending.
//!
//! Completions: an answer of the cluster (held, rejected, not allocated, lease expired) is
//! `ok`; an allocation or a heartbeat whose answer never came is `info` (it may have
//! renewed); a read that failed is `fail`.
//!
//! Each server keeps its lease token ([`super::tokens`]), across its deaths too (like an
//! agent with its state file): allocations and heartbeats present it. A refusal for the
//! token (`NODE_IN_USE`, `LEASE_TOKEN_MISMATCH`: possible only after an allocation whose
//! answer was lost) is a definite `rejected`, and the next candidate token is tried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use licd::api::AllocateBody;
use licd::client::{Client, new_request_id};
use licd_raft::Code;
use licd_raft::license::License;
use licd_raft::types::{Cores, LicenseId, MacAddr, NodeName, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cluster::{ADMIN_TOKEN, CLIENT_TOKEN, OPERATOR_TOKEN};
use super::tokens::Tokens;
use super::workload::{Recorder, client, describe};
use crate::checker::LeaseConfig;
use crate::history::{
    ErrorValue, Event, EventKind, F, HELD, Input, LEASE_EXPIRED, LeaseInput, LeaseOutput,
    NOT_ALLOCATED, Output, READ, REJECTED,
};

/// The lease license's id.
pub const LEASE_LICENSE_ID: &str = "lease-lic";
/// Its cap: the servers together ask for more, so grants meet the cap now and then.
pub const LEASE_MAX_CORES: u32 = 16;
/// Its per-server minimum.
pub const LEASE_MIN_CORES_PER_NODE: u32 = 2;
/// The first client address of lease servers: 127.0.0.(100 + this + i).
const CLIENT_OFFSET: usize = 20;

/// One application server of the lease workload.
#[derive(Debug, Clone)]
pub struct LeaseServer {
    /// Its name, `lease-<i>`.
    pub name: String,
    /// The cores it asks for.
    pub cores: u32,
    /// Its MAC (allowed by the lease license).
    pub mac: MacAddr,
    /// Its lease, 2 to 5 s.
    pub ttl_ms: u64,
}

/// The `count` servers of a run; leases drawn from `seed`.
pub fn lease_servers(count: usize, seed: u64) -> Vec<LeaseServer> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1ea5e);
    (0..count)
        .map(|i| LeaseServer {
            name: format!("lease-{i}"),
            cores: [2u32, 3, 4, 5, 6][i % 5],
            mac: MacAddr::from_bytes([2, 0, 0, 0, 2, u8::try_from(i).unwrap_or(0)]),
            ttl_ms: rng.gen_range(20..=50) * 100,
        })
        .collect()
}

/// The lease license: valid for a year of true time, so that a node whose clock is years
/// ahead would find it expired if its clock alone decided.
pub fn lease_license(servers: &[LeaseServer], now: Timestamp) -> License {
    License {
        id: LicenseId::new(LEASE_LICENSE_ID).expect("valid id"),
        customer: "Jepsen leases".into(),
        issued_at: Timestamp(1_000),
        expires_at: Some(Timestamp(now.as_millis() + 365 * 86_400_000)),
        max_cores: LEASE_MAX_CORES,
        min_cores_per_node: LEASE_MIN_CORES_PER_NODE,
        allowed_macs: servers.iter().map(|s| s.mac).collect(),
        features: Default::default(),
        serial: 1,
    }
}

fn held(remaining_ms: u64, counted: u32, allocated: u64, leader: Option<u64>, term: u64) -> Output {
    Output::Lease(
        F::Heartbeat,
        LeaseOutput {
            outcome: HELD.into(),
            remaining_ms: Some(remaining_ms),
            counted_cores: Some(counted),
            allocated_cores: Some(allocated),
            leader,
            term: Some(term),
            nodes: None,
        },
    )
}

fn answer(outcome: &str, leader: Option<u64>, term: Option<u64>) -> Output {
    Output::Lease(
        F::Heartbeat,
        LeaseOutput {
            outcome: outcome.into(),
            leader,
            term,
            ..LeaseOutput::default()
        },
    )
}

/// Records one lease operation: its invocation, the call, its completion. The output's
/// function is set to the input's.
async fn operate<Fut>(
    rec: &Recorder,
    process: &str,
    f: F,
    input: LeaseInput,
    call: Fut,
) -> Option<LeaseOutput>
where
    Fut: std::future::Future<Output = Result<Output, (EventKind, ErrorValue)>>,
{
    rec.record(|i, t| Event::invoke(i, t, process, Input::Lease(f, input)));
    match call.await {
        Ok(Output::Lease(_, out)) => {
            let kept = out.clone();
            rec.record(|i, t| Event::ok(i, t, process, Output::Lease(f, out)));
            Some(kept)
        }
        Ok(_) => None,
        Err((kind, error)) => {
            rec.record(|i, t| Event::error(i, t, process, kind, f, error));
            None
        }
    }
}

/// One server's life until `stop`.
async fn serve(
    rec: Recorder,
    client: Client,
    server: LeaseServer,
    process: String,
    mut rng: StdRng,
    bound: Duration,
    stop: Arc<AtomicBool>,
) {
    let node = NodeName::new(server.name.clone()).expect("lease server names are valid");
    let ttl = Duration::from_millis(server.ttl_ms);
    let mut promised: Option<Instant> = None; // when the next heartbeat is due
    let mut tokens = Tokens::default();
    let mut death = Instant::now() + Duration::from_millis(rng.gen_range(4_000..12_000));
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= death {
            rec.record(|i, t| Event::marker(i, t, &process, F::Die, &server.name));
            let until = Instant::now() + bound + Duration::from_millis(rng.gen_range(1_000..3_000));
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            rec.record(|i, t| Event::marker(i, t, &process, F::Revive, &server.name));
            promised = None;
            death = Instant::now() + Duration::from_millis(rng.gen_range(6_000..20_000));
            continue;
        }
        let Some(due) = promised else {
            let body = AllocateBody {
                license: LicenseId::new(LEASE_LICENSE_ID).ok(),
                mac: server.mac,
                cores: Cores::new(server.cores).unwrap_or_else(|_| Cores::new(1).expect("1 core")),
                ttl_ms: Some(server.ttl_ms),
                request_id: None,
            };
            let input = LeaseInput {
                node: Some(server.name.clone()),
                cores: Some(server.cores),
                ttl_ms: Some(server.ttl_ms),
            };
            let sent = Instant::now();
            let id = new_request_id();
            let call = async {
                let granted = match tokens.current() {
                    Some(token) => client.reallocate(&node, &body, &id, token).await,
                    None => client.allocate(&node, &body, &id).await,
                };
                match granted {
                    Ok(g) => {
                        tokens.granted(g.lease_token.clone());
                        Ok(held(
                            g.allocation.lease_remaining_ms,
                            g.allocation.counted_cores,
                            g.allocated_cores,
                            None,
                            g.log.term,
                        ))
                    }
                    Err(e) if e.is(Code::CpuLimitExhausted) => Ok(answer(REJECTED, None, None)),
                    Err(e) if e.is(Code::NodeInUse) => {
                        tokens.refused();
                        Ok(answer(REJECTED, None, None))
                    }
                    Err(e) => {
                        tokens.maybe_granted(&id, &node);
                        Err((EventKind::Info, describe(&e)))
                    }
                }
            };
            match operate(&rec, &process, F::LeaseAllocate, input, call).await {
                Some(out) if out.outcome == HELD => {
                    promised = Some(next_heartbeat(sent, ttl, out.remaining_ms));
                }
                _ => tokio::time::sleep(Duration::from_millis(rng.gen_range(200..500))).await,
            }
            continue;
        };
        let wait = due.min(death).saturating_duration_since(Instant::now());
        tokio::time::sleep(wait).await;
        if Instant::now() >= death || stop.load(Ordering::Relaxed) {
            continue;
        }
        let sent = Instant::now();
        let call = async {
            match client
                .heartbeat(&node, tokens.current(), &new_request_id())
                .await
            {
                Ok(b) => Ok(held(
                    b.lease_remaining_ms,
                    b.allocation.counted_cores,
                    b.allocated_cores,
                    Some(b.leader_id),
                    b.term,
                )),
                Err(e) if e.is(Code::NotAllocated) => Ok(answer(NOT_ALLOCATED, None, None)),
                Err(e) if e.is(Code::LeaseTokenMismatch) || e.is(Code::LeaseTokenRequired) => {
                    Ok(answer(REJECTED, None, None))
                }
                Err(e) => Err((EventKind::Info, describe(&e))),
            }
        };
        match operate(
            &rec,
            &process,
            F::Heartbeat,
            LeaseInput::node(&server.name),
            call,
        )
        .await
        {
            Some(out) if out.outcome == HELD => {
                promised = Some(next_heartbeat(sent, ttl, out.remaining_ms));
            }
            Some(_) => promised = None,
            // No answer: try again soon, while the promise may still hold.
            None => promised = Some(Instant::now() + Duration::from_millis(200)),
        }
        if rng.gen_bool(0.25) {
            check(&rec, &process, &client, &node).await;
        }
    }
}

/// When the agent heartbeats next: a third of the lease after `sent`, or half the time it
/// was promised, whichever comes first.
fn next_heartbeat(sent: Instant, ttl: Duration, remaining_ms: Option<u64>) -> Instant {
    let half = Duration::from_millis(remaining_ms.unwrap_or(0) / 2);
    sent + (ttl / 3).min(half)
}

/// A server checks its own status.
async fn check(rec: &Recorder, process: &str, client: &Client, node: &NodeName) {
    let call = async {
        match client.check(node, None).await {
            Ok(b) => {
                let (leader, term) = (Some(b.leader_id), Some(b.term));
                Ok(if b.check.valid {
                    held(
                        b.check.lease_remaining_ms.unwrap_or(0),
                        b.check.counted_cores.unwrap_or(0),
                        b.check.allocated_cores.unwrap_or(0),
                        leader,
                        b.term,
                    )
                } else {
                    let outcome = match b.check.code.as_str() {
                        "LEASE_EXPIRED" => LEASE_EXPIRED.to_string(),
                        "NOT_ALLOCATED" => NOT_ALLOCATED.to_string(),
                        other => other.to_ascii_lowercase(),
                    };
                    answer(&outcome, leader, term)
                })
            }
            Err(e) => Err((EventKind::Fail, describe(&e))),
        }
    };
    operate(
        rec,
        process,
        F::LeaseCheck,
        LeaseInput::node(node.as_str()),
        call,
    )
    .await;
}

/// The observer: the lease license's usage and the leader's term, every few hundred ms.
async fn observe(
    rec: Recorder,
    client: Client,
    admin: Client,
    mut rng: StdRng,
    stop: Arc<AtomicBool>,
) {
    let id = LicenseId::new(LEASE_LICENSE_ID).expect("valid id");
    while !stop.load(Ordering::Relaxed) {
        let call = async {
            match client.license(&id).await {
                Ok(u) => Ok(Output::Lease(
                    F::LeaseUsage,
                    LeaseOutput {
                        outcome: READ.into(),
                        allocated_cores: Some(u.allocated_cores),
                        nodes: Some(
                            u.nodes
                                .iter()
                                .map(|n| (n.node.as_str().to_string(), n.counted_cores))
                                .collect(),
                        ),
                        ..LeaseOutput::default()
                    },
                )),
                Err(e) => Err((EventKind::Fail, describe(&e))),
            }
        };
        operate(&rec, "obs", F::LeaseUsage, LeaseInput::default(), call).await;
        let call = async {
            match admin.status().await {
                Ok(s) => Ok(answer(READ, s.leader_id, Some(s.term))),
                Err(e) => Err((EventKind::Fail, describe(&e))),
            }
        };
        operate(&rec, "obs", F::Leader, LeaseInput::default(), call).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(150..350))).await;
    }
}

/// Runs `count` lease servers and the observer until `stop` is set.
pub async fn run_lease_workload(
    rec: Recorder,
    endpoints: Vec<String>,
    count: usize,
    seed: u64,
    timing: LeaseConfig,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    if count == 0 {
        return Ok(());
    }
    let mut tasks = Vec::new();
    for (i, server) in lease_servers(count, seed).into_iter().enumerate() {
        let client = client(&endpoints, CLIENT_OFFSET + i, Duration::from_millis(1_500))?
            .with_token(CLIENT_TOKEN);
        let rng = StdRng::seed_from_u64(seed.wrapping_mul(7_919).wrapping_add(i as u64));
        let bound = Duration::from_millis(timing.bound_ms(server.ttl_ms, 1));
        tasks.push(tokio::spawn(serve(
            rec.clone(),
            client,
            server,
            format!("s{i}"),
            rng,
            bound,
            stop.clone(),
        )));
    }
    // The observer reads the usage: an operator's route.
    let observer = client(
        &endpoints,
        CLIENT_OFFSET + count,
        Duration::from_millis(1_500),
    )?
    .with_token(OPERATOR_TOKEN);
    let admin = client(
        &endpoints,
        CLIENT_OFFSET + count + 1,
        Duration::from_millis(1_500),
    )?
    .with_admin_token(ADMIN_TOKEN);
    let rng = StdRng::seed_from_u64(seed ^ 0x0b5e);
    tasks.push(tokio::spawn(observe(rec, observer, admin, rng, stop)));
    for t in tasks {
        t.await?;
    }
    Ok(())
}
