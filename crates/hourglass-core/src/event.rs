//! Every kind of audit event Hourglass writes, as one enum.
//!
//! An audit record names its kind by a stable string (`grant.revoked`), which is what the chain
//! hashes and stores; [`EventKind`] is the list of those strings, with what each means and which
//! details it carries. Records are made from a kind only ([`crate::audit::AuditRecord::new`]);
//! the lifecycle state machines return a typed [`crate::lifecycle::Event`] whose one function
//! writes its record. What reacts to events (notification routing) matches on the kind with no
//! catch-all arm, so a new kind forces a decision everywhere. `docs/audit-events.md` is
//! generated from [`EventKind::ALL`] and checked for drift.

macro_rules! event_kinds {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident = $name:literal, details: [$($detail:literal),* $(,)?];
    )*) => {
        /// The kind of an audit event.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($(#[doc = $doc])+ $variant,)*
        }

        impl EventKind {
            /// Every kind, in catalogue order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The stable name written in the chain (`noun.verb`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            /// What an event of this kind records.
            pub fn about(self) -> &'static str {
                match self {
                    $(EventKind::$variant => concat!($($doc, "\n"),+),)*
                }
            }

            /// The details an event of this kind may carry (each only when it applies). A name
            /// ending in `.*` stands for every name with that prefix (`claim.*`).
            pub const fn details(self) -> &'static [&'static str] {
                match self {
                    $(EventKind::$variant => &[$($detail),*],)*
                }
            }

            /// Whether an event of this kind may carry the detail `key`.
            pub fn has_detail(self, key: &str) -> bool {
                self.details().iter().any(|d| match d.strip_suffix('*') {
                    Some(prefix) => key.starts_with(prefix),
                    None => *d == key,
                })
            }

            /// The kind named `name`, if Hourglass writes it.
            pub fn parse(name: &str) -> Option<EventKind> {
                match name {
                    $($name => Some(EventKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    /// Someone asked for access (or an extension, or a workload's exchange opened one). The
    /// subject is the request.
    RequestCreated = "request.created", details: [
        "entitlement", "profile", "extends", "by", "new_expires_at", "duration", "reason",
        "eligible_by", "policy_hash", "ticket", "ticket_source", "ticket_status",
        "ticket_assignee", "ticket_unchecked", "break_glass", "starts_at", "act", "task",
    ];
    /// A request was refused before it existed: not eligible, or policy said no. Nothing else
    /// changed. The subject is what was asked for.
    RequestRefused = "request.refused", details: [
        "action", "policy_ids", "policy_hash", "duration", "source_ip", "budget", "act",
    ];
    /// One approver said yes (a quorum may need more). The subject is the request.
    ApprovalRecorded = "approval.recorded", details: [
        "verdict", "count", "required", "policy_ids", "policy_hash", "comment", "mfa",
    ];
    /// The request has its approvals (a person's quorum, policy, or break-glass).
    RequestApproved = "request.approved", details: [
        "from", "to", "via", "policy_ids", "policy_hash", "approvals",
    ];
    /// An approver said no.
    RequestDenied = "request.denied", details: ["from", "to", "reason", "policy_ids"];
    /// The requester or an administrator withdrew the request, or a policy change made it
    /// ineligible.
    RequestCancelled = "request.cancelled", details: ["from", "to", "reason", "policy_hash"];
    /// Nobody decided before the pending deadline.
    RequestExpired = "request.expired", details: ["from", "to", "reason"];
    /// The approved request opened its grant(s).
    RequestFulfilled = "request.fulfilled", details: ["from", "to", "grant"];
    /// The approved request could not open its grant(s).
    RequestFailed = "request.failed", details: ["from", "to", "reason", "policy_hash"];
    /// A grant exists (provisioning), with its window. The subject is the grant.
    GrantCreated = "grant.created", details: [
        "request", "principal", "entitlement", "starts_at", "expires_at", "profile",
    ];
    /// The target confirmed the access: the grant is live until `expires_at`.
    GrantActivated = "grant.activated", details: [
        "expires_at", "attempt", "credential_issued", "credential",
    ];
    /// The window closed: revocation is due.
    GrantExpired = "grant.expired", details: ["expires_at"];
    /// Someone (or a ticket closing, or a suspension) ended the grant early.
    GrantRevokeRequested = "grant.revoke_requested", details: ["from", "reason"];
    /// The target confirmed the access is gone; `lag_ms` is how late after it was due.
    GrantRevoked = "grant.revoked", details: ["lag_ms", "reason", "attempt"];
    /// A grant that never activated was cleaned up (the target confirmed nothing is left).
    GrantFailed = "grant.failed", details: ["lag_ms", "reason", "attempt"];
    /// An extension moved the grant's end in the ledger.
    GrantExtended = "grant.extended", details: ["request", "from", "to"];
    /// After a restore from a backup, the target enforced a later end than the restored ledger
    /// held (an extension made after the backup): the grant's end moved to it, never past the
    /// entitlement's maximum total.
    GrantEndRestored = "grant.end_restored", details: ["from", "to", "target"];
    /// The target applied an extension (a new credential if the target issues one).
    GrantExtensionApplied = "grant.extension_applied", details: [
        "expires_at", "credential_issued", "attempt",
    ];
    /// Provisioning failed and will be retried.
    GrantProvisionFailed = "grant.provision_failed", details: ["attempt", "error", "retry_at"];
    /// Applying an extension at the target failed and will be retried.
    GrantExtendFailed = "grant.extend_failed", details: ["attempt", "error", "retry_at"];
    /// Revocation at the target failed and will be retried (the grant stays `revoking`).
    GrantRevokeFailed = "grant.revoke_failed", details: ["attempt", "error", "retry_at"];
    /// The grant's one-time credential was handed over to its holder (the actor), once; the
    /// subject is the grant. Never the credential itself.
    CredentialHandedOver = "credential.handed_over", details: ["expires_at"];
    /// After a revocation, what proves the access is gone (`proof = verified`, with what was
    /// `checked`), or that the target cannot prove it (`proof = unprovable`, with `why`). A grant
    /// is `revoked` only in the commit that carries this record.
    GrantRevocationVerified = "grant.revocation_verified", details: [
        "proof", "checked", "why", "lag_ms",
    ];
    /// Access was taken without approval; a review is open.
    BreakGlassActivated = "break_glass.activated", details: [
        "severity", "grant", "entitlement", "profile", "duration", "reason", "review",
    ];
    /// A review was opened (break-glass). The subject is the review.
    ReviewOpened = "review.opened", details: ["request", "grant", "principal"];
    /// A reviewer closed a review with an outcome.
    ReviewClosed = "review.closed", details: ["request", "grant", "principal", "comment"];
    /// An access review started. The subject is the campaign.
    CampaignStarted = "campaign.started", details: [
        "name", "scope", "reviewers", "default_action", "deadline", "items", "unreachable",
    ];
    /// A reviewer (or the deadline's default action) decided one item. The subject is the item.
    CampaignItemDecided = "campaign.item_decided", details: [
        "campaign", "kind", "decision", "principal", "access", "target", "holder", "privilege",
        "reviewer", "by_default", "note",
    ];
    /// Reviewers with undecided items were reminded. The subject is the campaign.
    CampaignReminded = "campaign.reminded", details: ["reviewer", "undecided", "deadline"];
    /// A campaign closed at its deadline. The subject is the campaign.
    CampaignClosed = "campaign.closed", details: [
        "total", "keep", "remove", "convert", "by_default",
    ];
    /// A review made a person eligible to ask for an entitlement. The subject is the person.
    EligibilityAdded = "eligibility.added", details: ["access", "item", "campaign"];
    /// A review took away a person's eligibility: their next request is refused. The subject is
    /// the person.
    EligibilityRemoved = "eligibility.removed", details: ["access", "item", "campaign"];
    /// Standing privilege a review removed is gone from the target (discovery no longer finds
    /// it). The subject is the item.
    StandingRemoved = "standing.removed", details: [
        "campaign", "target", "holder", "privilege", "attempt", "checked",
    ];
    /// Removing standing privilege failed; it is tried again (`retry_at`) or given up. The
    /// subject is the item.
    StandingRemoveFailed = "standing.remove_failed", details: [
        "campaign", "target", "holder", "privilege", "attempt", "error", "retry_at",
    ];
    /// The reconciler found access the ledger does not explain, or access missing.
    ReconcileDrift = "reconcile.drift", details: [
        "target", "kind", "name", "ledger_state", "remedy",
    ];
    /// The reconciler could not remove access it found.
    ReconcileRemoveFailed = "reconcile.remove_failed", details: ["target", "name", "error"];
    /// Old events were moved to a signed archive (`hourglass audit archive`); the live chain
    /// continues after `through_seq`. The subject is the archive's digest.
    AuditArchived = "audit.archived", details: [
        "first_seq", "through_seq", "through_hash", "events", "file",
    ];
    /// The store was restored from a backup and checked against the targets
    /// (`hourglass serve --after-restore`). The subject is the audit head it started from.
    StoreRestored = "store.restored", details: [
        "head_seq", "provisioning_ended", "requests_cancelled", "gone_ended",
        "unverifiable_ended", "ends_restored", "confirmed", "unreachable",
    ];
    /// A policy set was put in force (a reload, or a start with other files).
    PolicyReloaded = "policy.reloaded", details: ["old_hash", "new_hash", "changed", "on"];
    /// A ticket source reported a ticket's state. The subject is the ticket reference.
    TicketReported = "ticket.reported", details: [
        "source", "status", "open", "updated", "via", "assignee", "reopened",
    ];
    /// A ticket closed: what was bound to it ends.
    TicketClosed = "ticket.closed", details: ["source", "status", "via", "grants", "requests"];
    /// A closed ticket was opened again (nothing ended comes back).
    TicketReopened = "ticket.reopened", details: ["source", "reason"];
    /// A workload exchanged an identity token for access. The subject is the request.
    TokenExchanged = "token.exchanged", details: [
        "entitlement", "issuer", "subject", "jti", "duration", "policy_ids", "policy_hash",
        "claim.*", "act", "actor_issuer", "actor_jti", "actor_policy_ids", "ticket",
    ];
    /// Hourglass signed an access token for an active grant on a `token` target at its
    /// holder's ask (an agent's `get_token`). The subject is the grant; never the token itself.
    TokenIssued = "token.issued", details: ["jti", "audience", "expires_at", "act"];
    /// An identity token was refused (invalid, replayed, unmapped).
    TokenRefused = "token.refused", details: ["code", "reason", "issuer", "source_ip", "budget"];
    /// An API key or a bearer token presented to the API, the MCP endpoint or SCIM was refused
    /// (never the key or token itself: a key's public prefix and whose key it is, a token's
    /// issuer and subject). The subject is where it was presented (`api`, `mcp`, `scim`).
    AuthRefused = "auth.refused", details: [
        "code", "reason", "key_prefix", "identity", "issuer", "subject", "source_ip", "budget",
    ];
    /// A valid identity token asked for what policy refuses.
    ExchangeRefused = "exchange.refused", details: [
        "policy_ids", "policy_hash", "act", "actor_policy_ids", "source_ip", "budget",
    ];
    /// A person signed in. The subject is the session's public handle (never its id).
    SessionStarted = "session.started", details: [
        "via", "mfa", "expires_at", "source_ip", "issuer", "subject",
    ];
    /// A sign-in was refused.
    SessionRefused = "session.refused", details: [
        "code", "reason", "via", "issuer", "subject", "source_ip", "budget",
    ];
    /// A session ended (sign-out, or its identity suspended).
    SessionEnded = "session.ended", details: ["reason"];
    /// An identity was created (by an administrator, an owner, or a first sign-in).
    IdentityCreated = "identity.created", details: [
        "kind", "owner", "groups", "groups_dropped", "via", "issuer", "subject",
    ];
    /// An identity declared in the configuration was recorded at start.
    IdentityDeclared = "identity.declared", details: ["kind", "owner"];
    /// A declared identity changed in the configuration.
    IdentityUpdated = "identity.updated", details: ["kind", "owner", "groups", "status"];
    /// An identity was suspended: its keys and sessions stop working; an agent's grants are
    /// revoked and its open requests cancelled in the same commit (a workload's run out).
    IdentitySuspended = "identity.suspended", details: [
        "authority", "reason", "grants_revoked", "requests_cancelled",
    ];
    /// A suspended identity was resumed (nothing it held comes back).
    IdentityResumed = "identity.resumed", details: ["authority", "reason"];
    /// An identity was offboarded for good.
    IdentityOffboarded = "identity.offboarded", details: [
        "reason", "grants_revoked", "keys_revoked", "requests_cancelled",
    ];
    /// An agent called an MCP tool: which, how it ended (`ok`, `refused` with the code,
    /// `invalid` arguments, `unknown` tool), over which transport (`http` seen by the server,
    /// `stdio` reported by the agent host), and the request or grant it touched (`about`; the subject is the agent). Never the
    /// arguments or a credential.
    AgentToolCalled = "agent.tool_called", details: ["tool", "outcome", "code", "via", "for", "about"];
    /// The directory (SCIM) created a user; the principal it is was created or adopted.
    DirectoryUserCreated = "directory.user_created", details: ["name", "principal", "active", "adopted"];
    /// The directory changed a user's attributes.
    DirectoryUserUpdated = "directory.user_updated", details: ["name", "principal", "renamed_from"];
    /// The directory deactivated a user: suspended or offboarded, and everything it held ended.
    DirectoryUserDeactivated = "directory.user_deactivated", details: [
        "principal", "leave", "grants_revoked", "requests_cancelled", "keys_revoked",
    ];
    /// The directory activated a user again (nothing it held comes back).
    DirectoryUserReactivated = "directory.user_reactivated", details: ["principal", "status"];
    /// The directory deleted a user: suspended or offboarded, and everything it held ended.
    DirectoryUserDeleted = "directory.user_deleted", details: [
        "name", "principal", "leave", "grants_revoked", "requests_cancelled", "keys_revoked",
    ];
    /// The directory created a group.
    DirectoryGroupCreated = "directory.group_created", details: ["name", "members"];
    /// The directory changed a group: its name or its members.
    DirectoryGroupUpdated = "directory.group_updated", details: ["name", "renamed_from", "added", "removed"];
    /// The directory deleted a group; its members lost it.
    DirectoryGroupDeleted = "directory.group_deleted", details: ["name", "members"];
    /// A person's name was bound to their identity provider account at first sign-in.
    IdentitySignInBound = "identity.sign_in_bound", details: ["issuer", "subject"];
    /// An administrator unbound a person's identity provider account.
    IdentitySignInUnbound = "identity.sign_in_unbound", details: ["was"];
    /// An API key was issued (its hash and prefix stored, never the key).
    KeyCreated = "key.created", details: ["identity", "prefix", "expires_at", "replaces"];
    /// A key declared in the configuration was recorded at start.
    KeyDeclared = "key.declared", details: ["identity"];
    /// A key was replaced by a new one.
    KeyRotated = "key.rotated", details: ["identity", "replaced_by", "valid_until"];
    /// A key was revoked.
    KeyRevoked = "key.revoked", details: ["identity", "reason"];
    /// Refusals past the per-minute budget were counted instead of audited.
    AuditRefusalsSuppressed = "audit.refusals_suppressed", details: ["count", "minute", "why"];
}

/// The catalogue of audit events as Markdown (`docs/audit-events.md`).
pub fn catalogue_markdown() -> String {
    let mut out = String::from(
        "# Audit events\n\n\
         Generated from `hourglass_core::event::EventKind` (`HOURGLASS_UPDATE_DOCS=1 cargo test -p \
         hourglass-core catalogue`); a test fails when this file and the code differ.\n\n\
         Every state change and decision writes one event in the same transaction, hash-chained \
         (`docs/security.md`). Each event has a time, an actor (a principal, `policy`, \
         `system`, `anonymous`, or `ticket:SOURCE`), a kind, a subject (the id it happened to) \
         and details: string pairs, never a secret. A kind's details are written when they \
         apply; the tests refuse any detail a kind does not list here.\n",
    );
    let noun = |k: &EventKind| k.as_str().split('.').next().unwrap_or("");
    let mut nouns: Vec<&str> = Vec::new();
    for k in EventKind::ALL {
        if !nouns.contains(&noun(k)) {
            nouns.push(noun(k));
        }
    }
    for n in nouns {
        out.push_str(&format!(
            "\n## `{n}`\n\n| event | what it records | details |\n|---|---|---|\n"
        ));
        for k in EventKind::ALL.iter().filter(|k| noun(k) == n) {
            let about = k.about().split_whitespace().collect::<Vec<_>>().join(" ");
            let details = k
                .details()
                .iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!("| `{}` | {about} | {details} |\n", k.as_str()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    /// `docs/audit-events.md` is the catalogue the code has. Regenerate with
    /// `HOURGLASS_UPDATE_DOCS=1 cargo test -p hourglass-core catalogue`.
    #[test]
    fn the_catalogue_is_checked_in_and_current() {
        crate::assert_generated_doc_current("audit-events.md", &super::catalogue_markdown());
    }

    #[test]
    fn every_kind_has_a_unique_name_that_parses_back() {
        let mut names = std::collections::BTreeSet::new();
        for &k in EventKind::ALL {
            assert!(names.insert(k.as_str()), "{} twice", k.as_str());
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            let (noun, verb) = k.as_str().split_once('.').unwrap();
            assert!(!noun.is_empty() && !verb.is_empty());
            assert!(!k.about().trim().is_empty());
        }
        assert_eq!(EventKind::parse("grant.exploded"), None);
    }
}
