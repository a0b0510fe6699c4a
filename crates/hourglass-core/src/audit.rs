//! The audit log: one record per decision and state change, hash-chained.
//!
//! Each event's hash is SHA-256 over a canonical encoding of its sequence number, time, actor,
//! action, subject, details and the previous event's hash. The encoding is a fixed sequence of
//! length-prefixed fields (never a JSON map, whose key order depends on build features), so any
//! tool can recompute it. Details are ordered string pairs and never hold a secret. Verification
//! is offline and names the first broken sequence number.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Timestamp, event::EventKind};

/// The hash that the first event chains from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit record before the store gives it a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at: Timestamp,
    /// Who acted: a principal name, `policy`, or `system` (scheduler, workers).
    pub actor: String,
    /// What happened, `noun.verb` (`grant.revoked`).
    pub action: String,
    /// The id it happened to (`req_…`, `grt_…`).
    pub subject: String,
    pub details: Vec<(String, String)>,
}

impl AuditRecord {
    /// A record of an event of `kind`.
    pub fn new(
        at: Timestamp,
        actor: impl Into<String>,
        kind: EventKind,
        subject: impl Into<String>,
    ) -> Self {
        Self::with_action(at, actor, kind.as_str(), subject)
    }

    /// A record with any action name: for tests of the chain and the store, which must also
    /// hold what other versions wrote. Hourglass itself writes only [`EventKind`]s.
    pub fn with_action(
        at: Timestamp,
        actor: impl Into<String>,
        action: &str,
        subject: impl Into<String>,
    ) -> Self {
        AuditRecord {
            at,
            actor: actor.into(),
            action: action.to_owned(),
            subject: subject.into(),
            details: Vec::new(),
        }
    }

    /// The kind of this record, if it is one this version writes.
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::parse(&self.action)
    }

    /// Adds one detail. Never pass a secret. A kind's details are listed in the catalogue
    /// (`EventKind::details`, `docs/audit-events.md`); debug builds (the tests) refuse one it
    /// does not list, so the catalogue cannot drift from what is written.
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        debug_assert!(
            self.kind().is_none_or(|k| k.has_detail(key)),
            "audit detail {key:?} is not in the catalogue of {}",
            self.action
        );
        self.details.push((key.to_owned(), value.to_string()));
        self
    }
}

/// An audit record in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: u64,
    #[serde(flatten)]
    pub record: AuditRecord,
    pub prev_hash: String,
    pub hash: String,
}

fn put_field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The chained hash of a record at `seq` following `prev_hash`, lowercase hex.
pub fn chain_hash(seq: u64, record: &AuditRecord, prev_hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"hourglass.audit.v1\0");
    h.update(seq.to_be_bytes());
    h.update(record.at.unix_millis().to_be_bytes());
    put_field(&mut h, record.actor.as_bytes());
    put_field(&mut h, record.action.as_bytes());
    put_field(&mut h, record.subject.as_bytes());
    h.update((record.details.len() as u64).to_be_bytes());
    for (k, v) in &record.details {
        put_field(&mut h, k.as_bytes());
        put_field(&mut h, v.as_bytes());
    }
    put_field(&mut h, prev_hash.as_bytes());
    hex::encode(h.finalize())
}

/// Where the live chain resumes after events were moved to an archive
/// (`hourglass audit archive`): events `first_seq..=through_seq` are in the archive whose event
/// lines hash to `events_sha256`, the last of them hashing to `through_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub first_seq: u64,
    pub through_seq: u64,
    pub through_hash: String,
    pub archived_at: Timestamp,
    pub events_sha256: String,
}

/// Where verification stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: u64,
    pub reason: String,
}

/// Checks events in order, continuing from a previous page's state.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_seq: u64,
    prev_hash: String,
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            checked: 0,
        }
    }
}

impl ChainVerifier {
    /// A verifier that continues after event `seq`, whose hash was `hash` (an archive's last
    /// event, or a checkpoint's).
    pub fn after(seq: u64, hash: &str) -> Self {
        ChainVerifier {
            next_seq: seq + 1,
            prev_hash: hash.to_owned(),
            checked: 0,
        }
    }

    /// The next sequence number it expects.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Checks the next event; the first failure names its sequence number.
    pub fn check(&mut self, e: &AuditEvent) -> Result<(), ChainBreak> {
        let fail = |reason: String| ChainBreak { seq: e.seq, reason };
        if e.seq != self.next_seq {
            return Err(ChainBreak {
                seq: self.next_seq,
                reason: format!("expected sequence {}, found {}", self.next_seq, e.seq),
            });
        }
        if e.prev_hash != self.prev_hash {
            return Err(fail(
                "previous-hash link does not match the event before it".into(),
            ));
        }
        let expect = chain_hash(e.seq, &e.record, &e.prev_hash);
        if expect != e.hash {
            return Err(fail(
                "content does not match its hash (event altered)".into(),
            ));
        }
        self.next_seq += 1;
        self.prev_hash = e.hash.clone();
        self.checked += 1;
        Ok(())
    }

    /// How many events passed.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The hash of the last event checked.
    pub fn head_hash(&self) -> &str {
        &self.prev_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let record = AuditRecord::with_action(
                    Timestamp::from_unix_millis(seq as i64),
                    "alice",
                    "x.y",
                    "s",
                )
                .with("k", seq);
                let hash = chain_hash(seq, &record, &prev);
                let e = AuditEvent {
                    seq,
                    record,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    #[test]
    fn a_good_chain_verifies() {
        let mut v = ChainVerifier::default();
        for e in chain(5) {
            v.check(&e).unwrap();
        }
        assert_eq!(v.checked(), 5);
    }

    #[test]
    fn altered_content_is_found_at_its_sequence() {
        let mut events = chain(5);
        events[2].record.details[0].1 = "tampered".into();
        let mut v = ChainVerifier::default();
        let err = events.iter().try_for_each(|e| v.check(e)).unwrap_err();
        assert_eq!(err.seq, 3);
    }

    #[test]
    fn a_deleted_event_is_a_gap() {
        let mut events = chain(5);
        events.remove(1);
        let mut v = ChainVerifier::default();
        let err = events.iter().try_for_each(|e| v.check(e)).unwrap_err();
        assert_eq!(err.seq, 2);
    }

    #[test]
    fn field_boundaries_matter() {
        let a = AuditRecord::with_action(Timestamp::from_unix_millis(0), "ab", "c", "s");
        let b = AuditRecord::with_action(Timestamp::from_unix_millis(0), "a", "bc", "s");
        assert_ne!(
            chain_hash(1, &a, GENESIS_HASH),
            chain_hash(1, &b, GENESIS_HASH)
        );
    }
}
