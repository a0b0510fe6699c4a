//! Notifiers: Slack (incoming webhook, Block Kit), a generic signed JSON webhook, and email over
//! SMTP. Each renders the same [`Message`]; none ever includes a secret, and each returns
//! within its timeout so that a dead destination only grows its own queue.

use std::time::Duration;

use async_trait::async_trait;
use hourglass_connectors::{outbound, webhook};
use hourglass_core::notify::{Message, Notifier, NotifyEvent, Severity};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Tokio1Executor,
    message::{Mailbox, header::ContentType},
    transport::smtp::authentication::Credentials,
};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde_json::{Value, json};

use crate::slack::{clip, escape};

fn fields(m: &Message) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut put = |k: &'static str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            out.push((k, v));
        }
    };
    put("Who", m.principal.clone());
    put("Access", m.access.clone());
    put("Reason", m.reason.clone());
    put("Ticket", m.ticket.clone());
    put(
        match m.event {
            NotifyEvent::RequestPending => "Decide by",
            _ => "Ends",
        },
        m.expires_at.map(|t| t.to_string()),
    );
    put("Request", m.request_id.clone());
    put("Grant", m.grant_id.clone());
    out
}

/// The Block Kit message for an event.
pub fn slack_blocks(m: &Message) -> Value {
    let icon = match m.severity {
        Severity::Critical => ":rotating_light: ",
        Severity::Warning => ":warning: ",
        Severity::Info => "",
    };
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": clip(&format!("{icon}{}", m.title), 150), "emoji": true}
    })];
    let f: Vec<Value> = fields(m)
        .into_iter()
        .take(10)
        .map(|(k, v)| json!({"type": "mrkdwn", "text": clip(&format!("*{k}*\n{}", escape(&v)), 2000)}))
        .collect();
    if !f.is_empty() {
        blocks.push(json!({"type": "section", "fields": f}));
    }
    if !m.details.is_empty() {
        let text = m
            .details
            .iter()
            .map(|(k, v)| format!("*{}*: {}", escape(k), escape(v)))
            .collect::<Vec<_>>()
            .join("\n");
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&text, 3000)}}),
        );
    }
    if let Some(link) = &m.link {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Review request"},
                "url": link,
                "style": "primary"
            }]
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": format!("Hourglass · `{}` · {} · {}", m.event.as_str(), m.severity.as_str(), m.at)}]
    }));
    json!({"text": clip(&m.title, 3000), "blocks": blocks})
}

/// The JSON body of a generic webhook notification.
pub fn webhook_body(id: &str, m: &Message) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("id".into(), Value::String(id.to_owned()));
        o.insert("at".into(), Value::String(m.at.to_string()));
        if let Some(e) = m.expires_at {
            o.insert("expires_at".into(), Value::String(e.to_string()));
        }
        o.insert(
            "details".into(),
            Value::Object(
                m.details
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
    }
    v
}

/// Posts JSON; a 2xx is delivered. A 429 is waited out within `max_wait` (the notifier's
/// timeout), then retried later by the notification backoff.
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
    max_wait: Duration,
) -> Result<(), String> {
    let answer = crate::http::send(
        || {
            let mut req = client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            req
        },
        max_wait,
    )
    .await
    // Never the URL: a Slack webhook URL is itself a secret.
    .map_err(|e| format!("the receiver: {e}"))?;
    if answer.status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {}", answer.status))
    }
}

/// Posts Block Kit messages to a Slack incoming webhook.
pub struct SlackNotifier {
    name: String,
    url: SecretString,
    client: reqwest::Client,
    timeout: Duration,
}

impl SlackNotifier {
    /// `url` is the incoming webhook URL (a secret: whoever has it can post to the channel).
    pub fn new(
        name: &str,
        url: SecretString,
        timeout: Duration,
        allow_private: bool,
    ) -> Result<Self, String> {
        outbound::check_url(url.expose_secret(), allow_private)
            .map_err(|_| "the Slack webhook URL is not an allowed http(s) URL".to_owned())?;
        Ok(SlackNotifier {
            name: name.to_owned(),
            url,
            client: outbound::client(allow_private, timeout)?,
            timeout,
        })
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn name(&self) -> &str {
        &self.name
    }
    async fn send(
        &self,
        _id: &str,
        m: &Message,
        _earlier: &[String],
    ) -> Result<Option<String>, String> {
        let body = serde_json::to_vec(&slack_blocks(m)).map_err(|e| e.to_string())?;
        post(
            &self.client,
            self.url.expose_secret(),
            body,
            &[],
            self.timeout,
        )
        .await
        .map(|()| None)
    }
}

/// Posts signed JSON to any receiver (the signature scheme of the webhook connector).
pub struct WebhookNotifier {
    name: String,
    url: String,
    secret: SecretSlice<u8>,
    client: reqwest::Client,
    timeout: Duration,
    clock: std::sync::Arc<dyn hourglass_core::Clock>,
}

impl WebhookNotifier {
    pub fn new(
        name: &str,
        url: &str,
        secret: SecretSlice<u8>,
        timeout: Duration,
        allow_private: bool,
        clock: std::sync::Arc<dyn hourglass_core::Clock>,
    ) -> Result<Self, String> {
        outbound::check_url(url, allow_private)?;
        Ok(WebhookNotifier {
            name: name.to_owned(),
            url: url.to_owned(),
            secret,
            client: outbound::client(allow_private, timeout)?,
            timeout,
            clock,
        })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }
    async fn send(
        &self,
        id: &str,
        m: &Message,
        _earlier: &[String],
    ) -> Result<Option<String>, String> {
        let body = serde_json::to_vec(&webhook_body(id, m)).map_err(|e| e.to_string())?;
        let ts = self.clock.now().unix_millis() / 1000;
        let sig = webhook::sign(self.secret.expose_secret(), ts, &body);
        post(
            &self.client,
            &self.url,
            body,
            &[
                (webhook::TIMESTAMP_HEADER, ts.to_string()),
                (webhook::SIGNATURE_HEADER, sig),
                (webhook::IDEMPOTENCY_HEADER, id.to_owned()),
            ],
            self.timeout,
        )
        .await
        .map(|()| None)
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP (a local relay); refused with credentials.
    None,
    /// STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Settings of an email notifier.
pub struct EmailSettings {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub from: String,
    /// Addresses; `{principal}` is replaced by the principal the event is about
    /// (`{principal}@example.com` mails the requester).
    pub to: Vec<String>,
    pub timeout: Duration,
}

/// Sends plain-text mail through an SMTP server.
pub struct EmailNotifier {
    name: String,
    from: Mailbox,
    to: Vec<String>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl EmailNotifier {
    pub fn new(s: EmailSettings) -> Result<Self, String> {
        let from: Mailbox = s
            .from
            .parse()
            .map_err(|e| format!("from {:?}: {e}", s.from))?;
        if s.to.is_empty() {
            return Err("to: give at least one address".into());
        }
        for t in &s.to {
            let probe = t.replace("{principal}", "someone");
            probe
                .parse::<Mailbox>()
                .map_err(|e| format!("to {t:?}: {e}"))?;
        }
        let builder = match s.tls {
            SmtpTls::None => {
                if s.username.is_some() {
                    return Err(
                        "tls = \"none\" would send the SMTP password in the clear; use starttls or tls"
                            .into(),
                    );
                }
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            }
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
                .map_err(|e| format!("host {:?}: {e}", s.host))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)
                .map_err(|e| format!("host {:?}: {e}", s.host))?,
        };
        let mut builder = builder.port(s.port).timeout(Some(s.timeout));
        match (s.username, s.password) {
            (Some(u), Some(p)) => {
                builder = builder.credentials(Credentials::new(u, p.expose_secret().to_owned()));
            }
            (None, None) => {}
            _ => return Err("give both username and a password, or neither".into()),
        }
        Ok(EmailNotifier {
            name: s.name,
            from,
            to: s.to,
            transport: builder.build(),
        })
    }

    /// The recipients of `m`: each address, with `{principal}` filled in (skipped when the
    /// event is about nobody, or the result is not an address).
    fn recipients(&self, m: &Message) -> Vec<Mailbox> {
        self.to
            .iter()
            .filter_map(|t| {
                if t.contains("{principal}") {
                    let p = m.principal.as_deref()?;
                    t.replace("{principal}", p).parse().ok()
                } else {
                    t.parse().ok()
                }
            })
            .collect()
    }
}

/// The plain-text body of a notification email.
pub fn email_text(m: &Message) -> String {
    let mut body = format!("{}\n\n", m.title);
    for (k, v) in fields(m) {
        body.push_str(&format!("{k}: {v}\n"));
    }
    for (k, v) in &m.details {
        body.push_str(&format!("{k}: {v}\n"));
    }
    if let Some(link) = &m.link {
        body.push_str(&format!(
            "\nReview the request (you will be asked to sign in and confirm):\n{link}\n"
        ));
    }
    body.push_str(&format!(
        "\n-- \nHourglass · {} · {} · {}\n",
        m.event.as_str(),
        m.severity.as_str(),
        m.at
    ));
    body
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn name(&self) -> &str {
        &self.name
    }
    async fn send(
        &self,
        id: &str,
        m: &Message,
        _earlier: &[String],
    ) -> Result<Option<String>, String> {
        let to = self.recipients(m);
        if to.is_empty() {
            return Ok(None);
        }
        let prefix = match m.severity {
            Severity::Critical => "[Hourglass CRITICAL] ",
            _ => "[Hourglass] ",
        };
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(clip(&format!("{prefix}{}", m.title), 200))
            .message_id(Some(format!("<{id}@hourglass>")))
            .header(ContentType::TEXT_PLAIN);
        for addr in to {
            b = b.to(addr);
        }
        let mail = b.body(email_text(m)).map_err(|e| e.to_string())?;
        self.transport
            .send(mail)
            .await
            .map(|_| None)
            .map_err(|e| format!("SMTP: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hourglass_core::Timestamp;

    fn message() -> Message {
        Message {
            event: NotifyEvent::RequestPending,
            severity: Severity::Info,
            title: "alice asks for prod/db <admin> for 30m".into(),
            at: Timestamp::from_unix_millis(1_800_000_000_000),
            request_id: Some("req_1".into()),
            grant_id: None,
            principal: Some("alice".into()),
            access: Some("prod/db-admin".into()),
            reason: Some("fix <INC-1> & more".into()),
            duration: Some("30m".into()),
            ticket: Some("HD-1".into()),
            expires_at: None,
            link: Some("https://hg.example.com/approve/req_1".into()),
            details: Vec::new(),
        }
    }

    #[test]
    fn slack_messages_are_block_kit_with_escaped_text_and_a_review_button() {
        let v = slack_blocks(&message());
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        let section = blocks.iter().find(|b| b["type"] == "section").unwrap();
        let reason = section["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["text"].as_str().unwrap().starts_with("*Reason*"))
            .unwrap();
        assert_eq!(reason["text"], "*Reason*\nfix &lt;INC-1&gt; &amp; more");
        let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
        assert_eq!(
            actions["elements"][0]["url"],
            "https://hg.example.com/approve/req_1"
        );
        assert!(v["text"].as_str().unwrap().contains("alice asks"));
    }

    #[test]
    fn email_recipients_fill_in_the_principal() {
        let n = EmailNotifier::new(EmailSettings {
            name: "mail".into(),
            host: "127.0.0.1".into(),
            port: 2525,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "Hourglass <hourglass@example.com>".into(),
            to: vec![
                "{principal}@example.com".into(),
                "secops@example.com".into(),
            ],
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        let to: Vec<String> = n
            .recipients(&message())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(to, ["alice@example.com", "secops@example.com"]);
        let mut nobody = message();
        nobody.principal = None;
        assert_eq!(n.recipients(&nobody).len(), 1);
        assert!(email_text(&message()).contains("/approve/req_1"));
    }

    #[test]
    fn plain_smtp_with_a_password_is_refused() {
        let err = EmailNotifier::new(EmailSettings {
            name: "mail".into(),
            host: "mail.example.com".into(),
            port: 25,
            tls: SmtpTls::None,
            username: Some("u".into()),
            password: Some(SecretString::from("p")),
            from: "hourglass@example.com".into(),
            to: vec!["a@example.com".into()],
            timeout: Duration::from_secs(1),
        })
        .err()
        .unwrap();
        assert!(err.contains("in the clear"));
    }
}
