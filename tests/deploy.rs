//! The example systemd units in docs/deploy/ name only commands and variables licd has.
//! (They are not run here: the test machines have no systemd.)

use std::process::Command;

const LICD: &str = env!("CARGO_BIN_EXE_licd");

fn help(args: &[&str]) -> String {
    let out = Command::new(LICD)
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_units_use_existing_commands_and_variables() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy");
    let mut units = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        units += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display();
        // Every licd command line in the unit, and the variables it is given.
        let commands: Vec<Vec<&str>> = text
            .lines()
            .flat_map(|l| l.split("/usr/local/bin/licd ").skip(1))
            .map(|rest| {
                rest.split_whitespace()
                    .take_while(|w| !w.starts_with('-') && !w.contains('>') && !w.contains(';'))
                    .collect()
            })
            .collect();
        // Each command's --help must succeed; together they name its variables.
        let all_help: String = commands.iter().map(|w| help(w)).collect();
        for line in text.lines() {
            if let Some(assignment) = line.strip_prefix("Environment=") {
                let var = assignment.split('=').next().unwrap();
                assert!(
                    all_help.contains(&format!("env: {var}")),
                    "{name}: {var} is not a variable of {commands:?}"
                );
            }
        }
        if text.contains("Type=notify") {
            assert!(
                commands.iter().any(|w| w == &["serve"] || w == &["agent"]),
                "{name}: Type=notify needs licd serve or licd agent"
            );
        }
    }
    assert_eq!(
        units, 3,
        "docs/deploy/ should hold the node, agent and application units"
    );
}
