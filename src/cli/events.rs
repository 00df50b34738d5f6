//! `licd events` and `licd report`: the cluster's usage history, as it happened and per day.
//!
//! Both read `GET /v1/events` (an operator's read) page by page. `events --follow` keeps
//! asking for what follows the last event it printed, waiting longer between empty answers
//! (up to [`FOLLOW_MAX_WAIT`]) and again briefly after an event, until Ctrl-C. `report` reads
//! the whole retained history and computes its figures with [`crate::report`].

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::common::ClientOpts;
use super::output::{Output, format_time, or_dash};
use crate::api::{EventBody, EventWhat, EventsBody, MAX_EVENTS_LIMIT};
use crate::client::Client;
use crate::report::{self, Filter};

/// The first wait of `--follow` after an empty answer.
pub const FOLLOW_MIN_WAIT: Duration = Duration::from_millis(250);
/// The longest wait of `--follow` between two questions.
pub const FOLLOW_MAX_WAIT: Duration = Duration::from_secs(5);

/// Options of `licd events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events after this event number (0: from the oldest kept).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub since: u64,
    /// Keep printing new events as they happen, until Ctrl-C (with --json: one JSON event
    /// per line).
    #[arg(long)]
    pub follow: bool,
    /// How many events one request asks for.
    #[arg(long, default_value_t = 1_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=MAX_EVENTS_LIMIT as u64))]
    pub page: u64,
    /// Cluster connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// The formats of `licd report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ReportFormat {
    /// A text table.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of rows.
    Json,
}

/// Options of `licd report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Only this license.
    #[arg(long, value_name = "ID")]
    pub license: Option<String>,
    /// First day reported, YYYY-MM-DD (UTC).
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub from: Option<i64>,
    /// Last day reported, YYYY-MM-DD (UTC), included.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub to: Option<i64>,
    /// Output format (`--json` also selects json).
    #[arg(long, value_enum, default_value_t)]
    pub format: ReportFormat,
    /// Cluster connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

fn parse_date(text: &str) -> Result<i64, String> {
    report::parse_day(text)
}

/// One readable line for an event.
pub fn describe(e: &EventBody) -> String {
    let what = match &e.what {
        EventWhat::Allocated {
            node,
            license,
            mac,
            cores,
            counted_cores,
            replaced,
        } => format!(
            "allocated {node} {license}: {cores} cores (counted {counted_cores}), MAC {mac}{}",
            if *replaced {
                ", replacing its allocation"
            } else {
                ""
            }
        ),
        EventWhat::Refused {
            node,
            license,
            cores,
            code,
        } => format!(
            "refused {node} {}: {cores} cores, {code}",
            or_dash(license.as_ref())
        ),
        EventWhat::Freed {
            node,
            license,
            counted_cores,
            reason,
            code,
        } => {
            let reason = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
            format!("freed {node} {license}: {counted_cores} cores, {reason}{code}")
        }
        EventWhat::LicenseInstalled { license, max_cores } => {
            format!("license {license} installed: {max_cores} cores")
        }
        EventWhat::LicenseReplaced { license, max_cores } => {
            format!("license {license} replaced by a newer issue: {max_cores} cores")
        }
        EventWhat::LicenseRemoved { license } => format!("license {license} removed"),
        EventWhat::MembershipChanged { voters, learners } => {
            format!("membership: voters {voters:?}, learners {learners:?}")
        }
        EventWhat::RetentionChanged {
            retention_days,
            max_events,
        } => format!("history retention: {retention_days} days, at most {max_events} events"),
    };
    let at = format_time(e.clock);
    let stamp = if e.time.is_none() { " (unstamped)" } else { "" };
    format!("#{:<6} {at}{stamp}  {what}", e.seq)
}

/// `licd events`.
pub async fn events(args: EventsArgs, out: Output) -> anyhow::Result<ExitCode> {
    let client = args.client.reader_client()?;
    let limit = usize::try_from(args.page)?;
    if !args.follow {
        let body = read_all(&client, args.since, limit).await?;
        out.emit(&body, || {
            for e in &body.events {
                println!("{}", describe(e));
            }
            if body.events.is_empty() {
                println!("no events after #{}", args.since);
            }
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut since = args.since;
    let mut wait = FOLLOW_MIN_WAIT;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let asked = tokio::select! {
            _ = &mut stop => return Ok(ExitCode::SUCCESS),
            asked = client.events(since, limit) => asked,
        };
        match asked {
            Ok(page) => {
                for e in &page.events {
                    if out.json {
                        println!("{}", serde_json::to_string(e)?);
                    } else {
                        println!("{}", describe(e));
                    }
                }
                since = page.next;
                if page.events.len() == limit {
                    continue;
                }
                wait = if page.events.is_empty() {
                    (wait * 2).min(FOLLOW_MAX_WAIT)
                } else {
                    FOLLOW_MIN_WAIT
                };
            }
            Err(e) => {
                eprintln!(
                    "warning: {}; asking again",
                    super::output::describe_client_error(&e)
                );
                wait = (wait * 2).min(FOLLOW_MAX_WAIT);
            }
        }
        tokio::select! {
            _ = &mut stop => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Every retained event after `since`, page by page.
async fn read_all(client: &Client, since: u64, limit: usize) -> anyhow::Result<EventsBody> {
    let mut all = EventsBody {
        events: Vec::new(),
        next: since,
    };
    loop {
        let page = client.events(all.next, limit).await?;
        let full = page.events.len() == limit;
        all.events.extend(page.events);
        if page.next <= all.next && full {
            bail!(
                "the cluster answered a full page that does not move on from #{}",
                all.next
            );
        }
        all.next = page.next;
        if !full {
            return Ok(all);
        }
    }
}

/// `licd report`.
pub async fn report(args: ReportArgs, out: Output) -> anyhow::Result<ExitCode> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && from > to
    {
        bail!("--from is after --to");
    }
    let client = args.client.reader_client()?;
    let history = read_all(&client, 0, MAX_EVENTS_LIMIT).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    // The report ends now (or at the last event, should this machine's clock be behind the
    // cluster's), or at the end of --to if that is earlier.
    let last = history.events.last().map_or(0, |e| e.clock.as_millis());
    let now = now.max(last);
    let end = args.to.map_or(now, |to| {
        let end_of_to = u64::try_from(to + 1).unwrap_or(0) * licd_raft::events::DAY_MS;
        now.min(end_of_to)
    });
    let filter = Filter {
        license: args.license.clone(),
        from_day: args.from,
        to_day: args.to,
    };
    let rows = report::report(&history.events, end, &filter);
    let format = if out.json {
        ReportFormat::Json
    } else {
        args.format
    };
    match format {
        ReportFormat::Table if rows.is_empty() => {
            println!("no usage in the history for this report")
        }
        ReportFormat::Table => print!("{}", report::to_table(&rows)),
        ReportFormat::Csv => print!("{}", report::to_csv(&rows)),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
    }
    Ok(ExitCode::SUCCESS)
}
