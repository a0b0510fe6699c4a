//! Ticket events sent to Hourglass: their signatures and their payloads.
//!
//! Every event must be signed with the source's webhook secret, by one of:
//! - `Hourglass-Timestamp` + `Hourglass-Signature: v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`
//!   (the scheme of Hourglass's own webhooks, with a replay window), or
//! - `X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, body)>`, which Jira Cloud sends for a
//!   webhook registered with a secret.

use aws_lc_rs::hmac;
use hourglass_connectors::webhook;
use hourglass_core::ticket::Ticket;
use serde_json::Value;

use crate::tickets::HttpTicketSource;

pub const HUB_SIGNATURE_HEADER: &str = "x-hub-signature";

/// Why an event is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Unsigned,
    BadSignature(String),
    BadPayload(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Unsigned => f.write_str(
                "the event is not signed (Hourglass-Signature or X-Hub-Signature required)",
            ),
            Refused::BadSignature(why) => write!(f, "the signature does not verify: {why}"),
            Refused::BadPayload(why) => write!(f, "the payload is not understood: {why}"),
        }
    }
}

impl std::error::Error for Refused {}

/// The signature headers of an event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Signed<'a> {
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub hub_signature: Option<&'a str>,
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, as Jira Cloud signs a webhook (for senders and
/// tests).
pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

/// Checks an event's signature with `secret`.
pub fn verify(secret: &[u8], s: Signed<'_>, body: &[u8], now_secs: i64) -> Result<(), Refused> {
    if s.signature.is_some() {
        return webhook::verify(
            secret,
            s.timestamp,
            s.signature,
            body,
            now_secs,
            webhook::DEFAULT_WINDOW_SECS,
        )
        .map_err(|e| Refused::BadSignature(e.to_string()));
    }
    let Some(hub) = s.hub_signature else {
        return Err(Refused::Unsigned);
    };
    let tag = hub
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| Refused::BadSignature("expected sha256=<hex>".into()))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, body, &tag).map_err(|_| Refused::BadSignature("no match".into()))
}

/// Words that mean a ticket is finished, in generic events.
const CLOSED_WORDS: [&str; 7] = [
    "closed",
    "resolved",
    "done",
    "cancelled",
    "canceled",
    "completed",
    "deleted",
];

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A generic event: `{"ref": "OPS-1", "status": "closed", "assignee": "alice"}`; `open` (a
/// boolean) may say it outright, else the status decides.
pub fn generic_event(body: &Value) -> Result<Ticket, Refused> {
    let reference = str_field(body, "ref")
        .ok_or_else(|| Refused::BadPayload("ref (a string) is required".into()))?;
    let status = str_field(body, "status")
        .ok_or_else(|| Refused::BadPayload("status (a string) is required".into()))?;
    let open = match body.get("open") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => !CLOSED_WORDS.contains(&status.to_ascii_lowercase().as_str()),
        Some(_) => return Err(Refused::BadPayload("open must be a boolean".into())),
    };
    Ok(Ticket {
        reference: reference.to_owned(),
        open,
        status: status.to_owned(),
        assignee: str_field(body, "assignee").map(str::to_owned),
        group: str_field(body, "group").map(str::to_owned),
        priority: str_field(body, "priority").map(str::to_owned),
    })
}

/// A Jira webhook (`jira:issue_updated`, `jira:issue_deleted`…) as the ticket it reports.
pub fn jira_event(source: &HttpTicketSource, body: &Value) -> Result<Ticket, Refused> {
    let issue = body
        .get("issue")
        .filter(|i| i.is_object())
        .ok_or_else(|| Refused::BadPayload("a Jira issue event has an issue".into()))?;
    let key = str_field(issue, "key")
        .ok_or_else(|| Refused::BadPayload("the issue has no key".into()))?;
    let mut t = source.jira_ticket(key, issue);
    if str_field(body, "webhookEvent") == Some("jira:issue_deleted") {
        t.open = false;
        t.status = "deleted".into();
    }
    Ok(t)
}

/// A ServiceNow record posted by a business rule (plain values, or the Table API's
/// `{"result": {...}}` with `{value, display_value}` fields).
pub fn servicenow_event(source: &HttpTicketSource, body: &Value) -> Result<Ticket, Refused> {
    let row = body.get("result").filter(|r| r.is_object()).unwrap_or(body);
    let number = match row.get("number") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(o)) => o.get("value").and_then(Value::as_str),
        _ => None,
    }
    .filter(|s| !s.is_empty())
    .ok_or_else(|| Refused::BadPayload("the record has no number".into()))?;
    if row.get("state").is_none() {
        return Err(Refused::BadPayload("the record has no state".into()));
    }
    Ok(source.servicenow_ticket(number, row))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_signature_schemes_verify_and_nothing_else_does() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let body = br#"{"ref":"OPS-1","status":"closed"}"#;
        let sig = webhook::sign(secret, 1_000, body);
        let ok = Signed {
            timestamp: Some("1000"),
            signature: Some(&sig),
            hub_signature: None,
        };
        assert_eq!(verify(secret, ok, body, 1_010), Ok(()));
        assert!(matches!(
            verify(secret, ok, body, 9_999),
            Err(Refused::BadSignature(_))
        ));
        assert!(verify(b"another secret another secret!!", ok, body, 1_010).is_err());
        let hub = hub_signature(secret, body);
        let jira = Signed {
            hub_signature: Some(&hub),
            ..Signed::default()
        };
        assert_eq!(verify(secret, jira, body, 0), Ok(()));
        assert!(verify(secret, jira, b"{}", 0).is_err());
        assert_eq!(
            verify(secret, Signed::default(), body, 0),
            Err(Refused::Unsigned)
        );
    }

    #[test]
    fn generic_events_need_a_ref_and_a_status() {
        let t = generic_event(&json!({"ref": "OPS-1", "status": "Resolved"})).unwrap();
        assert!(!t.open);
        let t = generic_event(&json!({"ref": "OPS-1", "status": "waiting", "assignee": "bob"}))
            .unwrap();
        assert!(t.open);
        assert_eq!(t.assignee.as_deref(), Some("bob"));
        let t = generic_event(&json!({"ref": "OPS-1", "status": "x", "open": false})).unwrap();
        assert!(!t.open);
        assert!(generic_event(&json!({"status": "closed"})).is_err());
        assert!(generic_event(&json!({"ref": "OPS-1"})).is_err());
        assert!(generic_event(&json!({"ref": "OPS-1", "status": "x", "open": "no"})).is_err());
    }
}
