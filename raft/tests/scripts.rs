//! The rules of `LicenseState::apply` and of the license check and usage report, written as
//! scripts: `tests/scripts/*.txt`, one file per rule area.
//!
//! A script is a sequence of commands, each followed by what it printed. The runner runs the
//! commands on a fresh `LicenseState` and compares what they print now with what the file
//! says they printed: the file is its own expected output (its golden output). A rule that
//! changes shows up as a diff of text; a new case is a few lines, not a new Rust function.
//! Everything goes through the crate's public API.
//!
//! # Lines
//!
//! - `# text`: a comment. Each file opens with comments saying which rule it covers.
//! - `## name`: starts a case: a fresh, empty state at time 10 000 with a fresh request
//!   counter. The name is the case's intent, and a diff names the case it falls in.
//! - `> text`: golden output, printed by the command above it. The runner writes these.
//! - a blank line: ignored (kept as written).
//! - anything else: a command.
//!
//! # Commands
//!
//! Each command may start with `@<time>`, the calendar time in milliseconds the leader stamps
//! the request with (the voters' agreed time; for a query, the caller's `now`). The time
//! sticks: a command without `@` runs at the time of the one before. A request may instead
//! start with `@-`: it carries no time (the voters' clocks did not agree), and the script
//! time stays what it was for the commands after it. `req=<id>` gives the request id;
//! without it, each request gets a fresh one (`req-1`, `req-2`, ... within the case).
//! Numbers may group digits with `_`. A MAC address is written as a number `n`, standing for
//! `02:00:00:00:00:<n>` (the default license allows 1, 2 and 3), or in full.
//!
//! Requests, applied with `LicenseState::apply`:
//! - `install [license=lic-1] [serial=1] [issued=1000] [expires=1000000000|never] [max=16]
//!   [min=4] [macs=1,2,3] [features=ocr] [customer="Example Corp"]`: install a license; each
//!   option overrides a field of the default license, shown in brackets. `macs=` alone is an
//!   empty list.
//! - `remove <license>`: remove a license.
//! - `allocate <node> mac=<mac> cores=<n> [ttl=60000] [license=<id>] [token=<node>]
//!   [presented=<token>]`: allocate a server's cores, from the only license unless
//!   `license=` names one. `token=` labels the new lease token the leader issues (by
//!   default the server's name), `presented=` the token the client presents to re-allocate
//!   what it holds. The state holds a token's hash; scripts write and print the label.
//! - `release <node> [presented=<token>|none]`: the administrator's release; with
//!   `presented=`, the holder's release (`ReleaseHeld`) presenting that token (`none`: none).
//! - `checkpoint <node>=<grant>:<remaining_ms> ...`: record the lease time the leader
//!   measured for each named grant (`checkpoint a=0:30_000 b=1:5_000`); none named is an
//!   empty checkpoint.
//! - `expire <node>=<grant> ...`: end the named grants (`expire a=0`); none named is an empty
//!   expiration, which still carries a time.
//! - `repeat <count> <request>`: the request `count` times under fresh ids; prints each
//!   distinct response once, after `<count> times:`.
//!
//! - `retention days=<n> max=<n>`: set the usage history's retention
//!   (`SetEventRetention`).
//!
//! There is no heartbeat request: a heartbeat is not a log entry, the leader renews the lease
//! on its own clock after asking `renewable`.
//!
//! Queries and checks (a query needs a time, so `@-` is refused on one):
//! - `check <node> [mac=<mac>] [left=<ms>]`: the license check at the command's time, with
//!   `left` the lease time the leader measures for the server (by default the allocation's
//!   checkpointed `remaining_ms`).
//! - `usage [<license>] [left=<node>:<ms>,...]`: the usage report of one license, or of all,
//!   with the lease time the leader measures for the servers named (the others: their
//!   checkpointed `remaining_ms`).
//! - `renewable <node>`: whether the leader may renew the server's lease at the command's
//!   time: the allocation and its license's `max_cores`, or the refusal.
//! - `events [since=0] [limit=100]`: a page of the usage history (`licd_raft::events`) that
//!   the requests of the case caused, each request at its number as its log index (a
//!   request answered from the exactly-once table causes none): one line per event, then
//!   the page's `next`.
//! - `state`: the state's digest (below), whole.
//! - `snapshot`: encodes the state, decodes it, and checks that the copy is equal and
//!   encodes to the same bytes. From then on every command also runs on the copy, and the
//!   script fails unless the copy answers and becomes exactly what the original does.
//!
//! # Output
//!
//! A request prints its `Outcome` (`allocated a: ...`, `released a: freed=none`,
//! `checkpointed: updated=1`, `expired: ended=a,b`, ...) or its `Rejection` with code, exact
//! message and, for `CPU_LIMIT_EXHAUSTED`, the figures. Then it prints how the state's digest
//! changed. The digest is the clock, the number of allocation changes (each allocation added
//! or removed counts one, `LicenseState::allocation_changes`) and the number of remembered
//! request ids, every license (with the cores counted against it) and every allocation (with
//! its `grant` number and its checkpointed `remaining` lease time): `+ alloc c: ...`
//! appeared, `- alloc a` went, `~ license lic-1: counted=12->16` changed (only the fields
//! that did), one `~` line for the scalars, and `= unchanged` when nothing changed at all.
//! A refusal therefore shows that it changed nothing but the exactly-once table:
//!
//! ```text
//! ## two servers fill the license
//! install
//! > installed lic-1: replaced=false unchanged=false dropped=none
//! > + license lic-1: serial=1 issued=1000 expires=1000000000 max=16 min=4 macs=1,2,3 features=ocr customer="Example Corp" counted=0
//! > ~ clock=0->10000 remembered=0->1
//! allocate a mac=1 cores=12
//! > allocated a: replaced=false allocated_cores=12 licensed_cores=16
//! >   allocation: license=lic-1 mac=1 cores=12 counted=12 ttl=60000 at=10000 grant=0 remaining=60000
//! > ~ license lic-1: counted=0->12
//! > + alloc a: license=lic-1 mac=1 cores=12 counted=12 ttl=60000 at=10000 grant=0 remaining=60000
//! > ~ changes=0->1 remembered=1->2
//! allocate b mac=2 cores=5
//! > rejected CPU_LIMIT_EXHAUSTED: "CPU limit exhausted. Can't allocate more CPUs." requested=5 available=4 licensed=16
//! > ~ remembered=2->3
//! ```
//!
//! A query prints its whole answer: every field of a `CheckResult` or a `Usage`.
//!
//! After every request the runner also checks that the state equals its own snapshot round
//! trip, which rebuilds the derived index (counted cores) from the allocations: an index that
//! drifted fails the script at that line.
//!
//! # Running and updating
//!
//! `cargo test -p licd-raft --test scripts` runs every script, one test per file. A script
//! whose output differs fails with a diff (`-` the file, `+` the output now) whose hunks name
//! the script, the line and the case. A line that cannot run (a misspelt command, a missing
//! option) fails with the script and line, and is never written as output.
//!
//! `UPDATE_GOLDEN=1 cargo test -p licd-raft --test scripts` writes the output the commands
//! print now into the scripts instead. Write a new case as commands alone, run this, and read
//! the output it wrote before committing it: the golden output is only as right as that
//! reading.

mod script;

/// One test per script file, named after it; [`LISTED`] names them all.
macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                script::run_file(stringify!($name));
            }
        )*
        /// The scripts the tests above run.
        const LISTED: &[&str] = &[$(stringify!($name)),*];
    };
}

scripts!(
    allocation,
    checks,
    clock,
    events,
    exactly_once,
    expiry,
    heartbeats,
    leases,
    license_choice,
    mac_binding,
    reallocation,
    release,
    removal,
    replacement,
    snapshots,
    tokens,
    usage,
);

#[test]
fn every_script_file_has_its_test() {
    let mut files: Vec<String> = std::fs::read_dir(script::directory())
        .expect("tests/scripts is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "txt"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files, LISTED,
        "add the new script to `scripts!` in tests/scripts.rs"
    );
}

/// A script whose golden output is right, used by the tests of the runner itself.
const GOOD: &str = "\
# The cap.
## two servers fill the license
install
> installed lic-1: replaced=false unchanged=false dropped=none
> + license lic-1: serial=1 issued=1000 expires=1000000000 max=16 min=4 macs=1,2,3 features=ocr customer=\"Example Corp\" counted=0
> ~ clock=0->10000 remembered=0->1
allocate a mac=1 cores=12
> allocated a: replaced=false allocated_cores=12 licensed_cores=16
>   allocation: license=lic-1 mac=1 cores=12 counted=12 ttl=60000 at=10000 grant=0 remaining=60000 token=a
> ~ license lic-1: counted=0->12
> + alloc a: license=lic-1 mac=1 cores=12 counted=12 ttl=60000 at=10000 grant=0 remaining=60000 token=a
> ~ changes=0->1 remembered=1->2
allocate b mac=2 cores=5
> rejected CPU_LIMIT_EXHAUSTED: \"CPU limit exhausted. Can't allocate more CPUs.\" requested=5 available=4 licensed=16
> ~ remembered=2->3
";

#[test]
fn the_runner_accepts_a_script_whose_golden_output_is_right() {
    assert_eq!(script::check("good.txt", GOOD), Ok(()));
    assert_eq!(script::run("good.txt", GOOD).as_deref(), Ok(GOOD));
}

#[test]
fn the_runner_fails_a_wrong_golden_line_with_a_diff_naming_the_script_and_line() {
    // The golden output claims the refusal offered 3 cores; the state machine says 4.
    let wrong = GOOD.replace("available=4", "available=3");
    let diff = script::check("wrong.txt", &wrong).unwrap_err();
    assert!(
        diff.contains("@@ wrong.txt:14 (## two servers fill the license)\n"),
        "{diff}"
    );
    assert!(
        diff.contains(
            "\n  allocate b mac=2 cores=5\n\
             - > rejected CPU_LIMIT_EXHAUSTED: \"CPU limit exhausted. Can't allocate more CPUs.\" \
             requested=5 available=3 licensed=16\n\
             + > rejected CPU_LIMIT_EXHAUSTED: \"CPU limit exhausted. Can't allocate more CPUs.\" \
             requested=5 available=4 licensed=16\n"
        ),
        "{diff}"
    );
    assert!(
        diff.starts_with("script wrong.txt does not match"),
        "{diff}"
    );
}

#[test]
fn the_runner_fails_missing_and_extra_golden_lines() {
    // A command whose output was never recorded, and output no command prints.
    let missing = GOOD.replace("> ~ remembered=2->3\n", "");
    let diff = script::check("missing.txt", &missing).unwrap_err();
    assert!(diff.contains("+ > ~ remembered=2->3\n"), "{diff}");
    let extra = format!("{GOOD}> expired: ended=none\n");
    let diff = script::check("extra.txt", &extra).unwrap_err();
    assert!(diff.contains("- > expired: ended=none\n"), "{diff}");
}

#[test]
fn a_line_that_cannot_run_fails_with_the_script_and_line() {
    let typo = GOOD.replace("allocate b mac=2 cores=5", "alocate b mac=2 cores=5");
    let error = script::check("typo.txt", &typo).unwrap_err();
    assert!(error.starts_with("typo.txt:13: alocate b"), "{error}");
    assert!(error.contains("unknown command `alocate`"), "{error}");
    let missing = GOOD.replace("allocate b mac=2 cores=5", "allocate b mac=2");
    let error = script::check("missing.txt", &missing).unwrap_err();
    assert!(error.contains("`allocate` needs cores="), "{error}");
    // A lease named without its grant or its remaining time, and a query without a time.
    let lease = format!("{GOOD}checkpoint a=0\n");
    let error = script::check("lease.txt", &lease).unwrap_err();
    assert!(error.starts_with("lease.txt:16: checkpoint a=0"), "{error}");
    assert!(
        error.contains("is not <server>=<grant>:<remaining_ms>"),
        "{error}"
    );
    let error = script::check("lease.txt", &format!("{GOOD}expire a\n")).unwrap_err();
    assert!(error.contains("\"a\" is not <server>=<grant>"), "{error}");
    let error = script::check("query.txt", &format!("{GOOD}@- check a\n")).unwrap_err();
    assert!(error.contains("`check` is asked at a time"), "{error}");
}

#[test]
fn changes_far_apart_make_hunks_of_their_own() {
    let wrong = GOOD
        .replace("remembered=0->1", "remembered=0->2")
        .replace("available=4", "available=3");
    let diff = script::check("two.txt", &wrong).unwrap_err();
    let headers: Vec<&str> = diff.lines().filter(|l| l.starts_with("@@")).collect();
    assert_eq!(
        headers,
        [
            "@@ two.txt:6 (## two servers fill the license)",
            "@@ two.txt:14 (## two servers fill the license)",
        ],
        "{diff}"
    );
}
