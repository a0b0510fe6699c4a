//! Microsoft Teams notifications by incoming webhook (a Workflows "post to a channel when a
//! webhook request is received" flow, or a legacy Office 365 connector): an Adaptive Card with
//! the event's facts and a button into the web app. Approving from Teams is not offered: a
//! webhook cannot tell who clicked, so decisions are made in the web app.

use std::time::Duration;

use async_trait::async_trait;
use hourglass_connectors::outbound;
use hourglass_core::notify::{Message, Notifier, NotifyEvent, Severity};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::{http, slack::clip};

/// Escapes text for the Markdown subset that Adaptive Cards render in Teams (bold, italic,
/// links, lists), so that what a person typed can neither link, format nor start a list. Line
/// breaks become spaces: every value is one line.
pub fn escape(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = one_line.trim_start();
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.chars().enumerate() {
        let list_mark = i == 0 && matches!(c, '-' | '+' | '#' | '>');
        if list_mark || matches!(c, '\\' | '*' | '_' | '[' | ']' | '(' | ')' | '`' | '~') {
            out.push('\\');
        }
        out.push(c);
    }
    // `1. ` at the start would begin a numbered list.
    if let Some(dot) = out.find(". ")
        && dot > 0
        && out[..dot].chars().all(|c| c.is_ascii_digit())
    {
        out.insert(dot, '\\');
    }
    out
}

/// The Adaptive Card for an event, wrapped as the message an incoming webhook takes.
/// `public_url` is the web app, for the button when the message has no link of its own.
pub fn card(m: &Message, public_url: Option<&str>) -> Value {
    let color = match m.severity {
        Severity::Critical => "Attention",
        Severity::Warning => "Warning",
        Severity::Info => "Default",
    };
    let mut facts = Vec::new();
    let mut fact = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            facts.push(json!({"title": k, "value": clip(&escape(&v), 1000)}));
        }
    };
    fact("Who", m.principal.clone());
    fact("Access", m.access.clone());
    fact("For", m.duration.clone());
    fact("Reason", m.reason.clone());
    fact("Ticket", m.ticket.clone());
    fact(
        match m.event {
            NotifyEvent::RequestPending
            | NotifyEvent::RequestReminder
            | NotifyEvent::RequestEscalated => "Decide by",
            _ => "Ends",
        },
        m.expires_at.map(|t| t.to_string()),
    );
    fact("Request", m.request_id.clone());
    fact("Grant", m.grant_id.clone());
    for (k, v) in &m.details {
        fact(k, Some(v.clone()));
    }
    let mut body = vec![json!({
        "type": "TextBlock", "text": clip(&escape(&m.title), 500), "weight": "Bolder",
        "size": "Medium", "wrap": true, "color": color
    })];
    if !facts.is_empty() {
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    body.push(json!({
        "type": "TextBlock", "isSubtle": true, "size": "Small", "wrap": true,
        "text": format!("Hourglass · {} · {} · {}", m.event.as_str(), m.severity.as_str(), m.at)
    }));
    let (title, url) = match (&m.link, public_url) {
        (Some(link), _) => ("Review the request", Some(link.clone())),
        (None, Some(u)) if m.grant_id.is_some() => (
            "Open my access",
            Some(format!("{}/mine", u.trim_end_matches('/'))),
        ),
        (None, Some(u)) => ("Open Hourglass", Some(u.trim_end_matches('/').to_owned())),
        (None, None) => ("", None),
    };
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if let Some(url) = url {
        content["actions"] = json!([{"type": "Action.OpenUrl", "title": title, "url": url}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content,
        }]
    })
}

/// Posts Adaptive Cards to a Teams incoming webhook.
pub struct TeamsNotifier {
    name: String,
    url: SecretString,
    public_url: Option<String>,
    client: reqwest::Client,
    max_wait: Duration,
}

impl TeamsNotifier {
    /// `url` is the webhook URL (a secret: whoever has it can post to the channel).
    pub fn new(
        name: &str,
        url: SecretString,
        public_url: Option<String>,
        timeout: Duration,
        allow_private: bool,
    ) -> Result<Self, String> {
        outbound::check_url(url.expose_secret(), allow_private)
            .map_err(|_| "the Teams webhook URL is not an allowed http(s) URL".to_owned())?;
        Ok(TeamsNotifier {
            name: name.to_owned(),
            url,
            public_url,
            client: outbound::client(allow_private, timeout)?,
            max_wait: timeout,
        })
    }
}

#[async_trait]
impl Notifier for TeamsNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(
        &self,
        _id: &str,
        m: &Message,
        _earlier: &[String],
    ) -> Result<Option<String>, String> {
        let body =
            serde_json::to_vec(&card(m, self.public_url.as_deref())).map_err(|e| e.to_string())?;
        let answer = http::send(
            || {
                self.client
                    .post(self.url.expose_secret())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            },
            self.max_wait,
        )
        .await
        .map_err(|e| format!("Teams: {e}"))?;
        // A legacy connector answers 200 with "1", or 200 with the failure in words; a
        // Workflows webhook answers 202.
        let text = answer.text(200);
        if answer.status.is_success() && !text.contains("failed") {
            Ok(None)
        } else {
            Err(format!(
                "Teams answered HTTP {}: {text}",
                answer.status.as_u16()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use hourglass_core::Timestamp;

    use super::*;

    fn message() -> Message {
        Message {
            event: NotifyEvent::GrantActive,
            severity: Severity::Info,
            title: "alice now holds prod/db until 2027-01-01T00:00:00Z".into(),
            at: Timestamp::from_unix_millis(1_800_000_000_000),
            request_id: Some("req_1".into()),
            grant_id: Some("grt_1".into()),
            principal: Some("alice".into()),
            access: Some("prod/db".into()),
            reason: Some("[click](https://evil.example) **now**".into()),
            duration: None,
            ticket: None,
            expires_at: None,
            link: None,
            details: Vec::new(),
        }
    }

    #[test]
    fn a_card_escapes_what_people_typed_and_links_into_the_web_app() {
        let v = card(&message(), Some("https://hg.example.com/"));
        assert_eq!(v["type"], "message");
        let a = &v["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        let c = &a["content"];
        assert_eq!(c["type"], "AdaptiveCard");
        let facts = c["body"][1]["facts"].as_array().unwrap();
        let reason = facts.iter().find(|f| f["title"] == "Reason").unwrap();
        assert_eq!(
            reason["value"],
            r"\[click\]\(https://evil.example\) \*\*now\*\*"
        );
        assert_eq!(c["actions"][0]["url"], "https://hg.example.com/mine");
        assert_eq!(c["actions"][0]["type"], "Action.OpenUrl");
        let mut pending = message();
        pending.grant_id = None;
        pending.link = Some("https://hg.example.com/approve/req_1".into());
        let c = card(&pending, None);
        assert_eq!(
            c["attachments"][0]["content"]["actions"][0]["url"],
            "https://hg.example.com/approve/req_1"
        );
        let mut bare = message();
        bare.grant_id = None;
        assert!(
            card(&bare, None)["attachments"][0]["content"]
                .get("actions")
                .is_none()
        );
    }

    #[test]
    fn escaping_keeps_plain_text_plain_and_one_line() {
        assert_eq!(
            escape("prod/db-admin until 2027-01-01"),
            "prod/db-admin until 2027-01-01"
        );
        assert_eq!(escape("- a list\n# heading"), "\\- a list # heading");
        assert_eq!(escape("1. first"), "1\\. first");
        assert_eq!(escape("req_1"), "req\\_1");
    }
}
