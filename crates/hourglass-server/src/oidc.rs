//! Single sign-on with an OpenID Connect provider: the authorization code flow with PKCE (S256),
//! `state` and `nonce`, and the ID token verified against the provider's discovered keys, issuer
//! and client id, on the server's clock (`openidconnect` does the verification; this module
//! holds the settings, the login binding and the claim mapping).
//!
//! A login in flight is held by the browser, not the server: a short-lived cookie with a random
//! secret, the time it started, whether it is a step-up, and where to go after. `state`, `nonce`
//! and the PKCE verifier are digests of that cookie under their own labels, so:
//! - a callback whose `state` is not that of the browser's own login cookie is refused (a forged
//!   state, or a login started in another browser);
//! - nothing secret about a login is stored, and any replica can finish a login another started;
//! - tampering with the cookie (its start time, its return address) changes the `state`.
//!
//! A finished login is remembered (by its `state`) in the ledger's token uses until the login
//! would have expired, so that the same callback replayed is refused on every replica.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hourglass_core::{Clock, Timestamp, identity::TokenUse};
use openidconnect::{
    AsyncHttpClient, AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, EndSessionUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    LogoutRequest, Nonce, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse,
    core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::config::OidcConfig;

/// How long a login may take, from the sign-in button to the callback.
pub const LOGIN_SECS: i64 = 600;
/// How long discovered metadata and keys are used before they are fetched again.
const REDISCOVER_AFTER_MS: i64 = 3_600_000;
/// The largest response read from the provider.
const MAX_RESPONSE: usize = 1 << 20;
/// The `issuer` under which finished logins are remembered in the token uses.
const LOGIN_USES: &str = "oidc-login";

type Rp = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The settings of `[web.oidc]`, checked.
pub struct OidcSettings {
    issuer: IssuerUrl,
    client_id: ClientId,
    secret: Option<SecretString>,
    redirect: RedirectUrl,
    /// Where the provider returns after its sign-out: this server's sign-in page.
    after_logout: PostLogoutRedirectUrl,
    scopes: Vec<String>,
    name_claim: NameClaim,
    groups_claim: Option<String>,
    mfa_amr: Vec<String>,
    mfa_acr: Vec<String>,
    step_up_acr: Option<String>,
    pub create_people: bool,
    algorithms: Vec<CoreJwsSigningAlgorithm>,
    pub label: String,
    logout_at_provider: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameClaim {
    PreferredUsername,
    Email,
    Subject,
}

impl OidcSettings {
    /// Checks `[web.oidc]`; `public_url` is `notifications.public_url`, the default base of the
    /// redirect. Every problem is returned.
    pub fn from_config(
        c: &OidcConfig,
        public_url: Option<&str>,
        secret: Option<SecretString>,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let issuer = IssuerUrl::new(c.issuer.clone())
            .map_err(|e| problems.push(format!("issuer: {e}")))
            .ok();
        if c.client_id.trim().is_empty() {
            problems.push("client_id: empty".into());
        }
        let redirect = match (&c.redirect_url, public_url) {
            (Some(r), _) => r.clone(),
            (None, Some(p)) => format!("{}/signin/callback", p.trim_end_matches('/')),
            (None, None) => {
                problems.push(
                    "redirect_url: give it (this server's /signin/callback), or notifications.public_url"
                        .into(),
                );
                String::new()
            }
        };
        let redirect_parsed = url::Url::parse(&redirect).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https") && u.path().ends_with("/signin/callback")
        });
        if redirect_parsed.is_none() && !redirect.is_empty() {
            problems.push(format!(
                "redirect_url: {redirect:?} is not an http(s) URL ending in /signin/callback"
            ));
        }
        let name_claim = match c.name_claim.as_str() {
            "preferred_username" => NameClaim::PreferredUsername,
            "email" => NameClaim::Email,
            "sub" => NameClaim::Subject,
            other => {
                problems.push(format!(
                    "name_claim: {other:?}: use preferred_username, email or sub"
                ));
                NameClaim::Subject
            }
        };
        let mut algorithms = Vec::new();
        for a in &c.algorithms {
            match serde_json::from_value::<CoreJwsSigningAlgorithm>(serde_json::Value::String(
                a.clone(),
            )) {
                Ok(CoreJwsSigningAlgorithm::None) | Err(_) => problems.push(format!(
                    "algorithms: {a:?} is not an asymmetric signature algorithm (RS256, ES256, EdDSA, …)"
                )),
                Ok(
                    CoreJwsSigningAlgorithm::HmacSha256
                    | CoreJwsSigningAlgorithm::HmacSha384
                    | CoreJwsSigningAlgorithm::HmacSha512,
                ) => problems.push(format!(
                    "algorithms: {a:?} signs with the client secret; use the provider's keys (RS256, ES256, …)"
                )),
                Ok(alg) => algorithms.push(alg),
            }
        }
        if c.algorithms.is_empty() {
            problems.push("algorithms: at least one".into());
        }
        let (Some(issuer), Some(redirect_url)) = (issuer, redirect_parsed) else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut after_logout = redirect_url.clone();
        after_logout.set_path(&format!(
            "{}/signin",
            redirect_url.path().trim_end_matches("/signin/callback")
        ));
        Ok(OidcSettings {
            issuer,
            client_id: ClientId::new(c.client_id.trim().to_owned()),
            secret,
            redirect: RedirectUrl::from_url(redirect_url),
            after_logout: PostLogoutRedirectUrl::from_url(after_logout),
            scopes: c
                .scopes
                .iter()
                .filter(|s| s.as_str() != "openid")
                .cloned()
                .collect(),
            name_claim,
            groups_claim: c.groups_claim.clone(),
            mfa_amr: c.mfa_amr.clone(),
            mfa_acr: c.mfa_acr.clone(),
            step_up_acr: c.step_up_acr.clone(),
            create_people: c.create_people,
            algorithms,
            label: c.label.clone(),
            logout_at_provider: c.logout_at_provider,
        })
    }
}

/// An HTTP client for `openidconnect` over the project's `reqwest`: no redirects followed, a
/// timeout, and responses capped in size.
struct Http(reqwest::Client);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let req = reqwest::Request::try_from(request).map_err(|e| HttpError(e.to_string()))?;
            let mut resp = self
                .0
                .execute(req)
                .await
                .map_err(|e| HttpError(format!("the provider did not answer: {e}")))?;
            let mut out = http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                out = out.header(k, v);
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| HttpError(format!("reading the provider's answer: {e}")))?
            {
                if body.len() + chunk.len() > MAX_RESPONSE {
                    return Err(HttpError("the provider's answer is too large".into()));
                }
                body.extend_from_slice(&chunk);
            }
            out.body(body).map_err(|e| HttpError(e.to_string()))
        })
    }
}

struct Discovered {
    client: Rp,
    end_session: Option<EndSessionUrl>,
    at: Timestamp,
}

/// A login in flight, as its cookie holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The whole cookie value (the secret the digests are made from).
    cookie: String,
    started: Timestamp,
    pub step_up: bool,
    pub return_to: String,
}

impl Login {
    fn new(started: Timestamp, step_up: bool, return_to: &str) -> Result<Self, String> {
        let secret = hourglass_core::id::random_hex::<32>().map_err(|e| e.to_string())?;
        let return_to = local_path(return_to);
        let cookie = format!(
            "{secret}.{}.{}.{}",
            started.unix_millis(),
            if step_up { "s" } else { "-" },
            URL_SAFE_NO_PAD.encode(return_to.as_bytes())
        );
        Ok(Login {
            cookie,
            started,
            step_up,
            return_to,
        })
    }

    /// Reads a login cookie back (no judgement of its age or state here).
    pub fn parse(cookie: &str) -> Option<Self> {
        let mut parts = cookie.split('.');
        let (secret, started, flag, to) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || secret.len() != 64 {
            return None;
        }
        let started = Timestamp::from_unix_millis(started.parse().ok()?);
        let return_to = String::from_utf8(URL_SAFE_NO_PAD.decode(to).ok()?).ok()?;
        Some(Login {
            cookie: cookie.to_owned(),
            started,
            step_up: flag == "s",
            return_to: local_path(&return_to),
        })
    }

    pub fn cookie_value(&self) -> &str {
        &self.cookie
    }

    fn derive(&self, label: &str) -> String {
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update(b"\0");
        h.update(self.cookie.as_bytes());
        URL_SAFE_NO_PAD.encode(h.finalize())
    }

    /// The `state` sent to the provider.
    pub fn state(&self) -> String {
        self.derive("state")
    }

    fn nonce(&self) -> Nonce {
        Nonce::new(self.derive("nonce"))
    }

    fn pkce_verifier(&self) -> PkceCodeVerifier {
        PkceCodeVerifier::new(self.derive("pkce"))
    }

    /// The login as the ledger remembers it once finished (by its state, until it expires).
    pub fn used(&self) -> TokenUse {
        TokenUse {
            issuer: LOGIN_USES.into(),
            jti: self.state(),
            expires_at: self.expires_at(),
        }
    }

    /// Until when the login is valid (and, once finished, remembered).
    pub fn expires_at(&self) -> Timestamp {
        self.started.plus_millis(LOGIN_SECS * 1000)
    }
}

/// `to` if it is a path on this server, else `/`.
pub(crate) fn local_path(to: &str) -> String {
    let ok = to.starts_with('/')
        && !to.starts_with("//")
        && !to.contains('\\')
        && !to.chars().any(char::is_control)
        && to.len() <= 512;
    if ok { to.to_owned() } else { "/".to_owned() }
}

/// Who the provider vouched for.
#[derive(Debug, Clone)]
pub struct Vouched {
    pub name: String,
    pub subject: String,
    pub groups: Vec<String>,
    pub mfa: bool,
    /// The login, to be used once.
    pub login: TokenUse,
    pub return_to: String,
}

/// Why a login was refused: a code for the audit and a reason to show.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: &'static str,
    pub reason: String,
    /// The provider could not be reached (a 503, not a 400).
    pub unavailable: bool,
}

fn refusal(code: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
        unavailable: false,
    }
}

/// The configured provider, discovered on first use (so that the server starts, and API keys
/// and break-glass work, while the provider is down).
pub struct Oidc {
    pub settings: OidcSettings,
    http: Http,
    clock: Arc<dyn Clock>,
    discovered: tokio::sync::Mutex<Option<Arc<Discovered>>>,
    /// When discovery last failed: for a while after, sign-ins are refused at once instead of
    /// each waiting on the provider.
    failed_at: std::sync::Mutex<Option<Timestamp>>,
}

/// How long after a failed discovery sign-ins are refused without asking the provider again.
const RETRY_DISCOVERY_MS: i64 = 15_000;

impl Oidc {
    pub fn new(settings: OidcSettings, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Oidc {
            settings,
            http: Http(http),
            clock,
            discovered: tokio::sync::Mutex::new(None),
            failed_at: std::sync::Mutex::new(None),
        })
    }

    pub fn issuer(&self) -> &str {
        self.settings.issuer.as_str()
    }

    /// The provider's origin (`scheme://host[:port]`), which its sign-out redirect goes to.
    pub fn origin(&self) -> String {
        self.settings.issuer.url().origin().ascii_serialization()
    }

    /// The provider's metadata and keys: cached, fetched again after an hour or when `fresh`.
    async fn provider(&self, fresh: bool) -> Result<Arc<Discovered>, Refusal> {
        let unavailable = |why: String| Refusal {
            code: "sign_in.provider_unavailable",
            reason: format!(
                "the identity provider cannot be reached or answered wrongly ({why}); API keys still work"
            ),
            unavailable: true,
        };
        let now = self.clock.now();
        let recently_failed = self
            .failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| now < t.plus_millis(RETRY_DISCOVERY_MS));
        let mut d = self.discovered.lock().await;
        if let Some(have) = d.as_ref()
            && !fresh
            && now < have.at.plus_millis(REDISCOVER_AFTER_MS)
        {
            return Ok(Arc::clone(have));
        }
        if recently_failed && d.is_none() {
            return Err(unavailable("it failed moments ago".into()));
        }
        let meta = match ProviderMetadataWithLogout::discover_async(
            self.settings.issuer.clone(),
            &self.http,
        )
        .await
        {
            Ok(m) => m,
            Err(e) => {
                *self
                    .failed_at
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now);
                return Err(unavailable(error_chain(&e)));
            }
        };
        let end_session = meta.additional_metadata().end_session_endpoint.clone();
        let client = CoreClient::from_provider_metadata(
            meta,
            self.settings.client_id.clone(),
            self.settings
                .secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose_secret().to_owned())),
        )
        .set_redirect_uri(self.settings.redirect.clone());
        let found = Arc::new(Discovered {
            client,
            end_session,
            at: self.clock.now(),
        });
        *d = Some(Arc::clone(&found));
        Ok(found)
    }

    /// Starts a login: the provider's authorization URL and the login (for its cookie).
    /// A step-up asks for a fresh sign-in (`max_age=0`, `prompt=login`) with the MFA `acr`.
    pub async fn begin(&self, return_to: &str, step_up: bool) -> Result<(String, Login), Refusal> {
        let p = self.provider(false).await?;
        let login = Login::new(self.clock.now(), step_up, return_to)
            .map_err(|e| refusal("sign_in.internal", e))?;
        let state = login.state();
        let nonce = login.nonce();
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&login.pkce_verifier());
        let mut req = p
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || nonce,
            )
            .set_pkce_challenge(challenge);
        for s in &self.settings.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        if step_up {
            req = req
                .set_max_age(Duration::ZERO)
                .add_prompt(openidconnect::core::CoreAuthPrompt::Login);
            if let Some(acr) = &self.settings.step_up_acr {
                req = req.add_auth_context_value(AuthenticationContextClass::new(acr.clone()));
            }
        }
        let (url, _, _) = req.url();
        Ok((url.to_string(), login))
    }

    /// Finishes a login: checks the `state` against the browser's login, trades the code (with
    /// the PKCE verifier) for tokens, verifies the ID token and maps its claims.
    pub async fn finish(
        &self,
        login: Option<&Login>,
        state: &str,
        code: &str,
    ) -> Result<Vouched, Refusal> {
        let Some(login) = login else {
            return Err(refusal(
                "sign_in.no_login",
                "this browser has no sign-in in progress (it started elsewhere, or its cookie was lost); start again",
            ));
        };
        if !hourglass_core::engine::same_digest(&login.state(), state) {
            return Err(refusal(
                "sign_in.state_mismatch",
                "the sign-in's state does not belong to this browser's sign-in; start again",
            ));
        }
        let now = self.clock.now();
        if now >= login.expires_at() || login.started > now.plus_millis(60_000) {
            return Err(refusal(
                "sign_in.login_expired",
                "the sign-in took too long; start again",
            ));
        }
        let p = self.provider(false).await?;
        let tokens = p
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| refusal("sign_in.provider_config", e.to_string()))?
            .set_pkce_verifier(login.pkce_verifier())
            .request_async(&self.http)
            .await
            .map_err(|e| {
                refusal(
                    "sign_in.code_refused",
                    format!(
                        "the identity provider would not trade the sign-in code: {}",
                        error_chain(&e)
                    ),
                )
            })?;
        let id_token = tokens.id_token().ok_or_else(|| {
            refusal(
                "sign_in.no_id_token",
                "the identity provider sent no ID token",
            )
        })?;
        let verify = |p: &Discovered| {
            let clock = Arc::clone(&self.clock);
            let started = login.started;
            let step_up = login.step_up;
            let verifier = p
                .client
                .id_token_verifier()
                .set_allowed_algs(self.settings.algorithms.clone())
                .set_time_fn(move || {
                    chrono::DateTime::from_timestamp_millis(clock.now().unix_millis())
                        .unwrap_or_default()
                })
                .set_auth_time_verifier_fn(move |at| {
                    if !step_up {
                        return Ok(());
                    }
                    // max_age=0: the person signed in again after this login began.
                    match at {
                        Some(at) if at.timestamp_millis() >= started.unix_millis() - 5_000 => {
                            Ok(())
                        }
                        Some(_) => Err("the provider did not ask for the sign-in again".into()),
                        None => Err("the provider did not say when the person signed in".into()),
                    }
                });
            id_token.claims(&verifier, &login.nonce()).cloned()
        };
        let claims = match verify(&p) {
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
                // The provider may have rotated its keys since we fetched them.
                let fresh = self.provider(true).await?;
                verify(&fresh)
            }
            other => other,
        }
        .map_err(|e| {
            refusal(
                verification_code(&e),
                format!("the ID token was refused: {e}"),
            )
        })?;
        let payload = raw_payload(&id_token.to_string());
        let name = match self.settings.name_claim {
            NameClaim::Subject => claims.subject().to_string(),
            NameClaim::PreferredUsername => claims
                .preferred_username()
                .map(|u| u.to_string())
                .ok_or_else(|| {
                    refusal(
                        "sign_in.no_name",
                        "the ID token has no preferred_username claim (name_claim)",
                    )
                })?,
            NameClaim::Email => {
                if claims.email_verified() != Some(true) {
                    return Err(refusal(
                        "sign_in.email_unverified",
                        "the identity provider has not verified this email address",
                    ));
                }
                claims.email().map(|e| e.to_string()).ok_or_else(|| {
                    refusal(
                        "sign_in.no_name",
                        "the ID token has no email claim (name_claim)",
                    )
                })?
            }
        };
        let groups = self
            .settings
            .groups_claim
            .as_ref()
            .and_then(|g| payload.get(g))
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let amr_mfa = claims.auth_method_refs().is_some_and(|amr| {
            amr.iter()
                .any(|m| self.settings.mfa_amr.iter().any(|k| k == m.as_str()))
        });
        let acr_mfa = claims
            .auth_context_ref()
            .is_some_and(|acr| self.settings.mfa_acr.iter().any(|k| k == acr.as_str()));
        let mfa = amr_mfa || acr_mfa;
        if login.step_up && !mfa {
            return Err(refusal(
                "sign_in.step_up_without_mfa",
                "the approval needs a sign-in with a second factor, and the identity provider did not report one",
            ));
        }
        Ok(Vouched {
            name,
            subject: claims.subject().to_string(),
            groups,
            mfa,
            login: login.used(),
            return_to: login.return_to.clone(),
        })
    }

    /// Where to send a person after sign-out here: the provider's sign-out (RP-initiated
    /// logout), when it offers one and it is wanted. Never fetches the metadata for this.
    pub async fn logout_url(&self) -> Option<String> {
        if !self.settings.logout_at_provider {
            return None;
        }
        let d = self.discovered.lock().await;
        let end = d.as_ref()?.end_session.clone()?;
        Some(
            LogoutRequest::from(end)
                .set_client_id(self.settings.client_id.clone())
                .set_post_logout_redirect_uri(self.settings.after_logout.clone())
                .http_get_url()
                .to_string(),
        )
    }
}

/// The audit code of an ID-token refusal.
fn verification_code(e: &openidconnect::ClaimsVerificationError) -> &'static str {
    use openidconnect::ClaimsVerificationError as E;
    match e {
        E::Expired(_) => "sign_in.token_expired",
        E::InvalidAudience(_) => "sign_in.wrong_audience",
        E::InvalidIssuer(_) => "sign_in.wrong_issuer",
        E::InvalidNonce(_) => "sign_in.wrong_nonce",
        E::SignatureVerification(_) => "sign_in.bad_signature",
        E::InvalidAuthTime(_) => "sign_in.not_fresh",
        _ => "sign_in.token_invalid",
    }
}

/// The JSON payload of a compact JWT whose signature was already verified (for claims outside
/// the standard set, such as groups).
fn raw_payload(jwt: &str) -> serde_json::Map<String, serde_json::Value> {
    jwt.split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_binds_its_state_to_its_cookie_and_only_returns_to_this_server() {
        let t = Timestamp::from_unix_millis(1_800_000_000_000);
        let l = Login::new(t, true, "/inbox/req_1?x=1").unwrap();
        let back = Login::parse(l.cookie_value()).unwrap();
        assert_eq!(back, l);
        assert!(back.step_up);
        assert_eq!(back.return_to, "/inbox/req_1?x=1");
        // Each label gives a different digest, none of them the cookie.
        assert_ne!(l.state(), l.nonce().secret().clone());
        assert!(!l.state().contains(&l.cookie_value()[..64]));
        // Changing the start time in the cookie changes the state.
        let mut parts: Vec<&str> = l.cookie_value().split('.').collect();
        let later = (t.unix_millis() + 1).to_string();
        parts[1] = &later;
        let forged = Login::parse(&parts.join(".")).unwrap();
        assert_ne!(forged.state(), l.state());
        // The PKCE verifier is a valid one (43 characters of the unreserved set).
        assert_eq!(l.pkce_verifier().secret().len(), 43);
        for bad in ["https://evil.example/", "//evil.example/", "/\\evil", "x"] {
            assert_eq!(Login::new(t, false, bad).unwrap().return_to, "/", "{bad}");
        }
        assert!(Login::parse("short.1.-.Lw").is_none());
    }

    fn config(extra: &str) -> OidcConfig {
        toml::from_str(&format!(
            "issuer = \"https://idp.example.com/\"\nclient_id = \"hourglass\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn settings_refuse_what_would_weaken_the_check() {
        let errs = |extra: &str, public: Option<&str>| {
            OidcSettings::from_config(&config(extra), public, None)
                .err()
                .unwrap_or_default()
                .join("; ")
        };
        assert!(errs("", None).contains("redirect_url"));
        assert!(errs("algorithms = [\"none\"]", Some("https://hg.example.com")).contains("none"));
        assert!(errs("algorithms = [\"HS256\"]", Some("https://hg.example.com")).contains("HS256"));
        assert!(
            errs("name_claim = \"nickname\"", Some("https://hg.example.com")).contains("nickname")
        );
        assert!(
            errs("redirect_url = \"https://hg.example.com/elsewhere\"", None)
                .contains("/signin/callback")
        );
        let s = OidcSettings::from_config(&config(""), Some("https://hg.example.com/hg/"), None)
            .unwrap();
        assert_eq!(
            s.redirect.as_str(),
            "https://hg.example.com/hg/signin/callback"
        );
        assert_eq!(s.after_logout.as_str(), "https://hg.example.com/hg/signin");
    }
}
