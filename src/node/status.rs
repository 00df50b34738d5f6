//! What a node knows of its cluster: its own [`Role`], every member with its replication
//! progress and health (as the leader sees them), and the [`Warning`]s an operator must see,
//! such as a lost redundancy.
//!
//! [`ClusterStatus::observe`] is a pure function of openraft's metrics and the times peers
//! last answered, so its rules (who counts as healthy, when redundancy is lost) are tested
//! without a cluster. The HTTP layer turns it into `/admin/status` and `/v1/cluster`; the CLI,
//! the agent and the fault harness read those answers with the same [`Role`] and
//! [`MemberKind`] enums.
//!
//! Only a leader measures its peers, so members carry [`Progress`] only in a leader's view.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use licd_raft::RaftNodeId;
use openraft::{BasicNode, RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};

/// A node's Raft role, spelled on the wire as openraft names its states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Role {
    /// It leads: it serves writes and linearizable reads.
    Leader,
    /// It follows a leader (or waits for one).
    Follower,
    /// It is campaigning for leadership.
    Candidate,
    /// It replicates the log without a vote.
    Learner,
    /// Its Raft has stopped.
    Shutdown,
}

impl From<ServerState> for Role {
    fn from(s: ServerState) -> Self {
        match s {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Whether a member votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    /// It votes and counts towards the majority.
    Voter,
    /// It replicates without voting.
    Learner,
}

impl fmt::Display for MemberKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemberKind::Voter => "voter",
            MemberKind::Learner => "learner",
        })
    }
}

/// A member's replication progress, as its leader measures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Highest log index known replicated to it.
    pub matched_index: Option<u64>,
    /// How far behind the leader's last log it is, in entries.
    pub lag: Option<u64>,
    /// Milliseconds since the leader last heard from it (for the leader itself, since a
    /// quorum last acknowledged it).
    pub last_contact_ms: Option<u64>,
    /// Heard from within the election timeout (the leader always is).
    pub healthy: bool,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: RaftNodeId,
    /// Its HTTP address.
    pub addr: String,
    /// Voter or learner.
    pub kind: MemberKind,
    /// Its progress, in a leader's view only.
    pub progress: Option<Progress>,
    /// Its wall clock minus the voters' median, in milliseconds (leader's view, where known).
    pub clock_skew_ms: Option<i64>,
}

/// Something an operator must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// Fewer voters are up than a majority plus one: one more failure stops licensing.
    RedundancyLost {
        /// Voters heard from within the election timeout.
        up: usize,
        /// All voters.
        voters: usize,
        /// The voters not heard from.
        down: Vec<RaftNodeId>,
    },
    /// This node knows no leader.
    NoLeader,
    /// A member's wall clock is further from the voters' median than the bound: it is left
    /// out of the cluster's calendar time until it is fixed.
    ClockSkew {
        /// The member.
        node: RaftNodeId,
        /// Its clock minus the median, in milliseconds.
        skew_ms: i64,
        /// The bound, in milliseconds.
        bound_ms: u64,
    },
    /// No majority of the voters' clocks agree: license dates use the last agreed time.
    ClocksDisagree,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::RedundancyLost { up, voters, down } => {
                write!(
                    f,
                    "redundancy lost: {up} of {voters} license servers are up; one more \
                     failure stops licensing"
                )?;
                if !down.is_empty() {
                    let names: Vec<String> = down.iter().map(ToString::to_string).collect();
                    write!(f, " (down: {})", names.join(", "))?;
                }
                Ok(())
            }
            Warning::NoLeader => f.write_str("no leader is known: licensing is unavailable"),
            Warning::ClockSkew {
                node,
                skew_ms,
                bound_ms,
            } => write!(
                f,
                "clock skew: node {node}'s clock is {} {} the cluster's (bound {}); fix its \
                 time synchronization",
                human_ms(skew_ms.unsigned_abs()),
                if *skew_ms > 0 { "ahead of" } else { "behind" },
                human_ms(*bound_ms)
            ),
            Warning::ClocksDisagree => f.write_str(
                "clocks disagree: no majority of the voters' clocks agree; license dates use \
                 the last agreed time",
            ),
        }
    }
}

/// A node's view of its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The node that observed it.
    pub node_id: RaftNodeId,
    /// Its role.
    pub role: Role,
    /// The leader it knows.
    pub leader_id: Option<RaftNodeId>,
    /// Its current term.
    pub term: u64,
    /// Its last log index.
    pub last_log_index: Option<u64>,
    /// Its last applied index.
    pub last_applied_index: Option<u64>,
    /// Its last snapshot's index.
    pub snapshot_index: Option<u64>,
    /// Every member, by id.
    pub members: Vec<Member>,
    /// In a leader's view: the skew bound, and whether a majority of clocks agree.
    pub clocks: Option<ClockView>,
}

/// The leader's view of the voters' clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockView {
    /// The skew bound, in milliseconds.
    pub bound_ms: u64,
    /// Whether a majority of the voters' clocks agree.
    pub agreed: bool,
}

/// `1500` -> `1.5 s`, `7_200_000` -> `2 h`: durations in warnings.
fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1e3),
        60_000..3_600_000 => format!("{:.1} min", ms as f64 / 6e4),
        3_600_000..86_400_000 => format!("{:.1} h", ms as f64 / 3.6e6),
        _ => format!("{:.1} days", ms as f64 / 8.64e7),
    }
}

/// Whether the node `id` whose metrics these are leads: it is in the leader state and knows
/// itself as the leader. The one rule for every part of licd that asks.
pub fn leads(m: &RaftMetrics<RaftNodeId, BasicNode>, id: RaftNodeId) -> bool {
    m.state == ServerState::Leader && m.current_leader == Some(id)
}

impl ClusterStatus {
    /// The status seen by node `node_id` from its metrics; `since` gives the time each peer
    /// last answered this node, and `limit` (the election timeout) is the longest silence a
    /// healthy peer may keep.
    pub fn observe(
        m: &RaftMetrics<RaftNodeId, BasicNode>,
        node_id: RaftNodeId,
        since: impl Fn(RaftNodeId) -> Option<Duration>,
        limit: Duration,
    ) -> ClusterStatus {
        let membership = m.membership_config.membership();
        let voters: BTreeSet<RaftNodeId> = membership.voter_ids().collect();
        let leading = m.state == ServerState::Leader;
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let progress = leading.then(|| {
                    let matched_index = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|l| l.index);
                    let lag = m
                        .last_log_index
                        .map(|last| last.saturating_sub(matched_index.unwrap_or(0)));
                    let last_contact_ms = if *id == node_id {
                        m.millis_since_quorum_ack
                    } else {
                        since(*id).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    };
                    let healthy = *id == node_id
                        || last_contact_ms.is_some_and(|ms| u128::from(ms) <= limit.as_millis());
                    Progress {
                        matched_index,
                        lag,
                        last_contact_ms,
                        healthy,
                    }
                });
                Member {
                    id: *id,
                    addr: node.addr.clone(),
                    kind: if voters.contains(id) {
                        MemberKind::Voter
                    } else {
                        MemberKind::Learner
                    },
                    progress,
                    clock_skew_ms: None,
                }
            })
            .collect();
        ClusterStatus {
            node_id,
            role: m.state.into(),
            leader_id: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            members,
            clocks: None,
        }
    }

    /// Adds the leader's view of the clocks: each member's skew (`skews` is `None` outside a
    /// leader's view, empty when no majority agrees) and the bound.
    pub fn with_clocks(
        mut self,
        skews: Option<BTreeMap<RaftNodeId, i64>>,
        bound: Duration,
    ) -> Self {
        let Some(skews) = skews else {
            return self;
        };
        for m in &mut self.members {
            m.clock_skew_ms = skews.get(&m.id).copied();
        }
        self.clocks = Some(ClockView {
            bound_ms: u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
            agreed: !skews.is_empty(),
        });
        self
    }

    /// The voters' ids.
    pub fn voters(&self) -> Vec<RaftNodeId> {
        self.members
            .iter()
            .filter(|m| m.kind == MemberKind::Voter)
            .map(|m| m.id)
            .collect()
    }

    /// The voters the leader did not hear from within the election timeout (empty outside a
    /// leader's view).
    pub fn down_voters(&self) -> Vec<RaftNodeId> {
        self.members
            .iter()
            .filter(|m| {
                m.kind == MemberKind::Voter && m.progress.as_ref().is_some_and(|p| !p.healthy)
            })
            .map(|m| m.id)
            .collect()
    }

    /// What an operator must see: in a leader's view, a lost redundancy (fewer voters up than
    /// a majority plus one); elsewhere, the absence of a known leader.
    pub fn warning_list(&self) -> Vec<Warning> {
        if self.role == Role::Leader {
            let mut warnings = Vec::new();
            let voters = self.voters().len();
            let down = self.down_voters();
            let up = voters - down.len();
            let quorum = voters / 2 + 1;
            if up < quorum + 1 {
                warnings.push(Warning::RedundancyLost { up, voters, down });
            }
            if let Some(clocks) = self.clocks {
                if !clocks.agreed {
                    warnings.push(Warning::ClocksDisagree);
                }
                for m in &self.members {
                    if let Some(skew_ms) = m.clock_skew_ms
                        && skew_ms.unsigned_abs() > clocks.bound_ms
                    {
                        warnings.push(Warning::ClockSkew {
                            node: m.id,
                            skew_ms,
                            bound_ms: clocks.bound_ms,
                        });
                    }
                }
            }
            warnings
        } else if self.leader_id.is_none() {
            vec![Warning::NoLeader]
        } else {
            Vec::new()
        }
    }

    /// The warnings as the sentences the API and the CLI show.
    pub fn warnings(&self) -> Vec<String> {
        self.warning_list()
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader_view(kinds: &[(RaftNodeId, MemberKind, bool)]) -> ClusterStatus {
        ClusterStatus {
            node_id: 1,
            role: Role::Leader,
            leader_id: Some(1),
            term: 3,
            last_log_index: Some(10),
            last_applied_index: Some(10),
            snapshot_index: None,
            members: kinds
                .iter()
                .map(|&(id, kind, healthy)| Member {
                    id,
                    addr: format!("127.0.0.1:{}", 7100 + id),
                    kind,
                    progress: Some(Progress {
                        matched_index: Some(10),
                        lag: Some(0),
                        last_contact_ms: Some(if healthy { 5 } else { 9_000 }),
                        healthy,
                    }),
                    clock_skew_ms: None,
                })
                .collect(),
            clocks: None,
        }
    }

    #[test]
    fn three_healthy_voters_have_redundancy() {
        use MemberKind::Voter;
        let s = leader_view(&[(1, Voter, true), (2, Voter, true), (3, Voter, true)]);
        assert!(s.warning_list().is_empty());
        assert!(s.down_voters().is_empty());
    }

    #[test]
    fn one_voter_down_of_three_loses_redundancy_and_names_it() {
        use MemberKind::Voter;
        let s = leader_view(&[(1, Voter, true), (2, Voter, false), (3, Voter, true)]);
        assert_eq!(s.down_voters(), vec![2]);
        assert_eq!(
            s.warnings(),
            vec![
                "redundancy lost: 2 of 3 license servers are up; one more failure stops \
                 licensing (down: 2)"
                    .to_string()
            ]
        );
    }

    #[test]
    fn a_down_learner_does_not_count_against_redundancy() {
        use MemberKind::{Learner, Voter};
        let s = leader_view(&[
            (1, Voter, true),
            (2, Voter, true),
            (3, Voter, true),
            (4, Learner, false),
        ]);
        assert!(s.warning_list().is_empty());
        assert_eq!(s.voters(), vec![1, 2, 3]);
    }

    #[test]
    fn a_single_voter_cluster_has_no_redundancy() {
        let s = leader_view(&[(1, MemberKind::Voter, true)]);
        assert_eq!(
            s.warning_list(),
            vec![Warning::RedundancyLost {
                up: 1,
                voters: 1,
                down: vec![]
            }]
        );
    }

    #[test]
    fn a_follower_without_a_leader_warns_that_licensing_is_unavailable() {
        let mut s = leader_view(&[(1, MemberKind::Voter, true)]);
        s.role = Role::Follower;
        s.leader_id = None;
        assert_eq!(s.warning_list(), vec![Warning::NoLeader]);
        s.leader_id = Some(2);
        assert!(s.warning_list().is_empty());
    }

    #[test]
    fn a_skewed_clock_is_reported_with_its_direction_and_size() {
        use MemberKind::Voter;
        let s = leader_view(&[(1, Voter, true), (2, Voter, true), (3, Voter, true)]).with_clocks(
            Some([(1, 3_600_000), (2, 0), (3, -20)].into_iter().collect()),
            Duration::from_secs(30),
        );
        assert_eq!(s.members[0].clock_skew_ms, Some(3_600_000));
        assert_eq!(
            s.warnings(),
            vec![
                "clock skew: node 1's clock is 1.0 h ahead of the cluster's (bound 30.0 s); fix \
                 its time synchronization"
                    .to_string()
            ]
        );
        let apart = leader_view(&[(1, Voter, true), (2, Voter, true), (3, Voter, false)])
            .with_clocks(Some(BTreeMap::new()), Duration::from_secs(30));
        assert!(apart.warning_list().contains(&Warning::ClocksDisagree));
    }

    #[test]
    fn roles_and_kinds_keep_their_wire_names() {
        assert_eq!(serde_json::to_string(&Role::Leader).unwrap(), "\"Leader\"");
        assert_eq!(
            serde_json::to_string(&Role::Follower).unwrap(),
            "\"Follower\""
        );
        assert_eq!(
            serde_json::to_string(&MemberKind::Voter).unwrap(),
            "\"voter\""
        );
        assert_eq!(
            serde_json::to_string(&MemberKind::Learner).unwrap(),
            "\"learner\""
        );
        for s in [
            ServerState::Leader,
            ServerState::Follower,
            ServerState::Candidate,
            ServerState::Learner,
            ServerState::Shutdown,
        ] {
            assert_eq!(Role::from(s).to_string(), format!("{s:?}"));
        }
    }
}
