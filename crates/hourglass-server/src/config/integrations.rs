//! Configuration of the systems around access: ticket sources (`[[ticket_sources]]`, with
//! `[tickets]` for the poller) and notifiers (`[[notifiers]]`, with `[notifications]`).
//! Secrets (API tokens, webhook secrets, Slack URLs, SMTP passwords) are named by file or
//! environment variable, never written in the file.

use std::{collections::BTreeMap, path::PathBuf};

use hourglass_core::{GrantDuration, ticket::OnUnavailable};
use serde::Deserialize;

/// What a ticket source speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketKind {
    Jira,
    Servicenow,
    /// No lookup API: the system reports tickets to `POST /v1/tickets/events`.
    Webhook,
}

/// A secret read from a file or an environment variable.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub env: Option<String>,
}

impl SecretRef {
    /// Reads the secret (without a trailing newline); an empty one is refused.
    pub fn read(&self) -> Result<String, String> {
        let raw = match (&self.file, &self.env) {
            (Some(p), None) => {
                std::fs::read_to_string(p).map_err(|e| format!("file {}: {e}", p.display()))?
            }
            (None, Some(v)) => std::env::var(v).map_err(|_| format!("env {v} is not set"))?,
            _ => return Err("give exactly one of file and env".into()),
        };
        let s = raw.trim_end_matches(['\n', '\r']).to_owned();
        if s.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(s)
    }
}

/// A ticket system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketSourceConfig {
    /// A short name for logs and the audit (`jira`).
    pub name: String,
    pub kind: TicketKind,
    /// The references this source owns, a regular expression matched whole (`HD-\d+`).
    pub pattern: String,
    /// The system's base URL (`https://example.atlassian.net`); jira and servicenow only.
    #[serde(default)]
    pub url: Option<String>,
    /// Basic authentication user (Jira Cloud: the account's email); with `token`.
    #[serde(default)]
    pub user: Option<String>,
    /// The API token or password (with `user`), or a bearer token (without).
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// The secret that signs its webhook events (required for `webhook`; without it, a
    /// jira or servicenow source accepts no events and relies on the poller).
    #[serde(default)]
    pub webhook_secret: Option<SecretRef>,
    /// The ticket must be assigned to the requester or one of their groups.
    #[serde(default)]
    pub require_assignee: bool,
    /// When the system does not answer: `deny` the request, or let it go on to human
    /// `approval` (never automatic approval).
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
    /// The system's user ids (Jira `accountId` or email, ServiceNow `user_name`) → principals.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// The system's group names → Hourglass groups (ServiceNow assignment groups).
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
    /// ServiceNow: the table (default `incident`).
    #[serde(default)]
    pub table: Option<String>,
    /// ServiceNow: the `state` values that mean closed (default 6, 7, 8).
    #[serde(default)]
    pub closed_states: Option<Vec<String>>,
    #[serde(default = "default_ticket_timeout")]
    pub timeout: GrantDuration,
    /// Allow a private or loopback `url` (refused by default).
    #[serde(default)]
    pub allow_private: bool,
}

fn default_ticket_timeout() -> GrantDuration {
    GrantDuration::from_secs(5)
}

/// The ticket poller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketSection {
    /// How often tickets with live access bound to them are checked for closure.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: GrantDuration,
    /// Refuse a ticket reference that no ticket source owns (instead of passing it to policy
    /// as an unverified `context.ticket`).
    #[serde(default)]
    pub refuse_unowned: bool,
}

impl Default for TicketSection {
    fn default() -> Self {
        TicketSection {
            poll_interval: default_poll_interval(),
            refuse_unowned: false,
        }
    }
}

fn default_poll_interval() -> GrantDuration {
    GrantDuration::from_secs(120)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    Slack,
    Webhook,
    Email,
    /// Microsoft Teams: Adaptive Cards to an incoming webhook (notifications only).
    Teams,
    /// PagerDuty Events API v2: pages (escalations, break-glass, overdue revocations) and
    /// resolves them.
    Pagerduty,
}

/// A notification destination and what it hears about.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    pub name: String,
    pub kind: NotifierKind,
    /// Events routed here (`request.pending`, `break_glass`…); default all.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Only events about these entitlements or profiles (`prod/*` matches a prefix).
    #[serde(default)]
    pub access: Vec<String>,
    /// Slack, Teams: the incoming webhook URL, a secret (file or env).
    #[serde(default)]
    pub webhook_url: Option<SecretRef>,
    /// Webhook: where to post. PagerDuty: the Events API (default
    /// `https://events.pagerduty.com/v2/enqueue`).
    #[serde(default)]
    pub url: Option<String>,
    /// PagerDuty: the integration's routing key (Events API v2), a secret.
    #[serde(default)]
    pub routing_key: Option<SecretRef>,
    /// PagerDuty: what the alert names as its source (default `hourglass`).
    #[serde(default)]
    pub source: Option<String>,
    /// Webhook: the signing secret (at least 32 bytes).
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// Email: the SMTP server.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: hourglass_integrations::SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretRef>,
    #[serde(default)]
    pub from: Option<String>,
    /// Recipients; `{principal}@example.com` mails the person the event is about.
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default = "default_notify_timeout")]
    pub timeout: GrantDuration,
    /// Allow a private or loopback destination (refused by default).
    #[serde(default)]
    pub allow_private: bool,
}

fn default_notify_timeout() -> GrantDuration {
    GrantDuration::from_secs(10)
}

/// Notification settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSection {
    /// The server's address as people reach it, for approval links
    /// (`https://hourglass.example.com`).
    #[serde(default)]
    pub public_url: Option<String>,
    /// How long before its end a grant's holder is warned.
    #[serde(default = "default_expiry_warning")]
    pub expiry_warning: GrantDuration,
    /// Deliveries tried before a notification is given up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl Default for NotificationSection {
    fn default() -> Self {
        NotificationSection {
            public_url: None,
            expiry_warning: default_expiry_warning(),
            max_attempts: default_max_attempts(),
        }
    }
}

fn default_expiry_warning() -> GrantDuration {
    GrantDuration::from_secs(600)
}
fn default_max_attempts() -> u32 {
    8
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    Slack,
}

/// A channel by access: requests for these entitlements or profiles go to `channel`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRoute {
    /// Entitlements or profiles (`prod/*` matches a prefix).
    pub access: Vec<String>,
    /// The Slack channel id (`C0123ABCD`).
    pub channel: String,
}

/// A chat app people ask and approve in (`[[chat]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    /// A short name: the notifier name and the path of its endpoints (`/slack/<name>/…`).
    pub name: String,
    pub kind: ChatKind,
    /// The bot token (`xoxb-…`), a secret (file or env).
    pub bot_token: SecretRef,
    /// The app's signing secret, which signs every request Slack makes.
    pub signing_secret: SecretRef,
    /// The Slack workspace (`T0123ABCD`); requests from any other are refused.
    #[serde(default)]
    pub team_id: Option<String>,
    /// Where pending requests go when no route names their access.
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub routes: Vec<ChatRoute>,
    /// Where critical events (break-glass, overdue revocations, drift) go; default `channel`.
    #[serde(default)]
    pub alerts_channel: Option<String>,
    /// Where escalated requests are posted again, with their buttons (a fallback approvers'
    /// channel); without it, an escalation is a reply in the request's thread, shown in the
    /// channel too.
    #[serde(default)]
    pub escalation_channel: Option<String>,
    /// Also send each pending request, with its buttons, to the people who may approve it, in
    /// a direct message (at most 25 of them).
    #[serde(default)]
    pub notify_approvers: bool,
    /// Tell requesters directly (approved, denied, active, expiring with Extend and Release,
    /// revoked).
    #[serde(default = "default_true")]
    pub notify_requester: bool,
    /// Slack user ids → principals, looked at first.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// Then the Slack profile's email: a principal named by the whole address, or by its
    /// local part when the address is in this domain (`alice@example.com` → `alice`).
    #[serde(default)]
    pub email_domain: Option<String>,
    /// The Web API (a local server in tests).
    #[serde(default = "default_slack_api")]
    pub api_url: String,
    #[serde(default = "default_notify_timeout")]
    pub timeout: GrantDuration,
    /// The longest Slack's `Retry-After` waits may add up to before a delivery is retried
    /// later instead.
    #[serde(default = "default_retry_wait")]
    pub max_retry_wait: GrantDuration,
    /// Allow a private or loopback `api_url` (refused by default).
    #[serde(default)]
    pub allow_private: bool,
}

fn default_true() -> bool {
    true
}
fn default_slack_api() -> String {
    "https://slack.com/api".into()
}
fn default_retry_wait() -> GrantDuration {
    GrantDuration::from_secs(30)
}

/// What happens to requests nobody decides (`[[escalation]]`); the first rule whose `access`
/// covers a request applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Entitlements or profiles (`prod/*` matches a prefix); empty or absent means all.
    #[serde(default)]
    pub access: Vec<String>,
    /// Bring a request still waiting this long back to its approvers (wherever its
    /// `request.pending` went).
    #[serde(default)]
    pub remind_after: Option<GrantDuration>,
    /// Send a request still waiting this long to `to`.
    #[serde(default)]
    pub escalate_after: Option<GrantDuration>,
    /// Notifiers or chat apps (by name): a fallback channel, a PagerDuty integration.
    #[serde(default)]
    pub to: Vec<String>,
}

/// What an on-call source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCallKind {
    /// PagerDuty REST API v2 (`/oncalls`).
    Pagerduty,
    /// Opsgenie (`/v2/schedules/{id}/on-calls`).
    Opsgenie,
    /// A file of `[[shift]]` tables, read at start and with the policies.
    Shift,
}

/// A source of `context.oncall` (`[[oncall]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnCallConfig {
    /// A short name, for logs and metrics.
    pub name: String,
    pub kind: OnCallKind,
    /// Shift: the schedule file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// PagerDuty: a REST API key; Opsgenie: an API integration key. A secret.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// PagerDuty schedule ids; Opsgenie schedule ids (or names, with `by_name`).
    #[serde(default)]
    pub schedules: Vec<String>,
    /// PagerDuty escalation policy ids.
    #[serde(default)]
    pub escalation_policies: Vec<String>,
    /// PagerDuty: count only escalation levels up to this one (default all).
    #[serde(default)]
    pub max_level: Option<u64>,
    /// Opsgenie: `schedules` are names, not ids.
    #[serde(default)]
    pub by_name: bool,
    /// The API (default `https://api.pagerduty.com`, `https://api.opsgenie.com`; the EU
    /// Opsgenie is `https://api.eu.opsgenie.com`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// How often the source is read.
    #[serde(default = "default_oncall_refresh")]
    pub refresh: GrantDuration,
    /// How long an answer is trusted: past it, with no newer answer, nobody is on call by
    /// this source (never everybody).
    #[serde(default = "default_oncall_ttl")]
    pub ttl: GrantDuration,
    /// Emails (as the schedule system knows them) → principals, looked at first.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// Then: a principal named by the whole address, or by its local part when the address is
    /// in this domain (`alice@example.com` → `alice`).
    #[serde(default)]
    pub email_domain: Option<String>,
    #[serde(default = "default_ticket_timeout")]
    pub timeout: GrantDuration,
    /// Allow a private or loopback `api_url` (refused by default).
    #[serde(default)]
    pub allow_private: bool,
}

fn default_oncall_refresh() -> GrantDuration {
    GrantDuration::from_secs(60)
}
fn default_oncall_ttl() -> GrantDuration {
    GrantDuration::from_secs(300)
}
