//! Identity, key, report and development commands: the inventory, the identity lifecycle, API
//! keys, the hygiene report, RFC 8693 exchange from the command line, and minting demo tokens.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Result, bail};
use clap::Subcommand;
use hourglass_api::{CreateIdentity, IdentityView, IssuedKeyView, KeyView, OffboardView};
use hourglass_client::Client;
use hourglass_core::Clock;

#[derive(Subcommand, Clone)]
pub enum IdentityCommand {
    /// A new identity. Workloads and agents need an owner (a person or a group).
    Create {
        name: String,
        #[arg(long, default_value = "workload")]
        kind: String,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// It can no longer authenticate (its grants run to their end).
    Suspend {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a suspension.
    Resume { name: String },
    /// For good: every grant and key revoked and open requests cancelled, at once.
    Offboard {
        name: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand, Clone)]
pub enum KeyCommand {
    /// Issue an API key (shown once) with an expiry (default and maximum: [keys] max_lifetime).
    Create {
        #[arg(long)]
        identity: String,
        #[arg(long)]
        expires: Option<String>,
    },
    /// Replace a key; the old one works for [keys] rotation_overlap more.
    Rotate {
        id: String,
        #[arg(long)]
        expires: Option<String>,
    },
    /// Revoke a key now.
    Revoke { id: String },
}

#[derive(Subcommand, Clone)]
pub enum DevCommand {
    /// Mint an identity token from the demo issuer (refused unless its key file is present).
    MintToken {
        #[arg(long, env = "HOURGLASS_CONFIG", default_value = "hourglass.toml")]
        config: PathBuf,
        /// The issuer's name (default: the one with a dev_signing_key).
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        sub: String,
        /// Extra claims, `key=value` (e.g. repository=acme/app).
        #[arg(long = "claim")]
        claims: Vec<String>,
        /// Lifetime (default 5m).
        #[arg(long, default_value = "5m")]
        ttl: String,
        /// The person's consent to delegation: `may_act` naming the agent's token subject
        /// (e.g. support-bot), so that the agent may exchange this token with its own.
        #[arg(long)]
        may_act: Option<String>,
        /// The audience (default: the issuer's first exchange audience; `--api` for its first
        /// API audience).
        #[arg(long, conflicts_with = "api")]
        aud: Option<String>,
        /// A token to sign in with as an API bearer (the issuer's first `api_audience`).
        #[arg(long)]
        api: bool,
    },
    /// Send a ticket event as a ticket system would, signed with the webhook secret of the
    /// `webhook` ticket source that owns the reference (to try ticket binding, or to check a
    /// source's configuration).
    TicketEvent {
        #[arg(long, env = "HOURGLASS_CONFIG", default_value = "hourglass.toml")]
        config: PathBuf,
        /// The ticket reference (`DESK-1`).
        #[arg(long = "ref")]
        reference: String,
        /// Its status: `open`, `in progress`, `closed`, `resolved`…
        #[arg(long)]
        status: String,
        /// Who it is assigned to (a principal name).
        #[arg(long)]
        assignee: Option<String>,
    },
}

fn json(v: &impl serde::Serialize) -> Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

fn print_key(k: &KeyView) {
    println!(
        "  key {:<36} {:<18} {:<8} age {:>3}d  expires {}  last used {}",
        k.id,
        k.prefix.as_deref().unwrap_or("(config token)"),
        k.state,
        k.age_days,
        k.expires_at.as_deref().unwrap_or("never"),
        k.last_used_at.as_deref().unwrap_or("never"),
    );
}

fn print_identity(i: &IdentityView) {
    println!(
        "{:<16} {:<8} {:<10} owner {:<12} groups {:<24} created {}  last seen {}{}",
        i.name,
        i.kind,
        i.status,
        i.owner.as_deref().unwrap_or("-"),
        i.groups.join(","),
        i.created_at,
        i.last_seen_at.as_deref().unwrap_or("never"),
        i.owner_status
            .as_ref()
            .map(|s| format!("  ! owner is {s}"))
            .unwrap_or_default()
    );
    for k in &i.keys {
        print_key(k);
    }
    if !i.grants.is_empty() {
        println!("  grants {}", i.grants.join(", "));
    }
}

pub async fn identities(c: &Client, as_json: bool) -> Result<ExitCode> {
    let items = c.identities().await?;
    if as_json {
        return json(&items);
    }
    for i in &items {
        print_identity(i);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn identity(c: &Client, as_json: bool, cmd: IdentityCommand) -> Result<ExitCode> {
    match cmd {
        IdentityCommand::Create {
            name,
            kind,
            owner,
            groups,
        } => {
            let i = c
                .create_identity(&CreateIdentity {
                    name,
                    kind,
                    owner,
                    groups,
                })
                .await?;
            if as_json {
                return json(&i);
            }
            print_identity(&i);
        }
        IdentityCommand::Suspend { name, reason } => {
            let i: IdentityView = c.identity_status(&name, "suspend", reason).await?;
            if as_json {
                return json(&i);
            }
            print_identity(&i);
        }
        IdentityCommand::Resume { name } => {
            let i: IdentityView = c.identity_status(&name, "resume", None).await?;
            if as_json {
                return json(&i);
            }
            print_identity(&i);
        }
        IdentityCommand::Offboard { name, reason } => {
            let o: OffboardView = c.identity_status(&name, "offboard", Some(reason)).await?;
            if as_json {
                return json(&o);
            }
            if o.changed {
                println!(
                    "{} offboarded: {} grants revoked, {} keys revoked, {} requests cancelled",
                    o.identity.name,
                    o.grants_revoked.len(),
                    o.keys_revoked.len(),
                    o.requests_cancelled.len()
                );
            } else {
                println!(
                    "{} was already offboarded; nothing changed",
                    o.identity.name
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_issued(k: &IssuedKeyView) {
    println!("{}", k.secret);
    eprintln!(
        "key {} for {} ({}), expires {}. The key is shown once: store it now.",
        k.key.id,
        k.key.identity,
        k.key.prefix.as_deref().unwrap_or(""),
        k.key.expires_at.as_deref().unwrap_or("never")
    );
    if let Some(p) = &k.previous {
        eprintln!(
            "the previous key {} keeps working until {}",
            p.id,
            p.expires_at.as_deref().unwrap_or("?")
        );
    }
}

pub async fn key(c: &Client, as_json: bool, cmd: KeyCommand) -> Result<ExitCode> {
    match cmd {
        KeyCommand::Create { identity, expires } => {
            let k = c.create_key(&identity, expires).await?;
            if as_json {
                return json(&k);
            }
            print_issued(&k);
        }
        KeyCommand::Rotate { id, expires } => {
            let k = c.rotate_key(&id, expires).await?;
            if as_json {
                return json(&k);
            }
            print_issued(&k);
        }
        KeyCommand::Revoke { id } => {
            let k = c.revoke_key(&id).await?;
            if as_json {
                return json(&k);
            }
            println!("{} {}", k.id, k.state);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn report(c: &Client, as_json: bool, unused_days: Option<u64>) -> Result<ExitCode> {
    let r = c.identity_report(unused_days).await?;
    if as_json {
        return json(&r);
    }
    for f in &r.findings {
        println!("{:<16} {:<20} {}", f.identity, f.finding, f.detail);
    }
    if r.findings.is_empty() {
        println!("no findings");
    }
    for n in &r.notes {
        println!("note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn mint_token(cmd: DevCommand) -> Result<ExitCode> {
    let DevCommand::MintToken {
        config,
        issuer,
        sub,
        claims,
        ttl,
        may_act,
        aud,
        api,
    } = cmd
    else {
        bail!("not a mint-token command");
    };
    let cfg = crate::cli::load_config(&config)?;
    let Some(iss) = cfg.issuers.iter().find(|i| match &issuer {
        Some(name) => &i.name == name,
        None => i.dev_signing_key.is_some(),
    }) else {
        bail!(
            "no issuer {} in {}",
            issuer.as_deref().unwrap_or("with a dev_signing_key"),
            config.display()
        );
    };
    let Some(key) = iss.dev_signing_key.as_ref().filter(|k| k.exists()) else {
        bail!(
            "issuer {} has no development key here: mint-token only signs for a demo issuer whose key file is present",
            iss.name
        );
    };
    let ttl: hourglass_core::GrantDuration = ttl
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--ttl: {e}"))?;
    let now = hourglass_server::clock::SystemClock.now().unix_millis() / 1000;
    let audience = match (aud, api) {
        (Some(a), _) => a,
        (None, true) => iss.api_audience.first().cloned().ok_or_else(|| {
            anyhow::anyhow!(
                "issuer {} has no api_audience: its tokens are not API bearers",
                iss.name
            )
        })?,
        (None, false) => iss.audience.first().cloned().unwrap_or_default(),
    };
    let mut body = serde_json::json!({
        "iss": iss.issuer,
        "sub": sub,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + i64::try_from(ttl.as_secs()).unwrap_or(300),
        "jti": hourglass_core::id::random_hex::<16>().map_err(|e| anyhow::anyhow!("{e}"))?,
    });
    for c in claims {
        let Some((k, v)) = c.split_once('=') else {
            bail!("--claim {c:?}: use key=value");
        };
        body[k] = serde_json::Value::String(v.to_owned());
    }
    if let Some(actor) = may_act {
        body["may_act"] = serde_json::json!({ "sub": actor, "iss": iss.issuer });
    }
    let dev = hourglass_tokens::DevIssuer::load(key)?;
    println!("{}", dev.mint(&body));
    Ok(ExitCode::SUCCESS)
}

pub async fn exchange(
    c: &Client,
    as_json: bool,
    subject_token: &str,
    actor_token: Option<&str>,
    resource: &str,
    extra: &[(&str, Option<&str>)],
) -> Result<ExitCode> {
    const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", subject_token),
        ("subject_token_type", JWT),
        ("resource", resource),
    ];
    if let Some(a) = actor_token {
        form.push(("actor_token", a));
        form.push(("actor_token_type", JWT));
    }
    for (k, v) in extra {
        if let Some(v) = v {
            form.push((k, v));
        }
    }
    let t = c.exchange(&form).await?;
    if as_json {
        return json(&t);
    }
    println!("{}", t.access_token);
    eprintln!(
        "{} for {}s, grant {} ({})",
        t.scope, t.expires_in, t.grant_id, t.issued_token_type
    );
    Ok(ExitCode::SUCCESS)
}

/// `hourglass dev ticket-event`: signs an event with the owning webhook source's secret and
/// posts it, as the ticket system would.
pub async fn ticket_event(server: &str, cmd: DevCommand) -> Result<ExitCode> {
    let DevCommand::TicketEvent {
        config,
        reference,
        status,
        assignee,
    } = cmd
    else {
        bail!("not a ticket-event command");
    };
    let cfg = crate::cli::load_config(&config)?;
    let checked = hourglass_server::integrations::build(
        &cfg,
        &(std::sync::Arc::new(hourglass_server::clock::SystemClock)
            as std::sync::Arc<dyn hourglass_core::Clock>),
    )
    .map_err(|p| anyhow::anyhow!("{}", p.join("\n")))?;
    let Some((name, hook)) = checked.hooks.iter().find(|(_, h)| {
        h.kind == hourglass_server::config::TicketKind::Webhook && h.pattern.is_match(&reference)
    }) else {
        bail!(
            "no webhook ticket source in {} owns {reference:?}",
            config.display()
        );
    };
    let mut body = serde_json::json!({"ref": reference, "status": status});
    if let Some(a) = assignee {
        body["assignee"] = serde_json::Value::String(a);
    }
    let bytes = serde_json::to_vec(&body)?;
    let ts = hourglass_server::clock::SystemClock.now().unix_millis() / 1000;
    let sig = {
        use secrecy::ExposeSecret;
        hourglass_connectors::webhook::sign(hook.secret.expose_secret(), ts, &bytes)
    };
    let client = Client::new(server, None)?;
    let out = client
        .ticket_event(
            bytes,
            &[
                (
                    hourglass_connectors::webhook::TIMESTAMP_HEADER,
                    ts.to_string(),
                ),
                (hourglass_connectors::webhook::SIGNATURE_HEADER, sig),
            ],
        )
        .await?;
    println!(
        "{name}: {} is {} ({}); revoked [{}], cancelled [{}]",
        out.reference,
        if out.open { "open" } else { "closed" },
        out.status,
        out.revoked.join(", "),
        out.cancelled.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
