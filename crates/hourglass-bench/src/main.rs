//! `hourglass-bench`: Hourglass's speed, each figure next to the raw cost it is bounded by,
//! measured in the same run. `cargo run --release -p hourglass-bench -- <scenario> [--quick]`;
//! `docs/BENCHMARKS.md` has the figures and what limits each today.

mod audit;
mod decide;
mod directory;
mod exchange;
mod expiry;
mod harness;
mod mcp;
mod notify;
mod policy;
mod postgres;
mod startup;
mod stats;
mod web;
mod why;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Auto-approved request → active grant over HTTP, 1, 8 and 64 clients.
    Decide,
    /// One decision with 10 … 10,000 policies, sliced vs bare Cedar on the whole set.
    Policy,
    /// Audit appends with and without the hash chain; offline verification rate.
    Audit,
    /// N active grants expiring in the same 10 seconds: revocation lag, idle CPU before.
    ExpiryBurst,
    /// Time to ready and memory with 1,000,000 finished and 100,000 active grants, and 10x fewer.
    Startup,
    /// A workload token exchanged for a signed access token over HTTP, 1 and 8 clients, next
    /// to its raw parts (verification, Cedar, signature, commit).
    Exchange,
    /// The decide cycle with and without a notifier routed every event, side by side.
    Notify,
    /// Decide and an expiry burst on SQLite, PostgreSQL, and PostgreSQL with three replicas,
    /// side by side; and the cost of the audit chain's lock to concurrent writers.
    Postgres,
    /// The web app's inbox with 1,000 pending requests and its catalogue with 1,000
    /// entitlements, p50 and p99, next to the API listing and a 10-entitlement catalogue.
    Web,
    /// An identity provider's first sync through SCIM (10,000 users, 1,000 groups), a PATCH
    /// adding 1,000 members against 1,000 PATCHes of one, and the lookup by name against a
    /// filter that reads every user.
    Directory,
    /// Agents asking for an auto-approved entitlement through the MCP endpoint, side by side
    /// with the same request over the API, 1 and 8 agents.
    Mcp,
    /// "Why was anyone elevated?" over a year of history (1,000,000 audit events), next to a
    /// scan of the audit.
    Why,
    /// Every scenario above.
    All,
}

#[derive(Parser)]
#[command(name = "hourglass-bench", about = "Hourglass benchmarks")]
struct Args {
    scenario: Scenario,
    /// Small sizes that finish in seconds (CI runs these so the harness cannot rot).
    #[arg(long)]
    quick: bool,
    /// Scale the scenario's main size (requests per client, decisions, events).
    #[arg(long)]
    size: Option<usize>,
}

fn main() -> ExitCode {
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
    // The startup scenario's server process: this binary again.
    let argv: Vec<String> = std::env::args().collect();
    let result = if argv.get(1).is_some_and(|a| a == "serve-child") {
        let config = std::path::PathBuf::from(argv.get(3).cloned().unwrap_or_default());
        runtime.block_on(startup::serve_child(&config))
    } else {
        runtime.block_on(run(&Args::parse()))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let pick =
        |quick: usize, full: usize| args.size.unwrap_or(if args.quick { quick } else { full });
    let want = |s: Scenario| args.scenario == s || args.scenario == Scenario::All;
    println!(
        "# hourglass-bench on {} cores{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if args.quick {
            " (quick sizes; figures not meaningful)"
        } else {
            ""
        }
    );
    if want(Scenario::Policy) {
        let sizes: &[usize] = if args.quick {
            &[10, 100, 1_000]
        } else {
            &[10, 100, 1_000, 10_000]
        };
        policy::run(sizes, pick(200, 2_000))?;
    }
    if want(Scenario::Audit) {
        audit::run(pick(2_000, 100_000), pick(20_000, 1_000_000)).await?;
    }
    if want(Scenario::ExpiryBurst) {
        let idle = std::time::Duration::from_secs(if args.quick { 2 } else { 10 });
        expiry::run(pick(2_000, 100_000), idle).await?;
    }
    if want(Scenario::Startup) {
        let (f, a) = if args.quick {
            (20_000, 2_000)
        } else {
            (1_000_000, 100_000)
        };
        startup::run(f, a).await?;
    }
    if want(Scenario::Exchange) {
        exchange::run(&[1, 8], pick(50, 1_000)).await?;
    }
    if want(Scenario::Decide) {
        decide::run(&[1, 8, 64], pick(3, 40)).await?;
    }
    if want(Scenario::Notify) {
        notify::run(8, pick(3, 60)).await?;
    }
    if want(Scenario::Web) {
        web::run(pick(50, 1_000), pick(8, 40)).await?;
    }
    if want(Scenario::Mcp) {
        mcp::run(&[1, 8], pick(3, 200)).await?;
    }
    if want(Scenario::Why) {
        why::run(pick(20_000, 1_000_000), pick(20, 200)).await?;
    }
    if want(Scenario::Directory) {
        directory::run(pick(200, 10_000), pick(100, 1_000)).await?;
    }
    if want(Scenario::Postgres) {
        postgres::run(16, pick(3, 40), pick(300, 5_000)).await?;
    }
    Ok(())
}
