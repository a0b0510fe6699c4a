//! Configuration: one typed struct, from defaults → TOML file → `HOURGLASS_SECTION__KEY`
//! environment variables → command-line flags, validated once at start and passed down.
//!
//! Only variables with a `__` are configuration overrides (`HOURGLASS_STORE__URL`,
//! `HOURGLASS_SERVER__LISTEN`); `HOURGLASS_SERVER` and `HOURGLASS_TOKEN` belong to the CLI
//! client. Relative paths are resolved against the config file's directory. Invalid
//! configuration fails with the file, the key and the reason.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use hourglass_connectors::{ExecConfig, MysqlConfig, PostgresConfig, SshConfig, WebhookConfig};
use hourglass_core::{
    GrantDuration,
    catalog::{PrincipalKind, PrincipalStatus, Risk},
};
use serde::Deserialize;

mod integrations;
mod workload;
pub use integrations::{
    ChatConfig, ChatKind, ChatRoute, EscalationConfig, NotificationSection, NotifierConfig,
    NotifierKind, OnCallConfig, OnCallKind, SecretRef, TicketKind, TicketSection,
    TicketSourceConfig,
};
pub use workload::{IssuerConfig, KeySection, MappingConfig, TokenSection};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    #[serde(default)]
    pub identities: Vec<IdentityConfig>,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub entitlements: Vec<EntitlementConfig>,
    #[serde(default)]
    pub profiles: Vec<ProfileConfig>,
    #[serde(default)]
    pub quotas: QuotaSection,
    #[serde(default)]
    pub keys: KeySection,
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    #[serde(default)]
    pub tokens: TokenSection,
    #[serde(default)]
    pub ticket_sources: Vec<TicketSourceConfig>,
    #[serde(default)]
    pub tickets: TicketSection,
    #[serde(default)]
    pub notifiers: Vec<NotifierConfig>,
    #[serde(default)]
    pub notifications: NotificationSection,
    /// Chat apps people ask and approve in (`[[chat]]`).
    #[serde(default)]
    pub chat: Vec<ChatConfig>,
    /// Reminders and escalations of requests nobody decides (`[[escalation]]`).
    #[serde(default)]
    pub escalation: Vec<EscalationConfig>,
    /// Who is on call, for `context.oncall` (`[[oncall]]`).
    #[serde(default)]
    pub oncall: Vec<OnCallConfig>,
    /// The SCIM 2.0 service provider the organisation's directory provisions into.
    #[serde(default)]
    pub scim: ScimSection,
    #[serde(default)]
    pub web: WebSection,
    /// Access reviews started on a schedule (`[[campaigns]]`, `docs/reviews.md`).
    #[serde(default)]
    pub campaigns: Vec<CampaignConfig>,
    /// Where the file was read from (not a key).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Start after a restore from a backup (`hourglass serve --after-restore`, not a key): the
    /// ledger is made to agree with the targets before any worker runs.
    #[serde(skip)]
    pub after_restore: bool,
}

/// `[[campaigns]]`: an access review started once in every period of `every`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    pub name: String,
    /// `eligibility`, `standing` or `identities`.
    pub scope: String,
    /// `manager`, `owner`, `administrators` or `group:<name>`.
    #[serde(default = "default_reviewers")]
    pub reviewers: String,
    /// What undecided items become at the deadline: `keep` or `remove`.
    #[serde(default = "default_campaign_action")]
    pub default_action: String,
    /// How often one starts (`90d`); periods are counted from the Unix epoch.
    pub every: GrantDuration,
    /// From its start to its deadline (`14d`); at most `every`.
    pub duration: GrantDuration,
    /// Reviewers with undecided items are reminded this long before the deadline.
    #[serde(default)]
    pub remind_before: Option<GrantDuration>,
}

fn default_reviewers() -> String {
    "manager".into()
}
fn default_campaign_action() -> String {
    "keep".into()
}

/// What happens to a person the directory deactivates or deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveConfig {
    Suspend,
    Offboard,
}

impl From<LeaveConfig> for hourglass_core::engine::Leave {
    fn from(l: LeaveConfig) -> Self {
        match l {
            LeaveConfig::Suspend => hourglass_core::engine::Leave::Suspend,
            LeaveConfig::Offboard => hourglass_core::engine::Leave::Offboard,
        }
    }
}

/// `[scim]`: the SCIM 2.0 service provider at `/scim/v2`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimSection {
    /// The identities whose API keys may provision (a workload owned by the directory's
    /// administrators); empty: SCIM is off and `/scim/v2` answers 404.
    #[serde(default)]
    pub provisioners: Vec<String>,
    /// A user's principal is its `userName`, or, for an address in this domain, the address's
    /// local part (`alice@example.com` → `alice`).
    #[serde(default)]
    pub email_domain: Option<String>,
    /// `active: false`: suspend (the default) or offboard.
    #[serde(default = "default_on_deactivate")]
    pub on_deactivate: LeaveConfig,
    /// `DELETE`: offboard (the default) or suspend.
    #[serde(default = "default_on_delete")]
    pub on_delete: LeaveConfig,
    /// Losing a group also revokes live grants that policy no longer permits (by default they
    /// run to their end; pending requests are cancelled either way).
    #[serde(default)]
    pub revoke_on_eligibility_loss: bool,
    /// The most resources one page lists.
    #[serde(default = "default_scim_page")]
    pub max_results: usize,
}

fn default_on_deactivate() -> LeaveConfig {
    LeaveConfig::Suspend
}
fn default_on_delete() -> LeaveConfig {
    LeaveConfig::Offboard
}
fn default_scim_page() -> usize {
    200
}

impl Default for ScimSection {
    fn default() -> Self {
        ScimSection {
            provisioners: Vec::new(),
            email_domain: None,
            on_deactivate: default_on_deactivate(),
            on_delete: default_on_delete(),
            revoke_on_eligibility_loss: false,
            max_results: default_scim_page(),
        }
    }
}

/// People's sign-in sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// A session unused this long ends.
    #[serde(default = "default_session_idle")]
    pub session_idle: GrantDuration,
    /// A session ends this long after sign-in, however active.
    #[serde(default = "default_session_absolute")]
    pub session_absolute: GrantDuration,
    /// Demo only: a sign-in page that lets anyone pick a person, no password. Refused unless the
    /// server listens on loopback; `serve --demo` turns it on.
    #[serde(default)]
    pub demo_sign_in: bool,
    /// Single sign-on with an OpenID Connect provider.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
}

impl Default for WebSection {
    fn default() -> Self {
        WebSection {
            session_idle: default_session_idle(),
            session_absolute: default_session_absolute(),
            demo_sign_in: false,
            oidc: None,
        }
    }
}

/// `[web.oidc]`: people sign in with an OpenID Connect provider (authorization code flow with
/// PKCE, `state` and `nonce`). See docs/web.md for Okta, Entra ID, Google and Keycloak.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL, exactly as its ID tokens' `iss` says; discovery reads
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// The client secret (`{ file = … }` or `{ env = … }`); none for a public client (PKCE only).
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// Where the provider sends people back: this server's `/signin/callback`. Defaults to
    /// `notifications.public_url` + `/signin/callback`.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// The claim that is the person's Hourglass name: `preferred_username`, `email` or `sub`.
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// The claim holding the person's groups (an array of strings), if the provider sends one.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// `amr` values that mean a second factor was used.
    #[serde(default = "default_mfa_amr")]
    pub mfa_amr: Vec<String>,
    /// `acr` values that mean a second factor was used.
    #[serde(default)]
    pub mfa_acr: Vec<String>,
    /// The `acr` asked for when an approval needs a fresh sign-in with a second factor.
    #[serde(default)]
    pub step_up_acr: Option<String>,
    /// Create a person unknown here at their first sign-in (with the provider's groups) instead
    /// of refusing them.
    #[serde(default)]
    pub create_people: bool,
    /// Signature algorithms accepted on ID tokens.
    #[serde(default = "default_oidc_algorithms")]
    pub algorithms: Vec<String>,
    /// The sign-in button's text.
    #[serde(default = "default_oidc_label")]
    pub label: String,
    /// At sign-out, also sign out at the provider (RP-initiated logout) when it offers it.
    #[serde(default = "default_true")]
    pub logout_at_provider: bool,
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}
fn default_name_claim() -> String {
    "preferred_username".into()
}
/// Only `mfa` (RFC 8176: more than one factor) by default: a single `otp`, `swk`, `face` or
/// `fpt` can be the only factor used. Add what your provider sends for its second factors.
fn default_mfa_amr() -> Vec<String> {
    vec!["mfa".into()]
}
fn default_oidc_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_oidc_label() -> String {
    "Sign in with your identity provider".into()
}

fn default_session_idle() -> GrantDuration {
    GrantDuration::from_secs(30 * 60)
}
fn default_session_absolute() -> GrantDuration {
    GrantDuration::from_secs(12 * 3600)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How long a pending request waits for a decision.
    #[serde(default = "default_pending_ttl")]
    pub pending_ttl: GrantDuration,
    /// A revocation still not confirmed this long after it was due counts as overdue.
    #[serde(default = "default_overdue_after")]
    pub overdue_after: GrantDuration,
    /// First retry delay of a failed job, and the cap.
    #[serde(default = "default_backoff_base")]
    pub retry_base: GrantDuration,
    #[serde(default = "default_backoff_cap")]
    pub retry_cap: GrantDuration,
    /// How long a worker holds a job before another may take it over.
    #[serde(default = "default_lease")]
    pub job_lease: GrantDuration,
    /// How many connector calls run at once.
    #[serde(default = "default_concurrency")]
    pub job_concurrency: u32,
    /// Set by `serve --demo`: loopback only, and loud about it.
    #[serde(default)]
    pub demo: bool,
    /// Log format: `text` or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// How often the reconciler compares targets with the ledger.
    #[serde(default = "default_reconcile_interval")]
    pub reconcile_interval: GrantDuration,
    /// The longest break-glass grant.
    #[serde(default = "default_break_glass_max")]
    pub break_glass_max_duration: GrantDuration,
    /// How many break-glass reviews one person may have open: past it, another emergency waits
    /// until someone reviews the earlier ones (break-glass is not a way around approval).
    #[serde(default = "default_break_glass_open_reviews")]
    pub break_glass_max_open_reviews: u32,
    /// A grant not provisioned this long after its start is given up (a profile's other
    /// grants with it).
    #[serde(default = "default_provision_timeout")]
    pub provision_timeout: GrantDuration,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            pending_ttl: default_pending_ttl(),
            overdue_after: default_overdue_after(),
            retry_base: default_backoff_base(),
            retry_cap: default_backoff_cap(),
            job_lease: default_lease(),
            job_concurrency: default_concurrency(),
            demo: false,
            log_format: default_log_format(),
            reconcile_interval: default_reconcile_interval(),
            break_glass_max_duration: default_break_glass_max(),
            break_glass_max_open_reviews: default_break_glass_open_reviews(),
            provision_timeout: default_provision_timeout(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8420))
}
fn default_pending_ttl() -> GrantDuration {
    GrantDuration::from_secs(24 * 3600)
}
fn default_overdue_after() -> GrantDuration {
    GrantDuration::from_secs(60)
}
fn default_backoff_base() -> GrantDuration {
    GrantDuration::from_secs(1)
}
fn default_backoff_cap() -> GrantDuration {
    GrantDuration::from_secs(300)
}
fn default_lease() -> GrantDuration {
    GrantDuration::from_secs(120)
}
fn default_concurrency() -> u32 {
    16
}
fn default_reconcile_interval() -> GrantDuration {
    GrantDuration::from_secs(300)
}
fn default_provision_timeout() -> GrantDuration {
    GrantDuration::from_secs(15 * 60)
}
fn default_break_glass_open_reviews() -> u32 {
    3
}
fn default_break_glass_max() -> GrantDuration {
    GrantDuration::from_secs(3600)
}
fn default_log_format() -> String {
    "text".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite://PATH` (relative to the config file) or `postgres://USER@HOST:PORT/DB`.
    #[serde(default = "default_store_url")]
    pub url: String,
    /// PostgreSQL: connections this process keeps at most.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// PostgreSQL: how long a caller waits for a connection before the store is reported
    /// unavailable (and `/readyz` fails).
    #[serde(default = "default_acquire_timeout")]
    pub acquire_timeout: GrantDuration,
    /// PostgreSQL: migrate the schema at start, under an advisory lock so that replicas
    /// starting together migrate once. Off: the start fails unless `hourglass migrate` ran.
    /// (SQLite, used by one process, always migrates at start.)
    #[serde(default = "default_true")]
    pub migrate: bool,
    /// PostgreSQL: how often the workers look for work that another replica made due, should a
    /// wake-up (`LISTEN/NOTIFY`) be lost.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: GrantDuration,
    /// Group commit: at most this many writes that wait together share one durable
    /// transaction (each still all-or-nothing on its own). 1 gives each write its own.
    #[serde(default = "default_max_batch")]
    pub max_batch: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            url: default_store_url(),
            max_connections: default_max_connections(),
            acquire_timeout: default_acquire_timeout(),
            migrate: true,
            poll_interval: default_poll_interval(),
            max_batch: default_max_batch(),
        }
    }
}

impl StoreSection {
    /// The pool settings of this section.
    pub fn pool(&self) -> hourglass_store::PoolOptions {
        hourglass_store::PoolOptions {
            max_connections: self.max_connections,
            acquire_timeout: std::time::Duration::from_secs(self.acquire_timeout.as_secs()),
            migrate: self.migrate,
            max_batch: self.max_batch,
        }
    }
}

fn default_max_batch() -> u32 {
    hourglass_store::MAX_BATCH
}

fn default_true() -> bool {
    true
}
fn default_max_connections() -> u32 {
    10
}
fn default_acquire_timeout() -> GrantDuration {
    GrantDuration::from_secs(5)
}
fn default_poll_interval() -> GrantDuration {
    GrantDuration::from_secs(5)
}

fn default_store_url() -> String {
    "sqlite://hourglass.db".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Directory of `*.cedar` files (relative to the config file); test cases in `tests/`.
    #[serde(default = "default_policy_dir")]
    pub dir: PathBuf,
    /// The IANA time zone of `context.hour` and `context.weekday` (`Europe/Berlin`).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// A static on-call schedule (`[[shift]]` tables) for `context.oncall`.
    #[serde(default)]
    pub oncall_file: Option<PathBuf>,
    /// What a replica of a shared store does at start when its files are not the set in force:
    /// put its own in force (`put_in_force`, the default: a restart deploys new files), or only
    /// follow the recorded set and report itself stale until its files match (`follow`: a
    /// replica restarted with old files never reverts the set; new files need a reload). A
    /// single process on SQLite always puts its files in force.
    #[serde(default)]
    pub on_start: PolicyOnStart,
}

/// See [`PolicySection::on_start`].
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PolicyOnStart {
    #[default]
    PutInForce,
    Follow,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            dir: default_policy_dir(),
            time_zone: default_time_zone(),
            oncall_file: None,
            on_start: PolicyOnStart::default(),
        }
    }
}

fn default_time_zone() -> String {
    "UTC".into()
}

fn default_policy_dir() -> PathBuf {
    PathBuf::from("policies")
}

/// A group, and the groups it is in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    #[serde(default, rename = "in")]
    pub member_of: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub name: String,
    pub kind: PrincipalKind,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub status: PrincipalStatus,
    /// A person's manager (a principal name), for policy (`principal.manager`).
    #[serde(default)]
    pub manager: Option<String>,
    /// A person's department, for policy (`principal.department`).
    #[serde(default)]
    pub department: Option<String>,
    /// SHA-256 (hex) of each API token this identity may use. Tokens themselves are never
    /// written to configuration.
    #[serde(default)]
    pub token_sha256: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub name: String,
    /// The connector kind: `exec`, `postgres`, `mysql`, `redis`, `aws`, `okta`, `entra`,
    /// `google`, `github`, `ssh`, `webhook` or `token`;
    /// its settings are in the table of the same name.
    pub connector: String,
    #[serde(default)]
    pub exec: Option<ExecConfig>,
    #[serde(default)]
    pub postgres: Option<PostgresConfig>,
    #[serde(default)]
    pub mysql: Option<MysqlConfig>,
    #[serde(default)]
    pub redis: Option<hourglass_connectors::RedisConfig>,
    #[serde(default)]
    pub aws: Option<hourglass_connectors::AwsConfig>,
    #[serde(default)]
    pub okta: Option<hourglass_connectors::OktaConfig>,
    #[serde(default)]
    pub entra: Option<hourglass_connectors::EntraConfig>,
    #[serde(default)]
    pub google: Option<hourglass_connectors::GoogleConfig>,
    #[serde(default)]
    pub github: Option<hourglass_connectors::GithubConfig>,
    #[serde(default)]
    pub ssh: Option<SshConfig>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitlementConfig {
    /// `target/name`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub risk: Risk,
    pub default_duration: GrantDuration,
    pub max_duration: GrantDuration,
    #[serde(default = "one")]
    pub approvals_required: u32,
    /// Connector parameters.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// At most this many grants of it at once (everyone's together).
    #[serde(default)]
    pub max_live_grants: Option<u32>,
    /// At most this many requests for it an hour (everyone's together).
    #[serde(default)]
    pub max_requests_per_hour: Option<u32>,
}

/// Per-principal quotas: a runaway script or agent is stopped with a clear error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSection {
    /// Grants one principal may hold (provisioning or active) at once.
    #[serde(default = "default_live_grants")]
    pub max_live_grants_per_principal: u32,
    /// Requests one principal may make in an hour.
    #[serde(default = "default_requests_per_hour")]
    pub max_requests_per_hour_per_principal: u32,
    /// Grants one agent may hold at once (never more than a principal's limit).
    #[serde(default = "default_agent_live_grants")]
    pub max_live_grants_per_agent: u32,
    /// Requests one agent may make in an hour (never more than a principal's limit).
    #[serde(default = "default_agent_requests_per_hour")]
    pub max_requests_per_hour_per_agent: u32,
}

impl Default for QuotaSection {
    fn default() -> Self {
        QuotaSection {
            max_live_grants_per_principal: default_live_grants(),
            max_requests_per_hour_per_principal: default_requests_per_hour(),
            max_live_grants_per_agent: default_agent_live_grants(),
            max_requests_per_hour_per_agent: default_agent_requests_per_hour(),
        }
    }
}

fn default_agent_live_grants() -> u32 {
    5
}
fn default_agent_requests_per_hour() -> u32 {
    20
}

fn default_live_grants() -> u32 {
    25
}
fn default_requests_per_hour() -> u32 {
    60
}

/// A task profile: entitlements requested, granted and revoked together.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// `area/task` (`helpdesk/file-recovery`).
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub entitlements: Vec<String>,
    pub default_duration: GrantDuration,
    /// At most the smallest maximum of its entitlements.
    pub max_duration: GrantDuration,
    #[serde(default = "one")]
    pub approvals_required: u32,
}

fn one() -> u32 {
    1
}

/// A configuration problem: where, which key, why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

impl Config {
    /// Reads a file and applies environment overrides from `env` (name, value pairs).
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "-".into(),
            reason: format!("cannot read: {e}"),
        })?;
        let mut config = Config::from_text(&text, &file, env)?;
        config.source = Some(path.to_path_buf());
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Parses configuration text (named `file` in errors) and applies environment overrides;
    /// relative paths stay as written. The untrusted-input half of [`Config::load`].
    ///
    /// The file and the variables are two layers merged by figment, which remembers the layer
    /// every value came from: an error names the key and, as its source, the file or the
    /// variable that set the value.
    pub fn from_text(
        text: &str,
        file: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
            file: file.to_owned(),
            key: syntax_at(text, &e),
            reason: e.message().to_owned(),
        })?;
        let file_layer = Layer::new(file, &table)?;
        let (variables, set) = env_layer(env)?;
        let figment = figment::Figment::new().merge(file_layer).merge(variables);
        figment.extract::<Config>().map_err(|e| {
            let key = key_path(&e.path);
            let mut reason = e.kind.to_string();
            let file = match &e.metadata {
                // A value a variable set: the variable is where it came from, not the file.
                Some(m) if m.name == ENV_LAYER => match set.find(&e.path) {
                    Some(var) => {
                        if let Some(secret) = var.from_file.as_deref().filter(|s| !s.is_empty()) {
                            reason = reason.replace(secret, "<the file's contents>");
                        }
                        var.name.clone()
                    }
                    None => ENV_LAYER.to_owned(),
                },
                Some(m) => m.name.to_string(),
                None => file.to_owned(),
            };
            ConfigError { file, key, reason }
        })
    }

    fn resolve_paths(&mut self, base: &Path) {
        if self.policy.dir.is_relative() {
            self.policy.dir = base.join(&self.policy.dir);
        }
        if let Some(f) = &mut self.policy.oncall_file
            && f.is_relative()
        {
            *f = base.join(&*f);
        }
        if let Some(rest) = self.store.url.strip_prefix("sqlite://")
            && !rest.starts_with('/')
            && !rest.starts_with(':')
        {
            self.store.url = format!("sqlite://{}", base.join(rest).display());
        }
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for i in &mut self.issuers {
            i.jwks_file.as_mut().map(resolve);
            i.dev_signing_key.as_mut().map(resolve);
        }
        self.tokens.key_dir.as_mut().map(resolve);
        let resolve_secret = |r: &mut Option<SecretRef>| {
            if let Some(p) = r.as_mut().and_then(|r| r.file.as_mut())
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        };
        if let Some(o) = &mut self.web.oidc {
            resolve_secret(&mut o.client_secret);
        }
        for t in &mut self.ticket_sources {
            resolve_secret(&mut t.token);
            resolve_secret(&mut t.webhook_secret);
        }
        for c in &mut self.chat {
            let mut token = Some(c.bot_token.clone());
            resolve_secret(&mut token);
            c.bot_token = token.unwrap_or_default();
            let mut secret = Some(c.signing_secret.clone());
            resolve_secret(&mut secret);
            c.signing_secret = secret.unwrap_or_default();
        }
        for n in &mut self.notifiers {
            resolve_secret(&mut n.webhook_url);
            resolve_secret(&mut n.secret);
            resolve_secret(&mut n.password);
            resolve_secret(&mut n.routing_key);
        }
        for o in &mut self.oncall {
            resolve_secret(&mut o.token);
            o.path.as_mut().map(resolve);
        }
        for t in &mut self.targets {
            if let Some(pg) = &mut t.postgres {
                pg.password_file.as_mut().map(resolve);
            }
            if let Some(my) = &mut t.mysql {
                my.password_file.as_mut().map(resolve);
            }
            if let Some(ssh) = &mut t.ssh {
                resolve(&mut ssh.ca_key_file);
                resolve(&mut ssh.krl_file);
            }
            if let Some(hook) = &mut t.webhook {
                hook.secret_file.as_mut().map(resolve);
            }
            if let Some(r) = &mut t.redis {
                r.password_file.as_mut().map(resolve);
            }
            if let Some(a) = &mut t.aws {
                a.credentials_file.as_mut().map(resolve);
            }
            if let Some(o) = &mut t.okta {
                o.token_file.as_mut().map(resolve);
            }
            if let Some(e) = &mut t.entra {
                e.client_secret_file.as_mut().map(resolve);
            }
            if let Some(g) = &mut t.google {
                resolve(&mut g.service_account_file);
            }
            if let Some(g) = &mut t.github {
                resolve(&mut g.private_key_file);
            }
            if let Some(exec) = &mut t.exec {
                exec.workdir.as_mut().map(resolve);
                for cmd in [
                    Some(&mut exec.grant),
                    Some(&mut exec.revoke),
                    exec.extend.as_mut(),
                    exec.inspect.as_mut(),
                    exec.discover.as_mut(),
                ]
                .into_iter()
                .flatten()
                {
                    if let Some(first) = cmd.first_mut()
                        && (first.starts_with("./") || first.starts_with("../"))
                    {
                        *first = base.join(&*first).display().to_string();
                    }
                }
            }
        }
    }

    /// The file name for messages.
    pub fn file_name(&self) -> String {
        self.source
            .as_ref()
            .map_or_else(|| "config".to_owned(), |p| p.display().to_string())
    }
}

/// Where a syntax error is, as `line L, column C` of the file (both from 1).
/// A key's path as TOML writes it (`server.job_lease`, `targets[0].exec`), with a key that is
/// empty or holds a dot or a space quoted (`[""]` is a table named by the empty string); `-`
/// for the file as a whole. Figment writes an array index as a path element of digits.
fn key_path(path: &[String]) -> String {
    let mut out = String::new();
    for key in path {
        if !out.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) && !key.is_empty() {
            out.push_str(&format!("[{key}]"));
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        let bare = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if bare {
            out.push_str(key);
        } else {
            out.push_str(&format!("{key:?}"));
        }
    }
    if out.is_empty() { "-".to_owned() } else { out }
}

fn syntax_at(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return "-".to_owned();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

/// The name of the variables' layer (figment metadata).
const ENV_LAYER: &str = "environment";

/// One layer of configuration: a dictionary and the metadata figment tags its values with.
struct Layer {
    metadata: figment::Metadata,
    dict: figment::value::Dict,
}

impl Layer {
    /// A table as figment's layer, named `name` (the file, or [`ENV_LAYER`]).
    fn new(name: &str, table: &toml::Table) -> Result<Layer, ConfigError> {
        let refused = |reason: String| ConfigError {
            file: name.to_owned(),
            key: "-".into(),
            reason,
        };
        let dict = figment::value::Value::serialize(table)
            .map_err(|e| refused(e.to_string()))?
            .into_dict()
            .ok_or_else(|| refused("not a table".to_owned()))?;
        Ok(Layer {
            metadata: figment::Metadata::named(name.to_owned()),
            dict,
        })
    }
}

impl figment::Provider for Layer {
    fn metadata(&self) -> figment::Metadata {
        self.metadata.clone()
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.dict.clone()))
    }
}

/// Keys the variables can reach whose own name ends in `_file`: their `…_FILE` variable sets
/// them as it does any key, instead of naming a file to read the value from.
const KEYS_NAMED_FILE: &[&str] = &["policy.oncall_file"];

/// A variable the configuration took a value from.
struct Var {
    /// The key's path it set.
    path: Vec<String>,
    name: String,
    /// The value, when it was read from the file the variable names (kept out of errors).
    from_file: Option<String>,
}

/// The variables the configuration took values from.
struct Vars(Vec<Var>);

impl Vars {
    /// The variable that set the value at `path`, or one below it (an error about a table a
    /// variable made names that variable).
    fn find(&self, path: &[String]) -> Option<&Var> {
        self.0
            .iter()
            .rev()
            .find(|v| v.path.starts_with(path) || path.starts_with(&v.path))
    }
}

/// The `HOURGLASS_A__B=value` overrides as a layer: the path is lower-cased, the value parsed
/// as a TOML value when it is one (number, boolean, array) and taken as a string otherwise.
/// `HOURGLASS_A__B_FILE=/path` sets `a.b` to the contents of the file (a trailing line feed
/// dropped), for secrets mounted as files (`HOURGLASS_STORE__URL_FILE`), unless the key is
/// itself named `…_file` ([`KEYS_NAMED_FILE`]).
/// Variables without `__` are the CLI's own (`HOURGLASS_SERVER`, `HOURGLASS_TOKEN`) and are
/// left alone.
fn env_layer(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Layer, Vars), ConfigError> {
    let refuse = |var: &str, reason: &str| ConfigError {
        file: ENV_LAYER.into(),
        key: var.to_owned(),
        reason: reason.to_owned(),
    };
    let mut root = toml::Table::new();
    let mut set = Vec::new();
    for (name, raw) in env {
        let Some(path) = name.strip_prefix("HOURGLASS_") else {
            continue;
        };
        if !path.contains("__") {
            continue;
        }
        let mut keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            return Err(refuse(&name, "names an empty key (HOURGLASS_SECTION__KEY)"));
        }
        let read_file = keys
            .last()
            .and_then(|k| k.strip_suffix("_file"))
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .filter(|_| !KEYS_NAMED_FILE.contains(&keys.join(".").as_str()));
        let (value, from_file) = if let Some(key) = read_file {
            if let Some(last) = keys.last_mut() {
                *last = key;
            }
            let text = std::fs::read_to_string(&raw).map_err(|e| ConfigError {
                file: name.clone(),
                key: key_path(&keys),
                reason: format!("cannot read {raw}: {e}"),
            })?;
            let text = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text)
                .to_owned();
            (toml::Value::String(text.clone()), Some(text))
        } else {
            let value = format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone()));
            (value, None)
        };
        let (last, parents) = keys
            .split_last()
            .ok_or_else(|| refuse(&name, "empty key"))?;
        let mut table = &mut root;
        for k in parents {
            let entry = table
                .entry(k.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| {
                refuse(&name, &format!("{k} is set by another variable as a value"))
            })?;
        }
        table.insert(last.clone(), value);
        set.push(Var {
            path: keys,
            name,
            from_file,
        });
    }
    Ok((Layer::new(ENV_LAYER, &root)?, Vars(set)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("hourglass.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn env_overrides_nested_keys_and_ignores_client_variables() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[store]\nurl = \"sqlite://a.db\"\n");
        let env = vec![
            (
                "HOURGLASS_STORE__URL".to_owned(),
                "sqlite:///tmp/b.db".to_owned(),
            ),
            (
                "HOURGLASS_SERVER__JOB_CONCURRENCY".to_owned(),
                "4".to_owned(),
            ),
            (
                "HOURGLASS_SERVER".to_owned(),
                "http://127.0.0.1:1".to_owned(),
            ),
            ("HOURGLASS_TOKEN".to_owned(), "x".to_owned()),
        ];
        let c = Config::load(&p, env).unwrap();
        assert_eq!(c.store.url, "sqlite:///tmp/b.db");
        assert_eq!(c.server.job_concurrency, 4);
    }

    #[test]
    fn group_commit_and_policy_start_settings_parse_and_default() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&write(dir.path(), ""), vec![]).unwrap();
        assert_eq!(c.store.max_batch, hourglass_store::MAX_BATCH);
        assert_eq!(c.store.pool().max_batch, hourglass_store::MAX_BATCH);
        assert_eq!(c.policy.on_start, PolicyOnStart::PutInForce);
        let p = write(
            dir.path(),
            "[store]\nmax_batch = 1\n\n[policy]\non_start = \"follow\"\n",
        );
        let c = Config::load(&p, vec![]).unwrap();
        assert_eq!(c.store.pool().max_batch, 1);
        assert_eq!(c.policy.on_start, PolicyOnStart::Follow);
        let p = write(dir.path(), "[policy]\non_start = \"whenever\"\n");
        // Refused, naming the key and the values it takes.
        let err = Config::load(&p, vec![]).unwrap_err();
        assert_eq!(err.key, "policy.on_start");
        let err = err.to_string();
        assert!(
            err.contains("put_in_force") && err.contains("follow"),
            "{err}"
        );
    }

    /// Every error names the key and where it came from: the file (with a line for syntax) or
    /// the environment. Found by the `config` fuzz target: a table named by the empty string
    /// (`[""]`) gave an error with no key at all.
    #[test]
    fn every_error_names_its_key_and_source() {
        let key = |text: &str, env: Vec<(String, String)>| {
            let e = Config::from_text(text, "hg.toml", env).unwrap_err();
            (e.file, e.key)
        };
        let file = |k: &str| ("hg.toml".to_owned(), k.to_owned());
        assert_eq!(key("[\"\"]", vec![]), file("\"\""));
        assert_eq!(key("[server]\n\"a.b\" = 1", vec![]), file("server.\"a.b\""));
        assert_eq!(
            key("[server]\njob_lease = \"soon\"", vec![]),
            file("server.job_lease")
        );
        assert_eq!(
            key(
                "[[targets]]\nname = \"t\"\nconnector = \"exec\"\nbogus = 1",
                vec![]
            ),
            file("targets[0].bogus")
        );
        assert_eq!(key("[server\nx = 1", vec![]), file("line 1, column 8"));
        // A bad value from a variable names the variable.
        let e = Config::from_text(
            "[server]\njob_lease = \"1m\"",
            "hg.toml",
            vec![("HOURGLASS_SERVER__JOB_LEASE".into(), "soon".into())],
        )
        .unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.key.as_str()),
            ("HOURGLASS_SERVER__JOB_LEASE", "server.job_lease")
        );
        assert!(e.reason.contains("invalid duration"), "{e}");
        assert_eq!(
            key("", vec![("HOURGLASS___".into(), "x".into())]).0,
            "environment"
        );
    }

    /// `…_FILE` variables read a secret from a mounted file; a key that is itself named
    /// `…_file` is set as any key; the contents never appear in an error.
    #[test]
    fn file_variables_read_secrets_and_keep_them_out_of_errors() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("db-url");
        std::fs::write(&url, "postgres://hg:s3cr3t@db/hourglass\n").unwrap();
        let var = |k: &str, v: &Path| (k.to_owned(), v.display().to_string());
        let c = Config::from_text(
            "",
            "hg.toml",
            vec![
                var("HOURGLASS_STORE__URL_FILE", &url),
                var(
                    "HOURGLASS_POLICY__ONCALL_FILE",
                    Path::new("/etc/oncall.toml"),
                ),
            ],
        )
        .unwrap();
        assert_eq!(c.store.url, "postgres://hg:s3cr3t@db/hourglass");
        assert_eq!(
            c.policy.oncall_file.as_deref(),
            Some(Path::new("/etc/oncall.toml"))
        );
        // A secret reference in the file's shape is reachable by key as well.
        let c = Config::from_text(
            "[web.oidc]\nissuer = \"https://idp\"\nclient_id = \"hourglass\"\n",
            "hg.toml",
            vec![var("HOURGLASS_WEB__OIDC__CLIENT_SECRET__FILE", &url)],
        )
        .unwrap();
        let secret = c.web.oidc.and_then(|o| o.client_secret).unwrap();
        assert_eq!(secret.file.as_deref(), Some(url.as_path()));
        // A file that cannot be read names the variable and the key it was for.
        let missing = dir.path().join("nope");
        let e = Config::from_text(
            "",
            "hg.toml",
            vec![var("HOURGLASS_STORE__URL_FILE", &missing)],
        )
        .unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.key.as_str()),
            ("HOURGLASS_STORE__URL_FILE", "store.url")
        );
        assert!(e.reason.contains("cannot read"), "{e}");
        // A value that does not fit names the variable, not the contents.
        let lease = dir.path().join("lease");
        std::fs::write(&lease, "s3cr3t").unwrap();
        let e = Config::from_text(
            "",
            "hg.toml",
            vec![var("HOURGLASS_SERVER__JOB_LEASE_FILE", &lease)],
        )
        .unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.key.as_str()),
            ("HOURGLASS_SERVER__JOB_LEASE_FILE", "server.job_lease")
        );
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        // A variable that makes a table where a value belongs is named, not its neighbour.
        let e = Config::from_text(
            "",
            "hg.toml",
            vec![("HOURGLASS_SERVER__JOB_CONCURRENCY__X".into(), "1".into())],
        )
        .unwrap_err();
        assert_eq!(e.file, "HOURGLASS_SERVER__JOB_CONCURRENCY__X");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "");
        let c = Config::load(&p, vec![]).unwrap();
        assert_eq!(
            c.store.url,
            format!("sqlite://{}", dir.path().join("hourglass.db").display())
        );
        assert_eq!(c.policy.dir, dir.path().join("policies"));
    }

    #[test]
    fn every_exec_command_and_its_workdir_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "[[targets]]\nname = \"t\"\nconnector = \"exec\"\n\
             exec = { grant = [\"./g.sh\"], revoke = [\"./r.sh\"], extend = [\"./e.sh\", \"x\"], workdir = \"work\" }\n",
        );
        let c = Config::load(&p, vec![]).unwrap();
        let exec = c.targets[0].exec.as_ref().unwrap();
        let at = |f: &str| dir.path().join(f).display().to_string();
        assert_eq!(exec.grant, [at("./g.sh")]);
        assert_eq!(
            exec.extend.as_deref(),
            Some(&[at("./e.sh"), "x".into()][..])
        );
        assert_eq!(
            exec.workdir.as_deref(),
            Some(dir.path().join("work").as_path())
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let e =
            Config::load(&write(dir.path(), "[server]\nlisten_port = 1\n"), vec![]).unwrap_err();
        assert!(e.reason.contains("listen_port"), "{e}");
        let e = Config::load(
            &write(dir.path(), "[server]\npending_ttl = \"soon\"\n"),
            vec![],
        )
        .unwrap_err();
        assert!(e.reason.contains("duration"), "{e}");
        // The key is named, nested keys and array elements included.
        assert_eq!(e.key, "server.pending_ttl", "{e}");
        let e = Config::load(
            &write(
                dir.path(),
                "[[entitlements]]\nname = \"a/b\"\ndefault_duration = \"1h\"\nmax_duration = \"often\"\n",
            ),
            vec![],
        )
        .unwrap_err();
        assert_eq!(e.key, "entitlements[0].max_duration", "{e}");
        // An override from the environment is named as the key it sets.
        let e = Config::load(
            &write(dir.path(), ""),
            vec![("HOURGLASS_SERVER__JOB_LEASE".into(), "soon".into())],
        )
        .unwrap_err();
        assert_eq!(e.key, "server.job_lease", "{e}");
        // A syntax error says where it is in the file.
        let e = Config::load(&write(dir.path(), "[server]\nlisten = \"x\n"), vec![]).unwrap_err();
        assert!(e.key.starts_with("line 2, column"), "{e}");
    }
}
