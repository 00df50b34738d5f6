//! The harness: real licd processes in a network namespace of their own, faults, a recorded
//! workload, and a report per run. The checkers that judge the history live in
//! [`crate::checker`].

pub mod cluster;
pub mod fault;
pub mod firewall;
pub mod leases;
pub mod nemesis;
pub mod netns;
pub mod outcome;
pub mod report;
pub mod run;
pub mod tokens;
pub mod workload;
