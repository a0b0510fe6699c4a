//! The `github` connector: GitHub access for the window of a grant, through the REST API as a
//! GitHub App installation (an installation token from the App's JWT, kept until a minute
//! before it expires).
//!
//! An entitlement is one of:
//! - `team = "slug"`: membership of the organisation's team (`PUT/DELETE
//!   /orgs/{org}/teams/{slug}/memberships/{user}`);
//! - `repository = "owner/name"` with `permission` (`pull`, `triage`, `push`, `maintain`,
//!   `admin`): a collaborator's permission on the repository (`PUT/DELETE
//!   /repos/{owner}/{name}/collaborators/{user}`; an invitation it created is withdrawn on
//!   revocation);
//! - `org_role = "admin"`: the organisation's owner role, restored on revocation to what the
//!   person had (member, or not in the organisation at all).
//!
//! People are GitHub logins, from the target's `users`. A rate limit (`403`/`429` with
//! `x-ratelimit-remaining: 0` or `retry-after`) is waited out twice, a few seconds at most.
//! Discovery lists the organisation's owners and the members of the entitlements' teams and
//! repositories, mapped back to principals.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use hourglass_core::{
    Clock, Timestamp,
    connector::{Connector, ConnectorError, GrantSpec, Holding, Presence, Provisioned},
};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::rest::{Answer, TokenCache, next_link, rs256, rsa_key, seg, send};

/// Configuration of a `github` target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// The organisation (`acme`).
    pub org: String,
    /// The GitHub App's id and its installation on the organisation.
    pub app_id: String,
    pub installation_id: String,
    /// The App's private key (PEM, PKCS#8 or PKCS#1 as GitHub hands it out).
    pub private_key_file: PathBuf,
    /// GitHub logins by principal.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// `https://api.github.com`, or a GitHub Enterprise Server's `https://HOST/api/v3`.
    #[serde(default = "default_api")]
    pub api_url: String,
    #[serde(default)]
    pub allow_private: bool,
    #[serde(default = "crate::db::default_timeout")]
    pub timeout_secs: u64,
}

fn default_api() -> String {
    "https://api.github.com".into()
}

const PERMISSIONS: [&str; 5] = ["pull", "triage", "push", "maintain", "admin"];

enum Kind {
    Team(String),
    Repo {
        owner: String,
        name: String,
        permission: String,
    },
    OrgAdmin,
}

fn kind(params: &Value) -> Result<Kind, String> {
    let s = |k: &str| params.get(k).and_then(Value::as_str).map(str::trim);
    let slug_ok = |v: &str| {
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match (s("team"), s("repository"), s("org_role")) {
        (Some(t), None, None) if slug_ok(t) => Ok(Kind::Team(t.to_owned())),
        (None, Some(r), None) => {
            let (owner, name) = r
                .split_once('/')
                .filter(|(o, n)| slug_ok(o) && slug_ok(n))
                .ok_or_else(|| format!("params.repository: {r:?} is not owner/name"))?;
            let permission = s("permission").unwrap_or("push");
            if !PERMISSIONS.contains(&permission) {
                return Err(format!("params.permission: one of {}", PERMISSIONS.join(", ")));
            }
            Ok(Kind::Repo { owner: owner.into(), name: name.into(), permission: permission.into() })
        }
        (None, None, Some("admin")) => Ok(Kind::OrgAdmin),
        _ => Err("params: one of team = \"slug\", repository = \"owner/name\" (with permission), or org_role = \"admin\"".into()),
    }
}

/// A connector for one GitHub organisation.
pub struct GithubConnector {
    cfg: GithubConfig,
    key: aws_lc_rs::signature::RsaKeyPair,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    token: TokenCache,
    /// The entitlements: (name, parameters).
    entitlements: Vec<(String, Value)>,
}

impl std::fmt::Debug for GithubConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubConnector")
            .field("org", &self.cfg.org)
            .finish_non_exhaustive()
    }
}

impl GithubConnector {
    pub fn new(
        cfg: &GithubConfig,
        entitlements: &[(String, Value)],
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let key = std::fs::read_to_string(&cfg.private_key_file)
            .map_err(|e| format!("private_key_file: {}: {e}", cfg.private_key_file.display()))
            .and_then(|pem| rsa_key(&pem).map_err(|e| format!("private_key_file: {e}")))
            .map_err(|e| problems.push(e))
            .ok();
        if let Err(e) = crate::outbound::check_url(&cfg.api_url, cfg.allow_private) {
            problems.push(format!("api_url: {e}"));
        }
        for (name, p) in entitlements {
            if let Err(e) = kind(p) {
                problems.push(format!("entitlement {name}: {e}"));
            }
        }
        let http = crate::outbound::client(
            cfg.allow_private,
            Duration::from_secs(cfg.timeout_secs.max(1)),
        )
        .map_err(|e| vec![e])?;
        match key {
            Some(key) if problems.is_empty() => Ok(GithubConnector {
                cfg: GithubConfig {
                    api_url: cfg.api_url.trim_end_matches('/').to_owned(),
                    ..cfg.clone()
                },
                key,
                http,
                clock,
                token: TokenCache::default(),
                entitlements: entitlements.to_vec(),
            }),
            _ => Err(problems),
        }
    }

    fn login(&self, principal: &str) -> Result<&str, ConnectorError> {
        self.cfg
            .users
            .get(principal)
            .map(String::as_str)
            .ok_or_else(|| {
                ConnectorError::new(format!(
                    "{principal} has no GitHub login in this target's users"
                ))
            })
    }

    /// The login a grant used (recorded in its handle), else the mapping now.
    fn login_of(&self, spec: &GrantSpec) -> Result<String, ConnectorError> {
        match spec.handle.as_ref().and_then(|h| h["login"].as_str()) {
            Some(l) => Ok(l.to_owned()),
            None => self.login(spec.principal.as_str()).map(str::to_owned),
        }
    }

    fn principal_of(&self, login: &str) -> Option<String> {
        self.cfg
            .users
            .iter()
            .find(|(_, l)| l.eq_ignore_ascii_case(login))
            .map(|(p, _)| p.clone())
    }

    /// The App's JWT (RS256, ten minutes at most, a minute back for clock drift).
    fn app_jwt(&self) -> Result<String, ConnectorError> {
        let now = self.clock.now().unix_millis() / 1000;
        rs256(
            &self.key,
            &json!({"iat": now - 60, "exp": now + 540, "iss": self.cfg.app_id}),
        )
    }

    /// The installation token, fetched when there is none or it is about to expire.
    async fn token(&self) -> Result<String, ConnectorError> {
        let now = self.clock.now();
        self.token
            .get(now, || async {
                let url = format!(
                    "{}/app/installations/{}/access_tokens",
                    self.cfg.api_url,
                    seg(&self.cfg.installation_id)
                );
                let resp = self
                    .http
                    .post(&url)
                    .header("authorization", format!("Bearer {}", self.app_jwt()?))
                    .header("accept", "application/vnd.github+json")
                    .header("user-agent", "hourglass")
                    .header("x-github-api-version", "2022-11-28")
                    .send()
                    .await
                    .map_err(|e| {
                        ConnectorError::new(format!(
                            "github installation token: {}",
                            e.without_url()
                        ))
                    })?;
                let status = resp.status();
                let v: Value = resp.json().await.unwrap_or(Value::Null);
                let Some(t) = v["token"].as_str().filter(|_| status.is_success()) else {
                    return Err(ConnectorError::new(format!(
                        "github installation token: {status} {}",
                        v["message"].as_str().unwrap_or("")
                    )));
                };
                let expires = v["expires_at"]
                    .as_str()
                    .and_then(Timestamp::parse_rfc3339)
                    .unwrap_or(now.plus_millis(3_600_000));
                Ok((t.to_owned(), expires))
            })
            .await
    }

    /// One API call: status, `Link` header, JSON answer (rate limits waited out).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, ConnectorError> {
        let token = self.token().await?;
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.cfg.api_url)
        };
        let make = || {
            let req = self
                .http
                .request(method.clone(), &url)
                .header("authorization", format!("Bearer {token}"))
                .header("accept", "application/vnd.github+json")
                .header("user-agent", "hourglass")
                .header("x-github-api-version", "2022-11-28");
            match &body {
                Some(b) => req.json(b),
                None => req,
            }
        };
        send(&format!("github {method}"), make, || {
            self.clock.now().unix_millis() / 1000
        })
        .await
    }

    fn failed(what: &str, status: StatusCode, v: &Value) -> ConnectorError {
        ConnectorError::new(format!(
            "github {what}: {status} {}",
            v["message"].as_str().unwrap_or("")
        ))
    }

    /// Every item of a listing, every page (`Link: rel="next"`).
    async fn list(&self, path: &str) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(p) = next.take() {
            let (status, link, v) = self.call(Method::GET, &p, None).await?;
            if !status.is_success() {
                return Err(Self::failed("list", status, &v));
            }
            out.extend(v.as_array().cloned().unwrap_or_default());
            next = next_link(link.as_deref());
        }
        Ok(out)
    }

    /// The person's organisation role now: `admin`, `member`, or none.
    async fn org_role(&self, login: &str) -> Result<Option<String>, ConnectorError> {
        let (status, _, v) = self
            .call(
                Method::GET,
                &format!("/orgs/{}/memberships/{}", seg(&self.cfg.org), seg(login)),
                None,
            )
            .await?;
        match status {
            s if s.is_success() => Ok(v["role"].as_str().map(str::to_owned)),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(Self::failed("membership", s, &v)),
        }
    }
}

fn ok_or(status: StatusCode, what: &str, v: &Value, gone_ok: bool) -> Result<(), ConnectorError> {
    if status.is_success() || (gone_ok && status == StatusCode::NOT_FOUND) {
        Ok(())
    } else {
        Err(GithubConnector::failed(what, status, v))
    }
}

#[async_trait]
impl Connector for GithubConnector {
    async fn grant(&self, spec: &GrantSpec) -> Result<Provisioned, ConnectorError> {
        let login = self.login(spec.principal.as_str())?.to_owned();
        let org = seg(&self.cfg.org);
        let handle = match kind(&spec.params).map_err(ConnectorError::new)? {
            Kind::Team(t) => {
                let (s, _, v) = self
                    .call(
                        Method::PUT,
                        &format!("/orgs/{org}/teams/{}/memberships/{}", seg(&t), seg(&login)),
                        Some(json!({"role": "member"})),
                    )
                    .await?;
                ok_or(s, "team membership", &v, false)?;
                json!({"login": login, "state": v["state"]})
            }
            Kind::Repo {
                owner,
                name,
                permission,
            } => {
                let (s, _, v) = self
                    .call(
                        Method::PUT,
                        &format!(
                            "/repos/{}/{}/collaborators/{}",
                            seg(&owner),
                            seg(&name),
                            seg(&login)
                        ),
                        Some(json!({"permission": permission})),
                    )
                    .await?;
                ok_or(s, "collaborator", &v, false)?;
                // 201: an invitation the person has to accept; 204: a collaborator now.
                json!({"login": login, "invitation": v["id"]})
            }
            Kind::OrgAdmin => {
                // Granting again after a crash must not record "admin" as what to restore.
                let before = match &spec.handle {
                    Some(h) => h["restore"].as_str().map(str::to_owned),
                    None => self.org_role(&login).await?,
                };
                let (s, _, v) = self
                    .call(
                        Method::PUT,
                        &format!("/orgs/{org}/memberships/{}", seg(&login)),
                        Some(json!({"role": "admin"})),
                    )
                    .await?;
                ok_or(s, "organisation role", &v, false)?;
                // An owner before stays one (`restore = admin`): the grant added nothing, and
                // its end takes nothing away; that owner is standing privilege, for discovery.
                json!({"login": login, "restore": before.unwrap_or_else(|| "none".into())})
            }
        };
        Ok(Provisioned {
            handle: Some(handle),
            credential: None,
        })
    }

    async fn revoke(&self, spec: &GrantSpec) -> Result<(), ConnectorError> {
        let login = self.login_of(spec)?;
        let org = seg(&self.cfg.org);
        match kind(&spec.params).map_err(ConnectorError::new)? {
            Kind::Team(t) => {
                let (s, _, v) = self
                    .call(
                        Method::DELETE,
                        &format!("/orgs/{org}/teams/{}/memberships/{}", seg(&t), seg(&login)),
                        None,
                    )
                    .await?;
                ok_or(s, "team membership", &v, true)
            }
            Kind::Repo { owner, name, .. } => {
                let repo = format!("/repos/{}/{}", seg(&owner), seg(&name));
                if let Some(id) = spec.handle.as_ref().and_then(|h| h["invitation"].as_i64()) {
                    let (s, _, v) = self
                        .call(Method::DELETE, &format!("{repo}/invitations/{id}"), None)
                        .await?;
                    ok_or(s, "invitation", &v, true)?;
                }
                let (s, _, v) = self
                    .call(
                        Method::DELETE,
                        &format!("{repo}/collaborators/{}", seg(&login)),
                        None,
                    )
                    .await?;
                ok_or(s, "collaborator", &v, true)
            }
            Kind::OrgAdmin => {
                let restore = spec
                    .handle
                    .as_ref()
                    .and_then(|h| h["restore"].as_str())
                    .unwrap_or("member")
                    .to_owned();
                let path = format!("/orgs/{org}/memberships/{}", seg(&login));
                let (s, _, v) = if restore == "none" {
                    self.call(Method::DELETE, &path, None).await?
                } else {
                    self.call(Method::PUT, &path, Some(json!({"role": restore})))
                        .await?
                };
                ok_or(s, "organisation role", &v, true)
            }
        }
    }

    async fn inspect(&self, spec: &GrantSpec) -> Result<Presence, ConnectorError> {
        let login = self.login_of(spec)?;
        let org = seg(&self.cfg.org);
        let present = match kind(&spec.params).map_err(ConnectorError::new)? {
            Kind::Team(t) => {
                let (s, _, v) = self
                    .call(
                        Method::GET,
                        &format!("/orgs/{org}/teams/{}/memberships/{}", seg(&t), seg(&login)),
                        None,
                    )
                    .await?;
                match s {
                    s if s.is_success() => true,
                    StatusCode::NOT_FOUND => false,
                    s => return Err(Self::failed("team membership", s, &v)),
                }
            }
            Kind::Repo { owner, name, .. } => {
                let repo = format!("/repos/{}/{}", seg(&owner), seg(&name));
                let (s, _, v) = self
                    .call(
                        Method::GET,
                        &format!("{repo}/collaborators/{}", seg(&login)),
                        None,
                    )
                    .await?;
                let collaborator = match s {
                    s if s.is_success() => true,
                    StatusCode::NOT_FOUND => false,
                    s => return Err(Self::failed("collaborator", s, &v)),
                };
                // A pending invitation is access waiting to be taken.
                let invited = match spec.handle.as_ref().and_then(|h| h["invitation"].as_i64()) {
                    Some(id) => self
                        .list(&format!("{repo}/invitations"))
                        .await?
                        .iter()
                        .any(|i| i["id"].as_i64() == Some(id)),
                    None => false,
                };
                collaborator || invited
            }
            // An owner before the grant: the grant's own elevation is what is judged.
            Kind::OrgAdmin
                if spec.handle.as_ref().and_then(|h| h["restore"].as_str()) == Some("admin") =>
            {
                false
            }
            Kind::OrgAdmin => self.org_role(&login).await?.as_deref() == Some("admin"),
        };
        Ok(if present {
            Presence::Present
        } else {
            Presence::Absent
        })
    }

    async fn discover(&self) -> Result<Vec<Holding>, ConnectorError> {
        let org = seg(&self.cfg.org);
        let mut out = Vec::new();
        let holding = |login: &str, privilege: String, entitlement: Option<&str>| Holding {
            holder: login.to_owned(),
            privilege,
            grant_id: None,
            principal: self.principal_of(login),
            entitlement: entitlement.map(str::to_owned),
        };
        let owners_ent = self
            .entitlements
            .iter()
            .find(|(_, p)| matches!(kind(p), Ok(Kind::OrgAdmin)))
            .map(|(n, _)| n.as_str());
        for m in self
            .list(&format!("/orgs/{org}/members?role=admin&per_page=100"))
            .await?
        {
            if let Some(l) = m["login"].as_str() {
                out.push(holding(l, format!("owner of {}", self.cfg.org), owners_ent));
            }
        }
        for (name, p) in &self.entitlements {
            match kind(p) {
                Ok(Kind::Team(t)) => {
                    for m in self
                        .list(&format!(
                            "/orgs/{org}/teams/{}/members?per_page=100",
                            seg(&t)
                        ))
                        .await?
                    {
                        if let Some(l) = m["login"].as_str() {
                            out.push(holding(l, format!("member of team {t}"), Some(name)));
                        }
                    }
                }
                Ok(Kind::Repo {
                    owner,
                    name: repo,
                    permission,
                }) => {
                    for m in self
                        .list(&format!(
                            "/repos/{}/{}/collaborators?affiliation=direct&per_page=100",
                            seg(&owner),
                            seg(&repo)
                        ))
                        .await?
                    {
                        if let Some(l) = m["login"].as_str()
                            && m["permissions"][permission.as_str()].as_bool() == Some(true)
                        {
                            out.push(holding(
                                l,
                                format!("{permission} on {owner}/{repo}"),
                                Some(name),
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn check_params(&self, params: &Value) -> Vec<String> {
        kind(params).err().into_iter().collect()
    }
}

#[cfg(test)]
mod tests;
