//! `licd answer-key`: the cluster's answer-signing key. `new FILE` generates one (the same
//! file goes to every node, as `answer_signing_key_file`) and prints its public key;
//! `public FILE` prints the public key of an existing one. The public key is what
//! `licd check --answer-key` and `licd agent --answer-key` verify answers against.
//!
//! The key file has the vendor key's format (base64 of the 32-byte Ed25519 seed, from
//! [`licd_raft::license_file::encode_signing_key`]), and the public key the trusted keys'
//! (base64 of 32 bytes).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ed25519_dalek::VerifyingKey;
use licd_raft::license_file::{
    decode_public_key, decode_signing_key, encode_public_key, encode_signing_key,
    generate_signing_key,
};
use serde::Serialize;

use super::license::write_secret_file;
use super::output::Output;
use crate::signing::key_id;

/// `licd answer-key new FILE` / `licd answer-key public FILE`.
#[derive(Debug, Args)]
pub struct AnswerKeyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AnswerKeyCommand,
}

/// The subcommands of `licd answer-key`.
#[derive(Debug, Subcommand)]
pub enum AnswerKeyCommand {
    /// Generate an answer-signing key into FILE (mode 0600, never overwritten) and print its
    /// public key.
    New {
        /// The key file to create.
        file: PathBuf,
    },
    /// Print the public key of the answer-signing key in FILE.
    Public {
        /// The key file.
        file: PathBuf,
    },
}

/// The answer keys a command verifies check answers against (`--answer-key`).
#[derive(Debug, Clone, Default, Args)]
pub struct AnswerKeyOpts {
    /// The cluster's answer public key (base64, from `licd answer-key public`): check answers
    /// must be signed with it for a fresh nonce. Repeat or comma-separate to accept several
    /// while the key is replaced.
    #[arg(
        long = "answer-key",
        env = "LICD_ANSWER_KEY",
        value_delimiter = ',',
        value_name = "BASE64"
    )]
    pub answer_keys: Vec<String>,
}

impl AnswerKeyOpts {
    /// The keys, decoded (empty: answers are not verified).
    pub fn keys(&self) -> anyhow::Result<Vec<VerifyingKey>> {
        parse_public_keys(&self.answer_keys)
    }
}

/// Decodes public keys given on the command line, skipping empty items.
pub fn parse_public_keys(texts: &[String]) -> anyhow::Result<Vec<VerifyingKey>> {
    texts
        .iter()
        .map(|k| k.trim())
        .filter(|k| !k.is_empty())
        .map(|k| {
            decode_public_key(k).map_err(|_| {
                anyhow::anyhow!(
                    "--answer-key {k:?} is not a public key (expected the base64 key \
                     `licd answer-key public FILE` prints)"
                )
            })
        })
        .collect()
}

#[derive(Serialize)]
struct KeyAnswer<'a> {
    key_file: &'a std::path::Path,
    public_key: String,
    key_id: String,
}

/// Runs `licd answer-key ...`.
pub fn run(args: AnswerKeyArgs, out: Output) -> anyhow::Result<ExitCode> {
    let (file, created) = match &args.command {
        AnswerKeyCommand::New { file } => {
            let key = generate_signing_key(&mut rand::rngs::OsRng);
            write_secret_file(file, &format!("{}\n", encode_signing_key(&key)))?;
            (file, true)
        }
        AnswerKeyCommand::Public { file } => (file, false),
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the answer-signing key file {}", file.display()))?;
    let key = decode_signing_key(&text).map_err(|_| {
        anyhow::anyhow!(
            "{} is not an answer-signing key (expected the base64 key `licd answer-key new` \
             writes)",
            file.display()
        )
    })?;
    let public = key.verifying_key();
    let answer = KeyAnswer {
        key_file: file,
        public_key: encode_public_key(&public),
        key_id: key_id(&public),
    };
    out.emit(&answer, || {
        if created {
            println!(
                "wrote the answer-signing key to {} (keep it secret; give the same file to every \
                 node as answer_signing_key_file)",
                file.display()
            );
        }
        println!("public key: {}", answer.public_key);
        println!("key id:     {}", answer.key_id);
        if created {
            println!(
                "verify answers with `licd check --answer-key {}` (or LICD_ANSWER_KEY; the agent \
                 takes the same option)",
                answer.public_key
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
