//! The API contract: docs/openapi.json is the document the code generates (run
//! `LICD_BLESS=1 cargo test --test openapi` to rewrite it after changing the API), it
//! documents every route of the route table but the Raft transport, every `$ref` in it
//! resolves, and a node serves it (unauthenticated) as `licd openapi` prints it.
//! CI also runs schemathesis against a live node with it (.ci/schemathesis.sh).

mod common;
#[path = "support/cli.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;

use common::Cluster;
use serde_json::Value;

const CHECKED_IN: &str = "docs/openapi.json";

/// What is wrong with `checked_in` as the generated document `generated`, if anything: the
/// first line that differs, and how to fix it.
fn staleness(checked_in: &str, generated: &str) -> Option<String> {
    if checked_in == generated {
        return None;
    }
    let line = checked_in
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
    Some(format!(
        "{CHECKED_IN} is not the contract the code generates (first difference at line {}); \
         run `LICD_BLESS=1 cargo test --test openapi` and commit the file",
        line + 1
    ))
}

#[test]
fn the_checked_in_contract_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CHECKED_IN);
    let generated = licd::http::openapi_json();
    if std::env::var_os("LICD_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if let Some(problem) = staleness(&checked_in, &generated) {
        panic!("{problem}");
    }
}

#[test]
fn the_staleness_check_catches_a_changed_field() {
    let generated = licd::http::openapi_json();
    assert_eq!(staleness(&generated, &generated), None);
    let edited = generated.replacen("\"lease_remaining_ms\"", "\"lease_left_ms\"", 1);
    assert_ne!(edited, generated);
    let problem = staleness(&edited, &generated).expect("a renamed field is stale");
    assert!(problem.contains("LICD_BLESS=1"), "{problem}");
    assert!(staleness("", &generated).is_some());
}

fn document() -> Value {
    serde_json::from_str(&licd::http::openapi_json()).unwrap()
}

#[test]
fn every_route_but_the_raft_transport_is_documented_and_nothing_else() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            // Every operation has an id, a success answer and the shared error answer.
            assert!(operation["operationId"].is_string(), "{method} {path}");
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path}"
            );
            assert_eq!(
                responses["500"]["$ref"], "#/components/responses/Error",
                "{method} {path}"
            );
        }
    }
    let routed: BTreeSet<(String, String)> = licd::auth::routes::ROUTES
        .iter()
        .filter(|r| !r.path.starts_with("/raft/"))
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(documented, routed);
}

#[test]
fn what_the_route_table_opens_needs_no_token_in_the_contract_and_the_rest_a_bearer_one() {
    let doc = document();
    for route in licd::auth::routes::ROUTES {
        if route.path.starts_with("/raft/") {
            continue;
        }
        let operation = &doc["paths"][route.path][route.method.to_lowercase()];
        let security = operation["security"].as_array().unwrap();
        let open = route.need == licd::auth::Need::Open;
        assert_eq!(
            security.is_empty(),
            open,
            "{} {}: {security:?}",
            route.method,
            route.path
        );
        let errors = operation["responses"].as_object().unwrap();
        assert_eq!(
            errors.contains_key("401"),
            !open,
            "{} {}",
            route.method,
            route.path
        );
    }
}

fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => refs(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let doc = document();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 50, "{found:?}");
    for target in found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{target} is not local"));
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }
    // And the walk would notice one that does not.
    let mut broken = doc.clone();
    broken["components"]["schemas"]
        .as_object_mut()
        .unwrap()
        .remove("NodeName");
    let mut found = Vec::new();
    refs(&broken, &mut found);
    assert!(
        found
            .iter()
            .any(|t| broken.pointer(t.strip_prefix('#').unwrap()).is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_it_without_a_token_and_licd_openapi_prints_it() {
    let cluster = Cluster::start(1).await;
    let addr = cluster.addrs[&1];
    let response = reqwest::get(format!("http://{addr}/openapi.json"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{:?}",
        response.headers()
    );
    assert_eq!(response.text().await.unwrap(), licd::http::openapi_json());
    cluster.shutdown().await;

    let out = support::run(&["openapi"]);
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    assert_eq!(support::text(&out.stdout), licd::http::openapi_json());
}
