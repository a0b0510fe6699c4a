//! Trusted OIDC issuers: verification of workload identity tokens (GitHub Actions, GitLab,
//! Kubernetes service-account tokens, SPIFFE JWT-SVIDs) against each issuer's JWKS, and the
//! mapping of a verified token's claims to a principal.
//!
//! What is refused, each with its own reason: a malformed token; an algorithm the issuer does
//! not allow (`none` and `HS*` are never allowed: a public key must not become an HMAC secret);
//! an unknown issuer; an unknown key id (after one refresh of the JWKS, at most every
//! [`MIN_REFRESH_SECS`]); a bad signature; a wrong audience; an expired or not-yet-valid token
//! (with the issuer's clock skew, on the caller's clock, never the system's); a token no rule
//! maps to a principal.
//!
//! Audiences keep the uses of a token apart ([`Purpose`]): `audience` for token exchange,
//! `delegation_audience` for a token a person obtained to hand to an agent (it is exchanged only
//! together with that agent's own token), and `api_audience` for a person's token that is an API
//! bearer. An issuer with no `api_audience` never authenticates API calls; `mcp_audience` (the
//! MCP endpoint's resource identifier, RFC 8707) for an agent's token, or a person's token whose
//! `act` names the agent acting for them, presented to `/mcp`. A token without a
//! `jti` is identified by a digest of its signing input, never of the whole token: an ECDSA
//! signature has two valid forms, so the same token could otherwise be presented twice.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
use serde_json::{Map, Value};

/// A refused token: a stable code and a reason safe to show and to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub reason: String,
}

impl Refusal {
    fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Refusal {
            code,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
}

/// Claims (exact string values) that map a token to a principal.
#[derive(Debug, Clone)]
pub struct Rule {
    pub principal: String,
    pub claims: BTreeMap<String, String>,
}

/// One trusted issuer, checked.
#[derive(Debug, Clone)]
pub struct IssuerSpec {
    pub name: String,
    pub issuer: String,
    pub jwks: JwksSource,
    /// Accepted for token exchange.
    pub audience: Vec<String>,
    /// Accepted for token exchange only with an actor token: the person's consent to
    /// delegation (a token obtained for handing to an agent). Disjoint from the others.
    pub delegation_audience: Vec<String>,
    /// Accepted as an API bearer (`Authorization: Bearer`) for people; empty means the issuer's
    /// tokens never authenticate API calls. Disjoint from the others.
    pub api_audience: Vec<String>,
    /// Accepted as a bearer at the MCP endpoint (`/mcp`): an agent's own token, or a person's
    /// whose `act` names the agent acting for them. Disjoint from the others.
    pub mcp_audience: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub skew_secs: u64,
    pub rules: Vec<Rule>,
}

/// What a token is presented for; each use accepts its own audiences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `POST /v1/token`: `audience` or `delegation_audience`.
    Exchange,
    /// `Authorization: Bearer` on the API: `api_audience` only.
    ApiBearer,
    /// `Authorization: Bearer` at the MCP endpoint: `mcp_audience` only.
    McpBearer,
}

/// The `may_act` claim (RFC 8693 §4.4): who the subject allows to act for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MayAct {
    pub sub: String,
    /// The actor's issuer, when the claim names one.
    pub iss: Option<String>,
}

/// Parses an algorithm name an issuer may use; `none` and the HMAC family are refused.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let alg: Algorithm = name
        .parse()
        .map_err(|_| format!("unknown algorithm {name:?}"))?;
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Err(format!(
            "{name} is symmetric: a verifier holding the key could forge tokens; use RS*, PS*, ES* or EdDSA"
        )),
        a => Ok(a),
    }
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The issuer's configured name.
    pub issuer_name: String,
    /// Its `iss`.
    pub issuer: String,
    pub subject: String,
    /// The principal a rule mapped it to.
    pub principal: String,
    /// Its `jti`, or, for tokens without one, a digest of its signing input (a replay is the
    /// same header and claims again, whichever form of the signature comes with them).
    pub jti: String,
    pub expires_at_secs: i64,
    /// Its top-level string claims (for the policy context and the audit).
    pub claims: BTreeMap<String, String>,
    /// The `act` claim, for tokens that already carry a delegation.
    pub act: Option<Value>,
    /// The principal the issuer's rules map the current actor (the outermost `act`) to.
    pub actor: Option<String>,
    /// The `may_act` claim: the actor the subject consents to.
    pub may_act: Option<MayAct>,
    /// Whether it was issued for delegation (its audience is a `delegation_audience`).
    pub for_delegation: bool,
    /// Whether the authentication behind it used a second factor (`amr` contains `mfa`,
    /// RFC 8176).
    pub mfa: bool,
}

/// How often an unknown `kid` may trigger a JWKS fetch per issuer.
pub const MIN_REFRESH_SECS: u64 = 10;

struct Trusted {
    spec: IssuerSpec,
    keys: RwLock<Vec<Jwk>>,
    /// When the keys were last fetched (the caller's clock, seconds), to limit refreshes.
    fetched: tokio::sync::Mutex<Option<i64>>,
}

/// The trusted issuers, by `iss`.
#[derive(Clone)]
pub struct Issuers {
    by_iss: Arc<HashMap<String, Arc<Trusted>>>,
    http: reqwest::Client,
}

impl fmt::Debug for Issuers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuers")
            .field("issuers", &self.by_iss.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Parses a JWKS document, keeping the keys this library can use and skipping the rest.
pub fn parse_jwks(text: &str) -> Result<Vec<Jwk>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    Ok(keys
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(Jwk::is_supported)
        .collect())
}

fn b64_json(segment: &str) -> Option<Map<String, Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn claim_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Issuers {
    /// Builds the issuers; local JWKS files are read now (an unreadable one is an error).
    pub fn new(specs: Vec<IssuerSpec>) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let mut by_iss = HashMap::new();
        for spec in specs {
            let keys = match &spec.jwks {
                JwksSource::File(p) => {
                    let text = std::fs::read_to_string(p)
                        .map_err(|e| format!("issuer {}: {}: {e}", spec.name, p.display()))?;
                    parse_jwks(&text)
                        .map_err(|e| format!("issuer {}: {}: {e}", spec.name, p.display()))?
                }
                JwksSource::Url(_) => Vec::new(),
            };
            let iss = spec.issuer.clone();
            let t = Trusted {
                spec,
                keys: RwLock::new(keys),
                fetched: tokio::sync::Mutex::new(None),
            };
            if by_iss.insert(iss.clone(), Arc::new(t)).is_some() {
                return Err(format!("issuer {iss} is configured twice"));
            }
        }
        Ok(Issuers {
            by_iss: Arc::new(by_iss),
            http,
        })
    }

    /// The issuers (`iss`) whose tokens the MCP endpoint accepts (those with an
    /// `mcp_audience`), sorted.
    pub fn mcp_issuers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_iss
            .values()
            .filter(|t| !t.spec.mcp_audience.is_empty())
            .map(|t| t.spec.issuer.clone())
            .collect();
        v.sort();
        v
    }

    pub fn is_empty(&self) -> bool {
        self.by_iss.is_empty()
    }

    /// Re-reads an issuer's keys (URL or file), at most every [`MIN_REFRESH_SECS`].
    async fn refresh(&self, t: &Trusted, now_secs: i64) -> Result<(), Refusal> {
        let mut fetched = t.fetched.lock().await;
        let min = i64::try_from(MIN_REFRESH_SECS).unwrap_or(i64::MAX);
        if fetched.is_some_and(|at| (at..at + min).contains(&now_secs)) {
            return Ok(());
        }
        *fetched = Some(now_secs);
        let text = match &t.spec.jwks {
            JwksSource::File(p) => tokio::fs::read_to_string(p).await.map_err(|e| {
                Refusal::new(
                    "token.jwks_unavailable",
                    format!("issuer {}: reading its JWKS: {e}", t.spec.name),
                )
            })?,
            JwksSource::Url(url) => {
                let unavailable = |e: String| {
                    tracing::warn!(issuer = %t.spec.name, %url, error = %e, "JWKS fetch failed");
                    Refusal::new(
                        "token.jwks_unavailable",
                        format!("issuer {}: its JWKS could not be fetched", t.spec.name),
                    )
                };
                let resp = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                if !resp.status().is_success() {
                    return Err(unavailable(format!("HTTP {}", resp.status())));
                }
                resp.text().await.map_err(|e| unavailable(e.to_string()))?
            }
        };
        let keys = parse_jwks(&text).map_err(|e| {
            Refusal::new(
                "token.jwks_unavailable",
                format!("issuer {}: bad JWKS: {e}", t.spec.name),
            )
        })?;
        tracing::info!(issuer = %t.spec.name, keys = keys.len(), "JWKS refreshed");
        *t.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        Ok(())
    }

    fn find_key(t: &Trusted, kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
        let keys = t
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match kid {
            Some(kid) => keys
                .iter()
                .find(|k| k.common.key_id.as_deref() == Some(kid))
                .cloned(),
            // No kid: only unambiguous when one key of the right family exists.
            None => {
                let fits: Vec<&Jwk> = keys
                    .iter()
                    .filter(|k| DecodingKey::from_jwk(k).is_ok_and(|d| d.family() == alg.family()))
                    .collect();
                (fits.len() == 1).then(|| fits[0].clone())
            }
        }
    }

    /// The first rule whose claims all match `strings`.
    fn rule_for<'a>(t: &'a Trusted, strings: &BTreeMap<String, String>) -> Option<&'a Rule> {
        t.spec
            .rules
            .iter()
            .find(|r| r.claims.iter().all(|(k, v)| strings.get(k) == Some(v)))
    }

    /// Verifies `token` for `purpose` at `now_secs` (the caller's clock) and maps it to a
    /// principal.
    pub async fn verify(
        &self,
        token: &str,
        now_secs: i64,
        purpose: Purpose,
    ) -> Result<Verified, Refusal> {
        let token = token.trim();
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::new(
                "token.malformed",
                "not a signed JWT (header.payload.signature)",
            ));
        };
        let header = b64_json(h)
            .ok_or_else(|| Refusal::new("token.malformed", "the header is not base64url JSON"))?;
        let payload = b64_json(p)
            .ok_or_else(|| Refusal::new("token.malformed", "the payload is not base64url JSON"))?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let iss = payload.get("iss").and_then(Value::as_str).unwrap_or("");
        let t = self.by_iss.get(iss).ok_or_else(|| {
            Refusal::new(
                "token.issuer_unknown",
                format!("issuer {iss:?} is not trusted"),
            )
        })?;
        let alg = alg_name
            .parse::<Algorithm>()
            .ok()
            .filter(|a| t.spec.algorithms.contains(a))
            .ok_or_else(|| {
                Refusal::new(
                    "token.algorithm_refused",
                    format!(
                        "algorithm {alg_name:?} is not allowed for issuer {}",
                        t.spec.name
                    ),
                )
            })?;
        let audiences: Vec<String> = match purpose {
            Purpose::Exchange => t
                .spec
                .audience
                .iter()
                .chain(&t.spec.delegation_audience)
                .cloned()
                .collect(),
            Purpose::ApiBearer => t.spec.api_audience.clone(),
            Purpose::McpBearer => t.spec.mcp_audience.clone(),
        };
        if audiences.is_empty() {
            let which = match purpose {
                Purpose::McpBearer => "MCP bearer tokens (no mcp_audience)",
                _ => "API bearer tokens (no api_audience)",
            };
            return Err(Refusal::new(
                "token.not_api_bearer",
                format!("issuer {} does not sign {which}", t.spec.name),
            ));
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let jwk = match Self::find_key(t, kid, alg) {
            Some(k) => k,
            None => {
                self.refresh(t, now_secs).await?;
                Self::find_key(t, kid, alg).ok_or_else(|| {
                    Refusal::new(
                        "token.key_unknown",
                        format!(
                            "issuer {} has no key {:?}",
                            t.spec.name,
                            kid.unwrap_or("(no kid)")
                        ),
                    )
                })?
            }
        };
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| Refusal::new("token.key_unknown", format!("unusable key: {e}")))?;
        // A key only ever verifies its own family: an RSA key never checks an ES256 or HS256
        // signature (algorithm confusion).
        if key.family() != alg.family() {
            return Err(Refusal::new(
                "token.algorithm_refused",
                format!("key {:?} is not a key for {alg_name}", kid.unwrap_or("")),
            ));
        }
        let mut v = Validation::new(alg);
        // Time is checked below on the caller's clock, not the system's.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_audience(&audiences);
        v.set_issuer(&[&t.spec.issuer]);
        v.set_required_spec_claims(&["iss", "aud", "exp", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => {
                        Refusal::new("token.signature_invalid", "the signature does not verify")
                    }
                    K::InvalidAudience => Refusal::new(
                        "token.audience_invalid",
                        format!("the audience is not one of {audiences:?}"),
                    ),
                    K::InvalidIssuer => {
                        Refusal::new("token.issuer_unknown", "the issuer does not match")
                    }
                    K::MissingRequiredClaim(c) => Refusal::new(
                        "token.claim_missing",
                        format!("the token has no {c:?} claim"),
                    ),
                    K::InvalidAlgorithm => Refusal::new(
                        "token.algorithm_refused",
                        "the key does not fit the algorithm",
                    ),
                    _ => Refusal::new("token.malformed", format!("the token does not decode: {e}")),
                }
            })?
            .claims;
        let skew = i64::try_from(t.spec.skew_secs).unwrap_or(0);
        let num = |c: &str| claims.get(c).and_then(Value::as_i64);
        let exp =
            num("exp").ok_or_else(|| Refusal::new("token.claim_missing", "exp is not a number"))?;
        if exp + skew <= now_secs {
            return Err(Refusal::new(
                "token.expired",
                format!("the token expired {}s ago", now_secs - exp),
            ));
        }
        if num("nbf").is_some_and(|nbf| nbf - skew > now_secs)
            || num("iat").is_some_and(|iat| iat - skew > now_secs)
        {
            return Err(Refusal::new(
                "token.not_yet_valid",
                "the token is not valid yet (nbf/iat in the future)",
            ));
        }
        let strings: BTreeMap<String, String> = claims
            .iter()
            .filter_map(|(k, v)| claim_string(v).map(|s| (k.clone(), s)))
            .collect();
        let subject = strings.get("sub").cloned().unwrap_or_default();
        let rule = Self::rule_for(t, &strings).ok_or_else(|| {
            Refusal::new(
                "token.unmapped",
                format!(
                    "no mapping of issuer {} matches subject {subject:?}",
                    t.spec.name
                ),
            )
        })?;
        let jti = match strings.get("jti") {
            Some(j) if !j.is_empty() => j.clone(),
            // The signing input, not the token: (r, s) and (r, n - s) both verify for ECDSA.
            _ => sha2_free::digest_hex(&format!("{h}.{p}")),
        };
        let token_audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let for_delegation = purpose == Purpose::Exchange
            && token_audiences
                .iter()
                .any(|a| t.spec.delegation_audience.iter().any(|d| d == a));
        let may_act = claims.get("may_act").and_then(|m| {
            Some(MayAct {
                sub: m.get("sub")?.as_str()?.to_owned(),
                iss: m.get("iss").and_then(Value::as_str).map(str::to_owned),
            })
        });
        // The current actor (RFC 8693 §4.1: the outermost `act`), mapped by the same rules as a
        // token's own claims.
        let actor = claims
            .get("act")
            .and_then(Value::as_object)
            .and_then(|act| {
                let strings: BTreeMap<String, String> = act
                    .iter()
                    .filter_map(|(k, v)| claim_string(v).map(|s| (k.clone(), s)))
                    .collect();
                Self::rule_for(t, &strings).map(|r| r.principal.clone())
            });
        Ok(Verified {
            actor,
            issuer_name: t.spec.name.clone(),
            issuer: t.spec.issuer.clone(),
            subject,
            principal: rule.principal.clone(),
            jti,
            expires_at_secs: exp,
            claims: strings,
            act: claims.get("act").cloned(),
            may_act,
            for_delegation,
            mfa: claims
                .get("amr")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|m| m.as_str() == Some("mfa"))),
        })
    }
}

/// A SHA-256 digest with aws-lc (no second hash crate).
mod sha2_free {
    pub fn digest_hex(s: &str) -> String {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    //! The algorithms real providers use: RS256 (GitHub, GitLab, Kubernetes) and ES256 (many
    //! SPIFFE deployments), with keys made here and published as a JWKS file.

    use aws_lc_rs::{
        rand::SystemRandom,
        rsa::KeySize,
        signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
        },
    };
    use serde_json::json;

    use super::*;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// The two INTEGERs of a DER `RSAPublicKey` (PKCS#1): modulus and exponent.
    fn rsa_n_e(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
        fn read(d: &[u8], at: &mut usize) -> Vec<u8> {
            let tag = d[*at];
            *at += 1;
            let mut len = usize::from(d[*at]);
            *at += 1;
            if len & 0x80 != 0 {
                let n = len & 0x7f;
                len = d[*at..*at + n]
                    .iter()
                    .fold(0, |a, b| (a << 8) | usize::from(*b));
                *at += n;
            }
            let v = d[*at..*at + len].to_vec();
            *at += len;
            assert!(tag == 0x30 || tag == 0x02, "unexpected DER tag {tag}");
            v
        }
        let mut at = 0;
        let seq = read(der, &mut at);
        let mut i = 0;
        let strip = |v: Vec<u8>| v.into_iter().skip_while(|b| *b == 0).collect::<Vec<u8>>();
        let n = strip(read(&seq, &mut i));
        let e = strip(read(&seq, &mut i));
        (n, e)
    }

    fn jws(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = sign(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    #[tokio::test]
    async fn rs256_and_es256_tokens_verify_and_algorithm_confusion_is_refused() {
        let rng = SystemRandom::new();
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let (n, e) = rsa_n_e(rsa.public_key().as_ref());
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = ec.public_key().as_ref().to_vec(); // 0x04 || x || y
        let jwks = json!({"keys": [
            {"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig", "n": b64(&n), "e": b64(&e)},
            {"kty": "EC", "kid": "e1", "alg": "ES256", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])},
            {"kty": "unknown-future-type", "kid": "z"}
        ]});
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, jwks.to_string()).unwrap();
        let issuers = Issuers::new(vec![IssuerSpec {
            name: "k8s".into(),
            issuer: "https://kubernetes.default.svc".into(),
            jwks: JwksSource::File(file),
            audience: vec!["hourglass".into()],
            delegation_audience: vec![],
            api_audience: vec![],
            mcp_audience: vec![],
            algorithms: vec![
                parse_algorithm("RS256").unwrap(),
                parse_algorithm("ES256").unwrap(),
            ],
            skew_secs: 30,
            rules: vec![Rule {
                principal: "etl".into(),
                claims: [(
                    "sub".to_owned(),
                    "system:serviceaccount:data:etl".to_owned(),
                )]
                .into(),
            }],
        }])
        .unwrap();
        let now = 1_800_000_000;
        let claims = json!({"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:data:etl",
            "aud": ["hourglass"], "exp": now + 600, "iat": now, "jti": "k1"});
        let rs = |m: &[u8]| {
            let mut sig = vec![0; rsa.public_modulus_len()];
            rsa.sign(&RSA_PKCS1_SHA256, &rng, m, &mut sig).unwrap();
            sig
        };
        let es = |m: &[u8]| ec.sign(&rng, m).unwrap().as_ref().to_vec();

        let v = issuers
            .verify(
                &jws(&json!({"alg": "RS256", "kid": "r1"}), &claims, rs),
                now,
                Purpose::Exchange,
            )
            .await
            .unwrap();
        assert_eq!((v.principal.as_str(), v.jti.as_str()), ("etl", "k1"));
        let v = issuers
            .verify(
                &jws(&json!({"alg": "ES256", "kid": "e1"}), &claims, es),
                now,
                Purpose::Exchange,
            )
            .await
            .unwrap();
        assert_eq!(v.subject, "system:serviceaccount:data:etl");

        // An RSA signature presented as ES256 on the RSA key, or over other claims, fails.
        let confused = jws(&json!({"alg": "ES256", "kid": "r1"}), &claims, rs);
        assert_eq!(
            issuers
                .verify(&confused, now, Purpose::Exchange)
                .await
                .unwrap_err()
                .code,
            "token.algorithm_refused"
        );
        let mut tampered = jws(&json!({"alg": "RS256", "kid": "r1"}), &claims, rs);
        let other = b64(json!({"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:data:etl",
            "aud": ["hourglass"], "exp": now + 9_999, "jti": "k1"}).to_string().as_bytes());
        let parts: Vec<&str> = tampered.split('.').collect();
        tampered = format!("{}.{other}.{}", parts[0], parts[2]);
        assert_eq!(
            issuers
                .verify(&tampered, now, Purpose::Exchange)
                .await
                .unwrap_err()
                .code,
            "token.signature_invalid"
        );
        // The classic confusion: HS256 keyed with the RSA public key. Never an allowed algorithm.
        let hs = jws(&json!({"alg": "HS256", "kid": "r1"}), &claims, |m| {
            let key =
                aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, rsa.public_key().as_ref());
            aws_lc_rs::hmac::sign(&key, m).as_ref().to_vec()
        });
        assert_eq!(
            issuers
                .verify(&hs, now, Purpose::Exchange)
                .await
                .unwrap_err()
                .code,
            "token.algorithm_refused"
        );
        assert!(parse_algorithm("HS256").is_err() && parse_algorithm("none").is_err());
        // Skew: 20 s after exp is still accepted with 30 s of skew, 31 s is not.
        let ok = jws(&json!({"alg": "ES256", "kid": "e1"}), &claims, es);
        assert!(
            issuers
                .verify(&ok, now + 620, Purpose::Exchange)
                .await
                .is_ok()
        );
        assert_eq!(
            issuers
                .verify(&ok, now + 631, Purpose::Exchange)
                .await
                .unwrap_err()
                .code,
            "token.expired"
        );
    }

    /// `n - s` for a P-256 signature's `s` (big-endian, 32 bytes): the other valid signature.
    fn p256_negate_s(s: &[u8]) -> Vec<u8> {
        let hexed = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
        let n: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hexed[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let mut out = vec![0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut d = i16::from(n[i]) - i16::from(s[i]) - borrow;
            borrow = i16::from(d < 0);
            if d < 0 {
                d += 256;
            }
            out[i] = u8::try_from(d).unwrap();
        }
        out
    }

    /// An ES256 issuer with all three audiences, and a signer for it.
    fn es256_issuers() -> (Issuers, EcdsaKeyPair, tempfile::TempDir) {
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = ec.public_key().as_ref().to_vec();
        let jwks = json!({"keys": [
            {"kty": "EC", "kid": "e1", "alg": "ES256", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])},
        ]});
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, jwks.to_string()).unwrap();
        let issuers = Issuers::new(vec![IssuerSpec {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            jwks: JwksSource::File(file),
            audience: vec!["hourglass".into()],
            delegation_audience: vec!["hourglass-delegation".into()],
            api_audience: vec!["hourglass-api".into()],
            mcp_audience: vec![],
            algorithms: vec![parse_algorithm("ES256").unwrap()],
            skew_secs: 0,
            rules: vec![Rule {
                principal: "alice".into(),
                claims: [("sub".to_owned(), "alice".to_owned())].into(),
            }],
        }])
        .unwrap();
        (issuers, ec, dir)
    }

    #[tokio::test]
    async fn a_token_without_jti_is_one_token_whichever_form_its_ecdsa_signature_takes() {
        let (issuers, ec, _dir) = es256_issuers();
        let rng = SystemRandom::new();
        let now = 1_800_000_000;
        let claims = json!({"iss": "https://idp.example", "sub": "alice", "aud": "hourglass", "exp": now + 600});
        let token = jws(&json!({"alg": "ES256", "kid": "e1"}), &claims, |m| {
            ec.sign(&rng, m).unwrap().as_ref().to_vec()
        });
        let parts: Vec<&str> = token.split('.').collect();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap();
        let mut twin = sig[..32].to_vec();
        twin.extend(p256_negate_s(&sig[32..]));
        let malleated = format!("{}.{}.{}", parts[0], parts[1], b64(&twin));
        assert_ne!(malleated, token);
        let a = issuers
            .verify(&token, now, Purpose::Exchange)
            .await
            .unwrap();
        let b = issuers
            .verify(&malleated, now, Purpose::Exchange)
            .await
            .unwrap();
        assert_eq!(a.jti, b.jti, "both signature forms are the same token");
    }

    #[tokio::test]
    async fn each_use_accepts_only_its_own_audience() {
        let (issuers, ec, _dir) = es256_issuers();
        let rng = SystemRandom::new();
        let now = 1_800_000_000;
        let token = |aud: &str, extra: Value| {
            let mut c = json!({"iss": "https://idp.example", "sub": "alice", "aud": aud,
                "exp": now + 600, "jti": aud});
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            jws(&json!({"alg": "ES256", "kid": "e1"}), &c, |m| {
                ec.sign(&rng, m).unwrap().as_ref().to_vec()
            })
        };
        let exchange = token(
            "hourglass",
            json!({"may_act": {"sub": "bot", "iss": "https://idp.example"}}),
        );
        let v = issuers
            .verify(&exchange, now, Purpose::Exchange)
            .await
            .unwrap();
        assert!(!v.for_delegation);
        assert_eq!(
            v.may_act,
            Some(MayAct {
                sub: "bot".into(),
                iss: Some("https://idp.example".into())
            })
        );
        // An exchange token is no API session, and an API token is not exchanged.
        assert_eq!(
            issuers
                .verify(&exchange, now, Purpose::ApiBearer)
                .await
                .unwrap_err()
                .code,
            "token.audience_invalid"
        );
        let api = token("hourglass-api", json!({}));
        assert!(issuers.verify(&api, now, Purpose::ApiBearer).await.is_ok());
        assert_eq!(
            issuers
                .verify(&api, now, Purpose::Exchange)
                .await
                .unwrap_err()
                .code,
            "token.audience_invalid"
        );
        let delegation = token("hourglass-delegation", json!({}));
        let v = issuers
            .verify(&delegation, now, Purpose::Exchange)
            .await
            .unwrap();
        assert!(v.for_delegation && v.may_act.is_none());
        assert!(
            issuers
                .verify(&delegation, now, Purpose::ApiBearer)
                .await
                .is_err()
        );
        // An issuer that did not opt in never authenticates API calls.
        let (plain, _, _d) = {
            let (i, e, d) = es256_issuers();
            let mut spec = i.by_iss.values().next().unwrap().spec.clone();
            spec.api_audience.clear();
            let file = d.path().join("jwks.json");
            spec.jwks = JwksSource::File(file);
            (Issuers::new(vec![spec]).unwrap(), e, d)
        };
        assert_eq!(
            plain
                .verify(&api, now, Purpose::ApiBearer)
                .await
                .unwrap_err()
                .code,
            "token.not_api_bearer"
        );
    }

    #[test]
    fn jwks_parsing_keeps_usable_keys_only() {
        assert!(parse_jwks("[]").is_err());
        assert!(
            parse_jwks("{\"keys\": [{\"kty\": \"nope\"}]}")
                .unwrap()
                .is_empty()
        );
    }
}
