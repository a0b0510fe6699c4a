//! Who is on call, from the schedule systems (`[[oncall]]` of kind `pagerduty` or
//! `opsgenie`), for `context.oncall`.
//!
//! A decision never waits for a schedule system: each source is read in the background every
//! `refresh` ([`refresher`]) and its answer kept. An answer counts for `ttl` after it was read;
//! past that, with no newer answer (the system is down, slow, refusing the key), the source
//! puts nobody on call, never everybody, and says so in the log and in
//! `hourglass_oncall_source_up`. A source's emails map to principals through its `users` table,
//! then the whole address, then its local part in `email_domain`.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use hourglass_core::{Clock, GrantDuration, Timestamp, id::PrincipalId};
use hourglass_integrations::{OnCallApi, OnCallClient};
use secrecy::SecretString;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    config::{OnCallConfig, OnCallKind},
    metrics::{Metrics, ReadOutcome},
};

#[derive(Debug, Default)]
struct Answer {
    emails: BTreeSet<String>,
    /// When the last good answer was read.
    read_at: Option<Timestamp>,
    /// When the source is read next.
    next_at: Option<Timestamp>,
    /// Whether the last read succeeded.
    up: bool,
}

/// One schedule system.
struct Source {
    name: String,
    client: OnCallClient,
    refresh: GrantDuration,
    ttl: GrantDuration,
    /// Lower-cased email → principal.
    users: BTreeMap<String, String>,
    email_domain: Option<String>,
    answer: Mutex<Answer>,
}

impl Source {
    /// The addresses under which `who` may appear in the schedule.
    fn addresses(&self, who: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .users
            .iter()
            .filter(|(_, p)| p.as_str() == who)
            .map(|(e, _)| e.clone())
            .collect();
        let fallback = if who.contains('@') {
            Some(who.to_ascii_lowercase())
        } else {
            self.email_domain
                .as_ref()
                .map(|d| format!("{who}@{d}").to_ascii_lowercase())
        };
        // An address `users` maps is that principal's, not whoever it looks like.
        out.extend(fallback.filter(|a| !self.users.contains_key(a)));
        out
    }

    fn on_call(&self, who: &str, at: Timestamp) -> bool {
        let a = self.answer.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = a.read_at.is_some_and(|t| at < t.plus(self.ttl));
        fresh && self.addresses(who).iter().any(|e| a.emails.contains(e))
    }
}

/// What one read of a source found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReport {
    pub source: String,
    /// How many people it puts on call, or why it could not be read.
    pub outcome: Result<usize, String>,
}

/// The schedule-system sources, with their last answers.
#[derive(Default)]
pub struct OnCallBoard {
    sources: Vec<Source>,
}

fn required<'a, T>(v: Option<&'a T>, key: &str, kind: &str) -> Result<&'a T, String> {
    v.ok_or_else(|| format!("{key}: required for {kind}"))
}

impl OnCallBoard {
    /// Builds the `pagerduty` and `opsgenie` sources (reading their tokens) and answers the
    /// files of the `shift` sources; every problem names its key.
    pub fn build(
        file: &str,
        configs: &[OnCallConfig],
    ) -> Result<(Self, Vec<std::path::PathBuf>), Vec<String>> {
        let mut problems = Vec::new();
        let mut sources = Vec::new();
        let mut files = Vec::new();
        let mut names = BTreeSet::new();
        for (i, c) in configs.iter().enumerate() {
            let key = format!("{file}: oncall[{i}] ({})", c.name);
            if !names.insert(c.name.clone()) {
                problems.push(format!(
                    "{file}: oncall[{i}].name: {:?} is used twice",
                    c.name
                ));
                continue;
            }
            match Self::source(c) {
                Ok(Some(s)) => sources.push(s),
                Ok(None) => match &c.path {
                    Some(p) => files.push(p.clone()),
                    None => problems.push(format!("{key}: path: required for shift")),
                },
                Err(e) => problems.push(format!("{key}: {e}")),
            }
        }
        if problems.is_empty() {
            Ok((OnCallBoard { sources }, files))
        } else {
            Err(problems)
        }
    }

    fn source(c: &OnCallConfig) -> Result<Option<Source>, String> {
        let (kind, default_url) = match c.kind {
            OnCallKind::Shift => {
                if c.token.is_some() || c.api_url.is_some() || !c.schedules.is_empty() {
                    return Err("token, api_url, schedules: a shift source reads its file".into());
                }
                return Ok(None);
            }
            OnCallKind::Pagerduty => ("pagerduty", "https://api.pagerduty.com"),
            OnCallKind::Opsgenie => ("opsgenie", "https://api.opsgenie.com"),
        };
        if c.path.is_some() {
            return Err(format!("path: only a shift source has one, not {kind}"));
        }
        let api = if c.kind == OnCallKind::Pagerduty {
            if c.by_name {
                return Err("by_name: opsgenie only".into());
            }
            OnCallApi::PagerDuty {
                schedules: c.schedules.clone(),
                escalation_policies: c.escalation_policies.clone(),
                max_level: c.max_level,
            }
        } else {
            if !c.escalation_policies.is_empty() || c.max_level.is_some() {
                return Err("escalation_policies, max_level: pagerduty only".into());
            }
            OnCallApi::Opsgenie {
                schedules: c.schedules.clone(),
                by_name: c.by_name,
            }
        };
        if c.ttl < c.refresh {
            return Err(format!(
                "ttl: {} is shorter than refresh ({}): every answer would lapse before the next read",
                c.ttl, c.refresh
            ));
        }
        if c.timeout >= c.refresh {
            return Err(format!(
                "timeout: {} must be shorter than refresh ({})",
                c.timeout, c.refresh
            ));
        }
        let token = required(c.token.as_ref(), "token", kind)?
            .read()
            .map_err(|e| format!("token: {e}"))?;
        let client = OnCallClient::new(
            c.api_url.as_deref().unwrap_or(default_url),
            SecretString::from(token),
            api,
            Duration::from_secs(c.timeout.as_secs()),
            c.allow_private,
        )?;
        Ok(Some(Source {
            name: c.name.clone(),
            client,
            refresh: c.refresh,
            ttl: c.ttl,
            users: c
                .users
                .iter()
                .map(|(e, p)| (e.to_ascii_lowercase(), p.clone()))
                .collect(),
            email_domain: c.email_domain.clone(),
            answer: Mutex::new(Answer::default()),
        }))
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Whether any source, by an answer still fresh at `at`, puts `who` on call.
    pub fn on_call(&self, who: &PrincipalId, at: Timestamp) -> bool {
        self.sources.iter().any(|s| s.on_call(who.as_str(), at))
    }

    /// Reads every source that is due at `now`, keeping good answers and counting failures.
    pub async fn read_due(&self, now: Timestamp) -> Vec<ReadReport> {
        let mut out = Vec::new();
        for s in &self.sources {
            let due = s
                .answer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .next_at
                .is_none_or(|t| t <= now);
            if !due {
                continue;
            }
            let read = s.client.on_call_now().await;
            let mut a = s.answer.lock().unwrap_or_else(PoisonError::into_inner);
            a.next_at = Some(now.plus(s.refresh));
            let outcome = match read {
                Ok(emails) => {
                    let n = emails.len();
                    a.emails = emails;
                    a.read_at = Some(now);
                    a.up = true;
                    Ok(n)
                }
                Err(e) => {
                    a.up = false;
                    Err(e)
                }
            };
            out.push(ReadReport {
                source: s.name.clone(),
                outcome,
            });
        }
        out
    }

    /// When the next source is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.sources
            .iter()
            .filter_map(|s| {
                s.answer
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .next_at
            })
            .min()
    }

    /// Each source: whether its last read succeeded, and whether its answer is still fresh at
    /// `at` (for metrics).
    pub fn status(&self, at: Timestamp) -> Vec<(String, bool, bool)> {
        self.sources
            .iter()
            .map(|s| {
                let a = s.answer.lock().unwrap_or_else(PoisonError::into_inner);
                let fresh = a.read_at.is_some_and(|t| at < t.plus(s.ttl));
                (s.name.clone(), a.up, fresh)
            })
            .collect()
    }
}

/// Reads the sources when they are due, until `stop`. Each replica keeps its own answers.
pub async fn refresher(
    board: Arc<OnCallBoard>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        for r in board.read_due(clock.now()).await {
            match &r.outcome {
                Ok(n) => {
                    metrics.oncall_read(&r.source, ReadOutcome::Ok);
                    info!(source = %r.source, on_call = n, "on-call schedule read");
                }
                Err(e) => {
                    metrics.oncall_read(&r.source, ReadOutcome::Failed);
                    warn!(source = %r.source, error = %e, "on-call schedule could not be read; its last answer counts until its ttl, then nobody is on call by it");
                }
            }
        }
        let Some(next) = board.next_due() else { return };
        tokio::select! {
            () = clock.sleep_until(next) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn board(text: &str) -> Result<(OnCallBoard, Vec<std::path::PathBuf>), Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pd.token"), "y_NbAkKc66ryYTWUXYEu").unwrap();
        let path = dir.path().join("hourglass.toml");
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path, Vec::new()).unwrap();
        OnCallBoard::build("hourglass.toml", &config.oncall)
    }

    #[test]
    fn sources_are_checked_and_their_mistakes_named() {
        let (b, files) = board(
            r#"
[[oncall]]
name = "pd"
kind = "pagerduty"
token = { file = "pd.token" }
schedules = ["PSCH001"]

[[oncall]]
name = "shifts"
kind = "shift"
path = "oncall.toml"
"#,
        )
        .unwrap_or_else(|p| panic!("{p:?}"));
        assert!(!b.is_empty());
        assert!(files[0].ends_with("oncall.toml"));
        let problems = board(
            r#"
[[oncall]]
name = "pd"
kind = "pagerduty"
token = { file = "pd.token" }

[[oncall]]
name = "genie"
kind = "opsgenie"
token = { file = "pd.token" }
schedules = ["ops"]
escalation_policies = ["P1"]

[[oncall]]
name = "lapsing"
kind = "pagerduty"
token = { file = "pd.token" }
schedules = ["P"]
refresh = "10m"
ttl = "5m"

[[oncall]]
name = "keyless"
kind = "opsgenie"
schedules = ["ops"]

[[oncall]]
name = "keyless"
kind = "shift"
path = "x.toml"
"#,
        )
        .err()
        .unwrap()
        .join("\n");
        for expected in [
            "oncall[0] (pd): name at least one schedule",
            "oncall[1] (genie): escalation_policies, max_level: pagerduty only",
            "oncall[2] (lapsing): ttl: 5m is shorter than refresh (10m)",
            "oncall[3] (keyless): token: required for opsgenie",
            "oncall[4].name: \"keyless\" is used twice",
        ] {
            assert!(
                problems.contains(expected),
                "{expected:?} not in:\n{problems}"
            );
        }
    }

    #[test]
    fn an_answer_counts_for_its_ttl_and_maps_addresses_to_principals() {
        let (b, _) = board(
            r#"
[[oncall]]
name = "pd"
kind = "pagerduty"
token = { file = "pd.token" }
schedules = ["PSCH001"]
ttl = "5m"
email_domain = "example.com"
users = { "Carol@Elsewhere.example" = "carol" }
"#,
        )
        .unwrap();
        let at = Timestamp::from_unix_millis(1_800_000_000_000);
        {
            let mut a = b.sources[0].answer.lock().unwrap();
            a.emails = ["alice@example.com", "carol@elsewhere.example"]
                .map(String::from)
                .into();
            a.read_at = Some(at);
        }
        let p = |n: &str| PrincipalId::new(n).unwrap();
        assert!(b.on_call(&p("alice"), at));
        assert!(b.on_call(&p("carol"), at.plus_millis(299_999)));
        assert!(!b.on_call(&p("bob"), at));
        // alice@example.com is hers by the domain; an address `users` maps is not.
        {
            let mut a = b.sources[0].answer.lock().unwrap();
            a.emails = ["carol@elsewhere.example"].map(String::from).into();
        }
        let (mapped, _) = board(
            r#"
[[oncall]]
name = "pd"
kind = "pagerduty"
token = { file = "pd.token" }
schedules = ["PSCH001"]
email_domain = "example.com"
users = { "alice@example.com" = "bob" }
"#,
        )
        .unwrap();
        {
            let mut a = mapped.sources[0].answer.lock().unwrap();
            a.emails = ["alice@example.com"].map(String::from).into();
            a.read_at = Some(at);
        }
        assert!(mapped.on_call(&p("bob"), at));
        assert!(!mapped.on_call(&p("alice"), at), "the address is bob's");
        // Past its ttl, with no newer answer: nobody.
        assert!(!b.on_call(&p("alice"), at.plus_millis(300_000)));
        assert_eq!(
            b.status(at.plus_millis(300_000))[0],
            ("pd".into(), false, false)
        );
    }
}
