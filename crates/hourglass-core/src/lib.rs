//! Hourglass core: the domain of just-in-time access, with no I/O.
//!
//! This crate owns the words of the design (principals, entitlements, requests, approvals,
//! grants, audit events), the pure state machines that move requests and grants between their
//! states, the engine use cases that combine them, and the ports that the rest of Hourglass
//! implements (`Store`, `Connector`, `TicketSource`, `Notifier`, `PolicyDecider`, `Clock`, `Wake`). It knows nothing of
//! HTTP, SQL or Cedar syntax; a CI check keeps I/O crates out of its dependency tree.
//!
//! Invariants kept here:
//! - every state change is returned together with its audit records, and the engine hands both
//!   to the store in one [`store::Commit`], so they are written in one transaction;
//! - every grant has an end (`expires_at`), bounded by its entitlement's maximum duration;
//! - nobody approves their own request, and a request needs its quorum of distinct approvers.

pub mod audit;
pub mod backoff;
pub mod campaign;
pub mod catalog;
pub mod clock;
pub mod connector;
pub mod credential;
pub mod directory;
pub mod duration;
pub mod engine;
pub mod error;
pub mod event;
pub mod grant;
pub mod id;
pub mod identity;
pub mod job;
pub mod lifecycle;
pub mod notify;
pub mod policy;
pub mod request;
pub mod review;
pub mod session;
pub mod state;
pub mod store;
pub mod text;
pub mod ticket;

pub use clock::{Clock, Timestamp};
pub use duration::GrantDuration;
pub use error::{Error, ErrorCode, Result};

/// Checks a document generated from the code against its checked-in copy under `docs/`
/// (rewriting the copy first when `HOURGLASS_UPDATE_DOCS` is set).
#[cfg(test)]
pub(crate) fn assert_generated_doc_current(name: &str, generated: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    if std::env::var_os("HOURGLASS_UPDATE_DOCS").is_some() {
        std::fs::write(&path, generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/{name} is stale: regenerate it with HOURGLASS_UPDATE_DOCS=1 cargo test -p hourglass-core catalogue"
    );
}
