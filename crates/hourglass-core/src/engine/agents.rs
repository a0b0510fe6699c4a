//! What agents do besides asking: every MCP tool call recorded (`agent.tool_called`), and the
//! explanation of what asking for something would do, and why, for the caller itself.
//!
//! The MCP tools themselves live in the server; they call the same use cases as the API, so a
//! tool decides nothing the API would not. These are the two things only tools need.

use std::collections::HashSet;

use super::{
    Caller, Engine, NewRequest, requests::MAX_REASON, retry_on_conflict, submit::valid_task,
};
use crate::{
    Error, GrantDuration, Result,
    audit::AuditRecord,
    catalog::PrincipalKind,
    grant::{Grant, GrantState},
    policy::{Action, Decision, TicketFacts},
    store::Commit,
};

/// The MCP tools, by name: a record names one of them or none.
pub const TOOLS: [&str; 8] = [
    "whoami",
    "list_access",
    "request_access",
    "request_status",
    "my_grants",
    "release_access",
    "get_token",
    "explain",
];

/// How one tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolOutcome {
    /// It did what was asked.
    Ok,
    /// The server refused it (the code says why).
    Refused,
    /// Its arguments did not fit the tool's schema.
    Invalid,
    /// There is no such tool.
    Unknown,
}

impl ToolOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            ToolOutcome::Ok => "ok",
            ToolOutcome::Refused => "refused",
            ToolOutcome::Invalid => "invalid",
            ToolOutcome::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ToolOutcome::Ok,
            ToolOutcome::Refused,
            ToolOutcome::Invalid,
            ToolOutcome::Unknown,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// One tool call, as recorded.
#[derive(Debug, Clone)]
pub struct ToolCall {
    /// The tool's name; an unknown tool is recorded as `unknown` with its name dropped (it is
    /// whatever the agent sent).
    pub tool: String,
    pub outcome: ToolOutcome,
    /// The refusal's code.
    pub code: Option<String>,
    /// The request or grant the call touched.
    pub subject: Option<String>,
    /// `http` (the server's own endpoint) or `stdio` (reported by `hourglass mcp`).
    pub via: &'static str,
}

/// What asking for something would do for the caller now, and why.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The entitlement or profile, by name.
    pub access: String,
    pub duration: GrantDuration,
    pub max_duration: GrantDuration,
    /// The outcome: asking is refused, needs a ticket, needs approval, or is approved at once.
    pub outcome: &'static str,
    /// One sentence for the agent (and a person reading its transcript).
    pub detail: String,
    /// `Request` as asked (with the ticket, if one was given).
    pub eligible: Decision,
    /// `AutoApprove` as asked.
    pub auto_approve: Decision,
    pub approvals_required: u32,
}

/// A valid tool-call code or subject: short, printable, no spaces.
fn token_like(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
}

impl Engine {
    /// The caller at the MCP endpoint for a bearer that stands for `principal` (an API key's
    /// owner, or a token's mapped subject) with `actor` (its `act`, mapped): an active agent on
    /// its own, or an active agent acting for an active person. Anything else is refused
    /// (`Err` with the code and a reason safe to show), whatever the token says.
    pub async fn mcp_caller(
        &self,
        principal: &str,
        actor: Option<&str>,
        source_ip: Option<String>,
    ) -> Result<std::result::Result<Caller, (crate::ErrorCode, &'static str)>> {
        let active = |p: Option<crate::catalog::Principal>| {
            p.filter(|p| p.status == crate::catalog::PrincipalStatus::Active)
        };
        let lookup = |name: &str| {
            let id = crate::id::PrincipalId::new(name.to_owned());
            async move {
                match id {
                    Ok(id) => self.principal(&id).await,
                    Err(_) => Ok(None),
                }
            }
        };
        let Some(subject) = active(lookup(principal).await?) else {
            return Ok(Err((
                crate::ErrorCode::AuthInvalid,
                "the token is not valid",
            )));
        };
        let not_agent = (
            crate::ErrorCode::AuthNotAnAgent,
            "the MCP endpoint serves agents: an agent's API key or token, or a person's token whose act names the agent",
        );
        let (agent, person) = match actor {
            None => (subject, None),
            Some(a) => {
                if subject.kind != PrincipalKind::Human {
                    return Ok(Err(not_agent));
                }
                let Some(agent) = active(lookup(a).await?) else {
                    return Ok(Err((
                        crate::ErrorCode::AuthInvalid,
                        "the token's act names no active identity",
                    )));
                };
                (agent, Some(subject))
            }
        };
        if agent.kind != PrincipalKind::Agent {
            return Ok(Err(not_agent));
        }
        self.store.touch(&agent.id, None, self.clock.now()).await?;
        Ok(Ok(Caller {
            principal: agent,
            mfa: false,
            source_ip,
            on_behalf_of: person,
        }))
    }

    /// Ends, in one commit, every live grant of the task `task` that is the caller's (its own,
    /// or asked by this agent for the person it acts for): when an agent's work is done, all
    /// the access it took for it goes at once. Nothing to release is `task.not_found`.
    pub async fn release_task(
        &self,
        caller: &Caller,
        task: &str,
        reason: Option<String>,
    ) -> Result<Vec<Grant>> {
        let task = task.trim();
        if !valid_task(task) {
            return Err(Error::invalid(
                crate::ErrorCode::RequestTaskInvalid,
                "task",
                "a task id is at most 128 letters, digits and ._:/-",
            ));
        }
        let reason = reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if let Some(r) = &reason {
            crate::text::check(r, MAX_REASON)
                .map_err(|m| Error::invalid(crate::ErrorCode::RevokeReasonInvalid, "reason", m))?;
        }
        let why =
            reason.unwrap_or_else(|| format!("task {task} released by {}", caller.principal.id));
        let why = &why;
        let out = retry_on_conflict(move || async move {
            let now = self.clock.now();
            let mut live = Vec::new();
            for state in [GrantState::Provisioning, GrantState::Active] {
                live.extend(self.list_grants(caller, Some(state), 500).await?);
            }
            let mut requests = HashSet::new();
            let mut commit = Commit::default();
            let mut out = Vec::new();
            for g in live.iter().filter(|g| caller.answers_for(&g.principal)) {
                // A profile's grants share their request and end together.
                if !requests.insert(g.request_id.clone()) {
                    continue;
                }
                let Some(req) = self.store.get_request(&g.request_id).await? else {
                    continue;
                };
                let asked_by_caller = req.requester == caller.principal.id
                    || req.actors.contains(&caller.principal.id);
                if req.task.as_deref() != Some(task) || !asked_by_caller {
                    continue;
                }
                out.push(
                    self.revoke_together_into(
                        g,
                        caller.principal.id.as_str(),
                        why,
                        now,
                        &mut commit,
                    )
                    .await?,
                );
            }
            if out.is_empty() {
                return Err(Error::not_found(
                    crate::ErrorCode::TaskNotFound,
                    format!("no live grant of task {task} is yours to release"),
                ));
            }
            self.commit(commit).await?;
            Ok(out)
        })
        .await?;
        self.wake.jobs_changed();
        Ok(out)
    }

    /// Records, in its own commit, that an access token is being signed for the active grant
    /// `id` on a `token` target (`token.issued`): only for its holder, or the agent that asked
    /// for it. Returns the grant, its request (whose actors the token's `act` names) and the
    /// token's fresh `jti`; the server signs it, valid until the grant ends.
    pub async fn grant_token(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(Grant, crate::request::Request, String)> {
        let grant = self.grant(caller, id).await?;
        if !caller.answers_for(&grant.principal) {
            return Err(Error::forbidden(
                crate::ErrorCode::TokenNotAllowed,
                format!("grant {} is not {}'s", grant.id, caller.principal.id),
            ));
        }
        let request = self
            .store
            .get_request(&grant.request_id)
            .await?
            .ok_or_else(|| Error::internal(format!("grant {} has no request", grant.id)))?;
        if grant.principal != caller.principal.id && !request.actors.contains(&caller.principal.id)
        {
            return Err(Error::forbidden(
                crate::ErrorCode::TokenNotAllowed,
                format!("{} did not ask for grant {}", caller.principal.id, grant.id),
            ));
        }
        let ent = self.entitlement_of(&grant.entitlement)?;
        if self
            .catalog
            .target(&ent.target)
            .is_none_or(|t| t.connector != super::TOKEN_CONNECTOR)
        {
            return Err(Error::conflict(
                crate::ErrorCode::TokenNotATokenTarget,
                format!(
                    "{}'s target issues no tokens: its access is in the target itself",
                    grant.entitlement
                ),
            ));
        }
        if grant.state != GrantState::Active {
            return Err(Error::conflict(
                crate::ErrorCode::GrantNotActive,
                format!("grant {} is {}", grant.id, grant.state.as_str()),
            ));
        }
        let now = self.clock.now();
        let jti = format!("{}.{}", grant.id, crate::id::random_hex::<8>()?);
        let ev = crate::lifecycle::Event::TokenIssued {
            grant: grant.id.clone(),
            actor: caller.principal.id.to_string(),
            jti: jti.clone(),
            expires_at: grant.expires_at,
            audience: ent
                .params
                .get("audience")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            act: request.actors.clone(),
        }
        .record(now);
        self.commit(Commit {
            audit: vec![ev],
            ..Commit::default()
        })
        .await?;
        Ok((grant, request, jti))
    }

    /// Records one MCP tool call by the agent `caller` (`agent.tool_called`), in its own commit.
    /// Nobody else records tool calls; a record with an unknown tool, or a code or subject that
    /// is not an id, is refused and changes nothing.
    pub async fn tool_called(&self, caller: &Caller, call: ToolCall) -> Result<()> {
        if caller.principal.kind != PrincipalKind::Agent {
            return Err(Error::forbidden(
                crate::ErrorCode::AgentOnly,
                format!(
                    "{} is not an agent: only agents record tool calls",
                    caller.principal.id
                ),
            ));
        }
        let invalid = |field: &'static str, m: &str| {
            Error::invalid(crate::ErrorCode::AgentToolCallInvalid, field, m.to_owned())
        };
        let tool = match call.outcome {
            ToolOutcome::Unknown => "unknown",
            _ if TOOLS.contains(&call.tool.as_str()) => call.tool.as_str(),
            _ => return Err(invalid("tool", "not one of the MCP tools")),
        };
        if call.code.as_deref().is_some_and(|c| !token_like(c, 64)) {
            return Err(invalid("code", "not an error code"));
        }
        if call.subject.as_deref().is_some_and(|s| !token_like(s, 64)) {
            return Err(invalid("subject", "not a request or grant id"));
        }
        let now = self.clock.now();
        let mut ev = AuditRecord::new(
            now,
            caller.principal.id.as_str(),
            crate::event::EventKind::AgentToolCalled,
            // The agent itself: what it says it touched is a detail, never another record's
            // subject (an agent must not write into someone's story).
            caller.principal.id.as_str(),
        )
        .with("tool", tool)
        .with("outcome", call.outcome.as_str())
        .with("via", call.via);
        if let Some(c) = &call.code {
            ev = ev.with("code", c);
        }
        if let Some(about) = &call.subject {
            ev = ev.with("about", about);
        }
        if let Some(p) = &caller.on_behalf_of {
            ev = ev.with("for", p.id.as_str());
        }
        self.commit(Commit {
            audit: vec![ev],
            ..Commit::default()
        })
        .await?;
        Ok(())
    }

    /// What asking for `access` (for `duration`, with `ticket`) would do for `caller` now, and
    /// why: the same checks as a request, then policy's `Request` and `AutoApprove`, without
    /// writing anything. A ticket is taken as open and assigned to the caller (its real state
    /// is checked when asking). Input a request would refuse is refused the same way.
    pub async fn explain_ask(
        &self,
        caller: &Caller,
        access: &str,
        duration: Option<String>,
        ticket: Option<String>,
    ) -> Result<Explanation> {
        let now = self.clock.now();
        let checked = self.check_new(
            &NewRequest {
                entitlement: access.to_owned(),
                duration,
                reason: "explain".into(),
                ticket,
                ..NewRequest::default()
            },
            now,
        )?;
        let resource = checked.resource;
        let (subject, actor) = match &caller.on_behalf_of {
            Some(p) => (p, Some(&caller.principal)),
            None => (&caller.principal, None),
        };
        let facts = |reference: &str| TicketFacts {
            reference: reference.to_owned(),
            status: Some("open".into()),
            assignee: Some(subject.id.to_string()),
            priority: None,
            source: None,
            verified: true,
        };
        let ctx = self.context(
            Some(caller),
            &subject.id,
            checked.duration,
            checked.ticket.as_deref().map(facts).as_ref(),
            now,
        );
        let reviewed = self.reviewed_with(&subject.id, actor).await?;
        let decide = |action: Action, ctx: &crate::policy::DecisionContext| {
            self.decide_for(action, subject, actor, resource, ctx, &reviewed)
        };
        let eligible = decide(Action::Request, &ctx)?;
        let auto_approve = decide(Action::AutoApprove, &ctx)?;
        let who = match actor {
            Some(a) => format!("{a} for {subject}", a = a.id, subject = subject.id),
            None => subject.id.to_string(),
        };
        let (outcome, detail) = if eligible.allowed {
            if auto_approve.allowed {
                (
                    "at_once",
                    format!(
                        "policy approves {} for {who} at once for {}",
                        resource.name(),
                        checked.duration
                    ),
                )
            } else {
                (
                    "needs_approval",
                    format!(
                        "{who} may ask for {}; {} approval(s) by people are needed (no AutoApprove policy lets {} through)",
                        resource.name(),
                        resource.approvals_required(),
                        checked.duration
                    ),
                )
            }
        } else {
            let mut with = ctx.clone();
            with.ticket = Some(facts("TICKET-1"));
            if checked.ticket.is_none() && decide(Action::Request, &with)?.allowed {
                (
                    "needs_ticket",
                    format!(
                        "{who} may ask for {} only with an open ticket",
                        resource.name()
                    ),
                )
            } else if eligible.policy_ids.is_empty() {
                (
                    "refused",
                    format!(
                        "no policy lets {who} ask for {} for {}",
                        resource.name(),
                        checked.duration
                    ),
                )
            } else {
                (
                    "refused",
                    format!(
                        "{who} may not ask for {}: forbidden by {}",
                        resource.name(),
                        eligible.policy_ids.join(", ")
                    ),
                )
            }
        };
        Ok(Explanation {
            access: resource.name().to_owned(),
            duration: checked.duration,
            max_duration: resource.max_duration(),
            outcome,
            detail,
            eligible,
            auto_approve,
            approvals_required: resource.approvals_required(),
        })
    }
}
