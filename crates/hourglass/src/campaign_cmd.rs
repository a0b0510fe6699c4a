//! Access review commands: start a campaign, follow it, and decide the items waiting for you.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use hourglass_api::{CampaignItemView, CampaignScope, DefaultAction, ItemDecision, StartCampaign};
use hourglass_client::Client;

#[derive(Subcommand, Clone)]
pub enum CampaignCommand {
    /// Start an access review now (administrators of every entitlement).
    Start {
        #[arg(long)]
        name: String,
        /// eligibility | standing | identities
        #[arg(long)]
        scope: String,
        /// manager | owner | administrators | group:<name>
        #[arg(long, default_value = "manager")]
        reviewers: String,
        /// What undecided items become at the deadline: keep | remove.
        #[arg(long = "default", default_value = "keep")]
        default_action: String,
        /// From now to the deadline (14d).
        #[arg(long = "for", default_value = "14d")]
        duration: String,
        /// Remind reviewers this long before the deadline (3d).
        #[arg(long)]
        remind_before: Option<String>,
    },
    /// Every campaign with its progress.
    List,
    /// One campaign and its items (every item for an administrator, yours for a reviewer).
    Show { id: String },
    /// The items waiting for your decision.
    Mine,
    /// Decide one item.
    Decide {
        item: String,
        /// keep | remove | convert (standing privilege to just-in-time)
        decision: String,
        #[arg(long)]
        note: Option<String>,
    },
}

fn shown(s: &str) -> String {
    hourglass_core::text::escaped(s).into_owned()
}

fn opt(s: Option<&String>) -> String {
    s.map_or_else(|| "-".to_owned(), |s| shown(s))
}

fn print_items(items: &[CampaignItemView]) {
    println!(
        "{:<36} {:<10} {:<28} {:<40} {:<20} DECIDED",
        "ITEM", "PRINCIPAL", "ACCESS", "HOLDING", "REVIEWER"
    );
    for i in items {
        let holding = match (&i.target, &i.holder, &i.privilege) {
            (Some(t), Some(h), Some(p)) => format!("{h} holds {p} in {t}"),
            (_, _, Some(p)) => p.clone(),
            _ => "-".into(),
        };
        let decided = match (&i.decision, &i.decided_by) {
            (Some(d), Some(by)) => {
                format!("{} by {}; work {}", d.as_str(), shown(by), i.work.as_str())
            }
            _ => "undecided".into(),
        };
        println!(
            "{:<36} {:<10} {:<28} {:<40} {:<20} {decided}",
            i.id,
            opt(i.principal.as_ref()),
            opt(i.access.as_ref()),
            shown(&holding),
            shown(&i.reviewer),
        );
    }
}

pub async fn campaign(c: &Client, as_json: bool, cmd: CampaignCommand) -> Result<ExitCode> {
    match cmd {
        CampaignCommand::Start {
            name,
            scope,
            reviewers,
            default_action,
            duration,
            remind_before,
        } => {
            let Some(scope) = CampaignScope::parse(&scope) else {
                bail!("--scope must be eligibility, standing or identities");
            };
            let Some(default_action) = DefaultAction::parse(&default_action) else {
                bail!("--default must be keep or remove");
            };
            let v = c
                .start_campaign(&StartCampaign {
                    name,
                    scope,
                    reviewers,
                    default_action,
                    duration,
                    remind_before,
                })
                .await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "started {} ({}): {} items, reviewers {}, deadline {} (then {})",
                    v.id,
                    shown(&v.name),
                    v.progress.map_or(0, |p| p.total),
                    shown(&v.reviewers),
                    v.deadline,
                    v.default_action.as_str()
                );
            }
        }
        CampaignCommand::List => {
            let all = c.campaigns().await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<36} {:<7} {:<12} {:<26} {:<10} NAME",
                "ID", "STATE", "SCOPE", "DEADLINE", "DECIDED"
            );
            for v in &all {
                let p = v.progress.unwrap_or(hourglass_api::CampaignProgress {
                    total: 0,
                    decided: 0,
                    keep: 0,
                    remove: 0,
                    convert: 0,
                    by_default: 0,
                    work_pending: 0,
                    work_failed: 0,
                });
                println!(
                    "{:<36} {:<7} {:<12} {:<26} {:<10} {}",
                    v.id,
                    v.state.as_str(),
                    v.scope.as_str(),
                    v.deadline,
                    format!("{}/{}", p.decided, p.total),
                    shown(&v.name)
                );
            }
        }
        CampaignCommand::Show { id } => {
            let mut page = c.campaign(&id, None).await?;
            let mut items = std::mem::take(&mut page.items);
            while let Some(last) = items.last().map(|i| i.id.clone()) {
                let next = c.campaign(&id, Some(&last)).await?.items;
                if next.is_empty() {
                    break;
                }
                items.extend(next);
            }
            if as_json {
                page.items = items;
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(ExitCode::SUCCESS);
            }
            let v = &page.campaign;
            println!(
                "{} {} ({}, {}): reviewers {}, deadline {}, then {}",
                v.id,
                shown(&v.name),
                v.scope.as_str(),
                v.state.as_str(),
                shown(&v.reviewers),
                v.deadline,
                v.default_action.as_str()
            );
            if let Some(p) = v.progress {
                println!(
                    "decided {}/{}: keep {}, remove {}, convert {} ({} by the deadline); target work pending {}, failed {}",
                    p.decided,
                    p.total,
                    p.keep,
                    p.remove,
                    p.convert,
                    p.by_default,
                    p.work_pending,
                    p.work_failed
                );
            }
            print_items(&items);
        }
        CampaignCommand::Mine => {
            let mine = c.my_campaign_items().await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&mine)?);
                return Ok(ExitCode::SUCCESS);
            }
            if mine.is_empty() {
                println!("nothing waits for your review");
            }
            for d in &mine {
                println!(
                    "{} {}: {} items, deadline {} (then {})",
                    d.campaign.id,
                    shown(&d.campaign.name),
                    d.items.len(),
                    d.campaign.deadline,
                    d.campaign.default_action.as_str()
                );
                print_items(&d.items);
            }
        }
        CampaignCommand::Decide {
            item,
            decision,
            note,
        } => {
            let Some(decision) = ItemDecision::parse(&decision) else {
                bail!("the decision must be keep, remove or convert");
            };
            let v = c.decide_item(&item, decision, note.as_deref()).await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{}: {}{}",
                    v.id,
                    decision.as_str(),
                    match v.work {
                        hourglass_api::ItemWork::Pending => " (queued for its target)",
                        _ => "",
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
