//! The workload: several logical clients, each on its own loopback address, using the licd
//! client library against a license whose cap is hit often. Every operation is recorded as an
//! invocation and a completion in the history.
//!
//! Completions: a license refusal (`CPU_LIMIT_EXHAUSTED`) is `ok` with outcome `rejected`,
//! because the operation observed the state; a write whose outcome the client could not learn
//! (its deadline passed) is `info`; a read that failed is `fail` (a read has no effect).
//!
//! The clients together play each server's holder: they share each name's lease tokens
//! ([`super::tokens`]) and present them on allocate and release. A refusal for the token
//! (`NODE_IN_USE` for an allocate; `LEASE_TOKEN_REQUIRED` or `LEASE_TOKEN_MISMATCH` for a
//! release, recorded as a release with `refused`) is a definite `ok`: nothing changed.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use licd::api::AllocateBody;
use licd::client::{Client, ClientError, RetryPolicy, new_request_id};
use licd_raft::types::{Cores, LicenseId, MacAddr, NodeName};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cluster::{ADMIN_TOKEN, OPERATOR_TOKEN};
use super::fault::Fault;
use super::tokens::Tokens;
use crate::history::{AllocateInput, ErrorValue, Event, EventKind, F, FaultValue, Input, Output};

/// The application servers of the workload: name, cores, MAC.
pub fn servers() -> Vec<(String, u32, MacAddr)> {
    [2u32, 4, 6, 8, 10, 12, 3, 5]
        .iter()
        .enumerate()
        .map(|(i, cores)| {
            (
                format!("app-{i}"),
                *cores,
                MacAddr::from_bytes([2, 0, 0, 0, 1, u8::try_from(i).unwrap_or(0)]),
            )
        })
        .collect()
}

/// The license of every run: a cap the workload's servers exceed often.
pub const MAX_CORES: u32 = 24;
/// Each server counts at least this many cores.
pub const MIN_CORES_PER_NODE: u32 = 4;
/// The license id.
pub const LICENSE_ID: &str = "jepsen";

/// The history of a run, recorded as it happens.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    next: Arc<AtomicU64>,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    /// An empty history whose clock starts now.
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            next: Arc::new(AtomicU64::new(0)),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Appends an event built from its index and time. Index and time are taken under the
    /// lock, so the history is ordered by both.
    pub fn record(&self, make: impl FnOnce(u64, u64) -> Event) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        events.push(make(index, self.now_ns()));
    }

    /// A nemesis event.
    pub fn nemesis(&self, f: F, fault: Fault, detail: Option<String>) {
        self.record(|i, t| {
            Event::nemesis(
                i,
                t,
                f,
                FaultValue {
                    fault: fault.name().to_string(),
                    detail,
                },
            )
        });
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// A client process's address: 127.0.0.(100 + i).
pub fn client_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, u8::try_from(100 + i).unwrap_or(u8::MAX))
}

/// The client of process `i`.
pub fn client(endpoints: &[String], i: usize, deadline: Duration) -> anyhow::Result<Client> {
    Ok(Client::with_policy(
        endpoints,
        RetryPolicy {
            deadline,
            attempt_timeout: Duration::from_millis(1_000).min(deadline),
            ..RetryPolicy::default()
        },
    )?
    .with_local_address(IpAddr::V4(client_ip(i)))?)
}

pub(crate) fn describe(e: &ClientError) -> ErrorValue {
    ErrorValue {
        error: e.to_string(),
        code: e.code().map(|c| c.as_str().to_string()),
    }
}

/// The lease tokens the clients know, by server name.
pub type TokenTable = Arc<Mutex<std::collections::HashMap<String, Tokens>>>;

/// Runs `f` on the tokens of server `node`.
fn with_tokens<T>(table: &TokenTable, node: &str, f: impl FnOnce(&mut Tokens) -> T) -> T {
    let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
    f(table.entry(node.to_string()).or_default())
}

/// Runs one operation of process `name` and records it.
pub async fn operate(
    rec: &Recorder,
    name: &str,
    client: &Client,
    tokens: &TokenTable,
    input: Input,
) {
    rec.record(|i, t| Event::invoke(i, t, name, input.clone()));
    let f = input.f();
    let completion: Result<Output, (EventKind, ErrorValue)> = match &input {
        Input::Allocate(a) => {
            let (_, _, mac) = servers()
                .into_iter()
                .find(|(n, _, _)| *n == a.node)
                .unwrap_or_else(|| {
                    (
                        a.node.clone(),
                        a.cores,
                        MacAddr::from_bytes([2, 0, 0, 0, 1, 0]),
                    )
                });
            let body = AllocateBody {
                license: LicenseId::new(LICENSE_ID).ok(),
                mac,
                cores: Cores::new(a.cores).unwrap_or_else(|_| Cores::new(1).expect("1 core")),
                ttl_ms: Some(licd_raft::types::LeaseTtl::MAX_MS),
                request_id: None,
            };
            let node = NodeName::new(a.node.clone()).expect("workload names are valid");
            let id = a
                .request_id
                .clone()
                .and_then(|r| licd_raft::types::RequestId::new(r).ok())
                .unwrap_or_else(new_request_id);
            let presented = with_tokens(tokens, &a.node, |t| t.current().cloned());
            let answer = match &presented {
                Some(token) => client.reallocate(&node, &body, &id, token).await,
                None => client.allocate(&node, &body, &id).await,
            };
            match answer {
                Ok(g) => {
                    with_tokens(tokens, &a.node, |t| t.granted(g.lease_token.clone()));
                    Ok(Output::granted(
                        g.allocation.counted_cores,
                        g.allocated_cores,
                    ))
                }
                Err(e) if e.is(licd_raft::Code::CpuLimitExhausted) => Ok(Output::rejected()),
                Err(e) if e.is(licd_raft::Code::NodeInUse) => {
                    with_tokens(tokens, &a.node, Tokens::refused);
                    Ok(Output::Allocate(crate::history::AllocateOutput::Rejected {
                        code: crate::history::NODE_IN_USE.to_string(),
                    }))
                }
                Err(e) => {
                    with_tokens(tokens, &a.node, |t| t.maybe_granted(&id, &node));
                    Err((EventKind::Info, describe(&e)))
                }
            }
        }
        Input::Release(r) => {
            let node = NodeName::new(r.node.clone()).expect("workload names are valid");
            let presented = with_tokens(tokens, &r.node, |t| t.current().cloned());
            match client
                .release(&node, presented.as_ref(), &new_request_id())
                .await
            {
                Ok(b) => {
                    with_tokens(tokens, &r.node, Tokens::released);
                    Ok(Output::released(b.released))
                }
                Err(e)
                    if e.is(licd_raft::Code::LeaseTokenRequired)
                        || e.is(licd_raft::Code::LeaseTokenMismatch) =>
                {
                    with_tokens(tokens, &r.node, Tokens::refused);
                    Ok(Output::release_refused())
                }
                Err(e) => Err((EventKind::Info, describe(&e))),
            }
        }
        Input::Check(c) => {
            let node = NodeName::new(c.node.clone()).expect("workload names are valid");
            match client.check(&node, None).await {
                Ok(b) => Ok(Output::Check(crate::history::CheckOutput {
                    valid: b.check.valid,
                    code: Some(b.check.code.as_str().to_string()),
                })),
                Err(e) => Err((EventKind::Fail, describe(&e))),
            }
        }
        Input::Usage => match client.licenses().await {
            Ok(body) => {
                let usage = body
                    .licenses
                    .iter()
                    .find(|u| u.license.id.as_str() == LICENSE_ID);
                let nodes: Vec<(String, u32)> = usage
                    .map(|u| {
                        u.nodes
                            .iter()
                            .map(|n| (n.node.as_str().to_string(), n.counted_cores))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Output::usage(nodes.iter().map(|(n, c)| (n.as_str(), *c))))
            }
            Err(e) => Err((EventKind::Fail, describe(&e))),
        },
        // Lease operations are run by `super::leases`, never here.
        Input::Lease(..) => Err((
            EventKind::Fail,
            ErrorValue::new("not an operation of this workload"),
        )),
    };
    match completion {
        Ok(output) => rec.record(|i, t| Event::ok(i, t, name, output)),
        Err((kind, error)) => rec.record(|i, t| Event::error(i, t, name, kind, f, error)),
    }
}

/// A random operation over the workload's servers; `reader` clients mostly read.
pub fn random_input(rng: &mut StdRng, reader: bool) -> Input {
    let servers = servers();
    let (node, cores, _) = servers[rng.gen_range(0..servers.len())].clone();
    let roll = if reader {
        rng.gen_range(40..100)
    } else {
        rng.gen_range(0..100)
    };
    match roll {
        0..40 => Input::Allocate(AllocateInput {
            node,
            cores,
            request_id: Some(new_request_id().as_str().to_string()),
        }),
        40..55 => Input::release(node),
        // Readers release now and then, so their node's state changes under them too.
        55..85 => Input::check(node),
        _ => Input::Usage,
    }
}

/// The node an odd (pinned) client talks to: one of the three first nodes.
pub fn pinned_node(client: usize) -> u64 {
    (client / 2 % 3) as u64 + 1
}

/// Runs `concurrency` clients until `stop` is set. `endpoints` lists every node id a run may
/// ever use (fresh nodes join under membership changes), in id order from node 1.
pub async fn run_clients(
    rec: Recorder,
    endpoints: Vec<String>,
    concurrency: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    let tokens = TokenTable::default();
    for i in 0..concurrency {
        // Even clients follow the leader over every endpoint, as the client library is meant
        // to be used; odd clients are pinned to one node each, like an application configured
        // with a single server address. A node that wrongly believes it still leads can only
        // be caught answering stale reads by a client that keeps asking it.
        let mine = if i % 2 == 0 {
            endpoints.clone()
        } else {
            vec![endpoints[pinned_node(i) as usize - 1].clone()]
        };
        // A workload process both writes (a client's routes) and reads the usage (an
        // operator's): the admin token may do both.
        let client = client(&mine, i, Duration::from_secs(2))?.with_admin_token(ADMIN_TOKEN);
        let rec = rec.clone();
        let stop = stop.clone();
        let tokens = tokens.clone();
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        tasks.push(tokio::spawn(async move {
            let name = format!("c{i}");
            while !stop.load(Ordering::Relaxed) {
                let input = random_input(&mut rng, i % 2 == 1);
                operate(&rec, &name, &client, &tokens, input).await;
                // A short think time keeps the history checkable.
                tokio::time::sleep(Duration::from_millis(rng.gen_range(5..40))).await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// The final reads after every fault healed: process `final` reads the usage until one read
/// succeeds (or `within` passes).
pub async fn final_reads(
    rec: &Recorder,
    endpoints: &[String],
    within: Duration,
) -> anyhow::Result<bool> {
    let client = client(endpoints, 99, within)?.with_token(OPERATOR_TOKEN);
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let tokens = TokenTable::default();
        operate(rec, crate::history::FINAL, &client, &tokens, Input::Usage).await;
        let last_ok = rec
            .events()
            .iter()
            .rev()
            .find(|e| e.process == crate::history::FINAL)
            .is_some_and(|e| e.kind == EventKind::Ok);
        if last_ok {
            return Ok(true);
        }
    }
    Ok(false)
}
