//! The route table: every route of a node with the [`Need`] of its caller, in one place.
//!
//! The HTTP layer looks each request up here by method and route template (axum's matched
//! path, so `{node}` and `{id}` stay placeholders); a route that is not listed is refused,
//! so forgetting a new route closes it rather than opening it. docs/api.md shows the same
//! table, and tests/access.rs drives every row with every kind of credential.

use super::{Need, Role};

/// One route and what its caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The route template, as the router declares it.
    pub path: &'static str,
    /// What the caller must present.
    pub need: Need,
}

const fn route(method: &'static str, path: &'static str, need: Need) -> Route {
    Route { method, path, need }
}

const CLIENT: Need = Need::Role(Role::Client);
const OPERATOR: Need = Need::Role(Role::Operator);
const ADMIN: Need = Need::Role(Role::Admin);

/// Every route of a node.
pub const ROUTES: &[Route] = &[
    // The license API: application servers and their agents.
    route("PUT", "/v1/nodes/{node}/allocation", CLIENT),
    route("DELETE", "/v1/nodes/{node}/allocation", CLIENT),
    route("POST", "/v1/nodes/{node}/heartbeat", CLIENT),
    route("GET", "/v1/nodes/{node}/check", CLIENT),
    // Reads of every license and every server's allocation (MACs included): operators.
    route("GET", "/v1/licenses", OPERATOR),
    route("GET", "/v1/licenses/{id}", OPERATOR),
    // The usage history names servers and MACs too: operators.
    route("GET", "/v1/events", OPERATOR),
    // The cluster's health in figures (no names, no MACs): the agent shows it, so any role.
    route("GET", "/v1/cluster", Need::AnyRole),
    // The admin API.
    route("POST", "/admin/init", ADMIN),
    route("GET", "/admin/status", OPERATOR),
    route("POST", "/admin/elect", ADMIN),
    route("POST", "/admin/learners", ADMIN),
    route("PUT", "/admin/voters", ADMIN),
    route("POST", "/admin/voters/{id}", ADMIN),
    route("DELETE", "/admin/members/{id}", ADMIN),
    route("POST", "/admin/licenses", ADMIN),
    route("DELETE", "/admin/licenses/{id}", ADMIN),
    route("DELETE", "/admin/nodes/{node}/allocation", ADMIN),
    route("POST", "/admin/snapshot", ADMIN),
    // A backup: the whole state, every license and allocation in it.
    route("GET", "/admin/snapshot", ADMIN),
    // Metrics name the servers' counts and the cluster's state: operators.
    route("GET", "/metrics", OPERATOR),
    // The Raft transport: other nodes, with the cluster secret.
    route("POST", "/raft/append", Need::ClusterSecret),
    route("POST", "/raft/vote", Need::ClusterSecret),
    route("POST", "/raft/snapshot", Need::ClusterSecret),
    // The probes of a load balancer or a service manager.
    route("GET", "/healthz", Need::Open),
    route("GET", "/readyz", Need::Open),
    // The API contract: the same for every cluster, naming nothing of this one.
    route("GET", "/openapi.json", Need::Open),
    // The dashboard's page, script and style sheet: static, holding no data; its script
    // calls the API above with the operator's token.
    route("GET", "/ui", Need::Open),
    route("GET", "/ui/app.js", Need::Open),
    route("GET", "/ui/style.css", Need::Open),
];

/// What a caller of `method path` (a route template) needs; `None` for a route not listed.
pub fn need(method: &str, path: &str) -> Option<Need> {
    ROUTES
        .iter()
        .find(|r| r.method == method && r.path == path)
        .map(|r| r.need)
}

/// Whether `method path` is a write a caller's rate limit counts: a log write of the license
/// API (allocate, release) or any admin change.
pub fn is_limited_write(method: &str, path: &str) -> bool {
    match path {
        "/v1/nodes/{node}/allocation" => method == "PUT" || method == "DELETE",
        p if p.starts_with("/admin/") => method != "GET",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    a.method != b.method || a.path != b.path,
                    "{} {} is listed twice",
                    a.method,
                    a.path
                );
            }
        }
        assert_eq!(need("GET", "/admin/status"), Some(OPERATOR));
        assert_eq!(need("GET", "/admin/nothing"), None);
    }

    #[test]
    fn writes_are_rate_limited_and_reads_are_not() {
        assert!(is_limited_write("PUT", "/v1/nodes/{node}/allocation"));
        assert!(is_limited_write("DELETE", "/v1/nodes/{node}/allocation"));
        assert!(is_limited_write("POST", "/admin/licenses"));
        assert!(!is_limited_write("POST", "/v1/nodes/{node}/heartbeat"));
        assert!(!is_limited_write("GET", "/v1/nodes/{node}/check"));
        assert!(!is_limited_write("GET", "/admin/status"));
    }
}
