//! Builds the ticket sources and notifiers from configuration, checking every entry (and
//! reading every secret) at start, so that a mistake fails the start, not the first event.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use hourglass_connectors::webhook;
use hourglass_core::{
    Clock,
    notify::{Notifier, NotifyEvent, Route},
    ticket::{BoundSource, Ticket, TicketSource, TicketSources, TicketUnavailable},
};
use hourglass_integrations::{
    Api, Auth, EmailNotifier, EmailSettings, HttpTicketSource, SlackNotifier, SourceSettings,
    WebhookNotifier, tickets::whole_pattern,
};
use regex::Regex;
use secrecy::{SecretSlice, SecretString};

use crate::config::{
    Config, NotifierConfig, NotifierKind, SecretRef, TicketKind, TicketSourceConfig,
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

fn read_secret(r: &SecretRef) -> Result<String, String> {
    let raw = match (&r.file, &r.env) {
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
            secret: SecretString::from(read_secret(t).map_err(|e| format!("token: {e}"))?),
        }),
        (None, Some(t)) => Some(Auth::Bearer(SecretString::from(
            read_secret(t).map_err(|e| format!("token: {e}"))?,
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

fn notifier(c: &NotifierConfig, clock: &Arc<dyn Clock>) -> Result<Arc<dyn Notifier>, String> {
    let t = timeout(c.timeout);
    Ok(match c.kind {
        NotifierKind::Slack => {
            let url = c
                .webhook_url
                .as_ref()
                .ok_or("webhook_url: required for slack")?;
            let url = read_secret(url).map_err(|e| format!("webhook_url: {e}"))?;
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
        NotifierKind::Email => {
            let host = c.host.clone().ok_or("host: required for email")?;
            let from = c.from.clone().ok_or("from: required for email")?;
            let password = c
                .password
                .as_ref()
                .map(read_secret)
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
    out.tickets = TicketSources::new(sources);
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in config.notifiers.iter().enumerate() {
        let key = format!("notifiers[{i}]");
        if !names.insert(c.name.clone()) {
            problems.push(format!("{file}: {key}.name: {:?} is used twice", c.name));
            continue;
        }
        match notifier(c, clock).and_then(|n| Ok((n, route(c)?))) {
            Ok((n, r)) => {
                out.notifiers.insert(c.name.clone(), n);
                out.routes.push(r);
            }
            Err(e) => problems.push(format!("{file}: {key} ({}): {e}", c.name)),
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
