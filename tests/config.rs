//! `licd serve` reads its configuration in layers, as an operator gives it: every key from
//! its `LICD_*` variable alone, the file under the variables under the flags,
//! `--print-config` printing TOML that reads back without a secret in it, and unknown keys
//! and misspelt variables refused by name.

#[path = "support/cli.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use licd::config::NodeConfig;
use licd::config::example;
use licd::config::load::flatten;
use support::{assert_readable_failure, licd, run_for, text};

fn run(cmd: Command) -> Output {
    run_for(cmd, Duration::from_secs(30))
}

fn printed(out: &Output) -> NodeConfig {
    assert!(out.status.success(), "failed: {}", text(&out.stderr));
    toml::from_str(&text(&out.stdout)).unwrap_or_else(|e| {
        panic!(
            "--print-config printed no configuration: {e}\n{}",
            text(&out.stdout)
        )
    })
}

fn minimal_file(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            "node_id = 1\nlisten = \"127.0.0.1:7001\"\ndata_dir = {:?}\n{extra}",
            dir.join("data")
        ),
    )
    .unwrap();
    path
}

#[test]
fn every_key_can_be_given_as_a_variable_alone() {
    let dir = tempfile::tempdir().unwrap();
    let filled = example::filled(dir.path()).unwrap();
    let mut cmd = licd();
    cmd.args(["serve", "--print-config"]);
    for (_, env, value) in example::as_overrides(&filled) {
        cmd.env(env, value);
    }
    assert_eq!(flatten(&printed(&run(cmd))), flatten(&filled));
}

#[test]
fn flags_win_over_variables_which_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = minimal_file(dir.path(), "[raft]\nheartbeat_ms = 40\ntick_ms = \"2s\"\n");
    let serve = |env: &[(&str, &str)], flags: &[&str]| {
        let mut cmd = licd();
        cmd.args(["serve", "--print-config", "--config"]).arg(&file);
        cmd.args(flags).envs(env.iter().copied());
        printed(&run(cmd)).raft
    };
    let file_only = serve(&[], &[]);
    assert_eq!((file_only.heartbeat_ms, file_only.tick_ms), (40, 2_000));
    let env = serve(&[("LICD_HEARTBEAT_MS", "70ms")], &[]);
    assert_eq!((env.heartbeat_ms, env.tick_ms), (70, 2_000));
    let flag = serve(&[("LICD_HEARTBEAT_MS", "70ms")], &["--heartbeat-ms", "90"]);
    assert_eq!((flag.heartbeat_ms, flag.tick_ms), (90, 2_000));
}

#[test]
fn print_config_reads_back_and_shows_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let filled = example::filled(dir.path()).unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, toml::to_string_pretty(&filled).unwrap()).unwrap();
    let admin = "admin-token-from-the-environment-0123";
    let secret_in_file = "cluster-secret-in-its-file-0123456789";
    std::fs::write(filled.cluster_secret_file.as_ref().unwrap(), secret_in_file).unwrap();
    let print = |config: &Path| {
        let mut cmd = licd();
        cmd.args(["serve", "--print-config", "--config"])
            .arg(config)
            .env("LICD_ADMIN_TOKEN", admin);
        run(cmd)
    };
    let first = print(&file);
    let shown = text(&first.stdout);
    assert_eq!(flatten(&printed(&first)), flatten(&filled));
    assert!(
        shown.contains("admin token: from LICD_ADMIN_TOKEN (value not shown)"),
        "{shown}"
    );
    assert!(shown.contains("contents not shown"), "{shown}");
    assert!(
        !shown.contains(admin) && !shown.contains(secret_in_file),
        "{shown}"
    );
    // What it printed is a configuration file `licd serve --config` takes, unchanged.
    let again = dir.path().join("printed.toml");
    std::fs::write(&again, &first.stdout).unwrap();
    let second = print(&again);
    assert_eq!(text(&second.stdout), shown);
}

#[test]
fn unknown_keys_and_misspelt_variables_are_readable_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = minimal_file(dir.path(), "[raft]\nheartbeat = 40\n");
    let mut cmd = licd();
    cmd.args(["serve", "--print-config", "--config"]).arg(&file);
    assert_readable_failure(&run(cmd), "unknown key `raft.heartbeat`");

    let file = minimal_file(dir.path(), "");
    let mut cmd = licd();
    cmd.args(["serve", "--print-config", "--config"])
        .arg(&file)
        .env("LICD_ELECTION_TIMEOUT_MAX", "1s");
    assert_readable_failure(&run(cmd), "did you mean LICD_ELECTION_TIMEOUT_MAX_MS");

    let mut cmd = licd();
    cmd.args(["serve", "--print-config", "--config"])
        .arg(&file)
        .env("LICD_TICK_MS", "soon");
    assert_readable_failure(&run(cmd), "\"soon\" is not a duration");

    // Variables of other programs in the same namespace are not licd's business.
    let mut cmd = licd();
    cmd.args(["serve", "--print-config", "--config"])
        .arg(&file)
        .env("LICD_SERVICE_HOST", "10.0.0.9");
    assert_eq!(printed(&run(cmd)).node_id, 1);
}

#[test]
fn a_switch_turned_off_by_a_variable_replaces_the_file_and_makes_no_section() {
    let dir = tempfile::tempdir().unwrap();
    let tls = "[tls]\ncert_file = \"n.pem\"\nkey_file = \"n.key\"\nca_file = \"ca.pem\"\nrequire_client_cert = true\n";
    let serve = |extra: &str| {
        let file = minimal_file(dir.path(), extra);
        let mut cmd = licd();
        cmd.args(["serve", "--print-config", "--config"])
            .arg(&file)
            .env("LICD_TLS_REQUIRE_CLIENT_CERT", "false");
        printed(&run(cmd))
    };
    assert!(!serve(tls).tls.unwrap().require_client_cert);
    assert!(serve("").tls.is_none());
}
