//! The demo and the starter configuration: a data directory with a config file, policies, an
//! `exec` target that writes who holds what to `access.txt`, and API tokens for the sample
//! identities (only their hashes go into the config).

use std::{
    fs, io,
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use crate::auth::{new_token, token_hash};

pub const DEMO_POLICIES: &str = include_str!("demo/demo.cedar");
pub const DEMO_TARGET_SCRIPT: &str = include_str!("demo/demo-target.sh");
pub const DEMO_POLICY_TESTS: &str = include_str!("demo/demo-tests.toml");

/// The sample identities: name, kind, owner, groups.
/// One demo identity: name, kind, owner, groups, and manager.
type DemoIdentity = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
    Option<&'static str>,
);

/// The demo's identities (bob reports to alice, so `managers-approve-their-reports` lets alice
/// approve bob's requests).
const IDENTITIES: [DemoIdentity; 5] = [
    ("alice", "human", None, &["requesters"], None),
    ("bob", "human", None, &["approvers"], Some("alice")),
    ("admin", "human", None, &["admins", "approvers"], None),
    (
        "ci-deployer",
        "workload",
        Some("alice"),
        &["workloads"],
        None,
    ),
    ("support-bot", "agent", Some("alice"), &["agents"], None),
];

/// What was written.
#[derive(Debug)]
pub struct Written {
    pub config: PathBuf,
    pub access_file: PathBuf,
    /// (identity, token), shown once.
    pub tokens: Vec<(String, String)>,
}

fn write_exec(path: &Path, text: &str) -> io::Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// The demo's trusted issuer: tokens minted by `hourglass dev mint-token` (key in
/// `demo-issuer/`), mapped to the sample workload, agent and people by `sub`.
const DEMO_ISSUER: &str = r#"
# Workload identity: the OIDC issuers whose tokens workloads may exchange (docs/workloads.md).
# DEMO: a local issuer whose key is in demo-issuer/; `hourglass dev mint-token` signs with it.
[[issuers]]
name = "demo"
issuer = "https://demo-issuer.hourglass.invalid"
jwks_file = "demo-issuer/jwks.json"
dev_signing_key = "demo-issuer/key.pk8"
audience = ["hourglass"]
algorithms = ["EdDSA"]
map = [
  { principal = "ci-deployer", claims = { sub = "ci-deployer", repository = "acme/app" } },
  { principal = "support-bot", claims = { sub = "support-bot" } },
  { principal = "alice", claims = { sub = "alice" } },
]
"#;

/// The demo's ticket source: a webhook source whose events `hourglass dev ticket-event` signs.
const DEMO_TICKETS: &str = r#"
# Ticket-bound access (docs/tickets.md). DEMO: a ticket system that reports by signed webhook;
# `hourglass dev ticket-event --ref DESK-1 --status "In Progress" --assignee alice` plays it.
[[ticket_sources]]
name = "desk"
kind = "webhook"
pattern = 'DESK-\d+'
webhook_secret = { file = "desk-webhook.secret" }
require_assignee = true
"#;

/// Commented ticket source and notifier examples (both layouts).
const INTEGRATION_EXAMPLES: &str = r#"
# --- examples: ticket systems and notifications (docs/tickets.md, docs/notifications.md) ---
# [[ticket_sources]]
# name = "jira"
# kind = "jira"                      # or "servicenow", or "webhook"
# pattern = 'HD-\d+'
# url = "https://example.atlassian.net"
# user = "hourglass@example.com"
# token = { file = "jira.token" }    # an API token; or { env = "JIRA_TOKEN" }
# webhook_secret = { file = "jira-webhook.secret" }   # Jira's webhook secret (X-Hub-Signature)
# require_assignee = true
# on_unavailable = "deny"            # or "approval": a person decides, never policy alone
# users = { "5b10ac8d82e05b22cc7d4ef5" = "alice" }
#
# [tickets]
# poll_interval = "2m"
#
# [notifications]
# public_url = "https://hourglass.example.com"   # approval links
# expiry_warning = "10m"
#
# [[notifiers]]
# name = "approvers"
# kind = "slack"
# webhook_url = { file = "slack-webhook.url" }
# events = ["request.pending"]
#
# [[notifiers]]
# name = "security"
# kind = "slack"
# webhook_url = { file = "slack-security.url" }   # or { env = "SLACK_SECURITY_WEBHOOK" }
# events = ["break_glass", "revocation.overdue", "drift"]
#
# [[notifiers]]
# name = "requesters"
# kind = "email"
# host = "smtp.example.com"
# username = "hourglass"
# password = { file = "smtp.password" }
# from = "Hourglass <hourglass@example.com>"
# to = ["{principal}@example.com"]
# events = ["request.approved", "request.denied", "grant.expiring", "grant.revoked"]
"#;

/// What `init` writes instead: a commented GitHub Actions example.
const ISSUER_EXAMPLE: &str = r#"
# Workload identity (docs/workloads.md): trust GitHub Actions' OIDC tokens for one repository.
# [[issuers]]
# name = "github"
# issuer = "https://token.actions.githubusercontent.com"
# jwks_url = "https://token.actions.githubusercontent.com/.well-known/jwks"
# audience = ["hourglass"]
# algorithms = ["RS256"]
# map = [{ principal = "ci-deployer", claims = { repository = "acme/app", ref = "refs/heads/main" } }]
"#;

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

/// Writes configuration, policies and the target script into `dir`, with fresh tokens.
pub fn write_layout(dir: &Path, listen: SocketAddr, demo: bool) -> io::Result<Written> {
    fs::create_dir_all(dir.join("policies/tests"))?;
    fs::create_dir_all(dir.join("targets"))?;
    fs::write(dir.join("policies/demo.cedar"), DEMO_POLICIES)?;
    fs::write(dir.join("policies/tests/demo.toml"), DEMO_POLICY_TESTS)?;
    write_exec(&dir.join("targets/demo-target.sh"), DEMO_TARGET_SCRIPT)?;
    // The SSH example's certificate authority: a fresh Ed25519 key, private to this directory.
    fs::create_dir_all(dir.join("ssh"))?;
    if !dir.join("ssh/ca").exists() {
        hourglass_connectors::ssh::generate_ca(&dir.join("ssh/ca"), "hourglass ssh ca")
            .map_err(io::Error::other)?;
    }
    let access_file = dir.join("access.txt");
    let mut tokens = Vec::new();
    let mut identities = String::new();
    for (name, kind, owner, groups, manager) in IDENTITIES {
        let token = new_token().map_err(|e| io::Error::other(e.to_string()))?;
        identities.push_str(&format!(
            "\n[[identities]]\nname = {}\nkind = {}\n{}{}groups = [{}]\ntoken_sha256 = [{}]\n",
            toml_str(name),
            toml_str(kind),
            owner.map_or_else(String::new, |o| format!("owner = {}\n", toml_str(o))),
            manager.map_or_else(String::new, |m| format!("manager = {}\n", toml_str(m))),
            groups
                .iter()
                .map(|g| toml_str(g))
                .collect::<Vec<_>>()
                .join(", "),
            toml_str(&token_hash(&token)),
        ));
        tokens.push((name.to_owned(), token));
    }
    let script = dir.join("targets/demo-target.sh").display().to_string();
    // The demo's identity provider: a local key that `hourglass dev mint-token` signs with.
    let issuer = if demo {
        hourglass_tokens::DevIssuer::create(&dir.join("demo-issuer"))?;
        let secret = dir.join("desk-webhook.secret");
        if !secret.exists() {
            let hex = hourglass_core::id::random_hex::<32>()
                .map_err(|e| io::Error::other(e.to_string()))?;
            fs::write(&secret, hex)?;
            fs::set_permissions(&secret, fs::Permissions::from_mode(0o600))?;
        }
        DEMO_ISSUER
    } else {
        ISSUER_EXAMPLE
    };
    let config = format!(
        r#"# Hourglass configuration{demo_note}.
# Every key can be overridden by an environment variable: HOURGLASS_STORE__URL, HOURGLASS_SERVER__LISTEN, ...

[server]
listen = {listen}
demo = {demo}
# pending_ttl = "24h"      # a request nobody decides on expires after this
# overdue_after = "1m"     # a revocation not confirmed this long after it was due is overdue
# retry_base = "1s"        # first retry delay of a failed connector call (doubles up to retry_cap)
# retry_cap = "5m"

{demo_web}[store]
url = "sqlite://hourglass.db"

[policy]
dir = "policies"            # *.cedar; test cases for `hourglass policy test` in policies/tests/
time_zone = "UTC"           # of context.hour and context.weekday (an IANA name: "Europe/Berlin")
# oncall_file = "oncall.toml"   # [[shift]] principal|group, from, until: context.oncall
                                # PagerDuty and Opsgenie: [[oncall]] tables (docs/oncall.md)
{identities}
# The demo target: the exec connector runs this script, which keeps access.txt.
[[targets]]
name = "demo"
connector = "exec"
exec = {{ grant = [{script}, "grant"], revoke = [{script}, "revoke"], extend = [{script}, "extend"], inspect = [{script}, "inspect"], timeout_secs = 10, env = {{ HOURGLASS_DEMO_ACCESS_FILE = {access} }} }}

[[entitlements]]
name = "demo/read-logs"
description = "Read the application logs"
risk = "low"
default_duration = "15m"
max_duration = "4h"

[[entitlements]]
name = "demo/ops-admin"
description = "Administer the demo system"
risk = "high"
default_duration = "30m"
max_duration = "2h"
approvals_required = 1

# A task profile: incident triage needs both demo rights at once. Requested as one, granted
# together, revoked together; policies name it as Hourglass::Profile::"incident/triage".
[[profiles]]
name = "incident/triage"
description = "Read the logs and administer the demo system during an incident"
entitlements = ["demo/read-logs", "demo/ops-admin"]
default_duration = "30m"
max_duration = "1h"
approvals_required = 1

# Access tokens signed by Hourglass (Ed25519 JWTs, verified offline against
# /.well-known/jwks.json): a workload exchanges its identity token for one (POST /v1/token).
[[targets]]
name = "tokens"
connector = "token"

[[entitlements]]
name = "tokens/deploy-api"
description = "Call the deploy API (a signed token for audience deploy-api)"
risk = "medium"
default_duration = "5m"
max_duration = "15m"
params = {{ audience = "deploy-api", scope = "deploy" }}
{issuer}{tickets}{integration_examples}
# --- examples: real targets (docs/connectors.md). Uncomment a block to use it. ---
##
## PostgreSQL. Uncommenting this block points the demo at the local PostgreSQL: each grant of
## pg/read-all is a login role with a generated password that expires with the grant.
# [[targets]]
# name = "pg"
# connector = "postgres"
# postgres = {{ url = "postgres://postgres@127.0.0.1:5432/postgres", prefix = "hg_" }}
#
# [[entitlements]]
# name = "pg/read-all"
# description = "Read every table (pg_read_all_data)"
# default_duration = "15m"
# max_duration = "1h"
# params = {{ roles = ["pg_read_all_data"] }}
##
## MariaDB / MySQL: an account with the listed privileges, dropped (sessions killed) at the end.
# [[targets]]
# name = "maria"
# connector = "mysql"
# mysql = {{ url = "mysql://root@127.0.0.1:3306/mysql", prefix = "hg_" }}
#
# [[entitlements]]
# name = "maria/read-app"
# default_duration = "15m"
# max_duration = "1h"
# params = {{ privileges = ["SELECT"], on = "app.*" }}
##
## Redis: an ACL user with the listed rules, its connections killed and the user deleted at the end.
# [[targets]]
# name = "cache"
# connector = "redis"
# redis = {{ url = "redis://127.0.0.1:6379", prefix = "hg_" }}
#
# [[entitlements]]
# name = "cache/read-orders"
# default_duration = "15m"
# max_duration = "1h"
# params = {{ rules = ["~orders:*", "+@read"] }}
##
## AWS: STS credentials for a role, no longer than the grant; revoked by an inline deny on the
## role for that session (credentials from the environment or ~/.aws/credentials).
# [[targets]]
# name = "aws"
# connector = "aws"
# aws = {{ region = "eu-west-1" }}
#
# [[entitlements]]
# name = "aws/ops"
# default_duration = "30m"
# max_duration = "1h"
# params = {{ role_arn = "arn:aws:iam::123456789012:role/ops", max_session_secs = 3600 }}
##
## An Okta group as the grant: the person is a member for the window (entra and google alike).
# [[targets]]
# name = "okta"
# connector = "okta"
# okta = {{ url = "https://example.okta.com", token_file = "okta.token", email_domain = "example.com" }}
#
# [[entitlements]]
# name = "okta/prod-admins"
# default_duration = "1h"
# max_duration = "4h"
# params = {{ group = "00g1prodadmins" }}
##
## The same with Microsoft Entra ID (Graph, an app registration's client credentials) …
# [[targets]]
# name = "entra"
# connector = "entra"
# entra = {{ tenant = "contoso.onmicrosoft.com", client_id = "00000000-0000-0000-0000-000000000000", client_secret_file = "entra.secret", email_domain = "example.com" }}
#
# [[entitlements]]
# name = "entra/sql-admins"
# default_duration = "1h"
# max_duration = "4h"
# params = {{ group = "6f1c0b2a-3d4e-4f50-8a9b-0c1d2e3f4a5b" }}
##
## … and with Google Workspace (a service account with domain-wide delegation).
# [[targets]]
# name = "google"
# connector = "google"
# google = {{ service_account_file = "google-sa.json", subject = "admin@example.com", email_domain = "example.com" }}
#
# [[entitlements]]
# name = "google/billing-admins"
# default_duration = "1h"
# max_duration = "4h"
# params = {{ group = "billing-admins@example.com" }}
##
## GitHub through a GitHub App installed on the organisation: team membership for the window.
# [[targets]]
# name = "github"
# connector = "github"
# github = {{ org = "acme", app_id = "123456", installation_id = "7654321", private_key_file = "github-app.pem", users = {{ alice = "alice-gh", bob = "bob-gh" }} }}
#
# [[entitlements]]
# name = "github/oncall"
# default_duration = "4h"
# max_duration = "12h"
# params = {{ team = "oncall" }}
##
## SSH certificates from the CA key written beside this file (ssh/ca, ssh/ca.pub for sshd's
## TrustedUserCAKeys); early revocations go to ssh/revoked.krl (sshd's RevokedKeys).
# [[targets]]
# name = "ssh"
# connector = "ssh"
# ssh = {{ ca_key_file = "ssh/ca", krl_file = "ssh/revoked.krl" }}
#
# [[entitlements]]
# name = "ssh/deploy"
# default_duration = "30m"
# max_duration = "2h"
# params = {{ principals = ["deploy"] }}
##
## Any other system, through signed webhooks (put a random secret of 32+ bytes in the file).
# [[targets]]
# name = "saas"
# connector = "webhook"
# webhook = {{ url = "https://bridge.example.com/hourglass", secret_file = "webhook.secret" }}
#
# [[entitlements]]
# name = "saas/admin"
# default_duration = "1h"
# max_duration = "8h"
# --- end of examples ---
"#,
        tickets = if demo { DEMO_TICKETS } else { "" },
        demo_web = if demo {
            "[web]\ndemo_sign_in = true     # DEMO: /signin lets anyone pick a person (loopback only)\n# session_idle = \"30m\"\n# session_absolute = \"12h\"\n\n"
        } else {
            "# [web]\n# session_idle = \"30m\"       # a sign-in session unused this long ends\n# session_absolute = \"12h\"   # and one ends this long after sign-in, however active\n\n"
        },
        integration_examples = INTEGRATION_EXAMPLES,
        demo_note = if demo {
            " (DEMO: sample identities and tokens; not for production)"
        } else {
            ""
        },
        listen = toml_str(&listen.to_string()),
        script = toml_str(&script),
        access = toml_str(&access_file.display().to_string()),
        issuer = issuer,
    );
    let config_path = dir.join("hourglass.toml");
    fs::write(&config_path, config)?;
    Ok(Written {
        config: config_path,
        access_file,
        tokens,
    })
}

/// Writes `demo.env` (mode 0600): the server address and one token line per identity.
pub fn write_env(dir: &Path, server: &str, tokens: &[(String, String)]) -> io::Result<PathBuf> {
    let mut text = format!(
        "HOURGLASS_SERVER={server}\nHOURGLASS_CONFIG={}\n",
        dir.join("hourglass.toml").display()
    );
    for (name, token) in tokens {
        let var = hourglass_connectors::exec::env_name(name);
        text.push_str(&format!("HOURGLASS_TOKEN_{var}={token}\n"));
    }
    let path = dir.join("demo.env");
    fs::write(&path, text)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hourglass_core::Clock;

    use super::write_layout;
    use crate::config::Config;

    /// The commented examples in the starter configuration stay valid: uncommented, they load
    /// and pass every start-up check.
    #[tokio::test]
    async fn every_commented_example_is_a_valid_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let w = write_layout(dir.path(), "127.0.0.1:0".parse().unwrap(), false).unwrap();
        std::fs::write(dir.path().join("webhook.secret"), "s".repeat(40)).unwrap();
        for (file, text) in [
            ("jira.token", "jira-api-token"),
            ("jira-webhook.secret", &"j".repeat(40)),
            (
                "slack-webhook.url",
                "https://hooks.slack.com/services/T0/B0/x",
            ),
            (
                "slack-security.url",
                "https://hooks.slack.com/services/T0/B1/y",
            ),
            ("smtp.password", "smtp-password"),
            ("okta.token", "okta-api-token"),
        ] {
            std::fs::write(dir.path().join(file), text).unwrap();
        }
        // The GitHub App's key, as GitHub hands it out (PKCS#8 PEM here).
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der =
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
        std::fs::write(
            dir.path().join("github-app.pem"),
            format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der.as_ref())
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("entra.secret"), "entra-client-secret").unwrap();
        let pem = std::fs::read_to_string(dir.path().join("github-app.pem")).unwrap();
        std::fs::write(
            dir.path().join("google-sa.json"),
            serde_json::json!({
                "type": "service_account",
                "client_email": "hourglass@example.iam.gserviceaccount.com",
                "private_key": pem,
                "token_uri": "https://oauth2.googleapis.com/token"
            })
            .to_string(),
        )
        .unwrap();
        let text = std::fs::read_to_string(&w.config).unwrap();
        let mut inside = false;
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with("# --- examples") {
                inside = true;
            } else if line.starts_with("# --- end of examples") {
                inside = false;
            }
            let line = match line.strip_prefix("# ") {
                Some(rest) if inside && !line.starts_with("# ---") => rest,
                _ if inside && line == "#" => "",
                _ => line,
            };
            out.push_str(line);
            out.push('\n');
        }
        assert!(out.contains("\n[[targets]]\nname = \"pg\""), "{out}");
        std::fs::write(&w.config, &out).unwrap();
        let config = Config::load(&w.config, Vec::new()).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let checked = crate::check(&config, &clock).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = checked.connectors.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "aws", "cache", "demo", "entra", "github", "google", "maria", "okta", "pg", "saas",
                "ssh", "tokens"
            ]
        );
        let notifiers: Vec<&String> = checked.integrations.notifiers.keys().collect();
        assert_eq!(notifiers, ["approvers", "requesters", "security"]);
        assert!(checked.integrations.tickets.find("HD-1").is_some());
        assert!(checked.integrations.hooks.contains_key("jira"));

        // And the shipped policies cover every example: alice may ask for each (an approver
        // decides), bob may approve it, and she may extend it.
        use hourglass_core::policy::{
            Action, DecisionContext, PolicyDecider, PolicyQuery, Resource,
        };
        let who = |n: &str| {
            checked
                .catalog
                .principal(&hourglass_core::id::PrincipalId::new(n).unwrap())
                .unwrap()
                .clone()
        };
        let (alice, bob) = (who("alice"), who("bob"));
        for name in [
            "pg/read-all",
            "maria/read-app",
            "cache/read-orders",
            "aws/ops",
            "okta/prod-admins",
            "entra/sql-admins",
            "google/billing-admins",
            "github/oncall",
            "ssh/deploy",
            "saas/admin",
        ] {
            let ent = checked
                .catalog
                .entitlement(&hourglass_core::id::EntitlementId::new(name).unwrap())
                .unwrap();
            let mut ctx = DecisionContext {
                duration_secs: ent.default_duration.as_secs(),
                weekday: "Wednesday".into(),
                hour: 12,
                ..DecisionContext::default()
            };
            let ask = |action, principal, ctx: &DecisionContext| {
                checked
                    .policy
                    .decide(PolicyQuery {
                        action,
                        principal,
                        resource: Resource::Entitlement(ent),
                        context: ctx,
                    })
                    .unwrap()
                    .allowed
            };
            assert!(ask(Action::Request, &alice, &ctx), "{name}: Request");
            assert!(ask(Action::Extend, &alice, &ctx), "{name}: Extend");
            assert!(
                !ask(Action::AutoApprove, &alice, &ctx),
                "{name}: a human decides"
            );
            ctx.requester = Some(alice.clone());
            assert!(ask(Action::Approve, &bob, &ctx), "{name}: Approve");
        }

        // Each connector checks its entitlements' parameters at start, naming the key.
        let bad = out.replace(r#"principals = ["deploy"]"#, "principals = []");
        std::fs::write(&w.config, bad).unwrap();
        let config = Config::load(&w.config, Vec::new()).unwrap();
        let Err(e) = crate::check(&config, &clock) else {
            panic!("an SSH entitlement without principals was accepted");
        };
        assert!(
            e.to_string()
                .contains("].params.principals: name at least one login"),
            "{e}"
        );
    }
}
