//! Signed check answers against a live in-process cluster: signed by the leader, also when
//! asked through a follower; verified by the client library, by `licd check --answer-key`
//! and by the Python snippet of docs/integration.md (run as printed there); refused when a
//! forger on loopback answers instead (no signature, another key, an altered or a replayed
//! answer), and when a node has no key.

#[path = "support/cli.rs"]
mod cli;
mod common;
#[path = "support/forger.rs"]
mod forger;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Cluster, license, mac};
use ed25519_dalek::{SigningKey, VerifyingKey};
use forger::{Forger, Mode};
use licd::api::{CheckBody, ErrorCode};
use licd::client::{Client, ClientError, RetryPolicy, new_request_id};
use licd::signing::{Nonce, SignatureError, verify};
use licd_raft::license_file::{encode_public_key, encode_signing_key};
use licd_raft::types::{Cores, NodeName};
use tempfile::TempDir;

/// Writes a fresh answer-signing key file in `dir`; returns its path and public key.
fn answer_key_file(dir: &Path) -> (PathBuf, VerifyingKey) {
    let key = SigningKey::from_bytes(&rand::random());
    let path = dir.join("answer-signing.key");
    std::fs::write(&path, format!("{}\n", encode_signing_key(&key))).unwrap();
    (path, key.verifying_key())
}

/// A three-node cluster sharing one answer key, with app-1 (MAC 1) allocated.
async fn signed_cluster() -> (Cluster, TempDir, VerifyingKey) {
    let keys = TempDir::new().unwrap();
    let (path, public) = answer_key_file(keys.path());
    let cluster = Cluster::start_with(3, |c| c.answer_signing_key_file = Some(path.clone())).await;
    cluster.install(&license("lic", 16)).await;
    let body = licd::api::AllocateBody {
        license: None,
        mac: mac(1),
        cores: Cores::new(8).unwrap(),
        ttl_ms: None,
        request_id: None,
    };
    cluster
        .client()
        .allocate(&app(1), &body, &new_request_id())
        .await
        .expect("allocate app-1");
    (cluster, keys, public)
}

fn app(i: u8) -> NodeName {
    NodeName::new(format!("app-{i}")).unwrap()
}

/// A client of one endpoint only, verifying against `keys` (none: not verifying).
fn client_of(endpoint: &str, keys: &[VerifyingKey]) -> Client {
    let policy = RetryPolicy {
        deadline: Duration::from_secs(5),
        ..RetryPolicy::default()
    };
    Client::with_policy(&[endpoint], policy)
        .unwrap()
        .with_token(common::CLIENT_TOKEN)
        .with_answer_keys(keys.to_vec())
}

fn bad_signature(result: Result<CheckBody, ClientError>) -> SignatureError {
    match result {
        Err(ClientError::BadSignature(why)) => why,
        other => panic!("expected a bad signature, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_signed_by_the_leader_also_through_a_follower() {
    let (cluster, _keys, public) = signed_cluster().await;
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let follower = *cluster.addrs.keys().find(|id| **id != leader).unwrap();
    for id in [leader, follower] {
        let client = client_of(&cluster.addrs[&id].to_string(), &[public]);
        let body = client.check(&app(1), Some(mac(1))).await.expect("check");
        assert_eq!(body.check.code, ErrorCode::Valid, "asked node {id}");
        assert_eq!(
            body.leader_id, leader,
            "the leader answers, node {id} forwards"
        );
        let signature = body.signature.as_ref().expect("signed");
        assert_eq!(signature.scheme, "licd-check-v1");
        assert_eq!(signature.key_id, licd::signing::key_id(&public));
        // A signed "not licensed" verifies too.
        let body = client.check(&app(9), None).await.expect("check app-9");
        assert_eq!(body.check.code, ErrorCode::NotAllocated);
        assert!(!body.check.valid);
    }

    // The caller's own nonce is echoed and covered.
    let client = client_of(&cluster.addrs[&follower].to_string(), &[public]);
    let nonce = Nonce::parse(&"5a".repeat(20)).unwrap();
    let body = client
        .check_with_nonce(&app(1), None, &nonce)
        .await
        .unwrap();
    assert_eq!(body.signature.as_ref().unwrap().nonce, "5a".repeat(20));
    let other = Nonce::random();
    assert_eq!(
        verify(&body, &app(1), None, Some(&other), &[public]),
        Err(SignatureError::WrongNonce)
    );

    // Over plain HTTP: a bad nonce is a 400 JSON error; no nonce, a signature over none.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{}/v1/nodes/app-1/check", cluster.addrs[&follower]);
    for bad in ["zz", "abcd", &"ab".repeat(65)] {
        let response = http
            .get(format!("{base}?nonce={bad}"))
            .bearer_auth(common::CLIENT_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "nonce {bad:?}");
        let error: licd::api::ErrorBody = response.json().await.unwrap();
        assert_eq!(error.code, ErrorCode::BadRequest);
        assert!(error.message.contains("nonce"), "{}", error.message);
    }
    // A parameter the node does not know is refused too (why nodes are upgraded before
    // the clients that send a nonce: docs/operations.md).
    let response = http
        .get(format!("{base}?colour=red"))
        .bearer_auth(common::CLIENT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: CheckBody = http
        .get(&base)
        .bearer_auth(common::CLIENT_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body.signature.as_ref().unwrap().nonce, "");
    assert_eq!(verify(&body, &app(1), None, None, &[public]), Ok(()));
    cluster.shutdown().await;
}

/// What the client must say of a forger's answer.
type Expected = fn(&SignatureError) -> bool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_answers_are_refused_by_the_client_library() {
    let (cluster, _keys, public) = signed_cluster().await;
    let forger = Forger::start(&cluster.endpoints()[0]).await;
    let verifying = client_of(&forger.endpoint(), &[public]);
    let trusting = client_of(&forger.endpoint(), &[]);

    // Relayed as it is, the cluster's answer verifies (the forger can be told apart only by
    // what it changes). App-2 is not allocated: the cluster says so.
    let real = verifying
        .check(&app(2), Some(mac(2)))
        .await
        .expect("relayed");
    assert_eq!(real.check.code, ErrorCode::NotAllocated);

    let expectations: [(Mode, Expected); 3] = [
        (Mode::Unsigned, |e| *e == SignatureError::Missing),
        (Mode::OtherKey, |e| {
            matches!(e, SignatureError::UnknownKey(_))
        }),
        (Mode::Altered, |e| *e == SignatureError::Invalid),
    ];
    for (mode, expected) in expectations {
        forger.set_mode(mode);
        // A client that verifies nothing is fooled: the forger says VALID.
        let fooled = trusting.check(&app(2), Some(mac(2))).await.expect("forged");
        assert_eq!(fooled.check.code, ErrorCode::Valid, "{mode:?}");
        let why = bad_signature(verifying.check(&app(2), Some(mac(2))).await);
        assert!(expected(&why), "{mode:?}: {why:?}");
        forger.set_mode(Mode::Pass);
    }

    // A replay: app-1's VALID answer, recorded while it held its cores, replayed after it
    // released them.
    let recorded = verifying.check(&app(1), None).await.expect("relayed");
    assert_eq!(recorded.check.code, ErrorCode::Valid);
    cluster
        .admin_client()
        .force_release(&app(1), &new_request_id())
        .await
        .expect("release app-1");
    forger.set_mode(Mode::Replay);
    let fooled = trusting.check(&app(1), None).await.expect("replayed");
    assert_eq!(fooled.check.code, ErrorCode::Valid);
    assert_eq!(
        bad_signature(verifying.check(&app(1), None).await),
        SignatureError::WrongNonce
    );
    forger.set_mode(Mode::Pass);
    let now = verifying.check(&app(1), None).await.expect("relayed");
    assert_eq!(now.check.code, ErrorCode::NotAllocated);

    // An answer signed by another cluster's key: refused by its key id.
    let (_, stranger) = answer_key_file(TempDir::new().unwrap().path());
    let elsewhere = client_of(&cluster.endpoints()[1], &[stranger]);
    assert!(matches!(
        bad_signature(elsewhere.check(&app(1), None).await),
        SignatureError::UnknownKey(_)
    ));
    // Several keys (a key being replaced): one of them signing is enough.
    let both = client_of(&cluster.endpoints()[1], &[stranger, public]);
    assert_eq!(
        both.check(&app(1), None).await.unwrap().check.code,
        ErrorCode::NotAllocated
    );
    drop(forger);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_key_answers_unsigned_and_a_verifying_client_refuses_it() {
    let cluster = Cluster::start(1).await;
    let endpoint = cluster.endpoints()[0].clone();
    let body = client_of(&endpoint, &[])
        .check(&app(1), None)
        .await
        .expect("unsigned answer");
    assert!(body.signature.is_none());
    assert_eq!(body.check.code, ErrorCode::NoLicense);
    let (_, public) = answer_key_file(TempDir::new().unwrap().path());
    assert_eq!(
        bad_signature(client_of(&endpoint, &[public]).check(&app(1), None).await),
        SignatureError::Missing
    );
    cluster.shutdown().await;
}

/// The Python code of docs/integration.md, between its markers, without the fences.
fn python_snippet() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/integration.md"))
        .unwrap();
    let start = doc
        .find("<!-- verify-check:begin -->")
        .expect("begin marker");
    let end = doc.find("<!-- verify-check:end -->").expect("end marker");
    let block = &doc[start..end];
    let code_start = block.find("```python\n").expect("a python block") + "```python\n".len();
    let code_end = block.rfind("```").expect("the block's end");
    block[code_start..code_end].to_string()
}

/// Runs the documented snippet's `licensed(endpoint, node, key, mac)`: `valid`, `invalid` or
/// `refused`, with what Python printed on stderr.
async fn python_says(
    key: &VerifyingKey,
    endpoint: &str,
    node: &str,
    mac: &str,
) -> (String, String) {
    let script = format!(
        "{}\nimport sys\ntry:\n    outcome = 'valid' if licensed(*sys.argv[1:6]) else 'invalid'\n\
         except Exception as e:\n    print(type(e).__name__, e, file=sys.stderr)\n    \
         outcome = 'refused'\nprint(outcome)\n",
        python_snippet()
    );
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg("-c")
        .arg(script)
        .args([
            &format!("http://{endpoint}"),
            common::CLIENT_TOKEN,
            node,
            &encode_public_key(key),
            mac,
        ])
        .env("no_proxy", "*")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("python3 finishes within 30 s")
        .expect("python3 runs (CI installs python3-cryptography)");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success() && !stderr.contains("ModuleNotFoundError"),
        "python3 failed: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_python_snippet_verifies_live_answers_and_refuses_forged_ones() {
    let (cluster, _keys, public) = signed_cluster().await;
    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let follower = *cluster.addrs.keys().find(|id| **id != leader).unwrap();
    let leader_addr = cluster.addrs[&leader].to_string();
    let follower_addr = cluster.addrs[&follower].to_string();
    let mac1 = mac(1).to_string();

    let (said, why) = python_says(&public, &leader_addr, "app-1", &mac1).await;
    assert_eq!(said, "valid", "{why}");
    let (said, why) = python_says(&public, &follower_addr, "app-1", "").await;
    assert_eq!(said, "valid", "{why}");
    let (said, why) = python_says(&public, &follower_addr, "app-9", "").await;
    assert_eq!(said, "invalid", "a signed NOT_ALLOCATED: {why}");
    let (_, stranger) = answer_key_file(TempDir::new().unwrap().path());
    let (said, why) = python_says(&stranger, &leader_addr, "app-1", "").await;
    assert_eq!(said, "refused", "another key: {why}");

    let forger = Forger::start(&follower_addr).await;
    // Relayed, the cluster's answer for app-9 is a signed "not licensed".
    let (said, why) = python_says(&public, &forger.endpoint(), "app-9", "").await;
    assert_eq!(said, "invalid", "{why}");
    for mode in [Mode::Unsigned, Mode::OtherKey, Mode::Altered, Mode::Replay] {
        forger.set_mode(mode);
        let (said, why) = python_says(&public, &forger.endpoint(), "app-9", "").await;
        assert_eq!(said, "refused", "{mode:?}: {why}");
        forger.set_mode(Mode::Pass);
    }
    drop(forger);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licd_check_with_an_answer_key_exits_3_on_a_forged_answer() {
    let (cluster, _keys, public) = signed_cluster().await;
    let forger = Forger::start(&cluster.endpoints()[0]).await;
    let key = encode_public_key(&public);
    let run = |endpoint: String, key: String| async move {
        tokio::task::spawn_blocking(move || {
            let mut cmd = cli::licd();
            cmd.args(["check", "--node", "app-1", "--timeout-ms", "5000"])
                .args(["--endpoints", &endpoint, "--answer-key", &key])
                .env("LICD_TOKEN", common::CLIENT_TOKEN);
            cli::run_for(cmd, Duration::from_secs(60))
        })
        .await
        .unwrap()
    };

    let out = run(forger.endpoint(), key.clone()).await;
    assert_eq!(out.status.code(), Some(0), "{}", cli::text(&out.stderr));
    assert!(
        cli::text(&out.stdout).contains("signature: verified"),
        "{}",
        cli::text(&out.stdout)
    );
    for mode in [Mode::Unsigned, Mode::OtherKey, Mode::Altered, Mode::Replay] {
        forger.set_mode(mode);
        let out = run(forger.endpoint(), key.clone()).await;
        assert_eq!(
            out.status.code(),
            Some(3),
            "{mode:?}: {}",
            cli::text(&out.stdout)
        );
        cli::assert_readable_failure(&out, "BAD_SIGNATURE");
        forger.set_mode(Mode::Pass);
    }
    let out = run(forger.endpoint(), "not-a-key".into()).await;
    assert_eq!(out.status.code(), Some(2));
    cli::assert_readable_failure(&out, "--answer-key");
    drop(forger);
    cluster.shutdown().await;
}
