//! The `postgres` connector: access to a PostgreSQL cluster, in two modes.
//!
//! - **login** (default): each grant creates a login role `<prefix><grant id>` with a generated
//!   password, `VALID UNTIL` the grant's end (so access ends even if Hourglass is down), member
//!   of the entitlement's roles. The password is the credential, handed over once; only its
//!   SCRAM-SHA-256 verifier is sent to the server, so no statement log can hold it. Revoke sets
//!   `NOLOGIN`, terminates the role's sessions, reassigns or drops what it owns, and drops it.
//! - **membership**: for people who have their own login, each grant makes their existing role a
//!   member of the entitlement's roles and removes the membership at the end. Memberships are
//!   reference-counted in a bookkeeping table inside the target (schema `hourglass` by default),
//!   written in the same transaction as the `GRANT`: two overlapping grants do not revoke each
//!   other, and a membership that existed before Hourglass is never removed.
//!
//! Every statement with a name in it is built with quoted identifiers and wrapped in
//! `AssertSqlSafe`; grep for it to review them.

use std::{collections::BTreeMap, path::PathBuf, str::FromStr, time::Duration};

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
    AssertSqlSafe, PgPool, Postgres, Row, Transaction,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::sync::OnceCell;

use crate::secret::{self, quote_ident};

/// Configuration of a `postgres` target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Administrative connection (`postgres://hourglass@db.internal:5432/app?sslmode=require`).
    /// Its user needs `CREATEROLE` and the right to grant the entitlements' roles.
    pub url: String,
    /// A file holding the administrative password, if it is not in the URL.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The name prefix of the roles Hourglass creates (and the reconciler may remove).
    #[serde(default = "crate::db::default_prefix")]
    pub prefix: String,
    /// Where objects owned by a revoked login role go; without it they are dropped.
    #[serde(default)]
    pub reassign_owned_to: Option<String>,
    /// Schema of the membership bookkeeping table (membership mode).
    #[serde(default = "default_bookkeeping")]
    pub bookkeeping_schema: String,
    /// Principal name → existing database role, for membership mode (default: the same name).
    #[serde(default)]
    pub logins: BTreeMap<String, String>,
    /// Membership mode: terminate the member's sessions when a membership is removed, so a
    /// `SET ROLE` made during the grant does not outlive it (default true).
    #[serde(default = "default_true")]
    pub terminate_member_sessions: bool,
    /// Seconds to wait for a connection or a lock (default 10).
    #[serde(default = "crate::db::default_timeout")]
    pub timeout_secs: u64,
    /// Connections kept to the target (default 4).
    #[serde(default = "crate::db::default_pool")]
    pub max_connections: u32,
}

fn default_bookkeeping() -> String {
    "hourglass".into()
}
fn default_true() -> bool {
    true
}

/// An entitlement's parameters on a `postgres` target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Roles granted (`["readwrite"]`).
    roles: Vec<String>,
    #[serde(default)]
    mode: Mode,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Login,
    Membership,
}

fn params(v: &serde_json::Value) -> Result<Params, String> {
    let p: Params = serde_json::from_value(v.clone()).map_err(|e| format!("params: {e}"))?;
    if p.roles.is_empty() {
        return Err("params.roles: name at least one role to grant".into());
    }
    if let Some(r) = p.roles.iter().find(|r| r.is_empty() || r.contains('\0')) {
        return Err(format!("params.roles: {r:?} is not a role name"));
    }
    Ok(p)
}

/// Whether a prefix is safe and leaves room for a grant id in PostgreSQL's 63-byte names.
pub(crate) fn check_prefix(prefix: &str, max_len: usize) -> Result<(), String> {
    let ok_start = prefix
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !ok_start
        || !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!(
            "prefix: {prefix:?} must be lower-case letters, digits and _, starting with a letter or _"
        ));
    }
    if prefix.len() > max_len {
        return Err(format!("prefix: at most {max_len} characters"));
    }
    Ok(())
}

fn db_err(e: sqlx::Error) -> ConnectorError {
    ConnectorError::new(format!("postgres: {e}"))
}

/// The PostgreSQL connector.
pub struct PostgresConnector {
    cfg: PostgresConfig,
    pool: PgPool,
    options: PgConnectOptions,
    /// The roles that this target's entitlements grant, for `discover`.
    privileged: Vec<String>,
    bookkeeping: OnceCell<()>,
}

impl std::fmt::Debug for PostgresConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConnector")
            .field("prefix", &self.cfg.prefix)
            .finish_non_exhaustive()
    }
}

impl PostgresConnector {
    /// Builds the connector; connections are opened on first use. `privileged` lists the roles
    /// this target's entitlements grant.
    pub fn new(cfg: PostgresConfig, privileged: Vec<String>) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        // 63 bytes, less the 36 of a grant id.
        if let Err(e) = check_prefix(&cfg.prefix, 27) {
            problems.push(e);
        }
        let mut options = match PgConnectOptions::from_str(&cfg.url) {
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
        if let Err(e) = quote_ident(&cfg.bookkeeping_schema, '"') {
            problems.push(format!("bookkeeping_schema: {e}"));
        }
        let Some(options) = options.filter(|_| problems.is_empty()) else {
            return Err(problems);
        };
        let options = options.application_name("hourglass").options([
            ("lock_timeout", format!("{}s", cfg.timeout_secs)),
            ("statement_timeout", format!("{}s", cfg.timeout_secs * 3)),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(cfg.timeout_secs.max(1)))
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(options.clone());
        Ok(PostgresConnector {
            cfg,
            pool,
            options,
            privileged,
            bookkeeping: OnceCell::new(),
        })
    }

    fn role_name(&self, grant: &GrantId) -> String {
        format!("{}{}", self.cfg.prefix, grant.as_str())
    }

    fn member_of(&self, spec: &GrantSpec) -> String {
        self.cfg
            .logins
            .get(spec.principal.as_str())
            .cloned()
            .unwrap_or_else(|| spec.principal.as_str().to_owned())
    }

    fn schema(&self) -> Result<String, ConnectorError> {
        quote_ident(&self.cfg.bookkeeping_schema, '"')
    }

    fn credential(&self, role: &str, password: &str) -> String {
        crate::db::credential_url(
            "postgres",
            role,
            password,
            self.options.get_host(),
            self.options.get_port(),
            self.options.get_database().unwrap_or("postgres"),
        )
    }

    async fn exec(tx: &mut Transaction<'_, Postgres>, stmt: String) -> Result<(), ConnectorError> {
        sqlx::query(AssertSqlSafe(stmt))
            .execute(&mut **tx)
            .await
            .map_err(db_err)
            .map(drop)
    }

    async fn grant_login(
        &self,
        spec: &GrantSpec,
        roles: &[String],
    ) -> Result<Provisioned, ConnectorError> {
        let name = self.role_name(&spec.grant_id);
        let q = quote_ident(&name, '"')?;
        let password = secret::password()?;
        let verifier = secret::scram_sha256_verifier(&password)?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(&name)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        // Granting again (after a crash lost the first credential) issues a new password.
        let verb = if exists { "ALTER" } else { "CREATE" };
        Self::exec(
            &mut tx,
            format!(
                "{verb} ROLE {q} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
                 NOBYPASSRLS PASSWORD '{verifier}' VALID UNTIL '{}'",
                spec.expires_at
            ),
        )
        .await?;
        for role in roles {
            Self::exec(&mut tx, format!("GRANT {} TO {q}", quote_ident(role, '"')?)).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Provisioned {
            handle: Some(serde_json::json!({"mode": "login", "role": name, "roles": roles})),
            credential: Some(SecretString::from(self.credential(&name, &password))),
        })
    }

    /// Removes a login role: no new logins, sessions ended, owned objects handled, role gone.
    async fn drop_login_role(&self, name: &str) -> Result<(), ConnectorError> {
        let q = quote_ident(name, '"')?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        if !exists {
            return Ok(());
        }
        // Committed on its own first, so that no new session starts while the rest runs.
        sqlx::query(AssertSqlSafe(format!("ALTER ROLE {q} NOLOGIN")))
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        self.terminate_sessions(name).await?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if let Some(to) = &self.cfg.reassign_owned_to {
            Self::exec(
                &mut tx,
                format!("REASSIGN OWNED BY {q} TO {}", quote_ident(to, '"')?),
            )
            .await?;
        }
        Self::exec(&mut tx, format!("DROP OWNED BY {q}")).await?;
        Self::exec(&mut tx, format!("DROP ROLE IF EXISTS {q}")).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn terminate_sessions(&self, user: &str) -> Result<(), ConnectorError> {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE usename = $1 AND pid <> pg_backend_pid()",
        )
        .bind(user)
        .execute(&self.pool)
        .await
        .map_err(db_err)
        .map(drop)
    }

    async fn ensure_bookkeeping(&self) -> Result<(), ConnectorError> {
        self.bookkeeping
            .get_or_try_init(|| async {
                let s = self.schema()?;
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext('hourglass:bookkeeping'))")
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                Self::exec(&mut tx, format!("CREATE SCHEMA IF NOT EXISTS {s}")).await?;
                Self::exec(&mut tx, format!("REVOKE ALL ON SCHEMA {s} FROM PUBLIC")).await?;
                Self::exec(
                    &mut tx,
                    format!(
                        "CREATE TABLE IF NOT EXISTS {s}.memberships (
                           grant_id   text NOT NULL,
                           member     text NOT NULL,
                           role       text NOT NULL,
                           granted_at timestamptz NOT NULL DEFAULT now(),
                           PRIMARY KEY (grant_id, role))"
                    ),
                )
                .await?;
                Self::exec(
                    &mut tx,
                    format!(
                        "CREATE TABLE IF NOT EXISTS {s}.preexisting (
                           member text NOT NULL,
                           role   text NOT NULL,
                           PRIMARY KEY (member, role))"
                    ),
                )
                .await?;
                tx.commit().await.map_err(db_err)
            })
            .await
            .map(drop)
    }

    async fn lock_pair(
        tx: &mut Transaction<'_, Postgres>,
        member: &str,
        role: &str,
    ) -> Result<(), ConnectorError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("hourglass:{member}\u{1f}{role}"))
            .execute(&mut **tx)
            .await
            .map_err(db_err)
            .map(drop)
    }

    async fn is_member(
        tx: &mut Transaction<'_, Postgres>,
        member: &str,
        role: &str,
    ) -> Result<bool, ConnectorError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_auth_members am
               JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
               WHERE r.rolname = $1 AND m.rolname = $2)",
        )
        .bind(role)
        .bind(member)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)
    }

    async fn grant_membership(
        &self,
        spec: &GrantSpec,
        roles: &[String],
    ) -> Result<Provisioned, ConnectorError> {
        self.ensure_bookkeeping().await?;
        let s = self.schema()?;
        let member = self.member_of(spec);
        let qm = quote_ident(&member, '"')?;
        let mut sorted = roles.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let member_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(&member)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        if !member_exists {
            return Err(ConnectorError::new(format!(
                "postgres: the database role {member:?} for {} does not exist (map it under logins)",
                spec.principal
            )));
        }
        for role in &sorted {
            Self::lock_pair(&mut tx, &member, role).await?;
            let mine: bool = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT EXISTS (SELECT 1 FROM {s}.memberships WHERE grant_id = $1 AND role = $2)"
            )))
            .bind(spec.grant_id.as_str())
            .bind(role)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if mine {
                continue;
            }
            let others: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT count(*) FROM {s}.memberships WHERE member = $1 AND role = $2"
            )))
            .bind(&member)
            .bind(role)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            let is_member = Self::is_member(&mut tx, &member, role).await?;
            if others == 0 {
                // Either it exists before (and outside) Hourglass, or it does not exist at all.
                let stmt = if is_member {
                    format!(
                        "INSERT INTO {s}.preexisting (member, role) VALUES ($1, $2)
                         ON CONFLICT DO NOTHING"
                    )
                } else {
                    format!("DELETE FROM {s}.preexisting WHERE member = $1 AND role = $2")
                };
                sqlx::query(AssertSqlSafe(stmt))
                    .bind(&member)
                    .bind(role)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            if !is_member {
                Self::exec(
                    &mut tx,
                    format!("GRANT {} TO {qm}", quote_ident(role, '"')?),
                )
                .await?;
            }
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {s}.memberships (grant_id, member, role) VALUES ($1, $2, $3)"
            )))
            .bind(spec.grant_id.as_str())
            .bind(&member)
            .bind(role)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Provisioned {
            handle: Some(
                serde_json::json!({"mode": "membership", "member": member, "roles": sorted}),
            ),
            credential: None,
        })
    }

    /// Releases every membership a grant holds; removes those no other grant needs and that
    /// did not exist before Hourglass.
    async fn revoke_membership(&self, grant_id: &str) -> Result<(), ConnectorError> {
        self.ensure_bookkeeping().await?;
        let s = self.schema()?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT member, role FROM {s}.memberships WHERE grant_id = $1 ORDER BY member, role"
        )))
        .bind(grant_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut removed_from = Vec::new();
        for row in rows {
            let member: String = row.try_get("member").map_err(db_err)?;
            let role: String = row.try_get("role").map_err(db_err)?;
            Self::lock_pair(&mut tx, &member, &role).await?;
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {s}.memberships WHERE grant_id = $1 AND role = $2"
            )))
            .bind(grant_id)
            .bind(&role)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let still_needed: bool = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT EXISTS (SELECT 1 FROM {s}.memberships WHERE member = $1 AND role = $2)
                     OR EXISTS (SELECT 1 FROM {s}.preexisting WHERE member = $1 AND role = $2)"
            )))
            .bind(&member)
            .bind(&role)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if !still_needed && Self::is_member(&mut tx, &member, &role).await? {
                Self::exec(
                    &mut tx,
                    format!(
                        "REVOKE {} FROM {}",
                        quote_ident(&role, '"')?,
                        quote_ident(&member, '"')?
                    ),
                )
                .await?;
                removed_from.push(member);
            }
        }
        tx.commit().await.map_err(db_err)?;
        if self.cfg.terminate_member_sessions {
            removed_from.dedup();
            for member in removed_from {
                self.terminate_sessions(&member).await?;
            }
        }
        Ok(())
    }

    async fn bookkeeping_exists(&self) -> Result<bool, ConnectorError> {
        let s = self.schema()?;
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("{s}.memberships"))
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    /// Bookkeeping rows as (member, role, grant id).
    async fn memberships(&self) -> Result<Vec<(String, String, String)>, ConnectorError> {
        if !self.bookkeeping_exists().await? {
            return Ok(Vec::new());
        }
        let s = self.schema()?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT member, role, grant_id FROM {s}.memberships ORDER BY grant_id, role"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("member").map_err(db_err)?,
                    r.try_get("role").map_err(db_err)?,
                    r.try_get("grant_id").map_err(db_err)?,
                ))
            })
            .collect()
    }

    fn mode_of(spec: &GrantSpec) -> Result<Mode, ConnectorError> {
        params(&spec.params)
            .map(|p| p.mode)
            .map_err(ConnectorError::new)
    }
}

#[async_trait]
impl Connector for PostgresConnector {
    async fn grant(&self, spec: &GrantSpec) -> Result<Provisioned, ConnectorError> {
        let p = params(&spec.params).map_err(ConnectorError::new)?;
        match p.mode {
            Mode::Login => self.grant_login(spec, &p.roles).await,
            Mode::Membership => self.grant_membership(spec, &p.roles).await,
        }
    }

    async fn revoke(&self, spec: &GrantSpec) -> Result<(), ConnectorError> {
        match Self::mode_of(spec)? {
            Mode::Login => self.drop_login_role(&self.role_name(&spec.grant_id)).await,
            Mode::Membership => self.revoke_membership(spec.grant_id.as_str()).await,
        }
    }

    /// Login roles carry `VALID UNTIL`: it moves to the new end (the password stays). A
    /// membership has no end of its own in PostgreSQL.
    async fn extend(&self, spec: &GrantSpec) -> Result<Option<SecretString>, ConnectorError> {
        if Self::mode_of(spec)? == Mode::Membership {
            return Ok(None);
        }
        let name = self.role_name(&spec.grant_id);
        let res = sqlx::query(AssertSqlSafe(format!(
            "ALTER ROLE {} VALID UNTIL '{}'",
            quote_ident(&name, '"')?,
            spec.expires_at
        )))
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(None),
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42704") => {
                Err(ConnectorError::new(format!(
                    "postgres extend: role {name} does not exist"
                )))
            }
            Err(e) => Err(db_err(e)),
        }
    }

    /// The role (or the membership) is gone, and, for a login role, no session of it is left
    /// (its backends were terminated; a terminated backend takes a moment to leave
    /// `pg_stat_activity`, so this looks again for up to two seconds).
    async fn prove_revoked(&self, spec: &GrantSpec) -> Result<RevocationProof, ConnectorError> {
        if self.inspect(spec).await? == Presence::Present {
            return Err(ConnectorError::new(
                "the role or membership is still present after its revocation",
            ));
        }
        match Self::mode_of(spec)? {
            Mode::Membership => Ok(RevocationProof::Verified {
                checked: "the membership is gone (pg_auth_members)".into(),
            }),
            Mode::Login => {
                let role = self.role_name(&spec.grant_id);
                let open = crate::db::sessions_left(|| {
                    sqlx::query_scalar::<_, i64>(
                        "SELECT COUNT(*) FROM pg_stat_activity WHERE usename = $1",
                    )
                    .bind(&role)
                    .fetch_one(&self.pool)
                })
                .await
                .map_err(db_err)?;
                if open == 0 {
                    Ok(RevocationProof::Verified {
                        checked: format!(
                            "role {role} is gone (pg_roles) and has no session (pg_stat_activity)"
                        ),
                    })
                } else {
                    Err(ConnectorError::new(format!(
                        "{open} sessions of role {role} are still open after its revocation"
                    )))
                }
            }
        }
    }

    async fn inspect(&self, spec: &GrantSpec) -> Result<Presence, ConnectorError> {
        let present = match Self::mode_of(spec)? {
            Mode::Login => sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1 AND rolcanlogin)",
            )
            .bind(self.role_name(&spec.grant_id))
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?,
            Mode::Membership => {
                let rows = self.memberships().await?;
                let mine: Vec<_> = rows
                    .iter()
                    .filter(|(_, _, g)| g == spec.grant_id.as_str())
                    .collect();
                let mut all = !mine.is_empty();
                let mut tx = self.pool.begin().await.map_err(db_err)?;
                for (member, role, _) in mine {
                    all &= Self::is_member(&mut tx, member, role).await?;
                }
                tx.rollback().await.map_err(db_err)?;
                all
            }
        };
        Ok(if present {
            Presence::Present
        } else {
            Presence::Absent
        })
    }

    async fn discover(&self) -> Result<Vec<Holding>, ConnectorError> {
        let rows = sqlx::query(
            "SELECT m.rolname AS holder, r.rolname AS privilege
               FROM pg_auth_members am
               JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
              WHERE r.rolname = ANY($1)
             UNION ALL
             SELECT rolname, 'SUPERUSER' FROM pg_roles WHERE rolsuper
             ORDER BY 2, 1",
        )
        .bind(&self.privileged)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let jit: BTreeMap<(String, String), String> = self
            .memberships()
            .await?
            .into_iter()
            .map(|(m, r, g)| ((m, r), g))
            .collect();
        rows.iter()
            .map(|row| {
                let holder: String = row.try_get("holder").map_err(db_err)?;
                let privilege: String = row.try_get("privilege").map_err(db_err)?;
                let grant_id = holder
                    .strip_prefix(&self.cfg.prefix)
                    .filter(|g| GrantId::parse(g).is_some())
                    .map(str::to_owned)
                    .or_else(|| jit.get(&(holder.clone(), privilege.clone())).cloned());
                // A role is a principal's only where `logins` says so: a role that happens to
                // share a principal's name is not that person.
                let principal = self
                    .cfg
                    .logins
                    .iter()
                    .find(|(_, role)| **role == holder)
                    .map(|(p, _)| p.clone());
                Ok(Holding {
                    principal,
                    entitlement: None,
                    holder,
                    privilege,
                    grant_id,
                })
            })
            .collect()
    }

    fn check_params(&self, params_value: &serde_json::Value) -> Vec<String> {
        params(params_value).err().into_iter().collect()
    }

    /// A standing membership is revoked (unless a live grant holds the same membership: then
    /// it is no longer kept at that grant's end); standing `SUPERUSER` is taken away with
    /// `NOSUPERUSER`.
    async fn remove_standing(&self, holding: &Holding) -> Result<(), ConnectorError> {
        let member = quote_ident(&holding.holder, '"')?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Hourglass's own connection role, and the bootstrap superuser, are never taken away:
        // without them no grant could be revoked.
        let own: bool = sqlx::query_scalar(
            "SELECT $1 = current_user OR EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1 AND oid = 10)",
        )
        .bind(&holding.holder)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if own {
            return Err(ConnectorError::new(format!(
                "postgres: {:?} is the role Hourglass connects as (or the bootstrap superuser); it is not removed",
                holding.holder
            )));
        }
        if holding.privilege == "SUPERUSER" {
            Self::exec(&mut tx, format!("ALTER ROLE {member} NOSUPERUSER")).await?;
            return tx.commit().await.map_err(db_err);
        }
        if !self.privileged.contains(&holding.privilege) {
            return Err(ConnectorError::new(format!(
                "postgres: {:?} is not a privileged role of this target",
                holding.privilege
            )));
        }
        let mut held_by_grant = false;
        if self.bookkeeping_exists().await? {
            let s = self.schema()?;
            Self::lock_pair(&mut tx, &holding.holder, &holding.privilege).await?;
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {s}.preexisting WHERE member = $1 AND role = $2"
            )))
            .bind(&holding.holder)
            .bind(&holding.privilege)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            held_by_grant = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT EXISTS (SELECT 1 FROM {s}.memberships WHERE member = $1 AND role = $2)"
            )))
            .bind(&holding.holder)
            .bind(&holding.privilege)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        if !held_by_grant && Self::is_member(&mut tx, &holding.holder, &holding.privilege).await? {
            Self::exec(
                &mut tx,
                format!(
                    "REVOKE {} FROM {member}",
                    quote_ident(&holding.privilege, '"')?
                ),
            )
            .await?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn managed(&self) -> Result<Option<Vec<Managed>>, ConnectorError> {
        // A login role's `VALID UNTIL` is the end PostgreSQL enforces (milliseconds since the
        // epoch; NULL or infinity for none).
        let roles: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT rolname, CASE WHEN isfinite(rolvaliduntil) \
             THEN (extract(epoch FROM rolvaliduntil) * 1000)::bigint END \
             FROM pg_roles WHERE starts_with(rolname, $1)",
        )
        .bind(&self.cfg.prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut out: Vec<Managed> = roles
            .into_iter()
            .map(|(name, until)| Managed {
                grant_id: name
                    .strip_prefix(&self.cfg.prefix)
                    .unwrap_or_default()
                    .to_owned(),
                name,
                ends_at: until.map(hourglass_core::Timestamp::from_unix_millis),
            })
            .collect();
        out.extend(
            self.memberships()
                .await?
                .into_iter()
                .map(|(member, role, grant_id)| Managed {
                    name: format!("{member} in {role}"),
                    grant_id,
                    ends_at: None,
                }),
        );
        Ok(Some(out))
    }

    async fn remove(&self, m: &Managed) -> Result<(), ConnectorError> {
        if m.name.starts_with(&self.cfg.prefix) && !m.name.contains(' ') {
            self.drop_login_role(&m.name).await
        } else {
            self.revoke_membership(&m.grant_id).await
        }
    }
}

#[cfg(test)]
mod tests;
