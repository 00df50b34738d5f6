//! `licd license`: the vendor's side (keygen, issue, inspect) works offline on files; the
//! operator's side (install, list, remove) talks to the cluster.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ed25519_dalek::VerifyingKey;
use licd_raft::License;
use licd_raft::license_file::{
    LicenseFile, decode_public_key, decode_signing_key, encode_public_key, encode_signing_key,
    generate_signing_key,
};
use licd_raft::types::{LicenseId, MacAddr, Timestamp};
use serde::Serialize;

use super::common::ClientOpts;
use super::output::{Exit, Output, format_time, format_time_from, human_duration_ms, table};
use crate::client::new_request_id;
use crate::node::now;

/// License files and the licenses installed in the cluster.
#[derive(Debug, Args)]
pub struct LicenseArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LicenseCommand,
}

/// The `license` subcommands.
#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Generate a vendor signing key (writes it to a new file, prints the public key).
    Keygen(KeygenArgs),
    /// Issue (sign) a license file with a vendor signing key.
    Issue(IssueArgs),
    /// Show a license file's contents and, given trusted keys, verify its signature.
    ///
    /// Exits with 1 when verification fails.
    Inspect(InspectArgs),
    /// Install a signed license file in the cluster (admin token needed).
    Install(InstallArgs),
    /// List the installed licenses with their usage.
    List(ListArgs),
    /// Remove a license and release every allocation under it (admin token needed).
    Remove(RemoveArgs),
}

/// Options of `license keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// File to write the base64 signing key to (created with mode 0600; never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Options of `license issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The vendor signing key file (from `license keygen`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The license id, `[A-Za-z0-9._-]`; a later issue with the same id replaces this one.
    #[arg(long)]
    pub id: LicenseId,
    /// The customer the license is issued to.
    #[arg(long, value_name = "NAME")]
    pub customer: String,
    /// Total CPU cores over all the customer's servers.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_cores: u32,
    /// Each server counts at least this many cores.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub min_cores_per_node: u32,
    /// A MAC address the license is bound to, aa:bb:cc:dd:ee:ff (repeat, or comma-separate).
    #[arg(
        long = "mac",
        value_name = "MAC",
        required = true,
        value_delimiter = ','
    )]
    pub macs: Vec<MacAddr>,
    /// A product feature the license enables (repeat, or comma-separate).
    #[arg(long = "feature", value_name = "F", value_delimiter = ',')]
    pub features: Vec<String>,
    /// The license expires this many days after now (default: never).
    #[arg(long, value_name = "D", conflicts_with = "expires_at_ms", value_parser = clap::value_parser!(u64).range(1..))]
    pub expires_in_days: Option<u64>,
    /// The license expires at this instant, in milliseconds since the Unix epoch.
    #[arg(long, value_name = "MS")]
    pub expires_at_ms: Option<u64>,
    /// The issue counter: a reissue must have a higher serial to replace the installed one.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub serial: u64,
    /// Write the license file here instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Options of `license inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The license file (`-` for standard input).
    pub file: PathBuf,
    /// A trusted vendor public key (base64) to verify against; repeat for several.
    #[arg(
        long = "trusted-key",
        value_name = "KEY",
        env = "LICD_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    pub trusted_keys: Vec<String>,
}

/// Options of `license install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The license file (`-` for standard input).
    pub file: PathBuf,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Options of `license list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Options of `license remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The license id.
    pub id: LicenseId,
    #[command(flatten)]
    pub client: ClientOpts,
}

/// Runs a `license` subcommand.
pub async fn run(args: LicenseArgs, out: Output) -> anyhow::Result<ExitCode> {
    match args.command {
        LicenseCommand::Keygen(a) => keygen(&a, out),
        LicenseCommand::Issue(a) => issue(a, out),
        LicenseCommand::Inspect(a) => inspect(&a, out),
        LicenseCommand::Install(a) => install(&a, out).await,
        LicenseCommand::List(a) => list(&a, out).await,
        LicenseCommand::Remove(a) => {
            let client = a.client.admin_client()?;
            let body = client.remove_license(&a.id, &new_request_id()).await?;
            out.emit(&body, || {
                println!("removed license {}", body.license);
                if body.released.is_empty() {
                    println!("no allocation was released");
                } else {
                    let names: Vec<&str> = body.released.iter().map(|n| n.as_str()).collect();
                    println!("released the allocations of: {}", names.join(", "));
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes `text` to a new file with mode 0600, refusing to replace an existing file.
pub fn write_secret_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists; refusing to overwrite it",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot create {}: {e}", path.display())
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[derive(Serialize)]
struct KeygenAnswer<'a> {
    key_file: &'a Path,
    public_key: String,
}

fn keygen(a: &KeygenArgs, out: Output) -> anyhow::Result<ExitCode> {
    let key = generate_signing_key(&mut rand::rngs::OsRng);
    write_secret_file(&a.out, &format!("{}\n", encode_signing_key(&key)))?;
    let answer = KeygenAnswer {
        key_file: &a.out,
        public_key: encode_public_key(&key.verifying_key()),
    };
    out.emit(&answer, || {
        println!(
            "wrote the signing key to {} (keep it secret)",
            a.out.display()
        );
        println!("public key: {}", answer.public_key);
        println!(
            "give the public key to license servers as trusted_keys (or --trusted-key / \
             LICD_TRUSTED_KEYS)"
        );
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a signing key file written by `license keygen`.
pub fn read_signing_key(path: &Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the signing key file {}", path.display()))?;
    decode_signing_key(&text).map_err(|_| {
        anyhow::anyhow!(
            "{} is not a licd signing key (expected the base64 key `licd license keygen` writes)",
            path.display()
        )
    })
}

#[derive(Serialize)]
struct IssueAnswer<'a> {
    license: &'a License,
    public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

fn issue(a: IssueArgs, out: Output) -> anyhow::Result<ExitCode> {
    let key = read_signing_key(&a.key)?;
    let issued_at = now();
    let expires_at = match (a.expires_in_days, a.expires_at_ms) {
        (Some(days), _) => Some(issued_at.plus_millis(days.saturating_mul(86_400_000))),
        (None, Some(ms)) => Some(Timestamp(ms)),
        (None, None) => None,
    };
    if let Some(at) = expires_at
        && at <= issued_at
    {
        bail!(
            "--expires-at-ms {} ({}) is not in the future",
            at.0,
            format_time(at)
        );
    }
    let license = License {
        id: a.id,
        customer: a.customer,
        issued_at,
        expires_at,
        max_cores: a.max_cores,
        min_cores_per_node: a.min_cores_per_node,
        allowed_macs: a.macs.into_iter().collect(),
        features: a
            .features
            .into_iter()
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect(),
        serial: a.serial,
    };
    let text = LicenseFile::issue(&license, &key)
        .map_err(|e| anyhow::anyhow!("cannot issue the license: {e}"))?;
    if let Some(path) = &a.out {
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let answer = IssueAnswer {
        license: &license,
        public_key: encode_public_key(&key.verifying_key()),
        file: a.out.as_deref(),
        text: if a.out.is_none() { Some(&text) } else { None },
    };
    out.emit(&answer, || match &a.out {
        Some(path) => {
            println!("wrote license {} to {}", license.id, path.display());
            print_license(&license, now());
        }
        None => print!("{text}"),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn print_license(l: &License, now: Timestamp) {
    println!("  id:                 {}", l.id);
    println!("  customer:           {}", l.customer);
    println!("  serial:             {}", l.serial);
    println!("  issued at:          {}", format_time(l.issued_at));
    match l.expires_at {
        Some(at) => println!(
            "  expires at:         {}{}",
            format_time_from(at, now),
            if l.is_expired_at(now) {
                "  EXPIRED"
            } else {
                ""
            }
        ),
        None => println!("  expires at:         never"),
    }
    println!("  max cores:          {}", l.max_cores);
    println!("  min cores per node: {}", l.min_cores_per_node);
    let macs: Vec<String> = l.allowed_macs.iter().map(ToString::to_string).collect();
    println!("  allowed MACs:       {}", macs.join(", "));
    let features: Vec<&str> = l.features.iter().map(String::as_str).collect();
    println!(
        "  features:           {}",
        if features.is_empty() {
            "-".to_string()
        } else {
            features.join(", ")
        }
    );
}

#[derive(Serialize)]
struct InspectAnswer<'a> {
    license: &'a License,
    signed_by: String,
    expired: bool,
    /// `None` when no trusted key was given.
    verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification_error: Option<String>,
}

fn inspect(a: &InspectArgs, out: Output) -> anyhow::Result<ExitCode> {
    let text = read_input(&a.file)?;
    let file = LicenseFile::parse(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a valid license file: {e}", a.file.display()))?;
    let trusted: Vec<VerifyingKey> = a
        .trusted_keys
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| {
            decode_public_key(k).map_err(|_| {
                anyhow::anyhow!(
                    "--trusted-key {k:?} is not a public key (expected base64 of 32 bytes, as \
                     `licd license keygen` prints)"
                )
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let verification = if trusted.is_empty() {
        None
    } else {
        Some(file.verify(&trusted))
    };
    let now = now();
    let answer = InspectAnswer {
        license: &file.license,
        signed_by: encode_public_key(&file.key),
        expired: file.license.is_expired_at(now),
        verified: verification.as_ref().map(Result::is_ok),
        verification_error: verification
            .as_ref()
            .and_then(|v| v.as_ref().err())
            .map(ToString::to_string),
    };
    out.emit(&answer, || {
        println!("license file {}", a.file.display());
        print_license(&file.license, now);
        println!("  signed by key:      {}", answer.signed_by);
        match &verification {
            None => {
                println!("  signature:          not verified (pass --trusted-key KEY to verify)")
            }
            Some(Ok(_)) => println!("  signature:          OK, signed by a trusted key"),
            Some(Err(_)) => {}
        }
    })?;
    match verification {
        Some(Err(e)) => Err(Exit {
            message: format!("verification FAILED: {e}"),
            code: 1,
        }
        .into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

async fn install(a: &InstallArgs, out: Output) -> anyhow::Result<ExitCode> {
    let text = read_input(&a.file)?;
    // Refuse a malformed file here, with the local reason; the cluster checks the signature.
    let parsed = LicenseFile::parse(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a valid license file: {e}", a.file.display()))?;
    let client = a.client.admin_client()?;
    let body = client.install_license(&text, &new_request_id()).await?;
    out.emit(&body, || {
        let how = if body.unchanged {
            "was already installed (unchanged)"
        } else if body.replaced {
            "installed, replacing an older issue"
        } else {
            "installed"
        };
        println!(
            "license {} ({}, {} cores, serial {}) {how}",
            body.license, parsed.license.customer, parsed.license.max_cores, parsed.license.serial
        );
        for d in &body.dropped {
            println!(
                "  released the allocation of {}: {}",
                d.node,
                d.code.as_str()
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn list(a: &ListArgs, out: Output) -> anyhow::Result<ExitCode> {
    let client = a.client.client()?;
    let body = client.licenses().await?;
    out.emit(&body, || {
        if body.licenses.is_empty() {
            println!("no license is installed (install one with `licd license install FILE`)");
            return;
        }
        let rows: Vec<Vec<String>> = body
            .licenses
            .iter()
            .map(|u| {
                let expires = match u.license.expires_at {
                    Some(at) if u.expired => format!("{} EXPIRED", format_time(at)),
                    Some(at) => format_time(at),
                    None => "never".to_string(),
                };
                vec![
                    u.license.id.to_string(),
                    u.license.customer.clone(),
                    u.licensed_cores.to_string(),
                    u.allocated_cores.to_string(),
                    u.free_cores.to_string(),
                    expires,
                    u.nodes.len().to_string(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "ID",
                    "CUSTOMER",
                    "LICENSED",
                    "ALLOCATED",
                    "FREE",
                    "EXPIRES",
                    "NODES"
                ],
                &rows
            )
        );
        let allocated: Vec<Vec<String>> = body
            .licenses
            .iter()
            .flat_map(|u| {
                u.nodes.iter().map(move |n| {
                    vec![
                        n.node.to_string(),
                        u.license.id.to_string(),
                        n.mac.to_string(),
                        n.cores.get().to_string(),
                        n.counted_cores.to_string(),
                        format!("in {}", human_duration_ms(n.lease_remaining_ms)),
                    ]
                })
            })
            .collect();
        if !allocated.is_empty() {
            println!();
            print!(
                "{}",
                table(
                    &["NODE", "LICENSE", "MAC", "CORES", "COUNTED", "LEASE ENDS"],
                    &allocated
                )
            );
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
