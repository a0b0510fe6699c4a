//! IdP groups as the grant (`okta`, `entra`, `google`): the person is added to a group for the
//! window and removed at its end, through the Okta Groups API, Microsoft Graph or the Google
//! Directory API. Whatever the group unlocks downstream (SSO apps, cloud roles, Entra PIM for
//! Groups' own targets) follows the membership.
//!
//! One connector, three APIs behind [`Api`]: each adds, removes, checks and lists a group's
//! members by the person's sign-in name (`users`, else `<principal>@<email_domain>`). Adding
//! someone already there and removing someone already gone succeed (each API's own answers for
//! those are read as such). A `429` is waited out (its `Retry-After`, or Okta's
//! `X-Rate-Limit-Reset`) up to twice, a few seconds at most, then the job is retried later.
//! Discovery lists every member of the entitlements' groups, with the principal each maps back
//! to, so that the standing report counts members no live grant explains.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use hourglass_core::{
    Clock,
    connector::{Connector, ConnectorError, GrantSpec, Holding, Presence, Provisioned},
};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::rest::{Answer, TokenCache, next_link, rs256, rsa_key, seg, send};

/// What every IdP target has: who people are there, and how calls go out.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct People {
    /// Sign-in names by principal (`alice = "alice.smith@example.com"`).
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// Otherwise `<principal>@<email_domain>`.
    #[serde(default)]
    pub email_domain: Option<String>,
    /// Allow a loopback or private API URL (refused by default).
    #[serde(default)]
    pub allow_private: bool,
    /// Seconds before a call is abandoned (default 10).
    #[serde(default = "crate::db::default_timeout")]
    pub timeout_secs: u64,
}

/// `[targets.okta]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OktaConfig {
    /// The org's URL (`https://example.okta.com`).
    pub url: String,
    /// An API token (`SSWS`) with group membership administration, from a file or a variable.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(flatten)]
    pub people: People,
}

/// `[targets.entra]`: Microsoft Graph with an app registration's client credentials
/// (`GroupMember.ReadWrite.All`, `User.Read.All`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EntraConfig {
    pub tenant: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default = "default_graph")]
    pub graph_url: String,
    #[serde(default = "default_login")]
    pub login_url: String,
    #[serde(flatten)]
    pub people: People,
}

fn default_graph() -> String {
    "https://graph.microsoft.com".into()
}
fn default_login() -> String {
    "https://login.microsoftonline.com".into()
}

/// `[targets.google]`: the Admin SDK Directory API with a service account's key and
/// domain-wide delegation to `subject`, an administrator it acts as.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GoogleConfig {
    /// The service account's JSON key file.
    pub service_account_file: PathBuf,
    /// The administrator the service account acts as (`admin@example.com`).
    pub subject: String,
    #[serde(default = "default_directory")]
    pub directory_url: String,
    /// The token endpoint (default: the key file's `token_uri`).
    #[serde(default)]
    pub token_url: Option<String>,
    #[serde(flatten)]
    pub people: People,
}

fn default_directory() -> String {
    "https://admin.googleapis.com".into()
}

const GOOGLE_SCOPE: &str = "https://www.googleapis.com/auth/admin.directory.group.member";

fn read_secret(
    file: Option<&PathBuf>,
    env: Option<&str>,
    what: &str,
) -> Result<SecretString, String> {
    let raw = match (file, env) {
        (Some(p), None) => {
            std::fs::read_to_string(p).map_err(|e| format!("{what}_file: {}: {e}", p.display()))?
        }
        (None, Some(v)) => std::env::var(v).map_err(|_| format!("{what}_env: {v} is not set"))?,
        _ => return Err(format!("give exactly one of {what}_file and {what}_env")),
    };
    let s = raw.trim().to_owned();
    if s.is_empty() {
        return Err(format!("{what}: empty"));
    }
    Ok(SecretString::from(s))
}

/// The API behind the connector.
enum Api {
    Okta {
        base: String,
        token: SecretString,
    },
    Entra {
        graph: String,
        login: String,
        tenant: String,
        client_id: String,
        secret: SecretString,
    },
    Google {
        directory: String,
        token_url: String,
        account: String,
        key: aws_lc_rs::signature::RsaKeyPair,
        subject: String,
    },
}

/// A group-membership connector for one directory.
pub struct GroupConnector {
    api: Api,
    kind: &'static str,
    people: People,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    /// An access token and when it stops being used (Entra, Google).
    token: TokenCache,
    /// The entitlements' groups: (entitlement, group).
    groups: Vec<(String, String)>,
}

impl std::fmt::Debug for GroupConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConnector")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The group an entitlement grants.
fn group(params: &Value) -> Result<String, String> {
    match params.get("group").and_then(Value::as_str).map(str::trim) {
        Some(g) if !g.is_empty() && !g.contains(['/', '?', '#', ' ']) => Ok(g.to_owned()),
        _ => Err("params.group: the group's id (Okta `00g…`, an Entra object id, a Google group email or id)".into()),
    }
}

impl GroupConnector {
    fn build(
        kind: &'static str,
        api: Api,
        people: &People,
        entitlements: &[(String, Value)],
        clock: Arc<dyn Clock>,
        base: &str,
        mut problems: Vec<String>,
    ) -> Result<Self, Vec<String>> {
        if let Err(e) = crate::outbound::check_url(base, people.allow_private) {
            problems.push(format!("url: {e}"));
        }
        let mut groups = Vec::new();
        for (name, p) in entitlements {
            match group(p) {
                Ok(g) => groups.push((name.clone(), g)),
                Err(e) => problems.push(format!("entitlement {name}: {e}")),
            }
        }
        let http = crate::outbound::client(
            people.allow_private,
            Duration::from_secs(people.timeout_secs.max(1)),
        )
        .map_err(|e| vec![e])?;
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(GroupConnector {
            api,
            kind,
            people: people.clone(),
            http,
            clock,
            token: TokenCache::default(),
            groups,
        })
    }

    pub fn okta(
        cfg: &OktaConfig,
        entitlements: &[(String, Value)],
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let token = read_secret(cfg.token_file.as_ref(), cfg.token_env.as_deref(), "token")
            .map_err(|e| problems.push(e))
            .ok();
        let base = cfg.url.trim_end_matches('/').to_owned();
        let api = Api::Okta {
            base: base.clone(),
            token: token.unwrap_or_else(|| SecretString::from(String::new())),
        };
        Self::build(
            "okta",
            api,
            &cfg.people,
            entitlements,
            clock,
            &base,
            problems,
        )
    }

    pub fn entra(
        cfg: &EntraConfig,
        entitlements: &[(String, Value)],
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let secret = read_secret(
            cfg.client_secret_file.as_ref(),
            cfg.client_secret_env.as_deref(),
            "client_secret",
        )
        .map_err(|e| problems.push(e))
        .ok();
        if let Err(e) = crate::outbound::check_url(&cfg.login_url, cfg.people.allow_private) {
            problems.push(format!("login_url: {e}"));
        }
        let graph = cfg.graph_url.trim_end_matches('/').to_owned();
        let api = Api::Entra {
            graph: graph.clone(),
            login: cfg.login_url.trim_end_matches('/').to_owned(),
            tenant: cfg.tenant.clone(),
            client_id: cfg.client_id.clone(),
            secret: secret.unwrap_or_else(|| SecretString::from(String::new())),
        };
        Self::build(
            "entra",
            api,
            &cfg.people,
            entitlements,
            clock,
            &graph,
            problems,
        )
    }

    pub fn google(
        cfg: &GoogleConfig,
        entitlements: &[(String, Value)],
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Vec<String>> {
        let text = std::fs::read_to_string(&cfg.service_account_file).map_err(|e| {
            vec![format!(
                "service_account_file: {}: {e}",
                cfg.service_account_file.display()
            )]
        })?;
        let key: Value = serde_json::from_str(&text)
            .map_err(|_| vec!["service_account_file: not a JSON key".to_owned()])?;
        let field = |k: &str| {
            key.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| vec![format!("service_account_file: no {k}")])
        };
        let rsa = rsa_key(&field("private_key")?)
            .map_err(|e| vec![format!("service_account_file: private_key: {e}")])?;
        let token_url = cfg
            .token_url
            .clone()
            .or_else(|| {
                key.get("token_uri")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
        let mut problems = Vec::new();
        if let Err(e) = crate::outbound::check_url(&token_url, cfg.people.allow_private) {
            problems.push(format!("token_url: {e}"));
        }
        let directory = cfg.directory_url.trim_end_matches('/').to_owned();
        let api = Api::Google {
            directory: directory.clone(),
            token_url,
            account: field("client_email")?,
            key: rsa,
            subject: cfg.subject.clone(),
        };
        Self::build(
            "google",
            api,
            &cfg.people,
            entitlements,
            clock,
            &directory,
            problems,
        )
    }

    /// The person's sign-in name in the directory.
    fn login(&self, principal: &str) -> Result<String, ConnectorError> {
        if let Some(u) = self.people.users.get(principal) {
            return Ok(u.clone());
        }
        match &self.people.email_domain {
            Some(d) => Ok(format!("{principal}@{d}")),
            None => Err(ConnectorError::new(format!(
                "{principal} has no {} user: add it to users, or set email_domain",
                self.kind
            ))),
        }
    }

    /// Who a grant made a member: the name recorded when it was granted (so that a changed
    /// mapping never points revocation at someone else), else the mapping now.
    fn member_of(&self, spec: &GrantSpec) -> Result<String, ConnectorError> {
        match spec.handle.as_ref().and_then(|h| h["member"].as_str()) {
            Some(m) => Ok(m.to_owned()),
            None => self.login(spec.principal.as_str()),
        }
    }

    /// The principal a member's sign-in name maps back to, if any.
    fn principal_of(&self, login: &str) -> Option<String> {
        if let Some((p, _)) = self
            .people
            .users
            .iter()
            .find(|(_, u)| u.eq_ignore_ascii_case(login))
        {
            return Some(p.clone());
        }
        let d = self.people.email_domain.as_ref()?;
        let (local, domain) = login.rsplit_once('@')?;
        domain.eq_ignore_ascii_case(d).then(|| local.to_owned())
    }

    /// A bearer for Entra or Google, fetched when there is none or it is about to expire.
    async fn bearer(&self) -> Result<String, ConnectorError> {
        let now = self.clock.now();
        let (url, form) = match &self.api {
            Api::Okta { token, .. } => return Ok(token.expose_secret().to_owned()),
            Api::Entra {
                login,
                tenant,
                client_id,
                secret,
                ..
            } => (
                format!("{login}/{}/oauth2/v2.0/token", seg(tenant)),
                vec![
                    ("grant_type", "client_credentials".to_owned()),
                    ("client_id", client_id.clone()),
                    ("client_secret", secret.expose_secret().to_owned()),
                    ("scope", "https://graph.microsoft.com/.default".to_owned()),
                ],
            ),
            Api::Google {
                token_url,
                account,
                key,
                subject,
                ..
            } => {
                let iat = now.unix_millis() / 1000;
                let assertion = rs256(
                    key,
                    &json!({"iss": account, "sub": subject, "scope": GOOGLE_SCOPE, "aud": token_url, "iat": iat, "exp": iat + 3600}),
                )?;
                (
                    token_url.clone(),
                    vec![
                        (
                            "grant_type",
                            "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned(),
                        ),
                        ("assertion", assertion),
                    ],
                )
            }
        };
        self.token
            .get(now, || async {
                let body = {
                    let mut f = url::form_urlencoded::Serializer::new(String::new());
                    for (k, v) in &form {
                        f.append_pair(k, v);
                    }
                    f.finish()
                };
                let resp = self
                    .http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| {
                        ConnectorError::new(format!("{} token: {}", self.kind, e.without_url()))
                    })?;
                let status = resp.status();
                let v: Value = resp.json().await.unwrap_or(Value::Null);
                let Some(t) = v["access_token"].as_str().filter(|_| status.is_success()) else {
                    return Err(ConnectorError::new(format!(
                        "{} token: {status}: {}",
                        self.kind,
                        v["error_description"]
                            .as_str()
                            .or(v["error"].as_str())
                            .unwrap_or("no token")
                    )));
                };
                let secs = v["expires_in"].as_i64().unwrap_or(3600).max(120);
                Ok((t.to_owned(), now.plus_millis(secs * 1000)))
            })
            .await
    }

    /// One call: the status, the `Link` header and the JSON answer (rate limits waited out).
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Answer, ConnectorError> {
        let bearer = self.bearer().await?;
        let scheme = if matches!(self.api, Api::Okta { .. }) {
            "SSWS"
        } else {
            "Bearer"
        };
        let make = || {
            let req = self
                .http
                .request(method.clone(), url)
                .header("authorization", format!("{scheme} {bearer}"))
                .header("accept", "application/json");
            match &body {
                Some(b) => req.json(b),
                None => req,
            }
        };
        send(&format!("{} {method}", self.kind), make, || {
            self.clock.now().unix_millis() / 1000
        })
        .await
    }

    fn failed(&self, what: &str, status: StatusCode, v: &Value) -> ConnectorError {
        let why = v["errorSummary"]
            .as_str()
            .or(v["error"]["message"].as_str())
            .or(v["error"].as_str())
            .unwrap_or("");
        ConnectorError::new(format!("{} {what}: {status} {why}", self.kind))
    }

    /// Okta's and Graph's user id for a sign-in name; Google takes the email itself.
    async fn user_id(&self, login: &str) -> Result<Option<String>, ConnectorError> {
        let url = match &self.api {
            Api::Okta { base, .. } => format!("{base}/api/v1/users/{}", seg(login)),
            Api::Entra { graph, .. } => format!("{graph}/v1.0/users/{}?$select=id", seg(login)),
            Api::Google { .. } => return Ok(Some(login.to_owned())),
        };
        let (status, _, v) = self.call(Method::GET, &url, None).await?;
        match status {
            s if s.is_success() => Ok(v["id"].as_str().map(str::to_owned)),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(self.failed("user lookup", s, &v)),
        }
    }

    async fn add(&self, group: &str, login: &str) -> Result<(), ConnectorError> {
        let id = self
            .user_id(login)
            .await?
            .ok_or_else(|| ConnectorError::new(format!("{} has no user {login}", self.kind)))?;
        let (status, _, v) = match &self.api {
            Api::Okta { base, .. } => {
                self.call(
                    Method::PUT,
                    &format!("{base}/api/v1/groups/{}/users/{}", seg(group), seg(&id)),
                    None,
                )
                .await?
            }
            Api::Entra { graph, .. } => {
                self.call(
                    Method::POST,
                    &format!("{graph}/v1.0/groups/{}/members/$ref", seg(group)),
                    Some(json!({"@odata.id": format!("{graph}/v1.0/directoryObjects/{id}")})),
                )
                .await?
            }
            Api::Google { directory, .. } => {
                self.call(
                    Method::POST,
                    &format!(
                        "{directory}/admin/directory/v1/groups/{}/members",
                        seg(group)
                    ),
                    Some(json!({"email": login, "role": "MEMBER"})),
                )
                .await?
            }
        };
        let already = match &self.api {
            Api::Entra { .. } => {
                status == StatusCode::BAD_REQUEST && v.to_string().contains("already exist")
            }
            Api::Google { .. } => status == StatusCode::CONFLICT,
            Api::Okta { .. } => false,
        };
        if status.is_success() || already {
            Ok(())
        } else {
            Err(self.failed(&format!("add member {login}"), status, &v))
        }
    }

    async fn remove(&self, group: &str, login: &str) -> Result<(), ConnectorError> {
        let Some(id) = self.user_id(login).await? else {
            // No such user: nobody to remove.
            return Ok(());
        };
        let url = match &self.api {
            Api::Okta { base, .. } => {
                format!("{base}/api/v1/groups/{}/users/{}", seg(group), seg(&id))
            }
            Api::Entra { graph, .. } => format!(
                "{graph}/v1.0/groups/{}/members/{}/$ref",
                seg(group),
                seg(&id)
            ),
            Api::Google { directory, .. } => format!(
                "{directory}/admin/directory/v1/groups/{}/members/{}",
                seg(group),
                seg(&id)
            ),
        };
        let (status, _, v) = self.call(Method::DELETE, &url, None).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.failed("remove member", status, &v))
        }
    }

    /// Every member's sign-in name, every page.
    async fn members(&self, group: &str) -> Result<Vec<String>, ConnectorError> {
        let mut out = Vec::new();
        let mut url = match &self.api {
            Api::Okta { base, .. } => {
                format!("{base}/api/v1/groups/{}/users?limit=200", seg(group))
            }
            Api::Entra { graph, .. } => format!(
                "{graph}/v1.0/groups/{}/members?$select=id,userPrincipalName",
                seg(group)
            ),
            Api::Google { directory, .. } => format!(
                "{directory}/admin/directory/v1/groups/{}/members?maxResults=200",
                seg(group)
            ),
        };
        for _ in 0..10_000 {
            let (status, link, v) = self.call(Method::GET, &url, None).await?;
            if !status.is_success() {
                return Err(self.failed("list members", status, &v));
            }
            let next = match &self.api {
                Api::Okta { .. } => {
                    out.extend(
                        v.as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|u| u["profile"]["login"].as_str().map(str::to_owned)),
                    );
                    // `Link: <…>; rel="next"`.
                    next_link(link.as_deref())
                }
                Api::Entra { .. } => {
                    out.extend(
                        v["value"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|u| u["userPrincipalName"].as_str().map(str::to_owned)),
                    );
                    v["@odata.nextLink"].as_str().map(str::to_owned)
                }
                Api::Google { directory, .. } => {
                    out.extend(
                        v["members"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|u| u["email"].as_str().map(str::to_owned)),
                    );
                    v["nextPageToken"].as_str().map(|t| format!("{directory}/admin/directory/v1/groups/{}/members?maxResults=200&pageToken={}", seg(group), seg(t)))
                }
            };
            match next {
                Some(n) => url = n,
                None => return Ok(out),
            }
        }
        Err(ConnectorError::new(format!(
            "{}: too many pages of members",
            self.kind
        )))
    }

    async fn is_member(&self, group: &str, login: &str) -> Result<bool, ConnectorError> {
        if let Api::Google { directory, .. } = &self.api {
            let (status, _, v) = self
                .call(
                    Method::GET,
                    &format!(
                        "{directory}/admin/directory/v1/groups/{}/hasMember/{}",
                        seg(group),
                        seg(login)
                    ),
                    None,
                )
                .await?;
            return match status {
                s if s.is_success() => Ok(v["isMember"].as_bool().unwrap_or(false)),
                StatusCode::NOT_FOUND => Ok(false),
                s => Err(self.failed("check member", s, &v)),
            };
        }
        Ok(self
            .members(group)
            .await?
            .iter()
            .any(|m| m.eq_ignore_ascii_case(login)))
    }
}

#[async_trait]
impl Connector for GroupConnector {
    async fn grant(&self, spec: &GrantSpec) -> Result<Provisioned, ConnectorError> {
        let g = group(&spec.params).map_err(ConnectorError::new)?;
        let login = self.login(spec.principal.as_str())?;
        self.add(&g, &login).await?;
        Ok(Provisioned {
            handle: Some(json!({"group": g, "member": login})),
            credential: None,
        })
    }

    async fn revoke(&self, spec: &GrantSpec) -> Result<(), ConnectorError> {
        let g = group(&spec.params).map_err(ConnectorError::new)?;
        self.remove(&g, &self.member_of(spec)?).await
    }

    async fn inspect(&self, spec: &GrantSpec) -> Result<Presence, ConnectorError> {
        let g = group(&spec.params).map_err(ConnectorError::new)?;
        Ok(if self.is_member(&g, &self.member_of(spec)?).await? {
            Presence::Present
        } else {
            Presence::Absent
        })
    }

    /// Every member of the entitlements' groups, with the principal each maps back to and the
    /// entitlement: the standing report counts those no live grant explains.
    async fn discover(&self) -> Result<Vec<Holding>, ConnectorError> {
        let mut out = Vec::new();
        for (entitlement, g) in &self.groups {
            for m in self.members(g).await? {
                out.push(Holding {
                    principal: self.principal_of(&m),
                    holder: m,
                    privilege: format!("member of {g}"),
                    grant_id: None,
                    entitlement: Some(entitlement.clone()),
                });
            }
        }
        Ok(out)
    }

    fn check_params(&self, params: &Value) -> Vec<String> {
        group(params).err().into_iter().collect()
    }
}

#[cfg(test)]
mod tests;
