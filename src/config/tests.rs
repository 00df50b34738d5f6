//! Every key has its three forms, and the README's table is the one the keys make.

use std::collections::{BTreeMap, BTreeSet};

use clap::{CommandFactory, Parser};

use super::keys::{KEYS, markdown_table};
use super::load::{Overrides, flatten, load};
use super::{NodeConfig, example};
use crate::cli::Cli;

fn serve_command() -> clap::Command {
    Cli::command()
        .find_subcommand("serve")
        .expect("a serve subcommand")
        .clone()
}

#[test]
fn every_key_of_the_configuration_has_a_flag_and_a_variable() {
    let dir = tempfile::tempdir().unwrap();
    let filled = example::filled(dir.path()).unwrap();
    // Every key the configuration writes is in the list, and nothing else is.
    let written: BTreeSet<String> = flatten(&filled).into_keys().collect();
    let listed: BTreeSet<String> = KEYS.iter().map(|k| k.path.to_string()).collect();
    assert_eq!(
        written, listed,
        "config::keys::KEYS must list every key of NodeConfig"
    );
    // Each has its flag and its variable on `licd serve`, all distinct.
    let serve = serve_command();
    let mut flags = BTreeSet::new();
    let mut vars = BTreeSet::new();
    for key in KEYS {
        let arg = serve
            .get_arguments()
            .find(|a| a.get_id() == key.path)
            .unwrap_or_else(|| panic!("{} has no flag", key.path));
        assert_eq!(arg.get_long(), Some(key.flag), "{}", key.path);
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        assert_eq!(env.as_deref(), Some(key.env), "{}", key.path);
        assert!(key.env.starts_with("LICD_"), "{}", key.env);
        assert!(flags.insert(key.flag), "flag --{} used twice", key.flag);
        assert!(vars.insert(key.env), "variable {} used twice", key.env);
    }
    // And `licd serve` has no flag that is not a key, but --config and --print-config.
    let others: Vec<_> = serve
        .get_arguments()
        .map(|a| a.get_id().as_str().to_string())
        .filter(|id| !listed.contains(id))
        .collect();
    assert_eq!(others, ["config", "print-config"]);
}

#[test]
fn every_key_can_be_given_as_a_flag_alone() {
    let dir = tempfile::tempdir().unwrap();
    let filled = example::filled(dir.path()).unwrap();
    let mut argv = vec!["licd".to_string(), "serve".to_string()];
    for (flag, _, _) in example::as_overrides(&filled) {
        argv.push(flag);
    }
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let crate::cli::Command::Serve(args) = cli.command else {
        panic!("not serve")
    };
    assert!(
        args.overrides.env.is_empty(),
        "flags only: {:?}",
        args.overrides.env
    );
    let loaded = args.into_config().unwrap();
    assert_eq!(flatten(&loaded), flatten(&filled));
}

/// The TOML file alone, every key at its non-default value, reads back as the same
/// configuration; then a flag replaces one key and adds nothing else.
#[test]
fn a_file_holds_every_key_and_a_flag_replaces_one() {
    let dir = tempfile::tempdir().unwrap();
    let filled = example::filled(dir.path()).unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, toml::to_string_pretty(&filled).unwrap()).unwrap();
    let loaded = load(Some(&file), &Overrides::default()).unwrap();
    assert_eq!(flatten(&loaded), flatten(&filled));

    let cli = Cli::try_parse_from([
        "licd",
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--trusted-key",
        &filled.trusted_keys[1],
        "--heartbeat-ms",
        "75ms",
    ])
    .unwrap();
    let crate::cli::Command::Serve(args) = cli.command else {
        panic!("not serve")
    };
    let merged = args.into_config().unwrap();
    // Replaced, not appended to the file's two keys.
    assert_eq!(merged.trusted_keys, [filled.trusted_keys[1].clone()]);
    assert_eq!(merged.raft.heartbeat_ms, 75);
    let mut expected = flatten(&filled);
    expected.insert(
        "trusted_keys".into(),
        toml::Value::Array(vec![filled.trusted_keys[1].clone().into()]),
    );
    expected.insert("raft.heartbeat_ms".into(), toml::Value::Integer(75));
    assert_eq!(flatten(&merged), expected);
}

#[test]
fn unknown_and_misplaced_keys_in_the_file_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    for (text, expected) in [
        (
            "node_id = 1\nlisten = \"127.0.0.1:1\"\ndata_dir = \"d\"\nlistne = \"x\"\n",
            "`listne`",
        ),
        (
            "node_id = 1\nlisten = \"127.0.0.1:1\"\ndata_dir = \"d\"\n[raft]\nheartbeat = 5\n",
            "`raft.heartbeat`",
        ),
        (
            "node_id = 1\nlisten = \"127.0.0.1:1\"\ndata_dir = \"d\"\nheartbeat_ms = 5\n",
            "`heartbeat_ms`",
        ),
        (
            "node_id = 1\nlisten = \"127.0.0.1:1\"\ndata_dir = \"d\"\n[raft]\ntick_ms = \"often\"\n",
            "not a duration",
        ),
        (
            "listen = \"127.0.0.1:1\"\ndata_dir = \"d\"\n",
            "--node-id or as LICD_NODE_ID",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let err = load(Some(&file), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
}

/// The defaults of a configuration that sets only its required keys, as the README shows
/// them.
fn defaults() -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        "node_id = 1\nlisten = \"127.0.0.1:1\"\ndata_dir = \"d\"\n",
    )
    .unwrap();
    let minimal: NodeConfig = load(Some(&file), &Overrides::default()).unwrap();
    flatten(&minimal)
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "node_id" | "listen" | "data_dir"))
        .map(|(k, v)| (k, v.to_string()))
        .collect()
}

#[test]
fn the_readme_configuration_table_is_the_one_the_keys_make() {
    const START: &str = "<!-- configuration table: generated from src/config/keys.rs -->\n";
    const END: &str = "<!-- end of the configuration table -->";
    let readme = include_str!("../../README.md");
    let expected = markdown_table(&defaults());
    let start = readme.find(START).map(|i| i + START.len());
    let end = readme.find(END);
    let found = match (start, end) {
        (Some(s), Some(e)) if s <= e => &readme[s..e],
        _ => "",
    };
    assert!(
        found == expected,
        "README.md's configuration table (between {START:?} and {END:?}) differs from the \
         keys; replace it with:\n{START}{expected}{END}"
    );
}
