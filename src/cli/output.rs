//! How the commands print: human text by default, the raw JSON answer with `--json`; and how
//! errors are turned into one readable line (and, with `--json`, a JSON error body).

use std::fmt::Write as _;

use licd_raft::types::Timestamp;
use serde::Serialize;

use crate::api::{ErrorBody, ErrorCode};
use crate::client::ClientError;

/// Where a command writes its answer.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print the raw JSON answer instead of human text.
    pub json: bool,
}

impl Output {
    /// Prints `value` as pretty JSON on stdout.
    pub fn print_json<T: Serialize + ?Sized>(&self, value: &T) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        println!("{text}");
        Ok(())
    }

    /// Prints `value` as JSON with `--json`, or runs `human` to print text otherwise.
    pub fn emit<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce(),
    ) -> anyhow::Result<()> {
        if self.json {
            self.print_json(value)
        } else {
            human();
            Ok(())
        }
    }
}

/// An error that carries its own exit code (other errors exit with 1).
#[derive(Debug)]
pub struct Exit {
    /// The readable message.
    pub message: String,
    /// The process exit code.
    pub code: u8,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// One readable line for a client error, such as
/// `CPU_LIMIT_EXHAUSTED: CPU limit exhausted. Can't allocate more CPUs. (requested 8, available 4, licensed 16)`.
pub fn describe_client_error(e: &ClientError) -> String {
    match e {
        ClientError::Api { status, body } => {
            let mut line = format!("{}: {}", body.code, body.message);
            let mut figures = Vec::new();
            if let Some(r) = body.requested {
                figures.push(format!("requested {r}"));
            }
            if let Some(a) = body.available {
                figures.push(format!("available {a}"));
            }
            if let Some(l) = body.licensed {
                figures.push(format!("licensed {l}"));
            }
            if !figures.is_empty() {
                let _ = write!(line, " ({})", figures.join(", "));
            }
            match status.as_u16() {
                401 => line.push_str(
                    " (hint: pass --admin-token or set LICD_ADMIN_TOKEN; `licd dev` writes it to \
                     <dev dir>/admin-token)",
                ),
                403 => line.push_str(" (hint: check --admin-token / LICD_ADMIN_TOKEN)"),
                _ => {}
            }
            line
        }
        ClientError::Unavailable {
            deadline,
            attempts,
            last_error,
        } => format!(
            "UNAVAILABLE: no licd node answered within {} ({attempts} attempts); last error: \
             {last_error} (is the cluster running and are --endpoints / LICD_ENDPOINTS right?)",
            human_duration_ms(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX))
        ),
        ClientError::Config(m) => format!("invalid client configuration: {m}"),
        ClientError::Protocol { endpoint, message } => {
            format!("unexpected answer from {endpoint}: {message}")
        }
        ClientError::BadSignature(why) => format!(
            "BAD_SIGNATURE: the check answer is not the license cluster's: {why} (is \
             --answer-key / LICD_ANSWER_KEY the cluster's answer key?)"
        ),
        ClientError::Tls { endpoint, message } => format!(
            "TLS: the connection to {endpoint} failed: {message} (hint: --ca-file / \
             LICD_CA_FILE must name the CA that signed the cluster's certificates; with mutual \
             TLS pass --client-cert and --client-key)"
        ),
    }
}

/// The JSON error body printed on stdout with `--json` when a command fails.
pub fn error_body(e: &anyhow::Error) -> ErrorBody {
    if let Some(ce) = e.downcast_ref::<ClientError>() {
        return match ce {
            ClientError::Api { body, .. } => body.clone(),
            ClientError::Unavailable { .. } => {
                ErrorBody::new(ErrorCode::Unavailable, describe_client_error(ce))
            }
            ClientError::Config(_) => {
                ErrorBody::new(ErrorCode::ClientConfig, describe_client_error(ce))
            }
            ClientError::Protocol { .. } => {
                ErrorBody::new(ErrorCode::Protocol, describe_client_error(ce))
            }
            ClientError::BadSignature(_) => {
                ErrorBody::new(ErrorCode::BadSignature, describe_client_error(ce))
            }
            ClientError::Tls { .. } => ErrorBody::new(ErrorCode::Tls, describe_client_error(ce)),
        };
    }
    ErrorBody::new(ErrorCode::Error, describe_error(e))
}

/// One readable line for any error of a command.
pub fn describe_error(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ClientError>() {
        Some(ce) => describe_client_error(ce),
        None => format!("{e:#}"),
    }
}

/// Formats an instant as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_time(t: Timestamp) -> String {
    let ms = t.as_millis();
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// An instant with how far it is from `now`, such as `2025-01-01 00:00:00 UTC (in 29 s)`.
pub fn format_time_from(t: Timestamp, now: Timestamp) -> String {
    let relative = if t >= now {
        format!("in {}", human_duration_ms(t.0 - now.0))
    } else {
        format!("{} ago", human_duration_ms(now.0 - t.0))
    };
    format!("{} ({relative})", format_time(t))
}

/// A duration in milliseconds, in the largest unit that reads well.
pub fn human_duration_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        let s = ms as f64 / 1000.0;
        if ms % 1000 == 0 {
            format!("{} s", ms / 1000)
        } else {
            format!("{s:.1} s")
        }
    } else if ms < 2 * 3_600_000 {
        format!("{} min", ms / 60_000)
    } else if ms < 2 * 86_400_000 {
        format!("{} h", ms / 3_600_000)
    } else {
        format!("{} days", ms / 86_400_000)
    }
}

/// Days since 1970-01-01 to a (year, month, day) civil date (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A plain text table: a header row and rows, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = widths.get(i).copied().unwrap_or(0);
            let _ = write!(text, "{cell:<pad$}");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `-` for a missing value.
pub fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_as_utc_dates() {
        assert_eq!(format_time(Timestamp(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            format_time(Timestamp(951_782_400_000 + 3_723_000)),
            "2000-02-29 01:02:03 UTC"
        );
        assert_eq!(
            format_time(Timestamp(1_735_689_599_000)),
            "2024-12-31 23:59:59 UTC"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration_ms(500), "500 ms");
        assert_eq!(human_duration_ms(30_000), "30 s");
        assert_eq!(human_duration_ms(1_500), "1.5 s");
        assert_eq!(human_duration_ms(600_000), "10 min");
        assert_eq!(human_duration_ms(30 * 86_400_000), "30 days");
    }

    #[test]
    fn api_errors_show_code_message_and_figures() {
        let mut body = ErrorBody::new(
            ErrorCode::CpuLimitExhausted,
            "CPU limit exhausted. Can't allocate more CPUs.",
        );
        body.requested = Some(8);
        body.available = Some(4);
        body.licensed = Some(16);
        let e = ClientError::Api {
            status: reqwest::StatusCode::CONFLICT,
            body,
        };
        assert_eq!(
            describe_client_error(&e),
            "CPU_LIMIT_EXHAUSTED: CPU limit exhausted. Can't allocate more CPUs. \
             (requested 8, available 4, licensed 16)"
        );
    }

    #[test]
    fn tables_pad_columns() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\nxxx  y\n");
    }
}
