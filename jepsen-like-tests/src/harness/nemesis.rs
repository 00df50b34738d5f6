//! The nemeses: the faults a run injects, on a seeded random schedule that alternates a fault
//! and a heal. The faults and their names are [`Fault`]s; `--nemesis` selects them by name or
//! by group ([`super::fault`]).
//!
//! | fault | what it does | heal |
//! |---|---|---|
//! | `kill-leader` | SIGKILL the leader | restart it from its data directory |
//! | `kill-random` | SIGKILL a random node | restart it |
//! | `kill-majority` | SIGKILL two of three nodes | restart them |
//! | `pause-leader` | SIGSTOP the leader (longer than an election timeout) | SIGCONT |
//! | `pause-random` | SIGSTOP a random node | SIGCONT |
//! | `partition-leader` | cut the leader from every other node | remove the rules |
//! | `partition-halves` | cut a random node from the other two (minority / majority) | remove the rules |
//! | `partition-bridge` | two nodes cannot talk; the third sees both | remove the rules |
//! | `partition-clients` | cut half the clients from a random node | remove the rules |
//! | `membership-remove` | remove a follower from the voters | add it back as learner, promote it |
//! | `membership-replace` | add a fresh node, promote it, remove and kill an old follower | (none: the cluster is whole) |
//! | `clock-skew` | restart a node under faketime, minutes to hours ahead or behind | restart it with the true time |
//! | `clock-jump` | restart a node under faketime, seconds to years ahead or behind | restart it with the true time |
//! | `clock-strobe` | restart a node with its clock read from a file, then rewrite the file every few hundred ms: the running node's clock jumps back and forth by seconds to years | restart it with the true time |
//! | `clock-lead` | restart a follower with its clock minutes to years ahead, and make it campaign (`POST /admin/elect`; if it loses, with the other voters paused in turn): the skewed node leads | restart it with the true time |
//!
//! Every clock fault moves the wall clock only (`FAKETIME_DONT_FAKE_MONOTONIC=1`): leases are
//! measured on monotonic time, and license dates on the median of the voters' clocks, so one
//! skewed node, leading or not, must not end a lease or a license early.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::cluster::{Clock, Cluster, PORT, node_ip};
use super::fault::Fault;
use super::firewall::{self, Cuts};
use super::workload::client_ip;

/// What must be done to heal an active fault.
#[derive(Debug)]
pub enum Undo {
    /// Restart these nodes.
    Restart(Vec<u64>),
    /// SIGCONT these nodes.
    Resume(Vec<u64>),
    /// Remove the firewall rules.
    Heal,
    /// Add this node back as a learner and promote it.
    Rejoin(u64),
    /// Restart this node with the true time.
    Unskew(u64),
    /// Stop rewriting this node's clock file, and restart it with the true time.
    Unstrobe(u64, tokio::task::JoinHandle<()>),
    /// Nothing.
    Nothing,
}

/// An injected fault.
#[derive(Debug)]
pub struct Active {
    /// The fault.
    pub fault: Fault,
    /// What was done, for the timeline.
    pub detail: String,
    /// How to heal it.
    pub undo: Undo,
}

/// The state the nemesis keeps between faults.
pub struct Nemesis {
    rng: StdRng,
    clients: usize,
    next_id: u64,
    /// Nodes that pinned clients talk to: never replaced (only removed and re-added), so that
    /// those clients keep a node to talk to.
    pinned: BTreeSet<u64>,
    /// The largest clock skew `clock-skew` applies, in minutes.
    pub max_skew_minutes: i64,
}

impl Nemesis {
    /// A nemesis with its own random stream; `clients` logical clients exist.
    pub fn new(rng: StdRng, clients: usize, next_id: u64, pinned: BTreeSet<u64>) -> Self {
        Nemesis {
            rng,
            clients,
            next_id,
            pinned,
            max_skew_minutes: 180,
        }
    }

    /// Picks one of `faults`.
    pub fn pick(&mut self, faults: &[Fault]) -> Fault {
        faults[self.rng.gen_range(0..faults.len())]
    }

    /// A random duration between `lo` and `hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.rng.gen_range(lo..=hi))
    }

    /// Injects `fault`.
    pub async fn inject(&mut self, cluster: &mut Cluster, fault: Fault) -> anyhow::Result<Active> {
        let (leader, voters) = cluster
            .leader(Duration::from_secs(10))
            .await
            .context("no leader before the fault")?;
        let voters: Vec<u64> = voters.into_iter().collect();
        let followers: Vec<u64> = voters.iter().copied().filter(|v| *v != leader).collect();
        let random = *voters.choose(&mut self.rng).context("no voters")?;
        let done = |detail: String, undo| Active {
            fault,
            detail,
            undo,
        };
        Ok(match fault {
            Fault::KillLeader => {
                cluster.kill(leader);
                done(
                    format!("killed leader {leader}"),
                    Undo::Restart(vec![leader]),
                )
            }
            Fault::KillRandom => {
                cluster.kill(random);
                done(format!("killed node {random}"), Undo::Restart(vec![random]))
            }
            Fault::KillMajority => {
                let mut victims = voters.clone();
                victims.shuffle(&mut self.rng);
                victims.truncate(voters.len() / 2 + 1);
                for v in &victims {
                    cluster.kill(*v);
                }
                done(format!("killed nodes {victims:?}"), Undo::Restart(victims))
            }
            Fault::PauseLeader => {
                cluster.pause(leader);
                done(
                    format!("paused leader {leader}"),
                    Undo::Resume(vec![leader]),
                )
            }
            Fault::PauseRandom => {
                cluster.pause(random);
                done(format!("paused node {random}"), Undo::Resume(vec![random]))
            }
            Fault::PartitionLeader | Fault::PartitionHalves => {
                let isolated = if fault == Fault::PartitionLeader {
                    leader
                } else {
                    random
                };
                let mut cuts = Cuts::default();
                let others: Vec<_> = cluster
                    .ids()
                    .into_iter()
                    .filter(|i| *i != isolated)
                    .map(node_ip)
                    .collect();
                cuts.cut_groups(&[node_ip(isolated)], &others);
                firewall::apply(&cuts)?;
                done(
                    format!("isolated node {isolated}: {}", cuts.describe()),
                    Undo::Heal,
                )
            }
            Fault::PartitionBridge => {
                let mut shuffled = voters.clone();
                shuffled.shuffle(&mut self.rng);
                let mut cuts = Cuts::default();
                if shuffled.len() >= 3 {
                    cuts.cut(node_ip(shuffled[0]), node_ip(shuffled[1]));
                }
                firewall::apply(&cuts)?;
                let bridge = shuffled.get(2).copied().unwrap_or(0);
                done(format!("bridge {bridge}: {}", cuts.describe()), Undo::Heal)
            }
            Fault::PartitionClients => {
                let mut cuts = Cuts::default();
                let cut_clients: Vec<_> = (0..self.clients)
                    .filter(|i| i % 2 == 0)
                    .map(client_ip)
                    .collect();
                cuts.cut_groups(&cut_clients, &[node_ip(random)]);
                firewall::apply(&cuts)?;
                done(
                    format!("clients {cut_clients:?} cut from node {random}"),
                    Undo::Heal,
                )
            }
            Fault::MembershipRemove => {
                let Some(victim) = followers.choose(&mut self.rng).copied() else {
                    return Ok(done("no follower to remove".into(), Undo::Nothing));
                };
                let remaining: Vec<u64> = voters.iter().copied().filter(|v| *v != victim).collect();
                cluster
                    .admin(Duration::from_secs(20))?
                    .set_voters(remaining.clone())
                    .await
                    .context("removing a voter")?;
                done(
                    format!("removed voter {victim}; voters {remaining:?}"),
                    Undo::Rejoin(victim),
                )
            }
            Fault::MembershipReplace => {
                let replaceable: Vec<u64> = followers
                    .iter()
                    .copied()
                    .filter(|f| !self.pinned.contains(f))
                    .collect();
                let victim = replaceable.choose(&mut self.rng).copied();
                let Some(victim) = victim.filter(|_| self.next_id <= super::cluster::MAX_NODES)
                else {
                    return Ok(done("no follower to replace".into(), Undo::Nothing));
                };
                let fresh = self.next_id;
                self.next_id += 1;
                cluster.add_node(fresh)?;
                cluster.wait_healthy(fresh, Duration::from_secs(20)).await?;
                let admin = cluster.admin(Duration::from_secs(30))?;
                admin
                    .add_learner(fresh, &format!("{}:{PORT}", node_ip(fresh)))
                    .await
                    .context("adding the fresh node")?;
                admin
                    .promote(fresh)
                    .await
                    .context("promoting the fresh node")?;
                admin
                    .remove_member(victim)
                    .await
                    .context("removing the old node")?;
                cluster.kill(victim);
                done(
                    format!("replaced node {victim} with fresh node {fresh}"),
                    Undo::Nothing,
                )
            }
            Fault::ClockSkew => {
                let minutes: i64 = self.rng.gen_range(5..=self.max_skew_minutes.max(5));
                let sign = if self.rng.gen_bool(0.5) { "+" } else { "-" };
                let offset = format!("{sign}{minutes}m");
                let detail = restart_skewed(cluster, random, &offset).await?;
                done(detail, Undo::Unskew(random))
            }
            Fault::ClockJump => {
                let offset = offset(&mut self.rng, &["", "m", "h", "d", "y"], None);
                let detail = restart_skewed(cluster, random, &offset).await?;
                done(detail, Undo::Unskew(random))
            }
            Fault::ClockStrobe => {
                let file = cluster
                    .dir(random)
                    .context("no such node")?
                    .join("clock-offset");
                write_offset(&file, "+0")?;
                cluster.kill(random);
                cluster.start_with_clock(random, Clock::File(&file))?;
                cluster
                    .wait_healthy(random, Duration::from_secs(20))
                    .await?;
                let mut rng = StdRng::seed_from_u64(self.rng.r#gen());
                let strobe = tokio::spawn(async move {
                    let mut ahead = true;
                    loop {
                        let sign = if ahead { '+' } else { '-' };
                        let units: &[&str] = if rng.gen_bool(0.1) {
                            &["y"]
                        } else {
                            &["", "m", "h", "d"]
                        };
                        let offset = offset(&mut rng, units, Some(sign));
                        let _ = write_offset(&file, &offset);
                        ahead = !ahead;
                        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..600))).await;
                    }
                });
                done(
                    format!("node {random}'s clock jumps back and forth (seconds to years)"),
                    Undo::Unstrobe(random, strobe),
                )
            }
            Fault::ClockLead => {
                let victim = followers.choose(&mut self.rng).copied().unwrap_or(random);
                let offset = offset(&mut self.rng, &["m", "h", "d", "y"], Some('+'));
                cluster.kill(victim);
                cluster.start(victim, Some(&offset))?;
                cluster
                    .wait_healthy(victim, Duration::from_secs(20))
                    .await?;
                // A campaign loses while the victim's log is a few entries behind a voter's
                // (writes keep coming), and voters that hear the leader refuse to vote
                // (openraft's leader lease): campaign again, briefly.
                let mut led = campaign(cluster, victim, 4).await;
                let mut steered = false;
                if led != Some(victim) {
                    // Then steer: the victim must lead for this fault to test anything.
                    steered = true;
                    led = steer(cluster, victim).await;
                }
                let outcome = match led {
                    Some(l) if l == victim && steered => {
                        "now leads (the other voters paused while it campaigned)".to_string()
                    }
                    Some(l) if l == victim => "now leads".to_string(),
                    Some(l) => format!("did not win (leader {l})"),
                    None => "could not campaign".to_string(),
                };
                done(
                    format!("node {victim} restarted with its clock {offset}, {outcome}"),
                    Undo::Unskew(victim),
                )
            }
        })
    }

    /// Heals an active fault.
    pub async fn heal(&mut self, cluster: &mut Cluster, active: Active) -> anyhow::Result<()> {
        match active.undo {
            Undo::Restart(ids) => {
                for id in ids {
                    if !cluster.is_running(id) {
                        cluster.start(id, None)?;
                        cluster.wait_healthy(id, Duration::from_secs(20)).await?;
                    }
                }
            }
            Undo::Resume(ids) => {
                for id in ids {
                    cluster.resume(id);
                }
            }
            Undo::Heal => firewall::heal()?,
            Undo::Rejoin(id) => {
                let admin = cluster.admin(Duration::from_secs(30))?;
                admin
                    .add_learner(id, &format!("{}:{PORT}", node_ip(id)))
                    .await
                    .context("re-adding the removed voter")?;
                admin.promote(id).await.context("promoting it again")?;
            }
            Undo::Unstrobe(id, strobe) => {
                strobe.abort();
                cluster.kill(id);
                cluster.start(id, None)?;
                cluster.wait_healthy(id, Duration::from_secs(20)).await?;
            }
            Undo::Unskew(id) => {
                cluster.kill(id);
                cluster.start(id, None)?;
                cluster.wait_healthy(id, Duration::from_secs(20)).await?;
            }
            Undo::Nothing => {}
        }
        Ok(())
    }

    /// Makes sure nothing is left broken: rules removed, every current voter running and
    /// resumed.
    pub async fn heal_all(
        &mut self,
        cluster: &mut Cluster,
        members: &BTreeSet<u64>,
    ) -> anyhow::Result<()> {
        firewall::heal()?;
        for id in members {
            cluster.resume(*id);
            if !cluster.is_running(*id) {
                cluster.start(*id, None)?;
                cluster.wait_healthy(*id, Duration::from_secs(20)).await?;
            }
        }
        Ok(())
    }
}

/// Makes `victim` campaign up to `tries` times, 300 ms apart, until it leads; returns the
/// leader last reported.
async fn campaign(cluster: &Cluster, victim: u64, tries: usize) -> Option<u64> {
    let mut led = None;
    for _ in 0..tries {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(Some(l)) = cluster.elect(victim).await {
            led = Some(l);
            if l == victim {
                break;
            }
        }
    }
    led
}

/// Makes `victim` lead when campaigning alone did not: pauses the other follower, so that
/// every commit needs the victim and its log becomes the longest of the two; pauses the
/// leader; resumes the other follower, whose vote the victim then wins (its log is at least
/// as long, and the follower heard no leader for longer than the leader lease); resumes the
/// old leader, which steps down on seeing the later term. Returns the leader last reported.
async fn steer(cluster: &mut Cluster, victim: u64) -> Option<u64> {
    let (leader, voters) = cluster.leader(Duration::from_secs(10)).await?;
    if leader == victim {
        return Some(victim);
    }
    let others: Vec<u64> = voters
        .iter()
        .copied()
        .filter(|v| *v != leader && *v != victim)
        .collect();
    for o in &others {
        cluster.pause(*o);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    cluster.pause(leader);
    for o in &others {
        cluster.resume(*o);
    }
    let led = campaign(cluster, victim, 10).await;
    cluster.resume(leader);
    led
}

/// A faketime offset: a random amount in one of `units` (`""` seconds, `m`, `h`, `d`, `y`),
/// ahead or behind (`sign`, or either at random).
/// Restarts node `id` with its wall clock moved by `offset` (a faketime offset) and waits
/// until it answers; returns the fault's description.
async fn restart_skewed(cluster: &mut Cluster, id: u64, offset: &str) -> anyhow::Result<String> {
    cluster.kill(id);
    cluster.start(id, Some(offset))?;
    cluster.wait_healthy(id, Duration::from_secs(20)).await?;
    Ok(format!("restarted node {id} with its clock {offset}"))
}

fn offset(rng: &mut StdRng, units: &[&str], sign: Option<char>) -> String {
    let unit = *units.choose(rng).unwrap_or(&"m");
    let amount = match unit {
        "" => rng.gen_range(2..60),
        "m" => rng.gen_range(1..60),
        "h" => rng.gen_range(1..24),
        "d" => rng.gen_range(1..300),
        _ => rng.gen_range(1..=3),
    };
    let sign = sign.unwrap_or(if rng.gen_bool(0.5) { '+' } else { '-' });
    format!("{sign}{amount}{unit}")
}

/// Replaces the clock file in one rename, so that the node never reads half an offset.
fn write_offset(file: &std::path::Path, offset: &str) -> std::io::Result<()> {
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, format!("{offset}\n"))?;
    std::fs::rename(tmp, file)
}
