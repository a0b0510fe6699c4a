//! End-to-end tests: a real server in-process (SQLite, the exec demo target, a manual clock),
//! driven through the typed client.

// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agents;
mod app;
mod archive;
mod binary;
mod browser;
mod campaigns;
mod cli;
mod contract;
#[cfg(feature = "test-clock")]
mod crash;
mod fakes;
mod identities;
mod invariants;
mod lifecycle;
mod mcp;
mod notifications;
mod oidc;
mod oncall;
mod policy;
#[cfg(feature = "test-clock")]
mod replicas;
mod scim;
mod secrets;
mod security;
mod slack;
mod targets;
mod tickets;
mod web;
mod why;
mod workload;
