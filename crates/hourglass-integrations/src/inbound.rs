//! Ticket events sent to Hourglass: their signatures and their payloads.
//!
//! Every event must be signed with the source's webhook secret, by one of:
//! - `Hourglass-Timestamp` + `Hourglass-Signature: v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`
//!   (the scheme of Hourglass's own webhooks, with a replay window), or
//! - `X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, body)>`, which Jira Cloud sends for a
//!   webhook registered with a secret: accepted from Jira sources only, since it signs no time.
//!
//! A verified event is a [`Delivery`]: a digest of what was signed (never of the headers, which
//! a replayer could pad), remembered by the engine so that the same delivery is applied once,
//! and the time the v1 scheme signed. Each payload's own time of change orders the reports.

use aws_lc_rs::hmac;
use hourglass_connectors::webhook;
use hourglass_core::{Timestamp, ticket::Ticket};
use serde_json::Value;

use crate::tickets::{HttpTicketSource, ticket_time};

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

/// One verified delivery of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// A digest of the signed content: the same delivery again has the same id.
    pub id: String,
    /// When the sender signed it (the v1 scheme), Unix seconds.
    pub signed_at: Option<i64>,
}

impl Delivery {
    /// Until when a repeat must be refused: the v1 scheme's window after signing (later its
    /// timestamp refuses it anyway), else a week (Jira retries within hours; the payload's time
    /// orders anything older).
    pub fn remember_until(&self, now_secs: i64) -> Timestamp {
        let until = match self.signed_at {
            Some(at) => at.max(now_secs) + webhook::DEFAULT_WINDOW_SECS,
            None => now_secs + 7 * 86_400,
        };
        Timestamp::from_unix_millis(until.saturating_mul(1000))
    }
}

fn digest(parts: &[&[u8]]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    hex::encode(ctx.finish().as_ref())
}

/// Checks an event's signature with `secret`. `allow_hub`: whether the source may use
/// `X-Hub-Signature` (Jira sources only).
pub fn verify(
    secret: &[u8],
    s: Signed<'_>,
    body: &[u8],
    now_secs: i64,
    allow_hub: bool,
) -> Result<Delivery, Refused> {
    if s.signature.is_some() {
        webhook::verify(
            secret,
            s.timestamp,
            s.signature,
            body,
            now_secs,
            webhook::DEFAULT_WINDOW_SECS,
        )
        .map_err(|e| Refused::BadSignature(e.to_string()))?;
        let ts = s.timestamp.unwrap_or_default().trim();
        return Ok(Delivery {
            id: digest(&[b"v1.", ts.as_bytes(), b".", body]),
            signed_at: ts.parse().ok(),
        });
    }
    let Some(hub) = s.hub_signature else {
        return Err(Refused::Unsigned);
    };
    if !allow_hub {
        return Err(Refused::BadSignature(
            "X-Hub-Signature signs no time and is accepted from Jira sources only; sign with Hourglass-Timestamp and Hourglass-Signature".into(),
        ));
    }
    let tag = hub
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| Refused::BadSignature("expected sha256=<hex>".into()))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, body, &tag).map_err(|_| Refused::BadSignature("no match".into()))?;
    Ok(Delivery {
        id: digest(&[b"hub.", body]),
        signed_at: None,
    })
}

/// A payload's time field: RFC 3339 (or a system's own format, see [`ticket_time`]), or Unix
/// seconds or milliseconds as a number.
fn time_field(v: Option<&Value>) -> Result<Option<Timestamp>, Refused> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => ticket_time(s)
            .map(Some)
            .ok_or_else(|| Refused::BadPayload(format!("updated: {s:?} is not a time"))),
        Some(Value::Number(n)) => {
            let n = n
                .as_i64()
                .ok_or_else(|| Refused::BadPayload("updated: not a whole number".into()))?;
            // Milliseconds from 2001 on are over 10^12; seconds stay under it until 33658.
            let ms = if n.abs() >= 1_000_000_000_000 {
                n
            } else {
                n.saturating_mul(1000)
            };
            Ok(Some(Timestamp::from_unix_millis(ms)))
        }
        Some(_) => Err(Refused::BadPayload(
            "updated must be a time (RFC 3339) or Unix seconds".into(),
        )),
    }
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
/// boolean) may say it outright, else the status decides. `updated` (RFC 3339 or Unix seconds)
/// is when the ticket changed; without it the signing time counts.
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
        updated: time_field(body.get("updated"))?,
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
    // An issue without `updated` is ordered by the event's own `timestamp` (milliseconds).
    if t.updated.is_none() {
        t.updated = time_field(body.get("timestamp"))?;
    }
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
        let d = verify(secret, ok, body, 1_010, false).unwrap();
        assert_eq!(d.signed_at, Some(1_000));
        assert!(matches!(
            verify(secret, ok, body, 9_999, false),
            Err(Refused::BadSignature(_))
        ));
        assert!(verify(b"another secret another secret!!", ok, body, 1_010, false).is_err());
        // Padding the header with junk does not make the same delivery look new.
        let padded = format!("{sig},v1=00");
        let again = Signed {
            signature: Some(&padded),
            ..ok
        };
        assert_eq!(verify(secret, again, body, 1_010, false).unwrap().id, d.id);
        let hub = hub_signature(secret, body);
        let jira = Signed {
            hub_signature: Some(&hub),
            ..Signed::default()
        };
        let h = verify(secret, jira, body, 0, true).unwrap();
        assert_ne!(h.id, d.id);
        assert!(verify(secret, jira, b"{}", 0, true).is_err());
        // The hub scheme signs no time: only a Jira source may use it.
        assert!(matches!(
            verify(secret, jira, body, 0, false),
            Err(Refused::BadSignature(_))
        ));
        assert_eq!(
            verify(secret, Signed::default(), body, 0, true),
            Err(Refused::Unsigned)
        );
    }

    #[test]
    fn event_times_are_read_in_each_system_s_format() {
        let t = generic_event(
            &json!({"ref": "OPS-1", "status": "open", "updated": "2026-11-30T10:00:00Z"}),
        )
        .unwrap();
        assert_eq!(t.updated, Timestamp::parse_rfc3339("2026-11-30T10:00:00Z"));
        let t = generic_event(&json!({"ref": "OPS-1", "status": "open", "updated": 1_800_000_000}))
            .unwrap();
        assert_eq!(
            t.updated,
            Some(Timestamp::from_unix_millis(1_800_000_000_000))
        );
        assert!(
            generic_event(&json!({"ref": "OPS-1", "status": "open", "updated": "soon"})).is_err()
        );
        assert_eq!(
            ticket_time("2026-11-30T10:00:00.000+0100"),
            Timestamp::parse_rfc3339("2026-11-30T09:00:00Z")
        );
        assert_eq!(
            ticket_time("2026-11-30 10:00:00"),
            Timestamp::parse_rfc3339("2026-11-30T10:00:00Z")
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
