//! The API contract: an OpenAPI 3.1 document built from the wire types of [`crate::api`]
//! (their schemas are derived from the structs, so a field added to a body is in the
//! contract) and one entry per route of [`crate::auth::routes::ROUTES`] (tests/openapi.rs
//! holds the two lists equal, and docs/openapi.json equal to [`document`]).
//!
//! Served at `GET /openapi.json` and printed by `licd openapi`. The Raft transport
//! (`/raft/...`) is between nodes only and not part of it.

use std::collections::BTreeMap;

use axum::response::IntoResponse;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, LicenseBuilder, ObjectBuilder, OpenApi,
    OpenApiBuilder, Paths, Ref, RefOr, Required, Response, ResponseBuilder, Schema, Type,
};
use utoipa::{IntoParams, ToSchema};

use crate::api::*;
use crate::auth::routes::ROUTES;
use licd_raft::types::{LicenseId, NodeName, RequestId};

/// The name of the bearer-token security scheme.
const BEARER: &str = "bearer";

/// The error statuses a route of the license or admin API can answer, each with
/// [`ErrorBody`]: a bad request, a missing or refused credential, a missing thing, a
/// refusal or conflict, a body too large or of the wrong type, a rate limit, an internal
/// failure, and no leader or past the deadline.
const API_ERRORS: &[u16] = &[400, 401, 403, 404, 409, 413, 415, 429, 500, 503];

/// The name of the one error response every error status refers to.
const ERROR: &str = "Error";

/// The error statuses of an open route (the probes, the dashboard's assets, this document).
const OPEN_ERRORS: &[u16] = &[500];

/// The whole contract.
pub fn document() -> OpenApi {
    let mut doc = Doc::default();
    // The schemas the parameters (and the IntoParams-derived ones) reference.
    doc.register::<NodeName>();
    doc.register::<LicenseId>();
    doc.register::<RequestId>();
    doc.register::<LeaseToken>();
    doc.register::<licd_raft::types::MacAddr>();
    operations(&mut doc);
    let mut components = ComponentsBuilder::new().security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A client, operator or admin token (docs/operations.md: Access control).",
                ))
                .build(),
        ),
    );
    components = components.response(
        ERROR,
        ResponseBuilder::new()
            .description(
                "An error: `code` names it for programs, `message` says it for people; a \
                 refused allocation adds its figures, a 429 or 503 `retry_after_ms`.",
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(schema_ref::<ErrorBody>()))
                    .build(),
            )
            .build(),
    );
    for (name, schema) in doc.schemas {
        components = components.schema(name, schema);
    }
    let mut api = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("licd")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The HTTP API of a licd node: the license API of application servers \
                     (/v1), the admin API (/admin), the probes, the metrics and the \
                     dashboard. Any node answers; a follower forwards to the leader. Every \
                     error carries the JSON body ErrorBody ({code, message}). docs/api.md \
                     describes each route in words.",
                ))
                .license(Some(LicenseBuilder::new().name("Apache-2.0").build()))
                .build(),
        )
        .paths(doc.paths)
        .components(Some(components.build()))
        .build();
    api.tags = Some(
        [
            (
                "license",
                "The license API of application servers and their agents.",
            ),
            (
                "usage",
                "What operators read: licenses, servers, history, health.",
            ),
            ("admin", "Membership, licenses, snapshots and repairs."),
            ("node", "Probes, metrics, the dashboard and this document."),
        ]
        .into_iter()
        .map(|(name, text)| TagBuilder::new().name(name).description(Some(text)).build())
        .collect(),
    );
    api
}

/// `GET /openapi.json`: built once, then served from memory.
pub async fn serve() -> impl IntoResponse {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        TEXT.get_or_init(super::openapi_json).as_str(),
    )
}

/// Every documented route, in the order of the route table.
fn operations(doc: &mut Doc) {
    let node = || path::<NodeName>("node", "The application server's name.");
    let license = || path::<LicenseId>("id", "The license's id.");
    let member = || {
        parameter(
            "id",
            ParameterIn::Path,
            true,
            "The Raft member's id.",
            <u64 as utoipa::PartialSchema>::schema(),
        )
    };
    // Needed once the server holds an allocation (which a call without it cannot know).
    let token = || {
        header::<LeaseToken>(
            LEASE_TOKEN_HEADER,
            "The allocation's lease token, from the allocation's answer. Needed when the \
             server holds an allocation: without it the answer is 401 LEASE_TOKEN_REQUIRED, \
             with another allocation's 403 LEASE_TOKEN_MISMATCH.",
        )
    };

    // The license API.
    doc.op("PUT", "/v1/nodes/{node}/allocation", "allocate", "license")
        .summary("Allocate cores to an application server (or replace its allocation)")
        .param(node())
        .params(idempotency())
        .param(token())
        .json_body::<AllocateBody>()
        .ok::<GrantBody>(201, "Allocated.")
        .ok::<GrantBody>(200, "The server's earlier allocation was replaced.")
        .add();
    doc.op(
        "DELETE",
        "/v1/nodes/{node}/allocation",
        "release",
        "license",
    )
    .summary("Release an application server's allocation")
    .param(node())
    .params(idempotency())
    .param(token())
    .optional_json_body::<RequestIdBody>()
    .ok::<ReleaseBody>(200, "Released (or there was nothing to release).")
    .add();
    doc.op("POST", "/v1/nodes/{node}/heartbeat", "heartbeat", "license")
        .summary("Renew an allocation's lease (not a log write)")
        .param(node())
        .params(idempotency())
        .param(token())
        .optional_json_body::<RequestIdBody>()
        .ok::<RenewBody>(200, "Renewed.")
        .add();
    doc.op("GET", "/v1/nodes/{node}/check", "check", "license")
        .summary("Whether an application server is licensed (a linearizable read)")
        .param(node())
        .params(CheckQuery::into_params(|| Some(ParameterIn::Query)))
        .ok::<CheckBody>(200, "The answer, licensed or not (valid, code, message).")
        .add();
    doc.op("GET", "/v1/licenses", "list_licenses", "usage")
        .summary("Every license with its servers and cores in use")
        .ok::<LicensesBody>(200, "The licenses.")
        .add();
    doc.op("GET", "/v1/licenses/{id}", "get_license", "usage")
        .summary("One license with its servers and cores in use")
        .param(license())
        .ok::<UsageBody>(200, "The license.")
        .add();
    doc.op("GET", "/v1/events", "list_events", "usage")
        .summary("The usage history, one page at a time")
        .params(EventsQuery::into_params(|| Some(ParameterIn::Query)))
        .ok::<EventsBody>(
            200,
            "Events after `since`, oldest first; `next` is the next page's `since`.",
        )
        .add();
    doc.op("GET", "/v1/cluster", "cluster_health", "usage")
        .summary("The cluster's health in figures")
        .ok::<ClusterHealthBody>(200, "The leader's view.")
        .add();

    // The admin API.
    doc.op("POST", "/admin/init", "init", "admin")
        .summary("Initialize a new cluster on this node")
        .optional_json_body::<InitBody>()
        .ok::<MembershipBody>(200, "Initialized.")
        .add();
    doc.op("GET", "/admin/status", "status", "admin")
        .summary("Members, roles, replication progress and warnings")
        .ok::<StatusBody>(
            200,
            "The leader's view when one is known, else this node's.",
        )
        .add();
    doc.op("POST", "/admin/elect", "elect", "admin")
        .summary("Ask this node to campaign for leadership")
        .ok::<StatusBody>(200, "This node's status after the election.")
        .add();
    doc.op("POST", "/admin/learners", "add_learner", "admin")
        .summary("Add a learner; answers once it has caught up")
        .json_body::<AddLearnerBody>()
        .ok::<MembershipBody>(200, "The new membership.")
        .add();
    doc.op("PUT", "/admin/voters", "set_voters", "admin")
        .summary("Set the voters")
        .json_body::<VotersBody>()
        .ok::<MembershipBody>(200, "The new membership.")
        .add();
    doc.op("POST", "/admin/voters/{id}", "promote", "admin")
        .summary("Promote a learner to voter")
        .param(member())
        .ok::<MembershipBody>(200, "The new membership.")
        .add();
    doc.op("DELETE", "/admin/members/{id}", "remove_member", "admin")
        .summary("Remove a member")
        .param(member())
        .ok::<MembershipBody>(200, "The new membership.")
        .add();
    doc.op("POST", "/admin/licenses", "install_license", "admin")
        .summary("Install (or replace) a signed license file")
        .params(idempotency())
        .text_body("The license file, as the vendor issued it.")
        .ok::<InstalledBody>(201, "Installed.")
        .ok::<InstalledBody>(
            200,
            "It replaced a license of the same id, or was already installed.",
        )
        .add();
    doc.op("DELETE", "/admin/licenses/{id}", "remove_license", "admin")
        .summary("Remove a license and release its servers")
        .param(license())
        .params(idempotency())
        .ok::<RemovedBody>(200, "Removed.")
        .add();
    doc.op(
        "DELETE",
        "/admin/nodes/{node}/allocation",
        "force_release",
        "admin",
    )
    .summary("Release a server's allocation without its lease token")
    .param(node())
    .params(idempotency())
    .ok::<ReleaseBody>(200, "Released (or there was nothing to release).")
    .add();
    doc.op("POST", "/admin/snapshot", "snapshot", "admin")
        .summary("Build a Raft snapshot now")
        .ok::<SnapshotBody>(200, "The index the snapshot covers.")
        .add();
    doc.op("GET", "/admin/snapshot", "download_snapshot", "admin")
        .summary("Download a consistent backup file (licd snapshot save)")
        .ok_binary(200, "The backup file.")
        .add();

    // The node.
    doc.op("GET", "/metrics", "metrics", "node")
        .summary("Prometheus metrics of the node asked")
        .ok_text(200, "text/plain", "The text exposition format.")
        .add();
    doc.op("GET", "/healthz", "healthz", "node")
        .summary("Liveness: the process serves HTTP")
        .open()
        .ok::<HealthBody>(200, "Alive.")
        .add();
    doc.op("GET", "/readyz", "readyz", "node")
        .summary("Readiness: a leader is known and this node takes part")
        .open()
        .ok::<ReadyBody>(200, "Ready.")
        .ok::<ReadyBody>(503, "Not ready.")
        .add();
    doc.op("GET", "/openapi.json", "openapi", "node")
        .summary("This document")
        .open()
        .ok_json_any(200, "The OpenAPI 3.1 contract.")
        .add();
    for (path, id, content_type, what) in [
        ("/ui", "dashboard", "text/html", "The dashboard's page."),
        (
            "/ui/app.js",
            "dashboard_script",
            "text/javascript",
            "Its script.",
        ),
        (
            "/ui/style.css",
            "dashboard_style",
            "text/css",
            "Its style sheet.",
        ),
    ] {
        doc.op("GET", path, id, "node")
            .summary(what)
            .open()
            .ok_text(200, content_type, what)
            .add();
    }
}

/// The exactly-once key of a write, and its deprecated spelling.
fn idempotency() -> Vec<Parameter> {
    vec![
        header::<RequestId>(
            IDEMPOTENCY_KEY_HEADER,
            "The write's exactly-once key: a retry with the same key gets the first \
             outcome. A fresh one is drawn when no key is sent.",
        ),
        header::<RequestId>(
            REQUEST_ID_HEADER,
            "The exactly-once key when no idempotency-key is sent (deprecated for that use).",
        ),
    ]
}

fn path<T: ToSchema>(name: &str, description: &str) -> Parameter {
    parameter(
        name,
        ParameterIn::Path,
        true,
        description,
        schema_ref::<T>(),
    )
}

/// An optional header (no header of the API is required of every caller).
fn header<T: ToSchema>(name: &str, description: &str) -> Parameter {
    parameter(
        name,
        ParameterIn::Header,
        false,
        description,
        schema_ref::<T>(),
    )
}

fn parameter(
    name: &str,
    place: ParameterIn,
    required: bool,
    description: &str,
    schema: RefOr<Schema>,
) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// A reference to `T`'s schema in the components (which [`Doc::register`] puts there).
fn schema_ref<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

/// The document being built: its paths, and every schema they reference.
#[derive(Default)]
struct Doc {
    paths: Paths,
    schemas: BTreeMap<String, RefOr<Schema>>,
}

impl Doc {
    fn op(&mut self, method: &'static str, path: &'static str, id: &str, tag: &str) -> Op<'_> {
        Op {
            doc: self,
            method,
            path,
            operation: OperationBuilder::new()
                .operation_id(Some(id))
                .tag(tag)
                .security(SecurityRequirement::new::<_, _, String>(BEARER, [])),
            responses: BTreeMap::new(),
            open: false,
        }
    }

    /// Adds `T`'s schema and the schemas it references.
    fn register<T: ToSchema>(&mut self) {
        self.schemas.insert(T::name().into_owned(), T::schema());
        let mut nested = Vec::new();
        T::schemas(&mut nested);
        self.schemas.extend(nested);
    }
}

/// One operation being built.
struct Op<'d> {
    doc: &'d mut Doc,
    method: &'static str,
    path: &'static str,
    operation: OperationBuilder,
    responses: BTreeMap<u16, RefOr<Response>>,
    /// No credential needed: the error statuses of an open route.
    open: bool,
}

impl Op<'_> {
    fn summary(mut self, text: &str) -> Self {
        self.operation = self.operation.summary(Some(text));
        self
    }

    /// No credential needed: the route table says `Open`.
    fn open(mut self) -> Self {
        self.operation = self
            .operation
            .securities(Some(Vec::<SecurityRequirement>::new()));
        self.open = true;
        self
    }

    fn param(self, parameter: Parameter) -> Self {
        self.params(vec![parameter])
    }

    fn params(mut self, parameters: Vec<Parameter>) -> Self {
        self.operation = self.operation.parameters(Some(parameters));
        self
    }

    fn json_body<T: ToSchema>(self) -> Self {
        self.body::<T>(true)
    }

    /// A JSON body that may be left out (or empty).
    fn optional_json_body<T: ToSchema>(self) -> Self {
        self.body::<T>(false)
    }

    fn body<T: ToSchema>(mut self, required: bool) -> Self {
        self.doc.register::<T>();
        let body = RequestBodyBuilder::new()
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(schema_ref::<T>()))
                    .build(),
            )
            .required(Some(if required {
                Required::True
            } else {
                Required::False
            }))
            .build();
        self.operation = self.operation.request_body(Some(body));
        self
    }

    fn text_body(mut self, description: &str) -> Self {
        let body = RequestBodyBuilder::new()
            .description(Some(description))
            .content(
                "text/plain",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            )
            .required(Some(Required::True))
            .build();
        self.operation = self.operation.request_body(Some(body));
        self
    }

    fn ok<T: ToSchema>(self, status: u16, description: &str) -> Self {
        self.doc.register::<T>();
        self.respond(status, description, "application/json", schema_ref::<T>())
    }

    fn ok_json_any(self, status: u16, description: &str) -> Self {
        let object = ObjectBuilder::new().schema_type(Type::Object);
        self.respond(status, description, "application/json", object.into())
    }

    fn ok_text(self, status: u16, content_type: &str, description: &str) -> Self {
        let text = ObjectBuilder::new().schema_type(Type::String);
        self.respond(status, description, content_type, text.into())
    }

    fn ok_binary(self, status: u16, description: &str) -> Self {
        let bytes = ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/octet-stream");
        self.respond(
            status,
            description,
            "application/octet-stream",
            bytes.into(),
        )
    }

    /// A success answer: `status` with a body of `content_type` and `schema`.
    fn respond(
        mut self,
        status: u16,
        description: &str,
        content_type: &str,
        schema: RefOr<Schema>,
    ) -> Self {
        let content = ContentBuilder::new().schema(Some(schema)).build();
        let response = ResponseBuilder::new()
            .description(description)
            .content(content_type, content)
            .build();
        self.responses.insert(status, response.into());
        self
    }

    /// Each of `statuses` answers the shared [`ERROR`] response.
    fn errors(&mut self, statuses: &[u16]) {
        self.doc.register::<ErrorBody>();
        for &status in statuses {
            self.responses
                .entry(status)
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name(ERROR)));
        }
    }

    /// Adds the operation, with the error statuses of its kind of route.
    fn add(mut self) {
        self.errors(if self.open { OPEN_ERRORS } else { API_ERRORS });
        let mut operation = self.operation;
        for (status, response) in self.responses {
            operation = operation.response(status.to_string(), response);
        }
        let method = match self.method {
            "GET" => HttpMethod::Get,
            "PUT" => HttpMethod::Put,
            "POST" => HttpMethod::Post,
            "DELETE" => HttpMethod::Delete,
            other => unreachable!("no route uses {other}"),
        };
        debug_assert!(
            ROUTES
                .iter()
                .any(|r| r.method == self.method && r.path == self.path),
            "{} {} is not in the route table",
            self.method,
            self.path
        );
        self.doc
            .paths
            .add_path_operation(self.path, vec![method], operation.build());
    }
}
