//! The names of faults: every [`Fault`] the nemesis knows, the [`FaultGroup`]s they form,
//! and the [`Selection`]s `--nemesis` accepts (a fault, a group, or `all`).
//!
//! A fault's name is what the command line accepts and what the history, `results.json` and
//! `summary.json` record; [`Fault::name`] is the one place it is spelled. A group is the part
//! of a name before its first `-` (`kill` holds `kill-leader`, `kill-random` and
//! `kill-majority`), so every fault belongs to exactly one group, and `all` is every fault.

use std::fmt;

use clap::ValueEnum;
use clap::builder::PossibleValue;
use serde::{Serialize, Serializer};

/// One fault the nemesis can inject (the table in [`super::nemesis`] says what each does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL the leader.
    KillLeader,
    /// SIGKILL a random node.
    KillRandom,
    /// SIGKILL a majority of the voters.
    KillMajority,
    /// SIGSTOP the leader.
    PauseLeader,
    /// SIGSTOP a random node.
    PauseRandom,
    /// Cut the leader from every other node.
    PartitionLeader,
    /// Cut a random node from the others.
    PartitionHalves,
    /// Two nodes cannot talk; the third sees both.
    PartitionBridge,
    /// Cut half the clients from a random node.
    PartitionClients,
    /// Remove a follower from the voters.
    MembershipRemove,
    /// Replace a follower with a fresh node.
    MembershipReplace,
    /// Restart a node with its wall clock moved.
    ClockSkew,
    /// Restart a node with its wall clock moved by seconds to years, either way.
    ClockJump,
    /// Jump a running node's wall clock back and forth while the fault lasts.
    ClockStrobe,
    /// Move a follower's wall clock ahead and make it campaign: a skewed leader.
    ClockLead,
}

impl Fault {
    /// Every fault, in the order `all` and the groups list them.
    pub const ALL: [Fault; 15] = [
        Fault::KillLeader,
        Fault::KillRandom,
        Fault::KillMajority,
        Fault::PauseLeader,
        Fault::PauseRandom,
        Fault::PartitionLeader,
        Fault::PartitionHalves,
        Fault::PartitionBridge,
        Fault::PartitionClients,
        Fault::MembershipRemove,
        Fault::MembershipReplace,
        Fault::ClockSkew,
        Fault::ClockJump,
        Fault::ClockStrobe,
        Fault::ClockLead,
    ];

    /// Its name on the command line and in the recorded files.
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillRandom => "kill-random",
            Fault::KillMajority => "kill-majority",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseRandom => "pause-random",
            Fault::PartitionLeader => "partition-leader",
            Fault::PartitionHalves => "partition-halves",
            Fault::PartitionBridge => "partition-bridge",
            Fault::PartitionClients => "partition-clients",
            Fault::MembershipRemove => "membership-remove",
            Fault::MembershipReplace => "membership-replace",
            Fault::ClockSkew => "clock-skew",
            Fault::ClockJump => "clock-jump",
            Fault::ClockStrobe => "clock-strobe",
            Fault::ClockLead => "clock-lead",
        }
    }

    /// The group it belongs to.
    pub fn group(self) -> FaultGroup {
        match self {
            Fault::KillLeader | Fault::KillRandom | Fault::KillMajority => FaultGroup::Kill,
            Fault::PauseLeader | Fault::PauseRandom => FaultGroup::Pause,
            Fault::PartitionLeader
            | Fault::PartitionHalves
            | Fault::PartitionBridge
            | Fault::PartitionClients => FaultGroup::Partition,
            Fault::MembershipRemove | Fault::MembershipReplace => FaultGroup::Membership,
            Fault::ClockSkew | Fault::ClockJump | Fault::ClockStrobe | Fault::ClockLead => {
                FaultGroup::Clock
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Fault {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// The names of `faults`, in order, as the terminal output lists them.
pub fn names(faults: &[Fault]) -> Vec<&'static str> {
    faults.iter().map(|f| f.name()).collect()
}

/// A family of faults, named by the first word of its members' names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultGroup {
    /// Process crashes.
    Kill,
    /// Process pauses.
    Pause,
    /// Network partitions.
    Partition,
    /// Membership changes.
    Membership,
    /// Clock skew.
    Clock,
}

impl FaultGroup {
    /// Every group, in the order of their faults.
    pub const ALL: [FaultGroup; 5] = [
        FaultGroup::Kill,
        FaultGroup::Pause,
        FaultGroup::Partition,
        FaultGroup::Membership,
        FaultGroup::Clock,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultGroup::Kill => "kill",
            FaultGroup::Pause => "pause",
            FaultGroup::Partition => "partition",
            FaultGroup::Membership => "membership",
            FaultGroup::Clock => "clock",
        }
    }

    /// Its faults, in [`Fault::ALL`] order.
    pub fn faults(self) -> Vec<Fault> {
        Fault::ALL
            .into_iter()
            .filter(|f| f.group() == self)
            .collect()
    }
}

/// One value of `--nemesis`: the faults a run draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Selection {
    /// Every fault.
    All,
    /// The faults of one group.
    Group(FaultGroup),
    /// One fault.
    Fault(Fault),
}

impl Selection {
    /// Every value `--nemesis` accepts: `all`, the groups, then the faults.
    pub const ALL: [Selection; 21] = {
        let mut all = [Selection::All; 21];
        let mut i = 0;
        while i < FaultGroup::ALL.len() {
            all[1 + i] = Selection::Group(FaultGroup::ALL[i]);
            i += 1;
        }
        let mut j = 0;
        while j < Fault::ALL.len() {
            all[1 + FaultGroup::ALL.len() + j] = Selection::Fault(Fault::ALL[j]);
            j += 1;
        }
        all
    };

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Selection::All => "all",
            Selection::Group(group) => group.name(),
            Selection::Fault(fault) => fault.name(),
        }
    }

    /// The faults it selects, in [`Fault::ALL`] order.
    pub fn faults(self) -> Vec<Fault> {
        match self {
            Selection::All => Fault::ALL.to_vec(),
            Selection::Group(group) => group.faults(),
            Selection::Fault(fault) => vec![fault],
        }
    }
}

impl ValueEnum for Selection {
    fn value_variants<'a>() -> &'a [Self] {
        &Selection::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

/// The faults of every selection, each once, in the order they are first selected.
pub fn expand(selections: &[Selection]) -> Vec<Fault> {
    let mut out = Vec::new();
    for selection in selections {
        for fault in selection.faults() {
            if !out.contains(&fault) {
                out.push(fault);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The fault names as the recorded histories of earlier runs spell them.
    const RECORDED_NAMES: [&str; 15] = [
        "kill-leader",
        "kill-random",
        "kill-majority",
        "pause-leader",
        "pause-random",
        "partition-leader",
        "partition-halves",
        "partition-bridge",
        "partition-clients",
        "membership-remove",
        "membership-replace",
        "clock-skew",
        "clock-jump",
        "clock-strobe",
        "clock-lead",
    ];

    /// The rule `--nemesis` followed when names were plain strings: `all`, or every fault
    /// equal to the name or starting with the name and a `-`; nothing for other names.
    fn by_prefix(name: &str) -> Vec<&'static str> {
        match name {
            "all" => RECORDED_NAMES.to_vec(),
            group => RECORDED_NAMES
                .into_iter()
                .filter(|f| *f == group || f.starts_with(&format!("{group}-")))
                .collect(),
        }
    }

    /// `--nemesis` as `licd-jepsen` declares it.
    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long, value_delimiter = ',', default_value = "all")]
        nemesis: Vec<Selection>,
    }

    fn parse(args: &[&str]) -> Result<Vec<Selection>, clap::Error> {
        Cli::try_parse_from(std::iter::once("licd-jepsen").chain(args.iter().copied()))
            .map(|cli| cli.nemesis)
    }

    #[test]
    fn every_fault_name_round_trips() {
        assert_eq!(names(&Fault::ALL), RECORDED_NAMES);
        for fault in Fault::ALL {
            let parsed = Selection::from_str(fault.name(), false).unwrap();
            assert_eq!(parsed, Selection::Fault(fault));
            assert_eq!(fault.to_string(), fault.name());
            assert_eq!(
                serde_json::to_value(fault).unwrap(),
                serde_json::Value::String(fault.name().to_string())
            );
        }
        for selection in Selection::ALL {
            assert_eq!(Selection::from_str(selection.name(), false), Ok(selection));
        }
    }

    #[test]
    fn every_fault_is_in_its_group_and_in_all() {
        for fault in Fault::ALL {
            assert!(fault.group().faults().contains(&fault));
            assert!(
                fault
                    .name()
                    .starts_with(&format!("{}-", fault.group().name()))
            );
        }
        let grouped: Vec<Fault> = FaultGroup::ALL
            .into_iter()
            .flat_map(FaultGroup::faults)
            .collect();
        assert_eq!(grouped, Fault::ALL);
    }

    #[test]
    fn the_accepted_names_are_those_of_the_prefix_rule() {
        let accepted: Vec<&str> = Selection::ALL.iter().map(|s| s.name()).collect();
        let mut candidates: Vec<String> = accepted.iter().map(|s| s.to_string()).collect();
        candidates.extend(
            [
                "",
                "ALL",
                "Kill",
                "kil",
                "kill-",
                "kill-leader-",
                "clock-",
                "skew",
                "bogus",
            ]
            .map(String::from),
        );
        for name in &candidates {
            let old = !by_prefix(name).is_empty();
            assert_eq!(old, accepted.contains(&name.as_str()), "{name:?}");
            assert_eq!(parse(&["--nemesis", name]).is_ok(), old, "{name:?}");
        }
    }

    #[test]
    fn group_expansion_matches_the_prefix_rule() {
        let all: Vec<&str> = Selection::ALL.iter().map(|s| s.name()).collect();
        for first in &all {
            assert_eq!(
                names(&expand(&parse(&["--nemesis", first]).unwrap())),
                by_prefix(first)
            );
            for second in &all {
                let mut old = by_prefix(first);
                for f in by_prefix(second) {
                    if !old.contains(&f) {
                        old.push(f);
                    }
                }
                let list = format!("{first},{second}");
                let new = expand(&parse(&["--nemesis", &list]).unwrap());
                assert_eq!(names(&new), old, "{list}");
            }
        }
    }

    #[test]
    fn the_default_is_every_fault_and_unknown_names_are_clap_errors() {
        assert_eq!(parse(&[]).unwrap(), [Selection::All]);
        assert_eq!(expand(&parse(&[]).unwrap()), Fault::ALL);
        let err = parse(&["--nemesis", "kill,bogus"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(err.to_string().contains("bogus"), "{err}");
        assert_eq!(
            parse(&["--nemesis", "pause-leader,kill"]).unwrap(),
            [
                Selection::Fault(Fault::PauseLeader),
                Selection::Group(FaultGroup::Kill)
            ]
        );
    }
}
