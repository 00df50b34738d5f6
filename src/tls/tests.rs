//! Loading TLS material: readable errors for missing or wrong files, and configurations
//! that rustls accepts for certificates rcgen made.

use std::path::Path;

use super::*;

/// A CA and a certificate for 127.0.0.1 signed by it, written under `dir`.
fn write_pki(dir: &Path) -> TlsConfig {
    let ca = pki::Authority::new("test CA").unwrap();
    ca.node_tls(dir, "node", &["127.0.0.1"], true).unwrap()
}

#[test]
fn certificates_made_by_rcgen_load_for_server_and_client() {
    let dir = tempfile::tempdir().unwrap();
    let tls = write_pki(dir.path());
    let server = server_config(&tls).unwrap();
    assert_eq!(server.alpn_protocols, vec![b"http/1.1".to_vec()]);
    let outgoing = Outgoing::for_node(Some(&tls)).unwrap();
    assert_eq!(outgoing.scheme(), "https");
    assert_eq!(outgoing.base_url("127.0.0.1:1"), "https://127.0.0.1:1");
    assert_eq!(Outgoing::for_node(None).unwrap().scheme(), "http");
}

#[test]
fn a_missing_file_names_the_file_and_what_it_should_hold() {
    let dir = tempfile::tempdir().unwrap();
    let mut tls = write_pki(dir.path());
    tls.cert_file = dir.path().join("absent.pem");
    let e = server_config(&tls).unwrap_err().to_string();
    assert!(
        e.contains("absent.pem") && e.contains("certificates"),
        "{e}"
    );
}

#[test]
fn a_file_without_pem_blocks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut tls = write_pki(dir.path());
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    tls.ca_file = dir.path().join("empty.pem");
    let e = server_config(&tls).unwrap_err().to_string();
    assert!(
        e.contains("empty.pem") && e.contains("no CERTIFICATE"),
        "{e}"
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tls = write_pki(dir.path());
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&tls.key_file, other.serialize_pem()).unwrap();
    let e = server_config(&tls).unwrap_err().to_string();
    assert!(e.contains("node.key"), "{e}");
}
