//! Network faults with nftables, inside the run's namespace only: one table whose output chain
//! drops the packets between chosen pairs of loopback addresses. Healing deletes the table.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::netns::run;

const TABLE: &str = "licd_jepsen";

/// The pairs of addresses that cannot talk, in both directions.
#[derive(Debug, Default, Clone)]
pub struct Cuts {
    pairs: BTreeSet<(Ipv4Addr, Ipv4Addr)>,
}

impl Cuts {
    /// Cuts `a` from `b` (both ways).
    pub fn cut(&mut self, a: Ipv4Addr, b: Ipv4Addr) {
        if a != b {
            self.pairs.insert((a.min(b), a.max(b)));
        }
    }

    /// Cuts every address of `left` from every address of `right`.
    pub fn cut_groups(&mut self, left: &[Ipv4Addr], right: &[Ipv4Addr]) {
        for a in left {
            for b in right {
                self.cut(*a, *b);
            }
        }
    }

    /// Whether no pair is cut.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// A readable description, for the nemesis timeline.
    pub fn describe(&self) -> String {
        self.pairs
            .iter()
            .map(|(a, b)| format!("{a}x{b}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Replaces the current rules with `cuts`.
pub fn apply(cuts: &Cuts) -> anyhow::Result<()> {
    heal()?;
    if cuts.is_empty() {
        return Ok(());
    }
    let mut script = format!(
        "table inet {TABLE} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n"
    );
    for (a, b) in &cuts.pairs {
        script.push_str(&format!("    ip saddr {a} ip daddr {b} drop\n"));
        script.push_str(&format!("    ip saddr {b} ip daddr {a} drop\n"));
    }
    script.push_str("  }\n}\n");
    let path = std::env::temp_dir().join(format!("licd-jepsen-{}.nft", std::process::id()));
    std::fs::write(&path, script)?;
    let result = run("nft", &["-f", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    result.map(|_| ())
}

/// Removes every rule.
pub fn heal() -> anyhow::Result<()> {
    let tables = run("nft", &["list", "tables"])?;
    if tables.contains(TABLE) {
        run("nft", &["delete", "table", "inet", TABLE])?;
    }
    Ok(())
}
