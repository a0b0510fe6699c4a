//! Command-line parsing and the commands.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use hourglass_api::{CreateRequest, GrantView, RequestView};
use hourglass_client::Client;
use hourglass_core::Clock;
use hourglass_server::config::Config;

#[derive(Parser)]
#[command(
    name = "hourglass",
    version,
    about = "Just-in-time privileged access broker"
)]
struct Cli {
    /// Server URL.
    #[arg(
        long,
        global = true,
        env = "HOURGLASS_SERVER",
        default_value = "http://127.0.0.1:8420"
    )]
    server: String,
    /// API token.
    #[arg(long, global = true, env = "HOURGLASS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Output format of listings.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Start a demo on SQLite with sample identities, policies and a local target.
        #[arg(long)]
        demo: bool,
        /// The demo's data directory (default: a new temporary one).
        #[arg(long, requires = "demo")]
        data_dir: Option<PathBuf>,
        /// The store was just restored from a backup: before anything runs, end what was in
        /// progress at the backup, end what the targets no longer hold (or cannot show), keep
        /// ends the targets moved later, and remove what the ledger never knew.
        #[arg(long, conflicts_with = "demo")]
        after_restore: bool,
    },
    /// Write a starter configuration, policies and an exec target into DIR.
    Init { dir: Option<PathBuf> },
    /// Ask for an entitlement.
    Request {
        entitlement: String,
        #[arg(long = "for")]
        duration: Option<String>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        ticket: Option<String>,
        /// The task the access is for (an id of your choosing; an agent names its ticket or
        /// its task).
        #[arg(long)]
        task: Option<String>,
        /// A public key file (`~/.ssh/id_ed25519.pub`) for entitlements that certify a key.
        #[arg(long)]
        public_key_file: Option<PathBuf>,
        /// Wait until the grant is active (or the request is refused), and print any credential.
        #[arg(long)]
        wait: bool,
        /// Start later: an RFC 3339 time (2026-11-24T09:00:00Z) at most 30 days ahead.
        #[arg(long = "at")]
        starts_at: Option<String>,
        /// Emergency access: granted at once where policy permits break-glass, capped in
        /// duration, alerted, and reviewed afterwards by someone else.
        #[arg(long)]
        break_glass: bool,
    },
    /// List requests you can see.
    Requests {
        #[arg(long)]
        pending: bool,
    },
    /// Approve someone's request.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny someone's request.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Cancel your request.
    Cancel { id: String },
    /// List grants you can see.
    Grants {
        #[arg(long)]
        active: bool,
    },
    /// End a grant now.
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Ask for more time on your active grant: the same policy and approval path as a request,
    /// never past the entitlement's maximum total.
    Extend {
        grant: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: String,
    },
    /// Break-glass reviews you may see (open ones unless --all).
    Reviews {
        #[arg(long)]
        all: bool,
    },
    /// Access reviews: start one, follow it, decide what waits for you.
    Campaign {
        #[command(subcommand)]
        command: crate::campaign_cmd::CampaignCommand,
    },
    /// A break-glass review.
    Review {
        #[command(subcommand)]
        command: ReviewCommand,
    },
    /// Compare every target with the ledger now: remove leftovers, report drift.
    Reconcile,
    /// The identity inventory: kind, owner, status, keys and their age, live grants.
    Identities,
    /// Create, suspend, resume or offboard an identity.
    Identity {
        #[command(subcommand)]
        command: crate::identity_cmd::IdentityCommand,
    },
    /// An MCP server over stdio, for an agent host on this machine: the agent asks, watches
    /// and releases its access with tools, as itself (HOURGLASS_TOKEN: the agent's API key).
    Mcp,
    /// API keys: create (shown once), rotate, revoke.
    Key {
        #[command(subcommand)]
        command: crate::identity_cmd::KeyCommand,
    },
    /// RFC 8693 token exchange, as a workload does it: an identity token for an entitlement.
    /// Needs no Hourglass API key.
    Exchange {
        /// The workload's identity token (a JWT from a trusted issuer).
        #[arg(long, env = "HOURGLASS_SUBJECT_TOKEN", hide_env_values = true)]
        subject_token: String,
        /// An agent acting for the subject: the agent's own identity token.
        #[arg(long)]
        actor_token: Option<String>,
        /// The entitlement.
        #[arg(long)]
        resource: String,
        #[arg(long = "for")]
        duration: Option<String>,
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Development helpers.
    Dev {
        #[command(subcommand)]
        command: crate::identity_cmd::DevCommand,
    },
    /// Reports.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Why was anyone elevated: every elevated state in scope with its story from the audit
    /// chain (request, policy, approvals, provisioning, extensions, revocation and its proof).
    Why {
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        entitlement: Option<String>,
        /// A moment (RFC 3339)…
        #[arg(long, conflicts_with_all = ["from", "to"])]
        at: Option<String>,
        /// …or a range.
        #[arg(long, requires = "to")]
        from: Option<String>,
        #[arg(long, requires = "from")]
        to: Option<String>,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Bring the store's schema up to this version (for deploy pipelines; replicas also migrate
    /// at start unless `[store] migrate = false`).
    Migrate {
        #[arg(long, default_value = "hourglass.toml")]
        config: PathBuf,
    },
    /// Store operations.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Print shell completions (`hourglass completions bash > /etc/bash_completion.d/hourglass`).
    Completions { shell: clap_complete::Shell },
    /// Write man pages for hourglass and each of its commands into DIR (hourglass.1,
    /// hourglass-request.1, …).
    Man { dir: PathBuf },
}

#[derive(Subcommand)]
enum ReviewCommand {
    /// Close a break-glass review (someone other than the user of the glass), with a comment.
    Close {
        id: String,
        #[arg(long)]
        comment: String,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Privilege held in each target outside any grant: the list to convert to JIT.
    Standing,
    /// Revocation debt per target: overdue revocations and leftovers not removed.
    RevocationDebt,
    /// Evidence: every elevated window of a period, as JSON or CSV, or the printable HTML
    /// report, written to FILE with its signed manifest beside it (FILE.manifest.jwt).
    Elevations {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        entitlement: Option<String>,
        /// json, csv, or html (the printable report with charts).
        #[arg(long, default_value = "json")]
        format: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Machine identity hygiene: no or departed owner, keys due for rotation, idle identities.
    Identities {
        /// Flag identities that have not authenticated for this many days.
        #[arg(long)]
        unused_days: Option<u64>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain offline (reads the store); names the first broken event.
    Verify {
        #[arg(long, default_value = "hourglass.toml")]
        config: PathBuf,
        /// Archives made by `audit archive`, oldest first: checked with the live chain.
        #[arg(long = "archive")]
        archives: Vec<PathBuf>,
        /// A saved copy of `/.well-known/jwks.json`, for archives and exports signed by keys
        /// retired since (the key directory's own keys are always trusted).
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// An evidence export (`report elevations --out FILE`) to check against the chain: its
        /// manifest's signature, its SHA-256, and that the chain holds its head.
        #[arg(long)]
        export: Option<PathBuf>,
        /// The export's manifest (default: FILE.manifest.jwt beside it).
        #[arg(long, requires = "export")]
        manifest: Option<PathBuf>,
    },
    /// Move events older than --before to a signed archive file (JSON lines) and out of the
    /// store; the live chain continues from a checkpoint, and `audit verify --archive` checks
    /// both together. The head event always stays.
    Archive {
        #[arg(long, default_value = "hourglass.toml")]
        config: PathBuf,
        /// Archive events recorded before this moment (RFC 3339).
        #[arg(long)]
        before: String,
        /// The archive file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write events as JSON lines (offline, from the store).
    Export {
        #[arg(long, default_value = "hourglass.toml")]
        config: PathBuf,
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy every row from one store into a new, empty one (SQLite to PostgreSQL, or back),
    /// then verify the copied audit chain against the source's. Stop the server first.
    Copy {
        /// The source, `sqlite://PATH` or `postgres://…`.
        #[arg(long)]
        from: String,
        /// The destination (migrated first; must be empty).
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check the configuration and the policies against the schema.
    Validate {
        #[arg(long, default_value = "hourglass.toml")]
        config: PathBuf,
    },
    /// Run the policy test cases (POLICY_DIR/tests/*.toml) and check that every auto-approval
    /// path has a passing positive and negative case. Exits non-zero on any failure.
    Test {
        #[arg(long, default_value = "hourglass.toml")]
        config: PathBuf,
    },
    /// Ask the running server to reload its policy files (as SIGHUP does): validated first,
    /// the old set kept on any error, waiting requests judged again.
    Reload,
    /// Show, for each action, the decision and the policies that determined it.
    Explain {
        #[arg(long, default_value = "hourglass.toml")]
        config: PathBuf,
        #[arg(long)]
        principal: String,
        #[arg(long, conflicts_with = "profile", required_unless_present = "profile")]
        entitlement: Option<String>,
        #[arg(long)]
        profile: Option<String>,
        /// Context as JSON: {"duration":"30m","mfa":true,"oncall":true,"hour":9,
        /// "weekday":"Monday","ticket":{"ref":"HD-1","status":"open"},"requester":"alice"}.
        /// Hour, weekday and on-call default to now, in the configured time zone.
        #[arg(long)]
        context: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn client(cli: &Cli) -> Result<Client> {
    if cli.token.is_none() {
        bail!("no token: pass --token or set HOURGLASS_TOKEN");
    }
    Ok(Client::new(&cli.server, cli.token.clone())?)
}

fn env_pairs() -> Vec<(String, String)> {
    std::env::vars().collect()
}

pub(crate) fn load_config(path: &std::path::Path) -> Result<Config> {
    Config::load(path, env_pairs()).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Serve {
            config,
            listen,
            demo,
            data_dir,
            after_restore,
        } => {
            crate::serve::serve(
                config.clone(),
                *listen,
                *demo,
                data_dir.clone(),
                *after_restore,
            )
            .await
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "hourglass", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
            clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            println!("Wrote man pages into {}.", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { dir } => {
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from("hourglass"));
            if dir.join("hourglass.toml").exists() {
                bail!(
                    "{} already holds a hourglass.toml; not overwriting",
                    dir.display()
                );
            }
            let w = hourglass_server::demo::write_layout(&dir, "127.0.0.1:8420".parse()?, false)?;
            println!("Wrote {}, policies/ and targets/.", w.config.display());
            println!("API tokens (shown once; only their SHA-256 is in the config):");
            for (name, token) in &w.tokens {
                println!("  {name:<12} {token}");
            }
            println!(
                "Start with: hourglass serve --config {}",
                w.config.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Request {
            entitlement,
            duration,
            reason,
            ticket,
            task,
            public_key_file,
            wait,
            break_glass,
            starts_at,
        } => {
            let c = client(&cli)?;
            let public_key = match public_key_file {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?
                        .trim()
                        .to_owned(),
                ),
                None => None,
            };
            let body = CreateRequest {
                entitlement: entitlement.clone(),
                duration: duration.clone(),
                reason: reason.clone(),
                ticket: ticket.clone(),
                task: task.clone(),
                public_key,
                break_glass: *break_glass,
                starts_at: starts_at.clone(),
            };
            // The change stream opens first, so that nothing between the request and the
            // wait is missed.
            let mut events = if *wait {
                Some(c.events(None).await?)
            } else {
                None
            };
            let mut r = c.create_request(&body).await?;
            print_request(&cli, &r);
            let Some(events) = events.as_mut() else {
                return Ok(ExitCode::SUCCESS);
            };
            loop {
                if let Some(g) = &r.grant {
                    match g.state.as_str() {
                        "active" => {
                            if g.credential_issued {
                                let cred = c.credential(&g.id).await?;
                                println!("credential (shown once): {}", cred.credential);
                            }
                            eprintln!("grant {} active until {}", g.id, g.expires_at);
                            return Ok(ExitCode::SUCCESS);
                        }
                        "revoking" | "revoked" | "failed" => {
                            eprintln!(
                                "grant {} is {}: {}",
                                g.id,
                                g.state,
                                g.end_reason.clone().unwrap_or_default()
                            );
                            return Ok(ExitCode::FAILURE);
                        }
                        _ => {}
                    }
                }
                if matches!(
                    r.state.as_str(),
                    "denied" | "cancelled" | "expired" | "failed"
                ) {
                    eprintln!(
                        "request {} is {}: {}",
                        r.id,
                        r.state,
                        r.state_reason.clone().unwrap_or_default()
                    );
                    return Ok(ExitCode::FAILURE);
                }
                // Wait for a change to this request or its grant (the stream is reopened where
                // it ended when the server closes it).
                loop {
                    match events.next().await? {
                        Some(ch)
                            if ch.subject == r.id
                                || r.grant.as_ref().is_some_and(|g| g.id == ch.subject) =>
                        {
                            break;
                        }
                        Some(_) => {}
                        None => {
                            *events = c.events(events.last_id).await?;
                            break;
                        }
                    }
                }
                r = c.get_request(&r.id).await?;
            }
        }
        Command::Requests { pending } => {
            let items = client(&cli)?
                .list_requests(pending.then_some("pending"))
                .await?;
            print_requests(&cli, &items)
        }
        Command::Approve { id, comment } => {
            let r = client(&cli)?.approve(id, comment.clone()).await?;
            print_request(&cli, &r);
            Ok(ExitCode::SUCCESS)
        }
        Command::Deny { id, reason } => {
            let r = client(&cli)?.deny(id, reason).await?;
            print_request(&cli, &r);
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { id } => {
            let r = client(&cli)?.cancel(id).await?;
            print_request(&cli, &r);
            Ok(ExitCode::SUCCESS)
        }
        Command::Grants { active } => {
            let items = client(&cli)?
                .list_grants(active.then_some("active"))
                .await?;
            print_grants(&cli, &items)
        }
        Command::Revoke { id, reason } => {
            let g = client(&cli)?.revoke(id, reason.clone()).await?;
            print_grants(&cli, &[g])
        }
        Command::Extend { grant, by, reason } => {
            let r = client(&cli)?.extend(grant, by, reason).await?;
            print_request(&cli, &r);
            Ok(ExitCode::SUCCESS)
        }
        Command::Reviews { all } => {
            let items = client(&cli)?.list_reviews((!all).then_some("open")).await?;
            if cli.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&items)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<36} {:<7} {:<10} {:<24} {:<25} REASON",
                "ID", "STATE", "PRINCIPAL", "ENTITLEMENT", "OPENED"
            );
            for r in &items {
                println!(
                    "{:<36} {:<7} {:<10} {:<24} {:<25} {}{}",
                    shown(&r.id),
                    shown(r.state.as_str()),
                    shown(&r.principal),
                    shown(&r.entitlement),
                    shown(&r.opened_at),
                    shown(&r.reason),
                    r.closed_by
                        .as_ref()
                        .map(|b| format!(
                            " (closed by {}: {})",
                            shown(b),
                            shown(r.comment.as_deref().unwrap_or_default())
                        ))
                        .unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Review {
            command: ReviewCommand::Close { id, comment },
        } => {
            let r = client(&cli)?.close_review(id, comment).await?;
            if cli.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{} closed by {}", r.id, r.closed_by.unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Identities => {
            crate::identity_cmd::identities(&client(&cli)?, cli.output == Output::Json).await
        }
        Command::Campaign { command } => {
            crate::campaign_cmd::campaign(
                &client(&cli)?,
                cli.output == Output::Json,
                command.clone(),
            )
            .await
        }
        Command::Identity { command } => {
            crate::identity_cmd::identity(
                &client(&cli)?,
                cli.output == Output::Json,
                command.clone(),
            )
            .await
        }
        Command::Mcp => crate::mcp::serve_stdio(client(&cli)?)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Key { command } => {
            crate::identity_cmd::key(&client(&cli)?, cli.output == Output::Json, command.clone())
                .await
        }
        Command::Dev { command } => match command {
            crate::identity_cmd::DevCommand::TicketEvent { .. } => {
                crate::identity_cmd::ticket_event(&cli.server, command.clone()).await
            }
            _ => crate::identity_cmd::mint_token(command.clone()),
        },
        Command::Exchange {
            subject_token,
            actor_token,
            resource,
            duration,
            ticket,
            reason,
        } => {
            let c = Client::new(&cli.server, None)?;
            crate::identity_cmd::exchange(
                &c,
                cli.output == Output::Json,
                subject_token,
                actor_token.as_deref(),
                resource,
                &[
                    ("duration", duration.as_deref()),
                    ("ticket", ticket.as_deref()),
                    ("reason", reason.as_deref()),
                ],
            )
            .await
        }
        Command::Why {
            principal,
            target,
            entitlement,
            at,
            from,
            to,
        } => {
            let mut q: Vec<(&str, &str)> = Vec::new();
            for (k, v) in [
                ("principal", principal),
                ("target", target),
                ("entitlement", entitlement),
                ("at", at),
                ("from", from),
                ("to", to),
            ] {
                if let Some(v) = v {
                    q.push((k, v.as_str()));
                }
            }
            let w = client(&cli)?.why(&q).await?;
            if cli.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&w)?);
                return Ok(ExitCode::SUCCESS);
            }
            if w.elevated.is_empty() {
                println!("no elevated state in scope");
            }
            for e in &w.elevated {
                let who = if e.acting.is_empty() {
                    shown(&e.principal)
                } else {
                    format!("{} for {}", e.acting.join(" for "), shown(&e.principal))
                };
                println!(
                    "{} {who} {} on {}: active {} until {}{}",
                    e.grant_id,
                    shown(&e.entitlement),
                    shown(&e.target),
                    e.active_from,
                    e.active_until.as_deref().unwrap_or("now"),
                    if e.break_glass { "  BREAK-GLASS" } else { "" }
                );
                println!(
                    "  reason: {}{}",
                    shown(&e.reason),
                    e.ticket
                        .as_deref()
                        .map(|t| format!(" (ticket {})", shown(t)))
                        .unwrap_or_default()
                );
                for l in &e.story {
                    let details: Vec<String> = l
                        .details
                        .iter()
                        .map(|(k, v)| format!("{k}={}", shown(v)))
                        .collect();
                    println!(
                        "  #{:<6} {} {:<28} by {:<12} {}",
                        l.seq,
                        l.at,
                        l.action,
                        shown(&l.actor),
                        details.join(" ")
                    );
                }
            }
            println!(
                "chain head #{} {}: `hourglass audit verify` checks every line above",
                w.head_seq, w.head_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            command:
                ReportCommand::Elevations {
                    from,
                    to,
                    principal,
                    target,
                    entitlement,
                    format,
                    out,
                },
        } => {
            let mut q: Vec<(&str, &str)> = vec![("from", from), ("to", to), ("format", format)];
            for (k, v) in [
                ("principal", principal),
                ("target", target),
                ("entitlement", entitlement),
            ] {
                if let Some(v) = v {
                    q.push((k, v.as_str()));
                }
            }
            let (body, headers) = client(&cli)?.export_elevations(&q).await?;
            std::fs::write(out, &body).with_context(|| format!("writing {}", out.display()))?;
            let header = |k: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let manifest = header("x-hourglass-manifest");
            if !manifest.is_empty() {
                let path = PathBuf::from(format!("{}.manifest.jwt", out.display()));
                std::fs::write(&path, format!("{manifest}\n"))
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("manifest: {}", path.display());
            }
            println!(
                "{}: sha256 {}, read under chain head #{} {}",
                out.display(),
                header("x-hourglass-export-sha256"),
                header("x-hourglass-head-seq"),
                header("x-hourglass-head-hash")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            command: ReportCommand::RevocationDebt,
        } => {
            let debt = client(&cli)?.revocation_debt().await?;
            let owed = debt
                .iter()
                .any(|t| !t.overdue.is_empty() || t.leftovers > 0);
            // Debt is a finding, in either format: a script can alert on the exit code.
            let code = if owed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
            if cli.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&debt)?);
                return Ok(code);
            }
            println!("{:<16} {:>8} {:>10}", "TARGET", "OVERDUE", "LEFTOVERS");
            for t in &debt {
                println!(
                    "{:<16} {:>8} {:>10}",
                    shown(&t.target),
                    t.overdue.len(),
                    t.leftovers
                );
                for o in &t.overdue {
                    println!(
                        "  {} {} {} due {} ({}s overdue)",
                        o.grant_id,
                        shown(&o.principal),
                        shown(&o.entitlement),
                        o.due_at,
                        o.overdue_secs
                    );
                }
            }
            Ok(code)
        }
        Command::Report {
            command: ReportCommand::Identities { unused_days },
        } => {
            crate::identity_cmd::report(&client(&cli)?, cli.output == Output::Json, *unused_days)
                .await
        }
        Command::Reconcile => {
            let r = client(&cli)?.reconcile().await?;
            if cli.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("checked: {}", r.targets_checked.join(", "));
                for d in &r.drift {
                    println!(
                        "drift {:<8} {:<12} {} grant {} (ledger: {}){}",
                        d.kind,
                        d.target,
                        d.name,
                        d.grant_id,
                        d.ledger_state.as_deref().unwrap_or("unknown"),
                        match (&d.error, d.removed) {
                            (Some(e), _) => format!(" not removed: {e}"),
                            (None, true) => " removed".to_owned(),
                            (None, false) => String::new(),
                        }
                    );
                }
                for (t, e) in &r.errors {
                    println!("error {t}: {e}");
                }
                if r.drift.is_empty() && r.errors.is_empty() {
                    println!("no drift");
                }
            }
            Ok(if r.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Report {
            command: ReportCommand::Standing,
        } => {
            let targets = client(&cli)?.standing().await?;
            if cli.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&targets)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<16} {:<40} PRIVILEGE", "TARGET", "HOLDER");
            for t in &targets {
                for s in &t.standing {
                    println!("{:<16} {:<40} {}", s.target, s.holder, s.privilege);
                }
                if let Some(e) = &t.error {
                    println!("{:<16} (not reachable: {e})", t.target);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { config } => {
            let cfg = load_config(config)?;
            hourglass_store::migrate(&cfg.store.url)
                .await
                .map_err(|e| anyhow::anyhow!("migrating the store: {e:?}"))?;
            println!(
                "store {} is current",
                hourglass_store::redact(&cfg.store.url)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Store {
            command: StoreCommand::Copy { from, to },
        } => store_copy(&cli, from, to).await,
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config,
                    archives,
                    jwks,
                    export,
                    manifest,
                },
        } => {
            crate::audit_cmd::verify(
                config,
                archives,
                jwks.as_deref(),
                export.as_deref().map(|file| crate::audit_cmd::ExportCheck {
                    file,
                    manifest: manifest.as_deref(),
                }),
            )
            .await
        }
        Command::Audit {
            command:
                AuditCommand::Archive {
                    config,
                    before,
                    out,
                },
        } => crate::audit_cmd::archive(config, before, out).await,
        Command::Audit {
            command: AuditCommand::Export { config, since },
        } => audit_export(config, *since).await,
        Command::Policy {
            command: PolicyCommand::Test { config },
        } => crate::policy_cmd::test(cli.output == Output::Json, config),
        Command::Policy {
            command: PolicyCommand::Reload,
        } => {
            let r = client(&cli)?.reload_policies().await?;
            if cli.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "policy set {} (was {}{})",
                    r.new_hash,
                    r.old_hash,
                    if r.changed { "" } else { "; unchanged" }
                );
                for id in &r.cancelled_requests {
                    println!("cancelled {id}: no longer permitted");
                }
                for id in &r.revoked_grants {
                    println!("revoking {id}: no longer permitted");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command:
                PolicyCommand::Explain {
                    config,
                    principal,
                    entitlement,
                    profile,
                    context,
                },
        } => crate::policy_cmd::explain(
            cli.output == Output::Json,
            config,
            principal,
            entitlement.as_deref(),
            profile.as_deref(),
            context.as_deref(),
        ),
        Command::Policy {
            command: PolicyCommand::Validate { config },
        } => {
            let cfg = load_config(config)?;
            let clock: Arc<dyn Clock> = Arc::new(hourglass_server::clock::SystemClock);
            match hourglass_server::check(&cfg, &clock) {
                Ok(c) => {
                    println!(
                        "ok: {} policies (set {}), {} entitlements",
                        c.policy.len(),
                        hourglass_core::policy::PolicyDecider::policy_hash(&c.policy),
                        c.catalog.entitlements().count()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

async fn open_offline(
    config: &std::path::Path,
) -> Result<std::sync::Arc<dyn hourglass_core::store::Store>> {
    let cfg = load_config(config)?;
    hourglass_store::open_read_only(&cfg.store.url)
        .await
        .map_err(|e| anyhow::anyhow!("opening the store: {e:?}"))
}

async fn store_copy(cli: &Cli, from: &str, to: &str) -> Result<ExitCode> {
    let report = hourglass_store::copy(from, to).await.map_err(|e| {
        anyhow::anyhow!(
            "copying {} to {}: {e:?}",
            hourglass_store::redact(from),
            hourglass_store::redact(to)
        )
    })?;
    if cli.output == Output::Json {
        let tables: serde_json::Map<String, serde_json::Value> = report
            .tables
            .iter()
            .map(|(t, n)| (t.clone(), serde_json::json!(n)))
            .collect();
        println!(
            "{}",
            serde_json::json!({"tables": tables, "audit_events": report.audit_events, "head_hash": report.head_hash})
        );
    } else {
        for (t, n) in &report.tables {
            println!("{t:<16} {n} rows");
        }
        println!(
            "audit chain verified at the destination: {} events, head {}",
            report.audit_events, report.head_hash
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Calls `each` for every audit event after `since` in the store of `config`, in order; stops
/// early when `each` returns false.
async fn for_each_event(
    config: &std::path::Path,
    since: u64,
    each: impl FnMut(hourglass_core::audit::AuditEvent) -> Result<bool>,
) -> Result<()> {
    let store = open_offline(config).await?;
    hourglass_core::store::walk_audit(store.as_ref(), since, each).await
}

async fn audit_export(config: &std::path::Path, since: u64) -> Result<ExitCode> {
    for_each_event(config, since, |e| {
        let view = hourglass_server::audit_event_view(e);
        println!("{}", serde_json::to_string(&view)?);
        Ok(true)
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Who asked: `alice`, or `support-bot for alice` when an agent asked for alice.
fn who(r: &RequestView) -> String {
    if r.acting.is_empty() {
        r.requester.clone()
    } else {
        format!("{} for {}", r.acting.join(" for "), r.requester)
    }
}

fn print_request(cli: &Cli, r: &RequestView) {
    if cli.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    println!(
        "{}  {}  {}  for {}  by {}{}",
        shown(&r.id),
        shown(r.state.as_str()),
        shown(&r.entitlement),
        shown(&r.duration),
        shown(&who(r)),
        if r.break_glass {
            "  BREAK-GLASS (alerted; a review is open)"
        } else {
            ""
        }
    );
    for a in r.approvals.iter().flatten() {
        println!(
            "  {} by {} ({}) policies [{}] set {}",
            a.verdict,
            shown(&a.approver),
            a.via,
            a.policy_ids.join(", "),
            a.policy_hash
        );
    }
    let grants = r
        .grants
        .clone()
        .unwrap_or_else(|| r.grant.iter().cloned().collect());
    for g in &grants {
        println!(
            "  grant {} {} {} until {}",
            g.id, g.entitlement, g.state, g.expires_at
        );
    }
    if let Some(reason) = &r.state_reason {
        println!("  reason: {}", shown(reason));
    }
}

fn print_requests(cli: &Cli, items: &[RequestView]) -> Result<ExitCode> {
    if cli.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36} {:<10} {:<10} {:<24} {:<8} {:<25} {:<36} REASON",
        "ID", "STATE", "REQUESTER", "ENTITLEMENT", "FOR", "STARTS", "EXTENDS"
    );
    for r in items {
        println!(
            "{:<36} {:<10} {:<10} {:<24} {:<8} {:<25} {:<36} {}",
            shown(&r.id),
            shown(r.state.as_str()),
            shown(&who(r)),
            shown(&r.entitlement),
            shown(&r.duration),
            r.starts_at.as_deref().map_or("when approved".into(), shown),
            r.extends.as_deref().map_or("-".into(), shown),
            shown(&r.reason)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Text from the server as a terminal may show it: control characters and reordering marks
/// escaped (`\u{1b}`), so that stored text cannot rewrite what an approver sees.
fn shown(s: &str) -> String {
    hourglass_core::text::escaped(s).into_owned()
}

fn print_grants(cli: &Cli, items: &[GrantView]) -> Result<ExitCode> {
    if cli.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36} {:<12} {:<10} {:<24} EXPIRES",
        "ID", "STATE", "PRINCIPAL", "ENTITLEMENT"
    );
    for g in items {
        println!(
            "{:<36} {:<12} {:<10} {:<24} {}",
            shown(&g.id),
            shown(g.state.as_str()),
            shown(&g.principal),
            shown(&g.entitlement),
            shown(&g.expires_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}
