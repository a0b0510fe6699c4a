//! The `aws` connector: AWS access for the window of a grant, two ways.
//!
//! - **IAM role sessions** (`params.role_arn`): the grant hands over STS credentials for the
//!   role (`AssumeRole`, the session named after the grant, lasting no longer than the grant,
//!   within AWS's 15-minute minimum and the role's maximum). AWS cannot revoke a session, so
//!   revocation does what AWS documents for it: an inline policy on the role denies every action
//!   to sessions of that name issued before the revocation (`aws:userid` ending in the session
//!   name, `aws:TokenIssueTime` before now), one policy a grant (`HourglassRevokedSessions-<grant>`)
//!   so that two revocations never write over each other. The proof reads it back. Policies are
//!   dropped once the sessions they cut off would have expired anyway (AWS's 12-hour maximum).
//! - **IAM Identity Center account assignments** (`params.permission_set_arn`,
//!   `params.account_id`): the person (their Identity Center user id, from the target's `users`)
//!   is assigned the permission set in the account for the window, through the SSO Admin API,
//!   waiting for the provisioning status to settle; revocation deletes the assignment the same
//!   way; the proof is its absence from `ListAccountAssignments`.
//!
//! Requests are signed with SigV4 (`aws-sigv4`) on the engine's clock and sent with the shared
//! HTTP client. Credentials come from the standard chain, first that has them: the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`, through `AssumeRoleWithWebIdentity`); the
//! shared credentials file (the target's `credentials_file`, `AWS_SHARED_CREDENTIALS_FILE` or
//! `~/.aws/credentials`; profile `AWS_PROFILE`, the target's `profile`, or `default`); the
//! container endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`/`_FULL_URI`); the instance's
//! metadata (IMDSv2). Fetched credentials are kept until five minutes before they expire.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::{
    http_request::{SignableBody, SignableRequest, SigningSettings, sign},
    sign::v4,
};
use hourglass_core::{
    Clock, Timestamp,
    connector::{
        Connector, ConnectorError, GrantSpec, Holding, Presence, Provisioned, RevocationProof,
    },
};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

/// The inline role policy that holds the revocations of role sessions.
pub const REVOKE_POLICY: &str = "HourglassRevokedSessions";
/// AWS's shortest role session.
const MIN_SESSION_SECS: i64 = 900;

/// Configuration of an `aws` target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// The region of STS and SSO Admin (`eu-west-1`).
    pub region: String,
    /// Another endpoint for every service (a VPC endpoint, a test double); AWS's own otherwise.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Allow a loopback or private `endpoint_url` (refused by default).
    #[serde(default)]
    pub allow_private: bool,
    /// The shared credentials file's profile (when the environment holds no keys).
    #[serde(default)]
    pub profile: Option<String>,
    /// The shared credentials file to read (default `AWS_SHARED_CREDENTIALS_FILE`, else
    /// `~/.aws/credentials`).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Where credentials come from: `chain` (the default: environment, web identity, the
    /// shared file, the container's endpoint, the instance's metadata, first that has them),
    /// or one of `environment`, `web_identity`, `file`, `ecs`, `imds`.
    #[serde(default)]
    pub credential_source: CredentialSource,
    /// Web identity (EKS IRSA and the like): the token file and the role; default
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`.
    #[serde(default)]
    pub web_identity_token_file: Option<PathBuf>,
    #[serde(default)]
    pub web_identity_role_arn: Option<String>,
    /// The instance metadata service (IMDSv2); default `AWS_EC2_METADATA_SERVICE_ENDPOINT`,
    /// else `http://169.254.169.254`.
    #[serde(default)]
    pub imds_endpoint: Option<String>,
    /// The Identity Center instance (`arn:aws:sso:::instance/ssoins-…`), for account assignments.
    #[serde(default)]
    pub instance_arn: Option<String>,
    /// Identity Center user ids by principal (`alice = "9067…"`), for account assignments.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// Seconds before a call is abandoned (default 10).
    #[serde(default = "crate::db::default_timeout")]
    pub timeout_secs: u64,
    /// Seconds to wait for an assignment's provisioning to settle (default 20; with the
    /// timeout, at most half of `server.job_lease`: a call must end inside its job's lease; an
    /// assignment not settled by then is looked at again at the job's next attempt).
    #[serde(default = "default_settle")]
    pub settle_secs: u64,
}

fn default_settle() -> u64 {
    20
}

/// Where an `aws` target's credentials come from.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CredentialSource {
    #[default]
    Chain,
    Environment,
    WebIdentity,
    File,
    Ecs,
    Imds,
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// Keys from the environment.
fn from_env() -> Option<Credentials> {
    let (id, secret) = (env("AWS_ACCESS_KEY_ID")?, env("AWS_SECRET_ACCESS_KEY")?);
    Some(Credentials::new(
        id,
        secret,
        env("AWS_SESSION_TOKEN"),
        None,
        "environment",
    ))
}

/// Credentials JSON as the container endpoint and IMDS answer them.
fn from_json(v: &Value, source: &'static str) -> Option<(Credentials, Option<Timestamp>)> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let creds = Credentials::new(
        s("AccessKeyId")?,
        s("SecretAccessKey")?,
        s("Token"),
        None,
        source,
    );
    Some((
        creds,
        s("Expiration")
            .as_deref()
            .and_then(Timestamp::parse_rfc3339),
    ))
}

/// An entitlement's parameters on an `aws` target: one of the two kinds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    role_arn: Option<String>,
    /// The longest session the role allows (its `MaxSessionDuration`), default 3600.
    #[serde(default)]
    max_session_secs: Option<i64>,
    #[serde(default)]
    permission_set_arn: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
}

enum Kind {
    Role {
        arn: String,
        name: String,
        max: i64,
    },
    Assignment {
        permission_set: String,
        account: String,
    },
}

fn kind(v: &Value) -> Result<Kind, String> {
    let p: Params = serde_json::from_value(v.clone()).map_err(|e| format!("params: {e}"))?;
    match (p.role_arn, p.permission_set_arn, p.account_id) {
        (Some(arn), None, None) => {
            let name = arn
                .strip_prefix("arn:aws:iam::")
                .and_then(|rest| rest.split_once(":role/"))
                .map(|(_, path)| path.rsplit('/').next().unwrap_or(path).to_owned())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("params.role_arn: {arn:?} is not a role ARN"))?;
            let max = p.max_session_secs.unwrap_or(3600);
            if !(MIN_SESSION_SECS..=43_200).contains(&max) {
                return Err("params.max_session_secs: 900 to 43200".into());
            }
            Ok(Kind::Role { arn, name, max })
        }
        (None, Some(ps), Some(account)) => {
            if !ps.starts_with("arn:aws:sso:::permissionSet/") && !ps.contains(":permissionSet/") && !ps.contains("/ps-") {
                return Err(format!("params.permission_set_arn: {ps:?} is not a permission set ARN"));
            }
            if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
                return Err("params.account_id: twelve digits".into());
            }
            Ok(Kind::Assignment { permission_set: ps, account })
        }
        _ => Err(
            "params: either role_arn (a role session), or permission_set_arn with account_id (an Identity Center assignment)"
                .into(),
        ),
    }
}

/// The text of the first `<name>…</name>` in `xml`, unescaped.
fn tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// Every `<member>` of the first `<name>` list in `xml`.
fn members(xml: &str, name: &str) -> Vec<String> {
    let Some(list) = tag(xml, name) else {
        return Vec::new();
    };
    list.split("<member>")
        .skip(1)
        .filter_map(|m| m.split("</member>").next().map(str::to_owned))
        .collect()
}

/// Keys from the shared credentials file; `None` when there is no file.
fn from_file(profile: Option<&str>, file: Option<&PathBuf>) -> Result<Option<Credentials>, String> {
    let Some(file) = file
        .cloned()
        .or_else(|| env("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from))
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))
    else {
        return Ok(None);
    };
    let profile = env("AWS_PROFILE")
        .or(profile.map(str::to_owned))
        .unwrap_or_else(|| "default".into());
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let mut section = String::new();
    let mut keys = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
        } else if section == profile
            && let Some((k, v)) = line.split_once('=')
        {
            keys.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    match (
        keys.remove("aws_access_key_id"),
        keys.remove("aws_secret_access_key"),
    ) {
        (Some(id), Some(secret)) => Ok(Some(Credentials::new(
            id,
            secret,
            keys.remove("aws_session_token"),
            None,
            "shared credentials file",
        ))),
        _ => Err(format!("{}: profile {profile} has no keys", file.display())),
    }
}

/// A connector for one AWS account (and Identity Center instance).
pub struct AwsConnector {
    cfg: AwsConfig,
    http: reqwest::Client,
    /// For the container and instance metadata endpoints (link-local, trusted, quick).
    meta: reqwest::Client,
    clock: Arc<dyn Clock>,
    users: BTreeMap<String, String>,
    /// Credentials fetched from an endpoint, until five minutes before they expire.
    creds: tokio::sync::Mutex<Option<(Credentials, Option<Timestamp>)>>,
}

impl std::fmt::Debug for AwsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsConnector")
            .field("region", &self.cfg.region)
            .finish_non_exhaustive()
    }
}

fn aws_err(op: &str, status: reqwest::StatusCode, body: &str) -> ConnectorError {
    // AWS's error code and message name the problem; never a key or token.
    let code = tag(body, "Code")
        .or_else(|| {
            serde_json::from_str::<Value>(body).ok().and_then(|v| {
                v.get("__type")
                    .and_then(Value::as_str)
                    .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
            })
        })
        .unwrap_or_else(|| status.to_string());
    let message = tag(body, "Message")
        .or_else(|| {
            serde_json::from_str::<Value>(body).ok().and_then(|v| {
                v.get("Message")
                    .or(v.get("message"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        })
        .unwrap_or_default();
    // Some services put the canonical request (with the session token) into a signature
    // error's message: keep only its first line, and nothing of a canonical request.
    let message: String = message
        .lines()
        .next()
        .unwrap_or_default()
        .split("The Canonical String")
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    ConnectorError::new(format!("aws {op}: {code}: {}", message.trim()))
}

impl AwsConnector {
    pub fn new(
        cfg: &AwsConfig,
        entitlements: &[Value],
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        if cfg.region.trim().is_empty() || cfg.region.contains(['/', ' ']) {
            problems.push("region: an AWS region (eu-west-1)".into());
        }
        if let Some(url) = &cfg.endpoint_url
            && let Err(e) = crate::outbound::check_url(url, cfg.allow_private)
        {
            problems.push(format!("endpoint_url: {e}"));
        }
        for (i, p) in entitlements.iter().enumerate() {
            match kind(p) {
                Err(e) => problems.push(format!("entitlement {i}: {e}")),
                Ok(Kind::Assignment { .. }) if cfg.instance_arn.is_none() => problems.push(
                    "instance_arn: account assignments need the Identity Center instance".into(),
                ),
                Ok(_) => {}
            }
        }
        let http = crate::outbound::client(
            cfg.allow_private,
            Duration::from_secs(cfg.timeout_secs.max(1)),
        )
        .map_err(|e| vec![e])?;
        if !problems.is_empty() {
            return Err(problems);
        }
        let meta = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| vec![format!("metadata client: {e}")])?;
        Ok(AwsConnector {
            users: cfg.users.clone(),
            cfg: cfg.clone(),
            http,
            meta,
            clock,
            creds: tokio::sync::Mutex::new(None),
        })
    }

    /// The credentials to sign with, from the configured source (see [`CredentialSource`]).
    async fn credentials(&self) -> Result<Credentials, ConnectorError> {
        use CredentialSource as S;
        let src = self.cfg.credential_source;
        let err = |m: String| ConnectorError::new(format!("aws credentials: {m}"));
        if matches!(src, S::Chain | S::Environment) {
            if let Some(c) = from_env() {
                return Ok(c);
            }
            if src == S::Environment {
                return Err(err(
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set".into(),
                ));
            }
        }
        let now = self.clock.now();
        {
            let cached = self.creds.lock().await;
            if let Some((c, until)) = cached.as_ref()
                && until.is_none_or(|u| u.plus_millis(-300_000) > now)
            {
                return Ok(c.clone());
            }
        }
        let token_file = self
            .cfg
            .web_identity_token_file
            .clone()
            .or_else(|| env("AWS_WEB_IDENTITY_TOKEN_FILE").map(PathBuf::from));
        let role = self
            .cfg
            .web_identity_role_arn
            .clone()
            .or_else(|| env("AWS_ROLE_ARN"));
        let fetched = match (src, token_file, role) {
            (S::Chain | S::WebIdentity, Some(file), Some(role)) => {
                self.web_identity(&file, &role).await?
            }
            (S::WebIdentity, _, _) => {
                return Err(err("no web identity token file and role".into()));
            }
            _ => {
                if matches!(src, S::Chain | S::File)
                    && let Some(c) = from_file(
                        self.cfg.profile.as_deref(),
                        self.cfg.credentials_file.as_ref(),
                    )
                    .map_err(err)?
                {
                    return Ok(c);
                }
                if src == S::File {
                    return Err(err("no shared credentials file".into()));
                }
                let ecs = env("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
                    env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                        .map(|p| format!("http://169.254.170.2{p}"))
                });
                match (src, ecs) {
                    (S::Chain | S::Ecs, Some(url)) => self.container(&url).await?,
                    (S::Ecs, None) => return Err(err("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not set".into())),
                    _ if src == S::Chain && env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) => {
                        return Err(err("none in the environment, web identity, the shared file or the container, and instance metadata is disabled".into()));
                    }
                    _ => self.imds().await.map_err(|e| {
                        err(format!("none in the environment, web identity, the shared file or the container; instance metadata: {}", e.message))
                    })?,
                }
            }
        };
        let creds = fetched.0.clone();
        *self.creds.lock().await = Some(fetched);
        Ok(creds)
    }

    /// `AssumeRoleWithWebIdentity` (unsigned), with the token read from `file`.
    async fn web_identity(
        &self,
        file: &PathBuf,
        role: &str,
    ) -> Result<(Credentials, Option<Timestamp>), ConnectorError> {
        let token = std::fs::read_to_string(file).map_err(|e| {
            ConnectorError::new(format!("aws web identity: {}: {e}", file.display()))
        })?;
        let body = {
            let mut f = url::form_urlencoded::Serializer::new(String::new());
            f.append_pair("Action", "AssumeRoleWithWebIdentity")
                .append_pair("Version", "2011-06-15")
                .append_pair("RoleArn", role)
                .append_pair("RoleSessionName", "hourglass")
                .append_pair("WebIdentityToken", token.trim());
            f.finish()
        };
        let resp = self
            .http
            .post(format!("{}/", self.endpoint("sts")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| ConnectorError::new(format!("aws web identity: {}", e.without_url())))?;
        let status = resp.status();
        let xml = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(aws_err("AssumeRoleWithWebIdentity", status, &xml));
        }
        let f = |n: &str| {
            tag(&xml, n).ok_or_else(|| ConnectorError::new(format!("aws web identity: no {n}")))
        };
        Ok((
            Credentials::new(
                f("AccessKeyId")?,
                f("SecretAccessKey")?,
                Some(f("SessionToken")?),
                None,
                "web identity",
            ),
            tag(&xml, "Expiration")
                .as_deref()
                .and_then(Timestamp::parse_rfc3339),
        ))
    }

    /// The container credentials endpoint (ECS, EKS Pod Identity).
    async fn container(
        &self,
        url: &str,
    ) -> Result<(Credentials, Option<Timestamp>), ConnectorError> {
        let mut req = self.meta.get(url);
        let auth = env("AWS_CONTAINER_AUTHORIZATION_TOKEN").or_else(|| {
            env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                .and_then(|f| std::fs::read_to_string(f).ok())
                .map(|t| t.trim().to_owned())
        });
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let v: Value = req
            .send()
            .await
            .map_err(|e| {
                ConnectorError::new(format!("aws container credentials: {}", e.without_url()))
            })?
            .json()
            .await
            .map_err(|_| ConnectorError::new("aws container credentials: not JSON"))?;
        from_json(&v, "container")
            .ok_or_else(|| ConnectorError::new("aws container credentials: no keys in the answer"))
    }

    /// The instance's role credentials through IMDSv2 (a session token first).
    async fn imds(&self) -> Result<(Credentials, Option<Timestamp>), ConnectorError> {
        let base = self
            .cfg
            .imds_endpoint
            .clone()
            .or_else(|| env("AWS_EC2_METADATA_SERVICE_ENDPOINT"))
            .unwrap_or_else(|| "http://169.254.169.254".into());
        let base = base.trim_end_matches('/');
        let failed = |e: reqwest::Error| ConnectorError::new(format!("IMDS: {}", e.without_url()));
        let token = self
            .meta
            .put(format!("{base}/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .send()
            .await
            .map_err(failed)?
            .error_for_status()
            .map_err(failed)?
            .text()
            .await
            .map_err(failed)?;
        let get = |path: String| {
            self.meta
                .get(format!(
                    "{base}/latest/meta-data/iam/security-credentials/{path}"
                ))
                .header("x-aws-ec2-metadata-token", token.trim())
                .send()
        };
        let role = get(String::new())
            .await
            .map_err(failed)?
            .error_for_status()
            .map_err(failed)?
            .text()
            .await
            .map_err(failed)?;
        let role = role.lines().next().unwrap_or_default().trim().to_owned();
        if role.is_empty() {
            return Err(ConnectorError::new("IMDS: the instance has no role"));
        }
        let v: Value = get(role)
            .await
            .map_err(failed)?
            .json()
            .await
            .map_err(|_| ConnectorError::new("IMDS: not JSON"))?;
        from_json(&v, "instance metadata")
            .ok_or_else(|| ConnectorError::new("IMDS: no keys in the answer"))
    }

    fn endpoint(&self, service: &str) -> String {
        match &self.cfg.endpoint_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None if service == "iam" => "https://iam.amazonaws.com".into(),
            None => format!("https://{service}.{}.amazonaws.com", self.cfg.region),
        }
    }

    /// One signed call: `body` with `headers`, to `service` (its signing name); the answer's
    /// text, or an error naming AWS's code.
    async fn call(
        &self,
        op: &str,
        service: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Result<String, ConnectorError> {
        let url = format!("{}/", self.endpoint(service));
        let creds = self.credentials().await?;
        let identity = creds.into();
        let millis = u64::try_from(self.clock.now().unix_millis()).unwrap_or(0);
        let time = std::time::UNIX_EPOCH + Duration::from_millis(millis);
        // IAM is global and signs in us-east-1.
        let region = if service == "iam" {
            "us-east-1"
        } else {
            self.cfg.region.as_str()
        };
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| ConnectorError::new(format!("aws {op}: signing: {e}")))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            &url,
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| ConnectorError::new(format!("aws {op}: signing: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| ConnectorError::new(format!("aws {op}: signing: {e}")))?
            .into_parts();
        let mut req = self.http.post(&url).body(body);
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        for (k, v) in instructions.headers() {
            req = req.header(k, v);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ConnectorError::new(format!("aws {op}: {}", e.without_url())))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| ConnectorError::new(format!("aws {op}: {}", e.without_url())))?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(aws_err(op, status, &text))
        }
    }

    /// An IAM or STS query API call.
    async fn query(
        &self,
        service: &str,
        action: &str,
        args: &[(&str, &str)],
    ) -> Result<String, ConnectorError> {
        let version = if service == "sts" {
            "2011-06-15"
        } else {
            "2010-05-08"
        };
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", action)
                .append_pair("Version", version);
            for (k, v) in args {
                form.append_pair(k, v);
            }
            form.finish()
        };
        self.call(
            action,
            service,
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            )],
            body,
        )
        .await
    }

    /// An SSO Admin (JSON 1.1) call.
    async fn sso(&self, action: &str, body: Value) -> Result<Value, ConnectorError> {
        let text = self
            .call(
                action,
                "sso",
                &[
                    ("content-type", "application/x-amz-json-1.1".into()),
                    ("x-amz-target", format!("SWBExternalService.{action}")),
                ],
                body.to_string(),
            )
            .await?;
        serde_json::from_str(&text)
            .map_err(|_| ConnectorError::new(format!("aws {action}: the answer is not JSON")))
    }

    fn user_of(&self, spec: &GrantSpec) -> Result<&str, ConnectorError> {
        self.users
            .get(spec.principal.as_str())
            .map(String::as_str)
            .ok_or_else(|| {
                ConnectorError::new(format!(
                    "{} has no Identity Center user id in this target's users",
                    spec.principal
                ))
            })
    }

    /// Waits for an assignment request to settle (`SUCCEEDED`), polling its status every second
    /// for at most `settle_secs` of wall time (each call bounded by the timeout).
    async fn settle(
        &self,
        describe: &str,
        field: &str,
        id_field: &str,
        request_id: &str,
    ) -> Result<(), ConnectorError> {
        let instance = self.cfg.instance_arn.clone().unwrap_or_default();
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.cfg.settle_secs.max(1));
        while tokio::time::Instant::now() < deadline {
            let v = self
                .sso(
                    describe,
                    json!({"InstanceArn": instance, id_field: request_id}),
                )
                .await?;
            match v[field]["Status"].as_str() {
                Some("SUCCEEDED") => return Ok(()),
                Some("FAILED") => {
                    return Err(ConnectorError::new(format!(
                        "aws {describe}: FAILED: {}",
                        v[field]["FailureReason"]
                            .as_str()
                            .unwrap_or("no reason given")
                    )));
                }
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        Err(ConnectorError::new(format!(
            "aws {describe}: still in progress after {}s",
            self.cfg.settle_secs
        )))
    }

    async fn assignment(&self, spec: &GrantSpec, create: bool) -> Result<(), ConnectorError> {
        let Kind::Assignment {
            permission_set,
            account,
        } = kind(&spec.params).map_err(ConnectorError::new)?
        else {
            return Err(ConnectorError::new("not an assignment"));
        };
        let body = json!({
            "InstanceArn": self.cfg.instance_arn,
            "TargetId": account,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": permission_set,
            "PrincipalType": "USER",
            "PrincipalId": self.user_of(spec)?,
        });
        if create {
            let v = self.sso("CreateAccountAssignment", body).await?;
            let id = v["AccountAssignmentCreationStatus"]["RequestId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.settle(
                "DescribeAccountAssignmentCreationStatus",
                "AccountAssignmentCreationStatus",
                "AccountAssignmentCreationRequestId",
                &id,
            )
            .await
        } else {
            let v = match self.sso("DeleteAccountAssignment", body).await {
                Ok(v) => v,
                Err(e) if e.message.contains("ResourceNotFound") => return Ok(()),
                Err(e) => return Err(e),
            };
            let id = v["AccountAssignmentDeletionStatus"]["RequestId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.settle(
                "DescribeAccountAssignmentDeletionStatus",
                "AccountAssignmentDeletionStatus",
                "AccountAssignmentDeletionRequestId",
                &id,
            )
            .await
        }
    }

    async fn assigned(&self, spec: &GrantSpec) -> Result<bool, ConnectorError> {
        let Kind::Assignment {
            permission_set,
            account,
        } = kind(&spec.params).map_err(ConnectorError::new)?
        else {
            return Err(ConnectorError::new("not an assignment"));
        };
        let user = self.user_of(spec)?;
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "InstanceArn": self.cfg.instance_arn,
                "AccountId": account,
                "PermissionSetArn": permission_set,
            });
            if let Some(t) = &token {
                body["NextToken"] = json!(t);
            }
            let v = self.sso("ListAccountAssignments", body).await?;
            if v["AccountAssignments"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["PrincipalType"] == "USER" && a["PrincipalId"].as_str() == Some(user))
            {
                return Ok(true);
            }
            match v["NextToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(false),
            }
        }
    }

    /// The statements of the inline policy `policy` on `role`, or none.
    async fn policy_statements(
        &self,
        role: &str,
        policy: &str,
    ) -> Result<Vec<Value>, ConnectorError> {
        let xml = match self
            .query(
                "iam",
                "GetRolePolicy",
                &[("RoleName", role), ("PolicyName", policy)],
            )
            .await
        {
            Ok(x) => x,
            Err(e) if e.message.contains("NoSuchEntity") => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let doc = tag(&xml, "PolicyDocument").unwrap_or_default();
        let doc = url::form_urlencoded::parse(format!("d={doc}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let v: Value = serde_json::from_str(&doc).map_err(|_| {
            ConnectorError::new(format!("aws GetRolePolicy: {policy} on {role} is not JSON"))
        })?;
        Ok(v["Statement"].as_array().cloned().unwrap_or_default())
    }

    /// The revocation policies on `role` (one a grant), by name.
    async fn revocation_policies(&self, role: &str) -> Result<Vec<String>, ConnectorError> {
        let xml = self
            .query("iam", "ListRolePolicies", &[("RoleName", role)])
            .await?;
        Ok(members(&xml, "PolicyNames")
            .into_iter()
            .filter(|p| p.starts_with(REVOKE_POLICY))
            .collect())
    }

    /// Every revocation statement on `role`.
    #[cfg(test)]
    async fn revocations(&self, role: &str) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        for p in self.revocation_policies(role).await? {
            out.extend(self.policy_statements(role, &p).await?);
        }
        Ok(out)
    }

    /// Drops the revocation policies on `role` whose sessions have all expired (AWS's longest
    /// role session, plus five minutes, after the revocation), other than `keep`. A failure
    /// leaves them for the next revocation: it never fails this one.
    async fn prune(&self, role: &str, keep: &str) {
        let now = self.clock.now();
        let policies = match self.revocation_policies(role).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(role, error = %e.message, "listing revocation policies failed");
                return;
            }
        };
        for p in policies.into_iter().filter(|p| p != keep) {
            let old = match self.policy_statements(role, &p).await {
                Ok(st) => st.iter().all(|s| {
                    s["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
                        .as_str()
                        .and_then(Timestamp::parse_rfc3339)
                        .is_some_and(|issued| {
                            now.millis_since(issued) > (MAX_SESSION_SECS + 300) * 1000
                        })
                }),
                Err(_) => false,
            };
            if old
                && let Err(e) = self
                    .query(
                        "iam",
                        "DeleteRolePolicy",
                        &[("RoleName", role), ("PolicyName", &p)],
                    )
                    .await
                && !e.message.contains("NoSuchEntity")
            {
                tracing::warn!(role, policy = %p, error = %e.message, "dropping an expired revocation failed");
            }
        }
    }
}

/// AWS's longest role session.
const MAX_SESSION_SECS: i64 = 43_200;

/// The inline policy that holds one grant's revocation.
fn policy_name(spec: &GrantSpec) -> String {
    format!("{REVOKE_POLICY}-{}", spec.grant_id)
}

/// The statement id of a grant's revocation (`Sid` is alphanumeric).
fn sid(spec: &GrantSpec) -> String {
    let id: String = spec
        .grant_id
        .as_str()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("Revoke{id}")
}

#[async_trait]
impl Connector for AwsConnector {
    async fn grant(&self, spec: &GrantSpec) -> Result<Provisioned, ConnectorError> {
        match kind(&spec.params).map_err(ConnectorError::new)? {
            Kind::Role { arn, name, max } => {
                let left = spec.expires_at.millis_since(self.clock.now()) / 1000;
                let secs = left.clamp(MIN_SESSION_SECS, max).to_string();
                let xml = self
                    .query(
                        "sts",
                        "AssumeRole",
                        &[
                            ("RoleArn", &arn),
                            ("RoleSessionName", spec.grant_id.as_str()),
                            ("DurationSeconds", &secs),
                        ],
                    )
                    .await?;
                let field = |n: &str| {
                    tag(&xml, n).ok_or_else(|| {
                        ConnectorError::new(format!("aws AssumeRole: no {n} in the answer"))
                    })
                };
                let credential = json!({
                    "Version": 1,
                    "AccessKeyId": field("AccessKeyId")?,
                    "SecretAccessKey": field("SecretAccessKey")?,
                    "SessionToken": field("SessionToken")?,
                    "Expiration": field("Expiration")?,
                });
                Ok(Provisioned {
                    handle: Some(
                        json!({"role": name, "session": spec.grant_id.as_str(), "assumed_role_id": tag(&xml, "AssumedRoleId")}),
                    ),
                    credential: Some(SecretString::from(credential.to_string())),
                })
            }
            Kind::Assignment { .. } => {
                self.assignment(spec, true).await?;
                Ok(Provisioned::default())
            }
        }
    }

    async fn revoke(&self, spec: &GrantSpec) -> Result<(), ConnectorError> {
        match kind(&spec.params).map_err(ConnectorError::new)? {
            Kind::Role { name, .. } => {
                // One policy per revoked grant: two revocations on the same role never write
                // over each other.
                let now = self.clock.now();
                let policy = policy_name(spec);
                let doc = json!({"Version": "2012-10-17", "Statement": [{
                    "Sid": sid(spec),
                    "Effect": "Deny",
                    "Action": "*",
                    "Resource": "*",
                    "Condition": {
                        "StringLike": {"aws:userid": format!("*:{}", spec.grant_id.as_str())},
                        "DateLessThan": {"aws:TokenIssueTime": now.to_string()},
                    },
                }]})
                .to_string();
                if self.policy_statements(&name, &policy).await?.is_empty() {
                    self.query(
                        "iam",
                        "PutRolePolicy",
                        &[
                            ("RoleName", &name),
                            ("PolicyName", &policy),
                            ("PolicyDocument", &doc),
                        ],
                    )
                    .await?;
                }
                self.prune(&name, &policy).await;
                Ok(())
            }
            Kind::Assignment { .. } => self.assignment(spec, false).await,
        }
    }

    async fn inspect(&self, spec: &GrantSpec) -> Result<Presence, ConnectorError> {
        match kind(&spec.params).map_err(ConnectorError::new)? {
            Kind::Role { name, .. } => {
                let cut = self
                    .policy_statements(&name, &policy_name(spec))
                    .await?
                    .iter()
                    .any(|s| s["Sid"] == sid(spec).as_str());
                Ok(
                    if cut || spec.expires_at <= self.clock.now() && spec.handle.is_none() {
                        Presence::Absent
                    } else {
                        Presence::Present
                    },
                )
            }
            Kind::Assignment { .. } => Ok(if self.assigned(spec).await? {
                Presence::Present
            } else {
                Presence::Absent
            }),
        }
    }

    async fn prove_revoked(&self, spec: &GrantSpec) -> Result<RevocationProof, ConnectorError> {
        match kind(&spec.params).map_err(ConnectorError::new)? {
            Kind::Role { name, .. } => {
                let id = sid(spec);
                let found = self
                    .policy_statements(&name, &policy_name(spec))
                    .await?
                    .into_iter()
                    .find(|s| s["Sid"] == id.as_str());
                match found {
                    Some(s) if s["Effect"] == "Deny" => Ok(RevocationProof::Verified {
                        checked: format!(
                            "role {name}'s inline policy {} denies every action to sessions named {} issued before {} (GetRolePolicy)",
                            policy_name(spec),
                            spec.grant_id,
                            s["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
                                .as_str()
                                .unwrap_or("?")
                        ),
                    }),
                    _ => Err(ConnectorError::new(format!(
                        "role {name} has no deny for sessions named {}",
                        spec.grant_id
                    ))),
                }
            }
            Kind::Assignment { .. } => {
                if self.assigned(spec).await? {
                    Err(ConnectorError::new("the account assignment is still there"))
                } else {
                    Ok(RevocationProof::Verified {
                        checked: "the account assignment is gone (ListAccountAssignments); Identity Center portal sessions already open last until their session duration".into(),
                    })
                }
            }
        }
    }

    /// Who holds `AdministratorAccess` in the account (users, groups, roles).
    async fn discover(&self) -> Result<Vec<Holding>, ConnectorError> {
        let xml = self
            .query(
                "iam",
                "ListEntitiesForPolicy",
                &[("PolicyArn", "arn:aws:iam::aws:policy/AdministratorAccess")],
            )
            .await?;
        let mut out = Vec::new();
        for (list, name, kind) in [
            ("PolicyUsers", "UserName", "user"),
            ("PolicyGroups", "GroupName", "group"),
            ("PolicyRoles", "RoleName", "role"),
        ] {
            for m in members(&xml, list) {
                if let Some(n) = tag(&m, name) {
                    out.push(Holding {
                        principal: None,
                        entitlement: None,
                        holder: format!("{kind}/{n}"),
                        privilege: "AdministratorAccess".into(),
                        grant_id: None,
                    });
                }
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
