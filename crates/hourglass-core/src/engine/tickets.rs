//! Ticket-bound access: a reference that a ticket source owns is checked when access is asked
//! for (it exists, is open, and, where the source requires it, is assigned to the requester or
//! one of their groups), and what the source said goes to policy as `context.ticket`. When the
//! ticket closes (a webhook says so, or the poller finds it), everything bound to it ends in one
//! commit: pending requests are cancelled and live grants move to revocation.

use tracing::{info, instrument, warn};

use super::{Caller, Engine, retry_on_conflict};
use crate::{
    Error, Result,
    catalog::Principal,
    grant::GrantState,
    id::{GrantId, RequestId},
    identity::TokenUse,
    lifecycle::Event,
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

/// A source's report of a ticket's state (a signed webhook event).
#[derive(Debug, Clone)]
pub struct TicketReport {
    pub source: String,
    pub ticket: Ticket,
    /// The delivery's id (a digest of what was signed), and until when a repeat is refused.
    pub delivery: Option<(String, crate::Timestamp)>,
    /// Who reported it, for the audit (`desk webhook`).
    pub via: String,
}

/// Deliveries are remembered with exchanged token ids, under this prefix and the source name.
const DELIVERY_ISSUER: &str = "ticket-event:";

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
            if self.tickets.refuses_unowned() {
                return Err(Error::invalid(
                    crate::ErrorCode::TicketUnknownSource,
                    "ticket",
                    format!(
                        "no ticket source owns {reference:?}; give a ticket of a configured source"
                    ),
                ));
            }
            return Ok(TicketCheck {
                facts: Some(only_ref(None)),
                unavailable: None,
            });
        };
        let name = bound.source.name();
        match self.lookup_ticket(bound, reference).await? {
            Ok(None) => Err(Error::invalid(
                crate::ErrorCode::TicketNotFound,
                "ticket",
                format!("{name} has no ticket {reference}"),
            )),
            Ok(Some(t)) if !t.open => Err(Error::invalid(
                crate::ErrorCode::TicketClosed,
                "ticket",
                format!(
                    "ticket {reference} is {} (closed) in {name}; access is bound to an open ticket",
                    t.status
                ),
            )),
            Ok(Some(t)) => {
                if bound.require_assignee && !assigned_to(&t, principal) {
                    return Err(Error::forbidden(
                        crate::ErrorCode::TicketNotAssigned,
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
                        crate::ErrorCode::TicketUnavailable,
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

    /// What a ticket source reported (a signed webhook event), applied in the order of the
    /// ticket's own time of change, once per delivery, and audited as `ticket.reported` in the
    /// commit that remembers it. An event older than what is stored is refused; so is a repeat
    /// of a delivery. A report never reopens a ticket stored as closed by itself: a source with a
    /// lookup API is asked afresh, and a webhook-only source's reopen is refused (an administrator
    /// reopens it, [`Engine::reopen_ticket`]). A closure ends everything bound to the ticket in the
    /// same commit.
    #[instrument(skip_all, fields(source = %report.source, ticket = %report.ticket.reference))]
    pub async fn ticket_reported(&self, report: &TicketReport) -> Result<TicketClosed> {
        let source = report.source.as_str();
        let Some(bound) = self.tickets.named(source) else {
            return Err(Error::not_found(
                crate::ErrorCode::TicketEventUnknownSource,
                format!("no ticket source {source:?}"),
            ));
        };
        let reference = report.ticket.reference.as_str();
        if !bound.source.matches(reference) {
            return Err(Error::invalid(
                crate::ErrorCode::TicketEventForeignReference,
                "ref",
                format!("{reference} is not a reference of {source}"),
            ));
        }
        let Some(updated) = report.ticket.updated else {
            return Err(Error::invalid(
                crate::ErrorCode::TicketEventTimeMissing,
                "updated",
                "the event does not say when the ticket changed (updated, or a signed timestamp)",
            ));
        };
        let replay_key = format!("{DELIVERY_ISSUER}{source}");
        let (out, more) = retry_on_conflict(|| async {
            let now = self.clock.now();
            if let Some((id, _)) = &report.delivery
                && self.store.is_token_used(&replay_key, id, now).await?
            {
                return Err(Error::conflict(
                    crate::ErrorCode::TicketEventReplayed,
                    "this event was already received; a repeat changes nothing",
                ));
            }
            let stored = self.store.get_ticket(source, reference).await?;
            if let Some(last) = stored.as_ref().and_then(|s| s.updated)
                && last > updated
            {
                return Err(Error::conflict(
                    crate::ErrorCode::TicketEventStale,
                    format!(
                        "the event says {reference} changed at {updated}, before what {source} last reported ({last}); it is not applied"
                    ),
                ));
            }
            let reopening = report.ticket.open && stored.as_ref().is_some_and(|s| !s.open);
            let ticket = if reopening {
                self.confirm_reopen(bound, &report.ticket).await?
            } else {
                report.ticket.clone()
            };
            let mut commit = Commit::default();
            commit.tickets.push((source.to_owned(), ticket.clone()));
            if let Some((id, until)) = &report.delivery {
                commit.token_uses.push((
                    TokenUse {
                        issuer: replay_key.clone(),
                        jti: id.clone(),
                        expires_at: *until,
                    },
                    now,
                ));
            }
            commit.audit.push(
                Event::TicketReported {
                    source: source.to_owned(),
                    reference: reference.to_owned(),
                    status: ticket.status.clone(),
                    open: ticket.open,
                    updated,
                    via: report.via.clone(),
                    assignee: ticket.assignee.clone(),
                    reopened: reopening,
                }
                .record(now),
            );
            let mut out = TicketClosed::default();
            let mut more = false;
            if !ticket.open {
                more = self
                    .close_into(source, reference, &ticket.status, &report.via, now, &mut commit, &mut out)
                    .await?;
            }
            self.commit(commit).await?;
            Ok((out, more))
        })
        .await?;
        self.woken_by(&out);
        if more {
            // More was bound than one commit ends: the rest goes the way of a polled closure.
            let rest = self
                .ticket_closed(source, reference, &report.ticket.status, &report.via)
                .await?;
            let mut all = out;
            all.revoked.extend(rest.revoked);
            all.cancelled.extend(rest.cancelled);
            return Ok(all);
        }
        Ok(out)
    }

    /// A report says a ticket stored as closed is open again: only the source itself can say
    /// so, asked now.
    async fn confirm_reopen(&self, bound: &BoundSource, reported: &Ticket) -> Result<Ticket> {
        let name = bound.source.name();
        let reference = &reported.reference;
        if bound.reported_only {
            return Err(Error::conflict(
                crate::ErrorCode::TicketEventReopenRefused,
                format!(
                    "{reference} is closed, and {name} only reports by webhook, so a report cannot reopen it; an administrator can (POST /v1/tickets/sources/{name}/tickets/{reference}/reopen)"
                ),
            ));
        }
        match bound.source.lookup(reference).await {
            Ok(Some(t)) if t.open => Ok(Ticket {
                updated: t.updated.max(reported.updated),
                ..t
            }),
            Ok(_) => Err(Error::conflict(
                crate::ErrorCode::TicketEventReopenUnconfirmed,
                format!("the event says {reference} is open again, but {name} says it is not"),
            )),
            Err(e) => Err(Error::upstream(
                crate::ErrorCode::TicketUnavailable,
                format!(
                    "{name} could not confirm that {reference} is open again ({e}); try again later"
                ),
            )),
        }
    }

    /// Reopens a ticket of a webhook-only source that a report closed (a person's decision:
    /// such a source cannot reopen it by itself). Takes Administer on every entitlement; audited
    /// as `ticket.reopened` with the reason.
    #[instrument(skip_all, fields(source = %source, ticket = %reference, principal = %caller.principal.id))]
    pub async fn reopen_ticket(
        &self,
        caller: &Caller,
        source: &str,
        reference: &str,
        reason: &str,
    ) -> Result<Ticket> {
        self.require_admin_of_all(caller, crate::ErrorCode::TicketReopenNotAllowed)?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::invalid(
                crate::ErrorCode::TicketReasonMissing,
                "reason",
                "say why the ticket is reopened",
            ));
        }
        crate::text::check(reason, super::requests::MAX_REASON)
            .map_err(|m| Error::invalid(crate::ErrorCode::TicketReasonInvalid, "reason", m))?;
        let not_found = || {
            Error::not_found(
                crate::ErrorCode::TicketNotFound,
                format!("{source} reported no ticket {reference}"),
            )
        };
        let bound = self.tickets.named(source).ok_or_else(not_found)?;
        if !bound.reported_only {
            return Err(Error::conflict(
                crate::ErrorCode::TicketReopenBySource,
                format!(
                    "{source} has a lookup API: reopen {reference} there, and it is asked afresh"
                ),
            ));
        }
        retry_on_conflict(|| async {
            let now = self.clock.now();
            let stored = self
                .store
                .get_ticket(source, reference)
                .await?
                .ok_or_else(not_found)?;
            if stored.open {
                return Err(Error::conflict(
                    crate::ErrorCode::TicketAlreadyOpen,
                    format!("{reference} is already open"),
                ));
            }
            let reopened = Ticket {
                open: true,
                status: format!("reopened by {}", caller.principal.id),
                // Later than anything stored, so that only newer reports follow it.
                updated: Some(stored.updated.map_or(now, |u| u.plus_millis(1).max(now))),
                ..stored
            };
            self.commit(Commit {
                tickets: vec![(source.to_owned(), reopened.clone())],
                audit: vec![
                    Event::TicketReopened {
                        source: source.to_owned(),
                        reference: reference.to_owned(),
                        actor: caller.principal.id.clone(),
                        reason: reason.to_owned(),
                    }
                    .record(now),
                ],
                ..Commit::default()
            })
            .await?;
            Ok(reopened)
        })
        .await
    }

    /// Ends everything bound to a closed ticket, in one commit with a `ticket.closed` record
    /// that names the closure: pending and approved requests are cancelled, live grants (and
    /// their profile siblings) move to revocation. Only what `source` checked is ended: a
    /// reference another source (or none) vouched for is not this source's to close. Closing a
    /// ticket that nothing is bound to any more changes nothing and records nothing.
    #[instrument(skip_all, fields(source = %source, ticket = %reference))]
    pub async fn ticket_closed(
        &self,
        source: &str,
        reference: &str,
        status: &str,
        via: &str,
    ) -> Result<TicketClosed> {
        let mut all = TicketClosed::default();
        loop {
            let (out, more) = retry_on_conflict(move || async move {
                let now = self.clock.now();
                let mut commit = Commit::default();
                let mut out = TicketClosed::default();
                let more = self
                    .close_into(source, reference, status, via, now, &mut commit, &mut out)
                    .await?;
                if !commit.is_empty() {
                    self.commit(commit).await?;
                }
                Ok((out, more))
            })
            .await?;
            self.woken_by(&out);
            all.revoked.extend(out.revoked);
            all.cancelled.extend(out.cancelled);
            if !more {
                return Ok(all);
            }
        }
    }

    fn woken_by(&self, out: &TicketClosed) {
        if !out.revoked.is_empty() || !out.cancelled.is_empty() {
            info!(
                grants = out.revoked.len(),
                requests = out.cancelled.len(),
                "ticket closed: bound access ended"
            );
            self.wake.jobs_changed();
            self.wake.deadlines_changed();
        }
    }

    /// Adds the end of what `source` vouched for on `reference` to `commit`, with its
    /// `ticket.closed` record; whether more is bound than one commit takes.
    #[allow(clippy::too_many_arguments)]
    async fn close_into(
        &self,
        source: &str,
        reference: &str,
        status: &str,
        via: &str,
        now: crate::Timestamp,
        commit: &mut Commit,
        out: &mut TicketClosed,
    ) -> Result<bool> {
        let why = format!("ticket {reference} closed ({status}, reported by {via})");
        let actor = format!("ticket:{source}");
        let bound = self
            .store
            .requests_with_ticket(reference, MAX_BOUND)
            .await?;
        let more = bound.len() >= MAX_BOUND as usize;
        for req in bound
            .iter()
            .filter(|r| r.ticket_facts.as_ref().and_then(|f| f.source.as_deref()) == Some(source))
        {
            self.end_bound(req, &actor, &why, now, commit, out).await?;
        }
        if out.revoked.is_empty() && out.cancelled.is_empty() {
            return Ok(false);
        }
        commit.audit.push(
            Event::TicketClosed {
                source: source.to_owned(),
                reference: reference.to_owned(),
                status: status.to_owned(),
                via: via.to_owned(),
                grants: out.revoked.clone(),
                requests: out.cancelled.clone(),
            }
            .record(now),
        );
        Ok(more)
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
                commit.audit.push(ev.record(now));
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
            manager: None,
            department: None,
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
            updated: None,
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
