//! `licd allocate`, `heartbeat`, `release` and `check`: what an application server does, from
//! the command line. Each defaults to this machine: its host name, its MAC, its cores.

use std::process::ExitCode;

use clap::Args;
use licd_raft::types::{Cores, LeaseTtl, LicenseId, MacAddr, NodeName, RequestId};

use super::common::{ClientOpts, default_node_name, mac_or_default, parse_cores};
use super::output::{Output, human_duration_ms};
use crate::api::{AllocateBody, AllocationBody, GrantBody, RenewBody};
use crate::client::{ClientError, new_request_id};
use crate::lease_token::LeaseToken;

/// Options of `licd allocate`.
#[derive(Debug, Args)]
pub struct AllocateArgs {
    /// The application server's name (default: this machine's host name).
    #[arg(long, value_name = "NAME", default_value_t = default_node_name())]
    pub node: NodeName,
    /// Its MAC address, aa:bb:cc:dd:ee:ff (default: this machine's first non-loopback MAC).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<MacAddr>,
    /// Its CPU cores (default: this machine's CPU count).
    #[arg(long, value_name = "N", value_parser = parse_cores)]
    pub cores: Option<Cores>,
    /// The license to allocate from; may be omitted when exactly one is installed.
    #[arg(long, value_name = "ID")]
    pub license: Option<LicenseId>,
    /// Lease duration in milliseconds, 1000 to 604800000 (default: the server's).
    #[arg(long, value_name = "MS", value_parser = parse_ttl)]
    pub ttl_ms: Option<u64>,
    /// Request id, to retry an allocation whose outcome is unknown (default: a fresh one).
    /// The retry is answered the same lease token.
    #[arg(long, value_name = "ID")]
    pub request_id: Option<RequestId>,
    /// The lease token of the allocation the node holds, to re-allocate it (other cores,
    /// ttl, license or MAC); it keeps the token.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "LICD_LEASE_TOKEN",
        hide_env_values = true
    )]
    pub lease_token: Option<LeaseToken>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Options of `licd heartbeat` and `licd release`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The application server's name (default: this machine's host name).
    #[arg(long, value_name = "NAME", default_value_t = default_node_name())]
    pub node: NodeName,
    /// The allocation's lease token, as `licd allocate` printed it.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "LICD_LEASE_TOKEN",
        hide_env_values = true
    )]
    pub lease_token: Option<LeaseToken>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Options of `licd check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The application server's name (default: this machine's host name).
    #[arg(long, value_name = "NAME", default_value_t = default_node_name())]
    pub node: NodeName,
    /// Also require the server to have this MAC address (its allocation's, and allowed).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<MacAddr>,
    #[command(flatten)]
    pub answer_keys: super::answer_key::AnswerKeyOpts,
    #[command(flatten)]
    pub client: ClientOpts,
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    let ms: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of milliseconds"))?;
    LeaseTtl::from_millis(ms)
        .map(LeaseTtl::as_millis)
        .map_err(|e| e.to_string())
}

fn print_grant(verb: &str, g: &GrantBody) {
    print_allocation(
        verb,
        &g.node,
        &g.allocation,
        g.allocated_cores,
        g.licensed_cores,
    );
    print_lease(
        g.allocation.lease_remaining_ms,
        g.allocation.lease_ttl.as_millis(),
        &g.node,
    );
    if g.replaced {
        println!("(this replaced the node's earlier allocation)");
    }
    println!("request id {} (log index {})", g.request_id, g.log.index);
    println!(
        "lease token {} (secret: heartbeat, release and re-allocate with --lease-token or \
         LICD_LEASE_TOKEN)",
        g.lease_token.reveal()
    );
}

fn print_renewal(r: &RenewBody) {
    let verb = "renewed the lease of";
    print_allocation(
        verb,
        &r.node,
        &r.allocation,
        r.allocated_cores,
        r.licensed_cores,
    );
    print_lease(
        r.lease_remaining_ms,
        r.allocation.lease_ttl.as_millis(),
        &r.node,
    );
    println!(
        "renewed by leader node {} (term {}) without a log write",
        r.leader_id, r.term
    );
}

/// The allocation and the license's usage, the first lines of a grant or a renewal.
fn print_allocation(
    verb: &str,
    node: &NodeName,
    a: &AllocationBody,
    allocated_cores: u64,
    licensed_cores: u32,
) {
    println!(
        "{verb} node {node}: {} cores (counts {}) under license {}, MAC {}",
        a.cores.get(),
        a.counted_cores,
        a.license,
        a.mac
    );
    println!(
        "license usage: {allocated_cores} of {licensed_cores} cores allocated, {} free",
        u64::from(licensed_cores).saturating_sub(allocated_cores)
    );
}

fn print_lease(remaining_ms: u64, ttl_ms: u64, node: &NodeName) {
    println!(
        "lease ends in {} unless renewed (ttl {}; renew with `licd heartbeat --node {node} \
         --lease-token TOKEN`)",
        human_duration_ms(remaining_ms),
        human_duration_ms(ttl_ms),
    );
}

/// `licd allocate`.
pub async fn allocate(a: AllocateArgs, out: Output) -> anyhow::Result<ExitCode> {
    let mac = mac_or_default(a.mac)?;
    let cores = a.cores.unwrap_or_else(super::common::default_cores);
    let client = a.client.client()?;
    let request_id = a.request_id.unwrap_or_else(new_request_id);
    let body = AllocateBody {
        license: a.license,
        mac,
        cores,
        ttl_ms: a.ttl_ms,
        request_id: None,
    };
    let grant = match &a.lease_token {
        Some(token) => {
            client
                .reallocate(&a.node, &body, &request_id, token)
                .await?
        }
        None => client.allocate(&a.node, &body, &request_id).await?,
    };
    out.emit(&grant, || print_grant("allocated", &grant))?;
    Ok(ExitCode::SUCCESS)
}

/// `licd heartbeat`.
pub async fn heartbeat(a: NodeArgs, out: Output) -> anyhow::Result<ExitCode> {
    let client = a.client.client()?;
    let renewal = client
        .heartbeat(&a.node, a.lease_token.as_ref(), &new_request_id())
        .await?;
    out.emit(&renewal, || print_renewal(&renewal))?;
    Ok(ExitCode::SUCCESS)
}

/// `licd release`.
pub async fn release(a: NodeArgs, out: Output) -> anyhow::Result<ExitCode> {
    let client = a.client.client()?;
    let body = client
        .release(&a.node, a.lease_token.as_ref(), &new_request_id())
        .await?;
    out.emit(&body, || match &body.freed {
        Some(f) => println!(
            "released node {}: freed {} counted cores of license {}",
            body.node, f.counted_cores, f.license
        ),
        None => println!("node {} held no allocation; nothing to release", body.node),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `licd check`'s exit code when the cluster answered that the server is not licensed.
pub const CHECK_NOT_LICENSED: u8 = 1;
/// `licd check`'s exit code when the input was refused (bad node name, MAC, endpoints).
pub const CHECK_BAD_INPUT: u8 = 2;
/// `licd check`'s exit code when no license server answered in time, or an answer was not
/// signed by the `--answer-key` given.
pub const CHECK_UNREACHABLE: u8 = 3;

/// `licd check`: exits with 0 only when the server is licensed, [`CHECK_NOT_LICENSED`] when
/// the cluster says it is not, [`CHECK_UNREACHABLE`] when no server answered, and
/// [`CHECK_BAD_INPUT`] for input the cluster or the command refused.
pub async fn check(a: CheckArgs, out: Output) -> anyhow::Result<ExitCode> {
    let keys = a
        .answer_keys
        .keys()
        .map_err(|e| exit_with(CHECK_BAD_INPUT, &e))?;
    let client = a
        .client
        .client()
        .map_err(|e| exit_with(CHECK_BAD_INPUT, &e))?
        .with_answer_keys(keys);
    let body = match client.check(&a.node, a.mac).await {
        Ok(body) => body,
        Err(e) => {
            let code = match e {
                // An answer that is not the cluster's tells nothing: as if none came.
                ClientError::Unavailable { .. } | ClientError::BadSignature(_) => CHECK_UNREACHABLE,
                _ => CHECK_BAD_INPUT,
            };
            let e = anyhow::Error::new(e);
            if out.json {
                out.print_json(&super::output::error_body(&e))?;
            }
            return Err(exit_with(code, &e));
        }
    };
    let c = &body.check;
    out.emit(&body, || {
        println!("{}: {}", c.code.as_str(), c.message);
        println!("node: {}", c.node);
        if let Some(l) = &c.license {
            println!("license: {} ({}), serial {}", l.id, l.customer, l.serial);
        }
        if let (Some(counted), Some(allocated), Some(licensed)) =
            (c.counted_cores, c.allocated_cores, c.licensed_cores)
        {
            println!(
                "cores: this node counts {counted}; {allocated} of {licensed} allocated in all"
            );
        }
        if let Some(left) = c.lease_remaining_ms {
            println!("lease ends in {}", human_duration_ms(left));
        }
        println!(
            "answered by leader node {} (term {})",
            body.leader_id, body.term
        );
        match (&body.signature, client.verifies_answers()) {
            (Some(s), true) => println!("signature: verified (answer key {})", s.key_id),
            (Some(s), false) => println!(
                "signature: by answer key {}, not verified (pass --answer-key)",
                s.key_id
            ),
            (None, _) => println!("signature: none (the node has no answer-signing key)"),
        }
    })?;
    if c.valid && c.code == crate::api::ErrorCode::Valid {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(CHECK_NOT_LICENSED))
    }
}

/// An error that exits with `code`.
fn exit_with(code: u8, e: &anyhow::Error) -> anyhow::Error {
    super::output::Exit {
        message: super::output::describe_error(e),
        code,
    }
    .into()
}
