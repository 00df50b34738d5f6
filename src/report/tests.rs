//! The report's figures on hand-built histories, each worked out by hand in its comment.

use super::*;
use crate::api::{ErrorCode, FreedReason};
use licd_raft::types::{LicenseId, MacAddr, NodeName, Timestamp};

const HOUR: u64 = 3_600_000;
/// 2026-01-01 00:00:00 UTC.
const JAN_1: u64 = 1_767_225_600_000;

struct History {
    events: Vec<EventBody>,
}

impl History {
    fn new() -> Self {
        History { events: Vec::new() }
    }

    fn at(&mut self, ms: u64, what: EventWhat) -> &mut Self {
        let seq = self.events.len() as u64 + 1;
        self.events.push(EventBody {
            seq,
            index: seq + 10,
            time: Some(Timestamp(ms)),
            clock: Timestamp(ms),
            what,
        });
        self
    }

    fn install(&mut self, ms: u64, license: &str) -> &mut Self {
        self.at(
            ms,
            EventWhat::LicenseInstalled {
                license: LicenseId::new(license).unwrap(),
                max_cores: 64,
            },
        )
    }

    fn allocate(&mut self, ms: u64, license: &str, node: &str, cores: u32) -> &mut Self {
        self.at(
            ms,
            EventWhat::Allocated {
                node: NodeName::new(node).unwrap(),
                license: LicenseId::new(license).unwrap(),
                mac: MacAddr::from_bytes([2, 0, 0, 0, 0, 1]),
                cores,
                counted_cores: cores,
                replaced: false,
            },
        )
    }

    fn free(&mut self, ms: u64, license: &str, node: &str) -> &mut Self {
        self.at(
            ms,
            EventWhat::Freed {
                node: NodeName::new(node).unwrap(),
                license: LicenseId::new(license).unwrap(),
                counted_cores: 0,
                reason: FreedReason::Released,
                code: None,
            },
        )
    }

    fn refuse(&mut self, ms: u64, license: Option<&str>, code: ErrorCode) -> &mut Self {
        self.at(
            ms,
            EventWhat::Refused {
                node: NodeName::new("x").unwrap(),
                license: license.map(|l| LicenseId::new(l).unwrap()),
                cores: 8,
                code,
            },
        )
    }
}

fn row<'a>(rows: &'a [DayRow], license: &str, day: &str) -> &'a DayRow {
    rows.iter()
        .find(|r| r.license == license && r.day == day)
        .unwrap_or_else(|| panic!("no row {license} {day} in {rows:#?}"))
}

#[test]
fn peak_and_time_weighted_average_over_a_covered_day() {
    // Covered from 00:00 to 24:00 on Jan 1: 8 cores from 06:00 to 18:00, 4 more from
    // 12:00 to 18:00. Integral: 8*12h + 4*6h = 120 core-hours over 24 h = 5 cores.
    let mut h = History::new();
    h.install(JAN_1, "lic")
        .allocate(JAN_1 + 6 * HOUR, "lic", "a", 8)
        .allocate(JAN_1 + 12 * HOUR, "lic", "b", 4)
        .free(JAN_1 + 18 * HOUR, "lic", "a")
        .free(JAN_1 + 18 * HOUR, "lic", "b");
    let rows = report(&h.events, JAN_1 + 24 * HOUR, &Filter::default());
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let r = row(&rows, "lic", "2026-01-01");
    assert_eq!((r.peak_cores, r.peak_servers), (12, 2));
    assert!((r.avg_cores - 5.0).abs() < 1e-9, "{}", r.avg_cores);
}

#[test]
fn a_level_carries_over_midnight_and_the_partial_day_is_averaged_over_its_cover() {
    // Installed at 12:00 on Jan 1, 10 cores from 18:00 Jan 1 to 06:00 Jan 2; the
    // report ends at 12:00 Jan 2.
    // Jan 1: covered 12 h, 10 cores for 6 h: 60/12 = 5. Jan 2: covered 12 h, 10 cores
    // for 6 h: 5; its peak is the 10 it began with.
    let mut h = History::new();
    h.install(JAN_1 + 12 * HOUR, "lic")
        .allocate(JAN_1 + 18 * HOUR, "lic", "a", 10)
        .free(JAN_1 + 30 * HOUR, "lic", "a");
    let rows = report(&h.events, JAN_1 + 36 * HOUR, &Filter::default());
    let d1 = row(&rows, "lic", "2026-01-01");
    let d2 = row(&rows, "lic", "2026-01-02");
    assert_eq!((d1.peak_cores, d2.peak_cores), (10, 10));
    assert!((d1.avg_cores - 5.0).abs() < 1e-9, "{}", d1.avg_cores);
    assert!((d2.avg_cores - 5.0).abs() < 1e-9, "{}", d2.avg_cores);
    assert_eq!(rows.len(), 2);
}

#[test]
fn a_reallocation_replaces_the_servers_cores_and_refusals_are_counted_by_code() {
    // a holds 4 cores from 00:00, re-allocated to 12 at 12:00: the level is 12, not 16,
    // and the average 4*12h + 12*12h = 192/24 = 8.
    let mut h = History::new();
    h.install(JAN_1, "lic")
        .allocate(JAN_1, "lic", "a", 4)
        .allocate(JAN_1 + 12 * HOUR, "lic", "a", 12)
        .refuse(JAN_1 + 13 * HOUR, Some("lic"), ErrorCode::CpuLimitExhausted)
        .refuse(JAN_1 + 14 * HOUR, Some("lic"), ErrorCode::CpuLimitExhausted)
        .refuse(
            JAN_1 + 15 * HOUR,
            Some("lic"),
            ErrorCode::InvalidMultiServerLicense,
        )
        .refuse(JAN_1 + 16 * HOUR, None, ErrorCode::NoLicense);
    let rows = report(&h.events, JAN_1 + 24 * HOUR, &Filter::default());
    let r = row(&rows, "lic", "2026-01-01");
    assert_eq!((r.peak_cores, r.peak_servers), (12, 1));
    assert!((r.avg_cores - 8.0).abs() < 1e-9, "{}", r.avg_cores);
    assert_eq!(
        r.refusals,
        BTreeMap::from([
            ("CPU_LIMIT_EXHAUSTED".to_string(), 2),
            ("INVALID_MULTI_SERVER_LICENSE".to_string(), 1),
        ])
    );
    let none = row(&rows, NO_LICENSE, "2026-01-01");
    assert_eq!(none.refusals["NO_LICENSE"], 1);
    assert_eq!(none.peak_cores, 0);
}

#[test]
fn filters_keep_a_license_and_a_range_of_days() {
    let mut h = History::new();
    h.install(JAN_1, "one")
        .install(JAN_1, "two")
        .allocate(JAN_1 + HOUR, "one", "a", 4)
        .allocate(JAN_1 + 2 * HOUR, "two", "b", 6);
    let end = JAN_1 + 3 * 24 * HOUR;
    let all = report(&h.events, end, &Filter::default());
    assert_eq!(all.len(), 6, "two licenses, three days: {all:#?}");
    let filter = Filter {
        license: Some("two".into()),
        from_day: Some(parse_day("2026-01-02").unwrap()),
        to_day: Some(parse_day("2026-01-02").unwrap()),
    };
    let rows = report(&h.events, end, &filter);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!((r.license.as_str(), r.day.as_str()), ("two", "2026-01-02"));
    assert_eq!(r.peak_cores, 6);
    assert!((r.avg_cores - 6.0).abs() < 1e-9);
}

#[test]
fn a_removed_license_keeps_its_day_and_then_has_no_rows() {
    let mut h = History::new();
    h.install(JAN_1, "lic")
        .allocate(JAN_1, "lic", "a", 6)
        .at(
            JAN_1 + 6 * HOUR,
            EventWhat::Freed {
                node: NodeName::new("a").unwrap(),
                license: LicenseId::new("lic").unwrap(),
                counted_cores: 6,
                reason: FreedReason::LicenseRemoved,
                code: None,
            },
        )
        .at(
            JAN_1 + 6 * HOUR,
            EventWhat::LicenseRemoved {
                license: LicenseId::new("lic").unwrap(),
            },
        );
    let rows = report(&h.events, JAN_1 + 48 * HOUR, &Filter::default());
    assert_eq!(rows.len(), 1, "{rows:#?}");
    // 6 cores for 6 of 24 hours.
    assert!((rows[0].avg_cores - 1.5).abs() < 1e-9);
}

#[test]
fn events_after_the_end_are_left_out_and_an_empty_history_has_no_rows() {
    assert!(report(&[], JAN_1, &Filter::default()).is_empty());
    let mut h = History::new();
    h.install(JAN_1, "lic")
        .allocate(JAN_1 + 30 * HOUR, "lic", "a", 6);
    let rows = report(&h.events, JAN_1 + 24 * HOUR, &Filter::default());
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].peak_cores, 0);
}

#[test]
fn csv_and_table_show_every_figure() {
    let mut h = History::new();
    h.install(JAN_1, "lic")
        .allocate(JAN_1, "lic", "a", 6)
        .refuse(JAN_1 + HOUR, Some("lic"), ErrorCode::CpuLimitExhausted)
        .refuse(
            JAN_1 + HOUR,
            Some("lic"),
            ErrorCode::InvalidMultiServerLicense,
        );
    let rows = report(&h.events, JAN_1 + 24 * HOUR, &Filter::default());
    assert_eq!(
        to_csv(&rows),
        "license,day,peak_cores,avg_cores,peak_servers,refusals,refusals_by_code\n\
         lic,2026-01-01,6,6.00,1,2,CPU_LIMIT_EXHAUSTED=1;INVALID_MULTI_SERVER_LICENSE=1\n"
    );
    let table = to_table(&rows);
    assert!(table.starts_with("LICENSE"), "{table}");
    assert!(
        table.contains("CPU_LIMIT_EXHAUSTED=1 INVALID_MULTI_SERVER_LICENSE=1"),
        "{table}"
    );
    assert_eq!(csv_field("a,b"), "\"a,b\"");
}

#[test]
fn dates_parse_and_print_as_utc_days() {
    assert_eq!(parse_day("1970-01-01"), Ok(0));
    assert_eq!(parse_day("2026-01-01"), Ok((JAN_1 / DAY_MS) as i64));
    assert_eq!(
        parse_day("2024-02-29").map(format_day).unwrap(),
        "2024-02-29"
    );
    assert_eq!(format_day(parse_day("2026-12-31").unwrap()), "2026-12-31");
    for bad in [
        "2026-02-30",
        "2025-02-29",
        "2026-13-01",
        "26-01-01x",
        "yesterday",
        "",
    ] {
        assert!(parse_day(bad).is_err(), "{bad}");
    }
}
