//! How a script prints what the state machine answered, and the state digest whose changes
//! follow every command. See the format description at the top of `tests/scripts.rs`.

use licd_raft::LicenseState;
use licd_raft::command::{Allocation, Grant, Outcome, Rejection, Response};
use licd_raft::events::{EventKind, Page};
use licd_raft::query::{CheckResult, LicenseSummary, Usage};
use licd_raft::types::{MacAddr, NodeName, Timestamp, TokenHash};

/// The first five bytes of every MAC address a script writes as a bare number.
const SHORT_MAC_PREFIX: [u8; 5] = [2, 0, 0, 0, 0];

/// A MAC address as scripts write it: `02:00:00:00:00:<n>` is the decimal `n`, any other the
/// full address.
pub fn mac(mac: &MacAddr) -> String {
    let bytes = mac.bytes();
    if bytes[..5] == SHORT_MAC_PREFIX {
        bytes[5].to_string()
    } else {
        mac.to_string()
    }
}

/// The inverse of [`mac`]: a decimal last byte, or a full address.
pub fn parse_mac(s: &str) -> Result<MacAddr, String> {
    if s.contains(':') || s.contains('-') {
        return MacAddr::parse(s).map_err(|e| e.to_string());
    }
    let last: u8 = s
        .parse()
        .map_err(|_| format!("{s:?} is neither a MAC address nor a number 0..=255"))?;
    let mut bytes = [0; 6];
    bytes[..5].copy_from_slice(&SHORT_MAC_PREFIX);
    bytes[5] = last;
    Ok(MacAddr::from_bytes(bytes))
}

/// A lease token's hash as scripts write it: the token's label (up to 32 characters of
/// `[A-Za-z0-9._-]`) in the hash's bytes, padded with zeros. Scripts need tokens that are
/// told apart and read back, not real hashes.
pub fn token_hash(label: &str) -> Result<TokenHash, String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if label.is_empty() || label.len() > 32 || !label.chars().all(valid) {
        return Err(format!(
            "{label:?} is not a token label (1 to 32 of [A-Za-z0-9._-])"
        ));
    }
    let mut bytes = [0; 32];
    bytes[..label.len()].copy_from_slice(label.as_bytes());
    Ok(TokenHash(bytes))
}

/// The inverse of [`token_hash`]: the label; `none` for an allocation without a token.
fn token(hash: Option<TokenHash>) -> String {
    optional(hash, |h| {
        let end = h.0.iter().position(|&b| b == 0).unwrap_or(32);
        String::from_utf8_lossy(&h.0[..end]).into_owned()
    })
}

fn time(t: Timestamp) -> String {
    t.as_millis().to_string()
}

fn optional<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "none".to_string(), show)
}

/// `a,b,c`, or `none` for an empty list.
fn list<T>(items: impl IntoIterator<Item = T>, show: impl Fn(T) -> String) -> String {
    let shown: Vec<String> = items.into_iter().map(show).collect();
    if shown.is_empty() {
        "none".to_string()
    } else {
        shown.join(",")
    }
}

/// The fields of an allocation, in the order the digest and the outcomes print them.
fn allocation_fields(a: &Allocation) -> Vec<(&'static str, String)> {
    vec![
        ("license", a.license.to_string()),
        ("mac", mac(&a.mac)),
        ("cores", a.cores.get().to_string()),
        ("counted", a.counted_cores.to_string()),
        ("ttl", a.lease_ttl.as_millis().to_string()),
        ("at", time(a.allocated_at)),
        ("grant", a.grant.to_string()),
        ("remaining", a.remaining_ms.to_string()),
        ("token", token(a.token_hash)),
    ]
}

/// `key=value key=value ...`.
fn fields(fields: &[(&'static str, String)]) -> String {
    let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(" ")
}

fn grant(verb: &str, g: &Grant) -> Vec<String> {
    vec![
        format!(
            "{verb} {}: replaced={} allocated_cores={} licensed_cores={}",
            g.node, g.replaced, g.allocated_cores, g.licensed_cores
        ),
        format!(
            "  allocation: {}",
            fields(&allocation_fields(&g.allocation))
        ),
    ]
}

/// `rejected CODE: "message"`, with the figures of `CPU_LIMIT_EXHAUSTED`.
fn rejection(r: &Rejection) -> String {
    let mut line = format!("rejected {}: {:?}", r.code, r.message);
    if let Some(f) = r.figures {
        line += &format!(
            " requested={} available={} licensed={}",
            f.requested, f.available, f.licensed
        );
    }
    line
}

/// The lines a response prints: the outcome, or the rejection with its code, exact message
/// and figures.
pub fn response(response: &Response) -> Vec<String> {
    let outcome = match response {
        Err(r) => return vec![rejection(r)],
        Ok(outcome) => outcome,
    };
    match outcome {
        Outcome::Noop => vec!["noop".to_string()],
        Outcome::LicenseInstalled {
            license,
            replaced,
            unchanged,
            dropped,
        } => vec![format!(
            "installed {license}: replaced={replaced} unchanged={unchanged} dropped={}",
            list(dropped, |d| format!("{}:{}", d.node, d.code))
        )],
        Outcome::LicenseRemoved { license, released } => vec![format!(
            "removed {license}: released={}",
            list(released, |n| n.to_string())
        )],
        Outcome::Allocated(g) => grant("allocated", g),
        Outcome::Released { node, freed: None } => vec![format!("released {node}: freed=none")],
        Outcome::Released {
            node,
            freed: Some(a),
        } => vec![
            format!("released {node}: freed"),
            format!("  allocation: {}", fields(&allocation_fields(a))),
        ],
        Outcome::Checkpointed { updated } => vec![format!("checkpointed: updated={updated}")],
        Outcome::Expired { expired } => {
            vec![format!(
                "expired: ended={}",
                list(expired, |n| n.to_string())
            )]
        }
        Outcome::RetentionSet { retention } => vec![format!(
            "retention set: days={} max={}",
            retention.max_age_days, retention.max_events
        )],
        Outcome::Batch(responses) => std::iter::once(format!("batch of {}:", responses.len()))
            .chain(
                responses
                    .iter()
                    .flat_map(self::response)
                    .map(|l| format!("  {l}")),
            )
            .collect(),
    }
}

/// One line per event of a page of the usage history, then the page's `next`.
pub fn events(page: &Page) -> Vec<String> {
    let mut lines: Vec<String> = page
        .events
        .iter()
        .map(|e| {
            format!(
                "event {} entry={} time={} clock={}: {}",
                e.seq,
                e.index,
                optional(e.time, time),
                time(e.clock),
                event_kind(&e.kind)
            )
        })
        .collect();
    lines.push(format!("next={}", page.next));
    lines
}

fn event_kind(kind: &EventKind) -> String {
    match kind {
        EventKind::Allocated {
            node,
            license,
            mac: m,
            cores,
            counted_cores,
            replaced,
        } => format!(
            "allocated {node} license={license} mac={} cores={cores} counted={counted_cores} \
             replaced={replaced}",
            mac(m)
        ),
        EventKind::Refused {
            node,
            license,
            cores,
            code,
        } => format!(
            "refused {node} license={} cores={cores} code={code}",
            optional(license.as_ref(), |l| l.to_string())
        ),
        EventKind::Freed {
            node,
            license,
            counted_cores,
            by,
            code,
        } => format!(
            "freed {node} license={license} counted={counted_cores} by={by:?} code={}",
            optional(*code, |c| c.to_string())
        ),
        EventKind::LicenseInstalled { license, max_cores } => {
            format!("license installed {license} max={max_cores}")
        }
        EventKind::LicenseReplaced { license, max_cores } => {
            format!("license replaced {license} max={max_cores}")
        }
        EventKind::LicenseRemoved { license } => format!("license removed {license}"),
        EventKind::MembershipChanged { voters, learners } => format!(
            "membership voters={} learners={}",
            list(voters, |v| v.to_string()),
            list(learners, |v| v.to_string())
        ),
        EventKind::RetentionChanged { retention } => format!(
            "retention days={} max={}",
            retention.max_age_days, retention.max_events
        ),
    }
}

fn summary(s: &LicenseSummary) -> String {
    format!(
        "license {}: customer={:?} serial={} issued={} expires={} max={} min={} features={}",
        s.id,
        s.customer,
        s.serial,
        time(s.issued_at),
        optional(s.expires_at, time),
        s.max_cores,
        s.min_cores_per_node,
        list(&s.features, |f| f.clone()),
    )
}

/// The lines a license check prints: every field of the result.
pub fn check(c: &CheckResult) -> Vec<String> {
    vec![
        format!(
            "check {}: {} valid={} message={:?} counted={} allocated_cores={} licensed_cores={} \
             lease_remaining={} checked_at={}",
            c.node,
            c.code,
            c.valid,
            c.message,
            optional(c.counted_cores, |n| n.to_string()),
            optional(c.allocated_cores, |n| n.to_string()),
            optional(c.licensed_cores, |n| n.to_string()),
            optional(c.lease_remaining_ms, |n| n.to_string()),
            time(c.checked_at),
        ),
        match &c.license {
            Some(license) => format!("  {}", summary(license)),
            None => "  license: none".to_string(),
        },
    ]
}

/// The lines a usage report prints: the totals, the license and each server.
pub fn usage(u: &Usage) -> Vec<String> {
    let mut lines = vec![
        format!(
            "usage {}: licensed_cores={} allocated_cores={} free_cores={} expired={}",
            u.license.id, u.licensed_cores, u.allocated_cores, u.free_cores, u.expired
        ),
        format!("  {}", summary(&u.license)),
    ];
    for n in &u.nodes {
        lines.push(format!(
            "  node {}: mac={} cores={} counted={} remaining={}",
            n.node,
            mac(&n.mac),
            n.cores.get(),
            n.counted_cores,
            n.lease_remaining_ms
        ));
    }
    lines
}

/// The line `renewable` prints: the allocation a heartbeat would renew and its license's
/// `max_cores`, or the refusal.
pub fn renewable(node: &NodeName, answer: &Result<(Allocation, u32), Rejection>) -> Vec<String> {
    match answer {
        Ok((allocation, max_cores)) => vec![
            format!("renewable {node}: licensed_cores={max_cores}"),
            format!("  allocation: {}", fields(&allocation_fields(allocation))),
        ],
        Err(r) => vec![format!("not renewable {node}: {}", rejection(r))],
    }
}

/// What a script sees of a state: the clock and counters, each license (with the cores
/// counted against it) and each allocation, as named lists of fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// `clock`, `changes` (allocations added or removed so far) and `remembered`.
    scalars: Vec<(&'static str, String)>,
    /// `license <id>` and `alloc <node>`, licenses first, each in name order.
    entities: Vec<(String, Vec<(&'static str, String)>)>,
}

impl Digest {
    /// The digest of `state`.
    pub fn of(state: &LicenseState) -> Digest {
        let scalars = vec![
            ("clock", time(state.clock())),
            ("changes", state.allocation_changes().to_string()),
            ("remembered", state.remembered_requests().to_string()),
        ];
        let mut entities = Vec::new();
        for (id, l) in state.licenses() {
            entities.push((
                format!("license {id}"),
                vec![
                    ("serial", l.serial.to_string()),
                    ("issued", time(l.issued_at)),
                    ("expires", optional(l.expires_at, time)),
                    ("max", l.max_cores.to_string()),
                    ("min", l.min_cores_per_node.to_string()),
                    ("macs", list(&l.allowed_macs, mac)),
                    ("features", list(&l.features, |f| f.clone())),
                    ("customer", format!("{:?}", l.customer)),
                    ("counted", state.counted_cores(id).to_string()),
                ],
            ));
        }
        for (node, a) in state.allocations() {
            entities.push((format!("alloc {node}"), allocation_fields(a)));
        }
        Digest { scalars, entities }
    }

    /// The whole digest: the scalars on one line, then one line per license and allocation.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![fields(&self.scalars)];
        for (name, f) in &self.entities {
            lines.push(format!("{name}: {}", fields(f)));
        }
        lines
    }

    /// What changed from `before` to `self`: `+ name: fields` for what appeared, `- name` for
    /// what went, `~ name: field=old->new ...` for what changed, and one `~` line for the
    /// scalars. `= unchanged` when nothing did.
    pub fn changes_since(&self, before: &Digest) -> Vec<String> {
        let mut lines = Vec::new();
        for (name, old) in &before.entities {
            match self.entities.iter().find(|(n, _)| n == name) {
                None => lines.push(format!("- {name}")),
                Some((_, new)) if new != old => {
                    lines.push(format!("~ {name}: {}", field_changes(old, new)))
                }
                Some(_) => {}
            }
        }
        for (name, new) in &self.entities {
            if !before.entities.iter().any(|(n, _)| n == name) {
                lines.push(format!("+ {name}: {}", fields(new)));
            }
        }
        if self.scalars != before.scalars {
            lines.push(format!(
                "~ {}",
                field_changes(&before.scalars, &self.scalars)
            ));
        }
        if lines.is_empty() {
            lines.push("= unchanged".to_string());
        }
        lines
    }
}

/// `field=old->new` for each field that differs; both lists have the same fields in order.
fn field_changes(old: &[(&'static str, String)], new: &[(&'static str, String)]) -> String {
    let parts: Vec<String> = old
        .iter()
        .zip(new)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((k, a), (_, b))| format!("{k}={a}->{b}"))
        .collect();
    parts.join(" ")
}
