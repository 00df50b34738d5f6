//! TLS for every connection licd makes or accepts: rustls with the ring provider.
//!
//! A node with a `[tls]` section ([`TlsConfig`]) serves HTTPS on its listen address and
//! speaks HTTPS to its peers (Raft RPCs and forwarded requests), verifying their
//! certificates against the cluster's CA (`ca_file`). With `require_client_cert` the node
//! also asks every caller, clients and peers alike, for a certificate signed by that CA
//! (mutual TLS); a node presents its own certificate when it calls a peer, so peers pass.
//!
//! What it guarantees:
//! - a node's peers are reached with the scheme of the node's own configuration: a cluster
//!   is all-TLS or all-plain (member addresses are `host:port`, they carry no scheme);
//! - a peer or server certificate is checked against the configured CA only (not the
//!   system's roots), and its names must cover the address dialled (`127.0.0.1` needs an IP
//!   SAN, `node1.example:7101` a DNS SAN);
//! - the server offers ALPN `http/1.1` only, the one protocol it serves.
//!
//! What it leaves out: certificate revocation lists, reloading certificates without a
//! restart, and a node that serves TLS and plain HTTP at once. Plain HTTP is available only
//! by leaving the `[tls]` section out, and `licd serve` warns when it does.
//!
//! reqwest is built without a crypto provider of its own: [`ensure_crypto_provider`]
//! installs ring as the process default before any client is built (every builder in this
//! crate goes through [`Outgoing::apply`] or calls it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// The `[tls]` section of a node's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with this node's certificate chain (leaf first); its names must cover the
    /// address the node advertises.
    pub cert_file: PathBuf,
    /// PEM file with the private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file with the CA certificate(s) that signed the cluster's certificates: peers
    /// are verified against it, and clients too when `require_client_cert` is set.
    pub ca_file: PathBuf,
    /// Mutual TLS: refuse every connection whose caller presents no certificate signed by
    /// `ca_file` (clients, agents and peers alike).
    #[serde(default)]
    pub require_client_cert: bool,
}

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {message}")]
    File {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: String,
        /// Why it failed.
        message: String,
    },
    /// rustls refused the material (a key that does not match its certificate, ...).
    #[error("invalid TLS configuration: {0}")]
    Invalid(String),
}

/// Installs ring as the process's default rustls provider, once. reqwest is built without
/// a provider of its own and would panic building a client without one.
pub fn ensure_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one first: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(what: &'static str, path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Every certificate in a PEM file; an error when there is none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let what = "certificates";
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no CERTIFICATE block in the file"));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error("a private key", path, e))
}

/// The CA certificates of a PEM file as a trust store.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| file_error("CA certificates", path, e))?;
    }
    Ok(Arc::new(roots))
}

/// The server side of a node: its certificate, and with `require_client_cert` a verifier
/// of callers' certificates against `ca_file`.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&tls.cert_file)?;
    let key = load_key(&tls.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    let builder = if tls.require_client_cert {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(load_roots(&tls.ca_file)?, provider())
                .build()
                .map_err(|e| TlsError::Invalid(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| key_error(&tls.key_file, &tls.cert_file, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn key_error(key: &Path, cert: &Path, e: &rustls::Error) -> TlsError {
    TlsError::Invalid(format!(
        "the key {} does not go with the certificate {}: {e}",
        key.display(),
        cert.display()
    ))
}

/// A client certificate and its key, presented for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// The client side: servers verified against `ca_file` only, `identity` presented when
/// given.
pub fn client_config(
    ca_file: &Path,
    identity: Option<&Identity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = WebPkiServerVerifier::builder_with_provider(load_roots(ca_file)?, provider())
        .build()
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_webpki_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(load_certs(&id.cert_file)?, load_key(&id.key_file)?)
            .map_err(|e| key_error(&id.key_file, &id.cert_file, &e))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How a node (or a client) opens its connections: plain HTTP, or HTTPS with a rustls
/// configuration of its own.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    tls: Option<Arc<ClientConfig>>,
}

impl Outgoing {
    /// Plain HTTP.
    pub fn plain() -> Self {
        Outgoing { tls: None }
    }

    /// HTTPS with `config`.
    pub fn https(config: Arc<ClientConfig>) -> Self {
        Outgoing { tls: Some(config) }
    }

    /// A node's way to its peers: HTTPS with the cluster CA and the node's own certificate
    /// (for mutual TLS) when it has a `[tls]` section, plain HTTP otherwise.
    pub fn for_node(tls: Option<&TlsConfig>) -> Result<Self, TlsError> {
        let Some(tls) = tls else {
            return Ok(Outgoing::plain());
        };
        let identity = Identity {
            cert_file: tls.cert_file.clone(),
            key_file: tls.key_file.clone(),
        };
        Ok(Outgoing::https(client_config(
            &tls.ca_file,
            Some(&identity),
        )?))
    }

    /// `"https"` or `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// `scheme://addr`, for a `host:port` address.
    pub fn base_url(&self, addr: &str) -> String {
        format!("{}://{addr}", self.scheme())
    }

    /// Gives a reqwest builder this TLS configuration (and makes sure a provider exists).
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        ensure_crypto_provider();
        match &self.tls {
            Some(config) => builder.tls_backend_preconfigured(ClientConfig::clone(config)),
            None => builder,
        }
    }
}

/// The TLS failure behind a reqwest error, if it is one: a certificate the CA did not sign,
/// a name that does not match, a peer that refused ours, ...
pub fn tls_failure(error: &reqwest::Error) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    // Bounded: an error chain is short, and a cyclic one must not hang the caller.
    for _ in 0..32 {
        let e = next?;
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An io::Error's `source` skips the error it wraps: look inside it instead.
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

pub mod pki;
#[cfg(test)]
mod tests;
