//! `licd snapshot`: save a consistent backup of a running cluster, check one, and restore one
//! into the data directory of a node of a new cluster.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use licd_raft::RaftNodeId;
use serde::Serialize;

use super::common::ClientOpts;
use super::output::Output;
use crate::backup::Backup;
use crate::cluster_id::ClusterId;

/// Backups: save one from a running cluster, check one, restore one as a new cluster.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

/// The `snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a consistent snapshot of the cluster to FILE (GET /admin/snapshot, admin token).
    ///
    /// The leader confirms its leadership and snapshots a state that holds every write
    /// acknowledged before the command; the file carries a SHA-256 checksum, checked here
    /// before it is written. The cluster keeps serving meanwhile.
    Save(SaveArgs),
    /// Check a backup file and print what it holds, without changing anything.
    Inspect(InspectArgs),
    /// Write a fresh data directory for one node of a NEW cluster from a backup file.
    ///
    /// The new cluster gets a new cluster id, so its nodes never take Raft messages from the
    /// cluster the backup came from, nor that cluster's from them. Run it once per member,
    /// each with its own --node-id and the same --member list: the first run prints the new
    /// cluster id; pass it to the others with --cluster-id (or start the others with empty
    /// data directories: they join from the restored node). Then start the nodes with
    /// `licd serve` (same node ids and addresses); do not run `licd cluster init`.
    Restore(RestoreArgs),
}

/// Options of `snapshot save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Where to write the backup file.
    pub file: PathBuf,
    /// Replace FILE when it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Options of `snapshot inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The backup file.
    pub file: PathBuf,
}

/// Options of `snapshot restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file.
    pub file: PathBuf,
    /// The data directory to write (absent or empty): the node's `data_dir`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// This node's id in the new cluster (its `node_id`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: RaftNodeId,
    /// A voter of the new cluster, `ID=HOST:PORT` (repeat for each; include this node).
    #[arg(long = "member", value_name = "ID=HOST:PORT", value_parser = super::cluster::parse_member, required = true)]
    pub members: Vec<(RaftNodeId, String)>,
    /// The new cluster's id, as the first restore of this cluster printed it; without it a
    /// new one is generated.
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<ClusterId>,
}

/// What `snapshot save` and `inspect` print with `--json`.
#[derive(Debug, Serialize)]
struct SummaryBody {
    file: String,
    bytes: u64,
    cluster_id: Option<String>,
    taken_by: RaftNodeId,
    taken_at_ms: u64,
    last_log_index: u64,
    last_log_term: u64,
    members: BTreeMap<RaftNodeId, String>,
    licenses: usize,
    allocations: usize,
}

/// What `snapshot restore` prints with `--json`.
#[derive(Debug, Serialize)]
struct RestoredBody {
    data_dir: String,
    node_id: RaftNodeId,
    cluster_id: String,
    previous_cluster_id: Option<String>,
    last_log_index: u64,
    members: BTreeMap<RaftNodeId, String>,
    licenses: usize,
    allocations: usize,
}

/// Runs a `snapshot` subcommand.
pub async fn run(args: SnapshotArgs, out: Output) -> anyhow::Result<ExitCode> {
    match args.command {
        SnapshotCommand::Save(a) => save(a, out).await,
        SnapshotCommand::Inspect(a) => {
            let bytes = read_file(&a.file)?;
            let (_, summary) = summarize(&a.file, &bytes)?;
            out.emit(&summary, || print_summary("backup file", &summary))?;
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCommand::Restore(a) => restore(a, out),
    }
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Checks a backup file's bytes (layout, checksum, format, content) and describes them.
fn summarize(path: &Path, bytes: &[u8]) -> anyhow::Result<(Backup, SummaryBody)> {
    let what = || format!("{} is not a usable backup", path.display());
    let backup = Backup::from_file(bytes).with_context(what)?;
    let (_, restored) =
        licd_storage::restore::inspect(&backup.data, backup.last_log_id()).with_context(what)?;
    let summary = SummaryBody {
        file: path.display().to_string(),
        bytes: bytes.len() as u64,
        cluster_id: backup.cluster_id.clone(),
        taken_by: backup.taken_by,
        taken_at_ms: backup.taken_at_ms,
        last_log_index: restored.last_log_id.index,
        last_log_term: restored.last_log_id.leader_id.term,
        members: backup
            .meta
            .last_membership
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect(),
        licenses: restored.licenses,
        allocations: restored.allocations,
    };
    Ok((backup, summary))
}

fn print_summary(title: &str, s: &SummaryBody) {
    println!("{title} {} ({} bytes, checksum verified)", s.file, s.bytes);
    println!(
        "cluster {}, taken by node {} at {}",
        s.cluster_id.as_deref().unwrap_or("(no cluster id)"),
        s.taken_by,
        super::output::format_time(licd_raft::types::Timestamp(s.taken_at_ms))
    );
    println!(
        "state up to log index {} (term {}): {} licenses, {} allocations",
        s.last_log_index, s.last_log_term, s.licenses, s.allocations
    );
    let members: Vec<String> = s
        .members
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect();
    println!("members then: {}", members.join(" "));
}

async fn save(a: SaveArgs, out: Output) -> anyhow::Result<ExitCode> {
    if a.file.exists() && !a.force {
        bail!(
            "{} exists: pass --force to replace it, or choose another file",
            a.file.display()
        );
    }
    let client = a.client.admin_client()?;
    let bytes = client.download_snapshot().await?;
    // Checked before it is written: a file that would not restore is not saved.
    let (_, summary) = summarize(&a.file, &bytes).context("the cluster sent a broken backup")?;
    write_atomically(&a.file, &bytes)?;
    out.emit(&summary, || print_summary("saved", &summary))?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`,
/// so `path` is never a partial backup.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let mut partial = name.to_os_string();
    partial.push(".partial");
    let tmp = path.with_file_name(partial);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

fn restore(a: RestoreArgs, out: Output) -> anyhow::Result<ExitCode> {
    let mut members = BTreeMap::new();
    for (id, addr) in a.members {
        if members.insert(id, addr).is_some() {
            bail!("member {id} is given twice");
        }
    }
    let bytes = read_file(&a.file)?;
    let (backup, _) = summarize(&a.file, &bytes)?;
    let cluster_id = a.cluster_id.unwrap_or_else(ClusterId::generate);
    if backup.cluster_id.as_deref() == Some(cluster_id.as_str()) {
        bail!(
            "--cluster-id {cluster_id} is the id of the cluster the backup was taken from: a \
             restore starts a new cluster; give the id the first restore printed, or none"
        );
    }
    let plan = licd_storage::restore::RestorePlan {
        data: &backup.data,
        last_log_id: backup.last_log_id(),
        node_id: a.node_id,
        members: members.clone(),
        cluster_id: cluster_id.as_str(),
    };
    let restored = licd_storage::restore::restore(&a.data_dir, &plan)
        .with_context(|| format!("cannot restore into {}", a.data_dir.display()))?;
    let body = RestoredBody {
        data_dir: a.data_dir.display().to_string(),
        node_id: a.node_id,
        cluster_id: cluster_id.to_string(),
        previous_cluster_id: backup.cluster_id.clone(),
        last_log_index: restored.last_log_id.index,
        members,
        licenses: restored.licenses,
        allocations: restored.allocations,
    };
    out.emit(&body, || {
        println!(
            "restored the state up to log index {} ({} licenses, {} allocations) into {} as \
             node {} of the new cluster {}",
            body.last_log_index,
            body.licenses,
            body.allocations,
            body.data_dir,
            body.node_id,
            body.cluster_id
        );
        let others: Vec<String> = body
            .members
            .keys()
            .filter(|id| **id != body.node_id)
            .map(u64::to_string)
            .collect();
        if !others.is_empty() {
            println!(
                "next: restore node(s) {} with --cluster-id {} (or give them empty data \
                 directories), then start every node with `licd serve`",
                others.join(", "),
                body.cluster_id
            );
        } else {
            println!("next: start the node with `licd serve`");
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
