//! What `licd dev` set up: the summary, printed as JSON with `--json`, or as text with the
//! commands to try.

use std::path::{Path, PathBuf};

use licd_raft::License;
use licd_raft::RaftNodeId;
use licd_raft::types::Cores;
use serde::Serialize;

use super::prepare::Prepared;
use super::{DEV_LEASE_MS, agent_status_addr};
use crate::api::GrantBody;
use crate::cli::output::human_duration_ms;

/// What `licd dev` set up, printed as JSON with `--json`.
#[derive(Debug, Serialize)]
pub(super) struct Summary {
    pub(super) dir: PathBuf,
    pub(super) endpoints: Vec<String>,
    /// The CA the nodes' certificates chain to; `None` with `--plain-http`.
    pub(super) ca_file: Option<PathBuf>,
    pub(super) nodes: Vec<NodeSummary>,
    pub(super) leader_id: Option<RaftNodeId>,
    pub(super) admin_token_file: PathBuf,
    pub(super) operator_token_file: PathBuf,
    pub(super) client_token_file: PathBuf,
    pub(super) cluster_secret_file: PathBuf,
    pub(super) answer_key_file: PathBuf,
    pub(super) answer_public_key: String,
    pub(super) vendor_key_file: PathBuf,
    pub(super) vendor_public_key: String,
    pub(super) license_file: PathBuf,
    pub(super) license: License,
    pub(super) mac_detected: bool,
    pub(super) allocation: GrantBody,
}

#[derive(Debug, Serialize)]
pub(super) struct NodeSummary {
    pub(super) id: RaftNodeId,
    pub(super) addr: String,
    pub(super) pid: u32,
    pub(super) config: PathBuf,
    pub(super) log: PathBuf,
}

fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub(super) fn print_summary(s: &Summary, p: &Prepared, no_wait: bool) {
    let exe = std::env::current_exe()
        .map(|e| shell_quote(&e))
        .unwrap_or_else(|_| "licd".into());
    println!();
    println!(
        "licd dev: a three-node licd cluster is running in {}",
        s.dir.display()
    );
    println!();
    for n in &s.nodes {
        println!(
            "  node {}  {}://{}  pid {}{}  log {}",
            n.id,
            p.scheme(),
            n.addr,
            n.pid,
            if Some(n.id) == s.leader_id {
                "  (leader)"
            } else {
                "          "
            },
            n.log.display()
        );
    }
    println!();
    println!("vendor public key:  {}", s.vendor_public_key);
    println!("vendor signing key: {}", s.vendor_key_file.display());
    println!("answer public key:  {}", s.answer_public_key);
    println!(
        "answer signing key: {} (every node signs check answers with it)",
        s.answer_key_file.display()
    );
    let macs: Vec<String> = s
        .license
        .allowed_macs
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "demo license:       {} ({} cores, at least {} per server, MACs {}), installed from {}",
        s.license.id,
        s.license.max_cores,
        s.license.min_cores_per_node,
        macs.join(", "),
        s.license_file.display()
    );
    if !s.mac_detected {
        println!(
            "note: no MAC address was found on this machine; the demo uses {} instead \
             (pass --mac {} to allocate and check)",
            p.mac, p.mac
        );
    }
    let g = &s.allocation;
    println!(
        "allocated:          {} cores (counting {}) for node {} (MAC {}); {} of {} cores in use",
        g.allocation.cores.get(),
        g.allocation.counted_cores,
        g.node,
        g.allocation.mac,
        g.allocated_cores,
        g.licensed_cores
    );
    println!("admin token:        {}", s.admin_token_file.display());
    println!(
        "operator token:     {} (read-only)",
        s.operator_token_file.display()
    );
    println!(
        "client token:       {} (allocate, heartbeat, release, check; the agent uses it)",
        s.client_token_file.display()
    );
    if let Some(first) = s.endpoints.first() {
        let warning = if s.ca_file.is_some() {
            "; a browser warns about the throwaway CA"
        } else {
            ""
        };
        println!("dashboard:          {first}/ui, on any node (paste the operator token{warning})");
    }
    match &s.ca_file {
        Some(ca) => println!(
            "TLS CA:             {} (throwaway; --plain-http runs without TLS)",
            ca.display()
        ),
        None => println!("TLS:                off (--plain-http): plain HTTP on loopback"),
    }
    if no_wait {
        println!();
        println!("--no-wait: stopping the cluster now.");
        return;
    }
    let leader_pid = s
        .nodes
        .iter()
        .find(|n| Some(n.id) == s.leader_id)
        .map_or_else(|| "<pid>".to_string(), |n| n.pid.to_string());
    let mac_flag = if s.mac_detected {
        String::new()
    } else {
        format!(" --mac {}", p.mac)
    };
    let big = s.license.max_cores.min(Cores::MAX);
    println!();
    println!("Try it, in another terminal:");
    println!();
    println!("  export LICD_ENDPOINTS={}", s.endpoints.join(","));
    if let Some(ca) = &s.ca_file {
        println!("  export LICD_CA_FILE={}", shell_quote(ca));
    }
    println!(
        "  export LICD_ADMIN_TOKEN=\"$(cat {})\"",
        shell_quote(&s.admin_token_file)
    );
    println!("  alias licd={exe}    # unless licd is on your PATH");
    println!();
    println!(
        "The admin token may do everything. An application server gets the client token \
         (LICD_TOKEN=\"$(cat {})\" licd check), a monitoring host the operator token \
         (LICD_TOKEN=\"$(cat {})\" licd cluster status).",
        shell_quote(&s.client_token_file),
        shell_quote(&s.operator_token_file)
    );
    println!();
    let try_it = [
        (
            format!("licd check{mac_flag}"),
            "is this machine licensed? exit code 0 = yes".to_string(),
        ),
        (
            format!("licd check --answer-key {}{mac_flag}", s.answer_public_key),
            "the same, verifying the cluster's signature (3 if forged)".to_string(),
        ),
        (
            "licd license list".into(),
            "licenses, usage and allocated servers".into(),
        ),
        (
            "licd cluster status".into(),
            "members, leader, replication".into(),
        ),
        (
            format!("licd allocate --node big-server --mac 02:00:00:00:00:02 --cores {big}"),
            "CPU_LIMIT_EXHAUSTED".into(),
        ),
        (
            "licd allocate --node stranger --mac 02:00:00:00:00:99 --cores 4".into(),
            "INVALID_MULTI_SERVER_LICENSE".into(),
        ),
    ];
    print_commands(&try_it);
    println!();
    println!("Fail over: kill the leader, then check again; another node takes over at once:");
    println!();
    let pids = s
        .nodes
        .iter()
        .map(|n| format!("node {} = {}", n.id, n.pid))
        .collect::<Vec<_>>()
        .join(", ");
    print_commands(&[
        (
            format!("kill {leader_pid}"),
            format!("the leader, node {}; pids: {pids}", or_unknown(s.leader_id)),
        ),
        (
            format!("licd check{mac_flag}"),
            "still VALID, answered by the new leader".into(),
        ),
        (
            "licd cluster status".into(),
            "WARNING: redundancy lost (exit code 2); licd dev restarts the node after 5 s".into(),
        ),
    ]);
    println!();
    let agent = agent_status_addr(p.base_port);
    // The command shown must work as printed: name the address unless it is the default.
    let agent_command = if agent.to_string() == crate::cli::agent::DEFAULT_STATUS_ADDR {
        "licd agent status".to_string()
    } else {
        format!("licd agent status --addr {agent}")
    };
    println!(
        "licd dev runs an agent for this machine: it heartbeats every {}, believes only answers \
         signed with the answer key, and `{agent_command}` (or GET http://{agent}/status) tells \
         whether this server is licensed. Press Ctrl-C to stop the cluster.",
        human_duration_ms(DEV_LEASE_MS / 3),
    );
}

/// Prints commands with their comments aligned.
fn print_commands(lines: &[(String, String)]) {
    let width = lines.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, comment) in lines {
        println!("  {command:<width$}   # {comment}");
    }
}

fn or_unknown(id: Option<RaftNodeId>) -> String {
    id.map_or_else(|| "?".into(), |i| i.to_string())
}
