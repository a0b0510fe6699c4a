//! One outbound call with the rate-limit manners every API here expects: a 429 is sent again
//! after its `Retry-After` while the waits add up to at most a bound, and an error never
//! carries the URL (a webhook URL is itself a secret).

use std::time::Duration;

/// What came back: the status and the body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON, or `Null`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text, clipped for an error message.
    pub fn text(&self, max: usize) -> String {
        let t = String::from_utf8_lossy(&self.body);
        let t = t.trim();
        match t.char_indices().nth(max) {
            Some((i, _)) => format!("{}…", &t[..i]),
            None => t.to_owned(),
        }
    }
}

/// Sends the request that `make` builds (again for each try). A 429 is tried again after its
/// `Retry-After` (seconds; 1 when absent) while the waits add up to at most `max_wait`; past
/// that it is an error, and the caller's own retry takes over.
pub async fn send(
    make: impl Fn() -> reqwest::RequestBuilder,
    max_wait: Duration,
) -> Result<Answer, String> {
    let mut waited = Duration::ZERO;
    loop {
        let resp = make().send().await.map_err(|e| {
            if e.is_timeout() {
                "it did not answer in time".to_owned()
            } else {
                format!("it could not be reached: {}", e.without_url())
            }
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            let wait = Duration::from_secs(after);
            waited = waited.saturating_add(wait);
            if waited > max_wait {
                return Err(format!(
                    "it is rate-limiting us (HTTP 429, Retry-After {after}s)"
                ));
            }
            tracing::debug!(retry_after = after, "rate-limited; waiting");
            tokio::time::sleep(wait).await;
            continue;
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("its answer could not be read: {}", e.without_url()))?;
        return Ok(Answer {
            status,
            body: body.to_vec(),
        });
    }
}
