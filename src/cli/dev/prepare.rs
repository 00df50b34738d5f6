//! The working directory of `licd dev` and what goes in it: the vendor key, the secrets,
//! the demo license bound to this machine, the answer-signing key, and the three node
//! configurations.
//! The working directory of `licd dev` and what goes in it: the vendor key, the secrets
//! (the cluster secret and one token per role, whose hashes the node configurations hold),
//! the demo license bound to this machine, and the three node configurations.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use licd_raft::License;
use licd_raft::RaftNodeId;
use licd_raft::license::MAX_LICENSED_CORES;
use licd_raft::license_file::{
    LicenseFile, encode_public_key, encode_signing_key, generate_signing_key,
};
use licd_raft::types::{Cores, LicenseId, MacAddr, Timestamp};

use super::{DEV_LEASE_MS, DevArgs};
use crate::auth::{Role, hash_token, new_token};
use crate::cli::common::{default_cores, default_mac};
use crate::cli::license::write_secret_file;
use crate::config::{AuthConfig, NodeConfig, RaftTiming, TokenEntry};
use crate::node::now;

/// Marks a directory as made by `licd dev`, so that a later run may replace its files.
const MARKER: &str = ".licd-dev";
/// The files and directories of a dev run, removed when a new run starts in the same place.
const OWNED: &[&str] = &[
    "vendor.key",
    "vendor.pub",
    "demo.lic",
    "admin-token",
    "operator-token",
    "client-token",
    "cluster-secret",
    "answer-signing.key",
    "answer-signing.pub",
    "node-1.toml",
    "node-2.toml",
    "node-3.toml",
    "node-1.log",
    "node-2.log",
    "node-3.log",
    "node-1",
    "node-2",
    "node-3",
    "dev.pid",
    "tls",
];
/// Demo MACs the license also allows, so that other "servers" can be tried.
const DEMO_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]];
/// The MAC used when this machine has none.
const FALLBACK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// Whether a process with this pid exists.
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        match libc::pid_t::try_from(pid) {
            // SAFETY: signal 0 only checks that the process exists.
            Ok(p) if p > 0 => unsafe { libc::kill(p, 0) == 0 },
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

/// Creates the working directory, or clears the files an earlier run left in it.
fn prepare_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{} exists and is not a directory", dir.display());
        }
        let pid_file = dir.join("dev.pid");
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse::<u32>()
            && pid != std::process::id()
            && process_alive(pid)
        {
            bail!(
                "another licd dev (pid {pid}) is using {}: stop it first, or use --dir",
                dir.display()
            );
        }
        let non_empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some();
        if non_empty && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and was not made by licd dev; choose another --dir",
                dir.display()
            );
        }
        for name in OWNED {
            let path = dir.join(name);
            let result = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else if path.exists() {
                std::fs::remove_file(&path)
            } else {
                Ok(())
            };
            result.with_context(|| format!("cannot remove the old {}", path.display()))?;
        }
    } else {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(
        dir.join(MARKER),
        "made by `licd dev`; a later `licd dev` replaces the files here\n",
    )
    .with_context(|| format!("cannot write in {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    std::fs::write(dir.join("dev.pid"), format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    Ok(dir)
}

fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The files of a prepared dev directory.
pub(crate) struct Prepared {
    pub(crate) dir: PathBuf,
    pub(crate) admin_token: String,
    pub(crate) admin_token_file: PathBuf,
    pub(crate) operator_token_file: PathBuf,
    pub(crate) client_token: String,
    pub(crate) client_token_file: PathBuf,
    pub(crate) cluster_secret: String,
    pub(crate) cluster_secret_file: PathBuf,
    /// The cluster's answer-signing key file, and its public key (base64).
    pub(crate) answer_key_file: PathBuf,
    pub(crate) answer_public_key: String,
    pub(crate) vendor_key_file: PathBuf,
    pub(crate) vendor_public_key: String,
    pub(crate) license_file: PathBuf,
    pub(crate) license_text: String,
    pub(crate) license: License,
    pub(crate) mac: MacAddr,
    pub(crate) mac_detected: bool,
    pub(crate) cores: Cores,
    pub(crate) members: BTreeMap<RaftNodeId, (SocketAddr, PathBuf, PathBuf)>,
    pub(crate) base_port: u16,
    /// The throwaway CA's certificate, unless `--plain-http`.
    pub(crate) ca_file: Option<PathBuf>,
}

impl Prepared {
    /// `https://` or `http://` for the nodes.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.ca_file.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Every node's endpoint with its scheme, as clients are given them.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.members
            .values()
            .map(|(addr, _, _)| format!("{}://{addr}", self.scheme()))
            .collect()
    }

    /// What licd dev's own clients (and its agent) trust.
    pub(crate) fn client_tls(&self) -> crate::client::ClientTls {
        crate::client::ClientTls {
            ca_file: self.ca_file.clone(),
            identity: None,
        }
    }
}

/// Writes keys, license, secrets and node configurations.
pub(super) fn prepare(args: &DevArgs) -> anyhow::Result<Prepared> {
    let dir = prepare_dir(&args.dir)?;
    write_cluster_files(
        dir,
        args.base_port,
        &DemoLicense::default(),
        !args.plain_http,
    )
}

/// What the demo license allows beyond this machine and the demo MACs: `licd bench` needs
/// many servers.
#[derive(Debug, Default)]
pub(crate) struct DemoLicense {
    /// More MACs the license allows.
    pub(crate) extra_macs: Vec<MacAddr>,
    /// The licensed cores, instead of four times this machine's (at least 16).
    pub(crate) max_cores: Option<u32>,
    /// The nodes' abuse limits, instead of the defaults (`licd bench` measures the cluster,
    /// not the per-token write limit).
    pub(crate) limits: Option<crate::config::LimitsConfig>,
    /// The nodes' Raft timing, instead of the defaults (`licd bench --raft-timing`).
    pub(crate) raft: Option<RaftTiming>,
}

/// Writes keys, the demo license, secrets and the three node configurations (ports
/// `base_port` to `base_port + 2`) into the existing directory `dir`.
pub(crate) fn write_cluster_files(
    dir: PathBuf,
    base_port: u16,
    shape: &DemoLicense,
    tls: bool,
) -> anyhow::Result<Prepared> {
    let vendor = generate_signing_key(&mut rand::rngs::OsRng);
    let vendor_key_file = dir.join("vendor.key");
    write_secret_file(
        &vendor_key_file,
        &format!("{}\n", encode_signing_key(&vendor)),
    )?;
    let vendor_public_key = encode_public_key(&vendor.verifying_key());
    std::fs::write(dir.join("vendor.pub"), format!("{vendor_public_key}\n"))
        .context("cannot write vendor.pub")?;

    let detected = default_mac();
    let mac = detected.unwrap_or(MacAddr::from_bytes(FALLBACK_MAC));
    let cores = default_cores();
    let max_cores = shape
        .max_cores
        .unwrap_or_else(|| cores.get().saturating_mul(4))
        .clamp(16, MAX_LICENSED_CORES);
    let issued_at = now();
    let mut allowed_macs: std::collections::BTreeSet<MacAddr> =
        DEMO_MACS.iter().map(|b| MacAddr::from_bytes(*b)).collect();
    allowed_macs.insert(mac);
    allowed_macs.extend(shape.extra_macs.iter().copied());
    let license = License {
        id: LicenseId::new("demo").context("the demo license id")?,
        customer: "licd dev demo".into(),
        issued_at,
        expires_at: Some(Timestamp(issued_at.0 + 30 * 86_400_000)),
        max_cores,
        min_cores_per_node: 4,
        allowed_macs,
        features: ["demo".to_string()].into(),
        serial: 1,
    };
    let license_text = LicenseFile::issue(&license, &vendor)
        .map_err(|e| anyhow::anyhow!("cannot issue the demo license: {e}"))?;
    let license_file = dir.join("demo.lic");
    std::fs::write(&license_file, &license_text).context("cannot write demo.lic")?;

    // One token per role, each in its own file (mode 0600); the nodes get their hashes only.
    let mut tokens = Vec::new();
    let mut token_files = Vec::new();
    for role in Role::ALL {
        let token = new_token(role);
        let file = dir.join(format!("{role}-token"));
        write_secret_file(&file, &format!("{token}\n"))?;
        tokens.push(TokenEntry {
            role,
            sha256: hash_token(&token),
            name: Some(format!("dev-{role}")),
        });
        token_files.push((token, file));
    }
    let [
        (admin_token, admin_token_file),
        (_, operator_token_file),
        (client_token, client_token_file),
    ] = <[(String, PathBuf); 3]>::try_from(token_files)
        .map_err(|_| anyhow::anyhow!("one token per role"))?;
    let auth = AuthConfig {
        tokens,
        allow_anonymous_clients: false,
    };
    let cluster_secret = random_secret();
    let cluster_secret_file = dir.join("cluster-secret");
    write_secret_file(&cluster_secret_file, &format!("{cluster_secret}\n"))?;

    let answer_key = generate_signing_key(&mut rand::rngs::OsRng);
    let answer_key_file = dir.join("answer-signing.key");
    write_secret_file(
        &answer_key_file,
        &format!("{}\n", encode_signing_key(&answer_key)),
    )?;
    let answer_public_key = encode_public_key(&answer_key.verifying_key());
    std::fs::write(
        dir.join("answer-signing.pub"),
        format!("{answer_public_key}\n"),
    )
    .context("cannot write answer-signing.pub")?;

    // A throwaway CA and one certificate per node, for 127.0.0.1 and localhost.
    let tls_dir = dir.join("tls");
    let authority = if !tls {
        None
    } else {
        std::fs::create_dir_all(&tls_dir)
            .with_context(|| format!("cannot create {}", tls_dir.display()))?;
        Some(crate::tls::pki::Authority::new("licd dev CA")?)
    };
    let mut members = BTreeMap::new();
    for i in 0..3u16 {
        let id = RaftNodeId::from(i + 1);
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, base_port + i));
        let data_dir = dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let config = NodeConfig {
            node_id: id,
            listen,
            advertise: None,
            data_dir,
            trusted_keys: vec![vendor_public_key.clone()],
            default_lease_ttl_ms: DEV_LEASE_MS,
            raft_bind_ip: None,
            admin_token_file: None,
            cluster_secret_file: Some(cluster_secret_file.clone()),
            answer_signing_key_file: Some(answer_key_file.clone()),
            raft: shape.raft.clone().unwrap_or_default(),
            auth: auth.clone(),
            limits: shape.limits.clone().unwrap_or_default(),
            tls: authority
                .as_ref()
                .map(|ca| {
                    ca.node_tls(
                        &tls_dir,
                        &format!("node-{id}"),
                        &["127.0.0.1", "localhost"],
                        false,
                    )
                })
                .transpose()?,
            server: Default::default(),
            events: Default::default(),
        };
        config
            .validate()
            .context("the generated node configuration")?;
        let text = toml::to_string_pretty(&config).context("cannot write a node configuration")?;
        let config_path = dir.join(format!("node-{id}.toml"));
        std::fs::write(&config_path, text)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let log_path = dir.join(format!("node-{id}.log"));
        members.insert(id, (listen, config_path, log_path));
    }

    Ok(Prepared {
        dir,
        admin_token,
        admin_token_file,
        operator_token_file,
        client_token,
        client_token_file,
        cluster_secret,
        cluster_secret_file,
        answer_key_file,
        answer_public_key,
        vendor_key_file,
        vendor_public_key,
        license_file,
        license_text,
        license,
        mac,
        mac_detected: detected.is_some(),
        cores,
        members,
        base_port,
        ca_file: authority.map(|_| tls_dir.join("ca.pem")),
    })
}
