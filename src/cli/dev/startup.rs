//! Bringing the dev cluster up: starting the nodes, waiting until they answer, initializing
//! the cluster, waiting for a leader, installing the demo license and allocating this
//! machine's cores.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use licd_raft::RaftNodeId;
use licd_raft::types::NodeName;

use super::DEV_LEASE_MS;
use super::children::{Children, ensure_running, log_tail, spawn_nodes};
use super::prepare::Prepared;
use crate::api::{AllocateBody, GrantBody, InitBody};
use crate::cli::output::{describe_client_error, human_duration_ms};
use crate::client::{Client, ClientError, RetryPolicy, new_request_id};

/// How long the cluster gets to come up (each step).
const STEP_DEADLINE: Duration = Duration::from_secs(30);

/// Waits until every node answers `/healthz`.
async fn wait_healthy(p: &Prepared, children: &mut Children) -> anyhow::Result<()> {
    let outgoing = match &p.ca_file {
        Some(ca) => crate::tls::Outgoing::https(crate::tls::client_config(ca, None)?),
        None => crate::tls::Outgoing::plain(),
    };
    let scheme = p.scheme();
    let http = outgoing
        .apply(reqwest::Client::builder())
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .build()
        .context("cannot build an HTTP client")?;
    let addrs: Vec<(RaftNodeId, String, PathBuf)> = children
        .nodes
        .iter()
        .map(|n| (n.id, n.addr.clone(), n.log.clone()))
        .collect();
    let started = Instant::now();
    for (id, addr, log) in addrs {
        loop {
            ensure_running(children, "startup")?;
            let ok = http
                .get(format!("{scheme}://{addr}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            if started.elapsed() > STEP_DEADLINE {
                bail!(
                    "node {id} did not answer {scheme}://{addr}/healthz within {}; the end of {}:\n{}",
                    human_duration_ms(u64::try_from(STEP_DEADLINE.as_millis()).unwrap_or(0)),
                    log.display(),
                    log_tail(&log, 15)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn client(p: &Prepared, deadline: Duration) -> Result<Client, ClientError> {
    let policy = RetryPolicy {
        deadline,
        attempt_timeout: Duration::from_secs(3).min(deadline),
        ..RetryPolicy::default()
    };
    let client = Client::with_policy(&p.endpoints(), policy)?.with_tls(&p.client_tls())?;
    Ok(client.with_admin_token(&p.admin_token))
}

/// Describes a client error for the dev steps.
fn step_error(step: &str, e: &ClientError) -> anyhow::Error {
    anyhow::anyhow!("{step}: {}", describe_client_error(e))
}

/// Waits until a leader is known and every member is in the membership.
pub(crate) async fn wait_leader(
    children: &mut Children,
    admin: &Client,
) -> anyhow::Result<RaftNodeId> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    loop {
        ensure_running(children, "the leader election")?;
        match admin.status().await {
            Ok(s) if s.state == crate::node::status::Role::Leader && s.members.len() == 3 => {
                if let Some(leader) = s.leader_id {
                    return Ok(leader);
                }
            }
            Ok(s) => {
                last = format!(
                    "node {} is {} with {} members and leader {:?}",
                    s.node_id,
                    s.state,
                    s.members.len(),
                    s.leader_id
                );
            }
            Err(e) => last = describe_client_error(&e),
        }
        if started.elapsed() > STEP_DEADLINE {
            bail!("no leader was elected within 30 s; last status: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Brings the cluster up and licenses this machine.
pub(super) async fn bring_up(
    p: &Prepared,
    children: &mut Children,
    node: &NodeName,
) -> anyhow::Result<(RaftNodeId, GrantBody)> {
    let (leader, admin) = start_cluster(p, children).await?;
    let body = AllocateBody {
        license: Some(p.license.id.clone()),
        mac: p.mac,
        cores: p.cores,
        ttl_ms: Some(DEV_LEASE_MS),
        request_id: None,
    };
    let grant = admin
        .allocate(node, &body, &new_request_id())
        .await
        .map_err(|e| step_error("allocating this machine's cores", &e))?;
    // The leader may have moved; ask again for the printout.
    let leader = admin
        .status()
        .await
        .ok()
        .and_then(|s| s.leader_id)
        .unwrap_or(leader);
    Ok((leader, grant))
}

/// Starts the three nodes of `p`, initializes the cluster, waits for a leader and installs
/// the demo license. Returns the leader and an admin client of the cluster.
pub(crate) async fn start_cluster(
    p: &Prepared,
    children: &mut Children,
) -> anyhow::Result<(RaftNodeId, Client)> {
    spawn_nodes(p, children)?;
    wait_healthy(p, children).await?;

    let members: BTreeMap<RaftNodeId, String> = children
        .nodes
        .iter()
        .map(|n| (n.id, n.addr.clone()))
        .collect();
    // Node 1 is asked to initialize (`init` never fails over to another node).
    let first = client(p, Duration::from_secs(10)).map_err(|e| step_error("client", &e))?;
    first
        .init(&InitBody { members })
        .await
        .map_err(|e| step_error("initializing the cluster", &e))?;

    let admin = client(p, Duration::from_secs(5)).map_err(|e| step_error("client", &e))?;
    let leader = wait_leader(children, &admin).await?;

    let admin = client(p, Duration::from_secs(15)).map_err(|e| step_error("client", &e))?;
    admin
        .install_license(&p.license_text, &new_request_id())
        .await
        .map_err(|e| step_error("installing the demo license", &e))?;
    ensure_running(children, "the license installation")?;

    Ok((leader, admin))
}
