//! Throwaway certificates: a CA and the certificates it signs, for `licd dev` and the tests.
//!
//! Keys are ECDSA P-256 (rcgen's default), certificates valid from their creation for ten
//! years, with the names given as subject alternative names (an IP address becomes an IP
//! SAN). Nothing here is meant for production: docs/operations.md says how to make real
//! certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::{Identity, TlsConfig, TlsError};

fn invalid(e: rcgen::Error) -> TlsError {
    TlsError::Invalid(format!("cannot make a certificate: {e}"))
}

/// A certificate authority that lives as long as the value.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl Authority {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(invalid)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(invalid)?;
        Ok(Authority {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        })
    }

    /// The CA certificate, PEM: what clients and peers trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `names` (DNS names or IP addresses), usable by a server and as a
    /// client certificate (a node is both).
    pub fn issue(&self, common_name: &str, names: &[&str]) -> Result<Issued, TlsError> {
        let key = KeyPair::generate().map_err(invalid)?;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).map_err(invalid)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).map_err(invalid)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> Result<(), TlsError> {
        write(path, &self.cert_pem)
    }

    /// Issues a certificate for `names` and writes it as `dir/stem.pem` and `dir/stem.key`
    /// (the key readable by its owner only).
    pub fn write_issued(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
    ) -> Result<Identity, TlsError> {
        let issued = self.issue(stem, names)?;
        let identity = Identity {
            cert_file: dir.join(format!("{stem}.pem")),
            key_file: dir.join(format!("{stem}.key")),
        };
        write(&identity.cert_file, &issued.cert_pem)?;
        write(&identity.key_file, &issued.key_pem)?;
        restrict(&identity.key_file)?;
        Ok(identity)
    }

    /// A node's `[tls]` section: a certificate for `names` written under `dir`, and the CA
    /// written as `dir/ca.pem` when it is not there yet.
    pub fn node_tls(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        require_client_cert: bool,
    ) -> Result<TlsConfig, TlsError> {
        let ca_file: PathBuf = dir.join("ca.pem");
        if !ca_file.exists() {
            self.write_cert(&ca_file)?;
        }
        let identity = self.write_issued(dir, stem, names)?;
        Ok(TlsConfig {
            cert_file: identity.cert_file,
            key_file: identity.key_file,
            ca_file,
            require_client_cert,
        })
    }
}

fn write(path: &Path, text: &str) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(|e| TlsError::File {
        what: "a PEM file",
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

#[cfg(unix)]
fn restrict(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        TlsError::File {
            what: "a private key",
            path: path.display().to_string(),
            message: e.to_string(),
        }
    })
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> Result<(), TlsError> {
    Ok(())
}
