//! The offline policy commands: `policy test` (cases and auto-approval coverage) and
//! `policy explain` (each action's decision and determining policies).

use std::{process::ExitCode, sync::Arc};

use anyhow::{Context, Result};
use hourglass_core::Clock;
use hourglass_server::config::Config;

use crate::cli::load_config;

/// Loads and checks a configuration for the offline policy commands.
fn checked_config(config: &std::path::Path) -> Result<(Config, hourglass_server::Checked)> {
    let cfg = load_config(config)?;
    let clock: Arc<dyn Clock> = Arc::new(hourglass_server::clock::SystemClock);
    let checked = hourglass_server::check(&cfg, &clock).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((cfg, checked))
}

pub(crate) fn test(json: bool, config: &std::path::Path) -> Result<ExitCode> {
    use hourglass_policy::cases;
    let (cfg, checked) = checked_config(config)?;
    let dir = cfg.policy.dir.join("tests");
    let files = cases::read_case_files(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let parsed = cases::parse_cases(&files).map_err(|e| anyhow::anyhow!("{e}"))?;
    let report = cases::run_tests(&checked.policy, &checked.catalog, &parsed);
    if json {
        let results: Vec<_> = report
            .results
            .iter()
            .map(|r| {
                serde_json::json!({"case": r.name, "action": r.action, "resource": r.resource,
                    "passed": r.failure.is_none(), "failure": r.failure})
            })
            .collect();
        let untested: Vec<_> = report
            .untested
            .iter()
            .map(|u| serde_json::json!({"resource": u.resource, "policies": u.policies, "missing": u.missing}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"results": results, "untested_auto_approval_paths": untested})
            )?
        );
    } else {
        for r in &report.results {
            match &r.failure {
                None => println!("ok    {}", r.name),
                Some(f) => println!("FAIL  {}: {f}", r.name),
            }
        }
        for u in &report.untested {
            println!(
                "UNTESTED auto-approval path: {} (reached by {}): no passing {} case",
                u.resource,
                u.policies.join(", "),
                u.missing
            );
        }
        println!(
            "{} passed, {} failed, {} untested auto-approval paths ({} case files in {})",
            report.passed(),
            report.failed(),
            report.untested.len(),
            files.len(),
            dir.display()
        );
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) fn explain(
    json: bool,
    config: &std::path::Path,
    principal: &str,
    entitlement: Option<&str>,
    profile: Option<&str>,
    context: Option<&str>,
) -> Result<ExitCode> {
    use hourglass_core::policy::ContextFacts;
    use hourglass_policy::cases;
    let (_, checked) = checked_config(config)?;
    let catalog = &checked.catalog;
    let who = hourglass_core::id::PrincipalId::new(principal)
        .ok()
        .and_then(|id| catalog.principal(&id))
        .with_context(|| format!("no identity named {principal:?} in the configuration"))?;
    let resource =
        cases::resource(catalog, entitlement, profile).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut input: cases::ContextInput = match context {
        Some(text) => serde_json::from_str(text).context("--context")?,
        None => cases::ContextInput::default(),
    };
    let now = hourglass_server::clock::SystemClock.now();
    let (hour, weekday) = checked.facts.local_time(now);
    input.hour.get_or_insert(hour);
    input.weekday.get_or_insert(weekday);
    input
        .oncall
        .get_or_insert_with(|| checked.facts.on_call(&who.id, now));
    let default = match resource {
        hourglass_core::policy::Resource::Entitlement(e) => e.default_duration,
        hourglass_core::policy::Resource::Profile(p) => p.default_duration,
    };
    let ctx = input
        .resolve(catalog, default)
        .map_err(|e| anyhow::anyhow!("--context: {e}"))?;
    let answers = cases::explain(&checked.policy, catalog, who, resource, &ctx);
    let hash = hourglass_core::policy::PolicyDecider::policy_hash(&checked.policy);
    if json {
        let items: Vec<_> = answers
            .iter()
            .map(|(a, d)| match d {
                Ok(d) => serde_json::json!({"action": a.as_str(), "allowed": d.allowed,
                    "determined_by": d.policy_ids, "errors": d.errors}),
                Err(e) => serde_json::json!({"action": a.as_str(), "error": e}),
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "principal": principal, "resource": resource.name(), "policy_hash": hash,
                "context": ctx, "decisions": items}))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{principal} on {} (policy set {hash}); context: {}",
        resource.name(),
        serde_json::to_string(&ctx)?
    );
    println!("{:<12} {:<8} DETERMINED BY", "ACTION", "DECISION");
    for (a, d) in &answers {
        match d {
            Ok(d) => println!(
                "{:<12} {:<8} {}{}",
                a.as_str(),
                if d.allowed { "allow" } else { "deny" },
                if d.policy_ids.is_empty() {
                    "(no policy permits: default deny)".to_owned()
                } else {
                    d.policy_ids.join(", ")
                },
                if d.errors.is_empty() {
                    String::new()
                } else {
                    format!("  [errors: {}]", d.errors.join("; "))
                }
            ),
            Err(e) => println!("{:<12} error    {e}", a.as_str()),
        }
    }
    if ctx.requester.is_none() {
        println!(
            "{:<12} -        (give \"requester\" in --context to evaluate)",
            "Approve"
        );
    }
    Ok(ExitCode::SUCCESS)
}
