//! `licd cluster`: initialize the cluster, change its membership, show its status.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use licd_raft::RaftNodeId;

use super::common::ClientOpts;
use super::output::{Output, human_duration_ms, or_dash, table};
use crate::api::{InitBody, MembershipBody, StatusBody};

/// Cluster membership and status (admin token needed).
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The `cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Initialize a new cluster with its first voters (POST /admin/init).
    ///
    /// Without --member the node asked (the first endpoint) initializes a cluster of itself
    /// alone; add the others with `cluster add` and `cluster promote`. With members, every
    /// member must be running, and the first endpoint must be one of them.
    Init(InitArgs),
    /// Add a node as a learner; answers once it has caught up with the leader's log.
    Add(AddArgs),
    /// Promote a learner to voter.
    Promote(MemberArgs),
    /// Remove a member, voter or learner, from the cluster.
    Remove(MemberArgs),
    /// Show the members with their role and replication progress, and any warning.
    ///
    /// Exits with 0 when all is well and with 2 when the cluster reports warnings (such as a
    /// lost redundancy), so that monitoring scripts can use it.
    Status(StatusArgs),
    /// Set the complete voter set (PUT /admin/voters): voters left out leave the cluster.
    Voters(VotersArgs),
    /// Make the first endpoint's node campaign for leadership (POST /admin/elect), to move
    /// the leader off a node before maintaining it. Never fails over to another node.
    Elect(StatusArgs),
    /// Build a snapshot on the leader now (POST /admin/snapshot), so the log behind it can
    /// be purged.
    Snapshot(StatusArgs),
    /// Release an application server's cores as an administrator (DELETE
    /// /admin/nodes/{node}/allocation), say for a server that was retired without stopping
    /// its agent.
    ForceRelease(ForceReleaseArgs),
}

/// Options of `cluster voters`.
#[derive(Debug, Args)]
pub struct VotersArgs {
    /// Every voter after the change, by Raft id.
    #[arg(required = true, num_args = 1.., value_parser = clap::value_parser!(u64).range(1..))]
    pub ids: Vec<RaftNodeId>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Options of `cluster force-release`.
#[derive(Debug, Args)]
pub struct ForceReleaseArgs {
    /// The application server.
    #[arg(long)]
    pub node: licd_raft::types::NodeName,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Options of `cluster init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// An initial voter, `ID=HOST:PORT` (repeat for each; include the node asked).
    #[arg(long = "member", value_name = "ID=HOST:PORT", value_parser = parse_member)]
    pub members: Vec<(RaftNodeId, String)>,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Options of `cluster add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The new member's Raft id (1 or more).
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    pub id: RaftNodeId,
    /// The new member's HTTP address, `host:port`, as the other nodes reach it.
    #[arg(value_name = "HOST:PORT")]
    pub addr: String,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Options of `cluster promote` and `cluster remove`.
#[derive(Debug, Args)]
pub struct MemberArgs {
    /// The member's Raft id.
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    pub id: RaftNodeId,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Options of `cluster status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientOpts,
}

pub(crate) fn parse_member(s: &str) -> Result<(RaftNodeId, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=HOST:PORT"))?;
    let id: RaftNodeId = id
        .trim()
        .parse()
        .map_err(|_| format!("{id:?} is not a member id (a number, 1 or more)"))?;
    if id == 0 {
        return Err("member ids start at 1".into());
    }
    let addr = addr.trim();
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(format!("{addr:?} is not HOST:PORT"));
    }
    Ok((id, addr.to_string()))
}

/// Runs a `cluster` subcommand.
pub async fn run(args: ClusterArgs, out: Output) -> anyhow::Result<ExitCode> {
    match args.command {
        ClusterCommand::Init(a) => {
            let mut members = BTreeMap::new();
            for (id, addr) in a.members {
                if members.insert(id, addr).is_some() {
                    bail!("member {id} is given twice");
                }
            }
            // The client asks the first endpoint only: `init` never fails over.
            let client = a.client.admin_client()?;
            let body = client.init(&InitBody { members }).await?;
            print_membership(out, "cluster initialized", &body)?;
        }
        ClusterCommand::Add(a) => {
            let client = a.client.admin_client()?;
            let body = client.add_learner(a.id, &a.addr).await?;
            print_membership(
                out,
                &format!("node {} added as a learner and caught up", a.id),
                &body,
            )?;
            if !out.json {
                println!("next: licd cluster promote {}", a.id);
            }
        }
        ClusterCommand::Promote(a) => {
            let client = a.client.admin_client()?;
            let body = client.promote(a.id).await?;
            print_membership(out, &format!("node {} is now a voter", a.id), &body)?;
        }
        ClusterCommand::Remove(a) => {
            let client = a.client.admin_client()?;
            let body = client.remove_member(a.id).await?;
            print_membership(out, &format!("node {} removed", a.id), &body)?;
        }
        ClusterCommand::Voters(a) => {
            let client = a.client.admin_client()?;
            let body = client.set_voters(a.ids).await?;
            print_membership(out, "voters set", &body)?;
        }
        ClusterCommand::Elect(a) => {
            let client = a.client.admin_client()?;
            let status = client.elect().await?;
            out.emit(&status, || {
                println!(
                    "node {} campaigned; the leader is now {}",
                    status.node_id,
                    status
                        .leader_id
                        .map_or_else(|| "not known yet".to_string(), |l| format!("node {l}"))
                );
            })?;
        }
        ClusterCommand::Snapshot(a) => {
            let client = a.client.admin_client()?;
            let body = client.snapshot().await?;
            out.emit(&body, || match body.snapshot_index {
                Some(i) => println!("snapshot built at log index {i}"),
                None => println!("snapshot requested; not built yet (see `licd cluster status`)"),
            })?;
        }
        ClusterCommand::ForceRelease(a) => {
            let client = a.client.admin_client()?;
            let body = client
                .force_release(&a.node, &crate::client::new_request_id())
                .await?;
            out.emit(&body, || {
                if body.released {
                    println!("released node {}'s cores", body.node);
                } else {
                    println!("node {} held no cores", body.node);
                }
            })?;
        }
        ClusterCommand::Status(a) => {
            let client = a.client.reader_client()?;
            let status = client.status().await?;
            out.emit(&status, || print_status(&status))?;
            if !status.warnings.is_empty() {
                if out.json {
                    for w in &status.warnings {
                        eprintln!("WARNING: {w}");
                    }
                }
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_membership(out: Output, title: &str, body: &MembershipBody) -> anyhow::Result<()> {
    out.emit(body, || {
        println!("{title}");
        if body.nodes.is_empty() {
            println!("(the new membership is not visible yet; see `licd cluster status`)");
            return;
        }
        let rows: Vec<Vec<String>> = body
            .nodes
            .iter()
            .map(|(id, addr)| {
                let role = if body.voters.contains(id) {
                    "voter"
                } else if body.learners.contains(id) {
                    "learner"
                } else {
                    "-"
                };
                vec![id.to_string(), addr.clone(), role.to_string()]
            })
            .collect();
        print!("{}", table(&["ID", "ADDRESS", "ROLE"], &rows));
    })
}

/// Prints a status in human form.
pub fn print_status(status: &StatusBody) {
    println!(
        "answered by node {} ({}), term {}, leader: {}",
        status.node_id,
        status.state,
        status.term,
        status
            .leader_id
            .map_or_else(|| "none known".to_string(), |l| format!("node {l}"))
    );
    println!(
        "log: last index {}, applied {}, snapshot {}",
        or_dash(status.last_log_index),
        or_dash(status.last_applied_index),
        or_dash(status.snapshot_index)
    );
    let rows: Vec<Vec<String>> = status
        .members
        .iter()
        .map(|m| {
            let role = if Some(m.id) == status.leader_id {
                format!("{} (leader)", m.role)
            } else {
                m.role.to_string()
            };
            vec![
                m.id.to_string(),
                m.addr.clone(),
                role,
                or_dash(m.matched_index),
                or_dash(m.lag),
                m.last_contact_ms.map_or_else(
                    || "-".to_string(),
                    |ms| format!("{} ago", human_duration_ms(ms)),
                ),
                match m.healthy {
                    Some(true) => "yes".to_string(),
                    Some(false) => "NO".to_string(),
                    None => "-".to_string(),
                },
                m.clock_skew_ms.map_or_else(
                    || "-".to_string(),
                    |ms| {
                        let sign = if ms < 0 { "-" } else { "+" };
                        format!("{sign}{}", human_duration_ms(ms.unsigned_abs()))
                    },
                ),
            ]
        })
        .collect();
    println!();
    if status.members.is_empty() {
        println!(
            "no members: this node is not part of an initialized cluster (see `licd cluster init`)"
        );
    } else {
        print!(
            "{}",
            table(
                &[
                    "ID",
                    "ADDRESS",
                    "ROLE",
                    "MATCHED",
                    "LAG",
                    "LAST CONTACT",
                    "HEALTHY",
                    "CLOCK SKEW"
                ],
                &rows
            )
        );
    }
    if status.members.iter().all(|m| m.healthy.is_none()) && !status.members.is_empty() {
        println!("(replication progress is known only to the leader)");
    }
    if !status.warnings.is_empty() {
        println!();
        for w in &status.warnings {
            println!("!!! WARNING: {w}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_parsed() {
        assert_eq!(
            parse_member("1=127.0.0.1:7101").unwrap(),
            (1, "127.0.0.1:7101".to_string())
        );
        assert!(parse_member("0=a:1").is_err());
        assert!(parse_member("x=a:1").is_err());
        assert!(parse_member("1=a").is_err());
        assert!(parse_member("1").is_err());
    }
}
