//! Ticket-bound access: a reference that a ticket source owns is checked when access is asked
//! for (it exists, is open, and, where the source requires it, is assigned to the requester or
//! one of their groups), and what the source said goes to policy as `context.ticket`. When the
//! ticket closes (a webhook says so, or the poller finds it), everything bound to it ends in one
//! commit: pending requests are cancelled and live grants move to revocation.

use tracing::{info, instrument, warn};

use super::{Engine, retry_on_conflict};
use crate::{
    Error, Result,
    audit::AuditRecord,
    catalog::Principal,
    grant::GrantState,
    id::{GrantId, RequestId},
    policy::TicketFacts,
    request::{Request, RequestCommand, RequestState},
    store::Commit,
    ticket::{BoundSource, OnUnavailable, Ticket, TicketUnavailable},
};

/// The most requests one ticket closure ends (a ticket is one task, not a fleet).
const MAX_BOUND: u32 = 1_000;
/// The most tickets one poll asks about.
const MAX_POLLED: u32 = 5_000;

/// What the check of a request's ticket found.
#[derive(Debug, Clone, Default)]
pub(super) struct TicketCheck {
    /// What policy sees (`None` without a ticket).
    pub facts: Option<TicketFacts>,
    /// Why the source could not be asked, when the request goes on to human approval anyway.
    pub unavailable: Option<String>,
}

/// What a ticket closure ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketClosed {
    pub revoked: Vec<GrantId>,
    pub cancelled: Vec<RequestId>,
}

/// What one poll of the ticket sources found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketPoll {
    /// Tickets asked about.
    pub checked: usize,
    /// Tickets found closed (or gone), whose bound access ended.
    pub closed: Vec<String>,
    /// Tickets whose source did not answer (asked again next time).
    pub unavailable: usize,
}

fn assigned_to(t: &Ticket, p: &Principal) -> bool {
    t.assignee.as_deref() == Some(p.id.as_str())
        || t.group
            .as_deref()
            .is_some_and(|g| p.groups.iter().any(|mine| mine == g))
}

impl Engine {
    /// Checks a request's ticket with its source. Bad tickets are refused before anything is
    /// written; a source that does not answer refuses the request, or (where configured, and
    /// always for break-glass) lets it go on without automatic approval.
    pub(super) async fn check_ticket(
        &self,
        principal: &Principal,
        reference: Option<&str>,
        emergency: bool,
    ) -> Result<TicketCheck> {
        let Some(reference) = reference else {
            return Ok(TicketCheck::default());
        };
        let only_ref = |source: Option<&str>| TicketFacts {
            reference: reference.to_owned(),
            source: source.map(str::to_owned),
            ..TicketFacts::default()
        };
        let Some(bound) = self.tickets.find(reference) else {
            return Ok(TicketCheck {
                facts: Some(only_ref(None)),
                unavailable: None,
            });
        };
        let name = bound.source.name();
        match self.lookup_ticket(bound, reference).await? {
            Ok(None) => Err(Error::invalid(
                "ticket.not_found",
                "ticket",
                format!("{name} has no ticket {reference}"),
            )),
            Ok(Some(t)) if !t.open => Err(Error::invalid(
                "ticket.closed",
                "ticket",
                format!(
                    "ticket {reference} is {} (closed) in {name}; access is bound to an open ticket",
                    t.status
                ),
            )),
            Ok(Some(t)) => {
                if bound.require_assignee && !assigned_to(&t, principal) {
                    return Err(Error::forbidden(
                        "ticket.not_assigned",
                        format!(
                            "ticket {reference} is assigned to {}, not to {} or one of their groups",
                            t.assignee.as_deref().unwrap_or("nobody"),
                            principal.id
                        ),
                    ));
                }
                Ok(TicketCheck {
                    facts: Some(t.facts(name)),
                    unavailable: None,
                })
            }
            Err(e) => {
                warn!(source = name, ticket = reference, error = %e, "ticket source did not answer");
                if bound.on_unavailable == OnUnavailable::Deny && !emergency {
                    return Err(Error::upstream(
                        "ticket.unavailable",
                        format!(
                            "the ticket source {name} gave no answer about {reference} ({e}), so the request cannot be checked; try again later"
                        ),
                    ));
                }
                Ok(TicketCheck {
                    facts: Some(only_ref(Some(name))),
                    unavailable: Some(e.0),
                })
            }
        }
    }

    /// Asks the source about a ticket, or, for a source that only reports by webhook, reads
    /// what it reported.
    async fn lookup_ticket(
        &self,
        bound: &BoundSource,
        reference: &str,
    ) -> Result<std::result::Result<Option<Ticket>, TicketUnavailable>> {
        if !bound.reported_only {
            return Ok(bound.source.lookup(reference).await);
        }
        let name = bound.source.name();
        Ok(match self.store.get_ticket(name, reference).await? {
            Some(t) => Ok(Some(t)),
            None => Err(TicketUnavailable(format!(
                "{name} has reported nothing about {reference} yet"
            ))),
        })
    }

    /// What a ticket source reported (a webhook event): remembered for a source with no lookup
    /// API, and, when the ticket is closed, everything bound to it ends.
    pub async fn ticket_reported(
        &self,
        source: &str,
        ticket: &Ticket,
        via: &str,
    ) -> Result<TicketClosed> {
        let Some(bound) = self.tickets.named(source) else {
            return Err(Error::not_found(
                "ticket_event.unknown_source",
                format!("no ticket source {source:?}"),
            ));
        };
        if !bound.source.matches(&ticket.reference) {
            return Err(Error::invalid(
                "ticket_event.foreign_reference",
                "ref",
                format!("{} is not a reference of {source}", ticket.reference),
            ));
        }
        if bound.reported_only {
            self.store
                .record_ticket(source, ticket, self.clock.now())
                .await?;
        }
        if ticket.open {
            return Ok(TicketClosed::default());
        }
        self.ticket_closed(source, &ticket.reference, &ticket.status, via)
            .await
    }

    /// Ends everything bound to a closed ticket, in one commit with a `ticket.closed` record
    /// that names the closure: pending and approved requests are cancelled, live grants (and
    /// their profile siblings) move to revocation. Closing a ticket that nothing is bound to
    /// any more changes nothing and records nothing.
    #[instrument(skip_all, fields(source = %source, ticket = %reference))]
    pub async fn ticket_closed(
        &self,
        source: &str,
        reference: &str,
        status: &str,
        via: &str,
    ) -> Result<TicketClosed> {
        let out = retry_on_conflict(move || async move {
            let now = self.clock.now();
            let why = format!("ticket {reference} closed ({status}, reported by {via})");
            let actor = format!("ticket:{source}");
            let mut commit = Commit::default();
            let mut out = TicketClosed::default();
            for req in self
                .store
                .requests_with_ticket(reference, MAX_BOUND)
                .await?
            {
                self.end_bound(&req, &actor, &why, now, &mut commit, &mut out)
                    .await?;
            }
            if out.revoked.is_empty() && out.cancelled.is_empty() {
                return Ok(out);
            }
            let join = |v: &[String]| v.join(",");
            commit.audit.push(
                AuditRecord::new(now, actor.as_str(), "ticket.closed", reference)
                    .with("source", source)
                    .with("status", status)
                    .with("via", via)
                    .with(
                        "grants",
                        join(
                            &out.revoked
                                .iter()
                                .map(|g| g.to_string())
                                .collect::<Vec<_>>(),
                        ),
                    )
                    .with(
                        "requests",
                        join(
                            &out.cancelled
                                .iter()
                                .map(|r| r.to_string())
                                .collect::<Vec<_>>(),
                        ),
                    ),
            );
            self.commit(commit).await?;
            Ok(out)
        })
        .await?;
        if !out.revoked.is_empty() || !out.cancelled.is_empty() {
            info!(
                grants = out.revoked.len(),
                requests = out.cancelled.len(),
                via,
                "ticket closed: bound access ended"
            );
            self.wake.jobs_changed();
            self.wake.deadlines_changed();
        }
        Ok(out)
    }

    async fn end_bound(
        &self,
        req: &Request,
        actor: &str,
        why: &str,
        now: crate::Timestamp,
        commit: &mut Commit,
        out: &mut TicketClosed,
    ) -> Result<()> {
        match req.state {
            RequestState::Pending | RequestState::Approved => {
                let (cancelled, ev) = req.apply(
                    RequestCommand::Cancel {
                        actor: actor.to_owned(),
                        note: Some(why.to_owned()),
                    },
                    now,
                )?;
                commit.requests.push(cancelled);
                commit.audit.push(ev);
                out.cancelled.push(req.id.clone());
            }
            RequestState::Fulfilled => {
                for g in self.store.grants_of_request(&req.id).await? {
                    if matches!(g.state, GrantState::Provisioning | GrantState::Active)
                        && !out.revoked.contains(&g.id)
                    {
                        Self::revoke_into(&g, actor, why.to_owned(), now, commit)?;
                        out.revoked.push(g.id.clone());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Asks the ticket sources about every ticket that live access is bound to, and ends the
    /// access of those that closed (or are gone) without a webhook saying so. A source that does
    /// not answer is asked again next time; it never ends access by itself.
    pub async fn poll_tickets(&self) -> Result<TicketPoll> {
        let mut poll = TicketPoll::default();
        for reference in self.store.live_tickets(MAX_POLLED).await? {
            let Some(bound) = self.tickets.find(&reference) else {
                continue;
            };
            poll.checked += 1;
            let name = bound.source.name().to_owned();
            let status = match self.lookup_ticket(bound, &reference).await? {
                Ok(Some(t)) if t.open => continue,
                Ok(Some(t)) => t.status,
                Ok(None) => "gone".to_owned(),
                Err(e) => {
                    warn!(source = %name, ticket = %reference, error = %e, "ticket poll: source did not answer");
                    poll.unavailable += 1;
                    continue;
                }
            };
            let ended = self
                .ticket_closed(&name, &reference, &status, "poll")
                .await?;
            if !ended.revoked.is_empty() || !ended.cancelled.is_empty() {
                poll.closed.push(reference);
            }
        }
        Ok(poll)
    }

    /// Whether any ticket source is configured (the server runs the poller only then).
    pub fn has_ticket_sources(&self) -> bool {
        !self.tickets.is_empty()
    }

    /// The configured ticket sources.
    pub fn ticket_sources(&self) -> &crate::ticket::TicketSources {
        &self.tickets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        catalog::{PrincipalKind, PrincipalStatus},
        id::PrincipalId,
    };

    fn principal(groups: &[&str]) -> Principal {
        Principal {
            id: PrincipalId::new("alice").unwrap(),
            kind: PrincipalKind::Human,
            owner: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            status: PrincipalStatus::Active,
        }
    }

    fn ticket(assignee: Option<&str>, group: Option<&str>) -> Ticket {
        Ticket {
            reference: "HD-1".into(),
            open: true,
            status: "In Progress".into(),
            assignee: assignee.map(str::to_owned),
            group: group.map(str::to_owned),
            priority: None,
        }
    }

    #[test]
    fn assignment_is_to_the_person_or_one_of_their_groups() {
        let p = principal(&["helpdesk"]);
        assert!(assigned_to(&ticket(Some("alice"), None), &p));
        assert!(assigned_to(&ticket(Some("bob"), Some("helpdesk")), &p));
        assert!(!assigned_to(&ticket(Some("bob"), Some("network")), &p));
        assert!(!assigned_to(&ticket(None, None), &p));
    }
}
