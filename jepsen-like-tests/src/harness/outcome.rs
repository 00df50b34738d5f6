//! What a run found: the record [`super::run`] produces and [`super::report`] writes to
//! `results.json` and prints, and the suite collects into `summary.json`.

use std::path::PathBuf;

use serde::Serialize;

use super::fault::Fault;
use crate::checker;

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// The run's name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The faults drawn from (by name in the JSON files).
    pub faults: Vec<Fault>,
    /// The seed.
    pub seed: u64,
    /// Client operations recorded.
    pub operations: usize,
    /// Faults injected.
    pub faults_injected: usize,
    /// Seconds with a fault active.
    pub fault_seconds: f64,
    /// Every checker's verdict.
    pub report: checker::Report,
}
