//! `licd token new --role ROLE [--name NAME]`: a fresh bearer token, and the configuration
//! entry that makes a node accept it (the token's SHA-256: nodes never store the token).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::output::Output;
use crate::auth::{Role, hash_token, new_token};

/// `licd token ...`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// The token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new token and the `[[auth.tokens]]` entry (its hash) for the node
    /// configurations.
    New(NewArgs),
}

/// Options of `licd token new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The role: admin, operator or client.
    #[arg(long)]
    pub role: Role,
    /// A name for the token (the rate limit counts by it), e.g. app-servers.
    #[arg(long)]
    pub name: Option<String>,
}

/// The answer of `licd token new --json`.
#[derive(Debug, Serialize)]
struct NewToken {
    token: String,
    role: Role,
    sha256: String,
    name: Option<String>,
    /// The `[[auth.tokens]]` entry, as TOML.
    config: String,
    /// The `LICD_TOKENS` entry.
    env: String,
}

/// Runs `licd token`.
pub fn run(args: TokenArgs, out: Output) -> anyhow::Result<ExitCode> {
    let TokenCommand::New(a) = args.command;
    if let Some(name) = &a.name
        && (name.is_empty() || name.contains(['"', '\\', ':', ',', '\n']))
    {
        anyhow::bail!("--name must be non-empty, without quotes, backslashes, ':' or ','");
    }
    let token = new_token(a.role);
    let sha256 = hash_token(&token);
    let mut config = format!(
        "[[auth.tokens]]\nrole = \"{}\"\nsha256 = \"{sha256}\"\n",
        a.role
    );
    let mut env = format!("{}:{sha256}", a.role);
    if let Some(name) = &a.name {
        config.push_str(&format!("name = \"{name}\"\n"));
        env.push_str(&format!(":{name}"));
    }
    let answer = NewToken {
        token,
        role: a.role,
        sha256,
        name: a.name,
        config,
        env,
    };
    out.emit(&answer, || {
        println!("token (give it to the caller; it is shown only now):");
        println!("  {}", answer.token);
        println!();
        println!("add to every node's configuration, then restart the nodes one at a time:");
        println!();
        print!("{}", answer.config);
        println!();
        println!("or add to LICD_TOKENS (comma-separated): {}", answer.env);
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_entry_parses_as_a_token_the_node_accepts() {
        let token = new_token(Role::Client);
        let text = format!(
            "[[auth.tokens]]\nrole = \"client\"\nsha256 = \"{}\"\nname = \"apps\"\n",
            hash_token(&token)
        );
        #[derive(serde::Deserialize)]
        struct File {
            auth: crate::config::AuthConfig,
        }
        let file: File = toml::from_str(&text).unwrap();
        let tokens = crate::auth::Tokens::new(&file.auth, "").unwrap();
        assert_eq!(tokens.verify(&token).unwrap().role, Role::Client);
    }
}
