//! The `licd` command line, run as a process: every `--help`, completions and man pages, the
//! offline license file round trip, and readable errors without panics (`licd dev` is in
//! tests/dev.rs).

#[path = "support/cli.rs"]
mod support;

use std::path::Path;

use support::{assert_readable_failure, run, text};

#[test]
fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["dev"],
        &["cluster"],
        &["cluster", "init"],
        &["cluster", "add"],
        &["cluster", "promote"],
        &["cluster", "remove"],
        &["cluster", "status"],
        &["cluster", "voters"],
        &["cluster", "elect"],
        &["cluster", "snapshot"],
        &["cluster", "force-release"],
        &["snapshot"],
        &["snapshot", "save"],
        &["snapshot", "inspect"],
        &["snapshot", "restore"],
        &["license"],
        &["license", "keygen"],
        &["license", "issue"],
        &["license", "inspect"],
        &["license", "install"],
        &["license", "list"],
        &["license", "remove"],
        &["allocate"],
        &["heartbeat"],
        &["release"],
        &["check"],
        &["answer-key"],
        &["answer-key", "new"],
        &["answer-key", "public"],
        &["token"],
        &["token", "new"],
        &["completions"],
        &["man"],
    ];
    for args in commands {
        let mut full: Vec<&str> = args.to_vec();
        full.push("--help");
        let out = run(&full);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{full:?}: {}", text(&out.stderr));
        assert!(stdout.contains("Usage:"), "{full:?}: {stdout}");
    }
    // The cluster-talking commands share the client options.
    let out = run(&["check", "--help"]);
    let stdout = text(&out.stdout);
    for option in [
        "--endpoints",
        "--admin-token",
        "--token",
        "--timeout-ms",
        "--json",
    ] {
        assert!(stdout.contains(option), "check --help lacks {option}");
    }
    for args in [&["check", "--help"][..], &["agent", "--help"][..]] {
        let out = run(args);
        assert!(text(&out.stdout).contains("--answer-key"), "{args:?}");
    }
}

#[test]
fn answer_keys_are_generated_once_and_their_public_key_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("answer.key");
    let path = file.to_str().unwrap();
    let out = run(&["--json", "answer-key", "new", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let public = made["public_key"].as_str().expect("public_key").to_string();
    assert_eq!(made["key_id"].as_str().map(str::len), Some(16));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = run(&["answer-key", "public", path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&public), "{}", text(&out.stdout));
    // The same key signs what the public key verifies.
    let key = licd_raft::license_file::decode_signing_key(&std::fs::read_to_string(&file).unwrap())
        .unwrap();
    assert_eq!(
        licd_raft::license_file::encode_public_key(&key.verifying_key()),
        public
    );
    // Never overwritten; a file that is no key is a readable error.
    assert_readable_failure(&run(&["answer-key", "new", path]), "already exists");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "not a key\n").unwrap();
    assert_readable_failure(
        &run(&["answer-key", "public", junk.to_str().unwrap()]),
        "not an answer-signing key",
    );
    // A node refuses to start on it, before opening its database.
    let data = dir.path().join("data");
    let out = run(&[
        "serve",
        "--node-id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--answer-signing-key-file",
        junk.to_str().unwrap(),
    ]);
    assert_readable_failure(&out, "not an answer-signing key");
    assert!(!data.exists(), "the database was opened");
    let out = run(&["agent", "--help"]);
    assert!(text(&out.stdout).contains("--token-file"));
}

/// `licd token new` prints a token and the configuration entry with its hash, which a node
/// configuration accepts; a bad role is a readable error.
#[test]
fn token_new_prints_a_token_and_its_hashed_config_entry() {
    let out = run(&[
        "--json",
        "token",
        "new",
        "--role",
        "client",
        "--name",
        "app-servers",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = answer["token"].as_str().unwrap();
    let sha256 = answer["sha256"].as_str().unwrap();
    assert_eq!(sha256, licd::auth::hash_token(token));
    let config = answer["config"].as_str().unwrap();
    assert!(
        config.contains(sha256) && !config.contains(token),
        "{config}"
    );
    assert!(config.contains("role = \"client\"") && config.contains("app-servers"));
    assert_eq!(answer["env"], format!("client:{sha256}:app-servers"));

    let out = run(&["token", "new", "--role", "root"]);
    assert_readable_failure(&out, "unknown role");
}

fn keygen(path: &Path) -> String {
    let out = run(&[
        "--json",
        "license",
        "keygen",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("keygen JSON");
    answer["public_key"]
        .as_str()
        .expect("public_key")
        .to_string()
}

#[test]
fn completions_and_man_pages_come_from_the_command_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for word in ["licd", "cluster", "force-release", "heartbeat"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["man", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = std::fs::read_to_string(dir.path().join("licd.1")).unwrap();
    assert!(page.contains(".TH licd 1"), "{page}");
    let serve = std::fs::read_to_string(dir.path().join("licd-serve.1")).unwrap();
    assert!(
        serve.contains("lease\\-checkpoint\\-ms") || serve.contains("lease-checkpoint-ms"),
        "{serve}"
    );
    let out = run(&["completions", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn license_files_round_trip_offline() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vendor.key");
    let public = keygen(&key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the signing key must be private");
    }
    // A second keygen to the same file is refused and leaves the key as it was.
    let before = std::fs::read_to_string(&key).unwrap();
    let again = run(&["license", "keygen", "--out", key.to_str().unwrap()]);
    assert_readable_failure(&again, "already exists");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), before);

    let lic = dir.path().join("acme.lic");
    let out = run(&[
        "license",
        "issue",
        "--key",
        key.to_str().unwrap(),
        "--id",
        "acme-1",
        "--customer",
        "ACME Corp",
        "--max-cores",
        "64",
        "--min-cores-per-node",
        "4",
        "--mac",
        "02:00:00:00:00:01",
        "--mac",
        "AA-BB-CC-DD-EE-FF",
        "--feature",
        "ocr",
        "--expires-in-days",
        "30",
        "--serial",
        "3",
        "--out",
        lic.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = std::fs::read_to_string(&lic).unwrap();
    assert!(file.starts_with("-----BEGIN LICD LICENSE-----"), "{file}");

    // Inspect without keys shows the content; with the vendor key it verifies.
    let out = run(&["license", "inspect", lic.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for expected in [
        "acme-1",
        "ACME Corp",
        "aa:bb:cc:dd:ee:ff",
        "ocr",
        "not verified",
    ] {
        assert!(
            shown.contains(expected),
            "inspect lacks {expected:?}:\n{shown}"
        );
    }
    let out = run(&[
        "--json",
        "license",
        "inspect",
        lic.to_str().unwrap(),
        "--trusted-key",
        &public,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect JSON");
    assert_eq!(answer["verified"], true);
    assert_eq!(answer["license"]["max_cores"], 64);
    assert_eq!(answer["license"]["min_cores_per_node"], 4);
    assert_eq!(answer["license"]["serial"], 3);
    assert_eq!(answer["signed_by"], public.as_str());

    // Another vendor's key: verification fails, readably, with exit code 1.
    let other = keygen(&dir.path().join("other.key"));
    let out = run(&[
        "license",
        "inspect",
        lic.to_str().unwrap(),
        "--trusted-key",
        &other,
    ]);
    assert_readable_failure(&out, "not a trusted vendor key");
    assert_eq!(out.status.code(), Some(1));

    // An altered file is not a license file any more.
    let broken = dir.path().join("broken.lic");
    std::fs::write(&broken, file.replace("-----END LICD LICENSE-----", "")).unwrap();
    let out = run(&["license", "inspect", broken.to_str().unwrap()]);
    assert_readable_failure(&out, "is not a valid license file");

    // An inconsistent license is refused before it is signed.
    let out = run(&[
        "license",
        "issue",
        "--key",
        key.to_str().unwrap(),
        "--id",
        "bad",
        "--customer",
        "x",
        "--max-cores",
        "2",
        "--min-cores-per-node",
        "4",
        "--mac",
        "02:00:00:00:00:01",
    ]);
    assert_readable_failure(&out, "min_cores_per_node");
}

#[test]
fn bad_input_and_unreachable_clusters_are_readable_errors() {
    let out = run(&[
        "allocate",
        "--node",
        "app-1",
        "--mac",
        "not-a-mac",
        "--cores",
        "4",
        "--endpoints",
        "127.0.0.1:0",
    ]);
    assert_readable_failure(&out, "mac address");

    let out = run(&["allocate", "--node", "app 1", "--endpoints", "127.0.0.1:1"]);
    assert_readable_failure(&out, "node id");

    let out = run(&[
        "allocate",
        "--node",
        "app-1",
        "--cores",
        "0",
        "--mac",
        "02:00:00:00:00:01",
    ]);
    assert_readable_failure(&out, "cores");

    // Nothing listens on port 1: the deadline passes and the error says so.
    let out = run(&[
        "check",
        "--node",
        "app-1",
        "--endpoints",
        "127.0.0.1:0",
        "--timeout-ms",
        "300",
    ]);
    assert_readable_failure(&out, "UNAVAILABLE");
    // ... with its own exit code, apart from "not licensed" (1) and bad input (2).
    assert_eq!(out.status.code(), Some(3));
    let out = run(&["check", "--node", "bad name", "--endpoints", "127.0.0.1:1"]);
    assert_ne!(out.status.code(), Some(3));
    assert_ne!(out.status.code(), Some(0));

    // With --json the error is a JSON body on stdout as well.
    let out = run(&[
        "--json",
        "check",
        "--endpoints",
        "127.0.0.1:0",
        "--timeout-ms",
        "300",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("error JSON");
    assert_eq!(body["code"], "UNAVAILABLE");

    // Admin commands without a token say what is missing.
    let out = run(&["cluster", "status", "--endpoints", "127.0.0.1:1"]);
    assert_readable_failure(&out, "admin token");
}
