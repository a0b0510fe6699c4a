//! Hourglass integrations with the systems around access: ticket systems that say whether a
//! ticket is open and report its closure ([`tickets`], [`inbound`]), the notifiers that tell
//! people what happened ([`notifiers`], [`slack`], [`teams`], [`pagerduty`]), and the schedules
//! that say who is on call ([`oncall`]); and the SCIM protocol a directory provisions
//! through ([`scim`]). Outbound calls use the connectors' guarded HTTP client
//! (no private destinations unless allowed, no redirects, timeouts).

pub mod http;
pub mod inbound;
pub mod notifiers;
pub mod oncall;
pub mod pagerduty;
pub mod scim;
pub mod slack;
pub mod teams;
pub mod tickets;

pub use notifiers::{EmailNotifier, EmailSettings, SlackNotifier, SmtpTls, WebhookNotifier};
pub use oncall::{OnCallApi, OnCallClient};
pub use pagerduty::PagerDutyNotifier;
pub use teams::TeamsNotifier;
pub use tickets::{Api, Auth, HttpTicketSource, SourceSettings};
