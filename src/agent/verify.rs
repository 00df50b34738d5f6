//! Signed confirmation: an agent given the cluster's answer keys believes only signed
//! answers.
//!
//! Allocation and heartbeat answers are not signed, so an emulator of the license cluster
//! could grant anything. With answer keys ([`Client::with_answer_keys`]), the agent follows
//! each successful allocation or renewal with a check of this server (its node name and MAC,
//! a fresh nonce) and counts the lease confirmed only when that check is `VALID` and signed
//! by one of the keys. The lease it then holds is the signed answer's remaining time,
//! measured from when the *check* was sent, and never more than the unsigned renewal said
//! (an unsigned figure may shorten the lease, never lengthen it).
//!
//! An answer that does not verify is no answer: the agent treats it as an outage of the
//! cluster, so grace runs on the last *signed* lease and ends with it. A signed answer that
//! is not `VALID` is the cluster's word: `NOT_ALLOCATED` or `LEASE_EXPIRED` makes the agent
//! allocate again, any other code is a refusal, as if the allocation had been refused.
//!
//! [`Client::with_answer_keys`]: crate::client::Client::with_answer_keys

use reqwest::StatusCode;
use tokio::time::Instant;

use super::{Confirmed, Loop};
use crate::api::{ErrorBody, ErrorCode};
use crate::client::ClientError;

impl Loop {
    /// The confirmation to act on: `unsigned` (the allocation or renewal sent at `sent`)
    /// itself when the client verifies nothing, else what a signed check of this server says,
    /// with the instant that check was sent.
    pub(super) async fn confirm_signed(
        &self,
        unsigned: Result<Confirmed, ClientError>,
        sent: Instant,
    ) -> (Result<Confirmed, ClientError>, Instant) {
        let unsigned = match unsigned {
            Ok(c) if self.client.verifies_answers() => c,
            other => return (other, sent),
        };
        let check_sent = Instant::now();
        let answer = match self
            .client
            .check(&self.config.node, Some(self.config.mac))
            .await
        {
            Ok(answer) => answer.check,
            Err(e) => return (Err(e), check_sent),
        };
        let result = match answer.code {
            ErrorCode::Valid if answer.valid => {
                // The unsigned figures counted from the check's send time, which is later.
                let elapsed = u64::try_from(check_sent.duration_since(sent).as_millis())
                    .unwrap_or(u64::MAX)
                    .saturating_add(1);
                let signed = answer.lease_remaining_ms.unwrap_or(0);
                Ok(Confirmed {
                    remaining_ms: signed.min(unsigned.remaining_ms.saturating_sub(elapsed)),
                    license_expires_in_ms: unsigned
                        .license_expires_in_ms
                        .map(|ms| ms.saturating_sub(elapsed)),
                    counted_cores: answer.counted_cores.unwrap_or(unsigned.counted_cores),
                })
            }
            ErrorCode::NotAllocated | ErrorCode::LeaseExpired => Err(ClientError::Api {
                status: StatusCode::NOT_FOUND,
                body: ErrorBody::new(ErrorCode::NotAllocated, answer.message),
            }),
            code => Err(ClientError::Api {
                status: StatusCode::CONFLICT,
                body: ErrorBody::new(code, answer.message),
            }),
        };
        (result, check_sent)
    }
}

/// How the agent's status names an outage: a bad signature is one too, said as such.
pub(super) fn outage(e: &ClientError) -> &'static str {
    match e {
        ClientError::BadSignature(_) => {
            "No license server answers with the cluster's signature (a forged or replayed answer)"
        }
        _ => "No license server answers",
    }
}
