//! What the connectors to REST APIs (GitHub, Okta, Microsoft Graph, Google) share: path
//! segments, RS256 assertions signed with a service's key, the next page of a `Link` header, a
//! rate limit's wait, and an access token kept until it nears its expiry.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hourglass_core::{Timestamp, connector::ConnectorError};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// One `%`-encoded path segment.
pub(crate) fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// An RSA private key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE
/// KEY`, as GitHub hands out App keys).
pub(crate) fn rsa_key(pem: &str) -> Result<aws_lc_rs::signature::RsaKeyPair, String> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|_| "not PEM".to_owned())?;
    aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&der)
        .or_else(|_| aws_lc_rs::signature::RsaKeyPair::from_der(&der))
        .map_err(|_| "not an RSA private key".to_owned())
}

/// A JWT with `claims`, signed RS256 with `key`.
pub(crate) fn rs256(
    key: &aws_lc_rs::signature::RsaKeyPair,
    claims: &Value,
) -> Result<String, ConnectorError> {
    let input = format!(
        "{}.{}",
        B64.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        B64.encode(claims.to_string())
    );
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| ConnectorError::new("signing an RS256 assertion failed"))?;
    Ok(format!("{input}.{}", B64.encode(sig)))
}

/// The `rel="next"` URL of a `Link` header.
pub(crate) fn next_link(link: Option<&str>) -> Option<String> {
    link?
        .split(',')
        .find(|p| p.contains("rel=\"next\""))
        .and_then(|p| Some(p.split_once('<')?.1.split_once('>')?.0.to_owned()))
}

/// How long a rate-limited answer asks to wait: `Retry-After` seconds, else until a reset
/// time (`x-ratelimit-reset`, Okta's `x-rate-limit-reset`, Unix seconds), a few seconds at most.
pub(crate) fn rate_limit_wait(headers: &HeaderMap, now_secs: i64) -> Duration {
    let num = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let secs = num("retry-after")
        .or_else(|| {
            num("x-ratelimit-reset")
                .or_else(|| num("x-rate-limit-reset"))
                .map(|reset| reset - now_secs)
        })
        .unwrap_or(1)
        .clamp(0, 5);
    Duration::from_secs(u64::try_from(secs).unwrap_or(1))
}

/// An answer: its status, its `Link` header, and its body as JSON (`null` if it is not).
pub(crate) type Answer = (reqwest::StatusCode, Option<String>, Value);

/// Sends the request `make` builds; a rate-limited answer (`429`, or `403` with
/// `x-ratelimit-remaining: 0` or a `Retry-After`) is waited out twice, a few seconds each, then
/// reported. `what` names the API in errors; `now_secs` is the caller's clock.
pub(crate) async fn send(
    what: &str,
    make: impl Fn() -> reqwest::RequestBuilder,
    now_secs: impl Fn() -> i64,
) -> Result<Answer, ConnectorError> {
    use reqwest::StatusCode;
    for attempt in 0..3 {
        let resp = make()
            .send()
            .await
            .map_err(|e| ConnectorError::new(format!("{what}: {}", e.without_url())))?;
        let status = resp.status();
        let headers = resp.headers();
        let limited = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::FORBIDDEN
                && (headers
                    .get("x-ratelimit-remaining")
                    .is_some_and(|v| v == "0")
                    || headers.contains_key("retry-after")));
        if limited && attempt < 2 {
            // Waiting out the API's rate limit, not an expiry.
            tokio::time::sleep(rate_limit_wait(headers, now_secs())).await;
            continue;
        }
        let link = headers
            .get("link")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await.unwrap_or_default();
        return Ok((
            status,
            link,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        ));
    }
    Err(ConnectorError::new(format!("{what}: still rate-limited")))
}

/// An access token, kept until a minute before it expires.
#[derive(Default)]
pub(crate) struct TokenCache(tokio::sync::Mutex<Option<(SecretString, Timestamp)>>);

impl TokenCache {
    /// The kept token, or a new one from `fetch` (its value and when it expires).
    pub(crate) async fn get<F, Fut>(
        &self,
        now: Timestamp,
        fetch: F,
    ) -> Result<String, ConnectorError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(String, Timestamp), ConnectorError>>,
    {
        let mut cached = self.0.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && *until > now
        {
            return Ok(t.expose_secret().to_owned());
        }
        let (token, expires) = fetch().await?;
        *cached = Some((
            SecretString::from(token.clone()),
            expires.plus_millis(-60_000),
        ));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_waits_are_read_as_the_apis_send_them() {
        assert_eq!(
            next_link(Some(
                r#"<https://a/x?page=2>; rel="next", <https://a/x?page=9>; rel="last""#
            ))
            .as_deref(),
            Some("https://a/x?page=2")
        );
        assert_eq!(next_link(Some(r#"<https://a/x?page=1>; rel="prev""#)), None);
        let mut h = HeaderMap::new();
        h.insert("x-rate-limit-reset", "1003".parse().unwrap());
        assert_eq!(rate_limit_wait(&h, 1_000), Duration::from_secs(3));
        h.insert("retry-after", "60".parse().unwrap());
        assert_eq!(rate_limit_wait(&h, 1_000), Duration::from_secs(5), "capped");
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }
}
