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

/// The sample identities: name, kind, owner, groups.
const IDENTITIES: [(&str, &str, Option<&str>, &[&str]); 5] = [
    ("alice", "human", None, &["requesters"]),
    ("bob", "human", None, &["approvers"]),
    ("admin", "human", None, &["admins", "approvers"]),
    ("ci-deployer", "workload", Some("alice"), &["workloads"]),
    ("support-bot", "agent", Some("alice"), &["agents"]),
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

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

/// Writes configuration, policies and the target script into `dir`, with fresh tokens.
pub fn write_layout(dir: &Path, listen: SocketAddr, demo: bool) -> io::Result<Written> {
    fs::create_dir_all(dir.join("policies"))?;
    fs::create_dir_all(dir.join("targets"))?;
    fs::write(dir.join("policies/demo.cedar"), DEMO_POLICIES)?;
    write_exec(&dir.join("targets/demo-target.sh"), DEMO_TARGET_SCRIPT)?;
    let access_file = dir.join("access.txt");
    let mut tokens = Vec::new();
    let mut identities = String::new();
    for (name, kind, owner, groups) in IDENTITIES {
        let token = new_token().map_err(|e| io::Error::other(e.to_string()))?;
        identities.push_str(&format!(
            "\n[[identities]]\nname = {}\nkind = {}\n{}groups = [{}]\ntoken_sha256 = [{}]\n",
            toml_str(name),
            toml_str(kind),
            owner.map_or_else(String::new, |o| format!("owner = {}\n", toml_str(o))),
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

[store]
url = "sqlite://hourglass.db"

[policy]
dir = "policies"
{identities}
# The demo target: the exec connector runs this script, which keeps access.txt.
[[targets]]
name = "demo"
connector = "exec"
exec = {{ grant = [{script}, "grant"], revoke = [{script}, "revoke"], inspect = [{script}, "inspect"], timeout_secs = 10, env = {{ HOURGLASS_DEMO_ACCESS_FILE = {access} }} }}

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
"#,
        demo_note = if demo {
            " (DEMO: sample identities and tokens; not for production)"
        } else {
            ""
        },
        listen = toml_str(&listen.to_string()),
        script = toml_str(&script),
        access = toml_str(&access_file.display().to_string()),
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
    let mut text = format!("HOURGLASS_SERVER={server}\n");
    for (name, token) in tokens {
        let var: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        text.push_str(&format!("HOURGLASS_TOKEN_{var}={token}\n"));
    }
    let path = dir.join("demo.env");
    fs::write(&path, text)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    Ok(path)
}
