//! Builds each target's connector from its configuration table.

use std::sync::Arc;

use hourglass_connectors::{
    ExecConnector, GroupConnector, MysqlConnector, PostgresConnector, SshConnector,
    WebhookConnector,
};
use hourglass_core::{Clock, connector::Connector};

use crate::config::{Config, TargetConfig};

/// A built target: its connector, and the SSH CA behind it if it is one (for the KRL route).
pub struct Built {
    pub connector: Arc<dyn Connector>,
    pub ssh: Option<Arc<SshConnector>>,
}

/// The ledger's early revocations of one SSH target, for its KRL.
pub struct LedgerRevocations {
    pub store: Arc<dyn hourglass_core::store::Store>,
    pub target: hourglass_core::id::TargetId,
}

#[async_trait::async_trait]
impl hourglass_connectors::ssh::RevocationList for LedgerRevocations {
    async fn revoked(&self, now: hourglass_core::Timestamp) -> Result<Vec<String>, String> {
        self.store
            .ended_early(&self.target, now)
            .await
            .map(|ids| ids.into_iter().map(|id| id.to_string()).collect())
            .map_err(|e| format!("{e:?}"))
    }
}

const KINDS: &str =
    "exec, postgres, mysql, redis, aws, okta, entra, google, github, ssh, webhook, token";

/// The parameters of the entitlements on target `name`.
fn params_of(config: &Config, name: &str) -> Vec<serde_json::Value> {
    config
        .entitlements
        .iter()
        .filter(|e| e.name.split_once('/').is_some_and(|(t, _)| t == name))
        .map(|e| serde_json::to_value(&e.params).unwrap_or(serde_json::Value::Null))
        .collect()
}

/// The entitlements on target `name`, with their parameters.
fn named_params_of(config: &Config, name: &str) -> Vec<(String, serde_json::Value)> {
    config
        .entitlements
        .iter()
        .filter(|e| e.name.split_once('/').is_some_and(|(t, _)| t == name))
        .map(|e| {
            (
                e.name.clone(),
                serde_json::to_value(&e.params).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect()
}

/// Builds the connector of one target; problems are relative to the target's key.
pub fn build(
    t: &TargetConfig,
    config: &Config,
    clock: &Arc<dyn Clock>,
) -> Result<Built, Vec<String>> {
    let tables = [
        ("exec", t.exec.is_some()),
        ("postgres", t.postgres.is_some()),
        ("mysql", t.mysql.is_some()),
        ("redis", t.redis.is_some()),
        ("aws", t.aws.is_some()),
        ("okta", t.okta.is_some()),
        ("entra", t.entra.is_some()),
        ("google", t.google.is_some()),
        ("github", t.github.is_some()),
        ("ssh", t.ssh.is_some()),
        ("webhook", t.webhook.is_some()),
    ];
    let stray: Vec<String> = tables
        .iter()
        .filter(|(k, set)| *set && *k != t.connector)
        .map(|(k, _)| format!("{k}: a {} target takes no [{k}] table", t.connector))
        .collect();
    if !stray.is_empty() {
        return Err(stray);
    }
    let missing = || {
        vec![format!(
            "{0}: a {0} target needs its [targets.{0}] table",
            t.connector
        )]
    };
    let prefixed = |kind: &str, problems: Vec<String>| {
        problems
            .into_iter()
            .map(|p| format!("{kind}.{p}"))
            .collect::<Vec<_>>()
    };
    let plain = |connector: Arc<dyn Connector>| Built {
        connector,
        ssh: None,
    };
    match t.connector.as_str() {
        "exec" => {
            let exec = t.exec.as_ref().ok_or_else(missing)?;
            let p = exec.problems();
            if p.is_empty() {
                Ok(plain(Arc::new(ExecConnector::new(exec.clone()))))
            } else {
                Err(prefixed("exec", p))
            }
        }
        "postgres" => {
            let pg = t.postgres.as_ref().ok_or_else(missing)?;
            let mut roles: Vec<String> = params_of(config, &t.name)
                .iter()
                .filter_map(|p| p.get("roles")?.as_array().cloned())
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
            roles.sort();
            roles.dedup();
            PostgresConnector::new(pg.clone(), roles)
                .map(|c| plain(Arc::new(c)))
                .map_err(|p| prefixed("postgres", p))
        }
        "mysql" => {
            let my = t.mysql.as_ref().ok_or_else(missing)?;
            MysqlConnector::new(my.clone(), &params_of(config, &t.name))
                .map(|c| plain(Arc::new(c)))
                .map_err(|p| prefixed("mysql", p))
        }
        "redis" => {
            let r = t.redis.as_ref().ok_or_else(missing)?;
            hourglass_connectors::RedisConnector::new(r, &params_of(config, &t.name))
                .map(|c| plain(Arc::new(c)))
                .map_err(|p| prefixed("redis", p))
        }
        "aws" => {
            let a = t.aws.as_ref().ok_or_else(missing)?;
            // A job's connector call must end well inside its lease, or another worker takes
            // the job over while this one still waits for AWS to settle.
            let lease = config.server.job_lease.as_secs();
            if a.settle_secs
                .saturating_add(a.timeout_secs)
                .saturating_mul(2)
                > lease
            {
                return Err(vec![format!(
                    "aws.settle_secs: {} s of settling plus the {} s timeout must stay under half of server.job_lease ({lease} s): lower settle_secs or raise job_lease",
                    a.settle_secs, a.timeout_secs
                )]);
            }
            hourglass_connectors::AwsConnector::new(
                a,
                &params_of(config, &t.name),
                Arc::clone(clock),
            )
            .map(|c| plain(Arc::new(c)))
            .map_err(|p| prefixed("aws", p))
        }
        "okta" => {
            let c = t.okta.as_ref().ok_or_else(missing)?;
            GroupConnector::okta(c, &named_params_of(config, &t.name), Arc::clone(clock))
                .map(|c| plain(Arc::new(c)))
                .map_err(|p| prefixed("okta", p))
        }
        "entra" => {
            let c = t.entra.as_ref().ok_or_else(missing)?;
            GroupConnector::entra(c, &named_params_of(config, &t.name), Arc::clone(clock))
                .map(|c| plain(Arc::new(c)))
                .map_err(|p| prefixed("entra", p))
        }
        "google" => {
            let c = t.google.as_ref().ok_or_else(missing)?;
            GroupConnector::google(c, &named_params_of(config, &t.name), Arc::clone(clock))
                .map(|c| plain(Arc::new(c)))
                .map_err(|p| prefixed("google", p))
        }
        "github" => {
            let c = t.github.as_ref().ok_or_else(missing)?;
            hourglass_connectors::GithubConnector::new(
                c,
                &named_params_of(config, &t.name),
                Arc::clone(clock),
            )
            .map(|c| plain(Arc::new(c)))
            .map_err(|p| prefixed("github", p))
        }
        "ssh" => {
            let ssh = t.ssh.as_ref().ok_or_else(missing)?;
            let c = Arc::new(
                SshConnector::new(ssh, Arc::clone(clock)).map_err(|p| prefixed("ssh", p))?,
            );
            Ok(Built {
                connector: Arc::clone(&c) as Arc<dyn Connector>,
                ssh: Some(c),
            })
        }
        "webhook" => {
            let hook = t.webhook.as_ref().ok_or_else(missing)?;
            WebhookConnector::new(hook, Arc::clone(clock))
                .map(|c| plain(Arc::new(c)))
                .map_err(|p| prefixed("webhook", p))
        }
        "token" => Ok(plain(Arc::new(hourglass_connectors::TokenConnector))),
        other => Err(vec![format!(
            "connector: unknown connector {other:?} (available: {KINDS})"
        )]),
    }
}
