//! Slack as a channel people ask, approve and extend in (`[[chat]] kind = "slack"`).
//!
//! Outbound, a [`SlackChat`] is a notifier: a pending request is posted to its routed channel
//! with Approve and Deny; when the request is decided (here, in the web app or the CLI), the
//! same message is updated in place for everyone, from the receipt its first post left; the
//! requester hears what happens next in a direct message (active, with a link to reveal the
//! credential in the web app, never the credential; expiring, with Extend and Release; revoked).
//!
//! Inbound, every request Slack makes is verified first (signature, five-minute window), then
//! acknowledged at once, and the work is done after: the Slack user is mapped to a principal
//! (the configured ids, then the profile's email), and the engine judges the click exactly as it
//! judges the API. A click carries no second factor: where policy wants one to approve, the
//! engine says so and the clicker is sent to the web app's step-up approval. A repeat of the
//! same click or submission (Slack's retries, a replay inside the window) changes nothing twice.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use hourglass_core::{
    Clock, ErrorCode,
    engine::{Caller, Engine, NewRequest},
    id::PrincipalId,
    notify::{Message, Notifier, NotifyEvent, access_matches},
    request::{RequestState, Verdict},
};
use hourglass_integrations::slack::{
    self, Interaction, RequestCard, SlackApi, SlackError, SlackUser,
};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::config::{ChatConfig, ChatRoute};

/// How long a Slack user's principal is remembered.
const KNOWN_FOR_SECS: i64 = 600;
/// The most approvers a pending request is sent to directly.
const MAX_APPROVERS_TOLD: usize = 25;

/// One Slack app.
pub struct SlackChat {
    pub name: String,
    api: SlackApi,
    secret: SecretSlice<u8>,
    team: Option<String>,
    users: BTreeMap<String, PrincipalId>,
    email_domain: Option<String>,
    channel: Option<String>,
    routes: Vec<ChatRoute>,
    alerts: Option<String>,
    escalations: Option<String>,
    notify_approvers: bool,
    notify_requester: bool,
    /// The engine, to find a request's approvers (weak: the engine holds this app).
    engine: std::sync::OnceLock<std::sync::Weak<Engine>>,
    public_url: Option<String>,
    clock: Arc<dyn Clock>,
    /// Clicks and submissions already taken (`action_ts`, view id), until they leave the window.
    seen: Mutex<HashMap<String, i64>>,
    /// Slack user → principal, as found, with when it was found.
    known: Mutex<HashMap<String, (PrincipalId, i64)>>,
}

fn now_secs(clock: &dyn Clock) -> i64 {
    clock.now().unix_millis() / 1000
}

impl SlackChat {
    /// Builds the app from its configuration; every secret is read now.
    pub fn new(
        c: &ChatConfig,
        public_url: Option<String>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let token = c.bot_token.read().map_err(|e| format!("bot_token: {e}"))?;
        if !token.starts_with("xoxb-") {
            return Err("bot_token: a bot token starts with xoxb-".into());
        }
        let secret = c
            .signing_secret
            .read()
            .map_err(|e| format!("signing_secret: {e}"))?;
        let mut users = BTreeMap::new();
        for (slack_id, principal) in &c.users {
            let p = PrincipalId::new(principal.clone())
                .map_err(|e| format!("users.{slack_id}: {e}"))?;
            users.insert(slack_id.clone(), p);
        }
        if c.channel.is_none() && c.routes.is_empty() {
            return Err("channel: name a channel for pending requests, or routes".into());
        }
        let timeout = Duration::from_secs(c.timeout.as_secs());
        let api = SlackApi::new(
            &c.api_url,
            SecretString::from(token),
            timeout,
            Duration::from_secs(c.max_retry_wait.as_secs()),
            c.allow_private,
        )
        .map_err(|e| format!("api_url: {e}"))?;
        Ok(SlackChat {
            name: c.name.clone(),
            api,
            secret: SecretSlice::from(secret.into_bytes()),
            team: c.team_id.clone(),
            users,
            email_domain: c.email_domain.clone(),
            channel: c.channel.clone(),
            routes: c.routes.clone(),
            alerts: c.alerts_channel.clone().or_else(|| c.channel.clone()),
            escalations: c.escalation_channel.clone(),
            notify_approvers: c.notify_approvers,
            engine: std::sync::OnceLock::new(),
            notify_requester: c.notify_requester,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            clock,
            seen: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
        })
    }

    /// Gives the app the engine it posts for (once, at start).
    pub fn attach(&self, engine: &Arc<Engine>) {
        let _ = self.engine.set(Arc::downgrade(engine));
    }

    /// Sends a pending request to each of its approvers directly, with the buttons (or the
    /// step-up link, for one who needs a second factor first). Answers where the messages are.
    /// A failure is logged and skips that person: the channel has the request anyway.
    async fn tell_approvers(&self, m: &Message) -> Vec<String> {
        let (Some(engine), Some(id)) = (
            self.engine.get().and_then(std::sync::Weak::upgrade),
            m.request_id.as_deref(),
        ) else {
            return Vec::new();
        };
        let approvers = match engine.approvers_of(id, MAX_APPROVERS_TOLD).await {
            Ok(a) => a,
            Err(e) => {
                warn!(chat = %self.name, request_id = id, error = %e, "the approvers could not be found");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (approver, step_up) in approvers {
            let user = match self.slack_user_of(approver.as_str()).await {
                Ok(Some(u)) => u,
                Ok(None) => continue,
                Err(e) => {
                    warn!(chat = %self.name, %approver, error = %e, "an approver's Slack user could not be found");
                    continue;
                }
            };
            let mut card = self.card(m, "pending");
            card.step_up = step_up;
            match self.api.post(&user, &slack::request_message(&card)).await {
                Ok((c, ts)) => out.push(format!("{c} {ts}")),
                Err(e) => {
                    warn!(chat = %self.name, %approver, error = %e, "a request could not be sent to an approver");
                }
            }
        }
        out
    }

    /// The events this app is routed.
    pub fn events() -> Vec<NotifyEvent> {
        NotifyEvent::ALL.to_vec()
    }

    /// Checks a request's signature; nothing in the body is read before this.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), slack::Refused> {
        slack::verify(
            self.secret.expose_secret(),
            timestamp,
            signature,
            body,
            now_secs(&*self.clock),
        )
    }

    /// Whether the workspace is ours (any, when none is configured).
    pub fn our_team(&self, user: &SlackUser) -> bool {
        match &self.team {
            None => true,
            Some(t) => user.team.as_deref() == Some(t.as_str()),
        }
    }

    /// True the first time `key` is seen within the window; a repeat is refused.
    pub fn first_time(&self, key: &str) -> bool {
        let now = now_secs(&*self.clock);
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|_, until| *until > now);
        seen.insert(key.to_owned(), now + 2 * slack::WINDOW_SECS)
            .is_none()
    }

    fn channel_for(&self, access: Option<&str>) -> Option<&str> {
        let access = access.unwrap_or("");
        self.routes
            .iter()
            .find(|r| access_matches(&r.access, access))
            .map(|r| r.channel.as_str())
            .or(self.channel.as_deref())
    }

    fn link(&self, path: &str) -> Option<String> {
        self.public_url.as_ref().map(|u| format!("{u}{path}"))
    }

    /// The principal a Slack user is: the configured ids first, then the profile's email (the
    /// whole address, or its local part in `email_domain`). `None` when nobody matches.
    pub async fn principal_of(
        &self,
        engine: &Engine,
        user: &SlackUser,
    ) -> Result<Option<PrincipalId>, String> {
        if let Some(p) = self.users.get(&user.id) {
            return Ok(Some(p.clone()));
        }
        let now = now_secs(&*self.clock);
        if let Some((p, at)) = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&user.id)
            && now - at < KNOWN_FOR_SECS
        {
            return Ok(Some(p.clone()));
        }
        let Some(email) = self
            .api
            .email_of(&user.id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let email = email.to_ascii_lowercase();
        let mut names = vec![email.clone()];
        if let (Some(domain), Some((local, at))) = (&self.email_domain, email.split_once('@'))
            && at.eq_ignore_ascii_case(domain)
        {
            names.push(local.to_owned());
        }
        for name in names {
            let Ok(id) = PrincipalId::new(name) else {
                continue;
            };
            if engine
                .principal(&id)
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                self.known
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(user.id.clone(), (id.clone(), now));
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The Slack user of a principal: the configured ids, then by email.
    async fn slack_user_of(&self, principal: &str) -> Result<Option<String>, SlackError> {
        if let Some((id, _)) = self.users.iter().find(|(_, p)| p.as_str() == principal) {
            return Ok(Some(id.clone()));
        }
        let email = if principal.contains('@') {
            principal.to_owned()
        } else if let Some(d) = &self.email_domain {
            format!("{principal}@{d}")
        } else {
            return Ok(None);
        };
        self.api.user_by_email(&email).await
    }

    /// The caller a Slack user acts as, or what to tell them.
    async fn caller(&self, engine: &Engine, user: &SlackUser) -> Result<Caller, String> {
        let id = match self.principal_of(engine, user).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                return Err(
                    "your Slack account is not linked to a Hourglass identity; ask an administrator to add it".into(),
                );
            }
            Err(e) => return Err(format!("Hourglass could not tell who you are: {e}")),
        };
        let principal = engine
            .active_principal(&id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Caller {
            principal,
            // A click in Slack is no second factor.
            mfa: false,
            source_ip: None,
            on_behalf_of: None,
        })
    }

    fn card(&self, m: &Message, state: &str) -> RequestCard {
        let detail = |k: &str| {
            m.details
                .iter()
                .find(|(d, _)| d == k)
                .map(|(_, v)| v.clone())
        };
        let id = m.request_id.clone().unwrap_or_default();
        RequestCard {
            link: self.link(&format!("/inbox/{id}")),
            request_id: id,
            requester: m.principal.clone().unwrap_or_default(),
            actors: Vec::new(),
            access: m.access.clone().unwrap_or_default(),
            duration: m.duration.clone().unwrap_or_default(),
            reason: m.reason.clone().unwrap_or_default(),
            ticket: m.ticket.clone(),
            state: state.to_owned(),
            decided_by: detail("by"),
            note: detail("why"),
            step_up: false,
        }
    }

    /// Tells the person an event is about, directly.
    async fn tell(&self, m: &Message, actions: bool, link: Option<String>) -> Result<(), String> {
        if !self.notify_requester {
            return Ok(());
        }
        let Some(p) = &m.principal else { return Ok(()) };
        let Some(user) = self.slack_user_of(p).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let msg = slack::grant_message(
            &m.title,
            m.grant_id.as_deref().unwrap_or(""),
            link.as_deref(),
            actions,
        );
        self.api
            .post(&user, &msg)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn ephemeral(&self, channel: Option<&str>, user: &str, text: &str) {
        // In a direct message with the app, the user's id is the channel.
        let channel = channel.unwrap_or(user);
        if let Err(e) = self.api.ephemeral(channel, user, text).await {
            warn!(chat = %self.name, error = %e, "a Slack reply could not be posted");
        }
    }

    /// The request's message as it is now, for whoever may see it.
    async fn refresh(&self, engine: &Engine, caller: &Caller, id: &str, at: (&str, &str)) {
        let Ok(d) = engine.request_details(caller, id).await else {
            return;
        };
        let r = &d.request;
        let by = |v: Verdict| {
            let names: Vec<&str> = d
                .approvals
                .iter()
                .filter(|a| a.verdict == v)
                .map(|a| a.approver.as_str())
                .collect();
            (!names.is_empty()).then(|| names.join(", "))
        };
        let card = RequestCard {
            request_id: r.id.to_string(),
            requester: r.requester.to_string(),
            actors: r.actors.iter().map(ToString::to_string).collect(),
            access: r.access.to_string(),
            duration: r.duration.to_string(),
            reason: r.reason.clone(),
            ticket: r.ticket.clone(),
            state: r.state.as_str().to_owned(),
            decided_by: match r.state {
                RequestState::Denied => by(Verdict::Deny),
                _ => by(Verdict::Approve),
            },
            note: match r.state {
                RequestState::Denied | RequestState::Cancelled | RequestState::Failed => {
                    r.state_reason.clone()
                }
                _ => None,
            },
            link: self.link(&format!("/inbox/{}", r.id)),
            step_up: false,
        };
        if let Err(e) = self
            .api
            .update(at.0, at.1, &slack::request_message(&card))
            .await
        {
            warn!(chat = %self.name, error = %e, "a request's Slack message could not be updated");
        }
    }

    /// Acts on a verified interaction, after it was acknowledged.
    pub async fn act(self: Arc<Self>, engine: Arc<Engine>, i: Interaction) {
        match i {
            Interaction::Action {
                user,
                action_id,
                value,
                channel,
                ts,
                trigger_id,
                ..
            } => {
                let caller = match self.caller(&engine, &user).await {
                    Ok(c) => c,
                    Err(why) => {
                        info!(chat = %self.name, slack_user = %user.id, "a Slack click from nobody Hourglass knows");
                        return self.ephemeral(channel.as_deref(), &user.id, &why).await;
                    }
                };
                let at = channel.as_deref().zip(ts.as_deref());
                match action_id.as_str() {
                    slack::APPROVE => {
                        self.approve(&engine, &caller, &user, &value, channel.as_deref(), at)
                            .await;
                    }
                    slack::DENY => {
                        let meta = json!({"r": value, "c": channel, "t": ts}).to_string();
                        let Some(trigger) = trigger_id else { return };
                        if let Err(e) = self
                            .api
                            .open_view(&trigger, &slack::deny_modal(&value, &meta))
                            .await
                        {
                            warn!(chat = %self.name, error = %e, "the deny modal could not be opened");
                        }
                    }
                    slack::EXTEND => {
                        let Some(trigger) = trigger_id else { return };
                        if let Err(e) = self
                            .api
                            .open_view(&trigger, &slack::extend_modal(&value))
                            .await
                        {
                            warn!(chat = %self.name, error = %e, "the extend modal could not be opened");
                        }
                    }
                    slack::RELEASE => {
                        let text = match engine.grant(&caller, &value).await {
                            Ok(g) if g.principal == caller.principal.id => match engine
                                .revoke(
                                    &caller,
                                    &value,
                                    Some("released early by its holder in Slack".into()),
                                )
                                .await
                            {
                                Ok(_) => format!(
                                    "Released: your access through {value} is being removed."
                                ),
                                Err(e) => refused("Not released", &e),
                            },
                            Ok(_) => "Only its holder releases a grant.".to_owned(),
                            Err(e) => refused("Not released", &e),
                        };
                        self.ephemeral(channel.as_deref(), &user.id, &text).await;
                    }
                    _ => {}
                }
            }
            Interaction::Submit {
                user,
                callback_id,
                private_metadata,
                values,
                ..
            } => {
                let caller = match self.caller(&engine, &user).await {
                    Ok(c) => c,
                    Err(why) => return self.ephemeral(None, &user.id, &why).await,
                };
                let value = |k: &str| {
                    values
                        .get(k)
                        .map(|v| v.trim().to_owned())
                        .unwrap_or_default()
                };
                match callback_id.as_str() {
                    slack::DENY_MODAL => {
                        let meta: Value =
                            serde_json::from_str(&private_metadata).unwrap_or_default();
                        let id = meta["r"].as_str().unwrap_or_default();
                        let at = meta["c"].as_str().zip(meta["t"].as_str());
                        match engine.deny(&caller, id, &value("reason")).await {
                            // The denial's notification updates the message for everyone.
                            Ok(_) => {
                                info!(chat = %self.name, request_id = id, approver = %caller.principal.id, "denied in Slack");
                            }
                            Err(e) => {
                                self.ephemeral(
                                    at.map(|a| a.0),
                                    &user.id,
                                    &refused("Not denied", &e),
                                )
                                .await;
                                if let Some(at) = at {
                                    self.refresh(&engine, &caller, id, at).await;
                                }
                            }
                        }
                    }
                    slack::REQUEST_MODAL => {
                        let ticket = Some(value("ticket")).filter(|t| !t.is_empty());
                        let duration = Some(value("duration")).filter(|d| !d.is_empty());
                        let new = NewRequest {
                            entitlement: value("access"),
                            duration,
                            reason: value("reason"),
                            ticket,
                            task: None,
                            public_key: None,
                            break_glass: false,
                            starts_at: None,
                        };
                        let text = match engine.submit(&caller, new).await {
                            Ok(r) => match r.state {
                                RequestState::Pending => format!(
                                    "Request {} for {} is waiting for approval; you will hear here when it is decided.",
                                    r.id, r.access
                                ),
                                RequestState::Approved | RequestState::Fulfilled => format!(
                                    "Request {} for {} was approved at once; you will hear here when the access is ready.",
                                    r.id, r.access
                                ),
                                s => {
                                    format!("Request {} for {} is {}.", r.id, r.access, s.as_str())
                                }
                            },
                            Err(e) => refused("Not asked", &e),
                        };
                        if let Err(e) = self.api.post(&user.id, &json!({"text": text})).await {
                            warn!(chat = %self.name, error = %e, "a Slack reply could not be posted");
                        }
                    }
                    slack::EXTEND_MODAL => {
                        let text = match engine
                            .extend(&caller, &private_metadata, &value("by"), &value("reason"))
                            .await
                        {
                            Ok(r) => format!(
                                "Extension {} of {} is {}.",
                                r.id,
                                private_metadata,
                                r.state.as_str()
                            ),
                            Err(e) => refused("Not extended", &e),
                        };
                        if let Err(e) = self.api.post(&user.id, &json!({"text": text})).await {
                            warn!(chat = %self.name, error = %e, "a Slack reply could not be posted");
                        }
                    }
                    _ => {}
                }
            }
            Interaction::Suggest { .. } | Interaction::Other(_) => {}
        }
    }

    async fn approve(
        &self,
        engine: &Engine,
        caller: &Caller,
        user: &SlackUser,
        id: &str,
        channel: Option<&str>,
        at: Option<(&str, &str)>,
    ) {
        match engine.approve(caller, id, None).await {
            Ok(r) => {
                info!(chat = %self.name, request_id = id, approver = %caller.principal.id, state = r.state.as_str(), "approved in Slack");
                // At quorum, the approval's notification updates the message for everyone;
                // short of it, the message shows who has approved so far.
                if r.state != RequestState::Pending {
                    return;
                }
            }
            Err(e) if e.code() == ErrorCode::ApprovalStepUpRequired => {
                let link = self
                    .link(&format!("/inbox/{id}"))
                    .map(|l| format!(" <{l}|Approve in Hourglass>"))
                    .unwrap_or_default();
                self.ephemeral(
                    channel,
                    &user.id,
                    &format!("{}.{link}", refused("Not approved", &e)),
                )
                .await;
            }
            Err(e) => {
                self.ephemeral(channel, &user.id, &refused("Not approved", &e))
                    .await;
            }
        }
        if let Some(at) = at {
            self.refresh(engine, caller, id, at).await;
        }
    }

    /// What is wrong with a submitted form that needs no decision to see (an empty deny
    /// reason, a duration that is not one), as Slack's `response_action: errors`.
    pub fn form_errors(i: &Interaction) -> Option<Value> {
        let Interaction::Submit {
            callback_id,
            values,
            ..
        } = i
        else {
            return None;
        };
        let value = |k: &str| values.get(k).map_or("", |v| v.trim());
        let (field, why) = match callback_id.as_str() {
            slack::DENY_MODAL if value("reason").is_empty() => {
                ("reason", "A reason is required to deny.")
            }
            slack::REQUEST_MODAL | slack::EXTEND_MODAL
                if [value("duration"), value("by")].iter().any(|d| {
                    !d.is_empty() && d.parse::<hourglass_core::GrantDuration>().is_err()
                }) =>
            {
                let field = if callback_id == slack::EXTEND_MODAL {
                    "by"
                } else {
                    "duration"
                };
                (field, "Use a duration such as 30m, 1h or 4h.")
            }
            _ => return None,
        };
        Some(json!({"response_action": "errors", "errors": {field: why}}))
    }

    /// Options for the request modal's access field: what the person may ask for, matching
    /// what they typed.
    pub async fn options(&self, engine: &Engine, user: &SlackUser, query: &str) -> Value {
        let Ok(caller) = self.caller(engine, user).await else {
            return slack::options(&[]);
        };
        let query = query.trim().to_lowercase();
        let offers = engine.catalogue(&caller).await.unwrap_or_default();
        let items: Vec<(String, String)> = offers
            .into_iter()
            .filter(|o| query.is_empty() || o.name.to_lowercase().contains(&query))
            .map(|o| {
                let label = if o.description.is_empty() {
                    o.name.clone()
                } else {
                    format!("{} · {}", o.name, o.description)
                };
                (o.name, label)
            })
            .collect();
        slack::options(&items)
    }

    /// Opens the request modal for a `/hourglass` command.
    pub async fn open_request(&self, trigger_id: &str, text: &str) {
        let first = text.split_whitespace().next();
        if let Err(e) = self
            .api
            .open_view(trigger_id, &slack::request_modal(first))
            .await
        {
            warn!(chat = %self.name, error = %e, "the request modal could not be opened");
        }
    }
}

/// A refusal as Slack shows it: what the engine said, escaped so that it can neither link nor
/// mention.
fn refused(what: &str, e: &hourglass_core::Error) -> String {
    format!("{what}: {}", slack::escape(&e.to_string()))
}

fn state_of(event: NotifyEvent) -> &'static str {
    match event {
        NotifyEvent::RequestApproved => "approved",
        NotifyEvent::RequestDenied => "denied",
        NotifyEvent::RequestCancelled => "cancelled",
        NotifyEvent::RequestExpired => "expired",
        _ => "pending",
    }
}

#[async_trait]
impl Notifier for SlackChat {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(
        &self,
        _id: &str,
        m: &Message,
        earlier: &[String],
    ) -> Result<Option<String>, String> {
        // Where the request's messages are (`channel ts` a line), the first being its post in
        // the channel.
        let posted: Vec<(&str, &str)> = earlier
            .iter()
            .flat_map(|e| e.lines())
            .filter_map(|l| l.split_once(' '))
            .collect();
        match m.event {
            NotifyEvent::RequestPending => {
                let Some(channel) = self.channel_for(m.access.as_deref()) else {
                    return Ok(None);
                };
                let msg = slack::request_message(&self.card(m, "pending"));
                let (c, ts) = self
                    .api
                    .post(channel, &msg)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut receipt = vec![format!("{c} {ts}")];
                if self.notify_approvers {
                    receipt.extend(self.tell_approvers(m).await);
                }
                Ok(Some(receipt.join("\n")))
            }
            NotifyEvent::RequestReminder => {
                // In the request's thread, shown in the channel too, so that it comes back to
                // the approvers' attention where they decide.
                if let Some((c, ts)) = posted.first() {
                    self.api
                        .reply(c, ts, &reminder_text(m, None), true)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(None)
            }
            NotifyEvent::RequestEscalated => {
                if let Some(channel) = &self.escalations {
                    // The fallback approvers get the request with its buttons.
                    let mut card = self.card(m, "pending");
                    card.note = Some(m.title.clone());
                    let msg = slack::request_message(&card);
                    let (c, ts) = self
                        .api
                        .post(channel, &msg)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(Some(format!("{c} {ts}")));
                }
                if let Some((c, ts)) = posted.first() {
                    self.api
                        .reply(c, ts, &reminder_text(m, Some(":rotating_light:")), true)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(None)
            }
            NotifyEvent::RequestApproved
            | NotifyEvent::RequestDenied
            | NotifyEvent::RequestCancelled
            | NotifyEvent::RequestExpired => {
                // Every message with the request's buttons shows how it ended.
                let msg = slack::request_message(&self.card(m, state_of(m.event)));
                // The channel's post must be updated (an error retries the delivery); a copy
                // that cannot be (a direct message deleted) is logged and left.
                for (i, (c, ts)) in posted.into_iter().enumerate() {
                    match self.api.update(c, ts, &msg).await {
                        Ok(()) => {}
                        Err(e) if i == 0 => return Err(e.to_string()),
                        Err(e) => {
                            warn!(chat = %self.name, error = %e, "a copy of a request's message could not be updated");
                        }
                    }
                }
                self.tell(m, false, None).await?;
                Ok(None)
            }
            NotifyEvent::GrantActive => {
                self.tell(m, false, self.link("/mine")).await?;
                Ok(None)
            }
            NotifyEvent::GrantExpiring => {
                self.tell(m, true, self.link("/mine")).await?;
                Ok(None)
            }
            NotifyEvent::GrantRevoked => {
                self.tell(m, false, None).await?;
                Ok(None)
            }
            // A reviewer who is a person hears directly, with the link to their items.
            NotifyEvent::CampaignReminder => {
                self.tell(m, false, m.link.clone()).await?;
                Ok(None)
            }
            NotifyEvent::BreakGlass | NotifyEvent::RevocationOverdue | NotifyEvent::Drift => {
                let Some(channel) = &self.alerts else {
                    return Ok(None);
                };
                let msg = hourglass_integrations::notifiers::slack_blocks(m);
                self.api
                    .post(channel, &msg)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(None)
            }
        }
    }
}

/// A reminder or an escalation as a thread reply: what it is, escaped, and the way to decide.
fn reminder_text(m: &Message, icon: Option<&str>) -> String {
    let mut text = format!(
        "{}{}",
        icon.map(|i| format!("{i} ")).unwrap_or_default(),
        slack::escape(&m.title)
    );
    if let Some(by) = m.expires_at {
        text.push_str(&format!(". It expires at {by} unless someone decides."));
    }
    text
}
