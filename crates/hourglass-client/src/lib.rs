//! A typed HTTP client for the Hourglass API. Problems come back as [`ClientError::Problem`]
//! with the server's code, field and request id.

use hourglass_api::{
    ApproveBody, ChangeView, CreateRequest, CredentialView, DenyBody, GrantView, List, Problem,
    RequestView, RevokeBody, WhoAmI,
};
use serde::{Serialize, de::DeserializeOwned};

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{} ({}{})", .0.detail, .0.code, .0.field.as_ref().map(|f| format!(", field {f}")).unwrap_or_default())]
    Problem(Box<Problem>),
    #[error("cannot reach the server: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("unexpected response {status}: {body}")]
    Unexpected { status: u16, body: String },
}

/// A client for one server, acting as the holder of one token.
/// An open change stream (`GET /v1/events`): server-sent events read as they come.
#[derive(Debug)]
pub struct Events {
    resp: reqwest::Response,
    buf: String,
    /// The id of the last event read: reopen after it when the stream ends.
    pub last_id: Option<u64>,
}

impl Events {
    /// The next change, or `None` when the server ended the stream (reopen after
    /// [`last_id`](Self::last_id)).
    pub async fn next(&mut self) -> Result<Option<ChangeView>, ClientError> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut data = String::new();
                let mut is_change = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    } else if let Some(v) = line.strip_prefix("id:") {
                        self.last_id = v.trim().parse().ok().or(self.last_id);
                    } else if let Some(v) = line.strip_prefix("event:") {
                        is_change = v.trim() == "change";
                    }
                }
                if is_change {
                    let c: ChangeView =
                        serde_json::from_str(&data).map_err(|_| ClientError::Unexpected {
                            status: 200,
                            body: data.clone(),
                        })?;
                    return Ok(Some(c));
                }
            }
            match self.resp.chunk().await? {
                Some(bytes) => self
                    .buf
                    .push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n")),
                None => return Ok(None),
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::builder().build()?,
        })
    }

    /// The same server, as another token holder.
    pub fn with_token(&self, token: &str) -> Self {
        Client {
            base: self.base.clone(),
            token: Some(token.to_owned()),
            http: self.http.clone(),
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|_| ClientError::Unexpected {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) => Err(ClientError::Problem(Box::new(p))),
            Err(_) => Err(ClientError::Unexpected {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            }),
        }
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// Opens the change stream (`GET /v1/events`) after `after`, or from now.
    pub async fn events(&self, after: Option<u64>) -> Result<Events, ClientError> {
        let mut req = self.http.get(format!("{}/v1/events", self.base));
        if let Some(a) = after {
            req = req.header("last-event-id", a.to_string());
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await?;
            return Err(match serde_json::from_slice::<Problem>(&bytes) {
                Ok(p) => ClientError::Problem(Box::new(p)),
                Err(_) => ClientError::Unexpected {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                },
            });
        }
        Ok(Events {
            resp,
            buf: String::new(),
            last_id: after,
        })
    }

    pub async fn create_request(&self, body: &CreateRequest) -> Result<RequestView, ClientError> {
        self.post("/v1/requests", body).await
    }
    pub async fn list_requests(
        &self,
        state: Option<&str>,
    ) -> Result<Vec<RequestView>, ClientError> {
        let q = state.map_or_else(String::new, |s| format!("?state={s}"));
        Ok(self
            .get::<List<RequestView>>(&format!("/v1/requests{q}"))
            .await?
            .items)
    }
    pub async fn get_request(&self, id: &str) -> Result<RequestView, ClientError> {
        self.get(&format!("/v1/requests/{id}")).await
    }
    pub async fn approve(
        &self,
        id: &str,
        comment: Option<String>,
    ) -> Result<RequestView, ClientError> {
        self.post(
            &format!("/v1/requests/{id}/approve"),
            &ApproveBody { comment },
        )
        .await
    }
    pub async fn deny(&self, id: &str, reason: &str) -> Result<RequestView, ClientError> {
        self.post(
            &format!("/v1/requests/{id}/deny"),
            &DenyBody {
                reason: reason.to_owned(),
            },
        )
        .await
    }
    pub async fn cancel(&self, id: &str) -> Result<RequestView, ClientError> {
        self.post(&format!("/v1/requests/{id}/cancel"), &serde_json::json!({}))
            .await
    }
    pub async fn list_grants(&self, state: Option<&str>) -> Result<Vec<GrantView>, ClientError> {
        let q = state.map_or_else(String::new, |s| format!("?state={s}"));
        Ok(self
            .get::<List<GrantView>>(&format!("/v1/grants{q}"))
            .await?
            .items)
    }
    pub async fn get_grant(&self, id: &str) -> Result<GrantView, ClientError> {
        self.get(&format!("/v1/grants/{id}")).await
    }
    pub async fn revoke(&self, id: &str, reason: Option<String>) -> Result<GrantView, ClientError> {
        self.post(&format!("/v1/grants/{id}/revoke"), &RevokeBody { reason })
            .await
    }
    /// Asks for more time on an active grant; returns the extension request.
    pub async fn extend(
        &self,
        grant_id: &str,
        by: &str,
        reason: &str,
    ) -> Result<RequestView, ClientError> {
        self.post(
            &format!("/v1/grants/{grant_id}/extend"),
            &hourglass_api::ExtendBody {
                by: by.to_owned(),
                reason: reason.to_owned(),
            },
        )
        .await
    }
    /// Reloads the server's policy files (administrators of every entitlement only).
    pub async fn reload_policies(&self) -> Result<hourglass_api::ReloadView, ClientError> {
        self.post("/v1/admin/policies/reload", &serde_json::json!({}))
            .await
    }
    /// Break-glass reviews the caller may see (`state`: `open` or `closed`).
    pub async fn list_reviews(
        &self,
        state: Option<&str>,
    ) -> Result<Vec<hourglass_api::ReviewView>, ClientError> {
        let q = state.map_or_else(String::new, |s| format!("?state={s}"));
        Ok(self
            .get::<List<hourglass_api::ReviewView>>(&format!("/v1/reviews{q}"))
            .await?
            .items)
    }
    /// Starts an access review (administrators of every entitlement).
    pub async fn start_campaign(
        &self,
        body: &hourglass_api::StartCampaign,
    ) -> Result<hourglass_api::CampaignView, ClientError> {
        self.post("/v1/campaigns", body).await
    }
    /// Every access review with its progress, newest first.
    pub async fn campaigns(&self) -> Result<Vec<hourglass_api::CampaignView>, ClientError> {
        Ok(self
            .get::<List<hourglass_api::CampaignView>>("/v1/campaigns")
            .await?
            .items)
    }
    /// One access review and a page of its items (after the item id given).
    pub async fn campaign(
        &self,
        id: &str,
        after: Option<&str>,
    ) -> Result<hourglass_api::CampaignDetails, ClientError> {
        let q = after.map_or_else(String::new, |a| format!("?after={a}"));
        self.get(&format!("/v1/campaigns/{id}{q}")).await
    }
    /// Open access reviews with items waiting for the caller.
    pub async fn my_campaign_items(
        &self,
    ) -> Result<Vec<hourglass_api::CampaignDetails>, ClientError> {
        Ok(self
            .get::<List<hourglass_api::CampaignDetails>>("/v1/campaigns/mine")
            .await?
            .items)
    }
    /// Decides one item of an access review.
    pub async fn decide_item(
        &self,
        id: &str,
        decision: hourglass_api::ItemDecision,
        note: Option<&str>,
    ) -> Result<hourglass_api::CampaignItemView, ClientError> {
        self.post(
            &format!("/v1/campaigns/items/{id}/decide"),
            &hourglass_api::DecideItem {
                decision,
                note: note.map(str::to_owned),
            },
        )
        .await
    }
    /// Closes a break-glass review with a comment.
    pub async fn close_review(
        &self,
        id: &str,
        comment: &str,
    ) -> Result<hourglass_api::ReviewView, ClientError> {
        self.post(
            &format!("/v1/reviews/{id}/close"),
            &hourglass_api::CloseReviewBody {
                comment: comment.to_owned(),
            },
        )
        .await
    }
    /// The grant's credential, once.
    pub async fn credential(&self, grant_id: &str) -> Result<CredentialView, ClientError> {
        self.get(&format!("/v1/grants/{grant_id}/credential")).await
    }
    /// Runs the reconciler now (administrators of every entitlement only).
    pub async fn reconcile(&self) -> Result<hourglass_api::ReconcileView, ClientError> {
        self.post("/v1/admin/reconcile", &serde_json::json!({}))
            .await
    }
    /// Standing privilege per target (administrators of every entitlement only).
    /// Every elevated state in scope with its story (`GET /v1/why`); `query` holds the
    /// parameters (`principal`, `target`, `entitlement`, `at` or `from`/`to`).
    pub async fn why(&self, query: &[(&str, &str)]) -> Result<hourglass_api::WhyView, ClientError> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            q.append_pair(k, v);
        }
        self.get(&format!("/v1/why?{}", q.finish())).await
    }
    /// An evidence export of elevated windows (`GET /v1/reports/elevations`): the body as
    /// sent, and the headers that vouch for it (`x-hourglass-export-sha256`,
    /// `x-hourglass-head-seq`, `x-hourglass-head-hash`, `x-hourglass-manifest`).
    pub async fn export_elevations(
        &self,
        query: &[(&str, &str)],
    ) -> Result<(Vec<u8>, Vec<(String, String)>), ClientError> {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            q.append_pair(k, v);
        }
        let req = self.http.get(format!(
            "{}/v1/reports/elevations?{}",
            self.base,
            q.finish()
        ));
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await?;
        let status = resp.status();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-hourglass-"))
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
            .collect();
        let bytes = resp.bytes().await?.to_vec();
        if status.is_success() {
            return Ok((bytes, headers));
        }
        Err(match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) => ClientError::Problem(Box::new(p)),
            Err(_) => ClientError::Unexpected {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            },
        })
    }
    /// Revocation debt per target (administrators of every entitlement only).
    pub async fn revocation_debt(
        &self,
    ) -> Result<Vec<hourglass_api::RevocationDebtView>, ClientError> {
        Ok(self
            .get::<List<hourglass_api::RevocationDebtView>>("/v1/reports/revocation-debt")
            .await?
            .items)
    }
    pub async fn standing(&self) -> Result<Vec<hourglass_api::TargetStandingView>, ClientError> {
        Ok(self
            .get::<List<hourglass_api::TargetStandingView>>("/v1/reports/standing")
            .await?
            .items)
    }
    /// Audit events after `after` (administrators of every entitlement only).
    pub async fn audit(
        &self,
        after: u64,
    ) -> Result<Vec<hourglass_api::AuditEventView>, ClientError> {
        Ok(self
            .get::<List<hourglass_api::AuditEventView>>(&format!("/v1/audit?after={after}"))
            .await?
            .items)
    }
    pub async fn identities(&self) -> Result<Vec<hourglass_api::IdentityView>, ClientError> {
        let l: List<hourglass_api::IdentityView> = self.get("/v1/identities").await?;
        Ok(l.items)
    }
    pub async fn create_identity(
        &self,
        body: &hourglass_api::CreateIdentity,
    ) -> Result<hourglass_api::IdentityView, ClientError> {
        self.post("/v1/identities", body).await
    }
    /// `action`: `suspend`, `resume` or `offboard`.
    pub async fn identity_status<T: DeserializeOwned>(
        &self,
        name: &str,
        action: &str,
        reason: Option<String>,
    ) -> Result<T, ClientError> {
        self.post(
            &format!("/v1/identities/{name}/{action}"),
            &hourglass_api::IdentityStatusBody { reason },
        )
        .await
    }
    pub async fn create_key(
        &self,
        identity: &str,
        expires: Option<String>,
    ) -> Result<hourglass_api::IssuedKeyView, ClientError> {
        self.post(
            "/v1/keys",
            &hourglass_api::CreateKey {
                identity: identity.to_owned(),
                expires,
            },
        )
        .await
    }
    pub async fn rotate_key(
        &self,
        id: &str,
        expires: Option<String>,
    ) -> Result<hourglass_api::IssuedKeyView, ClientError> {
        self.post(
            &format!("/v1/keys/{id}/rotate"),
            &hourglass_api::RotateKey { expires },
        )
        .await
    }
    pub async fn revoke_key(&self, id: &str) -> Result<hourglass_api::KeyView, ClientError> {
        self.post(&format!("/v1/keys/{id}/revoke"), &serde_json::json!({}))
            .await
    }
    pub async fn identity_report(
        &self,
        unused_days: Option<u64>,
    ) -> Result<hourglass_api::IdentityReport, ClientError> {
        match unused_days {
            Some(d) => {
                self.get(&format!("/v1/reports/identities?unused_days={d}"))
                    .await
            }
            None => self.get("/v1/reports/identities").await,
        }
    }
    /// RFC 8693 token exchange; `form` holds the fields. Errors are RFC 6749 JSON, returned as
    /// `Unexpected` with the status and body.
    pub async fn exchange(
        &self,
        form: &[(&str, &str)],
    ) -> Result<hourglass_api::TokenResponse, ClientError> {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let resp = self
            .http
            .post(format!("{}/v1/token", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if status.is_success()
            && let Ok(t) = serde_json::from_slice(&bytes)
        {
            return Ok(t);
        }
        Err(ClientError::Unexpected {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
    /// The JWKS that verifies Hourglass access tokens.
    pub async fn jwks(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/.well-known/jwks.json").await
    }
    /// What the caller may ask for now, and what asking would do.
    pub async fn catalogue(&self) -> Result<Vec<hourglass_api::OfferView>, ClientError> {
        let l: List<hourglass_api::OfferView> = self.get("/v1/catalogue").await?;
        Ok(l.items)
    }
    /// What asking for something would do for the caller now, and why (`POST /v1/explain`).
    pub async fn explain(
        &self,
        body: &hourglass_api::ExplainBody,
    ) -> Result<hourglass_api::ExplainView, ClientError> {
        self.post("/v1/explain", body).await
    }
    /// An access token for the caller's active grant `id` on a `token` target.
    pub async fn grant_token(
        &self,
        id: &str,
    ) -> Result<hourglass_api::GrantTokenView, ClientError> {
        self.post(&format!("/v1/grants/{id}/token"), &serde_json::json!({}))
            .await
    }
    /// Ends every live grant of `task` that is the caller's (`POST /v1/tasks/release`).
    pub async fn release_task(
        &self,
        task: &str,
        reason: Option<String>,
    ) -> Result<Vec<GrantView>, ClientError> {
        let l: List<GrantView> = self
            .post(
                "/v1/tasks/release",
                &hourglass_api::ReleaseTaskBody {
                    task: task.to_owned(),
                    reason,
                },
            )
            .await?;
        Ok(l.items)
    }
    /// Records one MCP tool call of this agent (`POST /v1/agents/tool-calls`).
    pub async fn tool_called(&self, body: &hourglass_api::ToolCallBody) -> Result<(), ClientError> {
        let req = self
            .http
            .post(format!("{}/v1/agents/tool-calls", self.base))
            .json(body);
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let bytes = resp.bytes().await?;
        Err(match serde_json::from_slice::<Problem>(&bytes) {
            Ok(p) => ClientError::Problem(Box::new(p)),
            Err(_) => ClientError::Unexpected {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            },
        })
    }
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get("/v1/whoami").await
    }
    /// The raw text of `/metrics`.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?)
    }
    /// The HTTP status of a GET (for `/healthz`, `/readyz`).
    pub async fn get_status(&self, path: &str) -> Result<u16, ClientError> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await?
            .status()
            .as_u16())
    }
    /// Sends a raw body to a path (for tests of malformed input).
    /// Posts a signed ticket event (`POST /v1/tickets/events`); the body is sent exactly as
    /// signed.
    pub async fn ticket_event(
        &self,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<hourglass_api::TicketEventView, ClientError> {
        let mut req = self
            .http
            .post(format!("{}/v1/tickets/events", self.base))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        self.send(req).await
    }
    pub async fn post_raw(&self, path: &str, body: &str) -> Result<serde_json::Value, ClientError> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }
}

/// Percent-encodes a form value (RFC 3986 unreserved characters pass).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
