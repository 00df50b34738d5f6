//! TLS everywhere: an in-process cluster whose nodes serve HTTPS and replicate to each other
//! over it, clients that trust the cluster's CA (and only it), mutual TLS that keeps out
//! callers and peers without a certificate from that CA, and the `licd` command line over
//! HTTPS with `--ca-file`.

mod common;
#[path = "support/cli.rs"]
mod support;

use std::time::Duration;

use common::Cluster;
use licd::api::AllocateBody;
use licd::client::{Client, ClientError, ClientTls, RetryPolicy, new_request_id};
use licd::tls::pki::Authority;
use licd_raft::types::{Cores, NodeName};

fn alloc(mac: u8, cores: u32) -> AllocateBody {
    AllocateBody {
        license: None,
        mac: common::mac(mac),
        cores: Cores::new(cores).unwrap(),
        ttl_ms: None,
        request_id: None,
    }
}

fn policy(deadline: Duration) -> RetryPolicy {
    RetryPolicy {
        deadline,
        attempt_timeout: Duration::from_secs(2).min(deadline),
        ..RetryPolicy::default()
    }
}

/// A client of `endpoints` with `tls`, giving up after 5 s.
fn client(endpoints: &[String], tls: &ClientTls) -> Result<Client, ClientError> {
    // The admin token may use every route: these tests are about the transport.
    Ok(
        Client::with_policy(endpoints, policy(Duration::from_secs(5)))?
            .with_tls(tls)?
            .with_admin_token(common::ADMIN_TOKEN),
    )
}

/// A CA that did not sign the cluster's certificates, and its certificate file.
fn foreign_ca(cluster: &Cluster) -> (Authority, std::path::PathBuf) {
    let foreign = Authority::new("someone else's CA").unwrap();
    let dir = cluster.dir.path().join("foreign");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ca.pem");
    foreign.write_cert(&path).unwrap();
    (foreign, path)
}

fn assert_tls_refusal(result: Result<impl std::fmt::Debug, ClientError>) {
    match result {
        Err(ClientError::Tls { endpoint, message }) => {
            assert!(!endpoint.is_empty() && !message.is_empty());
        }
        other => panic!("expected a TLS refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tls_cluster_replicates_over_https_and_a_follower_forwards_over_https() {
    let cluster = Cluster::start_tls(3, false).await;
    assert!(
        cluster
            .endpoints()
            .iter()
            .all(|e| e.starts_with("https://"))
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    assert_eq!(cluster.node(leader).outgoing().scheme(), "https");
    cluster.install(&common::license("LIC-TLS", 64)).await;

    // Through a follower only: the follower forwards to the leader over HTTPS.
    let follower = *cluster.addrs.keys().find(|id| **id != leader).unwrap();
    let through_follower = vec![format!("https://{}", cluster.addrs[&follower])];
    let client = client(&through_follower, &cluster.client_tls()).unwrap();
    let name = NodeName::new("app-tls").unwrap();
    let grant = client
        .allocate(&name, &alloc(1, 8), &new_request_id())
        .await
        .expect("allocate through a follower over https");
    let check = client.check(&name, None).await.expect("check");
    assert!(check.check.valid, "{check:?}");

    // Every node applied the allocation: the log was replicated over HTTPS.
    let index = grant.log.index;
    for id in cluster.addrs.keys() {
        cluster
            .wait_applied(*id, index, Duration::from_secs(10))
            .await;
    }

    // A bare host:port with a CA file is HTTPS too.
    let bare = vec![cluster.addrs[&follower].to_string()];
    let bare_client = client_or_panic(&bare, &cluster.client_tls());
    assert_eq!(bare_client.scheme(), "https");
    assert!(bare_client.check(&name, None).await.unwrap().check.valid);
    cluster.shutdown().await;
}

fn client_or_panic(endpoints: &[String], tls: &ClientTls) -> Client {
    client(endpoints, tls).expect("client")
}

#[tokio::test]
async fn a_client_that_trusts_another_ca_or_speaks_plain_http_is_refused_clearly() {
    let cluster = Cluster::start_tls(3, false).await;
    let (_foreign, foreign_ca) = foreign_ca(&cluster);
    let tls = ClientTls {
        ca_file: Some(foreign_ca),
        identity: None,
    };
    let started = std::time::Instant::now();
    let result = client(&cluster.endpoints(), &tls).unwrap().licenses().await;
    assert_tls_refusal(result);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a TLS refusal is not retried until the deadline"
    );

    // Plain HTTP to an HTTPS node: no answer it understands, an error, not a panic.
    let plain = vec![format!("http://{}", cluster.addrs[&1])];
    let plain = Client::with_policy(&plain, policy(Duration::from_secs(2))).unwrap();
    assert!(plain.licenses().await.is_err());

    // A member address names no scheme (the nodes' configuration decides it): a 400.
    let refused = cluster
        .admin_client()
        .add_learner(9, "https://127.0.0.1:9")
        .await;
    match refused {
        Err(ClientError::Api { status, body }) => {
            assert_eq!(status.as_u16(), 400, "{body:?}");
            assert!(body.message.contains("without a scheme"), "{body:?}");
        }
        other => panic!("a member address with a scheme was accepted: {other:?}"),
    }

    // Endpoints that mix schemes, or name another, are refused when the client is built.
    let mixed = ["https://127.0.0.1:1", "http://127.0.0.1:2"];
    assert!(matches!(Client::new(&mixed), Err(ClientError::Config(_))));
    assert!(matches!(
        Client::new(&["ftp://127.0.0.1:1"]),
        Err(ClientError::Config(_))
    ));
    // Without a CA file a bare host:port stays plain HTTP, as before; a scheme is kept.
    assert_eq!(Client::new(&["127.0.0.1:1"]).unwrap().scheme(), "http");
    assert_eq!(
        Client::new(&["https://127.0.0.1:1/"]).unwrap().scheme(),
        "https"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn with_mutual_tls_a_client_without_a_certificate_and_a_foreign_peer_are_kept_out() {
    let mut cluster = Cluster::start_tls(3, true).await;
    cluster.install(&common::license("LIC-MTLS", 64)).await;

    // The cluster's own client presents a certificate from the cluster CA: served, also
    // through a follower, which forwards to the leader presenting its own certificate.
    let with_cert = cluster.operator_client();
    assert_eq!(with_cert.licenses().await.unwrap().licenses.len(), 1);
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let follower = *cluster.addrs.keys().find(|id| **id != leader).unwrap();
    let through_follower = vec![format!("https://{}", cluster.addrs[&follower])];
    let name = NodeName::new("app-mtls").unwrap();
    client(&through_follower, &cluster.client_tls())
        .unwrap()
        .allocate(&name, &alloc(3, 4), &new_request_id())
        .await
        .expect("allocate through a follower with mutual TLS");

    // The right CA but no certificate: refused during the handshake.
    let no_cert = ClientTls {
        ca_file: Some(cluster.ca_file()),
        identity: None,
    };
    assert_tls_refusal(
        client(&cluster.endpoints(), &no_cert)
            .unwrap()
            .licenses()
            .await,
    );

    // A certificate from another CA: refused as well.
    let (foreign, _) = foreign_ca(&cluster);
    let dir = cluster.dir.path().join("foreign");
    let identity = foreign
        .write_issued(&dir, "intruder", &["localhost"])
        .unwrap();
    let foreign_cert = ClientTls {
        ca_file: Some(cluster.ca_file()),
        identity: Some(identity),
    };
    assert_tls_refusal(
        client(&cluster.endpoints(), &foreign_cert)
            .unwrap()
            .licenses()
            .await,
    );

    // A node whose certificate another CA signed cannot join: the leader cannot replicate
    // to it, and it receives no entry.
    let foreign_node = foreign
        .node_tls(&dir, "node-4", &["127.0.0.1", "localhost"], true)
        .unwrap();
    let addr = {
        let original = cluster.authority.take();
        let addr = start_node_with(&mut cluster, 4, foreign_node).await;
        cluster.authority = original;
        addr
    };
    let short = Client::with_policy(&cluster.endpoints(), policy(Duration::from_secs(3)))
        .unwrap()
        .with_tls(&cluster.client_tls())
        .unwrap()
        .with_admin_token(common::ADMIN_TOKEN);
    // The learner is added to the membership, but nothing reaches it.
    let _ = short.add_learner(4, &addr.to_string()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = cluster.node(4).metrics();
    assert!(
        metrics.last_log_index.is_none() && metrics.last_applied.is_none(),
        "the foreign node received entries: {:?} / {:?}",
        metrics.last_log_index,
        metrics.last_applied
    );
    // Nor can it call the cluster's Raft routes with its certificate, even trusting the
    // cluster's CA and knowing the cluster secret: the handshake refuses it.
    let identity = licd::tls::Identity {
        cert_file: dir.join("node-4.pem"),
        key_file: dir.join("node-4.key"),
    };
    let config = licd::tls::client_config(&cluster.ca_file(), Some(&identity)).unwrap();
    let http = licd::tls::Outgoing::https(config)
        .apply(reqwest::Client::builder())
        .build()
        .unwrap();
    let refused = http
        .post(format!("https://{}/raft/vote", cluster.addrs[&1]))
        .header(licd::api::CLUSTER_SECRET_HEADER, common::CLUSTER_SECRET)
        .body(Vec::new())
        .send()
        .await
        .expect_err("a foreign peer was let in");
    assert!(
        licd::tls::tls_failure(&refused).is_some(),
        "not refused by TLS: {refused:?}"
    );
    cluster.shutdown().await;
}

/// Starts node `id` with its own `[tls]` section (not the cluster CA's).
async fn start_node_with(
    cluster: &mut Cluster,
    id: u64,
    tls: licd::tls::TlsConfig,
) -> std::net::SocketAddr {
    cluster
        .start_new_node_with(id, move |config| config.tls = Some(tls.clone()))
        .await
}

#[tokio::test]
async fn the_command_line_talks_https_with_ca_file() {
    let cluster = Cluster::start_tls(3, false).await;
    cluster.install(&common::license("LIC-CLI", 64)).await;
    let endpoints = cluster.endpoints().join(",");
    let ca = cluster.ca_file().display().to_string();
    let mac = common::mac(2).to_string();
    let args = [
        "--json",
        "allocate",
        "--node",
        "cli-app",
        "--mac",
        &mac,
        "--cores",
        "4",
        "--endpoints",
        &endpoints,
        "--ca-file",
        &ca,
        "--token",
        common::CLIENT_TOKEN,
    ]
    .map(String::from);
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::run(&args)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", support::text(&out.stderr));

    // The CA from the environment, bare host:port endpoints: HTTPS as well.
    let bare: Vec<String> = cluster.addrs.values().map(ToString::to_string).collect();
    let bare = bare.join(",");
    let ca_env = ca.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = support::licd();
        cmd.args(["check", "--node", "cli-app", "--endpoints", &bare])
            .env("LICD_CA_FILE", &ca_env)
            .env("LICD_TOKEN", common::CLIENT_TOKEN);
        support::run_for(cmd, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", support::text(&out.stderr));

    // Without the CA, the system's roots do not know the cluster: a readable TLS error.
    let endpoints = cluster.endpoints().join(",");
    let out = tokio::task::spawn_blocking(move || {
        support::run(&["check", "--node", "cli-app", "--endpoints", &endpoints])
    })
    .await
    .unwrap();
    support::assert_readable_failure(&out, "TLS");
    cluster.shutdown().await;
}

/// The openssl recipe of docs/operations.md (TLS) makes a CA and a node certificate that
/// a node serves and a client verifies. Skipped where openssl is not installed.
#[tokio::test]
async fn certificates_made_with_the_documented_openssl_recipe_work() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = r#"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
            -subj "/CN=licd cluster CA" -keyout ca.key -out ca.pem
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=licd-1" -keyout node-1.key -out node-1.csr
        openssl x509 -req -in node-1.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
            -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:licd-1.example.com\nextendedKeyUsage=serverAuth,clientAuth') \
            -out node-1.pem
    "#;
    let ran = std::process::Command::new("bash")
        .args(["-c", recipe])
        .current_dir(dir.path())
        .output();
    match ran {
        Ok(out) if out.status.success() => {}
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("openssl: command not found") => {
            println!("skipped: no openssl");
            return;
        }
        other => panic!("the recipe failed: {other:?}"),
    }
    let made = dir.path().to_path_buf();
    // The cluster's clients trust <cluster dir>/ca.pem: it becomes the openssl CA.
    let cluster = Cluster::start_options(
        1,
        common::Options {
            tls: true,
            mutual_tls: false,
        },
        move |config| {
            let ca_file = config.tls.as_ref().unwrap().ca_file.clone();
            std::fs::copy(made.join("ca.pem"), &ca_file).unwrap();
            config.tls = Some(licd::tls::TlsConfig {
                cert_file: made.join("node-1.pem"),
                key_file: made.join("node-1.key"),
                ca_file,
                require_client_cert: false,
            });
        },
    )
    .await;
    let health = cluster.client().cluster_health().await;
    assert!(health.is_ok(), "{health:?}");
    cluster.shutdown().await;
}

/// `licd serve` as a process: the `--tls-*` flags make it serve HTTPS; without them it warns
/// that it serves plain HTTP; half the flags, or a key of another certificate, are readable
/// refusals.
#[tokio::test]
async fn licd_serve_takes_the_tls_flags_and_warns_when_it_serves_plain_http() {
    use licd::process::{SpawnOptions, Supervised};
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("serve test CA").unwrap();
    let tls = ca
        .node_tls(dir.path(), "node-1", &["127.0.0.1"], false)
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let serve = |data: &str, extra: &[&std::ffi::OsStr], log: &std::path::Path| {
        let mut cmd = support::licd();
        cmd.args(["serve", "--node-id", "1", "--listen", &listen, "--data-dir"])
            .arg(dir.path().join(data))
            .args(extra)
            .env("LICD_ADMIN_TOKEN", common::ADMIN_TOKEN)
            .env("LICD_CLUSTER_SECRET", common::CLUSTER_SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        Supervised::spawn(&mut cmd, SpawnOptions::default()).unwrap()
    };
    let tls_flags: Vec<&std::ffi::OsStr> = vec![
        "--tls-cert-file".as_ref(),
        tls.cert_file.as_os_str(),
        "--tls-key-file".as_ref(),
        tls.key_file.as_os_str(),
        "--tls-ca-file".as_ref(),
        tls.ca_file.as_os_str(),
    ];
    let stop = |mut node: Supervised| {
        node.signal(libc::SIGTERM).unwrap();
        let status = node.wait_timeout(Duration::from_secs(20)).unwrap();
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    };

    // HTTPS with the flags: /healthz answers over TLS with the CA.
    let log = dir.path().join("tls.log");
    let node = serve("tls-data", &tls_flags, &log);
    let config = licd::tls::client_config(&tls.ca_file, None).unwrap();
    let http = licd::tls::Outgoing::https(config)
        .apply(reqwest::Client::builder())
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = http.get(format!("https://{listen}/healthz")).send().await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no HTTPS answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(node);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("plain HTTP"), "{text}");

    // Without them: plain HTTP, and a warning that says so.
    let log = dir.path().join("plain.log");
    let node = serve("plain-data", &[], &log);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("serving plain HTTP")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no plain HTTP warning"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(node);

    // Half the flags, and a key that is not the certificate's: refused, readably.
    let run = |extra: Vec<&std::ffi::OsStr>| {
        let mut cmd = support::licd();
        cmd.args(["serve", "--node-id", "1", "--listen", &listen, "--data-dir"])
            .arg(dir.path().join("refused-data"))
            .args(extra)
            .env("LICD_ADMIN_TOKEN", common::ADMIN_TOKEN)
            .env("LICD_CLUSTER_SECRET", common::CLUSTER_SECRET);
        support::run_for(cmd, Duration::from_secs(30))
    };
    let out = run(tls_flags[..2].to_vec());
    support::assert_readable_failure(&out, "--tls-key-file and --tls-ca-file together");
    let other = ca
        .write_issued(dir.path(), "other", &["127.0.0.1"])
        .unwrap();
    let mut mismatched = tls_flags.clone();
    mismatched[3] = other.key_file.as_os_str();
    let out = run(mismatched);
    support::assert_readable_failure(&out, "the key");
    let stderr = support::text(&out.stderr);
    assert!(
        stderr.contains("other.key") && stderr.contains("node-1.pem"),
        "{stderr}"
    );
}
