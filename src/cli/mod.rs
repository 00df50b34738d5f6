//! The `licd` command line: `serve` runs a node; the other commands talk to a cluster through
//! the [`crate::client`] library. Every command has `--help`; errors print a readable message
//! and exit non-zero.

pub mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// licd: a highly available license server for software licensed by CPU cores.
#[derive(Debug, Parser)]
#[command(name = "licd", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one licd node.
    Serve(serve::ServeArgs),
}

/// Parses the command line, runs the command, and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("licd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("licd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the log subscriber: `RUST_LOG` or `LICD_LOG` chooses the levels, `info` by default.
pub fn init_tracing() {
    let filter = std::env::var("LICD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,openraft=warn,sled=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}
