//! `licd bench`'s measuring instruments, kept apart from the clusters they measure.
//!
//! - [`load`]: the load generator. A fixed number of HTTP/1.1 connections (hyper), each
//!   sending its next request as soon as the previous answer arrived (closed loop), for a
//!   fixed time or a fixed number of requests; or requests sent at scheduled instants
//!   (open loop), whose latency counts from the instant the request was due, so a server that
//!   falls behind cannot hide its queue.
//! - [`requests`]: the requests of each workload, licd's and etcd's, and the one function that
//!   sets every request's headers.
//! - [`stats`]: latencies to count, throughput and p50/p99/p99.9 (nearest rank over every
//!   sample: no histogram buckets, no sampling).
//! - [`gaps`]: the gaps between successive successful writes while leaders are killed.
//! - [`report`]: the table and the JSON document.
//!
//! What it leaves out: it measures loopback only, so it shows what the software costs, not
//! what a network adds; and the load generator shares the machine's cores with the servers it
//! measures (as it does for licd and etcd alike, which is what the ratios compare).

pub mod gaps;
pub mod load;
pub mod report;
pub mod requests;
pub mod stats;
