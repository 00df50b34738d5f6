//! The usage report of `licd report`: per license and per day (UTC), the peak and the
//! time-weighted average of the cores in use, the peak number of servers, and the refused
//! allocations by code, computed from the usage history (`GET /v1/events`).
//!
//! It is a pure function of the events and the instant the report ends ([`report`]), so it
//! is tested on hand-built histories. How it counts:
//!
//! - **Cores in use** are the cores counted against the license (at least its per-server
//!   minimum), as the cap counts them. An allocation holds them from its `allocated` event to
//!   the `freed` event of the same server (or its next `allocated`, which replaces it).
//! - **Time.** Each event is placed at its `clock`: the cluster's calendar time, which is the
//!   entry's own stamp or, for an entry that carries none (the voters' clocks did not agree),
//!   the last stamp before it. Days are UTC days.
//! - **Average** is the integral of the cores in use over the part of the day the history
//!   covers (from its first event to the report's end), divided by the length of that part:
//!   a day the history covers from noon on is averaged over its afternoon.
//! - **Peak** is the highest level reached on the day, the level the day began with
//!   included; **servers** likewise counts the servers holding cores.
//! - **Refusals** are counted on the day of the refused request, under the license it asked
//!   for (or the only one installed); a refusal that names no license is listed under `-`.
//! - A license has a row for each day it was installed during, from the history's first
//!   event on. The history starts with no allocation: allocations made before its oldest
//!   retained event are not known, so a report should start after it.

use std::collections::{BTreeMap, BTreeSet};

use licd_raft::events::DAY_MS;
use serde::Serialize;

use crate::api::{EventBody, EventWhat};

/// The license name under which refusals that name no license are counted.
pub const NO_LICENSE: &str = "-";

/// One row of the report: one license on one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayRow {
    /// The license id.
    pub license: String,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The most cores in use at any instant of the day.
    pub peak_cores: u64,
    /// The time-weighted average of the cores in use over the covered part of the day.
    pub avg_cores: f64,
    /// The most servers holding cores at any instant of the day.
    pub peak_servers: u64,
    /// Refused allocations of the day, by code.
    pub refusals: BTreeMap<String, u64>,
}

/// Which rows to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this license.
    pub license: Option<String>,
    /// Only days from this one on (days since 1970-01-01).
    pub from_day: Option<i64>,
    /// Only days up to this one, included.
    pub to_day: Option<i64>,
}

/// What accumulates for one license on one day.
#[derive(Debug, Clone, Default)]
struct Day {
    /// Cores times milliseconds.
    core_ms: u128,
    peak_cores: u64,
    peak_servers: u64,
    refusals: BTreeMap<String, u64>,
}

/// The replay of a history.
#[derive(Default)]
struct Replay {
    /// The counted cores of each server, by license.
    held: BTreeMap<String, BTreeMap<String, u64>>,
    /// The licenses installed now.
    installed: BTreeSet<String>,
    /// By (license, day).
    days: BTreeMap<(String, i64), Day>,
    /// The covered milliseconds of each day.
    covered: BTreeMap<i64, u64>,
}

fn day_of(ms: u64) -> i64 {
    i64::try_from(ms / DAY_MS).unwrap_or(i64::MAX)
}

impl Replay {
    fn level(&self, license: &str) -> (u64, u64) {
        self.held.get(license).map_or((0, 0), |servers| {
            (servers.values().sum(), servers.len() as u64)
        })
    }

    /// Notes the level of every installed license (and of `also`) on `day`.
    fn touch(&mut self, day: i64, also: Option<&str>) {
        let licenses: BTreeSet<String> = self
            .installed
            .iter()
            .cloned()
            .chain(also.map(str::to_string))
            .chain(self.held.keys().cloned())
            .collect();
        for license in licenses {
            let (cores, servers) = self.level(&license);
            let entry = self.days.entry((license, day)).or_default();
            entry.peak_cores = entry.peak_cores.max(cores);
            entry.peak_servers = entry.peak_servers.max(servers);
        }
    }

    /// Accounts for the time from `from` to `to` (ms), over which nothing changed.
    fn advance(&mut self, from: u64, to: u64) {
        let mut at = from;
        while at < to {
            let day = day_of(at);
            let day_end = (at / DAY_MS + 1).saturating_mul(DAY_MS);
            let until = to.min(day_end);
            let span = until - at;
            *self.covered.entry(day).or_default() += span;
            self.touch(day, None);
            let levels: Vec<(String, u64)> = self
                .held
                .keys()
                .map(|l| (l.clone(), self.level(l).0))
                .collect();
            for (license, cores) in levels {
                let entry = self.days.entry((license, day)).or_default();
                entry.core_ms += u128::from(cores) * u128::from(span);
            }
            at = until;
        }
    }

    fn apply(&mut self, event: &EventBody) {
        let day = day_of(event.clock.as_millis());
        match &event.what {
            EventWhat::Allocated {
                node,
                license,
                counted_cores,
                ..
            } => {
                for servers in self.held.values_mut() {
                    servers.remove(node.as_str());
                }
                self.held
                    .entry(license.to_string())
                    .or_default()
                    .insert(node.to_string(), u64::from(*counted_cores));
                self.installed.insert(license.to_string());
            }
            EventWhat::Freed { node, license, .. } => {
                if let Some(servers) = self.held.get_mut(license.as_str()) {
                    servers.remove(node.as_str());
                }
            }
            EventWhat::Refused { license, code, .. } => {
                let license = license
                    .as_ref()
                    .map_or(NO_LICENSE.to_string(), |l| l.to_string());
                let entry = self.days.entry((license, day)).or_default();
                *entry.refusals.entry(code.as_str().to_string()).or_default() += 1;
            }
            EventWhat::LicenseInstalled { license, .. }
            | EventWhat::LicenseReplaced { license, .. } => {
                self.installed.insert(license.to_string());
            }
            EventWhat::LicenseRemoved { license } => {
                // Its day is still shown: touch it before it goes.
                self.touch(day, Some(license.as_str()));
                self.installed.remove(license.as_str());
                self.held.remove(license.as_str());
            }
            EventWhat::MembershipChanged { .. } | EventWhat::RetentionChanged { .. } => {}
        }
        self.held.retain(|_, servers| !servers.is_empty());
        self.touch(day, None);
    }
}

/// The report of `events` (oldest first, as the history gives them) up to `end` (ms since
/// the epoch; events after it are left out), one row per license and day, sorted by license
/// then day; see the module documentation.
pub fn report(events: &[EventBody], end: u64, filter: &Filter) -> Vec<DayRow> {
    let mut replay = Replay::default();
    let mut now: Option<u64> = None;
    for event in events {
        let clock = event.clock.as_millis();
        if clock > end {
            break;
        }
        // The clock never goes back; should a history say otherwise, its event is placed at
        // the latest time seen.
        let at = now.map_or(clock, |n| n.max(clock));
        if let Some(n) = now {
            replay.advance(n, at);
        }
        now = Some(at);
        replay.apply(event);
    }
    if let Some(n) = now {
        replay.advance(n, end.max(n));
    }
    replay
        .days
        .into_iter()
        .filter(|((license, day), _)| {
            filter.license.as_ref().is_none_or(|l| l == license)
                && filter.from_day.is_none_or(|f| *day >= f)
                && filter.to_day.is_none_or(|t| *day <= t)
        })
        .map(|((license, day), d)| {
            let covered = replay.covered.get(&day).copied().unwrap_or(0);
            let avg_cores = if covered == 0 {
                0.0
            } else {
                d.core_ms as f64 / covered as f64
            };
            DayRow {
                license,
                day: format_day(day),
                peak_cores: d.peak_cores,
                avg_cores,
                peak_servers: d.peak_servers,
                refusals: d.refusals,
            }
        })
        .collect()
}

/// A day number as `YYYY-MM-DD`.
pub fn format_day(day: i64) -> String {
    let ms = u64::try_from(day).unwrap_or(0).saturating_mul(DAY_MS);
    let text = crate::cli::output::format_time(licd_raft::types::Timestamp(ms));
    text[..10].to_string()
}

/// Parses `YYYY-MM-DD` into a day number (days since 1970-01-01).
pub fn parse_day(text: &str) -> Result<i64, String> {
    let bad = || format!("`{text}` is not a date: write YYYY-MM-DD, such as 2026-01-31");
    let mut parts = text.trim().split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err(bad());
    }
    // Days from civil (proleptic Gregorian), with March as the first month of the year.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok(era * 146_097 + doe - 719_468)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The refusals of a row as `CODE=n CODE=n`, or `-`.
fn refusals_text(row: &DayRow, separator: &str) -> String {
    if row.refusals.is_empty() {
        return String::new();
    }
    row.refusals
        .iter()
        .map(|(code, n)| format!("{code}={n}"))
        .collect::<Vec<_>>()
        .join(separator)
}

/// The report as a text table.
pub fn to_table(rows: &[DayRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let refusals = refusals_text(r, " ");
            vec![
                r.license.clone(),
                r.day.clone(),
                r.peak_cores.to_string(),
                format!("{:.2}", r.avg_cores),
                r.peak_servers.to_string(),
                if refusals.is_empty() {
                    "-".into()
                } else {
                    refusals
                },
            ]
        })
        .collect();
    crate::cli::output::table(
        &[
            "LICENSE",
            "DAY",
            "PEAK CORES",
            "AVG CORES",
            "PEAK SERVERS",
            "REFUSALS",
        ],
        &body,
    )
}

/// The report as CSV: a header line, then one line per row. `refusals` is the total,
/// `refusals_by_code` lists `CODE=n` separated by `;`.
pub fn to_csv(rows: &[DayRow]) -> String {
    let mut out =
        String::from("license,day,peak_cores,avg_cores,peak_servers,refusals,refusals_by_code\n");
    for r in rows {
        let total: u64 = r.refusals.values().sum();
        out.push_str(&format!(
            "{},{},{},{:.2},{},{},{}\n",
            csv_field(&r.license),
            r.day,
            r.peak_cores,
            r.avg_cores,
            r.peak_servers,
            total,
            csv_field(&refusals_text(r, ";"))
        ));
    }
    out
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests;
