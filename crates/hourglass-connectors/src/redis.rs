//! The `redis` connector: an ACL user per grant on a Redis 6 or later server.
//!
//! A grant creates the user `<prefix><grant id>` (`ACL SETUSER … reset on >password <rules>`)
//! with the entitlement's ACL rules (`rules = ["~app:*", "+@read"]`) and a generated password,
//! handed over once as a `redis://user:password@host:port` URL. Revocation ends the user's
//! connections (`CLIENT KILL USER`) and deletes it (`ACL DELUSER`, which also disconnects it);
//! the proof asks again that the user is gone and no client is connected as it. Redis cannot
//! expire a user at a moment, so the access ends when Hourglass revokes it.
//!
//! Discovery lists every ACL user that may run administrative or dangerous commands (`+@all`,
//! `allcommands`, `+@admin`, `+@dangerous`): the standing privilege to be replaced by grants.
//! The reconciler finds users with the prefix that the ledger does not explain.

use std::{path::PathBuf, time::Duration};

use async_trait::async_trait;
use hourglass_core::connector::{
    Connector, ConnectorError, GrantSpec, Holding, Managed, Presence, Provisioned, RevocationProof,
};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, Value, aio::MultiplexedConnection};
use secrecy::SecretString;
use serde::Deserialize;

use crate::postgres::check_prefix;

/// Configuration of a `redis` target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// The administrative connection (`redis://hourglass@cache.internal:6379`). Its user needs
    /// `+acl`, `+client|kill` and `+client|list` (or `+@admin`).
    pub url: String,
    /// A file holding the administrative password, if it is not in the URL.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The name prefix of the users Hourglass creates (and the reconciler may remove).
    #[serde(default = "crate::db::default_prefix")]
    pub prefix: String,
    /// Seconds before a call is abandoned (default 10).
    #[serde(default = "crate::db::default_timeout")]
    pub timeout_secs: u64,
}

/// An entitlement's parameters on a `redis` target.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Params {
    /// ACL rules (`~app:*`, `%R~cache:*`, `&chan:*`, `+@read`, `-flushall`, `allkeys`…).
    rules: Vec<String>,
}

/// Rules that set passwords or switch the user, which Hourglass alone decides.
const FORBIDDEN: [&str; 6] = [
    "on",
    "off",
    "nopass",
    "resetpass",
    "reset",
    "skip-sanitize-payload",
];

/// Checks one ACL rule: key and channel patterns, command and category rules, and the
/// keywords that grant no password or state.
fn check_rule(rule: &str) -> Result<(), String> {
    if rule.is_empty() || rule.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{rule:?}: one rule, without spaces"));
    }
    let lower = rule.to_ascii_lowercase();
    if FORBIDDEN.contains(&lower.as_str()) || rule.starts_with(['>', '<', '#', '!']) {
        return Err(format!(
            "{rule:?}: passwords and the user's state are Hourglass's to set"
        ));
    }
    let ok = rule.starts_with(['~', '%', '&', '+', '-', '('])
        || [
            "allkeys",
            "allchannels",
            "allcommands",
            "nocommands",
            "resetkeys",
            "resetchannels",
        ]
        .contains(&lower.as_str());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{rule:?} is not an ACL rule (~keys, %R~keys, &channels, +command, -command, +@category, allkeys…)"
        ))
    }
}

fn params(v: &serde_json::Value) -> Result<Params, String> {
    let p: Params = serde_json::from_value(v.clone()).map_err(|e| format!("params: {e}"))?;
    if p.rules.is_empty() {
        return Err("params.rules: at least one ACL rule (`+@read`, `~app:*`)".into());
    }
    for r in &p.rules {
        check_rule(r).map_err(|e| format!("params.rules: {e}"))?;
    }
    Ok(p)
}

/// Whether a user's ACL (as `ACL LIST` prints it) lets it run administrative or dangerous
/// commands; the first rule that does.
fn privileged(acl: &str) -> Option<&str> {
    let mut tokens = acl.split_whitespace();
    // `user <name> on|off …`: only an enabled user holds anything.
    if tokens.next() != Some("user") || tokens.nth(1) != Some("on") {
        return None;
    }
    acl.split_whitespace().find(|t| {
        matches!(
            t.to_ascii_lowercase().as_str(),
            "+@all" | "allcommands" | "+@admin" | "+@dangerous"
        )
    })
}

/// A connector for one Redis server.
pub struct RedisConnector {
    client: Client,
    prefix: String,
    timeout: Duration,
    /// Where a requester connects: the administrative URL's host and port.
    host: String,
    port: u16,
}

impl std::fmt::Debug for RedisConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnector")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

fn redis_err(e: redis::RedisError) -> ConnectorError {
    // The error's text names the command and the server's answer, never the URL.
    ConnectorError::new(format!("redis: {e}"))
}

impl RedisConnector {
    pub fn new(cfg: &RedisConfig, entitlements: &[serde_json::Value]) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = check_prefix(&cfg.prefix, 64) {
            problems.push(e);
        }
        for (i, p) in entitlements.iter().enumerate() {
            if let Err(e) = params(p) {
                problems.push(format!("entitlement {i}: {e}"));
            }
        }
        let url = url::Url::parse(&cfg.url).map_err(|e| vec![format!("url: {e}")])?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            problems.push("url: redis://host:port (or rediss://)".into());
        }
        let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = url.port().unwrap_or(6379);
        let mut info = url
            .into_connection_info()
            .map_err(|e| vec![format!("url: {e}")])?;
        if let Some(path) = &cfg.password_file {
            match crate::db::read_password(path) {
                Ok(pw) => {
                    let settings = info.redis_settings().clone().set_password(pw);
                    info = info.set_redis_settings(settings);
                }
                Err(e) => problems.push(e),
            }
        }
        let client = Client::open(info).map_err(|e| vec![format!("url: {e}")])?;
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(RedisConnector {
            client,
            prefix: cfg.prefix.clone(),
            timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
            host,
            port,
        })
    }

    fn user(&self, spec: &GrantSpec) -> String {
        format!("{}{}", self.prefix, spec.grant_id.as_str())
    }

    async fn conn(&self) -> Result<MultiplexedConnection, ConnectorError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(redis_err)
    }

    /// Ends the connections of `user` (none, or no such user, is fine) and deletes it.
    async fn drop_user(&self, user: &str) -> Result<(), ConnectorError> {
        let mut c = self.conn().await?;
        match redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg(user)
            .query_async::<Value>(&mut c)
            .await
        {
            Ok(_) => {}
            Err(e) if e.to_string().contains("No such user") => {}
            Err(e) => return Err(redis_err(e)),
        }
        redis::cmd("ACL")
            .arg("DELUSER")
            .arg(user)
            .query_async::<i64>(&mut c)
            .await
            .map_err(redis_err)
            .map(drop)
    }

    /// Whether `user` exists.
    async fn exists(
        &self,
        c: &mut MultiplexedConnection,
        user: &str,
    ) -> Result<bool, ConnectorError> {
        let v: Value = redis::cmd("ACL")
            .arg("GETUSER")
            .arg(user)
            .query_async(c)
            .await
            .map_err(redis_err)?;
        Ok(!matches!(v, Value::Nil))
    }

    /// How many clients are connected as `user`.
    async fn clients_of(
        &self,
        c: &mut MultiplexedConnection,
        user: &str,
    ) -> Result<usize, ConnectorError> {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(c)
            .await
            .map_err(redis_err)?;
        let field = format!("user={user}");
        Ok(list
            .lines()
            .filter(|l| l.split_whitespace().any(|f| f == field))
            .count())
    }
}

#[async_trait]
impl Connector for RedisConnector {
    async fn grant(&self, spec: &GrantSpec) -> Result<Provisioned, ConnectorError> {
        let p = params(&spec.params).map_err(ConnectorError::new)?;
        let user = self.user(spec);
        let password = crate::secret::password()?;
        let mut c = self.conn().await?;
        // `reset` first: granting again (after a crash) leaves exactly these rules.
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(&user)
            .arg("reset")
            .arg("on")
            .arg(format!(">{password}"));
        for r in &p.rules {
            cmd.arg(r);
        }
        cmd.query_async::<()>(&mut c).await.map_err(redis_err)?;
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        Ok(Provisioned {
            handle: Some(serde_json::json!({ "user": user })),
            credential: Some(SecretString::from(format!(
                "redis://{user}:{password}@{host}:{}",
                self.port
            ))),
        })
    }

    async fn revoke(&self, spec: &GrantSpec) -> Result<(), ConnectorError> {
        self.drop_user(&self.user(spec)).await
    }

    async fn inspect(&self, spec: &GrantSpec) -> Result<Presence, ConnectorError> {
        let mut c = self.conn().await?;
        Ok(if self.exists(&mut c, &self.user(spec)).await? {
            Presence::Present
        } else {
            Presence::Absent
        })
    }

    async fn prove_revoked(&self, spec: &GrantSpec) -> Result<RevocationProof, ConnectorError> {
        let user = self.user(spec);
        let mut c = self.conn().await?;
        if self.exists(&mut c, &user).await? {
            return Err(ConnectorError::new(format!(
                "ACL user {user} still exists after its revocation"
            )));
        }
        let open = self.clients_of(&mut c, &user).await?;
        if open > 0 {
            return Err(ConnectorError::new(format!(
                "{open} clients are still connected as {user}"
            )));
        }
        Ok(RevocationProof::Verified {
            checked: format!(
                "ACL user {user} is gone (ACL GETUSER) and no client is connected as it (CLIENT LIST)"
            ),
        })
    }

    async fn discover(&self) -> Result<Vec<Holding>, ConnectorError> {
        let mut c = self.conn().await?;
        let users: Vec<String> = redis::cmd("ACL")
            .arg("LIST")
            .query_async(&mut c)
            .await
            .map_err(redis_err)?;
        Ok(users
            .iter()
            .filter_map(|acl| {
                let name = acl.split_whitespace().nth(1)?;
                let rule = privileged(acl)?;
                Some(Holding {
                    principal: None,
                    entitlement: None,
                    holder: name.to_owned(),
                    privilege: rule.to_owned(),
                    grant_id: name.strip_prefix(&self.prefix).map(str::to_owned),
                })
            })
            .collect())
    }

    fn check_params(&self, params_value: &serde_json::Value) -> Vec<String> {
        params(params_value).err().into_iter().collect()
    }

    async fn managed(&self) -> Result<Option<Vec<Managed>>, ConnectorError> {
        let mut c = self.conn().await?;
        let users: Vec<String> = redis::cmd("ACL")
            .arg("USERS")
            .query_async(&mut c)
            .await
            .map_err(redis_err)?;
        Ok(Some(
            users
                .into_iter()
                .filter_map(|u| {
                    let grant_id = u.strip_prefix(&self.prefix)?.to_owned();
                    Some(Managed {
                        name: u,
                        grant_id,
                        ends_at: None,
                    })
                })
                .collect(),
        ))
    }

    async fn remove(&self, m: &Managed) -> Result<(), ConnectorError> {
        if !m.name.starts_with(&self.prefix) {
            return Err(ConnectorError::new(format!(
                "{} does not carry the prefix {}",
                m.name, self.prefix
            )));
        }
        self.drop_user(&m.name).await
    }
}

#[cfg(test)]
mod tests;
