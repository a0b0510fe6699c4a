//! Builds the ticket sources and notifiers from configuration, checking every entry (and
//! reading every secret) at start, so that a mistake fails the start, not the first event.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use hourglass_connectors::webhook;
use hourglass_core::{
    Clock,
    notify::{Escalation, Notifier, NotifyEvent, Route},
    ticket::{BoundSource, Ticket, TicketSource, TicketSources, TicketUnavailable},
};
use hourglass_integrations::{
    Api, Auth, EmailNotifier, EmailSettings, HttpTicketSource, PagerDutyNotifier, SlackNotifier,
    SourceSettings, TeamsNotifier, WebhookNotifier, tickets::whole_pattern,
};
use regex::Regex;
use secrecy::{SecretSlice, SecretString};

use crate::config::{
    Config, EscalationConfig, NotifierConfig, NotifierKind, SecretRef, TicketKind,
    TicketSourceConfig,
};

/// How a source's webhook events are checked and read.
pub struct TicketHook {
    pub kind: TicketKind,
    pub secret: SecretSlice<u8>,
    pub pattern: Regex,
    /// The API reading of a jira or servicenow source, to parse its payloads.
    pub http: Option<Arc<HttpTicketSource>>,
}

/// The built ticket sources and notifiers.
#[derive(Default)]
pub struct Integrations {
    pub tickets: TicketSources,
    /// Sources that accept events, by name.
    pub hooks: BTreeMap<String, TicketHook>,
    pub notifiers: BTreeMap<String, Arc<dyn Notifier>>,
    pub routes: Vec<Route>,
    /// Reminders and escalations of undecided requests (`[[escalation]]`).
    pub escalations: Vec<Escalation>,
    /// Chat apps (`[[chat]]`), by name; each is also a notifier.
    pub chats: BTreeMap<String, Arc<crate::chat::SlackChat>>,
}

/// A source with no lookup API: the engine reads what its events reported.
struct ReportedSource {
    name: String,
    pattern: Regex,
}

#[async_trait]
impl TicketSource for ReportedSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn matches(&self, reference: &str) -> bool {
        self.pattern.is_match(reference)
    }
    async fn lookup(&self, reference: &str) -> Result<Option<Ticket>, TicketUnavailable> {
        Err(TicketUnavailable(format!(
            "{} has no lookup API; {reference} is known only from its events",
            self.name
        )))
    }
}

fn signing_secret(r: &SecretRef) -> Result<SecretSlice<u8>, String> {
    webhook::load_secret(r.file.as_ref(), r.env.as_deref())
}

fn timeout(d: hourglass_core::GrantDuration) -> Duration {
    Duration::from_secs(d.as_secs())
}

fn ticket_source(
    c: &TicketSourceConfig,
) -> Result<(Arc<dyn TicketSource>, Option<TicketHook>), String> {
    let pattern = whole_pattern(&c.pattern).map_err(|e| format!("pattern: {e}"))?;
    let secret = c
        .webhook_secret
        .as_ref()
        .map(signing_secret)
        .transpose()
        .map_err(|e| format!("webhook_secret: {e}"))?;
    if c.kind == TicketKind::Webhook {
        let secret = secret.ok_or("webhook_secret: required for a webhook source")?;
        if c.url.is_some() || c.token.is_some() {
            return Err("url, token: a webhook source is not called; it calls us".into());
        }
        let source = Arc::new(ReportedSource {
            name: c.name.clone(),
            pattern: pattern.clone(),
        });
        let hook = TicketHook {
            kind: c.kind,
            secret,
            pattern,
            http: None,
        };
        return Ok((source, Some(hook)));
    }
    let url = c
        .url
        .clone()
        .ok_or("url: required for jira and servicenow")?;
    let auth = match (&c.user, &c.token) {
        (Some(user), Some(t)) => Some(Auth::Basic {
            user: user.clone(),
            secret: SecretString::from(t.read().map_err(|e| format!("token: {e}"))?),
        }),
        (None, Some(t)) => Some(Auth::Bearer(SecretString::from(
            t.read().map_err(|e| format!("token: {e}"))?,
        ))),
        (Some(_), None) => return Err("token: required with user".into()),
        (None, None) => None,
    };
    let api = match c.kind {
        TicketKind::Jira => {
            if c.table.is_some() || c.closed_states.is_some() {
                return Err("table, closed_states: servicenow only".into());
            }
            Api::Jira
        }
        _ => Api::ServiceNow {
            table: c.table.clone().unwrap_or_else(|| "incident".into()),
            closed_states: c
                .closed_states
                .clone()
                .unwrap_or_else(|| vec!["6".into(), "7".into(), "8".into()]),
        },
    };
    let http = Arc::new(HttpTicketSource::new(SourceSettings {
        name: c.name.clone(),
        pattern: c.pattern.clone(),
        base_url: url,
        api,
        auth,
        users: c.users.clone(),
        groups: c.groups.clone(),
        timeout: timeout(c.timeout),
        allow_private: c.allow_private,
    })?);
    let hook = secret.map(|secret| TicketHook {
        kind: c.kind,
        secret,
        pattern,
        http: Some(Arc::clone(&http)),
    });
    Ok((http, hook))
}

fn notifier(
    c: &NotifierConfig,
    clock: &Arc<dyn Clock>,
    public_url: Option<&str>,
) -> Result<Arc<dyn Notifier>, String> {
    let t = timeout(c.timeout);
    let only = |key: &str, set: bool, kinds: &str| {
        if set {
            Err(format!("{key}: {kinds} only"))
        } else {
            Ok(())
        }
    };
    only(
        "routing_key, source",
        c.kind != NotifierKind::Pagerduty && (c.routing_key.is_some() || c.source.is_some()),
        "pagerduty",
    )?;
    Ok(match c.kind {
        NotifierKind::Slack => {
            let url = c
                .webhook_url
                .as_ref()
                .ok_or("webhook_url: required for slack")?;
            let url = url.read().map_err(|e| format!("webhook_url: {e}"))?;
            Arc::new(SlackNotifier::new(
                &c.name,
                SecretString::from(url),
                t,
                c.allow_private,
            )?)
        }
        NotifierKind::Webhook => {
            let url = c.url.as_deref().ok_or("url: required for webhook")?;
            let secret = c.secret.as_ref().ok_or("secret: required for webhook")?;
            let secret = signing_secret(secret).map_err(|e| format!("secret: {e}"))?;
            Arc::new(WebhookNotifier::new(
                &c.name,
                url,
                secret,
                t,
                c.allow_private,
                Arc::clone(clock),
            )?)
        }
        NotifierKind::Teams => {
            let url = c
                .webhook_url
                .as_ref()
                .ok_or("webhook_url: required for teams")?;
            let url = url.read().map_err(|e| format!("webhook_url: {e}"))?;
            Arc::new(TeamsNotifier::new(
                &c.name,
                SecretString::from(url),
                public_url.map(str::to_owned),
                t,
                c.allow_private,
            )?)
        }
        NotifierKind::Pagerduty => {
            let key = c
                .routing_key
                .as_ref()
                .ok_or("routing_key: required for pagerduty")?;
            let key = key.read().map_err(|e| format!("routing_key: {e}"))?;
            Arc::new(PagerDutyNotifier::new(
                &c.name,
                c.url
                    .as_deref()
                    .unwrap_or(hourglass_integrations::pagerduty::EVENTS_URL),
                SecretString::from(key),
                c.source.as_deref().unwrap_or("hourglass"),
                t,
                c.allow_private,
            )?)
        }
        NotifierKind::Email => {
            let host = c.host.clone().ok_or("host: required for email")?;
            let from = c.from.clone().ok_or("from: required for email")?;
            let password = c
                .password
                .as_ref()
                .map(SecretRef::read)
                .transpose()
                .map_err(|e| format!("password: {e}"))?
                .map(SecretString::from);
            let port = c.port.unwrap_or(match c.tls {
                hourglass_integrations::SmtpTls::None => 25,
                hourglass_integrations::SmtpTls::Starttls => 587,
                hourglass_integrations::SmtpTls::Tls => 465,
            });
            Arc::new(EmailNotifier::new(EmailSettings {
                name: c.name.clone(),
                host,
                port,
                tls: c.tls,
                username: c.username.clone(),
                password,
                from,
                to: c.to.clone(),
                timeout: t,
            })?)
        }
    })
}

fn route(c: &NotifierConfig) -> Result<Route, String> {
    let events = match &c.events {
        // A pager pages for what needs a person now; the rest is asked for by name.
        None if c.kind == NotifierKind::Pagerduty => vec![
            NotifyEvent::RequestEscalated,
            NotifyEvent::BreakGlass,
            NotifyEvent::RevocationOverdue,
        ],
        None => NotifyEvent::ALL.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| {
                NotifyEvent::parse(n).ok_or_else(|| {
                    let all: Vec<&str> = NotifyEvent::ALL.iter().map(|e| e.as_str()).collect();
                    format!("events: unknown event {n:?}; known: {}", all.join(", "))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Route {
        notifier: c.name.clone(),
        events,
        access: c.access.clone(),
    })
}

/// An escalation rule, checked against the notifier and chat names.
fn escalation(
    e: &EscalationConfig,
    names: &std::collections::BTreeSet<String>,
) -> Result<Escalation, String> {
    if e.remind_after.is_none() && e.escalate_after.is_none() {
        return Err("remind_after: give remind_after, escalate_after or both".into());
    }
    if let (Some(r), Some(x)) = (e.remind_after, e.escalate_after)
        && r >= x
    {
        return Err(format!(
            "remind_after: {r} must come before escalate_after ({x})"
        ));
    }
    match (e.escalate_after.is_some(), e.to.is_empty()) {
        (true, true) => return Err("to: name where escalations go (a notifier or chat)".into()),
        (false, false) => return Err("to: without escalate_after nothing goes there".into()),
        _ => {}
    }
    if let Some(unknown) = e.to.iter().find(|n| !names.contains(*n)) {
        return Err(format!("to: {unknown:?} is no notifier or chat"));
    }
    Ok(Escalation {
        access: e.access.clone(),
        remind_after: e.remind_after,
        escalate_after: e.escalate_after,
        to: e.to.clone(),
    })
}

/// Builds every ticket source and notifier, or names every problem.
pub fn build(config: &Config, clock: &Arc<dyn Clock>) -> Result<Integrations, Vec<String>> {
    let file = config.file_name();
    let mut problems = Vec::new();
    let mut out = Integrations::default();
    let mut sources = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in config.ticket_sources.iter().enumerate() {
        let key = format!("ticket_sources[{i}]");
        if !names.insert(c.name.clone()) {
            problems.push(format!("{file}: {key}.name: {:?} is used twice", c.name));
            continue;
        }
        match ticket_source(c) {
            Ok((source, hook)) => {
                sources.push(BoundSource {
                    source,
                    require_assignee: c.require_assignee,
                    on_unavailable: c.on_unavailable,
                    reported_only: c.kind == TicketKind::Webhook,
                });
                if let Some(h) = hook {
                    out.hooks.insert(c.name.clone(), h);
                }
            }
            Err(e) => problems.push(format!("{file}: {key} ({}): {e}", c.name)),
        }
    }
    out.tickets = TicketSources::new(sources).refusing_unowned(config.tickets.refuse_unowned);
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in config.notifiers.iter().enumerate() {
        let key = format!("notifiers[{i}]");
        if !names.insert(c.name.clone()) {
            problems.push(format!("{file}: {key}.name: {:?} is used twice", c.name));
            continue;
        }
        if c.timeout >= config.server.job_lease {
            problems.push(format!(
                "{file}: {key}.timeout: {} must be shorter than server.job_lease ({}), or a slow delivery could be taken over and sent twice",
                c.timeout, config.server.job_lease
            ));
            continue;
        }
        match notifier(c, clock, config.notifications.public_url.as_deref())
            .and_then(|n| Ok((n, route(c)?)))
        {
            Ok((n, r)) => {
                out.notifiers.insert(c.name.clone(), n);
                out.routes.push(r);
            }
            Err(e) => problems.push(format!("{file}: {key} ({}): {e}", c.name)),
        }
    }
    for (i, c) in config.chat.iter().enumerate() {
        let key = format!("chat[{i}]");
        if !names.insert(c.name.clone()) {
            problems.push(format!(
                "{file}: {key}.name: {:?} is already the name of a notifier or chat",
                c.name
            ));
            continue;
        }
        if c.timeout >= config.server.job_lease {
            problems.push(format!(
                "{file}: {key}.timeout: {} must be shorter than server.job_lease ({})",
                c.timeout, config.server.job_lease
            ));
            continue;
        }
        match crate::chat::SlackChat::new(
            c,
            config.notifications.public_url.clone(),
            Arc::clone(clock),
        ) {
            Ok(chat) => {
                let chat = Arc::new(chat);
                out.notifiers
                    .insert(c.name.clone(), Arc::clone(&chat) as Arc<dyn Notifier>);
                out.routes.push(Route {
                    notifier: c.name.clone(),
                    events: crate::chat::SlackChat::events(),
                    access: Vec::new(),
                });
                out.chats.insert(c.name.clone(), chat);
            }
            Err(e) => problems.push(format!("{file}: {key} ({}): {e}", c.name)),
        }
    }
    for (i, e) in config.escalation.iter().enumerate() {
        match escalation(e, &names) {
            Ok(rule) => out.escalations.push(rule),
            Err(p) => problems.push(format!("{file}: escalation[{i}].{p}")),
        }
    }
    if let Some(u) = &config.notifications.public_url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        problems.push(format!(
            "{file}: notifications.public_url: {u:?} is not an http(s) URL"
        ));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hourglass_core::Timestamp;

    struct Fixed;
    impl Clock for Fixed {
        fn now(&self) -> Timestamp {
            Timestamp::from_unix_millis(0)
        }
        fn sleep_until(&self, _: Timestamp) -> hourglass_core::clock::Sleep<'_> {
            Box::pin(std::future::pending())
        }
    }

    fn build_from(text: &str) -> Result<Integrations, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hook.secret"),
            "0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        std::fs::write(dir.path().join("short.secret"), "too short").unwrap();
        std::fs::write(
            dir.path().join("slack.url"),
            "https://hooks.slack.com/services/T/B/X\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("slack.token"), "xoxb-1-2-bot\n").unwrap();
        std::fs::write(dir.path().join("user.token"), "xoxp-1-2-user\n").unwrap();
        let path = dir.path().join("hourglass.toml");
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path, Vec::new()).unwrap();
        build(&config, &(Arc::new(Fixed) as Arc<dyn Clock>))
    }

    #[test]
    fn a_valid_configuration_builds_sources_hooks_notifiers_and_routes() {
        let built = build_from(
            r#"
[[ticket_sources]]
name = "desk"
kind = "webhook"
pattern = 'DESK-\d+'
webhook_secret = { file = "hook.secret" }

[[ticket_sources]]
name = "jira"
kind = "jira"
pattern = 'HD-\d+'
url = "https://example.atlassian.net"

[[notifiers]]
name = "approvers"
kind = "slack"
webhook_url = { file = "slack.url" }
events = ["request.pending"]
access = ["prod/*"]
"#,
        )
        .unwrap_or_else(|p| panic!("{p:?}"));
        assert!(
            built
                .tickets
                .find("DESK-1")
                .is_some_and(|b| b.reported_only)
        );
        assert!(built.tickets.find("HD-1").is_some_and(|b| !b.reported_only));
        assert!(built.tickets.find("XX-1").is_none());
        // Jira has no webhook secret: it accepts no events and relies on the poller.
        assert_eq!(built.hooks.keys().collect::<Vec<_>>(), ["desk"]);
        assert_eq!(built.routes[0].events, [NotifyEvent::RequestPending]);
        assert!(built.notifiers.contains_key("approvers"));
    }

    #[test]
    fn every_mistake_is_named_with_its_key() {
        let problems = build_from(
            r#"
[server]
job_lease = "1m"

[[ticket_sources]]
name = "desk"
kind = "webhook"
pattern = 'DESK-\d+'

[[ticket_sources]]
name = "bad"
kind = "jira"
pattern = '('
url = "https://example.atlassian.net"

[[ticket_sources]]
name = "short"
kind = "webhook"
pattern = 'S-\d+'
webhook_secret = { file = "short.secret" }

[[notifiers]]
name = "x"
kind = "slack"
webhook_url = { file = "slack.url" }
events = ["grant.gone"]

[[notifiers]]
name = "slow"
kind = "webhook"
url = "https://siem.example.com/h"
secret = { file = "hook.secret" }
timeout = "2m"

[[notifiers]]
name = "mail"
kind = "email"
host = "smtp.example.com"
from = "hourglass@example.com"
"#,
        )
        .err()
        .unwrap();
        let all = problems.join("\n");
        for expected in [
            "ticket_sources[0] (desk): webhook_secret: required",
            "ticket_sources[1] (bad): pattern",
            "ticket_sources[2] (short): webhook_secret: the signing secret must be at least 32 bytes",
            "notifiers[0] (x): events: unknown event \"grant.gone\"",
            "notifiers[1].timeout",
            "notifiers[2] (mail): to: give at least one address",
        ] {
            assert!(all.contains(expected), "{expected:?} not in:\n{all}");
        }
    }

    #[test]
    fn pagers_teams_and_escalations_build_and_their_mistakes_are_named() {
        let ok = r#"
[[notifiers]]
name = "pager"
kind = "pagerduty"
routing_key = { file = "hook.secret" }

[[notifiers]]
name = "teams"
kind = "teams"
webhook_url = { file = "slack.url" }

[[escalation]]
access = ["prod/*"]
remind_after = "30m"
escalate_after = "1h"
to = ["pager"]

[[escalation]]
remind_after = "2h"
"#;
        let built = build_from(ok).unwrap_or_else(|p| panic!("{p:?}"));
        // A pager pages only for what needs a person now, unless told otherwise.
        assert_eq!(
            built.routes[0].events,
            [
                NotifyEvent::RequestEscalated,
                NotifyEvent::BreakGlass,
                NotifyEvent::RevocationOverdue
            ]
        );
        assert_eq!(built.routes[1].events, NotifyEvent::ALL);
        assert_eq!(built.escalations.len(), 2);
        assert!(built.escalations[0].covers("prod/db") && !built.escalations[0].covers("demo/db"));
        let problems = build_from(
            r#"
[[notifiers]]
name = "pager"
kind = "pagerduty"
routing_key = { file = "short.secret" }

[[notifiers]]
name = "hook"
kind = "webhook"
url = "https://siem.example.com/h"
secret = { file = "hook.secret" }
source = "x"

[[escalation]]
escalate_after = "1h"
to = ["nobody"]

[[escalation]]
remind_after = "2h"
escalate_after = "1h"
to = ["hook"]

[[escalation]]
escalate_after = "1h"

[[escalation]]
access = ["prod/*"]
"#,
        )
        .err()
        .unwrap()
        .join("\n");
        for expected in [
            "notifiers[0] (pager): an Events API v2 routing key is 32 characters",
            "notifiers[1] (hook): routing_key, source: pagerduty only",
            "escalation[0].to: \"nobody\" is no notifier or chat",
            "escalation[1].remind_after: 2h must come before escalate_after (1h)",
            "escalation[2].to: name where escalations go",
            "escalation[3].remind_after: give remind_after, escalate_after or both",
        ] {
            assert!(
                problems.contains(expected),
                "{expected:?} not in:\n{problems}"
            );
        }
    }

    #[test]
    fn a_chat_app_is_a_notifier_and_its_mistakes_are_named() {
        let ok = r#"
[[chat]]
name = "slack"
kind = "slack"
bot_token = { file = "slack.token" }
signing_secret = { file = "hook.secret" }
channel = "C0APPROVERS"
"#;
        let built = build_from(ok).unwrap_or_else(|p| panic!("{p:?}"));
        assert!(built.chats.contains_key("slack"));
        assert!(built.notifiers.contains_key("slack"));
        assert_eq!(built.routes[0].events, NotifyEvent::ALL);
        let problems = build_from(
            r#"
[[notifiers]]
name = "slack"
kind = "slack"
webhook_url = { file = "slack.url" }

[[chat]]
name = "slack"
kind = "slack"
bot_token = { file = "slack.token" }
signing_secret = { file = "hook.secret" }
channel = "C0"

[[chat]]
name = "user-token"
kind = "slack"
bot_token = { file = "user.token" }
signing_secret = { file = "hook.secret" }
channel = "C0"

[[chat]]
name = "nowhere"
kind = "slack"
bot_token = { file = "slack.token" }
signing_secret = { file = "missing.secret" }
"#,
        )
        .err()
        .unwrap();
        let text = problems.join("\n");
        assert!(
            text.contains("chat[0].name: \"slack\" is already the name"),
            "{text}"
        );
        assert!(
            text.contains("chat[1] (user-token): bot_token: a bot token starts with xoxb-"),
            "{text}"
        );
        assert!(
            text.contains("chat[2] (nowhere): signing_secret: file"),
            "{text}"
        );
    }
}
