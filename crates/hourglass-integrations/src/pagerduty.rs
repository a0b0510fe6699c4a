//! Paging through PagerDuty's Events API v2 (`POST /v2/enqueue`): an escalated request, a
//! break-glass use or an overdue revocation triggers an alert; when the request it paged about
//! is decided (or expires), the alert is resolved with the same `dedup_key`.

use std::time::Duration;

use async_trait::async_trait;
use hourglass_connectors::outbound;
use hourglass_core::notify::{Message, Notifier, NotifyEvent, Severity};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::{http, slack::clip};

/// The Events API endpoint.
pub const EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Sends Events API v2 events for one integration (its routing key).
pub struct PagerDutyNotifier {
    name: String,
    url: String,
    routing_key: SecretString,
    source: String,
    client: reqwest::Client,
    max_wait: Duration,
}

/// The alert a message is about: one per request (so that a reminder, an escalation and the
/// decision all speak of one alert), else one per notification.
pub fn dedup_key(id: &str, m: &Message) -> String {
    match (&m.request_id, &m.grant_id) {
        (Some(r), None) => format!("hourglass/request/{r}"),
        _ => format!("hourglass/{}/{id}", m.event.as_str()),
    }
}

/// Whether a message ends what an earlier one paged about.
fn resolves(event: NotifyEvent) -> bool {
    match event {
        NotifyEvent::RequestApproved
        | NotifyEvent::RequestDenied
        | NotifyEvent::RequestCancelled
        | NotifyEvent::RequestExpired => true,
        NotifyEvent::RequestPending
        | NotifyEvent::RequestReminder
        | NotifyEvent::RequestEscalated
        | NotifyEvent::GrantActive
        | NotifyEvent::GrantExpiring
        | NotifyEvent::GrantRevoked
        | NotifyEvent::RevocationOverdue
        | NotifyEvent::BreakGlass
        | NotifyEvent::Drift
        | NotifyEvent::CampaignReminder => false,
    }
}

/// The trigger event for a message (`routing_key` left out, added when sent).
pub fn trigger_body(key: &str, source: &str, m: &Message) -> Value {
    let severity = match m.severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    };
    let mut details = serde_json::Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            details.insert(k.to_owned(), Value::String(v.clone()));
        }
    };
    put("principal", &m.principal);
    put("access", &m.access);
    put("reason", &m.reason);
    put("duration", &m.duration);
    put("ticket", &m.ticket);
    put("request", &m.request_id);
    put("grant", &m.grant_id);
    if let Some(t) = m.expires_at {
        details.insert("until".into(), Value::String(t.to_string()));
    }
    for (k, v) in &m.details {
        details.insert(k.clone(), Value::String(v.clone()));
    }
    let mut body = json!({
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": clip(&m.title, 1024),
            "source": source,
            "severity": severity,
            "timestamp": m.at.to_string(),
            "group": "hourglass",
            "class": m.event.as_str(),
            "custom_details": details,
        },
        "client": "Hourglass",
    });
    if let Some(a) = &m.access {
        body["payload"]["component"] = json!(a);
    }
    if let Some(link) = &m.link {
        body["client_url"] = json!(link);
        body["links"] = json!([{"href": link, "text": "Review the request in Hourglass"}]);
    }
    body
}

impl PagerDutyNotifier {
    /// `url` is [`EVENTS_URL`] (a local server in tests, with `allow_private`); `source` names
    /// this Hourglass in the alert.
    pub fn new(
        name: &str,
        url: &str,
        routing_key: SecretString,
        source: &str,
        timeout: Duration,
        allow_private: bool,
    ) -> Result<Self, String> {
        outbound::check_url(url, allow_private)?;
        if routing_key.expose_secret().len() != 32 {
            return Err("an Events API v2 routing key is 32 characters".into());
        }
        Ok(PagerDutyNotifier {
            name: name.to_owned(),
            url: url.to_owned(),
            routing_key,
            source: source.to_owned(),
            client: outbound::client(allow_private, timeout)?,
            max_wait: timeout,
        })
    }

    async fn enqueue(&self, mut body: Value) -> Result<(), String> {
        body["routing_key"] = json!(self.routing_key.expose_secret());
        let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let answer = http::send(
            || {
                self.client
                    .post(&self.url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone())
            },
            self.max_wait,
        )
        .await
        .map_err(|e| format!("PagerDuty: {e}"))?;
        if answer.status.is_success() {
            return Ok(());
        }
        // `{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`
        let v = answer.json();
        let mut why = v
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| answer.text(200), str::to_owned);
        if let Some(errors) = v.get("errors").and_then(Value::as_array) {
            let list: Vec<&str> = errors.iter().filter_map(Value::as_str).collect();
            if !list.is_empty() {
                why = format!("{why} ({})", list.join("; "));
            }
        }
        Err(format!(
            "PagerDuty answered HTTP {}: {why}",
            answer.status.as_u16()
        ))
    }
}

#[async_trait]
impl Notifier for PagerDutyNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(
        &self,
        id: &str,
        m: &Message,
        earlier: &[String],
    ) -> Result<Option<String>, String> {
        if resolves(m.event) {
            // Only what this integration paged about is resolved.
            for key in earlier {
                self.enqueue(json!({"event_action": "resolve", "dedup_key": key}))
                    .await?;
            }
            return Ok(None);
        }
        let key = dedup_key(id, m);
        self.enqueue(trigger_body(&key, &self.source, m)).await?;
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use hourglass_core::Timestamp;

    use super::*;

    fn escalated() -> Message {
        Message {
            event: NotifyEvent::RequestEscalated,
            severity: Severity::Warning,
            title: "Escalated: alice's request for prod/db for 1h has waited 2h".into(),
            at: Timestamp::from_unix_millis(1_800_000_000_000),
            request_id: Some("req_1".into()),
            grant_id: None,
            principal: Some("alice".into()),
            access: Some("prod/db".into()),
            reason: Some("INC-7 <b>".into()),
            duration: Some("1h".into()),
            ticket: None,
            expires_at: None,
            link: Some("https://hg.example.com/approve/req_1".into()),
            details: vec![("waiting".into(), "2h".into())],
        }
    }

    #[test]
    fn a_trigger_is_an_events_v2_alert_keyed_by_its_request() {
        let m = escalated();
        let key = dedup_key("ntf_1", &m);
        assert_eq!(key, "hourglass/request/req_1");
        let b = trigger_body(&key, "hourglass.example.com", &m);
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["payload"]["severity"], "warning");
        assert_eq!(b["payload"]["source"], "hourglass.example.com");
        assert_eq!(b["payload"]["class"], "request.escalated");
        assert_eq!(b["payload"]["custom_details"]["reason"], "INC-7 <b>");
        assert_eq!(b["payload"]["custom_details"]["waiting"], "2h");
        assert_eq!(
            b["links"][0]["href"],
            "https://hg.example.com/approve/req_1"
        );
        assert!(b.get("routing_key").is_none(), "added only when sent");
        let mut grant = m.clone();
        grant.event = NotifyEvent::RevocationOverdue;
        grant.grant_id = Some("grt_1".into());
        assert_eq!(
            dedup_key("ntf_9", &grant),
            "hourglass/revocation.overdue/ntf_9"
        );
    }

    #[test]
    fn a_routing_key_has_the_events_api_length() {
        let short = PagerDutyNotifier::new(
            "pd",
            EVENTS_URL,
            SecretString::from("short"),
            "hourglass",
            Duration::from_secs(1),
            false,
        );
        assert!(short.err().unwrap().contains("32 characters"));
    }
}
