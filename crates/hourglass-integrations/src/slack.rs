//! Slack as a channel: the Web API calls Hourglass makes (as the app's bot), the requests Slack
//! makes to Hourglass (button clicks, modal submissions, the `/hourglass` command, options
//! loaded as someone types), how those are verified, and the Block Kit that both carry.
//!
//! Slack signs every request with the app's signing secret: `X-Slack-Signature:
//! v0=<hex HMAC-SHA256(secret, "v0:<X-Slack-Request-Timestamp>:<body>")>`. A request is
//! accepted only when the timestamp is within five minutes of our clock and the signature
//! verifies (compared in constant time), before anything in the body is read.
//!
//! Nothing here decides anything: the server maps the Slack user to a principal and hands the
//! decision to the engine, which judges it as it judges the API's.

use std::{collections::BTreeMap, time::Duration};

use aws_lc_rs::hmac;
use hourglass_connectors::outbound;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

pub const SIGNATURE_HEADER: &str = "x-slack-signature";
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Set by Slack on a delivery it repeats because the first was not acknowledged in time.
pub const RETRY_HEADER: &str = "x-slack-retry-num";
/// How far a request's timestamp may be from our clock.
pub const WINDOW_SECS: i64 = 300;

/// Action ids of the buttons Hourglass puts in messages.
pub const APPROVE: &str = "hourglass.approve";
pub const DENY: &str = "hourglass.deny";
pub const EXTEND: &str = "hourglass.extend";
pub const RELEASE: &str = "hourglass.release";
/// Callback ids of the modals.
pub const DENY_MODAL: &str = "hourglass.deny";
pub const REQUEST_MODAL: &str = "hourglass.request";
pub const EXTEND_MODAL: &str = "hourglass.extend_by";

/// Why a request from Slack is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Unsigned,
    Stale,
    BadSignature,
    BadPayload(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Unsigned => f.write_str(
                "not signed (X-Slack-Signature and X-Slack-Request-Timestamp are required)",
            ),
            Refused::Stale => f.write_str("the timestamp is more than five minutes from now"),
            Refused::BadSignature => f.write_str("the signature does not verify"),
            Refused::BadPayload(why) => write!(f, "the payload is not understood: {why}"),
        }
    }
}

impl std::error::Error for Refused {}

/// `v0=<hex HMAC-SHA256(secret, "v0:<ts>:<body>")>`, as Slack signs a request (for tests and
/// for anyone checking a capture).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(b"v0:");
    ctx.update(timestamp.as_bytes());
    ctx.update(b":");
    ctx.update(body);
    format!("v0={}", hex::encode(ctx.sign().as_ref()))
}

/// Checks a request's signature headers against the body, at `now` (Unix seconds).
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), Refused> {
    let (Some(ts), Some(sig)) = (timestamp, signature) else {
        return Err(Refused::Unsigned);
    };
    let at: i64 = ts.trim().parse().map_err(|_| Refused::Unsigned)?;
    if now.abs_diff(at) > WINDOW_SECS.unsigned_abs() {
        return Err(Refused::Stale);
    }
    let given = sig
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(Refused::BadSignature)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut signed = Vec::with_capacity(body.len() + ts.len() + 4);
    signed.extend_from_slice(b"v0:");
    signed.extend_from_slice(ts.as_bytes());
    signed.push(b':');
    signed.extend_from_slice(body);
    // `hmac::verify` compares in constant time.
    hmac::verify(&key, &signed, &given).map_err(|_| Refused::BadSignature)
}

/// Who clicked or typed, as Slack names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackUser {
    pub id: String,
    pub team: Option<String>,
}

/// A request Slack makes when someone uses the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// A button in a message.
    Action {
        user: SlackUser,
        action_id: String,
        value: String,
        /// Where the message is, to update it in place.
        channel: Option<String>,
        ts: Option<String>,
        trigger_id: Option<String>,
        /// The click's own time (`action_ts`): the same on a repeat of the same click.
        once: Option<String>,
    },
    /// A modal was submitted.
    Submit {
        user: SlackUser,
        callback_id: String,
        private_metadata: String,
        /// `action_id` → the value typed or chosen (a select's option value).
        values: BTreeMap<String, String>,
        /// The modal's id and a digest of what was submitted: the same on a repeat of the same
        /// submission, different when the person corrected the form.
        once: Option<String>,
    },
    /// An external select asks for options (`block_suggestion`).
    Suggest {
        user: SlackUser,
        action_id: String,
        query: String,
    },
    /// Something Hourglass does not handle (a modal closed, a shortcut it did not define).
    Other(String),
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn text(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn user_of(p: &Value) -> Result<SlackUser, Refused> {
    Ok(SlackUser {
        id: text(p, "/user/id").ok_or_else(|| Refused::BadPayload("no user.id".into()))?,
        team: text(p, "/team/id").or_else(|| text(p, "/user/team_id")),
    })
}

/// Reads an interactivity request (`payload=<JSON>`, form-encoded).
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, Refused> {
    let raw =
        form_field(body, "payload").ok_or_else(|| Refused::BadPayload("no payload".into()))?;
    let p: Value =
        serde_json::from_str(&raw).map_err(|e| Refused::BadPayload(format!("not JSON: {e}")))?;
    let kind = text(&p, "/type").unwrap_or_default();
    match kind.as_str() {
        "block_actions" => {
            let action = p
                .pointer("/actions/0")
                .ok_or_else(|| Refused::BadPayload("no action".into()))?;
            Ok(Interaction::Action {
                user: user_of(&p)?,
                action_id: text(action, "/action_id").unwrap_or_default(),
                value: text(action, "/value")
                    .or_else(|| text(action, "/selected_option/value"))
                    .unwrap_or_default(),
                channel: text(&p, "/channel/id").or_else(|| text(&p, "/container/channel_id")),
                ts: text(&p, "/message/ts").or_else(|| text(&p, "/container/message_ts")),
                trigger_id: text(&p, "/trigger_id"),
                once: text(action, "/action_ts"),
            })
        }
        "view_submission" => {
            let mut values = BTreeMap::new();
            if let Some(blocks) = p.pointer("/view/state/values").and_then(Value::as_object) {
                for actions in blocks.values().filter_map(Value::as_object) {
                    for (action_id, v) in actions {
                        let value = text(v, "/value")
                            .or_else(|| text(v, "/selected_option/value"))
                            .unwrap_or_default();
                        values.insert(action_id.clone(), value);
                    }
                }
            }
            Ok(Interaction::Submit {
                user: user_of(&p)?,
                callback_id: text(&p, "/view/callback_id").unwrap_or_default(),
                private_metadata: text(&p, "/view/private_metadata").unwrap_or_default(),
                once: text(&p, "/view/id").map(|id| {
                    let typed = serde_json::to_vec(&values).unwrap_or_default();
                    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &typed);
                    format!("{id}:{}", hex::encode(&d.as_ref()[..16]))
                }),
                values,
            })
        }
        "block_suggestion" => Ok(Interaction::Suggest {
            user: user_of(&p)?,
            action_id: text(&p, "/action_id").unwrap_or_default(),
            query: text(&p, "/value").unwrap_or_default(),
        }),
        other => Ok(Interaction::Other(other.to_owned())),
    }
}

/// A slash command (`/hourglass …`), form-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub user: SlackUser,
    pub command: String,
    pub text: String,
    pub trigger_id: String,
    pub channel: Option<String>,
}

pub fn parse_command(body: &[u8]) -> Result<Command, Refused> {
    let need = |k: &str| {
        form_field(body, k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Refused::BadPayload(format!("no {k}")))
    };
    Ok(Command {
        user: SlackUser {
            id: need("user_id")?,
            team: form_field(body, "team_id"),
        },
        command: need("command")?,
        text: form_field(body, "text").unwrap_or_default(),
        trigger_id: need("trigger_id")?,
        channel: form_field(body, "channel_id"),
    })
}

/// A Web API call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlackError {
    /// Slack answered `ok: false` with this error code (`channel_not_found`, `invalid_auth`).
    Api(String),
    /// Still rate-limited after waiting as Slack asked, or the wait would be too long.
    RateLimited,
    /// Not reached, or an answer that is not Slack's.
    Transport(String),
}

impl std::fmt::Display for SlackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlackError::Api(code) => write!(f, "Slack refused the call: {code}"),
            SlackError::RateLimited => f.write_str("Slack is rate-limiting this app"),
            SlackError::Transport(why) => write!(f, "Slack could not be reached: {why}"),
        }
    }
}

/// The Slack Web API, as the app's bot (`xoxb-…` token).
pub struct SlackApi {
    base: String,
    token: SecretString,
    client: reqwest::Client,
    /// The longest `Retry-After` waited for, in all, before a call gives up.
    max_wait: Duration,
}

impl SlackApi {
    /// `base` is `https://slack.com/api` (a local server in tests, with `allow_private`).
    pub fn new(
        base: &str,
        token: SecretString,
        timeout: Duration,
        max_wait: Duration,
        allow_private: bool,
    ) -> Result<Self, String> {
        outbound::check_url(base, allow_private)?;
        Ok(SlackApi {
            base: base.trim_end_matches('/').to_owned(),
            token,
            client: outbound::client(allow_private, timeout)?,
            max_wait,
        })
    }

    /// Calls `method` with a JSON body; a 429 is retried after its `Retry-After` while the
    /// waits add up to at most `max_wait`.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let url = format!("{}/{method}", self.base);
        let mut waited = Duration::ZERO;
        loop {
            let req = self
                .client
                .post(&url)
                .bearer_auth(self.token.expose_secret());
            // Read methods take form fields; write methods take JSON.
            let req = if method.starts_with("users.") {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in body.as_object().into_iter().flatten() {
                    if let Some(v) = v.as_str() {
                        form.append_pair(k, v);
                    }
                }
                req.header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.finish())
            } else {
                req.json(body)
            };
            let resp = req
                .send()
                .await
                .map_err(|e| SlackError::Transport(e.without_url().to_string()))?;
            if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1);
                let wait = Duration::from_secs(after);
                waited = waited.saturating_add(wait);
                if waited > self.max_wait {
                    return Err(SlackError::RateLimited);
                }
                tracing::debug!(method, retry_after = after, "Slack rate limit; waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            let status = resp.status();
            let v: Value = resp.json().await.map_err(|_| {
                SlackError::Transport(format!("HTTP {status} without a Slack answer"))
            })?;
            if v.get("ok").and_then(Value::as_bool) == Some(true) {
                return Ok(v);
            }
            return Err(SlackError::Api(
                text(&v, "/error").unwrap_or_else(|| format!("HTTP {status}")),
            ));
        }
    }

    /// The email on a Slack user's profile (needs the `users:read.email` scope).
    pub async fn email_of(&self, user: &str) -> Result<Option<String>, SlackError> {
        let v = self.call("users.info", &json!({"user": user})).await?;
        Ok(text(&v, "/user/profile/email"))
    }

    /// The Slack user with this email, if any.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<String>, SlackError> {
        match self
            .call("users.lookupByEmail", &json!({"email": email}))
            .await
        {
            Ok(v) => Ok(text(&v, "/user/id")),
            Err(SlackError::Api(code)) if code == "users_not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Posts a message; answers where it is (`channel`, `ts`).
    pub async fn post(&self, channel: &str, msg: &Value) -> Result<(String, String), SlackError> {
        let mut body = msg.clone();
        body["channel"] = json!(channel);
        let v = self.call("chat.postMessage", &body).await?;
        match (text(&v, "/channel"), text(&v, "/ts")) {
            (Some(c), Some(t)) => Ok((c, t)),
            _ => Err(SlackError::Transport(
                "no channel or ts in the answer".into(),
            )),
        }
    }

    /// Replies in a message's thread; with `broadcast`, the reply shows in the channel too.
    pub async fn reply(
        &self,
        channel: &str,
        thread_ts: &str,
        text: &str,
        broadcast: bool,
    ) -> Result<(), SlackError> {
        self.call(
            "chat.postMessage",
            &json!({"channel": channel, "thread_ts": thread_ts, "text": text,
                    "reply_broadcast": broadcast}),
        )
        .await
        .map(drop)
    }

    /// Replaces a message for everyone.
    pub async fn update(&self, channel: &str, ts: &str, msg: &Value) -> Result<(), SlackError> {
        let mut body = msg.clone();
        body["channel"] = json!(channel);
        body["ts"] = json!(ts);
        self.call("chat.update", &body).await.map(drop)
    }

    /// A message only `user` sees, in `channel`.
    pub async fn ephemeral(&self, channel: &str, user: &str, text: &str) -> Result<(), SlackError> {
        self.call(
            "chat.postEphemeral",
            &json!({"channel": channel, "user": user, "text": text}),
        )
        .await
        .map(drop)
    }

    /// Opens a modal (within three seconds of the click that gave `trigger_id`).
    pub async fn open_view(&self, trigger_id: &str, view: &Value) -> Result<(), SlackError> {
        self.call(
            "views.open",
            &json!({"trigger_id": trigger_id, "view": view}),
        )
        .await
        .map(drop)
    }
}

/// Escapes text for Slack `mrkdwn` (`&`, `<`, `>`), so that what a person typed can neither
/// link nor mention.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `s`, cut to `max` characters with an ellipsis.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn plain(s: &str, max: usize) -> Value {
    json!({"type": "plain_text", "text": clip(s, max), "emoji": false})
}

/// What a request's message shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCard {
    pub request_id: String,
    pub requester: String,
    /// Agents asking for the requester (`support-bot for alice`).
    pub actors: Vec<String>,
    pub access: String,
    pub duration: String,
    pub reason: String,
    pub ticket: Option<String>,
    /// `pending`, `approved`, `denied`, `cancelled`, `expired`, `fulfilled`, `failed`.
    pub state: String,
    /// Who decided, and what they said.
    pub decided_by: Option<String>,
    pub note: Option<String>,
    /// The request in the web app.
    pub link: Option<String>,
    /// Whether approving needs a second factor, so the buttons cannot approve.
    pub step_up: bool,
}

/// The message for a request: with Approve and Deny while it is pending (or a link to the web
/// app's step-up approval where approving needs a second factor), and who decided after.
pub fn request_message(c: &RequestCard) -> Value {
    let who = if c.actors.is_empty() {
        c.requester.clone()
    } else {
        format!("{} for {}", c.actors.join(" for "), c.requester)
    };
    let headline = match c.state.as_str() {
        "pending" => format!("{who} asks for {} for {}", c.access, c.duration),
        state => format!("{who}'s request for {} is {state}", c.access),
    };
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Who*\n{}", escape(&who))}),
        json!({"type": "mrkdwn", "text": format!("*Access*\n{}", escape(&c.access))}),
        json!({"type": "mrkdwn", "text": format!("*For*\n{}", escape(&c.duration))}),
        json!({"type": "mrkdwn", "text": clip(&format!("*Reason*\n{}", escape(&c.reason)), 2000)}),
    ];
    if let Some(t) = &c.ticket {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Ticket*\n{}", escape(t))}));
    }
    fields.push(json!({"type": "mrkdwn", "text": format!("*Request*\n{}", escape(&c.request_id))}));
    let mut blocks = vec![
        json!({"type": "header", "text": plain(&headline, 150)}),
        json!({"type": "section", "fields": fields}),
    ];
    if c.state == "pending" {
        let mut elements = Vec::new();
        if c.step_up {
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text":
                ":lock: Approving this needs a sign-in with a second factor: approve it in Hourglass."}}));
        } else {
            elements.push(
                json!({"type": "button", "action_id": APPROVE, "style": "primary",
                "text": plain("Approve", 75), "value": c.request_id}),
            );
            elements.push(
                json!({"type": "button", "action_id": DENY, "style": "danger",
                "text": plain("Deny", 75), "value": c.request_id}),
            );
        }
        if let Some(link) = &c.link {
            elements.push(json!({"type": "button", "action_id": "hourglass.open",
                "text": plain(if c.step_up { "Approve in Hourglass" } else { "Open in Hourglass" }, 75),
                "url": link}));
        }
        if !elements.is_empty() {
            blocks.push(json!({"type": "actions", "block_id": "decide", "elements": elements}));
        }
    }
    let mut status = match (&c.decided_by, c.state.as_str()) {
        (Some(by), "approved" | "fulfilled") => {
            format!(":white_check_mark: Approved by {}", escape(by))
        }
        (Some(by), "denied") => format!(":no_entry: Denied by {}", escape(by)),
        (Some(by), "cancelled") => format!("Cancelled by {}", escape(by)),
        (Some(by), "pending") => format!("Approved by {}; more approvals are needed", escape(by)),
        (_, "pending") => "Waiting for a decision".to_owned(),
        (_, "expired") => "Expired: nobody decided in time".to_owned(),
        (_, state) => format!("Now {state}"),
    };
    if let Some(n) = c.note.as_deref().filter(|n| !n.is_empty()) {
        status.push_str(&format!(": {}", escape(n)));
    }
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(&status, 2000)}]}),
    );
    json!({"text": clip(&headline, 3000), "blocks": blocks})
}

/// A message to a grant's holder, with Extend and Release buttons while it is active.
pub fn grant_message(title: &str, grant_id: &str, link: Option<&str>, actions: bool) -> Value {
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&escape(title), 3000)}}),
    ];
    let mut elements = Vec::new();
    if actions {
        elements.push(json!({"type": "button", "action_id": EXTEND, "text": plain("Extend", 75), "value": grant_id}));
        elements.push(json!({"type": "button", "action_id": RELEASE, "style": "danger", "text": plain("Release", 75), "value": grant_id}));
    }
    if let Some(l) = link {
        elements.push(json!({"type": "button", "action_id": "hourglass.open", "text": plain("Open in Hourglass", 75), "url": l}));
    }
    if !elements.is_empty() {
        blocks.push(json!({"type": "actions", "block_id": "grant", "elements": elements}));
    }
    json!({"text": clip(title, 3000), "blocks": blocks})
}

/// The modal that asks a denier for the reason. `metadata` comes back on submission.
pub fn deny_modal(request_id: &str, metadata: &str) -> Value {
    json!({
        "type": "modal",
        "callback_id": DENY_MODAL,
        "private_metadata": metadata,
        "title": plain("Deny request", 24),
        "submit": plain("Deny", 24),
        "close": plain("Cancel", 24),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("Deny `{}`?", escape(request_id))}},
            {"type": "input", "block_id": "reason", "label": plain("Reason", 48),
             "element": {"type": "plain_text_input", "action_id": "reason", "multiline": true, "max_length": 1000}}
        ]
    })
}

/// The request modal of `/hourglass`: access (loaded as the person types, from their own
/// catalogue), duration, reason and ticket.
pub fn request_modal(initial: Option<&str>) -> Value {
    let mut access = json!({"type": "external_select", "action_id": "access", "min_query_length": 0,
        "placeholder": plain("Entitlement or profile", 150)});
    if let Some(a) = initial.filter(|a| !a.is_empty()) {
        access["initial_option"] = json!({"text": plain(a, 75), "value": a});
    }
    json!({
        "type": "modal",
        "callback_id": REQUEST_MODAL,
        "title": plain("Ask for access", 24),
        "submit": plain("Ask", 24),
        "close": plain("Cancel", 24),
        "blocks": [
            {"type": "input", "block_id": "access", "label": plain("Access", 48), "element": access},
            {"type": "input", "block_id": "duration", "label": plain("For how long", 48),
             "element": {"type": "plain_text_input", "action_id": "duration", "placeholder": plain("30m, 1h, 4h", 150)}},
            {"type": "input", "block_id": "reason", "label": plain("Reason", 48),
             "element": {"type": "plain_text_input", "action_id": "reason", "multiline": true, "max_length": 1000}},
            {"type": "input", "block_id": "ticket", "optional": true, "label": plain("Ticket", 48),
             "element": {"type": "plain_text_input", "action_id": "ticket", "max_length": 128}}
        ]
    })
}

/// The modal that asks how much longer a grant should run.
pub fn extend_modal(grant_id: &str) -> Value {
    json!({
        "type": "modal",
        "callback_id": EXTEND_MODAL,
        "private_metadata": grant_id,
        "title": plain("Extend access", 24),
        "submit": plain("Extend", 24),
        "close": plain("Cancel", 24),
        "blocks": [
            {"type": "input", "block_id": "by", "label": plain("By", 48),
             "element": {"type": "plain_text_input", "action_id": "by", "placeholder": plain("30m", 150)}},
            {"type": "input", "block_id": "reason", "label": plain("Reason", 48),
             "element": {"type": "plain_text_input", "action_id": "reason", "max_length": 1000}}
        ]
    })
}

/// Options for an external select: `(value, label)` pairs, at most 100.
pub fn options(items: &[(String, String)]) -> Value {
    let opts: Vec<Value> = items
        .iter()
        .take(100)
        .map(|(v, l)| json!({"text": plain(l, 75), "value": clip(v, 150)}))
        .collect();
    json!({"options": opts})
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";

    #[test]
    fn slacks_documented_example_signs_to_its_documented_signature() {
        // The example in Slack's "Verifying requests from Slack".
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sign(SECRET, "1531420618", body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
        let sig = sign(SECRET, "1531420618", body);
        assert_eq!(
            verify(
                SECRET,
                Some("1531420618"),
                Some(&sig),
                body,
                1_531_420_618 + 60
            ),
            Ok(())
        );
    }

    #[test]
    fn a_request_verifies_only_fresh_whole_and_signed_with_the_secret() {
        let body = b"payload=%7B%7D";
        let ts = "1700000000";
        let now = 1_700_000_000;
        let sig = sign(SECRET, ts, body);
        assert_eq!(verify(SECRET, Some(ts), Some(&sig), body, now), Ok(()));
        assert_eq!(
            verify(SECRET, Some(ts), Some(&sig), body, now + WINDOW_SECS + 1),
            Err(Refused::Stale)
        );
        assert_eq!(
            verify(SECRET, Some(ts), Some(&sig), body, now - WINDOW_SECS - 1),
            Err(Refused::Stale)
        );
        assert_eq!(
            verify(SECRET, Some(ts), Some(&sig), b"payload=%7B%20%7D", now),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify(b"another secret", Some(ts), Some(&sig), body, now),
            Err(Refused::BadSignature)
        );
        // The signature of another moment does not move to this one.
        assert_eq!(
            verify(SECRET, Some("1700000001"), Some(&sig), body, now),
            Err(Refused::BadSignature)
        );
        // A timestamp at the end of the range is stale, not an overflow.
        assert_eq!(
            verify(SECRET, Some(&i64::MIN.to_string()), Some(&sig), body, now),
            Err(Refused::Stale)
        );
        assert_eq!(
            verify(SECRET, None, Some(&sig), body, now),
            Err(Refused::Unsigned)
        );
        assert_eq!(
            verify(SECRET, Some(ts), None, body, now),
            Err(Refused::Unsigned)
        );
        assert_eq!(
            verify(SECRET, Some(ts), Some("v1=00"), body, now),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify(SECRET, Some(ts), Some("v0=zz"), body, now),
            Err(Refused::BadSignature)
        );
    }

    fn form(payload: &Value) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    #[test]
    fn interactions_are_read_as_slack_sends_them() {
        let click = json!({
            "type": "block_actions",
            "user": {"id": "U1", "username": "bob", "team_id": "T1"},
            "team": {"id": "T1"},
            "trigger_id": "tr-1",
            "container": {"type": "message", "message_ts": "171.1", "channel_id": "C1"},
            "channel": {"id": "C1"},
            "message": {"ts": "171.1"},
            "actions": [{"action_id": APPROVE, "block_id": "decide", "value": "req_1", "type": "button", "action_ts": "171.2"}]
        });
        assert_eq!(
            parse_interaction(&form(&click)).unwrap(),
            Interaction::Action {
                user: SlackUser {
                    id: "U1".into(),
                    team: Some("T1".into())
                },
                action_id: APPROVE.into(),
                value: "req_1".into(),
                channel: Some("C1".into()),
                ts: Some("171.1".into()),
                trigger_id: Some("tr-1".into()),
                once: Some("171.2".into()),
            }
        );
        let submit = json!({
            "type": "view_submission",
            "user": {"id": "U1"},
            "team": {"id": "T1"},
            "view": {"callback_id": DENY_MODAL, "private_metadata": "m",
                "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": "no"}},
                                     "access": {"access": {"type": "external_select", "selected_option": {"value": "demo/x"}}}}}}
        });
        let Interaction::Submit {
            values,
            callback_id,
            ..
        } = parse_interaction(&form(&submit)).unwrap()
        else {
            panic!("not a submission")
        };
        assert_eq!(callback_id, DENY_MODAL);
        assert_eq!(values["reason"], "no");
        assert_eq!(values["access"], "demo/x");
        assert!(matches!(
            parse_interaction(b"payload=not-json"),
            Err(Refused::BadPayload(_))
        ));
        assert!(matches!(
            parse_interaction(b"x=1"),
            Err(Refused::BadPayload(_))
        ));
        assert!(matches!(
            parse_interaction(&form(&json!({"type": "block_actions", "actions": []}))),
            Err(Refused::BadPayload(_))
        ));
    }

    #[test]
    fn what_people_typed_cannot_link_or_mention_in_a_message() {
        let card = RequestCard {
            request_id: "req_1".into(),
            requester: "alice".into(),
            access: "demo/x".into(),
            duration: "1h".into(),
            reason: "<!channel> see <https://evil.example|this> & that".into(),
            state: "pending".into(),
            ..RequestCard::default()
        };
        let text = request_message(&card).to_string();
        assert!(!text.contains("<!channel>"));
        assert!(text.contains("&lt;!channel&gt;"));
        assert!(text.contains("&amp; that"));
        assert!(text.contains(APPROVE));
        let locked = request_message(&RequestCard {
            step_up: true,
            link: Some("https://hg.example/approve/req_1".into()),
            ..card
        });
        assert!(
            !locked.to_string().contains(APPROVE),
            "a step-up request has no Approve button"
        );
        assert!(locked.to_string().contains("second factor"));
    }
}
