//! The `exec` connector: runs configured commands for grant, revoke, inspect and discover.
//!
//! A command is an argv list, run directly (no shell). It receives the grant as JSON on stdin
//! and as `HOURGLASS_*` environment variables; the server's own environment is not passed on
//! (only `PATH`, `HOME`, `LANG` and `TZ`), so scripts never see Hourglass's secrets. A non-zero
//! exit or a timeout is a failure, which the job system retries. Commands must be idempotent:
//! they may run again for the same grant id after a crash.
//!
//! Output contract (stdout, all optional):
//! - `grant`: a JSON object `{"handle": <any JSON>, "credential": "<secret>"}`; the handle is
//!   kept (never put secrets in it) and passed back to revoke, the credential is handed to the
//!   requester once and never stored.
//! - `inspect`: `present` or `absent` (or JSON `{"present": true|false}`).
//! - `discover`: one JSON object per line, `{"holder": "...", "privilege": "..."}`.

use std::{collections::BTreeMap, path::PathBuf, process::Stdio, time::Duration};

use async_trait::async_trait;
use hourglass_core::connector::{
    Connector, ConnectorError, GrantSpec, Holding, Presence, Provisioned, RevocationProof,
};
use secrecy::SecretString;
use serde::Deserialize;
use tokio::{io::AsyncWriteExt, process::Command};

/// A name as an environment variable suffix: upper-case letters and digits, `_` for the rest
/// (`read-logs` becomes `READ_LOGS`).
pub fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Configuration of an `exec` target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// Command that creates the access.
    pub grant: Vec<String>,
    /// Command that removes it.
    pub revoke: Vec<String>,
    /// Command that moves the end of the access to the grant's new `expires_at` (an approved
    /// extension). Leave it out where the target holds no end of its own.
    #[serde(default)]
    pub extend: Option<Vec<String>>,
    /// Command that tells whether it exists.
    #[serde(default)]
    pub inspect: Option<Vec<String>>,
    /// Command that lists who holds privilege in the target.
    #[serde(default)]
    pub discover: Option<Vec<String>>,
    /// Working directory for the commands.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Seconds before a command is killed (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Extra environment variables for the commands (no secrets: config is not a vault).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_timeout() -> u64 {
    30
}

impl ExecConfig {
    /// Problems with the configuration, for start-up validation.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, cmd) in [
            ("grant", Some(&self.grant)),
            ("revoke", Some(&self.revoke)),
            ("extend", self.extend.as_ref()),
            ("inspect", self.inspect.as_ref()),
            ("discover", self.discover.as_ref()),
        ] {
            if let Some(cmd) = cmd
                && cmd.first().is_none_or(String::is_empty)
            {
                out.push(format!("{name}: the command is empty"));
            }
        }
        if self.timeout_secs == 0 || self.timeout_secs > 3600 {
            out.push("timeout_secs: must be between 1 and 3600".into());
        }
        out
    }
}

/// Runs commands for a target.
#[derive(Debug, Clone)]
pub struct ExecConnector {
    config: ExecConfig,
}

#[derive(Deserialize)]
struct GrantOutput {
    #[serde(default)]
    handle: Option<serde_json::Value>,
    #[serde(default)]
    credential: Option<String>,
}

const PASSED_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

fn tail(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    let start = s.char_indices().rev().nth(max).map_or(0, |(i, _)| i);
    s[start..].to_owned()
}

impl ExecConnector {
    pub fn new(config: ExecConfig) -> Self {
        ExecConnector { config }
    }

    async fn run(
        &self,
        operation: &str,
        argv: &[String],
        spec: Option<&GrantSpec>,
    ) -> Result<Vec<u8>, ConnectorError> {
        let (program, args) = argv.split_first().ok_or_else(|| {
            ConnectorError::new(format!("exec {operation}: no command configured"))
        })?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for key in PASSED_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(&self.config.env);
        cmd.env("HOURGLASS_OPERATION", operation);
        if let Some(dir) = &self.config.workdir {
            cmd.current_dir(dir);
        }
        let stdin_json = match spec {
            Some(s) => {
                cmd.env("HOURGLASS_GRANT_ID", s.grant_id.as_str())
                    .env("HOURGLASS_PRINCIPAL", s.principal.as_str())
                    .env("HOURGLASS_PRINCIPAL_KIND", s.principal_kind.as_str())
                    .env("HOURGLASS_ENTITLEMENT", s.entitlement.as_str())
                    .env("HOURGLASS_TARGET", s.target.as_str())
                    .env("HOURGLASS_STARTS_AT", s.starts_at.to_string())
                    .env("HOURGLASS_EXPIRES_AT", s.expires_at.to_string())
                    .env(
                        "HOURGLASS_EXPIRES_AT_UNIX",
                        (s.expires_at.unix_millis() / 1000).to_string(),
                    );
                if let Some(params) = s.params.as_object() {
                    for (k, v) in params {
                        let key = env_name(k);
                        let val = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                        cmd.env(format!("HOURGLASS_PARAM_{key}"), val);
                    }
                }
                serde_json::to_vec(s).map_err(|e| {
                    ConnectorError::new(format!("exec {operation}: encoding the grant: {e}"))
                })?
            }
            None => b"{}".to_vec(),
        };
        let mut child = cmd.spawn().map_err(|e| {
            ConnectorError::new(format!("exec {operation}: cannot start {program:?}: {e}"))
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read stdin may close it early; that is not an error.
            let _ = stdin.write_all(&stdin_json).await;
        }
        let limit = Duration::from_secs(self.config.timeout_secs);
        let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(r) => r.map_err(|e| ConnectorError::new(format!("exec {operation}: {e}")))?,
            Err(_) => {
                return Err(ConnectorError::new(format!(
                    "exec {operation}: timed out after {}s (killed)",
                    self.config.timeout_secs
                )));
            }
        };
        if !out.status.success() {
            let code = out
                .status
                .code()
                .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
            return Err(ConnectorError::new(format!(
                "exec {operation}: exited with {code}: {}",
                tail(&out.stderr, 400)
            )));
        }
        Ok(out.stdout)
    }
}

/// Reads `{handle, credential}` from a command's stdout (empty: neither).
fn provisioned(operation: &str, stdout: &[u8]) -> Result<Provisioned, ConnectorError> {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    if text.is_empty() {
        return Ok(Provisioned::default());
    }
    let parsed: GrantOutput = serde_json::from_str(text).map_err(|_| {
        // Never echo the output: it may hold a credential.
        ConnectorError::new(format!(
            "exec {operation}: stdout is not a JSON object {{\"handle\", \"credential\"}}"
        ))
    })?;
    Ok(Provisioned {
        handle: parsed.handle,
        credential: parsed.credential.map(SecretString::from),
    })
}

#[async_trait]
impl Connector for ExecConnector {
    async fn grant(&self, spec: &GrantSpec) -> Result<Provisioned, ConnectorError> {
        let stdout = self.run("grant", &self.config.grant, Some(spec)).await?;
        provisioned("grant", &stdout)
    }

    async fn extend(&self, spec: &GrantSpec) -> Result<Option<SecretString>, ConnectorError> {
        let Some(cmd) = &self.config.extend else {
            return Ok(None);
        };
        let stdout = self.run("extend", cmd, Some(spec)).await?;
        provisioned("extend", &stdout).map(|p| p.credential)
    }

    async fn revoke(&self, spec: &GrantSpec) -> Result<(), ConnectorError> {
        self.run("revoke", &self.config.revoke, Some(spec))
            .await
            .map(|_| ())
    }

    async fn inspect(&self, spec: &GrantSpec) -> Result<Presence, ConnectorError> {
        let Some(cmd) = &self.config.inspect else {
            return Err(ConnectorError::new(
                "exec inspect: no inspect command configured",
            ));
        };
        let stdout = self.run("inspect", cmd, Some(spec)).await?;
        let text = String::from_utf8_lossy(&stdout);
        match text.trim() {
            "present" => Ok(Presence::Present),
            "absent" => Ok(Presence::Absent),
            other => match serde_json::from_str::<serde_json::Value>(other)
                .ok()
                .and_then(|v| v.get("present")?.as_bool())
            {
                Some(true) => Ok(Presence::Present),
                Some(false) => Ok(Presence::Absent),
                None => Err(ConnectorError::new(
                    "exec inspect: expected `present` or `absent` on stdout",
                )),
            },
        }
    }

    async fn prove_revoked(&self, spec: &GrantSpec) -> Result<RevocationProof, ConnectorError> {
        if self.config.inspect.is_none() {
            return Ok(RevocationProof::Unprovable {
                why: "the exec target has no inspect command: its revoke command's success is all there is".into(),
            });
        }
        match self.inspect(spec).await? {
            Presence::Absent => Ok(RevocationProof::Verified {
                checked: "the inspect command answers absent".into(),
            }),
            Presence::Present => Err(ConnectorError::new(
                "the inspect command still answers present after the revoke command succeeded",
            )),
        }
    }

    async fn discover(&self) -> Result<Vec<Holding>, ConnectorError> {
        let Some(cmd) = &self.config.discover else {
            return Ok(Vec::new());
        };
        let stdout = self.run("discover", cmd, None).await?;
        let text = String::from_utf8_lossy(&stdout);
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).map_err(|_| {
                    ConnectorError::new("exec discover: each line must be a JSON object")
                })?;
                let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
                let holder = field("holder")
                    .ok_or_else(|| ConnectorError::new("exec discover: missing \"holder\""))?;
                let grant_id = holder.strip_prefix("hg_").map(|rest| format!("grt_{rest}"));
                Ok(Holding {
                    principal: None,
                    entitlement: None,
                    privilege: field("privilege").unwrap_or_default(),
                    holder,
                    grant_id,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
