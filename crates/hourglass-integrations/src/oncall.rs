//! Who is on call now, from the systems that keep the schedules: PagerDuty (REST API v2,
//! `GET /oncalls`, by schedule or escalation policy) and Opsgenie (`GET
//! /v2/schedules/{id}/on-calls`). Each answers the email addresses of the people on call; the
//! server maps them to principals and caches them for a bounded time.

use std::{collections::BTreeSet, time::Duration};

use hourglass_connectors::outbound;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::http::{self, Answer};

/// Which API a source speaks, and what it asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnCallApi {
    /// PagerDuty: the people on call for these schedules and escalation policies, up to
    /// escalation level `max_level` when set.
    PagerDuty {
        schedules: Vec<String>,
        escalation_policies: Vec<String>,
        max_level: Option<u64>,
    },
    /// Opsgenie: the people on call in these schedules, named by id or by name.
    Opsgenie {
        schedules: Vec<String>,
        by_name: bool,
    },
}

/// A schedule system's API, read with a token.
pub struct OnCallClient {
    base: String,
    token: SecretString,
    api: OnCallApi,
    client: reqwest::Client,
    max_wait: Duration,
}

/// PagerDuty pages through `/oncalls` this many at a time.
const PAGE: usize = 100;
/// And stops after this many pages (10,000 on-call entries).
const MAX_PAGES: usize = 100;

impl OnCallClient {
    /// `base` is `https://api.pagerduty.com` or `https://api.opsgenie.com` (a local server in
    /// tests, with `allow_private`).
    pub fn new(
        base: &str,
        token: SecretString,
        api: OnCallApi,
        timeout: Duration,
        allow_private: bool,
    ) -> Result<Self, String> {
        outbound::check_url(base, allow_private)?;
        let empty = match &api {
            OnCallApi::PagerDuty {
                schedules,
                escalation_policies,
                ..
            } => schedules.is_empty() && escalation_policies.is_empty(),
            OnCallApi::Opsgenie { schedules, .. } => schedules.is_empty(),
        };
        if empty {
            return Err("name at least one schedule (or, for PagerDuty, escalation policy)".into());
        }
        Ok(OnCallClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            api,
            client: outbound::client(allow_private, timeout)?,
            // Never wait on a rate limit longer than one call may take.
            max_wait: timeout,
        })
    }

    /// The lower-cased email addresses of everyone on call now.
    pub async fn on_call_now(&self) -> Result<BTreeSet<String>, String> {
        match &self.api {
            OnCallApi::PagerDuty {
                schedules,
                escalation_policies,
                max_level,
            } => {
                self.pagerduty(schedules, escalation_policies, *max_level)
                    .await
            }
            OnCallApi::Opsgenie { schedules, by_name } => {
                let mut out = BTreeSet::new();
                for s in schedules {
                    out.extend(self.opsgenie(s, *by_name).await?);
                }
                Ok(out)
            }
        }
    }

    async fn pagerduty(
        &self,
        schedules: &[String],
        policies: &[String],
        max_level: Option<u64>,
    ) -> Result<BTreeSet<String>, String> {
        let mut out = BTreeSet::new();
        let mut offset = 0;
        for _ in 0..MAX_PAGES {
            let mut query: Vec<(&str, String)> = vec![
                ("include[]", "users".into()),
                ("limit", PAGE.to_string()),
                ("offset", offset.to_string()),
            ];
            query.extend(schedules.iter().map(|s| ("schedule_ids[]", s.clone())));
            query.extend(
                policies
                    .iter()
                    .map(|p| ("escalation_policy_ids[]", p.clone())),
            );
            let mut url = reqwest::Url::parse(&format!("{}/oncalls", self.base))
                .map_err(|e| e.to_string())?;
            url.query_pairs_mut().extend_pairs(&query);
            let answer = http::send(
                || {
                    self.client
                        .get(url.clone())
                        .header(
                            reqwest::header::AUTHORIZATION,
                            format!("Token token={}", self.token.expose_secret()),
                        )
                        .header(
                            reqwest::header::ACCEPT,
                            "application/vnd.pagerduty+json;version=2",
                        )
                },
                self.max_wait,
            )
            .await
            .map_err(|e| format!("PagerDuty: {e}"))?;
            let v = ok_json(&answer, "PagerDuty", "/error/message")?;
            let (emails, more) = parse_pagerduty(&v, max_level)?;
            // The next page starts after the entries this one held (PagerDuty may answer fewer
            // than asked for; its `limit` says how many a page holds).
            let step = v
                .get("limit")
                .and_then(Value::as_u64)
                .and_then(|l| usize::try_from(l).ok())
                .unwrap_or(0);
            out.extend(emails);
            if !more {
                return Ok(out);
            }
            if step == 0 {
                return Err("PagerDuty: more pages, but a page of none".into());
            }
            offset += step;
        }
        Err(format!(
            "PagerDuty: more than {} on-call entries; name fewer schedules",
            PAGE * MAX_PAGES
        ))
    }

    async fn opsgenie(&self, schedule: &str, by_name: bool) -> Result<BTreeSet<String>, String> {
        let mut url = reqwest::Url::parse(&self.base).map_err(|e| e.to_string())?;
        url.path_segments_mut()
            .map_err(|()| "the Opsgenie URL cannot take a path".to_owned())?
            .pop_if_empty()
            .extend(["v2", "schedules", schedule, "on-calls"]);
        let kind = if by_name { "name" } else { "id" };
        url.query_pairs_mut()
            .append_pair("scheduleIdentifierType", kind)
            .append_pair("flat", "true");
        let answer = http::send(
            || {
                self.client.get(url.clone()).header(
                    reqwest::header::AUTHORIZATION,
                    format!("GenieKey {}", self.token.expose_secret()),
                )
            },
            self.max_wait,
        )
        .await
        .map_err(|e| format!("Opsgenie: {e}"))?;
        let v = ok_json(&answer, "Opsgenie", "/message")?;
        parse_opsgenie(&v)
    }
}

/// The JSON of a successful answer, or an error with the system's own message.
fn ok_json(a: &Answer, system: &str, message_at: &str) -> Result<Value, String> {
    let v = a.json();
    if a.status.is_success() {
        return Ok(v);
    }
    let message = v
        .pointer(message_at)
        .and_then(Value::as_str)
        .map_or_else(|| a.text(200), str::to_owned);
    Err(format!(
        "{system} answered HTTP {}: {message}",
        a.status.as_u16()
    ))
}

/// The emails in one page of PagerDuty's `/oncalls` (with `include[]=users`), and whether
/// more pages follow.
pub fn parse_pagerduty(v: &Value, max_level: Option<u64>) -> Result<(Vec<String>, bool), String> {
    let oncalls = v
        .get("oncalls")
        .and_then(Value::as_array)
        .ok_or("PagerDuty: no oncalls in the answer")?;
    let mut out = Vec::new();
    for o in oncalls {
        let level = o.get("escalation_level").and_then(Value::as_u64);
        if let (Some(max), Some(level)) = (max_level, level)
            && level > max
        {
            continue;
        }
        let email = o
            .pointer("/user/email")
            .and_then(Value::as_str)
            .ok_or("PagerDuty: an on-call user has no email (is include[]=users honoured?)")?;
        out.push(email.trim().to_ascii_lowercase());
    }
    let more = v.get("more").and_then(Value::as_bool).unwrap_or(false);
    Ok((out, more))
}

/// The emails in Opsgenie's flat on-call answer (`data.onCallRecipients`: Opsgenie user names,
/// which are email addresses).
pub fn parse_opsgenie(v: &Value) -> Result<BTreeSet<String>, String> {
    let recipients = v
        .pointer("/data/onCallRecipients")
        .and_then(Value::as_array)
        .ok_or("Opsgenie: no data.onCallRecipients in the answer")?;
    Ok(recipients
        .iter()
        .filter_map(Value::as_str)
        .filter(|r| r.contains('@'))
        .map(|r| r.trim().to_ascii_lowercase())
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pagerduty_oncalls_give_emails_by_level_and_say_whether_more_follow() {
        // The shape of GET /oncalls?include[]=users from PagerDuty's API reference.
        let page = json!({
            "oncalls": [
                {"escalation_policy": {"id": "PEP1", "type": "escalation_policy_reference"},
                 "escalation_level": 1,
                 "schedule": {"id": "PSCH1", "type": "schedule_reference"},
                 "user": {"id": "PU1", "type": "user", "name": "Alice", "email": "Alice@Example.com"},
                 "start": "2026-12-01T08:00:00Z", "end": "2026-12-01T20:00:00Z"},
                {"escalation_policy": {"id": "PEP1", "type": "escalation_policy_reference"},
                 "escalation_level": 2, "schedule": null,
                 "user": {"id": "PU2", "type": "user", "name": "Bob", "email": "bob@example.com"},
                 "start": null, "end": null}
            ],
            "limit": 100, "offset": 0, "more": true, "total": null
        });
        let (all, more) = parse_pagerduty(&page, None).unwrap();
        assert_eq!(all, ["alice@example.com", "bob@example.com"]);
        assert!(more);
        let (first, _) = parse_pagerduty(&page, Some(1)).unwrap();
        assert_eq!(first, ["alice@example.com"]);
        // A user reference without `include[]=users` has no email: an error, not nobody.
        let refs = json!({"oncalls": [{"escalation_level": 1,
            "user": {"id": "PU1", "type": "user_reference", "summary": "Alice"}}], "more": false});
        assert!(
            parse_pagerduty(&refs, None)
                .unwrap_err()
                .contains("no email")
        );
        assert!(parse_pagerduty(&json!({"error": {}}), None).is_err());
    }

    #[test]
    fn opsgenie_flat_on_calls_give_emails() {
        let v = json!({
            "data": {"_parent": {"id": "d875", "name": "ops_schedule", "enabled": true},
                     "onCallRecipients": ["Carol@example.com", "ops_team"]},
            "took": 0.012, "requestId": "8a0b4d19"
        });
        assert_eq!(
            parse_opsgenie(&v).unwrap().into_iter().collect::<Vec<_>>(),
            ["carol@example.com"]
        );
        assert!(parse_opsgenie(&json!({"message": "x"})).is_err());
    }

    #[test]
    fn a_source_must_name_what_to_ask_about() {
        let none = OnCallClient::new(
            "https://api.pagerduty.com",
            SecretString::from("t"),
            OnCallApi::PagerDuty {
                schedules: vec![],
                escalation_policies: vec![],
                max_level: None,
            },
            Duration::from_secs(1),
            false,
        );
        assert!(none.is_err());
    }
}
