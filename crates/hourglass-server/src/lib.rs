//! The Hourglass server: configuration, wiring, the HTTP API and the workers.
//!
//! [`start`] checks the configuration, opens the store, builds the engine, binds the listener
//! and starts the expiry scheduler and the job runner; [`Running::stop`] shuts everything down.
//! Tests start it in-process on port 0 with a clock they control.

pub mod auth;
mod chat;
pub mod clock;
pub mod config;
pub mod demo;
mod evidence;
pub mod facts;
mod http;
pub mod integrations;
pub mod mcp;
pub mod metrics;
mod oidc;
pub mod oncall;
mod problem;
mod reload;
mod report;
mod seal;
mod targets;
mod views;

pub use views::audit_event as audit_event_view;
mod workers;
pub mod workload;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, sync::Arc};

use hourglass_connectors::SshConnector;
use hourglass_core::{
    Clock,
    backoff::Backoff,
    catalog::{Catalog, Entitlement, Principal, Profile, Target},
    connector::Connector,
    engine::{Engine, EnginePorts, EngineSettings},
    id::{EntitlementId, PrincipalId, ProfileId, TargetId},
    store::Store,
};
use hourglass_policy::PolicySetEngine;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{config::Config, metrics::Metrics, workers::Wakeups};

/// Shared state of the HTTP handlers.
pub struct App {
    engine: Arc<Engine>,
    /// The SCIM service provider's settings.
    scim: config::ScimSection,
    /// The server's address as clients reach it (`notifications.public_url`): SCIM's
    /// `meta.location`, the MCP resource.
    public_base: Option<String>,
    metrics: Arc<Metrics>,
    overdue_after_ms: i64,
    ssh: BTreeMap<TargetId, Arc<SshConnector>>,
    /// Hands reconciliation and discovery to the reconciler worker.
    target_tasks: tokio::sync::mpsc::Sender<workers::TargetTask>,
    /// Where policies are reloaded from.
    policy_source: reload::PolicySourceDir,
    facts: Arc<facts::ConfiguredFacts>,
    reload_lock: tokio::sync::Mutex<()>,
    /// Trusted issuers and the token signer.
    workload: workload::Workload,
    /// Ticket sources that accept events, by name.
    ticket_hooks: BTreeMap<String, integrations::TicketHook>,
    /// Chat apps, by name.
    chats: BTreeMap<String, Arc<chat::SlackChat>>,
    /// Sign-in: the demo page, and how session cookies are set.
    web: http::web::WebSettings,
    /// Single sign-on, when configured.
    oidc: Option<Arc<oidc::Oidc>>,
    /// Turns true at shutdown: long-lived responses (the event stream) end on it.
    stop: watch::Receiver<bool>,
    /// Keeps the workers running; `/readyz` fails while one is down.
    supervisor: Arc<workers::Supervisor>,
}

/// Why the server could not start: every problem found.
#[derive(Debug, thiserror::Error)]
#[error("cannot start:\n  {}", problems.join("\n  "))]
pub struct StartError {
    pub problems: Vec<String>,
}

impl StartError {
    fn one(p: impl Into<String>) -> Self {
        StartError {
            problems: vec![p.into()],
        }
    }
}

/// Checked pieces of a configuration, before anything is opened.
pub struct Checked {
    pub catalog: Catalog,
    pub policy: PolicySetEngine,
    /// Time zone and on-call schedule for policy context.
    pub facts: facts::ConfiguredFacts,
    pub connectors: BTreeMap<TargetId, Arc<dyn Connector>>,
    /// The SSH certificate authorities among the targets.
    pub ssh: BTreeMap<TargetId, Arc<SshConnector>>,
    /// `[[identities]]`, for the directory.
    pub declared: Vec<hourglass_core::engine::Declared>,
    /// Ticket sources and notifiers.
    pub integrations: integrations::Integrations,
    /// Single sign-on (`[web.oidc]`), if configured.
    pub oidc: Option<oidc::OidcSettings>,
    /// `[[campaigns]]`.
    pub campaigns: Vec<hourglass_core::engine::ScheduledCampaign>,
}

/// `[[campaigns]]`, checked: each problem names its key.
fn scheduled_campaigns(
    config: &Config,
    problems: &mut Vec<String>,
) -> Vec<hourglass_core::engine::ScheduledCampaign> {
    use hourglass_core::campaign::{CampaignScope, DefaultAction, ReviewerRule};
    let file = config.file_name();
    let mut out = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in config.campaigns.iter().enumerate() {
        let key = format!("{file}: campaigns[{i}]");
        let before = problems.len();
        if c.name.trim().is_empty() || !names.insert(c.name.trim().to_owned()) {
            problems.push(format!("{key}.name: give each campaign its own name"));
        } else if let Err(m) = hourglass_core::text::check(c.name.trim(), 200) {
            problems.push(format!("{key}.name: {m}"));
        }
        let scope = CampaignScope::parse(&c.scope);
        if scope.is_none() {
            problems.push(format!(
                "{key}.scope: {:?}: use eligibility, standing or identities",
                c.scope
            ));
        }
        let reviewers = ReviewerRule::parse(&c.reviewers)
            .map_err(|e| problems.push(format!("{key}.reviewers: {e}")))
            .ok();
        let default_action = DefaultAction::parse(&c.default_action);
        if default_action.is_none() {
            problems.push(format!(
                "{key}.default_action: {:?}: use keep or remove",
                c.default_action
            ));
        }
        if c.duration.as_secs() < 3600
            || c.duration > c.every
            || c.duration.as_secs() > 366 * 86_400
        {
            problems.push(format!(
                "{key}.duration: at least 1h, at most 366d, and no longer than every"
            ));
        }
        if c.remind_before
            .is_some_and(|r| r.as_secs() == 0 || r >= c.duration)
        {
            problems.push(format!(
                "{key}.remind_before: after the start and before the deadline"
            ));
        }
        if let (Some(scope), Some(reviewers), Some(default_action), true) =
            (scope, reviewers, default_action, problems.len() == before)
        {
            out.push(hourglass_core::engine::ScheduledCampaign {
                every: c.every,
                campaign: hourglass_core::engine::NewCampaign {
                    name: c.name.trim().to_owned(),
                    scope,
                    reviewers,
                    default_action,
                    duration: c.duration,
                    remind_before: c.remind_before,
                },
            });
        }
    }
    out
}

/// Validates a configuration completely (identities, targets, entitlements, policies) without
/// opening the store or binding a port. `hourglass policy validate` uses it too.
pub fn check(config: &Config, clock: &Arc<dyn Clock>) -> Result<Checked, StartError> {
    let file = config.file_name();
    let mut problems = Vec::new();
    let store = &config.store;
    if !(store.url.starts_with("sqlite:")
        || store.url.starts_with("postgres:")
        || store.url.starts_with("postgresql:"))
    {
        problems.push(format!(
            "{file}: store.url: expected sqlite://PATH or postgres://…, got {:?}",
            hourglass_store::redact(&store.url)
        ));
    }
    if !matches!(config.server.log_format.as_str(), "text" | "json") {
        problems.push(format!(
            "{file}: server.log_format: {:?}: use text or json",
            config.server.log_format
        ));
    }
    if config.web.demo_sign_in && !config.server.listen.ip().is_loopback() {
        problems.push(format!(
            "{file}: web.demo_sign_in: lets anyone sign in as anyone; only on a loopback listen address"
        ));
    }
    if config.web.session_idle.as_secs() < 60
        || config.web.session_absolute < config.web.session_idle
    {
        problems.push(format!(
            "{file}: web.session_idle: at least 1m, and web.session_absolute at least as long"
        ));
    }
    if store.max_connections < 2 {
        problems.push(format!(
            "{file}: store.max_connections: at least 2 (the workers and the API share the pool)"
        ));
    }
    for (key, d) in [
        ("acquire_timeout", store.acquire_timeout),
        ("poll_interval", store.poll_interval),
    ] {
        if d.as_secs() < 1 {
            problems.push(format!("{file}: store.{key}: at least 1s"));
        }
    }
    let campaigns = scheduled_campaigns(config, &mut problems);
    let mut principals = Vec::new();
    let mut declared = Vec::new();
    let mut hashes = std::collections::BTreeSet::new();
    for (i, id) in config.identities.iter().enumerate() {
        let key = format!("identities[{i}]");
        match PrincipalId::new(id.name.clone()) {
            Ok(pid) => {
                for h in &id.token_sha256 {
                    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                        problems.push(format!(
                            "{file}: {key}.token_sha256: not a SHA-256 hex digest"
                        ));
                    } else if !hashes.insert(h.to_ascii_lowercase()) {
                        problems.push(format!(
                            "{file}: {key}.token_sha256: the same token hash is given twice"
                        ));
                    }
                }
                let principal = Principal {
                    id: pid,
                    kind: id.kind,
                    owner: id.owner.clone(),
                    groups: id.groups.clone(),
                    status: id.status,
                    manager: id.manager.clone(),
                    department: id.department.clone(),
                };
                declared.push(hourglass_core::engine::Declared {
                    principal: principal.clone(),
                    token_sha256: id.token_sha256.clone(),
                });
                principals.push(principal);
            }
            Err(e) => problems.push(format!("{file}: {key}.name: {e}")),
        }
    }
    let mut targets = Vec::new();
    let mut connectors: BTreeMap<TargetId, Arc<dyn Connector>> = BTreeMap::new();
    let mut ssh = BTreeMap::new();
    for (i, t) in config.targets.iter().enumerate() {
        let key = format!("targets[{i}]");
        let Ok(tid) = TargetId::new(t.name.clone())
            .map_err(|e| problems.push(format!("{file}: {key}.name: {e}")))
        else {
            continue;
        };
        match targets::build(t, config, clock) {
            Ok(built) => {
                connectors.insert(tid.clone(), built.connector);
                if let Some(ca) = built.ssh {
                    ssh.insert(tid.clone(), ca);
                }
            }
            Err(p) => problems.extend(p.into_iter().map(|p| format!("{file}: {key}.{p}"))),
        }
        targets.push(Target {
            id: tid,
            connector: t.connector.clone(),
        });
    }
    let mut entitlements = Vec::new();
    for (i, e) in config.entitlements.iter().enumerate() {
        let key = format!("entitlements[{i}]");
        let Ok(eid) = EntitlementId::new(e.name.clone())
            .map_err(|err| problems.push(format!("{file}: {key}.name: {err}")))
        else {
            continue;
        };
        if !e.name.contains('/') {
            problems.push(format!("{file}: {key}.name: must be target/name"));
            continue;
        }
        let Ok(target) = TargetId::new(eid.target())
            .map_err(|err| problems.push(format!("{file}: {key}.name: {err}")))
        else {
            continue;
        };
        let params = serde_json::to_value(&e.params).unwrap_or(serde_json::Value::Null);
        if let Some(c) = connectors.get(&target) {
            problems.extend(
                c.check_params(&params)
                    .into_iter()
                    .map(|p| format!("{file}: {key}.{p}")),
            );
        }
        entitlements.push(Entitlement {
            id: eid,
            target,
            description: e.description.clone(),
            risk: e.risk,
            default_duration: e.default_duration,
            max_duration: e.max_duration,
            approvals_required: e.approvals_required,
            profiles: Vec::new(),
            params,
            max_live_grants: e.max_live_grants,
            max_requests_per_hour: e.max_requests_per_hour,
        });
    }
    let mut profiles = Vec::new();
    for (i, p) in config.profiles.iter().enumerate() {
        let key = format!("profiles[{i}]");
        let Ok(pid) = ProfileId::new(p.name.clone())
            .map_err(|err| problems.push(format!("{file}: {key}.name: {err}")))
        else {
            continue;
        };
        let mut members = Vec::new();
        for (j, e) in p.entitlements.iter().enumerate() {
            match EntitlementId::new(e.clone()) {
                Ok(id) => members.push(id),
                Err(err) => problems.push(format!("{file}: {key}.entitlements[{j}]: {err}")),
            }
        }
        profiles.push(Profile {
            id: pid,
            description: p.description.clone(),
            entitlements: members,
            default_duration: p.default_duration,
            max_duration: p.max_duration,
            approvals_required: p.approvals_required,
            risk: hourglass_core::catalog::Risk::Low,
        });
    }
    let catalog = Catalog::new(principals, targets, entitlements, profiles).map_err(|errs| {
        errs.into_iter()
            .map(|e| format!("{file}: {e}"))
            .collect::<Vec<_>>()
    });
    if let Err(p) = workload::issuer_specs(config) {
        problems.extend(p);
    }
    let integrations = integrations::build(config, clock).map_err(|p| problems.extend(p));
    let oidc = config.web.oidc.as_ref().and_then(|o| {
        let secret = match &o.client_secret {
            None => None,
            Some(r) => match r.read() {
                Ok(s) => Some(secrecy::SecretString::from(s)),
                Err(e) => {
                    problems.push(format!("{file}: web.oidc.client_secret: {e}"));
                    return None;
                }
            },
        };
        oidc::OidcSettings::from_config(o, config.notifications.public_url.as_deref(), secret)
            .map_err(|errs| {
                problems.extend(errs.into_iter().map(|e| format!("{file}: web.oidc.{e}")));
            })
            .ok()
    });
    let policy = reload::PolicySourceDir::of(config)
        .load()
        .map_err(|e| e.problems);
    let board = oncall::OnCallBoard::build(&file, &config.oncall)
        .map_err(|p| problems.extend(p))
        .ok();
    let facts = match (&catalog, board) {
        (Ok(c), Some((board, files))) => facts::ConfiguredFacts::load(
            &config.policy.time_zone,
            config
                .policy
                .oncall_file
                .iter()
                .cloned()
                .chain(files)
                .collect(),
            Arc::new(board),
            c,
        )
        .map_err(|errs| {
            problems.extend(errs.into_iter().map(|e| format!("{file}: {e}")));
        })
        .ok(),
        _ => None,
    };
    match (catalog, policy, facts, integrations) {
        (Ok(catalog), Ok(policy), Some(facts), Ok(integrations)) if problems.is_empty() => {
            Ok(Checked {
                catalog,
                policy,
                facts,
                connectors,
                ssh,
                declared,
                integrations,
                oidc,
                campaigns,
            })
        }
        (c, p, _, _) => {
            problems.extend(c.err().unwrap_or_default());
            problems.extend(
                p.err()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| format!("policy: {e}")),
            );
            Err(StartError { problems })
        }
    }
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    app: Arc<App>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    store: Arc<dyn Store>,
    _lock: Option<std::fs::File>,
}

impl Running {
    /// Ends the current run of the worker `name` (`scheduler`, `job_runner`, `notifier`,
    /// `ticket_poller`, `reconciler`) as a crash would; the supervisor starts it again. For
    /// fault tests.
    pub fn kill_worker(&self, name: &str) -> bool {
        self.app.supervisor.kill(name)
    }

    /// The workers down now (between a crash and their restart).
    pub fn workers_down(&self) -> Vec<&'static str> {
        self.app.supervisor.down()
    }

    /// Stops accepting, lets the workers finish their step, and returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Runs until `signal` completes, then stops.
    pub async fn until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.stop().await;
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Reloads policies for the operator's signal (`SIGHUP`); usable after `until` began.
    pub fn reloader(&self) -> reload::Reloader {
        reload::Reloader(Arc::clone(&self.app))
    }
}

/// The lock file that keeps a second process off the same SQLite database.
fn lock_sqlite(url: &str) -> Result<Option<std::fs::File>, StartError> {
    let Some(path) = url
        .strip_prefix("sqlite://")
        .filter(|p| !p.starts_with(':'))
    else {
        return Ok(None);
    };
    let path = path.split('?').next().unwrap_or(path);
    let lock_path = PathBuf::from(format!("{path}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StartError::one(format!("{}: {e}", lock_path.display())))?;
    file.try_lock().map_err(|_| {
        StartError::one(format!("{path} is in use by another Hourglass process (SQLite serves one process; use PostgreSQL for several)"))
    })?;
    Ok(Some(file))
}

/// Checks the configuration, opens everything and starts serving on `config.server.listen`.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Running, StartError> {
    let checked = check(&config, &clock)?;
    if config.server.demo && !config.server.listen.ip().is_loopback() {
        return Err(StartError::one("demo mode listens on loopback only"));
    }
    let lock = lock_sqlite(&config.store.url)?;
    let store = hourglass_store::open(&config.store.url, &config.store.pool())
        .await
        .map_err(|e| StartError::one(format!("store: {e:?}")))?;
    if lock.is_some() && !store.is_shared() {
        // The only process on this database: leases of a previous, killed run are void.
        let n = store
            .release_all_leases()
            .await
            .map_err(|e| StartError::one(format!("store: {e:?}")))?;
        if n > 0 {
            tracing::warn!(jobs = n, "resuming jobs left in flight by a previous run");
        }
    }
    for (target, ca) in &checked.ssh {
        ca.use_revocations(Arc::new(targets::LedgerRevocations {
            store: Arc::clone(&store),
            target: target.clone(),
        }));
        ca.write_krl_file().await.map_err(|e| {
            StartError::one(format!("targets.{target}.ssh.krl_file: {}", e.message))
        })?;
    }
    let workload = workload::build(
        &config,
        clock.now().unix_millis() / 1000,
        &workload::token_issuer(&config),
    )
    .map_err(|problems| StartError { problems })?;
    let wake = Arc::new(Wakeups {
        poll: store
            .is_shared()
            .then(|| std::time::Duration::from_secs(config.store.poll_interval.as_secs())),
        ..Wakeups::default()
    });
    if store.is_shared() {
        store.relay_wakes(Arc::clone(&wake) as Arc<dyn hourglass_core::engine::Wake>);
    }
    let sealer = match workload::key_dir(&config) {
        Some(dir) => seal::Sealer::in_dir(&dir),
        None => {
            tracing::warn!("no key directory: credentials are sealed under a key held in memory, so another replica cannot hand them over and a restart loses the waiting ones ([tokens] key_dir)");
            seal::Sealer::ephemeral()
        }
    }
    .map_err(|e| StartError::one(format!("{e:?}")))?;
    let s = &config.server;
    let facts = Arc::new(checked.facts);
    let oidc = match checked.oidc {
        Some(o) => Some(Arc::new(
            oidc::Oidc::new(o, Arc::clone(&clock)).map_err(StartError::one)?,
        )),
        None => None,
    };
    let settings = EngineSettings {
        scheduled_campaigns: checked.campaigns.clone(),
        directory: hourglass_core::engine::DirectorySettings {
            on_deactivate: config.scim.on_deactivate.into(),
            on_delete: config.scim.on_delete.into(),
            revoke_on_eligibility_loss: config.scim.revoke_on_eligibility_loss,
        },
        pending_ttl: s.pending_ttl,
        break_glass_max: s.break_glass_max_duration,
        break_glass_open_reviews: s.break_glass_max_open_reviews,
        sessions: hourglass_core::session::SessionSettings {
            idle: config.web.session_idle,
            absolute: config.web.session_absolute,
        },
        provision_timeout: s.provision_timeout,
        quotas: hourglass_core::engine::Quotas {
            principal_live_grants: config.quotas.max_live_grants_per_principal,
            principal_requests_per_hour: config.quotas.max_requests_per_hour_per_principal,
            agent_live_grants: config.quotas.max_live_grants_per_agent,
            agent_requests_per_hour: config.quotas.max_requests_per_hour_per_agent,
        },
        backoff: Backoff {
            base_ms: s.retry_base.as_secs() * 1000,
            cap_ms: s.retry_cap.as_secs() * 1000,
        },
        lease_ms: s.job_lease.as_millis(),
        // Unique among replicas on several hosts (process ids are not).
        worker_id: format!(
            "hourglass-{}-{}",
            std::process::id(),
            hourglass_core::id::random_hex::<4>().map_err(|e| StartError::one(format!("{e:?}")))?
        ),
        keys: hourglass_core::engine::KeyPolicy {
            max_lifetime: config.keys.max_lifetime,
            rotation_overlap: config.keys.rotation_overlap,
            rotate_after: config.keys.rotate_after,
        },
        notify: hourglass_core::notify::NotifySettings {
            routes: checked.integrations.routes.clone(),
            escalations: checked.integrations.escalations.clone(),
            expiry_warning: config.notifications.expiry_warning,
            overdue_after: s.overdue_after,
            public_url: config.notifications.public_url.clone(),
            max_attempts: config.notifications.max_attempts.max(1),
            ..hourglass_core::notify::NotifySettings::default()
        },
    };
    let integrations::Integrations {
        tickets,
        hooks: ticket_hooks,
        notifiers,
        chats,
        ..
    } = checked.integrations;
    let polls_tickets = !tickets.is_empty();
    let engine = Engine::new(
        EnginePorts {
            store: Arc::clone(&store),
            policy: Arc::new(checked.policy),
            clock,
            catalog: Arc::new(checked.catalog),
            connectors: checked.connectors,
            wake: Arc::clone(&wake) as Arc<dyn hourglass_core::engine::Wake>,
            credentials: Arc::new(sealer),
            facts: Arc::clone(&facts) as Arc<dyn hourglass_core::policy::ContextFacts>,
            tickets,
            notifiers,
        },
        settings,
    )
    .map_err(|e| StartError::one(format!("{e:?}")))?;
    engine
        .declare_identities(&checked.declared)
        .await
        .map_err(|e| StartError::one(format!("identities: {e:?}")))?;
    // A follower puts its set in force only when nothing is recorded yet (the first start).
    let follows = store.is_shared() && config.policy.on_start == config::PolicyOnStart::Follow;
    let nothing_recorded = store
        .policy_in_force()
        .await
        .map_err(|e| StartError::one(format!("policy: {e:?}")))?
        .is_none();
    if !follows || nothing_recorded {
        engine
            .put_policy_in_force_at_start()
            .await
            .map_err(|e| StartError::one(format!("policy: {e:?}")))?;
    }
    if config.after_restore {
        let report = engine
            .after_restore()
            .await
            .map_err(|e| StartError::one(format!("after restore: {e:?}")))?;
        for (target, why) in &report.unreachable {
            tracing::warn!(%target, %why, "after restore: target not reachable; its grants ended");
        }
    }
    let engine = Arc::new(engine);
    for chat in chats.values() {
        chat.attach(&engine);
    }
    let metrics = Arc::new(Metrics::default());
    let (tasks_tx, tasks_rx) = tokio::sync::mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let provider_origin = oidc.as_ref().map(|o| o.origin());
    let (app_csp, signin_csp) = http::web::page_policies(provider_origin.as_deref());
    let app = Arc::new(App {
        engine: Arc::clone(&engine),
        metrics: Arc::clone(&metrics),
        overdue_after_ms: s.overdue_after.as_millis(),
        ssh: checked.ssh,
        target_tasks: tasks_tx,
        policy_source: reload::PolicySourceDir::of(&config),
        facts,
        reload_lock: tokio::sync::Mutex::new(()),
        workload,
        ticket_hooks,
        chats,
        scim: config.scim.clone(),
        public_base: config
            .notifications
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned()),
        web: http::web::WebSettings {
            demo_sign_in: config.web.demo_sign_in,
            secure_cookies: !config.server.listen.ip().is_loopback(),
            session_secs: config.web.session_absolute.as_secs(),
            app_csp,
            signin_csp,
        },
        oidc,
        stop: stop_rx.clone(),
        supervisor: Arc::new(workers::Supervisor::default()),
    });
    let listener = TcpListener::bind(s.listen)
        .await
        .map_err(|e| StartError::one(format!("listen on {}: {e}", s.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::one(e.to_string()))?;
    let router = http::router(Arc::clone(&app));
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = http_stop.changed().await;
        };
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    let sup = Arc::clone(&app.supervisor);
    let sched = {
        let (engine, wake, stop) = (Arc::clone(&engine), Arc::clone(&wake), stop_rx.clone());
        sup.supervise(
            "scheduler",
            Arc::clone(&metrics),
            stop_rx.clone(),
            move || workers::scheduler(Arc::clone(&engine), Arc::clone(&wake), stop.clone()),
        )
    };
    let runner = {
        let (engine, wake, m, stop) = (
            Arc::clone(&engine),
            Arc::clone(&wake),
            Arc::clone(&metrics),
            stop_rx.clone(),
        );
        let concurrency = s.job_concurrency;
        sup.supervise(
            "job_runner",
            Arc::clone(&metrics),
            stop_rx.clone(),
            move || {
                workers::job_runner(
                    Arc::clone(&engine),
                    Arc::clone(&wake),
                    Arc::clone(&m),
                    concurrency,
                    stop.clone(),
                )
            },
        )
    };
    let follower = store.is_shared().then(|| {
        let (app, wake, stop) = (Arc::clone(&app), Arc::clone(&wake), stop_rx.clone());
        sup.supervise(
            "policy_follower",
            Arc::clone(&metrics),
            stop_rx.clone(),
            move || reload::follower(Arc::clone(&app), Arc::clone(&wake), stop.clone()),
        )
    });
    let krl_writer = (store.is_shared() && !app.ssh.is_empty()).then(|| {
        let cas: Vec<_> = app.ssh.values().cloned().collect();
        let (clock, wake, stop) = (
            Arc::clone(engine.clock()),
            Arc::clone(&wake),
            stop_rx.clone(),
        );
        sup.supervise(
            "krl_writer",
            Arc::clone(&metrics),
            stop_rx.clone(),
            move || {
                workers::krl_writer(
                    cas.clone(),
                    Arc::clone(&clock),
                    Arc::clone(&wake),
                    stop.clone(),
                )
            },
        )
    });
    let reviews = {
        let (engine, wake, stop) = (Arc::clone(&engine), Arc::clone(&wake), stop_rx.clone());
        sup.supervise(
            "campaigns",
            Arc::clone(&metrics),
            stop_rx.clone(),
            move || workers::campaigns(Arc::clone(&engine), Arc::clone(&wake), stop.clone()),
        )
    };
    let notifier = {
        let (engine, m, stop) = (Arc::clone(&engine), Arc::clone(&metrics), stop_rx.clone());
        sup.supervise(
            "notifier",
            Arc::clone(&metrics),
            stop_rx.clone(),
            move || {
                workers::notifier(
                    Arc::clone(&engine),
                    Arc::clone(&wake),
                    Arc::clone(&m),
                    stop.clone(),
                )
            },
        )
    };
    let mut tasks = vec![server, sched, runner, reviews, notifier];
    let board = Arc::clone(app.facts.board());
    if !board.is_empty() {
        let (clock, m, stop) = (
            Arc::clone(engine.clock()),
            Arc::clone(&metrics),
            stop_rx.clone(),
        );
        tasks.push(sup.supervise(
            "oncall_refresher",
            Arc::clone(&metrics),
            stop_rx.clone(),
            move || {
                oncall::refresher(
                    Arc::clone(&board),
                    Arc::clone(&clock),
                    Arc::clone(&m),
                    stop.clone(),
                )
            },
        ));
    }
    tasks.extend(follower);
    tasks.extend(krl_writer);
    if polls_tickets {
        let (engine, m, stop) = (Arc::clone(&engine), Arc::clone(&metrics), stop_rx.clone());
        let every = config.tickets.poll_interval;
        tasks.push(sup.supervise(
            "ticket_poller",
            Arc::clone(&metrics),
            stop_rx.clone(),
            move || {
                workers::ticket_poller(Arc::clone(&engine), Arc::clone(&m), every, stop.clone())
            },
        ));
    }
    let reconciler = {
        let tasks_rx = Arc::new(tokio::sync::Mutex::new(tasks_rx));
        let (m, stop) = (Arc::clone(&metrics), stop_rx.clone());
        let every = s.reconcile_interval;
        sup.supervise("reconciler", metrics, stop_rx, move || {
            workers::reconciler(
                Arc::clone(&engine),
                Arc::clone(&m),
                every,
                Arc::clone(&tasks_rx),
                stop.clone(),
            )
        })
    };
    tracing::info!(%addr, store = %hourglass_store::redact(&config.store.url), "hourglass serving");
    Ok(Running {
        addr,
        app,
        stop: stop_tx,
        tasks: {
            tasks.push(reconciler);
            tasks
        },
        store,
        _lock: lock,
    })
}
