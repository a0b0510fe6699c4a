//! The one error type of the core. Every variant carries a stable machine-readable `code`
//! (`request.duration_exceeds_max`) that the server maps to HTTP status and problem+json, and,
//! for bad input, the offending field. Messages are safe to show to clients: internal detail
//! (SQL text, connector output) goes to the log through `Internal`, whose text is never sent.

use std::fmt;

macro_rules! error_codes {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident = $name:literal, status: [$($status:literal),+];
    )*) => {
        /// Every error code a client can receive (in problem+json `code`), as one enum.
        /// `docs/errors.md` is generated from it and checked for drift.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)*
        }

        impl ErrorCode {
            /// Every code, by name.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable name clients match on (`request.duration_exceeds_max`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }

            /// What the code means (from the message it is sent with).
            pub fn about(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => concat!($($doc),+),)*
                }
            }

            /// The HTTP statuses it is sent with.
            pub const fn statuses(self) -> &'static [u16] {
                match self {
                    $(ErrorCode::$variant => &[$($status),+],)*
                }
            }
        }
    };
}

error_codes! {
    /// The entitlement or profile asked for is no longer configured.
    AccessRemoved = "access.removed", status: [409];
    /// Needs Administer on every entitlement.
    AdminNotAllowed = "admin.not_allowed", status: [403];
    /// The approval's comment is too long or holds control characters.
    ApprovalCommentInvalid = "approval.comment_invalid", status: [400];
    /// … has already approved request ….
    ApprovalDuplicate = "approval.duplicate", status: [409];
    /// … may not approve requests for ….
    ApprovalNotAuthorized = "approval.not_authorized", status: [403];
    /// Nobody may approve or deny their own request.
    ApprovalSelfApproval = "approval.self_approval", status: [403];
    /// … may not decide on this request: ….
    ApprovalSeparationOfDuties = "approval.separation_of_duties", status: [403];
    /// Deciding on requests for … needs a sign-in with a second factor; sign in again with one.
    ApprovalStepUpRequired = "approval.step_up_required", status: [403];
    /// Only agents record MCP tool calls.
    AgentOnly = "agent.only", status: [403];
    /// A tool call record names no known tool, outcome or subject.
    AgentToolCallInvalid = "agent.tool_call_invalid", status: [400];
    /// The archive checkpoint does not continue the live chain: a gap, the head event, or a hash that is not the chain's.
    AuditArchiveInvalid = "audit.archive_invalid", status: [400];
    /// Needs Administer on every entitlement.
    AuditNotAllowed = "audit.not_allowed", status: [403];
    /// Sign-in is posted from this server's own page only.
    AuthCrossSite = "auth.cross_site", status: [403];
    /// This form needs its CSRF token and must come from this server's own page; reload the page.
    AuthCsrf = "auth.csrf", status: [403];
    /// A token that carries `act` is a delegation, not a session of its subject.
    AuthDelegatedToken = "auth.delegated_token", status: [401];
    /// Only people sign in with an identity token; workloads and agents exchange theirs at /v1/token.
    AuthNotAPerson = "auth.not_a_person", status: [401];
    /// This token was already exchanged; it is not a session.
    AuthTokenUsed = "auth.token_used", status: [401];
    /// The token is not valid.
    AuthInvalid = "auth.invalid", status: [401];
    /// The MCP endpoint serves agents: an agent's API key or token, or a person's token whose `act` names the agent.
    AuthNotAnAgent = "auth.not_an_agent", status: [403];
    /// Send Authorization: Bearer <token>, or sign in.
    AuthMissing = "auth.missing", status: [401];
    /// Not signed in (no live session cookie)
    AuthNoSession = "auth.no_session", status: [401];
    /// Use the Bearer scheme.
    AuthScheme = "auth.scheme", status: [401];
    /// The session has ended; sign in again.
    AuthSessionEnded = "auth.session_ended", status: [401];
    /// Too many refused tokens or keys from this address this minute; retry after the time `Retry-After` gives.
    AuthThrottled = "auth.throttled", status: [429];
    /// Malformed body: ….
    BodyInvalid = "body.invalid", status: [400];
    /// The request body could not be read (too large, or not the declared type).
    BodyUnreadable = "body.unreadable", status: [400];
    /// Fetch a credential with your API token, or reveal it in the web app (Mine)
    CredentialBearerOnly = "credential.bearer_only", status: [403];
    /// No credential is waiting for you on this grant (it is shown once)
    CredentialNotAvailable = "credential.not_available", status: [404];
    /// A denial needs a reason, of printable text within the length limit.
    DenyReasonInvalid = "deny.reason_invalid", status: [400];
    /// A reason is required to deny.
    DenyReasonMissing = "deny.reason_missing", status: [400];
    /// A member … is no user of the directory.
    DirectoryMemberUnknown = "directory.member_unknown", status: [400];
    /// … is taken (names are unique without regard to case).
    DirectoryNameTaken = "directory.name_taken", status: [409];
    /// No user or group … in the directory.
    DirectoryNotFound = "directory.not_found", status: [404];
    /// Group … owns …: removing or renaming it would leave them with no owner.
    DirectoryOwnerGroup = "directory.owner_group", status: [409];
    /// … cannot be this user's principal (a workload, an agent, an offboarded identity, or another user's).
    DirectoryPrincipalTaken = "directory.principal_taken", status: [409];
    /// The entry is at version …, not the one given (If-Match).
    DirectoryVersionMismatch = "directory.version_mismatch", status: [412];
    /// Entitlement … is no longer configured.
    EntitlementRemoved = "entitlement.removed", status: [409];
    /// Not a request or grant.
    EventOther = "event.other", status: [404];
    /// … may not get … (policy), so it cannot get it for ….
    ExchangeActorNotAllowed = "exchange.actor_not_allowed", status: [403];
    /// … exceeds the maximum of … for ….
    ExchangeDurationExceedsMax = "exchange.duration_exceeds_max", status: [400];
    /// Exchange.duration_exceeds_max.
    ExchangeDurationInvalid = "exchange.duration_invalid", status: [400];
    /// No entitlement named ….
    ExchangeEntitlementUnknown = "exchange.entitlement_unknown", status: [400];
    /// … may not get … by token exchange (policy)
    ExchangeNotAllowed = "exchange.not_allowed", status: [403];
    /// Ticket.unavailable.
    ExchangeReasonInvalid = "exchange.reason_invalid", status: [400];
    /// The presented tokens expire in under …; get fresh ones.
    ExchangeTokensExpireTooSoon = "exchange.tokens_expire_too_soon", status: [400];
    /// No entitlement or profile named ….
    ExplainAccessUnknown = "explain.access_unknown", status: [400];
    /// Needs Administer on every entitlement.
    ExplainNotAllowed = "explain.not_allowed", status: [403];
    /// Explain.principal_unknown.
    ExplainPrincipalInvalid = "explain.principal_invalid", status: [400];
    /// No identity named ….
    ExplainPrincipalUnknown = "explain.principal_unknown", status: [400];
    /// An extension is at least ….
    ExtendByBelowMin = "extend.by_below_min", status: [400];
    /// Extend.by_below_min.
    ExtendByInvalid = "extend.by_invalid", status: [400];
    /// Extension … of this grant is already pending.
    ExtendDuplicatePending = "extend.duplicate_pending", status: [409];
    /// Extending by … would make the grant …s long; the maximum for … is ….
    ExtendExceedsMax = "extend.exceeds_max", status: [400];
    /// … may not extend … (policy)
    ExtendNotEligible = "extend.not_eligible", status: [403];
    /// Only the holder of a grant may ask to extend it.
    ExtendNotHolder = "extend.not_holder", status: [403];
    /// This grant is one of a task profile's, which end together; ask for the profile again.
    ExtendProfileGrant = "extend.profile_grant", status: [409];
    /// Extend.not_holder.
    ExtendReasonInvalid = "extend.reason_invalid", status: [400];
    /// Say why the access is needed longer (1-… characters)
    ExtendReasonMissing = "extend.reason_missing", status: [400];
    /// Grant … is …; … is not possible.
    GrantInvalidTransition = "grant.invalid_transition", status: [409];
    /// Grant … is ….
    GrantNotActive = "grant.not_active", status: [409];
    /// No grant ….
    GrantNotFound = "grant.not_found", status: [404];
    /// Only its holder releases a grant here; administrators revoke on the Admin pages.
    GrantNotYours = "grant.not_yours", status: [403];
    /// Only the grantee or an administrator may revoke a grant.
    GrantRevokeNotAllowed = "grant.revoke_not_allowed", status: [403];
    /// Needs Administer on every entitlement.
    IdentityCreateNotAllowed = "identity.create_not_allowed", status: [403];
    /// An identity named … exists.
    IdentityExists = "identity.exists", status: [409];
    /// At most … groups.
    IdentityGroupsInvalid = "identity.groups_invalid", status: [400];
    /// The identity is suspended or offboarded: it cannot act or be acted for.
    IdentityInactive = "identity.inactive", status: [409];
    /// Kind …: use human, workload or agent.
    IdentityKindInvalid = "identity.kind_invalid", status: [400];
    /// Identity.not_found.
    IdentityNameInvalid = "identity.name_invalid", status: [400];
    /// … is reserved for Hourglass's own audit records; choose another name.
    IdentityNameReserved = "identity.name_reserved", status: [400];
    /// Needs Administer on every entitlement.
    IdentityNotAllowed = "identity.not_allowed", status: [403];
    /// … is not bound to an identity-provider account.
    IdentityNotBound = "identity.not_bound", status: [409];
    /// No identity ….
    IdentityNotFound = "identity.not_found", status: [404];
    /// … is offboarded; create a new identity instead.
    IdentityOffboarded = "identity.offboarded", status: [409];
    /// Owner … is ….
    IdentityOwnerInactive = "identity.owner_inactive", status: [400];
    /// A … must have an owner (a human or a group) who answers for it.
    IdentityOwnerMissing = "identity.owner_missing", status: [400];
    /// A human identity has no owner.
    IdentityOwnerNotAllowed = "identity.owner_not_allowed", status: [400];
    /// Owner … is a …; a person or a group must answer for it.
    IdentityOwnerNotHuman = "identity.owner_not_human", status: [400];
    /// Owner … is neither a known identity nor a group.
    IdentityOwnerUnknown = "identity.owner_unknown", status: [400];
    /// Identity.not_allowed.
    IdentityReasonInvalid = "identity.reason_invalid", status: [400];
    /// Say why the identity is offboarded.
    IdentityReasonMissing = "identity.reason_missing", status: [400];
    /// … was suspended by … as an administrator (or by the configuration); only an administrator lifts that.
    IdentityResumeNotAllowed = "identity.resume_not_allowed", status: [403];
    /// Needs Administer on every entitlement.
    IdentityUnbindNotAllowed = "identity.unbind_not_allowed", status: [403];
    /// Request … is not waiting for your decision.
    InboxNotFound = "inbox.not_found", status: [404];
    /// An unexpected fault; the server log has the details (never sent to the client).
    Internal = "internal", status: [500];
    /// A key lives at most …; asked for ….
    KeyExpiresExceedsMax = "key.expires_exceeds_max", status: [400];
    /// Key.expires_exceeds_max.
    KeyExpiresInvalid = "key.expires_invalid", status: [400];
    /// Key … is … and cannot be rotated.
    KeyNotActive = "key.not_active", status: [409];
    /// No key ….
    KeyNotFound = "key.not_found", status: [404];
    /// The policy set was not changed: ….
    PolicyInvalid = "policy.invalid", status: [400];
    /// The policy set was not changed: ….
    PolicyOncallInvalid = "policy.oncall_invalid", status: [400];
    /// Needs Administer on every entitlement.
    PolicyReloadNotAllowed = "policy.reload_not_allowed", status: [403];
    /// This replica's policy files differ from the set in force (another replica reloaded or started with other files): deploy the same files and reload.
    PolicyStale = "policy.stale", status: [503];
    /// Principal … is ….
    PrincipalInactive = "principal.inactive", status: [403];
    /// Requester … is no longer configured.
    PrincipalRemoved = "principal.removed", status: [409];
    /// Unknown principal ….
    PrincipalUnknown = "principal.unknown", status: [403];
    /// Malformed query.
    QueryInvalid = "query.invalid", status: [400];
    /// Unknown state ….
    QueryStateUnknown = "query.state_unknown", status: [400];
    /// … has … grants at once, the most allowed.
    QuotaEntitlementGrants = "quota.entitlement_grants", status: [429];
    /// … had … requests in the last hour, the most allowed; try again later.
    QuotaEntitlementRequests = "quota.entitlement_requests", status: [429];
    /// … already holds … grants, the most allowed at once; let one end or revoke one.
    QuotaPrincipalGrants = "quota.principal_grants", status: [429];
    /// … made … requests in the last hour, the most allowed; try again later.
    QuotaPrincipalRequests = "quota.principal_requests", status: [429];
    /// Needs Administer on every entitlement.
    ReconcileNotAllowed = "reconcile.not_allowed", status: [403];
    /// Needs Administer on every entitlement.
    ReportNotAllowed = "report.not_allowed", status: [403];
    /// Request … already has a grant; revoke the grant instead.
    RequestAlreadyFulfilled = "request.already_fulfilled", status: [409];
    /// … may not break glass into … (policy)
    RequestBreakGlassNotAllowed = "request.break_glass_not_allowed", status: [403];
    /// … has … break-glass reviews open, the most allowed; another emergency waits until someone reviews them.
    RequestBreakGlassReviewsOpen = "request.break_glass_reviews_open", status: [429];
    /// Break-glass access starts at once; it cannot be scheduled.
    RequestBreakGlassScheduled = "request.break_glass_scheduled", status: [400];
    /// Only the requester or an administrator may cancel a request.
    RequestCancelNotAllowed = "request.cancel_not_allowed", status: [403];
    /// Request … for … is already pending; cancel it or wait for its decision.
    RequestDuplicatePending = "request.duplicate_pending", status: [409];
    /// Duration … is under the minimum of ….
    RequestDurationBelowMin = "request.duration_below_min", status: [400];
    /// Duration … exceeds the break-glass maximum of … for ….
    RequestDurationExceedsBreakGlassMax = "request.duration_exceeds_break_glass_max", status: [400];
    /// Duration … exceeds the maximum of … for ….
    RequestDurationExceedsMax = "request.duration_exceeds_max", status: [400];
    /// Request.duration_exceeds_break_glass_max.
    RequestDurationInvalid = "request.duration_invalid", status: [400];
    /// No entitlement or profile named ….
    RequestEntitlementUnknown = "request.entitlement_unknown", status: [400];
    /// Request … is …; … is not possible.
    RequestInvalidTransition = "request.invalid_transition", status: [409];
    /// … is not eligible for … (policy)
    RequestNotEligible = "request.not_eligible", status: [403];
    /// No request ….
    RequestNotFound = "request.not_found", status: [404];
    /// Request … is …, not pending.
    RequestNotPending = "request.not_pending", status: [409];
    /// … already holds … until … (grant …); extend that grant instead of asking again.
    RequestOverlapsGrant = "request.overlaps_grant", status: [409];
    /// A public key is one line of at most … bytes.
    RequestPublicKeyInvalid = "request.public_key_invalid", status: [400];
    /// Request.ticket_invalid.
    RequestReasonInvalid = "request.reason_invalid", status: [400];
    /// A reason is required: say what the access is for.
    RequestReasonMissing = "request.reason_missing", status: [400];
    /// … is not an RFC 3339 time (2026-11-24T09:00:00Z)
    RequestStartsAtInvalid = "request.starts_at_invalid", status: [400];
    /// The start … is in the past.
    RequestStartsAtPast = "request.starts_at_past", status: [400];
    /// A start can be scheduled at most 30 days ahead.
    RequestStartsAtTooFar = "request.starts_at_too_far", status: [400];
    /// A ticket reference is at most … printable characters.
    RequestTicketInvalid = "request.ticket_invalid", status: [400];
    /// A task id is at most 128 letters, digits and ._:/-.
    RequestTaskInvalid = "request.task_invalid", status: [400];
    /// An agent names the ticket or the task the access is for.
    RequestTaskRequired = "request.task_required", status: [400];
    /// No live grant of this task is the caller's to release.
    TaskNotFound = "task.not_found", status: [404];
    /// Tokens are signed only for the holder's own active grant on a `token` target.
    TokenNotAllowed = "token.not_allowed", status: [403];
    /// This grant's target issues no tokens.
    TokenNotATokenTarget = "token.not_a_token_target", status: [409];
    /// Only administrators of every entitlement, or a person about themselves, ask why someone was elevated.
    WhyNotAllowed = "why.not_allowed", status: [403];
    /// A time or range of `why` is not valid.
    WhyRangeInvalid = "why.range_invalid", status: [400];
    /// Campaign … is closed: its items can no longer be decided.
    CampaignClosed = "campaign.closed", status: [409];
    /// A decision this item cannot take (convert is for standing privilege whose holder and entitlement are known).
    CampaignDecisionInvalid = "campaign.decision_invalid", status: [400];
    /// A campaign's name, scope, reviewers, default action, deadline or reminder is not valid.
    CampaignInvalid = "campaign.invalid", status: [400];
    /// Item … is already decided.
    CampaignItemDecided = "campaign.item_decided", status: [409];
    /// No campaign item ….
    CampaignItemNotFound = "campaign.item_not_found", status: [404];
    /// Only the item's reviewer (or an administrator of every entitlement) decides it.
    CampaignItemNotYours = "campaign.item_not_yours", status: [403];
    /// Only administrators of every entitlement start, list and follow campaigns.
    CampaignNotAllowed = "campaign.not_allowed", status: [403];
    /// No campaign ….
    CampaignNotFound = "campaign.not_found", status: [404];
    /// Nobody reviews their own access.
    CampaignSelfReview = "campaign.self_review", status: [403];
    /// A campaign would have more items than one campaign may hold.
    CampaignTooLarge = "campaign.too_large", status: [400];
    /// Review … is already closed.
    ReviewClosed = "review.closed", status: [409];
    /// Review.not_found.
    ReviewCommentInvalid = "review.comment_invalid", status: [400];
    /// Closing a review needs a comment: say what you checked.
    ReviewCommentMissing = "review.comment_missing", status: [400];
    /// Only an approver or administrator of the entitlement may close its reviews.
    ReviewNotAllowed = "review.not_allowed", status: [403];
    /// No review ….
    ReviewNotFound = "review.not_found", status: [404];
    /// A break-glass review must be closed by someone other than the person who broke the glass.
    ReviewSelfClose = "review.self_close", status: [403];
    /// … may not close this review: ….
    ReviewSeparationOfDuties = "review.separation_of_duties", status: [403];
    /// Not found.
    RevokeReasonInvalid = "revoke.reason_invalid", status: [400];
    /// No such action.
    RouteNotFound = "route.not_found", status: [404];
    /// The service cannot reach its store (or another dependency) now; try again.
    ServiceUnavailable = "service.unavailable", status: [503];
    /// Your identity changed while you signed in; sign in again.
    SessionIdentityChanged = "session.identity_changed", status: [409];
    /// Only people sign in; workloads and agents use keys or token exchange.
    SessionNotAPerson = "session.not_a_person", status: [403];
    /// … is not an active identity here.
    SessionPrincipalInactive = "session.principal_inactive", status: [403];
    /// Demo.
    SessionPrincipalInvalid = "session.principal_invalid", status: [400];
    /// No such SSH target; give ?target= one of: ….
    SshTargetUnknown = "ssh.target_unknown", status: [404];
    /// The object kept changing while this was decided; try again.
    StoreBusy = "store.busy", status: [409];
    /// A concurrent change got there first; try again.
    StoreConflict = "store.conflict", status: [409];
    /// The store does not answer.
    StoreUnreachable = "store.unreachable", status: [503];
    /// … is already open.
    TicketAlreadyOpen = "ticket.already_open", status: [409];
    /// Ticket … is … (closed) in …; access is bound to an open ticket.
    TicketClosed = "ticket.closed", status: [400];
    /// Ticket … is assigned to …, not to … or one of their groups.
    TicketNotAssigned = "ticket.not_assigned", status: [403];
    /// … has no ticket ….
    TicketNotFound = "ticket.not_found", status: [400, 404];
    /// Ticket.not_found.
    TicketReasonInvalid = "ticket.reason_invalid", status: [400];
    /// Say why the ticket is reopened.
    TicketReasonMissing = "ticket.reason_missing", status: [400];
    /// … has a lookup API: reopen … there, and it is asked afresh.
    TicketReopenBySource = "ticket.reopen_by_source", status: [409];
    /// Needs Administer on every entitlement.
    TicketReopenNotAllowed = "ticket.reopen_not_allowed", status: [403];
    /// The ticket source did not answer, so the ticket cannot be checked; try again later.
    TicketUnavailable = "ticket.unavailable", status: [503];
    /// No ticket source owns …; give a ticket of a configured source.
    TicketUnknownSource = "ticket.unknown_source", status: [400];
    /// … is not a reference of ….
    TicketEventForeignReference = "ticket_event.foreign_reference", status: [400];
    /// Body.
    TicketEventInvalid = "ticket_event.invalid", status: [400];
    /// No webhook ticket source owns ….
    TicketEventNoSource = "ticket_event.no_source", status: [400];
    /// … is closed, and … only reports by webhook, so a report cannot reopen it; an administrator can (POST /v1/tickets/sources/…/tickets/…/reopen)
    TicketEventReopenRefused = "ticket_event.reopen_refused", status: [409];
    /// The event says … is open again, but … says it is not.
    TicketEventReopenUnconfirmed = "ticket_event.reopen_unconfirmed", status: [409];
    /// This event was already received; a repeat changes nothing.
    TicketEventReplayed = "ticket_event.replayed", status: [409];
    /// The event says … changed at …, before what … last reported (…); it is not applied.
    TicketEventStale = "ticket_event.stale", status: [409];
    /// The event does not say when the ticket changed (updated, or a signed timestamp)
    TicketEventTimeMissing = "ticket_event.time_missing", status: [400];
    /// The ticket event's signature or shared secret is missing or wrong.
    TicketEventUnauthenticated = "ticket_event.unauthenticated", status: [401];
    /// No ticket source ….
    TicketEventUnknownSource = "ticket_event.unknown_source", status: [404];
    /// … carries act: a delegated token is not exchanged again.
    TokenAlreadyDelegated = "token.already_delegated", status: [403];
    /// This token was issued for delegation: it is exchanged only with the acting agent's own token (actor_token)
    TokenDelegationNeedsActor = "token.delegation_needs_actor", status: [403];
    /// The subject's token does not consent to … acting for …: it needs may_act naming the agent, or an audience issued for delegation.
    TokenDelegationNotConsented = "token.delegation_not_consented", status: [403];
    /// This … token (jti …) was already exchanged; get a fresh one.
    TokenReplayed = "token.replayed", status: [403];
    /// Workers stopped and are being restarted: ….
    WorkerDown = "worker.down", status: [503];
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<ErrorCode> for &str {
    fn eq(&self, other: &ErrorCode) -> bool {
        *self == other.as_str()
    }
}

/// The catalogue of error codes as Markdown (`docs/errors.md`).
pub fn catalogue_markdown() -> String {
    let mut out = String::from(
        "# Error codes\n\n\
         Generated from `hourglass_core::ErrorCode` (`HOURGLASS_UPDATE_DOCS=1 cargo test -p \
         hourglass-core catalogue`); a test fails when this file and the code differ.\n\n\
         Every error is `application/problem+json` with a stable `code` to match on (the list \
         below), a `detail` safe to show, and for bad input the offending `field`. Nothing was \
         changed when an error is returned. The meaning is the message the code is sent with, \
         `…` standing for the parts that vary.\n\n| code | status | meaning |\n|---|---|---|\n",
    );
    for &c in ErrorCode::ALL {
        let statuses = c
            .statuses()
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "| `{}` | {statuses} | {} |\n",
            c.as_str(),
            c.about().trim().replace('|', "\\|")
        ));
    }
    out
}

/// Result with the core error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is malformed or out of bounds; nothing was changed.
    #[error("{message}")]
    Invalid {
        code: ErrorCode,
        field: &'static str,
        message: String,
    },
    /// The named object does not exist (or the caller may not know that it does).
    #[error("{message}")]
    NotFound { code: ErrorCode, message: String },
    /// The caller is authenticated but not allowed to do this.
    #[error("{message}")]
    Forbidden { code: ErrorCode, message: String },
    /// The object is not in a state that allows this (a second approval, a cancelled request).
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    /// A quota is used up: at most so many grants at once, or requests an hour.
    #[error("{message}")]
    Limited { code: ErrorCode, message: String },
    /// A system Hourglass asks before deciding (a ticket system) did not answer; nothing was
    /// changed and the caller may retry. The message names the system, never a credential.
    #[error("{message}")]
    Upstream { code: ErrorCode, message: String },
    /// A concurrent writer changed a row this commit expected unchanged. Engines retry.
    #[error("concurrent modification")]
    StoreConflict,
    /// A dependency (the store) cannot be reached now; the caller may retry.
    #[error("service unavailable")]
    Unavailable(String),
    /// A bug or an unexpected fault. The text is for the log only.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    pub fn invalid(code: ErrorCode, field: &'static str, message: impl fmt::Display) -> Self {
        Error::Invalid {
            code,
            field,
            message: message.to_string(),
        }
    }
    pub fn not_found(code: ErrorCode, message: impl fmt::Display) -> Self {
        Error::NotFound {
            code,
            message: message.to_string(),
        }
    }
    pub fn forbidden(code: ErrorCode, message: impl fmt::Display) -> Self {
        Error::Forbidden {
            code,
            message: message.to_string(),
        }
    }
    pub fn conflict(code: ErrorCode, message: impl fmt::Display) -> Self {
        Error::Conflict {
            code,
            message: message.to_string(),
        }
    }
    pub fn limited(code: ErrorCode, message: impl fmt::Display) -> Self {
        Error::Limited {
            code,
            message: message.to_string(),
        }
    }
    pub fn upstream(code: ErrorCode, message: impl fmt::Display) -> Self {
        Error::Upstream {
            code,
            message: message.to_string(),
        }
    }
    pub fn internal(message: impl fmt::Display) -> Self {
        Error::Internal(message.to_string())
    }

    /// The stable code clients match on.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Invalid { code, .. }
            | Error::NotFound { code, .. }
            | Error::Forbidden { code, .. }
            | Error::Conflict { code, .. }
            | Error::Limited { code, .. }
            | Error::Upstream { code, .. } => *code,
            Error::StoreConflict => ErrorCode::StoreConflict,
            Error::Unavailable(_) => ErrorCode::ServiceUnavailable,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod catalogue {
    use super::ErrorCode;

    /// `docs/errors.md` is the list the code has. Regenerate with
    /// `HOURGLASS_UPDATE_DOCS=1 cargo test -p hourglass-core catalogue`.
    #[test]
    fn the_error_catalogue_is_checked_in_and_current() {
        crate::assert_generated_doc_current("errors.md", &super::catalogue_markdown());
    }

    #[test]
    fn every_code_is_unique_and_names_a_noun_and_what_went_wrong() {
        let mut seen = std::collections::BTreeSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert!(c.as_str().contains('.') || c == ErrorCode::Internal, "{c}");
            assert!(!c.statuses().is_empty());
        }
    }
}
