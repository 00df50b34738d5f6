//! The checkers against the histories in `testdata/`, each with its expected verdict.
//!
//! `testdata/<checker>/<case>.jsonl` is a history in the harness's own format (it can be
//! checked by hand with `licd-jepsen check --max-cores 16`); `<case>.expect` beside it says
//! what the checker must conclude. The checker follows from the folder: `linearizable`,
//! `cap`, `durability`, `recovery`, or `all` for [`check_all`]'s report.
//! `testdata/README.md` describes the `.expect` language; in short:
//!
//! ```text
//! # A comment.
//! invalid with info_horizon_ns = 10000000
//!   counterexample.stuck.process = "c1"
//!   violations.*.kind includes "grant-above-cap"
//! ```
//!
//! An unindented line is one run of the checker: `valid`, `invalid` or `unknown`,
//! optionally with [`CheckConfig`] fields changed. The indented lines after it are facts
//! about that run's verdict as JSON: a selector, an operator and a JSON value.
//!
//! Every case is checked even when one fails, and the test reports them all. A folder
//! without a history, a history without expectations (or the reverse), and a folder without
//! both a `valid` and an `invalid` run are errors: the data must keep showing that each
//! checker accepts good histories and catches bad ones.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::test_support::LICENSE;
use super::{
    CheckConfig, DEFAULT_STEP_BUDGET, LinearizabilityOptions, check_all, check_cap,
    check_durability, check_lease, check_linearizable, check_recovery,
};
use crate::history::History;

/// The configuration every run starts from: the license M = 16, m = 4, the default step
/// budget, a recovery bound of 10 s and no `info` horizon.
const BASE_CONFIG: CheckConfig = CheckConfig {
    license: LICENSE,
    step_budget: DEFAULT_STEP_BUDGET,
    recovery_bound_ns: 10_000_000_000,
    info_horizon_ns: None,
    lease: crate::checker::LeaseConfig::DEFAULT,
};

/// The verdict a run expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    /// `valid` is true (for linearizability: a linearization was found).
    Valid,
    /// `valid` is false (for linearizability: refuted, with a counterexample).
    Invalid,
    /// Linearizability only: the budget ran out.
    Unknown,
}

/// One run of a checker and the facts its verdict must show.
#[derive(Debug)]
struct Run {
    /// The `.expect` line, for messages.
    line: usize,
    /// The verdict the run must reach.
    expected: Expected,
    /// The base configuration with the run's `with` settings.
    config: CheckConfig,
    /// The facts its verdict must show.
    facts: Vec<Fact>,
}

/// One fact: `selector op value`.
#[derive(Debug)]
struct Fact {
    /// The `.expect` line, for messages.
    line: usize,
    /// The fact as written, for messages.
    text: String,
    /// The paths joined by `|`, each split at its dots.
    paths: Vec<Vec<String>>,
    /// How the selected value compares with `value`.
    op: Op,
    /// The value to compare with.
    value: Json,
}

/// The operator of a fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `=`: JSON equality, numbers by value.
    Eq,
    /// `!=`: the negation of `=`.
    Ne,
    /// `>=` on numbers.
    Ge,
    /// `<=` on numbers.
    Le,
    /// `>` on numbers.
    Gt,
    /// `<` on numbers.
    Lt,
    /// `includes`: an array has an element equal to the value.
    Includes,
    /// `contains`: a string contains the value.
    Contains,
}

impl Op {
    /// The operator a token spells, if any.
    fn parse(token: &str) -> Option<Op> {
        Some(match token {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            ">" => Op::Gt,
            "<" => Op::Lt,
            "includes" => Op::Includes,
            "contains" => Op::Contains,
            _ => return None,
        })
    }
}

/// Parses an `.expect` file.
fn parse_expect(text: &str) -> Result<Vec<Run>, String> {
    let mut runs: Vec<Run> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !raw.starts_with(char::is_whitespace) {
            runs.push(parse_run(line, trimmed)?);
            continue;
        }
        let fact = parse_fact(line, trimmed)?;
        match runs.last_mut() {
            Some(run) => run.facts.push(fact),
            None => return Err(format!("line {line}: a fact before any verdict line")),
        }
    }
    if runs.is_empty() {
        return Err("no verdict line".into());
    }
    Ok(runs)
}

/// `valid`, `invalid` or `unknown`, optionally `with key = value, key = value`.
fn parse_run(line: usize, text: &str) -> Result<Run, String> {
    let (word, settings) = match text.split_once(" with ") {
        Some((w, s)) => (w.trim(), Some(s)),
        None => (text, None),
    };
    let expected = match word {
        "valid" => Expected::Valid,
        "invalid" => Expected::Invalid,
        "unknown" => Expected::Unknown,
        _ => {
            return Err(format!(
                "line {line}: expected valid, invalid or unknown: {text}"
            ));
        }
    };
    let mut config = serde_json::to_value(BASE_CONFIG).map_err(|e| e.to_string())?;
    for setting in settings.into_iter().flat_map(|s| s.split(',')) {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("line {line}: expected key = value: {setting}"))?;
        let value: Json = serde_json::from_str(value.trim())
            .map_err(|e| format!("line {line}: {}: {e}", value.trim()))?;
        let mut slot = &mut config;
        for part in key.trim().split('.') {
            slot = slot
                .get_mut(part)
                .ok_or_else(|| format!("line {line}: no configuration field {key:?}"))?;
        }
        *slot = value;
    }
    let config = serde_json::from_value(config).map_err(|e| format!("line {line}: {e}"))?;
    Ok(Run {
        line,
        expected,
        config,
        facts: Vec::new(),
    })
}

/// `path | path op value`.
fn parse_fact(line: usize, text: &str) -> Result<Fact, String> {
    let mut selector = String::new();
    let mut rest = text;
    let op = loop {
        let token_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (token, after) = rest.split_at(token_end);
        if token.is_empty() {
            return Err(format!("line {line}: no operator in {text:?}"));
        }
        if let Some(op) = Op::parse(token) {
            rest = after;
            break op;
        }
        selector.push_str(token);
        rest = after.trim_start();
    };
    let value: Json = serde_json::from_str(rest.trim())
        .map_err(|e| format!("line {line}: bad value {:?}: {e}", rest.trim()))?;
    let paths = selector
        .split('|')
        .map(|p| p.split('.').map(str::to_string).collect())
        .collect();
    Ok(Fact {
        line,
        text: text.to_string(),
        paths,
        op,
        value,
    })
}

/// The values `path` selects in `json`: a field name, an array index, `*` for every
/// element, `len` for the length of an array, object or string.
fn select(json: &Json, path: &[String], out: &mut Vec<Json>) -> Result<(), String> {
    let Some((head, tail)) = path.split_first() else {
        out.push(json.clone());
        return Ok(());
    };
    match (head.as_str(), json) {
        ("*", Json::Array(items)) => items.iter().try_for_each(|x| select(x, tail, out)),
        ("len", Json::Array(items)) => select(&Json::from(items.len()), tail, out),
        ("len", Json::Object(map)) if !map.contains_key("len") => {
            select(&Json::from(map.len()), tail, out)
        }
        ("len", Json::String(s)) => select(&Json::from(s.chars().count()), tail, out),
        (index, Json::Array(items)) => match index.parse::<usize>().ok().and_then(|i| items.get(i))
        {
            Some(x) => select(x, tail, out),
            None => Err(format!("no element {index} in an array of {}", items.len())),
        },
        (field, Json::Object(map)) => match map.get(field) {
            Some(x) => select(x, tail, out),
            None => Err(format!("no field {field:?}")),
        },
        (segment, other) => Err(format!("cannot take {segment:?} of {other}")),
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_u64(), y.as_u64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Checks one fact against a verdict.
fn check_fact(fact: &Fact, verdict: &Json) -> Result<(), String> {
    let mut selected = Vec::new();
    for path in &fact.paths {
        select(verdict, path, &mut selected)?;
    }
    let many = fact.paths.len() > 1 || fact.paths.iter().flatten().any(|s| s == "*");
    let actual = if many {
        Json::Array(selected)
    } else {
        selected.pop().unwrap_or(Json::Null)
    };
    let holds = match fact.op {
        Op::Eq => same(&actual, &fact.value),
        Op::Ne => !same(&actual, &fact.value),
        Op::Includes => actual
            .as_array()
            .is_some_and(|items| items.iter().any(|x| same(x, &fact.value))),
        Op::Contains => match (actual.as_str(), fact.value.as_str()) {
            (Some(s), Some(needle)) => s.contains(needle),
            _ => false,
        },
        Op::Ge | Op::Le | Op::Gt | Op::Lt => match (actual.as_f64(), fact.value.as_f64()) {
            (Some(a), Some(b)) => match fact.op {
                Op::Ge => a >= b,
                Op::Le => a <= b,
                Op::Gt => a > b,
                _ => a < b,
            },
            _ => false,
        },
    };
    if holds {
        Ok(())
    } else {
        Err(format!("found {actual}"))
    }
}

/// Runs the checker of folder `checker` with `config`; the verdict as JSON.
fn run_checker(checker: &str, history: &History, config: &CheckConfig) -> Result<Json, String> {
    let options = LinearizabilityOptions {
        step_budget: config.step_budget,
        info_horizon_ns: config.info_horizon_ns,
    };
    let verdict = match checker {
        "linearizable" => {
            serde_json::to_value(check_linearizable(&history.ops, &config.license, &options))
        }
        "cap" => serde_json::to_value(check_cap(&history.ops, &config.license)),
        "durability" => serde_json::to_value(check_durability(&history.ops)),
        "recovery" => serde_json::to_value(check_recovery(history, config.recovery_bound_ns)),
        "lease" => serde_json::to_value(check_lease(history, &config.lease)),
        "all" => serde_json::to_value(check_all(history, config)),
        other => return Err(format!("no checker named {other:?}")),
    };
    verdict.map_err(|e| e.to_string())
}

/// Whether a verdict is the expected one.
fn check_verdict(checker: &str, expected: Expected, verdict: &Json) -> Result<(), String> {
    let valid = verdict["valid"].as_bool();
    let holds = if checker == "linearizable" {
        let result = verdict["result"].as_str();
        match expected {
            Expected::Valid => valid == Some(true) && result == Some("linearizable"),
            Expected::Invalid => {
                valid == Some(false)
                    && result == Some("not-linearizable")
                    && verdict["counterexample"].is_object()
            }
            Expected::Unknown => valid == Some(false) && result == Some("unknown"),
        }
    } else {
        match expected {
            Expected::Valid => valid == Some(true),
            Expected::Invalid => valid == Some(false),
            Expected::Unknown => return Err("only linearizability can be unknown".into()),
        }
    };
    if holds {
        Ok(())
    } else {
        Err(format!("expected {expected:?}"))
    }
}

/// Checks one case; returns its runs' verdicts or every failure, each on its own line.
fn check_case(checker: &str, history: &Path, expect: &Path) -> Result<Vec<Expected>, String> {
    let text = std::fs::read_to_string(expect).map_err(|e| format!("{}: {e}", expect.display()))?;
    let h = History::read(history).map_err(|e| format!("{}: {e}", history.display()))?;
    check_history(checker, &h, &text).map_err(|e| format!("{}: {e}", expect.display()))
}

/// Checks a history against the text of its `.expect` file.
fn check_history(checker: &str, h: &History, expect: &str) -> Result<Vec<Expected>, String> {
    let runs = parse_expect(expect)?;
    let mut failures = String::new();
    for run in &runs {
        let verdict = run_checker(checker, h, &run.config)?;
        let mut problems = Vec::new();
        if let Err(e) = check_verdict(checker, run.expected, &verdict) {
            problems.push(format!("line {}: {e}", run.line));
        }
        for fact in &run.facts {
            if let Err(e) = check_fact(fact, &verdict) {
                problems.push(format!("line {}: {}: {e}", fact.line, fact.text));
            }
        }
        if !problems.is_empty() {
            let pretty = serde_json::to_string_pretty(&verdict).unwrap_or_default();
            let _ = writeln!(
                failures,
                "\n  {}\n  verdict: {pretty}",
                problems.join("\n  ")
            );
        }
    }
    if failures.is_empty() {
        Ok(runs.iter().map(|r| r.expected).collect())
    } else {
        Err(failures)
    }
}

/// The folder of a checker's cases.
fn folder(checker: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(checker)
}

/// Checks every case of one folder; returns how many cases it holds.
fn check_folder(checker: &str) -> usize {
    let dir = folder(checker);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    let mut failures = String::new();
    let mut cases = 0;
    let (mut valid, mut invalid) = (0, 0);
    for path in &files {
        let other = match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") => path.with_extension("expect"),
            Some("expect") => path.with_extension("jsonl"),
            _ => continue,
        };
        if !other.exists() {
            let _ = writeln!(failures, "{}: no {}", path.display(), other.display());
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        cases += 1;
        match check_case(checker, path, &other) {
            Ok(runs) => {
                valid += runs.iter().filter(|&&r| r == Expected::Valid).count();
                invalid += runs.iter().filter(|&&r| r == Expected::Invalid).count();
            }
            Err(e) => {
                let _ = writeln!(failures, "{e}");
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
    assert!(
        valid > 0 && invalid > 0,
        "{}: needs both valid and invalid cases ({valid} valid, {invalid} invalid)",
        dir.display()
    );
    cases
}

// The folders hold at least the cases they held when the checkers' tests moved to data.

#[test]
fn linearizability_cases() {
    assert!(check_folder("linearizable") >= 36);
}

#[test]
fn cap_cases() {
    assert!(check_folder("cap") >= 8);
}

#[test]
fn durability_cases() {
    assert!(check_folder("durability") >= 8);
}

#[test]
fn recovery_cases() {
    assert!(check_folder("recovery") >= 7);
}

#[test]
fn lease_cases() {
    assert!(check_folder("lease") >= 6);
}

#[test]
fn report_cases() {
    assert!(check_folder("all") >= 2);
}

#[test]
fn facts_that_do_not_hold_fail() {
    let verdict = serde_json::json!({
        "valid": false, "n": 3, "s": "abc", "xs": [{"k": 1}, {"k": 2}], "o": {"a": null}
    });
    let holds = |text: &str| check_fact(&parse_fact(1, text).unwrap(), &verdict).is_ok();
    for good in [
        "n = 3",
        "n = 3.0",
        "n != 4",
        "n >= 3",
        "n < 4",
        "s contains \"b\"",
        "s.len = 3",
        "xs.*.k = [1, 2]",
        "xs.*.k includes 2",
        "xs.len = 2",
        "o.a = null",
        "xs.0.k | n = [1, 3]",
    ] {
        assert!(holds(good), "{good}");
    }
    for bad in [
        "n = 4",
        "n > 3",
        "n <= 2",
        "s contains \"z\"",
        "s contains 1",
        "xs.*.k includes 3",
        "xs.len = 3",
        "o.b = null",
        "xs.5.k = 1",
        "n.x = 1",
    ] {
        assert!(!holds(bad), "{bad}");
    }
}

#[test]
fn wrong_verdicts_and_malformed_expectations_fail() {
    let cap = serde_json::json!({"valid": false});
    assert!(check_verdict("cap", Expected::Valid, &cap).is_err());
    assert!(check_verdict("cap", Expected::Invalid, &cap).is_ok());
    assert!(check_verdict("cap", Expected::Unknown, &cap).is_err());
    // A refutation without a counterexample is not the expected `invalid`.
    let lin =
        serde_json::json!({"valid": false, "result": "not-linearizable", "counterexample": null});
    assert!(check_verdict("linearizable", Expected::Invalid, &lin).is_err());
    assert!(check_verdict("linearizable", Expected::Unknown, &lin).is_err());
    for bad in [
        "",
        "# only a comment",
        "  n = 1",
        "maybe",
        "valid with no_such_field = 1",
        "valid with step_budget",
        "valid\n  n 1",
        "valid\n  n = not-json",
    ] {
        assert!(parse_expect(bad).is_err(), "{bad:?}");
    }
    let runs = parse_expect(
        "# comment\nvalid\ninvalid with info_horizon_ns = 5, step_budget = 7\n  n = 1\n",
    )
    .unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].config, BASE_CONFIG);
    assert_eq!(runs[1].config.info_horizon_ns, Some(5));
    assert_eq!(runs[1].config.step_budget, 7);
    assert_eq!(runs[1].facts.len(), 1);
}

#[test]
fn a_case_whose_expectation_is_wrong_fails() {
    let dir = folder("linearizable");
    let h = History::read(dir.join("stale-check-after-release.jsonl")).unwrap();
    assert_eq!(
        check_history("linearizable", &h, "invalid\n"),
        Ok(vec![Expected::Invalid])
    );
    assert!(check_history("linearizable", &h, "valid\n").is_err());
    assert!(check_history("linearizable", &h, "invalid\n  ok_ops = 2\n").is_err());
    assert!(check_history("no-such-checker", &h, "valid\n").is_err());
}
