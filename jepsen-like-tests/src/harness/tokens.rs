//! The lease tokens a workload client presents for one server name.
//!
//! licd binds each allocation to a lease token: re-allocating the name, renewing or releasing
//! it needs that token. The workloads play each server's holder, so they keep its token. An
//! allocation whose answer never came (`info`) may have applied with a token the client never
//! saw; the harness knows the cluster secret, so it derives that token the way the leader
//! does ([`LeaseToken::derive`]) and keeps it as a candidate beside the last known one. A
//! request refused for its token (`NODE_IN_USE`, `LEASE_TOKEN_MISMATCH`: a definite
//! refusal, nothing changed) moves on to the next candidate.

use licd::lease_token::LeaseToken;
use licd_raft::types::{NodeName, RequestId};

use super::cluster::CLUSTER_SECRET;

/// How many candidate tokens are kept per name.
const KEPT: usize = 4;

/// The candidate tokens of one server name, the one to present first.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    candidates: Vec<LeaseToken>,
}

impl Tokens {
    /// The token to present, if any is known.
    pub fn current(&self) -> Option<&LeaseToken> {
        self.candidates.first()
    }

    /// An allocation answered `token`: it is the one.
    pub fn granted(&mut self, token: LeaseToken) {
        self.candidates = vec![token];
    }

    /// An allocation under `request_id` got no answer: it may hold the token derived from it.
    pub fn maybe_granted(&mut self, request_id: &RequestId, node: &NodeName) {
        let derived = LeaseToken::derive(CLUSTER_SECRET.as_bytes(), request_id, node);
        self.candidates.retain(|t| *t != derived);
        self.candidates.insert(0, derived);
        self.candidates.truncate(KEPT);
    }

    /// The current token was refused: try the next one first from now on.
    pub fn refused(&mut self) {
        if !self.candidates.is_empty() {
            self.candidates.rotate_left(1);
        }
    }

    /// The name was released: no token speaks for it.
    pub fn released(&mut self) {
        self.candidates.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_grants_unknown_outcomes_and_refusals() {
        let node = NodeName::new("app-1").unwrap();
        let mut tokens = Tokens::default();
        assert!(tokens.current().is_none());
        let known: LeaseToken = "00112233445566778899aabbccddeeff".parse().unwrap();
        tokens.granted(known.clone());
        assert_eq!(tokens.current(), Some(&known));
        // An unknown outcome: the derived token first, the known one kept.
        let id = RequestId::new("r-1").unwrap();
        tokens.maybe_granted(&id, &node);
        let derived = LeaseToken::derive(CLUSTER_SECRET.as_bytes(), &id, &node);
        assert_eq!(tokens.current(), Some(&derived));
        tokens.refused();
        assert_eq!(tokens.current(), Some(&known));
        tokens.refused();
        assert_eq!(tokens.current(), Some(&derived));
        // Never more than a few.
        for i in 0..10 {
            tokens.maybe_granted(&RequestId::new(format!("r-{i}")).unwrap(), &node);
        }
        assert_eq!(tokens.candidates.len(), KEPT);
        tokens.released();
        assert!(tokens.current().is_none());
    }
}
