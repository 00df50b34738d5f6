//! The `licd` command line: `serve` runs a node; the other commands talk to a cluster through
//! the [`crate::client`] library. Every command has `--help`; errors print a readable message
//! and exit non-zero.

pub mod agent;
pub mod alloc;
pub mod answer_key;
pub mod bench;
pub mod cluster;
pub mod common;
pub mod dev;
pub mod docs;
pub mod events;
pub mod license;
pub mod notify;
pub mod output;
pub mod serve;
pub mod snapshot;
pub mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::Output;

/// licd: a highly available license server for software licensed by CPU cores.
///
/// Start with `licd dev`: it runs a three-node cluster on this machine with a demo license.
#[derive(Debug, Parser)]
#[command(name = "licd", version, about, long_about = None)]
pub struct Cli {
    /// Print the raw JSON answer instead of human text (errors too, as {"code", "message"}).
    #[arg(long, global = true)]
    pub json: bool,
    /// How `serve` and `agent` write their log on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "LICD_LOG_FORMAT"
    )]
    pub log_format: crate::logging::LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one licd node.
    Serve(serve::ServeArgs),
    /// Run a three-node cluster on this machine with a demo license, for trying licd out.
    Dev(dev::DevArgs),
    /// Measure a licd cluster on this machine (and etcd beside it with --vs-etcd).
    Bench(bench::BenchArgs),
    /// Initialize the cluster, change its membership, show its status.
    Cluster(cluster::ClusterArgs),
    /// Backups: save a consistent snapshot of the cluster, restore one as a new cluster.
    Snapshot(snapshot::SnapshotArgs),
    /// Vendor keys, license files, and the licenses installed in the cluster.
    License(license::LicenseArgs),
    /// Allocate cores for an application server (this machine by default).
    Allocate(alloc::AllocateArgs),
    /// Renew an application server's lease.
    Heartbeat(alloc::NodeArgs),
    /// Release an application server's cores.
    Release(alloc::NodeArgs),
    /// Check whether an application server is licensed: exit code 0 when it is, 1 when the
    /// cluster says it is not, 2 for bad input, 3 when no license server answered (or, with
    /// --answer-key, none answered with a valid signature).
    Check(alloc::CheckArgs),
    /// The cluster's usage history: allocations, refusals, releases, licenses, membership
    /// (`--follow` keeps printing new events).
    Events(events::EventsArgs),
    /// Per license per day: peak and average cores in use, peak servers, refusals by code.
    Report(events::ReportArgs),
    /// Run the agent on an application server, or ask it (`licd agent status`).
    Agent(agent::AgentArgs),
    /// The cluster's answer-signing key: generate one, print its public key.
    AnswerKey(answer_key::AnswerKeyArgs),
    /// Bearer tokens: `licd token new --role client` prints one and its configuration entry.
    Token(token::TokenArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(docs::CompletionsArgs),
    /// Write man pages for licd and each subcommand into a directory.
    Man(docs::ManArgs),
    /// Print the HTTP API's OpenAPI 3.1 contract (docs/openapi.json) on stdout.
    Openapi,
}

/// Parses the command line, runs the command, and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = LOG_FORMAT.set(cli.log_format);
    let out = Output { json: cli.json };
    let is_serve = matches!(cli.command, Command::Serve(_))
        || matches!(&cli.command, Command::Agent(a) if a.command.is_none());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Dev(args) => dev::run(args, out).await,
            Command::Bench(args) => bench::run(args, out).await,
            Command::Cluster(args) => cluster::run(args, out).await,
            Command::Snapshot(args) => snapshot::run(args, out).await,
            Command::License(args) => license::run(args, out).await,
            Command::Allocate(args) => alloc::allocate(args, out).await,
            Command::Heartbeat(args) => alloc::heartbeat(args, out).await,
            Command::Release(args) => alloc::release(args, out).await,
            Command::Check(args) => alloc::check(args, out).await,
            Command::Events(args) => events::events(args, out).await,
            Command::Report(args) => events::report(args, out).await,
            Command::Agent(args) => agent::run(args, out).await,
            Command::AnswerKey(args) => answer_key::run(args, out),
            Command::Token(args) => token::run(args, out),
            Command::Completions(args) => docs::completions(&args),
            Command::Man(args) => docs::man(&args),
            Command::Openapi => docs::openapi(),
        }
    });
    if !is_serve {
        // Do not wait for tasks still running (a lease keeper, a stuck request).
        runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    }
    match result {
        Ok(code) => code,
        Err(e) => report_error(&e, out),
    }
}

/// Prints a failed command's error: one readable line on stderr and, with `--json`, the JSON
/// error body on stdout (unless the command already printed its answer).
fn report_error(e: &anyhow::Error, out: Output) -> ExitCode {
    if let Some(exit) = e.downcast_ref::<output::Exit>() {
        eprintln!("error: {}", exit.message);
        return ExitCode::from(exit.code);
    }
    if out.json {
        let _ = out.print_json(&output::error_body(e));
    }
    eprintln!("error: {}", output::describe_error(e));
    ExitCode::FAILURE
}

/// The `--log-format` of this invocation, for the commands that log.
static LOG_FORMAT: std::sync::OnceLock<crate::logging::LogFormat> = std::sync::OnceLock::new();

/// Installs the log subscriber in the format `--log-format` chose (see [`crate::logging`]).
pub fn init_tracing() {
    crate::logging::init(LOG_FORMAT.get().copied().unwrap_or_default());
}
