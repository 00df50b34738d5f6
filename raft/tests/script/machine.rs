//! Runs one script command against a [`LicenseState`] and returns the lines it prints.
//!
//! Besides printing, every command that applies a request checks two things and fails the
//! script if they do not hold: the state equals its own snapshot round trip (the derived
//! index agrees with the allocations it is derived from), and, after `snapshot`, the
//! restored copy answered and became exactly what the original did. Queries run on the copy
//! too, with the same lease times the script passes in.

use std::collections::BTreeMap;

use licd_raft::codec::{decode, encode};
use licd_raft::command::{Allocate, Allocation, LeaseCheckpoint, LeaseRef};
use licd_raft::events::{EventLog, Retention};
use licd_raft::license::License;
use licd_raft::types::{Cores, LeaseTtl, LicenseId, NodeName, RequestId, Timestamp};
use licd_raft::{Command, LicenseState, Request, Response};

use super::show::{self, Digest};

/// The time a case starts at, unless its first command says otherwise.
pub const START_TIME: u64 = 10_000;
/// The lease an `allocate` asks for when it gives no `ttl=`: one minute.
const DEFAULT_TTL: u64 = 60_000;

/// The state of one case: the state machine, the script clock and request counter, and the
/// restored copy once a `snapshot` made one.
pub struct Machine {
    state: LicenseState,
    /// The time of the next command unless it gives `@<time>` or `@-`.
    time: u64,
    /// Numbers the request ids of commands that give no `req=`.
    requests: u64,
    /// The state restored from a snapshot, which must keep behaving like `state`.
    restored: Option<LicenseState>,
    /// The usage history of the requests applied, each at the number of its request (the
    /// stand-in for its log index).
    events: EventLog,
}

/// What a line's `@` says about the time its request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// No `@`: the script time, as the command before left it.
    Same,
    /// `@<time>`: this time, from now on.
    At(u64),
    /// `@-`: no time at all (the voters' clocks did not agree); the script time stays.
    NoTime,
}

/// The verbs whose words are all positional, in order, `=` included: the leases that
/// `checkpoint` and `expire` name, and the command that `repeat` repeats.
const ORDERED_VERBS: [&str; 3] = ["checkpoint", "expire", "repeat"];

/// One command line, split into words: `@<time>` and `req=<id>` taken out, the first other
/// word the verb, then positional words and `key=value` options.
struct Line {
    time: Stamp,
    request_id: Option<String>,
    verb: String,
    positional: Vec<String>,
    options: BTreeMap<String, String>,
}

impl Line {
    fn parse(text: &str) -> Result<Line, String> {
        let mut line = Line {
            time: Stamp::Same,
            request_id: None,
            verb: String::new(),
            positional: Vec::new(),
            options: BTreeMap::new(),
        };
        for word in split_words(text)? {
            if let Some(t) = word.strip_prefix('@') {
                line.time = match t {
                    "-" => Stamp::NoTime,
                    t => Stamp::At(number(t)?),
                };
            } else if let Some(id) = word.strip_prefix("req=") {
                line.request_id = Some(id.to_string());
            } else if line.verb.is_empty() {
                line.verb = word;
            } else if ORDERED_VERBS.contains(&line.verb.as_str()) {
                line.positional.push(word);
            } else if let Some((key, value)) = word.split_once('=') {
                if line.options.insert(key.into(), value.into()).is_some() {
                    return Err(format!("option {key}= is given twice"));
                }
            } else {
                line.positional.push(word);
            }
        }
        if line.verb.is_empty() {
            return Err("a command line needs a command".into());
        }
        Ok(line)
    }

    /// The only positional word, which commands like `release <node>` require.
    fn one_positional(&self, what: &str) -> Result<&str, String> {
        match self.positional.as_slice() {
            [one] => Ok(one),
            _ => Err(format!("`{}` takes one {what}", self.verb)),
        }
    }

    fn no_positional(&self) -> Result<(), String> {
        if self.positional.is_empty() {
            Ok(())
        } else {
            Err(format!("`{}` takes no positional argument", self.verb))
        }
    }

    /// Takes option `key`, so that [`Line::no_options_left`] can refuse unknown ones.
    fn take(&mut self, key: &str) -> Option<String> {
        self.options.remove(key)
    }

    fn take_number(&mut self, key: &str) -> Result<Option<u64>, String> {
        self.take(key).map(|v| number(&v)).transpose()
    }

    fn no_options_left(&self) -> Result<(), String> {
        match self.options.keys().next() {
            None => Ok(()),
            Some(key) => Err(format!("`{}` has no option {key}=", self.verb)),
        }
    }
}

/// Splits on whitespace; a double-quoted part keeps its spaces (`customer="Big Co"`).
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if quoted {
        return Err("a double quote is not closed".into());
    }
    if !word.is_empty() {
        words.push(word);
    }
    Ok(words)
}

/// A decimal number; `_` may group digits (`3_600_000`).
fn number(s: &str) -> Result<u64, String> {
    s.replace('_', "")
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))
}

fn node(s: &str) -> Result<NodeName, String> {
    NodeName::new(s).map_err(|e| e.to_string())
}

fn license_id(s: &str) -> Result<LicenseId, String> {
    LicenseId::new(s).map_err(|e| e.to_string())
}

/// The license `install` builds when given no option: 16 cores, at least 4 per server, MACs
/// 1, 2 and 3, issued at 1 000 and valid until 1 000 000 000.
fn default_license() -> License {
    License {
        id: LicenseId::new("lic-1").unwrap(),
        customer: "Example Corp".into(),
        issued_at: Timestamp(1_000),
        expires_at: Some(Timestamp(1_000_000_000)),
        max_cores: 16,
        min_cores_per_node: 4,
        allowed_macs: [1, 2, 3]
            .map(|n| show::parse_mac(&n.to_string()).unwrap())
            .into(),
        features: ["ocr".to_string()].into(),
        serial: 1,
    }
}

fn small(n: u64, what: &str) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("{what} {n} is too large"))
}

fn install(line: &mut Line) -> Result<Command, String> {
    line.no_positional()?;
    let mut l = default_license();
    if let Some(id) = line.take("license") {
        l.id = license_id(&id)?;
    }
    if let Some(customer) = line.take("customer") {
        l.customer = customer;
    }
    if let Some(serial) = line.take_number("serial")? {
        l.serial = serial;
    }
    if let Some(issued) = line.take_number("issued")? {
        l.issued_at = Timestamp(issued);
    }
    match line.take("expires").as_deref() {
        None => {}
        Some("never") => l.expires_at = None,
        Some(at) => l.expires_at = Some(Timestamp(number(at)?)),
    }
    if let Some(max) = line.take_number("max")? {
        l.max_cores = small(max, "max")?;
    }
    if let Some(min) = line.take_number("min")? {
        l.min_cores_per_node = small(min, "min")?;
    }
    if let Some(macs) = line.take("macs") {
        l.allowed_macs = macs
            .split(',')
            .filter(|m| !m.is_empty())
            .map(show::parse_mac)
            .collect::<Result<_, _>>()?;
    }
    if let Some(features) = line.take("features") {
        l.features = features
            .split(',')
            .filter(|f| !f.is_empty())
            .map(String::from)
            .collect();
    }
    Ok(Command::InstallLicense(l))
}

fn allocate(line: &mut Line) -> Result<Command, String> {
    let node = node(line.one_positional("server name")?)?;
    let mac = show::parse_mac(&line.take("mac").ok_or("`allocate` needs mac=")?)?;
    let cores = line
        .take_number("cores")?
        .ok_or("`allocate` needs cores=")?;
    let cores = Cores::new(small(cores, "cores")?).map_err(|e| e.to_string())?;
    let ttl = line.take_number("ttl")?.unwrap_or(DEFAULT_TTL);
    let lease_ttl = LeaseTtl::from_millis(ttl).map_err(|e| e.to_string())?;
    let license = line.take("license").map(|l| license_id(&l)).transpose()?;
    let token = line.take("token").unwrap_or_else(|| node.to_string());
    let token_hash = Some(show::token_hash(&token)?);
    let presented = line
        .take("presented")
        .map(|t| show::token_hash(&t))
        .transpose()?;
    Ok(Command::Allocate(Allocate {
        node,
        license,
        mac,
        cores,
        lease_ttl,
        token_hash,
        presented,
    }))
}

/// `<node>=<grant>`: one grant of one server, as `expire` names it.
fn lease_ref(word: &str) -> Result<LeaseRef, String> {
    let (name, grant) = word
        .split_once('=')
        .ok_or_else(|| format!("{word:?} is not <server>=<grant>"))?;
    Ok(LeaseRef {
        node: node(name)?,
        grant: number(grant)?,
    })
}

/// `<node>=<grant>:<remaining_ms>`: a lease's remaining time, as `checkpoint` records it.
fn lease_checkpoint(word: &str) -> Result<LeaseCheckpoint, String> {
    let (lease, remaining) = word
        .rsplit_once(':')
        .ok_or_else(|| format!("{word:?} is not <server>=<grant>:<remaining_ms>"))?;
    let LeaseRef { node, grant } = lease_ref(lease)?;
    Ok(LeaseCheckpoint {
        node,
        grant,
        remaining_ms: number(remaining)?,
    })
}

/// `left=<node>:<ms>,...`: the lease time the leader measures for some servers; the others
/// have their checkpointed remaining time.
fn measured_leases(spec: Option<String>) -> Result<BTreeMap<NodeName, u64>, String> {
    let mut left = BTreeMap::new();
    for part in spec.iter().flat_map(|s| s.split(',')) {
        let (name, ms) = part
            .split_once(':')
            .ok_or_else(|| format!("{part:?} is not <server>:<remaining_ms>"))?;
        if left.insert(node(name)?, number(ms)?).is_some() {
            return Err(format!("left= names {name} twice"));
        }
    }
    Ok(left)
}

/// The lease time the leader measures for one allocation: as given, or as checkpointed.
fn measured(left: &BTreeMap<NodeName, u64>, node: &NodeName, allocation: &Allocation) -> u64 {
    left.get(node).copied().unwrap_or(allocation.remaining_ms)
}

/// The command a request-carrying line stands for.
fn command(line: &mut Line) -> Result<Command, String> {
    let command = match line.verb.as_str() {
        "install" => install(line)?,
        "remove" => Command::RemoveLicense {
            license: license_id(line.one_positional("license id")?)?,
        },
        "allocate" => allocate(line)?,
        "release" => {
            let node = node(line.one_positional("server name")?)?;
            match line.take("presented").as_deref() {
                None => Command::Release { node },
                Some("none") => Command::ReleaseHeld {
                    node,
                    presented: None,
                },
                Some(label) => Command::ReleaseHeld {
                    node,
                    presented: Some(show::token_hash(label)?),
                },
            }
        }
        "retention" => {
            line.no_positional()?;
            let days = line.take_number("days")?.ok_or("`retention` needs days=")?;
            let max = line.take_number("max")?.ok_or("`retention` needs max=")?;
            Command::SetEventRetention {
                retention: Retention {
                    max_age_days: u32::try_from(days).map_err(|e| e.to_string())?,
                    max_events: max,
                },
            }
        }
        "checkpoint" => Command::Checkpoint {
            leases: line
                .positional
                .iter()
                .map(|word| lease_checkpoint(word))
                .collect::<Result<_, _>>()?,
        },
        "expire" => Command::Expire {
            leases: line
                .positional
                .iter()
                .map(|word| lease_ref(word))
                .collect::<Result<_, _>>()?,
        },
        other => return Err(format!("unknown command `{other}`")),
    };
    line.no_options_left()?;
    Ok(command)
}

impl Machine {
    /// A fresh case: an empty state at [`START_TIME`].
    pub fn new() -> Machine {
        Machine {
            state: LicenseState::new(),
            time: START_TIME,
            requests: 0,
            restored: None,
            events: EventLog::default(),
        }
    }

    /// Runs one command line; returns what it prints, or why the line or the run is wrong.
    pub fn run(&mut self, text: &str) -> Result<Vec<String>, String> {
        let mut line = Line::parse(text)?;
        if let Stamp::At(t) = line.time {
            self.time = t;
        }
        let timed = line.time != Stamp::NoTime;
        let now = Timestamp(self.time);
        let queries = [
            "check",
            "usage",
            "renewable",
            "state",
            "snapshot",
            "repeat",
            "events",
        ];
        if line.request_id.is_some() && queries.contains(&line.verb.as_str()) {
            return Err(format!("`{}` carries no request id", line.verb));
        }
        if !timed && line.verb != "repeat" && queries.contains(&line.verb.as_str()) {
            return Err(format!(
                "`{}` is asked at a time; `@-` is for requests",
                line.verb
            ));
        }
        match line.verb.as_str() {
            "check" => {
                let node = node(line.one_positional("server name")?)?;
                let mac = line.take("mac").map(|m| show::parse_mac(&m)).transpose()?;
                let left = line.take_number("left")?;
                line.no_options_left()?;
                let remaining = |_: &NodeName, a: &Allocation| left.unwrap_or(a.remaining_ms);
                let result = self.state.check(&node, mac, now, remaining);
                self.same_in_restored(|s| s.check(&node, mac, now, remaining), &result)?;
                Ok(show::check(&result))
            }
            "usage" => {
                let left = measured_leases(line.take("left"))?;
                line.no_options_left()?;
                let remaining = |node: &NodeName, a: &Allocation| measured(&left, node, a);
                let usages = match line.positional.as_slice() {
                    [] => self.state.usage_all(now, remaining),
                    [id] => {
                        let id = license_id(id)?;
                        let usage = self.state.usage(&id, now, remaining);
                        self.same_in_restored(|s| s.usage(&id, now, remaining), &usage)?;
                        match usage {
                            None => return Ok(vec![format!("usage {id}: none")]),
                            Some(usage) => vec![usage],
                        }
                    }
                    _ => return Err("`usage` takes at most one license id".into()),
                };
                self.same_in_restored(
                    |s| s.usage_all(now, remaining),
                    &self.state.usage_all(now, remaining),
                )?;
                if usages.is_empty() {
                    Ok(vec!["usage: none".into()])
                } else {
                    Ok(usages.iter().flat_map(show::usage).collect())
                }
            }
            "renewable" => {
                let node = node(line.one_positional("server name")?)?;
                line.no_options_left()?;
                let answer = |s: &LicenseState| {
                    s.renewable(&node, now)
                        .map(|(allocation, max_cores)| (allocation.clone(), max_cores))
                };
                let result = answer(&self.state);
                self.same_in_restored(answer, &result)?;
                Ok(show::renewable(&node, &result))
            }
            "events" => {
                line.no_positional()?;
                let since = line.take_number("since")?.unwrap_or(0);
                let limit = line.take_number("limit")?.unwrap_or(100);
                line.no_options_left()?;
                let limit = usize::try_from(limit).map_err(|e| e.to_string())?;
                Ok(show::events(&self.events.after(since, limit)))
            }
            "state" => {
                line.no_positional()?;
                line.no_options_left()?;
                Ok(Digest::of(&self.state).lines())
            }
            "snapshot" => {
                line.no_positional()?;
                line.no_options_left()?;
                self.snapshot()
            }
            "repeat" => {
                // `repeat <count> <command> <arguments>`: the words after the count are the
                // repeated command's, parsed as a line of their own (a word that had spaces
                // in quotes is quoted again).
                let [count, repeated @ ..] = line.positional.as_slice() else {
                    return Err("`repeat` takes a count and a command".into());
                };
                let count = number(count)?;
                if count == 0 {
                    return Err("`repeat 0` does nothing".into());
                }
                let words: Vec<String> = repeated
                    .iter()
                    .map(|w| {
                        if w.contains(char::is_whitespace) {
                            format!("\"{w}\"")
                        } else {
                            w.clone()
                        }
                    })
                    .collect();
                let mut inner = Line::parse(&words.join(" "))?;
                if inner.time != Stamp::Same || inner.request_id.is_some() {
                    return Err("`@` and `req=` go before `repeat`".into());
                }
                let command = command(&mut inner)?;
                let mut lines = self.apply(count, None, timed, &command)?;
                lines.insert(0, format!("{count} times:"));
                Ok(lines)
            }
            _ => {
                let request_id = line.request_id.take();
                let command = command(&mut line)?;
                self.apply(1, request_id, timed, &command)
            }
        }
    }

    /// Applies `command` `count` times at the script time (or with no time unless `timed`);
    /// prints the responses (each distinct one once, in order) and the change of the state
    /// over all of them.
    fn apply(
        &mut self,
        count: u64,
        request_id: Option<String>,
        timed: bool,
        command: &Command,
    ) -> Result<Vec<String>, String> {
        let before = Digest::of(&self.state);
        let mut responses: Vec<Response> = Vec::new();
        for _ in 0..count {
            self.requests += 1;
            let id = request_id
                .clone()
                .unwrap_or_else(|| format!("req-{}", self.requests));
            let request = Request {
                time: timed.then_some(Timestamp(self.time)),
                request_id: RequestId::new(id).map_err(|e| e.to_string())?,
                command: command.clone(),
            };
            let (response, events) = self.state.apply_with_events(&request);
            self.events
                .record(self.requests, request.time, self.state.clock(), events);
            if let Some(restored) = &mut self.restored {
                let answer = restored.apply(&request);
                if answer != response {
                    return Err(format!(
                        "the restored state answered {answer:?}, the original {response:?}"
                    ));
                }
                if *restored != self.state {
                    return Err("the restored state no longer equals the original".into());
                }
            }
            if responses.last() != Some(&response) {
                responses.push(response);
            }
        }
        self.check_indexes()?;
        let mut lines: Vec<String> = responses.iter().flat_map(show::response).collect();
        lines.extend(Digest::of(&self.state).changes_since(&before));
        Ok(lines)
    }

    /// The derived index agrees with the allocations: a state equals its own round trip
    /// through a snapshot, which rebuilds it, and equality compares it too.
    fn check_indexes(&self) -> Result<(), String> {
        let bytes = encode(&self.state).map_err(|e| e.to_string())?;
        let rebuilt: LicenseState = decode(&bytes).map_err(|e| e.to_string())?;
        if rebuilt != self.state {
            return Err(format!(
                "the state's indexes differ from the ones rebuilt from its allocations:\n\
                 kept    {:?}\nrebuilt {rebuilt:?}",
                self.state
            ));
        }
        Ok(())
    }

    /// Encodes the state, decodes it into the restored copy that later commands check, and
    /// checks that the copy is equal and encodes to the same bytes.
    fn snapshot(&mut self) -> Result<Vec<String>, String> {
        let bytes = encode(&self.state).map_err(|e| e.to_string())?;
        let restored: LicenseState = decode(&bytes).map_err(|e| e.to_string())?;
        if restored != self.state {
            return Err("the restored state differs from the original".into());
        }
        if encode(&restored).map_err(|e| e.to_string())? != bytes {
            return Err("the restored state encodes to other bytes".into());
        }
        self.restored = Some(restored);
        Ok(vec![
            "snapshot: restored an equal state; later commands run on both".into(),
        ])
    }

    /// After a `snapshot`, the restored copy answers a query the way the original did.
    fn same_in_restored<T: PartialEq + std::fmt::Debug>(
        &self,
        query: impl Fn(&LicenseState) -> T,
        original: &T,
    ) -> Result<(), String> {
        match &self.restored {
            Some(restored) if query(restored) != *original => Err(format!(
                "the restored state answered {:?}, the original {original:?}",
                query(restored)
            )),
            _ => Ok(()),
        }
    }
}
