//! Wiring of workload identity: the trusted issuers from `[[issuers]]` and the signing keys of
//! `[tokens]`, checked at start with every problem named.

use std::{path::PathBuf, sync::Arc};

use hourglass_tokens::{IssuerSpec, Issuers, JwksSource, Rotation, Rule, Signer, parse_algorithm};

use crate::config::Config;

/// Issuers and signer, ready to serve.
pub struct Workload {
    pub issuers: Issuers,
    /// `None` when no issuer and no token target is configured (the JWKS is then empty).
    pub signer: Option<Arc<Signer>>,
    pub exchange_wait_ms: i64,
}

/// Checks `[[issuers]]`; each problem names its key.
pub fn issuer_specs(config: &Config) -> Result<Vec<IssuerSpec>, Vec<String>> {
    let file = config.file_name();
    let mut problems = Vec::new();
    let mut specs = Vec::new();
    for (i, c) in config.issuers.iter().enumerate() {
        let key = format!("{file}: issuers[{i}]");
        let mut bad = |m: String| problems.push(format!("{key}.{m}"));
        let jwks = match (&c.jwks_url, &c.jwks_file) {
            (Some(u), None) => match url::Url::parse(u) {
                Ok(parsed)
                    if parsed.scheme() == "https"
                        || parsed.host_str().is_some_and(|h| {
                            h == "127.0.0.1" || h == "localhost" || h == "::1"
                        }) =>
                {
                    Some(JwksSource::Url(u.clone()))
                }
                Ok(_) => {
                    bad("jwks_url: use https (plain http only on loopback)".into());
                    None
                }
                Err(e) => {
                    bad(format!("jwks_url: {e}"));
                    None
                }
            },
            (None, Some(f)) => Some(JwksSource::File(f.clone())),
            _ => {
                bad("jwks_url / jwks_file: give exactly one".into());
                None
            }
        };
        if c.issuer.trim().is_empty() {
            bad("issuer: the exact iss of its tokens is required".into());
        }
        if c.audience.is_empty() || c.audience.iter().any(|a| a.trim().is_empty()) {
            bad("audience: at least one, none empty".into());
        }
        for (name, list) in [
            ("delegation_audience", &c.delegation_audience),
            ("api_audience", &c.api_audience),
            ("mcp_audience", &c.mcp_audience),
        ] {
            if list.iter().any(|a| a.trim().is_empty()) {
                bad(format!("{name}: no empty audience"));
            }
        }
        let uses = [
            ("audience", &c.audience),
            ("delegation_audience", &c.delegation_audience),
            ("api_audience", &c.api_audience),
            ("mcp_audience", &c.mcp_audience),
        ];
        for (i, (a_name, a)) in uses.iter().enumerate() {
            for (b_name, b) in &uses[i + 1..] {
                if let Some(shared) = a.iter().find(|x| b.contains(x)) {
                    bad(format!(
                        "{b_name}: {shared:?} is also in {a_name}; each use of a token needs its own audience"
                    ));
                }
            }
        }
        let mut algorithms = Vec::new();
        for a in &c.algorithms {
            match parse_algorithm(a) {
                Ok(alg) => algorithms.push(alg),
                Err(e) => bad(format!("algorithms: {e}")),
            }
        }
        if c.algorithms.is_empty() {
            bad("algorithms: at least one".into());
        }
        if c.rules.is_empty() {
            bad("map: at least one [[issuers.map]] rule naming a principal".into());
        }
        let mut rules = Vec::new();
        for (j, r) in c.rules.iter().enumerate() {
            if r.claims.is_empty() {
                bad(format!(
                    "map[{j}].claims: at least one claim to match (a rule with none would accept every token of the issuer)"
                ));
            }
            if let Err(e) = hourglass_core::id::PrincipalId::new(r.principal.clone()) {
                bad(format!("map[{j}].principal: {e}"));
            }
            rules.push(Rule {
                principal: r.principal.clone(),
                claims: r.claims.clone(),
            });
        }
        if let Some(j) = jwks {
            specs.push(IssuerSpec {
                name: c.name.clone(),
                issuer: c.issuer.clone(),
                jwks: j,
                audience: c.audience.clone(),
                delegation_audience: c.delegation_audience.clone(),
                api_audience: c.api_audience.clone(),
                mcp_audience: c.mcp_audience.clone(),
                algorithms,
                skew_secs: c.clock_skew.as_secs(),
                rules,
            });
        }
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(problems)
    }
}

/// Where the signing keys live: `[tokens] key_dir`, else beside the SQLite database, else
/// beside the configuration file.
pub fn key_dir(config: &Config) -> Option<PathBuf> {
    if let Some(d) = &config.tokens.key_dir {
        return Some(d.clone());
    }
    if let Some(path) = config
        .store
        .url
        .strip_prefix("sqlite://")
        .filter(|p| !p.starts_with(':'))
    {
        let path = PathBuf::from(path.split('?').next().unwrap_or(path));
        return Some(
            path.parent()
                .unwrap_or(std::path::Path::new("."))
                .join("signing-keys"),
        );
    }
    config.source.as_ref().map(|f| {
        f.parent()
            .unwrap_or(std::path::Path::new("."))
            .join("signing-keys")
    })
}

/// The signer of the key directory for documents that need one whatever else is configured
/// (an audit archive's manifest): opened, and rotated as due, like the server's.
pub fn archive_signer(config: &Config, now_secs: i64) -> Result<Signer, String> {
    let dir = key_dir(config)
        .ok_or("tokens.key_dir: required (the store is not a SQLite file to put it beside)")?;
    let rotation = Rotation {
        rotate_every_secs: i64::try_from(config.tokens.rotate_every.as_secs()).unwrap_or(i64::MAX),
        retire_after_secs: i64::try_from(config.tokens.retire_after.as_secs()).unwrap_or(i64::MAX),
    };
    Signer::open(&dir, &token_issuer(config), rotation, now_secs)
        .map_err(|e| format!("tokens.key_dir {}: {e}", dir.display()))
}

/// The `iss` of Hourglass access tokens.
pub fn token_issuer(config: &Config) -> String {
    config
        .tokens
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.server.listen))
}

/// Builds the issuers and (when needed) the signer at `now_secs`.
pub fn build(config: &Config, now_secs: i64, issuer: &str) -> Result<Workload, Vec<String>> {
    let specs = issuer_specs(config)?;
    let issuers = Issuers::new(specs).map_err(|e| vec![e])?;
    let needs_signer =
        !config.issuers.is_empty() || config.targets.iter().any(|t| t.connector == "token");
    let signer = if needs_signer {
        let dir = key_dir(config).ok_or_else(|| {
            vec![
                "tokens.key_dir: required (the store is not a SQLite file to put it beside)"
                    .to_owned(),
            ]
        })?;
        let rotation = Rotation {
            rotate_every_secs: i64::try_from(config.tokens.rotate_every.as_secs())
                .unwrap_or(i64::MAX),
            retire_after_secs: i64::try_from(config.tokens.retire_after.as_secs())
                .unwrap_or(i64::MAX),
        };
        let longest = config
            .entitlements
            .iter()
            .filter(|e| {
                config.targets.iter().any(|t| {
                    t.connector == "token" && e.name.split('/').next() == Some(t.name.as_str())
                })
            })
            .map(|e| e.max_duration)
            .max();
        if let Some(m) = longest
            && m > config.tokens.retire_after
        {
            return Err(vec![format!(
                "tokens.retire_after: {} is shorter than the longest token lifetime ({m}); a retired key would strand valid tokens",
                config.tokens.retire_after
            )]);
        }
        Some(Arc::new(
            Signer::open(&dir, issuer, rotation, now_secs)
                .map_err(|e| vec![format!("tokens.key_dir {}: {e}", dir.display())])?,
        ))
    } else {
        None
    };
    Ok(Workload {
        issuers,
        signer,
        exchange_wait_ms: config.tokens.exchange_wait.as_millis(),
    })
}
