//! Hourglass integrations with the systems around access: ticket systems that say whether a
//! ticket is open and report its closure ([`tickets`], [`inbound`]), and the notifiers that tell
//! people what happened ([`notifiers`]). Outbound calls use the connectors' guarded HTTP client
//! (no private destinations unless allowed, no redirects, timeouts).

pub mod inbound;
pub mod notifiers;
pub mod slack;
pub mod tickets;

pub use notifiers::{EmailNotifier, EmailSettings, SlackNotifier, SmtpTls, WebhookNotifier};
pub use tickets::{Api, Auth, HttpTicketSource, SourceSettings};
