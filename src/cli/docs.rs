//! `licd completions SHELL` and `licd man DIR`: shell completions and man pages generated
//! from the same command definitions as `--help`, so they cannot fall behind it; and
//! `licd openapi`, the HTTP API's contract generated from the wire types.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory};

use super::Cli;

/// Options of `licd completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Options of `licd man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory to write `licd.1` and one page per subcommand (`licd-serve.1`, ...) to.
    pub dir: PathBuf,
}

/// Writes the OpenAPI document on stdout, as `GET /openapi.json` serves it (pretty-printed,
/// with a final newline: the form of docs/openapi.json).
pub fn openapi() -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let text = crate::http::openapi_json();
    match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("cannot write the document"),
    }
}

/// Writes the completion script for a shell on stdout.
pub fn completions(a: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut command = Cli::command();
    // Into memory first: the generator panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut command, "licd", &mut script);
    match std::io::stdout().write_all(&script) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("cannot write the completions"),
    }
}

/// Writes the man pages into a directory.
pub fn man(a: &ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    clap_mangen::generate_to(Cli::command(), &a.dir)
        .with_context(|| format!("cannot write the man pages to {}", a.dir.display()))?;
    println!("man pages written to {}", a.dir.display());
    Ok(ExitCode::SUCCESS)
}
