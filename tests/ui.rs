//! The dashboard at `/ui`: its assets over HTTP, then the page itself in headless Chromium
//! against a three-node cluster: members, licenses and servers as the leader sees them, the
//! live lease countdown, and the banner once a license server is down, then two, and gone
//! once they are back.
//!
//! The browser test needs Debian's `chromium` (or `LICD_CHROMIUM`); without one it is skipped
//! with a message, unless `LICD_REQUIRE_BROWSER` is set (CI sets it), when it fails.

#[path = "support/browser.rs"]
mod browser;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use browser::Browser;
use common::{CLIENT_TOKEN, Cluster, OPERATOR_TOKEN, license, mac};
use licd::api::AllocateBody;
use licd::client::new_request_id;
use licd_raft::types::{Cores, LicenseId, NodeName, Timestamp};
use serde_json::Value;

/// Where the screenshots of a run go: `target/ui-artifacts/`.
fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("ui-artifacts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_assets_are_served_by_every_node_without_a_token_under_a_strict_policy() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let http = reqwest::Client::new();
    let mut page = String::new();
    for (id, addr) in &cluster.addrs {
        for (path, content_type, marker) in [
            (
                "/ui",
                "text/html; charset=utf-8",
                "<script src=\"/ui/app.js\"",
            ),
            (
                "/ui/app.js",
                "text/javascript; charset=utf-8",
                "/admin/status",
            ),
            ("/ui/style.css", "text/css; charset=utf-8", "#banner"),
        ] {
            let response = http
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            let what = format!("{path} on node {id} (leader {leader})");
            assert_eq!(response.status(), reqwest::StatusCode::OK, "{what}");
            let headers = response.headers().clone();
            assert_eq!(headers["content-type"], content_type, "{what}");
            assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
            assert_eq!(headers["x-frame-options"], "DENY", "{what}");
            let policy = headers["content-security-policy"].to_str().unwrap();
            assert!(policy.contains("script-src 'self'"), "{what}: {policy}");
            assert!(policy.contains("connect-src 'self'"), "{what}: {policy}");
            assert!(!policy.contains("unsafe-inline"), "{what}: {policy}");
            // Served by the node asked, not forwarded: the page is the same everywhere.
            assert_eq!(headers[licd::api::NODE_ID_HEADER], id.to_string(), "{what}");
            let body = response.text().await.unwrap();
            assert!(body.contains(marker), "{what}: {marker} missing");
            if path == "/ui" {
                page = body;
            }
        }
        // Only GET: the assets take no input.
        let response = http.post(format!("http://{addr}/ui")).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
    }
    // The page loads only this node's assets (each a route above), and has no inline script.
    for reference in ["href=\"http", "src=\"http", "//", "@import", "<script>"] {
        assert!(!page.contains(reference), "the page holds {reference}...");
    }
    for asset in ["href=\"/ui/style.css\"", "src=\"/ui/app.js\""] {
        assert!(page.contains(asset), "the page does not load {asset}");
    }
    cluster.shutdown().await;
}

/// Runs `f` on the browser from a test's async context (the browser calls block).
fn with<T>(browser: &mut Browser, f: impl FnOnce(&mut Browser) -> Result<T, String>) -> T {
    match tokio::task::block_in_place(|| f(browser)) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// The count of the `selector`'s elements, as a JavaScript expression.
fn count(selector: &str) -> String {
    format!("document.querySelectorAll({selector:?}).length")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_the_leaders_view_and_warns_once_a_license_server_is_down() {
    let test = "the_dashboard_shows_the_leaders_view_and_warns_once_a_license_server_is_down";
    let Some(chromium) = browser::chromium_or_skip(test) else {
        return;
    };
    let mut cluster = Cluster::start(3).await;
    // Two licenses: one for ever, one expiring in 90 days (the cluster's calendar).
    cluster.install(&license("acme-2026", 64)).await;
    let mut expiring = license("acme-lab", 16);
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    expiring.expires_at = Some(Timestamp(now_ms + 90 * 24 * 3_600_000));
    cluster.install(&expiring).await;
    let client = cluster.client();
    for (name, lic, index, cores) in [
        ("app-1", "acme-2026", 1, 8),
        ("app-2", "acme-2026", 2, 16),
        ("lab-1", "acme-lab", 3, 12),
    ] {
        let body = AllocateBody {
            license: Some(LicenseId::new(lic).unwrap()),
            mac: mac(index),
            cores: Cores::new(cores).unwrap(),
            ttl_ms: Some(120_000),
            request_id: None,
        };
        client
            .allocate(&NodeName::new(name).unwrap(), &body, &new_request_id())
            .await
            .expect("allocate");
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    // The page is loaded from a follower (so it shows the leader's view through forwarding)
    // that stays up; the leader is the node stopped later.
    let page_node = (1..=3).find(|id| *id != leader).unwrap();
    let url = format!("http://{}/ui", cluster.addrs[&page_node]);

    let mut browser = with_launch(&chromium);
    with(&mut browser, |b| b.goto(&url));
    // No token yet: the page asks for one, and names the role it needs.
    with(&mut browser, |b| {
        b.wait_for(
            "the token form",
            "document.body.dataset.state === 'login' && !document.getElementById('login').hidden",
            Duration::from_secs(10),
        )
    });
    // A client token may not read the status: the page says so and asks again.
    submit_token(&mut browser, CLIENT_TOKEN);
    let refusal = with(&mut browser, |b| {
        b.wait_for(
            "the refusal of a client token",
            "document.getElementById('login-error').textContent.includes('FORBIDDEN') \
             && document.getElementById('login-error').textContent",
            Duration::from_secs(10),
        )
    });
    assert!(
        refusal.as_str().unwrap().contains("client token"),
        "{refusal}"
    );
    submit_token(&mut browser, OPERATOR_TOKEN);

    // Three healthy members, the leader marked, no banner.
    with(&mut browser, |b| {
        b.wait_for(
            "three healthy members",
            &format!(
                "{} === 3 && document.body.dataset.state === 'ok'",
                count("#members tr[data-member][data-health=healthy]")
            ),
            Duration::from_secs(15),
        )
    });
    let leader_row = with(&mut browser, |b| {
        b.eval(&format!(
            "document.querySelector('#members tr[data-member=\"{leader}\"]').innerText"
        ))
    });
    assert!(
        leader_row.as_str().unwrap().contains("leader"),
        "{leader_row}"
    );
    let subtitle = text(&mut browser, "#subtitle");
    assert!(
        subtitle.contains(&format!("served by node {page_node}"))
            && subtitle.contains(&format!("leader: node {leader}")),
        "{subtitle}"
    );
    assert!(banner_hidden(&mut browser), "a banner with all nodes up");

    // The licenses with their usage and expiry.
    let acme = text(&mut browser, "[data-license=\"acme-2026\"]");
    assert!(acme.contains("24 of 64 cores in use"), "{acme}");
    assert!(acme.contains("never expires"), "{acme}");
    let lab = text(&mut browser, "[data-license=\"acme-lab\"]");
    assert!(lab.contains("12 of 16 cores in use"), "{lab}");
    assert!(lab.contains("expires") && lab.contains("in 89 d"), "{lab}");
    let width = with(&mut browser, |b| {
        b.eval("document.querySelector('[data-license=\"acme-lab\"] .fill').style.width")
    });
    assert_eq!(width, "75%", "the usage bar of 12 of 16 cores");

    // The servers with their cores and a lease that counts down between polls.
    with(&mut browser, |b| {
        b.wait_for(
            "three servers",
            &format!("{} === 3", count("#servers tr[data-server]")),
            Duration::from_secs(10),
        )
    });
    let app1 = text(&mut browser, "#servers tr[data-server=\"app-1\"]");
    assert!(
        app1.contains("acme-2026") && app1.contains("02:00:00:00:00:01") && app1.contains('8'),
        "{app1}"
    );
    let first = lease_left(&mut browser, "app-1");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = lease_left(&mut browser, "app-1");
    assert!(
        first > 100.0 && first <= 120.0 && second < first && second > first - 5.0,
        "the lease counts down: {first} s, then {second} s"
    );
    with(&mut browser, |b| {
        b.screenshot(&artifacts().join("dashboard-healthy.png"))
    });

    // The leader stops: the page's node forwards to the new leader, whose view has the old
    // one down, and the banner says so.
    cluster.stop(leader).await;
    let title = with(&mut browser, |b| {
        b.wait_for(
            "the banner",
            "!document.getElementById('banner').hidden \
             && document.getElementById('banner-title').textContent.startsWith('Only') \
             && document.getElementById('banner-title').textContent",
            Duration::from_secs(30),
        )
    });
    assert_eq!(title, "Only 2 of 3 license servers are running");
    let detail = text(&mut browser, "#banner");
    assert!(
        detail.contains("one more failure stops licensing")
            && detail.contains(&format!("node {leader} (")),
        "{detail}"
    );
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    with(&mut browser, |b| {
        b.wait_for(
            "the old leader down in the new leader's view",
            &format!(
                "document.querySelector('#members tr[data-member=\"{leader}\"]')\
                 .dataset.health === 'down' && {} === 2",
                count("#members tr[data-member][data-health=healthy]")
            ),
            Duration::from_secs(10),
        )
    });
    let subtitle = text(&mut browser, "#subtitle");
    assert!(
        subtitle.contains(&format!("leader: node {new_leader}")),
        "{subtitle}"
    );
    // The leases survived the failover; the page saw what changed.
    let servers = with(&mut browser, |b| b.eval(&count("#servers tr[data-server]")));
    assert_eq!(servers, 3, "the servers after the failover");
    let events = text(&mut browser, "#events");
    assert!(
        events.contains(&format!("Node {new_leader} leads"))
            && events.contains(&format!("Node {leader} stopped answering the leader")),
        "{events}"
    );

    let shot = artifacts().join("dashboard.png");
    with(&mut browser, |b| b.screenshot(&shot));
    // LICD_UPDATE_SCREENSHOT=1 refreshes the picture the README shows.
    if std::env::var_os("LICD_UPDATE_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png");
        std::fs::copy(&shot, &docs).expect("copy the screenshot into docs/");
    }
    // A second server stops: one is left, which cannot license alone.
    let other = (1..=3)
        .find(|id| *id != leader && *id != page_node)
        .unwrap();
    cluster.stop(other).await;
    let title = with(&mut browser, |b| {
        b.wait_for(
            "the banner with one server left",
            "document.getElementById('banner').dataset.level === 'bad' && \
             ['Only one license server is running', 'The leader does not answer', \
              'No leader: licensing is unavailable']\
             .includes(document.getElementById('banner-title').textContent) && \
             document.getElementById('banner-title').textContent",
            Duration::from_secs(30),
        )
    });
    let detail = text(&mut browser, "#banner");
    if title == "Only one license server is running" {
        assert!(detail.contains("Licensing has stopped"), "{detail}");
    }
    with(&mut browser, |b| {
        b.screenshot(&artifacts().join("dashboard-one-left.png"))
    });

    // Both come back: the banner goes once the leader hears all three again.
    cluster.restart(leader).await;
    cluster.restart(other).await;
    with(&mut browser, |b| {
        b.wait_for(
            "the banner gone with three healthy members",
            &format!(
                "document.getElementById('banner').hidden && {} === 3",
                count("#members tr[data-member][data-health=healthy]")
            ),
            Duration::from_secs(30),
        )
    });
    let events = text(&mut browser, "#events");
    assert!(
        events.contains(&format!("Node {leader} answers the leader again")),
        "{events}"
    );

    let errors = browser.script_errors();
    assert!(errors.is_empty(), "script errors: {errors:?}");
    let violations: Vec<String> = browser
        .log()
        .into_iter()
        .filter(|l| l.contains("Content Security Policy"))
        .collect();
    assert!(violations.is_empty(), "policy violations: {violations:?}");
    browser.close();
    cluster.shutdown().await;
}

fn with_launch(chromium: &std::path::Path) -> Browser {
    match tokio::task::block_in_place(|| Browser::launch(chromium)) {
        Ok(b) => b,
        Err(e) => panic!("cannot drive {}: {e}", chromium.display()),
    }
}

fn submit_token(browser: &mut Browser, token: &str) {
    let script = format!(
        "document.getElementById('token').value = {token:?}; \
         document.getElementById('login-form').requestSubmit(); true"
    );
    with(browser, |b| b.eval(&script));
}

fn text(browser: &mut Browser, selector: &str) -> String {
    let value = with(browser, |b| {
        b.eval(&format!(
            "(document.querySelector({selector:?}) || {{innerText: ''}}).innerText"
        ))
    });
    value.as_str().unwrap_or_default().to_string()
}

fn banner_hidden(browser: &mut Browser) -> bool {
    with(browser, |b| {
        b.eval("document.getElementById('banner').hidden")
    }) == true
}

/// The seconds of lease the page shows for `server`.
fn lease_left(browser: &mut Browser, server: &str) -> f64 {
    let shown = text(
        browser,
        &format!("#servers tr[data-server=\"{server}\"] .countdown"),
    );
    shown
        .trim_end_matches(" left")
        .split_whitespace()
        .collect::<Vec<_>>()
        .as_slice()
        .chunks(2)
        .map(|pair| {
            let n: f64 = pair[0].parse().unwrap_or(f64::NAN);
            match pair.get(1).copied() {
                Some("min") => n * 60.0,
                _ => n,
            }
        })
        .sum::<f64>()
}
