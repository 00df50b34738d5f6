//! The license a vendor grants: how many CPU cores, on which servers (by MAC address), until
//! when. A [`License`] is plain data; the rules that spend it live in [`crate::state`], and the
//! signature that proves where it came from lives in [`crate::license_file`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::types::{InvalidInput, LicenseId, MacAddr, Timestamp};

/// The largest `max_cores` a license may grant.
pub const MAX_LICENSED_CORES: u32 = 1_000_000;

/// A license for one multi-server environment of one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct License {
    /// The license's identifier. A license issued later with the same id replaces this one.
    pub id: LicenseId,
    /// Who the license was issued to, for display.
    pub customer: String,
    /// When the vendor issued it.
    pub issued_at: Timestamp,
    /// When it stops being valid; `None` for a perpetual license.
    pub expires_at: Option<Timestamp>,
    /// Total CPU cores over all servers of the environment.
    pub max_cores: u32,
    /// Each server counts at least this many cores, however few it has.
    pub min_cores_per_node: u32,
    /// The MAC addresses of the servers the license is bound to.
    pub allowed_macs: BTreeSet<MacAddr>,
    /// Product features the license enables, for the application to read.
    pub features: BTreeSet<String>,
    /// Issue counter of this license id: a license replaces an installed one with the same id
    /// only if its `(serial, issued_at)` is greater.
    pub serial: u64,
}

impl License {
    /// Checks the license's own consistency (the signature is checked elsewhere).
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if !(1..=MAX_LICENSED_CORES).contains(&self.max_cores) {
            return Err(InvalidInput::new(
                "license",
                format!(
                    "max_cores {} is out of range 1..={MAX_LICENSED_CORES}",
                    self.max_cores
                ),
            ));
        }
        if !(1..=crate::types::Cores::MAX).contains(&self.min_cores_per_node) {
            return Err(InvalidInput::new(
                "license",
                format!(
                    "min_cores_per_node {} is out of range 1..={}",
                    self.min_cores_per_node,
                    crate::types::Cores::MAX
                ),
            ));
        }
        if self.min_cores_per_node > self.max_cores {
            return Err(InvalidInput::new(
                "license",
                "min_cores_per_node is larger than max_cores: no server could ever be licensed",
            ));
        }
        if self.allowed_macs.is_empty() {
            return Err(InvalidInput::new(
                "license",
                "allowed_macs is empty: the license must name the servers it is bound to",
            ));
        }
        if let Some(expires_at) = self.expires_at
            && expires_at <= self.issued_at
        {
            return Err(InvalidInput::new(
                "license",
                "expires_at is not after issued_at",
            ));
        }
        if self.customer.len() > 1024 || self.features.iter().any(|f| f.len() > 128) {
            return Err(InvalidInput::new(
                "license",
                "customer (1024 bytes) or a feature name (128 bytes) is too long",
            ));
        }
        Ok(())
    }

    /// Whether the license has expired at `now`: expiry is the first instant it is invalid.
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// The cores a server that has `cores` cores counts against this license.
    pub fn counted_cores(&self, cores: u32) -> u32 {
        cores.max(self.min_cores_per_node)
    }

    /// The `(serial, issued_at)` pair that orders issues of the same license id.
    pub fn version(&self) -> (u64, Timestamp) {
        (self.serial, self.issued_at)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid license for tests: 16 cores, at least 4 per node, two allowed MACs.
    pub(crate) fn sample() -> License {
        License {
            id: LicenseId::new("lic-1").unwrap(),
            customer: "Example Corp".into(),
            issued_at: Timestamp(1_000),
            expires_at: Some(Timestamp(1_000_000_000)),
            max_cores: 16,
            min_cores_per_node: 4,
            allowed_macs: [
                MacAddr::from_bytes([2, 0, 0, 0, 0, 1]),
                MacAddr::from_bytes([2, 0, 0, 0, 0, 2]),
                MacAddr::from_bytes([2, 0, 0, 0, 0, 3]),
            ]
            .into(),
            features: ["ocr".to_string()].into(),
            serial: 1,
        }
    }

    #[test]
    fn a_sample_license_is_valid() {
        sample().validate().unwrap();
    }

    type Mutation = Box<dyn Fn(&mut License)>;

    #[test]
    fn inconsistent_licenses_are_refused() {
        let cases: Vec<(&str, Mutation)> = vec![
            ("zero cores", Box::new(|l| l.max_cores = 0)),
            (
                "too many cores",
                Box::new(|l| l.max_cores = MAX_LICENSED_CORES + 1),
            ),
            ("zero minimum", Box::new(|l| l.min_cores_per_node = 0)),
            ("minimum above max", Box::new(|l| l.min_cores_per_node = 17)),
            ("no macs", Box::new(|l| l.allowed_macs.clear())),
            (
                "expires before issue",
                Box::new(|l| l.expires_at = Some(Timestamp(1_000))),
            ),
            ("long customer", Box::new(|l| l.customer = "x".repeat(1025))),
        ];
        for (name, mutate) in cases {
            let mut license = sample();
            mutate(&mut license);
            assert!(license.validate().is_err(), "{name} was accepted");
        }
    }

    #[test]
    fn a_node_counts_at_least_the_minimum() {
        let license = sample();
        assert_eq!(license.counted_cores(1), 4);
        assert_eq!(license.counted_cores(4), 4);
        assert_eq!(license.counted_cores(6), 6);
    }

    #[test]
    fn expiry_is_the_first_invalid_instant() {
        let license = sample();
        assert!(!license.is_expired_at(Timestamp(999_999_999)));
        assert!(license.is_expired_at(Timestamp(1_000_000_000)));
        let perpetual = License {
            expires_at: None,
            ..sample()
        };
        assert!(!perpetual.is_expired_at(Timestamp(u64::MAX)));
    }
}
