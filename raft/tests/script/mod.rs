//! The script runner: reads a script, runs its commands, and compares what they print with
//! the golden output kept in the script. The format is described at the top of
//! `tests/scripts.rs`.

mod machine;
mod show;

use std::path::PathBuf;

use machine::Machine;

/// The environment variable that, when set to anything but `0` or nothing, makes the runner
/// write the output it got into the scripts instead of comparing.
pub const UPDATE_VAR: &str = "UPDATE_GOLDEN";

/// The marker that starts a line of golden output.
const OUTPUT: &str = ">";

/// The marker that starts a case: a fresh state machine, named by the rest of the line.
const CASE: &str = "##";

/// Runs `text`, the script called `name`, and returns the script as it should read: every
/// comment and command as written, each command followed by the output it printed now.
///
/// `Err` names the script, the line and the reason when a line cannot run: a misspelt
/// command, or a check of the runner's own failing (see `machine`).
pub fn run(name: &str, text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut machine = Machine::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end();
        let trimmed = line.trim_start();
        if trimmed.starts_with(OUTPUT) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if trimmed.starts_with(CASE) {
            machine = Machine::new();
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let printed = machine
            .run(trimmed)
            .map_err(|e| format!("{name}:{}: {trimmed}\n  {e}", number + 1))?;
        for printed in printed {
            out.push_str(OUTPUT);
            out.push(' ');
            out.push_str(&printed);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Runs a script and compares it with its golden output; `Err` is a readable diff.
pub fn check(name: &str, text: &str) -> Result<(), String> {
    let actual = run(name, text)?;
    let expected = normalized(text);
    if actual == expected {
        return Ok(());
    }
    Err(format!(
        "script {name} does not match its golden output (- expected, + actual; \
         `{UPDATE_VAR}=1 cargo test -p licd-raft --test scripts` accepts the actual output):\n{}",
        diff(name, &expected, &actual)
    ))
}

/// The script text as the runner writes it: no trailing spaces, one final newline.
fn normalized(text: &str) -> String {
    text.lines()
        .map(|l| l.trim_end().to_string() + "\n")
        .collect()
}

/// Where the scripts live.
pub fn directory() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scripts")
}

/// Runs `tests/scripts/<name>.txt`: checks it, or rewrites its golden output when
/// [`UPDATE_VAR`] is set. Panics with the diff or the error.
pub fn run_file(name: &str) {
    let path = directory().join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file = format!("{name}.txt");
    let update = std::env::var(UPDATE_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    if update {
        let actual = run(&file, &text).unwrap_or_else(|e| panic!("{e}"));
        if actual != text {
            std::fs::write(&path, actual)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
    } else if let Err(diff) = check(&file, &text) {
        panic!("{diff}");
    }
}

/// One line of a diff: in both, only expected, or only actual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    Same,
    Removed,
    Added,
}

/// A line diff of `expected` against `actual`, in hunks headed by the script, the line of
/// the expected text where the hunk's first change is and the case it falls in, with a line
/// of context around the changes.
pub fn diff(name: &str, expected: &str, actual: &str) -> String {
    let old: Vec<&str> = expected.lines().collect();
    let new: Vec<&str> = actual.lines().collect();
    let edits = edits(&old, &new);
    let changed: Vec<usize> = (0..edits.len())
        .filter(|&i| edits[i].0 != Edit::Same)
        .collect();
    let mut out = String::new();
    let mut shown_until = 0;
    for &i in &changed {
        let start = i.saturating_sub(1).max(shown_until);
        if start > shown_until || shown_until == 0 {
            let old_line = edits[i].1;
            let case = old[..old_line.min(old.len())]
                .iter()
                .rev()
                .find(|l| l.trim_start().starts_with(CASE))
                .map_or(String::new(), |l| format!(" ({})", l.trim()));
            out += &format!("@@ {name}:{}{case}\n", old_line + 1);
        }
        let end = (i + 2).min(edits.len());
        for (edit, old_line, new_line) in &edits[start.max(shown_until)..end] {
            let (mark, text) = match edit {
                Edit::Same => (' ', old[*old_line]),
                Edit::Removed => ('-', old[*old_line]),
                Edit::Added => ('+', new[*new_line]),
            };
            out += &format!("{mark} {text}\n");
        }
        shown_until = end;
    }
    out
}

/// The shortest edit from `old` to `new` by longest common subsequence, as a list of
/// `(edit, index in old, index in new)`; an added line carries the index of the old line it
/// comes before.
fn edits(old: &[&str], new: &[&str]) -> Vec<(Edit, usize, usize)> {
    let (n, m) = (old.len(), new.len());
    // common[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut edits = Vec::new();
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            edits.push((Edit::Same, i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || common[i + 1][j] >= common[i][j + 1]) {
            edits.push((Edit::Removed, i, j));
            i += 1;
        } else {
            edits.push((Edit::Added, i, j));
            j += 1;
        }
    }
    edits
}
