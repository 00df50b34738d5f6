//! Reading and writing histories as JSON lines.
//!
//! Readers skip blank lines and report the first malformed line with its number; they
//! never panic. [`HistoryWriter`] is what the harness records with: it numbers the events
//! and refuses a timestamp that goes back.

use std::io::{self, BufRead, Write};
use std::path::Path;

use super::HistoryError;
use super::event::{Event, EventKind, F};
use super::value::Value;

/// Parses one JSON line into an event.
pub fn parse_event(line: &str) -> Result<Event, String> {
    serde_json::from_str(line).map_err(|e| e.to_string())
}

/// Parses a whole JSON-lines history. Blank lines are skipped; the first malformed line is
/// reported with its line number (from 1). Never panics.
pub fn parse_history(text: &str) -> Result<Vec<Event>, HistoryError> {
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_event(line).map_err(|message| HistoryError::Parse {
            line: i + 1,
            message,
        })?;
        events.push(event);
    }
    Ok(events)
}

/// Reads a JSON-lines history from any reader.
pub fn read_history_from(reader: impl BufRead) -> Result<Vec<Event>, HistoryError> {
    let mut events = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_event(&line).map_err(|message| HistoryError::Parse {
            line: i + 1,
            message,
        })?;
        events.push(event);
    }
    Ok(events)
}

/// Reads a JSON-lines history file.
pub fn read_history(path: impl AsRef<Path>) -> Result<Vec<Event>, HistoryError> {
    let file = std::fs::File::open(path)?;
    read_history_from(io::BufReader::new(file))
}

/// Writes one event as one JSON line (with the newline).
pub fn write_event(w: &mut impl Write, event: &Event) -> io::Result<()> {
    let mut line = event.to_json_line();
    line.push('\n');
    w.write_all(line.as_bytes())
}

/// Writes events as JSON lines.
pub fn write_history(w: &mut impl Write, events: &[Event]) -> io::Result<()> {
    for e in events {
        write_event(w, e)?;
    }
    Ok(())
}

/// The events as a JSON-lines string.
pub fn to_json_lines(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        out.push_str(&e.to_json_line());
        out.push('\n');
    }
    out
}

/// Appends events to a JSON-lines sink, numbering them: it assigns `index` (0, 1, 2, ...)
/// and refuses a timestamp earlier than the previous one. The harness calls it under the
/// one lock that orders its events, taking the timestamp under that lock.
#[derive(Debug)]
pub struct HistoryWriter<W: Write> {
    out: W,
    next_index: u64,
    last_time_ns: u64,
}

impl<W: Write> HistoryWriter<W> {
    /// A writer whose first event gets index 0.
    pub fn new(out: W) -> Self {
        HistoryWriter {
            out,
            next_index: 0,
            last_time_ns: 0,
        }
    }

    /// Writes one event built from its parts; returns it with its index.
    pub fn append(
        &mut self,
        time_ns: u64,
        process: &str,
        kind: EventKind,
        f: F,
        value: Value,
    ) -> io::Result<Event> {
        if time_ns < self.last_time_ns {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "time_ns {time_ns} is earlier than the previous event's {}",
                    self.last_time_ns
                ),
            ));
        }
        let event = Event {
            index: self.next_index,
            time_ns,
            process: process.to_string(),
            kind,
            f,
            value,
        };
        write_event(&mut self.out, &event)?;
        self.next_index += 1;
        self.last_time_ns = time_ns;
        Ok(event)
    }

    /// Flushes the sink.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The sink.
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::EXAMPLE;
    use crate::history::{History, Input, Output};

    #[test]
    fn round_trips_through_json_lines() {
        let events = parse_history(EXAMPLE).unwrap();
        let text = to_json_lines(&events);
        assert_eq!(text.lines().count(), events.len());
        assert_eq!(parse_history(&text).unwrap(), events);
        let mut buf = Vec::new();
        write_history(&mut buf, &events).unwrap();
        let back = read_history_from(io::Cursor::new(buf)).unwrap();
        assert_eq!(back, events);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_line_number() {
        let cases = [
            ("not json", "expected"),
            (r#"{"index": 1}"#, "missing field"),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "invoke", "f": "frobnicate", "value": {}}"#,
                "unknown variant",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "done", "f": "check", "value": {}}"#,
                "unknown variant",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "invoke", "f": "allocate", "value": {"node": "a"}}"#,
                "missing field `cores`",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "invoke", "f": "allocate", "value": {"node": "a", "cores": -1}}"#,
                "bad value",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "ok", "f": "allocate", "value": {"outcome": "maybe"}}"#,
                "unknown variant",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "ok", "f": "usage", "value": {"nodes": {}}}"#,
                "allocated_cores",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "info", "f": "start", "value": {"fault": "x"}}"#,
                "nemesis function",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "nemesis", "type": "ok", "f": "start", "value": {"fault": "x"}}"#,
                "nemesis events must be",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "nemesis", "type": "info", "f": "stop", "value": {}}"#,
                "missing field `fault`",
            ),
            (
                r#"{"index": 18446744073709551616, "time_ns": 1, "process": "c0", "type": "invoke", "f": "usage"}"#,
                "",
            ),
        ];
        for (line, needle) in cases {
            let text = format!(
                "{}\n\n{line}\n",
                Event::invoke(0, 0, "c9", Input::Usage).to_json_line()
            );
            match parse_history(&text) {
                Err(HistoryError::Parse { line: 3, message }) => {
                    assert!(message.contains(needle), "{line}: {message}")
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn history_writer_numbers_events_and_refuses_time_going_back() {
        let mut w = HistoryWriter::new(Vec::new());
        let e = w
            .append(
                10,
                "c0",
                EventKind::Invoke,
                F::Usage,
                Value::Input(Input::Usage),
            )
            .unwrap();
        assert_eq!(e.index, 0);
        let e = w
            .append(
                10,
                "c0",
                EventKind::Ok,
                F::Usage,
                Value::Output(Output::usage([])),
            )
            .unwrap();
        assert_eq!(e.index, 1);
        assert!(
            w.append(
                9,
                "c0",
                EventKind::Invoke,
                F::Usage,
                Value::Input(Input::Usage)
            )
            .is_err()
        );
        let text = String::from_utf8(w.into_inner()).unwrap();
        let h = History::parse(&text).unwrap();
        assert_eq!(h.ops.len(), 1);
        assert_eq!(h.ops[0].output, Some(Output::usage([])));
    }
}
