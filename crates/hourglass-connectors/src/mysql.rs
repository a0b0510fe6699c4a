//! The `mysql` connector: access to a MariaDB or MySQL server.
//!
//! Each grant creates an account `'<prefix><grant id>'@'<host>'` with a generated password and
//! the entitlement's privileges (`privileges` on `on`) and/or role, and revokes it by locking
//! the account, killing its connections (MariaDB and MySQL keep a dropped user's open sessions
//! alive otherwise) and dropping it. The password is sent as its `mysql_native_password` hash,
//! never in plaintext. Neither server can expire an account at a moment, so unlike PostgreSQL
//! the access ends only when Hourglass revokes it: keep an eye on overdue revocations.
//!
//! Account names are `prefix` + the 36-character grant id: MariaDB allows 80 characters; MySQL
//! 5.7 and 8 allow 32, which this naming does not fit (see docs/connectors.md).

use std::{collections::BTreeSet, path::PathBuf, str::FromStr, time::Duration};

use async_trait::async_trait;
use hourglass_core::{
    connector::{
        Connector, ConnectorError, GrantSpec, Holding, Managed, Presence, Provisioned,
        RevocationProof,
    },
    id::GrantId,
};
use secrecy::SecretString;
use serde::Deserialize;
use sqlx::{
    AssertSqlSafe, MySqlPool,
    mysql::{MySqlConnectOptions, MySqlPoolOptions},
};

use crate::{
    postgres::check_prefix,
    secret::{self, quote_ident, quote_literal},
};

/// Configuration of a `mysql` target (MariaDB or MySQL).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    /// Administrative connection (`mysql://hourglass@db.internal:3306/app`). Its user needs
    /// `CREATE USER`, the privileges it grants `WITH GRANT OPTION`, and `CONNECTION ADMIN` (or
    /// `SUPER`) to kill sessions.
    pub url: String,
    /// A file holding the administrative password, if it is not in the URL.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The name prefix of the accounts Hourglass creates (and the reconciler may remove).
    #[serde(default = "crate::db::default_prefix")]
    pub prefix: String,
    /// The host part of created accounts (default `%`).
    #[serde(default = "default_host")]
    pub account_host: String,
    /// Seconds to wait for a connection (default 10).
    #[serde(default = "crate::db::default_timeout")]
    pub timeout_secs: u64,
    /// Connections kept to the target (default 4).
    #[serde(default = "crate::db::default_pool")]
    pub max_connections: u32,
}

fn default_host() -> String {
    "%".into()
}

/// An entitlement's parameters on a `mysql` target.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Privileges (`["SELECT", "SHOW VIEW"]`), granted on `on`.
    #[serde(default)]
    privileges: Vec<String>,
    /// `database.*` or `database.table`.
    #[serde(default)]
    on: Option<String>,
    /// A role granted and made the account's default role.
    #[serde(default)]
    role: Option<String>,
}

/// `db.*` or `db.table`, quoted.
fn object(on: &str) -> Result<(String, String), String> {
    let (db, table) = on
        .split_once('.')
        .ok_or_else(|| format!("params.on: {on:?} must be database.* or database.table"))?;
    let q = |s: &str| quote_ident(s, '`').map_err(|e| format!("params.on: {e}"));
    let table = if table == "*" {
        "*".to_owned()
    } else {
        q(table)?
    };
    Ok((db.to_owned(), format!("{}.{table}", q(db)?)))
}

fn params(v: &serde_json::Value) -> Result<Params, String> {
    let p: Params = serde_json::from_value(v.clone()).map_err(|e| format!("params: {e}"))?;
    if p.privileges.is_empty() && p.role.is_none() {
        return Err("params: name privileges (with on) or a role to grant".into());
    }
    for priv_ in &p.privileges {
        let upper = priv_.to_ascii_uppercase();
        if upper.is_empty()
            || !upper.chars().all(|c| c.is_ascii_uppercase() || c == ' ')
            || upper.contains("GRANT")
        {
            return Err(format!(
                "params.privileges: {priv_:?} is not a privilege name (GRANT OPTION is never given)"
            ));
        }
    }
    match (&p.on, p.privileges.is_empty()) {
        (None, false) => return Err("params.on: privileges need on = \"database.*\"".into()),
        (Some(on), _) => {
            object(on)?;
        }
        (None, true) => {}
    }
    if let Some(r) = &p.role {
        quote_ident(r, '`').map_err(|e| format!("params.role: {e}"))?;
    }
    Ok(p)
}

fn db_err(e: sqlx::Error) -> ConnectorError {
    ConnectorError::new(format!("mysql: {e}"))
}

/// The MariaDB/MySQL connector.
pub struct MysqlConnector {
    cfg: MysqlConfig,
    pool: MySqlPool,
    options: MySqlConnectOptions,
    /// (privilege, database) pairs and roles that this target's entitlements grant.
    privileged: BTreeSet<(String, String)>,
    roles: BTreeSet<String>,
}

impl std::fmt::Debug for MysqlConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConnector")
            .field("prefix", &self.cfg.prefix)
            .finish_non_exhaustive()
    }
}

impl MysqlConnector {
    /// Builds the connector; connections are opened on first use. `entitlements` holds the
    /// parameters of this target's entitlements, for `discover`.
    pub fn new(cfg: MysqlConfig, entitlements: &[serde_json::Value]) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = check_prefix(&cfg.prefix, 80 - 36) {
            problems.push(e);
        }
        if let Err(e) = quote_literal(&cfg.account_host) {
            problems.push(format!("account_host: {e}"));
        }
        let mut options = match MySqlConnectOptions::from_str(&cfg.url) {
            Ok(o) => Some(o),
            Err(e) => {
                problems.push(format!("url: {e}"));
                None
            }
        };
        if let Some(path) = &cfg.password_file {
            match crate::db::read_password(path) {
                Ok(pw) => options = options.map(|o| o.password(&pw)),
                Err(e) => problems.push(e),
            }
        }
        let Some(options) = options.filter(|_| problems.is_empty()) else {
            return Err(problems);
        };
        let mut privileged = BTreeSet::new();
        let mut roles = BTreeSet::new();
        for p in entitlements.iter().filter_map(|v| params(v).ok()) {
            if let Some((db, _)) = p.on.as_deref().and_then(|on| object(on).ok()) {
                for priv_ in &p.privileges {
                    privileged.insert((priv_.to_ascii_uppercase(), db.clone()));
                }
            }
            roles.extend(p.role);
        }
        let pool = MySqlPoolOptions::new()
            .max_connections(cfg.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(cfg.timeout_secs.max(1)))
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(options.clone());
        Ok(MysqlConnector {
            cfg,
            pool,
            options,
            privileged,
            roles,
        })
    }

    fn user_of(&self, grant: &GrantId) -> String {
        format!("{}{}", self.cfg.prefix, grant.as_str())
    }

    fn account(&self, user: &str, host: &str) -> Result<String, ConnectorError> {
        Ok(format!("{}@{}", quote_literal(user)?, quote_literal(host)?))
    }

    async fn raw(&self, stmt: String) -> Result<(), ConnectorError> {
        sqlx::raw_sql(AssertSqlSafe(stmt))
            .execute(&self.pool)
            .await
            .map_err(db_err)
            .map(drop)
    }

    async fn exists(&self, user: &str, host: &str) -> Result<bool, ConnectorError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM mysql.user WHERE User = ? AND Host = ? AND is_role = 'N'",
        )
        .bind(user)
        .bind(host)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(n > 0)
    }

    /// Locks the account, kills its sessions and drops it; nothing to do if it is gone.
    async fn drop_account(&self, user: &str, host: &str) -> Result<(), ConnectorError> {
        if !self.exists(user, host).await? {
            return Ok(());
        }
        let account = self.account(user, host)?;
        self.raw(format!("ALTER USER {account} ACCOUNT LOCK"))
            .await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        for id in ids {
            if let Err(e) = self.raw(format!("KILL CONNECTION {id}")).await {
                // It may have ended on its own meanwhile.
                tracing::debug!(id, error = %e, "kill connection");
            }
        }
        self.raw(format!("DROP USER IF EXISTS {account}")).await
    }

    fn credential(&self, user: &str, password: &str, db: Option<&str>) -> String {
        crate::db::credential_url(
            "mysql",
            user,
            password,
            self.options.get_host(),
            self.options.get_port(),
            db.or(self.options.get_database()).unwrap_or_default(),
        )
    }
}

#[async_trait]
impl Connector for MysqlConnector {
    async fn grant(&self, spec: &GrantSpec) -> Result<Provisioned, ConnectorError> {
        let p = params(&spec.params).map_err(ConnectorError::new)?;
        let user = self.user_of(&spec.grant_id);
        let account = self.account(&user, &self.cfg.account_host)?;
        let password = secret::password()?;
        let hash = secret::mysql_native_hash(&password);
        // DDL commits on its own here; every step is repeatable, and granting again (after a
        // crash lost the first credential) sets a new password.
        self.raw(format!("CREATE USER IF NOT EXISTS {account}"))
            .await?;
        self.raw(format!(
            "ALTER USER {account} IDENTIFIED BY PASSWORD '{hash}' ACCOUNT UNLOCK"
        ))
        .await?;
        let mut db = None;
        if let Some(on) = &p.on
            && !p.privileges.is_empty()
        {
            let (name, object) = object(on).map_err(ConnectorError::new)?;
            let privs = p
                .privileges
                .iter()
                .map(|s| s.to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join(", ");
            self.raw(format!("GRANT {privs} ON {object} TO {account}"))
                .await?;
            db = Some(name);
        }
        if let Some(role) = &p.role {
            let role = quote_ident(role, '`')?;
            self.raw(format!("GRANT {role} TO {account}")).await?;
            self.raw(format!("SET DEFAULT ROLE {role} FOR {account}"))
                .await?;
        }
        Ok(Provisioned {
            handle: Some(serde_json::json!({"user": user, "host": self.cfg.account_host})),
            credential: Some(SecretString::from(self.credential(
                &user,
                &password,
                db.as_deref(),
            ))),
        })
    }

    async fn revoke(&self, spec: &GrantSpec) -> Result<(), ConnectorError> {
        let host = spec
            .handle
            .as_ref()
            .and_then(|h| h.get("host"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or(&self.cfg.account_host)
            .to_owned();
        self.drop_account(&self.user_of(&spec.grant_id), &host)
            .await
    }

    /// The account is gone and no connection of it is left (a killed connection takes a
    /// moment to leave the process list, so this looks again for up to two seconds).
    async fn prove_revoked(&self, spec: &GrantSpec) -> Result<RevocationProof, ConnectorError> {
        let user = self.user_of(&spec.grant_id);
        if self.exists(&user, &self.cfg.account_host).await? {
            return Err(ConnectorError::new(format!(
                "account {user} still exists after its revocation"
            )));
        }
        let open = crate::db::sessions_left(|| {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
            )
            .bind(&user)
            .fetch_one(&self.pool)
        })
        .await;
        match open.map_err(db_err)? {
            0 => Ok(RevocationProof::Verified {
                checked: format!(
                    "account {user} is gone (mysql.user) and has no connection (PROCESSLIST)"
                ),
            }),
            n => Err(ConnectorError::new(format!(
                "{n} connections of {user} are still open after its revocation"
            ))),
        }
    }

    async fn inspect(&self, spec: &GrantSpec) -> Result<Presence, ConnectorError> {
        Ok(
            if self
                .exists(&self.user_of(&spec.grant_id), &self.cfg.account_host)
                .await?
            {
                Presence::Present
            } else {
                Presence::Absent
            },
        )
    }

    async fn discover(&self) -> Result<Vec<Holding>, ConnectorError> {
        let mut out = Vec::new();
        let grant_of = |grantee: &str| {
            let user = grantee
                .trim_start_matches('\'')
                .split("'@'")
                .next()
                .unwrap_or_default();
            user.strip_prefix(&self.cfg.prefix)
                .filter(|g| GrantId::parse(g).is_some())
                .map(str::to_owned)
        };
        let privs: BTreeSet<&str> = self.privileged.iter().map(|(p, _)| p.as_str()).collect();
        // Global privileges cover every database: report holders of the granted ones and of
        // SUPER.
        let global: Vec<(String, String)> = sqlx::query_as(
            "SELECT CAST(GRANTEE AS CHAR), CAST(PRIVILEGE_TYPE AS CHAR)
               FROM information_schema.USER_PRIVILEGES ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        for (grantee, privilege) in global {
            if privilege == "SUPER" || privs.contains(privilege.as_str()) {
                out.push(Holding {
                    principal: None,
                    entitlement: None,
                    grant_id: grant_of(&grantee),
                    holder: grantee,
                    privilege: format!("{privilege} ON *.*"),
                });
            }
        }
        let schema: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT CAST(GRANTEE AS CHAR), CAST(TABLE_SCHEMA AS CHAR), CAST(PRIVILEGE_TYPE AS CHAR)
               FROM information_schema.SCHEMA_PRIVILEGES ORDER BY 2, 3, 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        for (grantee, db, privilege) in schema {
            if self.privileged.contains(&(privilege.clone(), db.clone())) {
                out.push(Holding {
                    principal: None,
                    entitlement: None,
                    grant_id: grant_of(&grantee),
                    holder: grantee,
                    privilege: format!("{privilege} ON {db}.*"),
                });
            }
        }
        if !self.roles.is_empty() {
            let mapped: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), CAST(Role AS CHAR)
                   FROM mysql.roles_mapping ORDER BY 3, 1",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
            for (user, host, role) in mapped {
                if self.roles.contains(&role) {
                    let grantee = format!("'{user}'@'{host}'");
                    out.push(Holding {
                        principal: None,
                        entitlement: None,
                        grant_id: grant_of(&grantee),
                        holder: grantee,
                        privilege: format!("role {role}"),
                    });
                }
            }
        }
        Ok(out)
    }

    fn check_params(&self, params_value: &serde_json::Value) -> Vec<String> {
        params(params_value).err().into_iter().collect()
    }

    async fn managed(&self) -> Result<Option<Vec<Managed>>, ConnectorError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT CAST(User AS CHAR), CAST(Host AS CHAR) FROM mysql.user
              WHERE LEFT(User, CHAR_LENGTH(?)) = ? AND is_role = 'N' ORDER BY 1",
        )
        .bind(&self.cfg.prefix)
        .bind(&self.cfg.prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(Some(
            rows.into_iter()
                .map(|(user, host)| Managed {
                    grant_id: user
                        .strip_prefix(&self.cfg.prefix)
                        .unwrap_or_default()
                        .to_owned(),
                    name: format!("{user}@{host}"),
                    ends_at: None,
                })
                .collect(),
        ))
    }

    async fn remove(&self, m: &Managed) -> Result<(), ConnectorError> {
        let (user, host) = m
            .name
            .rsplit_once('@')
            .ok_or_else(|| ConnectorError::new(format!("{:?} is not user@host", m.name)))?;
        self.drop_account(user, host).await
    }
}

#[cfg(test)]
mod tests;
