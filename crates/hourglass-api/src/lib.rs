//! Hourglass wire types: what the HTTP API accepts and returns, shared by the server and the
//! typed client. Times are RFC 3339 strings, durations human (`30m`), ids prefixed (`req_…`).
//! Errors are RFC 9457 `application/problem+json` with a stable `code` and the offending field.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod enums;
mod identity;
pub use enums::{
    AccessKind, ApprovalVia, CampaignScope, CampaignState, DefaultAction, GrantState, ItemDecision,
    ItemWork, PrincipalKind, PrincipalStatus, RequestState, ReviewState, ToolOutcome, Verdict,
};
pub use identity::{
    CreateIdentity, CreateKey, IdentityFinding, IdentityReport, IdentityStatusBody, IdentityView,
    IssuedKeyView, KeyView, OffboardView, RotateKey, TokenError, TokenResponse,
};

/// `POST /v1/requests`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// An entitlement (`target/name`), or a task profile's name: all its entitlements are
    /// granted together, and revoked together.
    #[schema(
        pattern = r"^[A-Za-z0-9._@/-]{1,128}$",
        min_length = 1,
        max_length = 128
    )]
    pub entitlement: String,
    /// `30m`, `2h`, `1h30m`; the entitlement's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = r"^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
        min_length = 2,
        max_length = 32
    )]
    pub duration: Option<String>,
    /// What the access is for.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// The task the access is for: an id the asker gives (`INC-7-triage`; letters, digits and
    /// `._:/-`, at most 128). An agent names its ticket or its task; every grant of a task can
    /// be released together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = r"^[A-Za-z0-9._:/-]{1,128}$",
        min_length = 1,
        max_length = 128
    )]
    pub task: Option<String>,
    /// The requester's public key (one OpenSSH line, `ssh-ed25519 AAAA…`), for entitlements
    /// whose connector certifies a key (SSH certificates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// An emergency: granted at once with no approval where a `BreakGlass` policy permits,
    /// capped in duration, alerted at critical severity, and left with an open review.
    #[serde(default, skip_serializing_if = "is_false")]
    pub break_glass: bool,
    /// A scheduled start (RFC 3339, at most 30 days ahead); absent: the grant starts when
    /// approved. The window is `[starts_at, starts_at + duration)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub starts_at: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `POST /v1/grants/{id}/extend`: ask for more time on an active grant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// How much longer: `30m`, `1h`. The grant's total stays within its maximum.
    #[schema(
        pattern = r"^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
        min_length = 2,
        max_length = 32
    )]
    pub by: String,
    /// Why the access is needed longer.
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// `POST /v1/requests/{id}/approve`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `POST /v1/requests/{id}/deny`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DenyBody {
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// `POST /v1/grants/{id}/revoke`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One decision on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalView {
    /// A principal name, or `policy` for an automatic approval.
    pub approver: String,
    pub verdict: Verdict,
    pub via: ApprovalVia,
    /// The policies that determined the decision.
    pub policy_ids: Vec<String>,
    pub policy_hash: String,
    pub comment: Option<String>,
    pub at: String,
}

/// A request, with why it is where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    pub requester: String,
    /// The task it belongs to, when the asker gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The agents that asked for the requester, outermost first (`support-bot` in "support-bot
    /// for alice"); absent when the requester asked themselves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acting: Vec<String>,
    /// The entitlement or profile asked for.
    pub entitlement: String,
    #[serde(default = "entitlement_kind")]
    pub kind: AccessKind,
    pub duration: String,
    pub reason: String,
    pub ticket: Option<String>,
    pub state: RequestState,
    pub state_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// When a pending request expires undecided.
    pub decide_by: String,
    /// The policy set that judged eligibility.
    pub policy_hash: String,
    pub grant_id: Option<String>,
    /// Granted through break-glass (no approval; see its review).
    #[serde(default)]
    pub break_glass: bool,
    /// The scheduled start, if one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// For an extension request: the grant it lengthens (by `duration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Present on single-request reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<Vec<ApprovalView>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_required: Option<u32>,
    /// The (first) grant, on single-request reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantView>,
    /// Every grant the request opened (one per entitlement of a profile), on single reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<GrantView>>,
}

fn entitlement_kind() -> AccessKind {
    AccessKind::Entitlement
}

/// A grant: the elevated state in a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    pub id: String,
    pub request_id: String,
    pub principal: String,
    pub entitlement: String,
    pub target: String,
    pub state: GrantState,
    pub starts_at: String,
    pub expires_at: String,
    pub activated_at: Option<String>,
    pub revoke_due_at: Option<String>,
    pub ended_at: Option<String>,
    pub end_reason: Option<String>,
    /// Whether the grant issued a credential (fetch it once from `/credential`).
    pub credential_issued: bool,
    pub credential_fingerprint: Option<String>,
    #[serde(default)]
    pub break_glass: bool,
}

/// The review of one break-glass use, closed by a second person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewView {
    pub id: String,
    pub request_id: String,
    pub grant_id: String,
    /// Who broke the glass.
    pub principal: String,
    /// The entitlement or profile broken into.
    pub entitlement: String,
    pub kind: AccessKind,
    /// The break-glass reason.
    pub reason: String,
    pub state: ReviewState,
    pub opened_at: String,
    pub closed_at: Option<String>,
    pub closed_by: Option<String>,
    pub comment: Option<String>,
}

/// `POST /v1/campaigns`: start an access review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartCampaign {
    /// 1-200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    pub scope: CampaignScope,
    /// `manager`, `owner`, `administrators` or `group:<name>`; the administrators review what
    /// the rule gives nobody for.
    #[schema(example = "manager")]
    pub reviewers: String,
    pub default_action: DefaultAction,
    /// From now to the deadline: 1h to 366d (`14d`).
    #[schema(example = "14d")]
    #[schema(
        pattern = r"^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
        min_length = 2,
        max_length = 32
    )]
    pub duration: String,
    /// Reviewers with undecided items are reminded this long before the deadline (`3d`).
    #[serde(default)]
    pub remind_before: Option<String>,
}

/// How far an access review has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CampaignProgress {
    pub total: u64,
    pub decided: u64,
    pub keep: u64,
    pub remove: u64,
    pub convert: u64,
    /// Decided by the deadline's default action.
    pub by_default: u64,
    /// Removals of standing privilege queued or being retried in their targets.
    pub work_pending: u64,
    /// Removals given up: to be done by hand.
    pub work_failed: u64,
}

/// An access review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub scope: CampaignScope,
    pub reviewers: String,
    pub default_action: DefaultAction,
    pub state: CampaignState,
    pub created_by: String,
    pub created_at: String,
    pub deadline: String,
    pub remind_at: Option<String>,
    pub closed_at: Option<String>,
    pub progress: Option<CampaignProgress>,
}

/// One item of an access review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CampaignItemView {
    pub id: String,
    pub campaign: String,
    pub kind: CampaignScope,
    /// Who may ask, who holds, or the identity itself.
    pub principal: Option<String>,
    /// The entitlement or profile.
    pub access: Option<String>,
    pub target: Option<String>,
    pub holder: Option<String>,
    pub privilege: Option<String>,
    /// `person:<name>`, `group:<name>` or `administrators`.
    pub reviewer: String,
    pub decision: Option<ItemDecision>,
    /// A principal, or `deadline`.
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub note: Option<String>,
    pub work: ItemWork,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// `GET /v1/campaigns/{id}`: the campaign and a page of its items (the caller's own, for a
/// reviewer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CampaignDetails {
    pub campaign: CampaignView,
    pub items: Vec<CampaignItemView>,
}

/// `POST /v1/campaigns/items/{id}/decide`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideItem {
    pub decision: ItemDecision,
    /// Up to 2,000 characters.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub note: Option<String>,
}

/// `POST /v1/admin/policies/reload`: what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReloadView {
    pub old_hash: String,
    pub new_hash: String,
    pub changed: bool,
    /// Pending requests the new set no longer permits, now cancelled.
    pub cancelled_requests: Vec<String>,
    /// Grants that had not activated yet and that the new set denies, now being revoked.
    pub revoked_grants: Vec<String>,
}

/// `POST /v1/reviews/{id}/close`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseReviewBody {
    /// What the reviewer checked; required.
    #[schema(min_length = 1, max_length = 2000)]
    pub comment: String,
}

/// `GET /v1/grants/{id}/credential`: shown once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialView {
    pub grant_id: String,
    pub credential: String,
    pub expires_at: String,
}

/// A list of items.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
}

/// One audit event, as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// Ordered key/value pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub details: Vec<(String, String)>,
    pub prev_hash: String,
    pub hash: String,
}

/// An RFC 9457 problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `request.duration_exceeds_max`.
    pub code: String,
    /// The offending field of the input, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The id of this HTTP exchange: every server log line of it carries the same `trace_id`,
    /// and the response carries it as `x-request-id`. (Not an access request's id.)
    #[serde(default, alias = "request_id", skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// The media type of problems.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// `GET /v1/whoami`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub principal: String,
    pub kind: String,
    pub groups: Vec<String>,
    /// The person an agent acts for (its token's `act` delegation), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_for: Option<String>,
}

/// `GET /v1/catalogue`: one thing the caller may ask for now, and what would happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OfferView {
    /// The entitlement (`target/name`) or profile.
    pub name: String,
    /// `entitlement` or `profile`.
    pub kind: String,
    pub description: String,
    /// `low`, `medium`, `high` or `critical`.
    pub risk: String,
    pub default_duration: String,
    pub max_duration: String,
    /// What asking would do: `at_once` (approved by policy for up to `auto_up_to`),
    /// `needs_approval`, or `needs_ticket` (policy permits asking only with an open ticket).
    pub outcome: String,
    /// Approved at once by policy for durations up to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_up_to: Option<String>,
    /// Distinct approvals needed when it is not approved at once.
    pub approvals_required: u32,
    /// Policy permits break-glass for it.
    pub break_glass: bool,
    /// The request needs the person's SSH public key.
    pub needs_public_key: bool,
}

/// `POST /v1/explain`: what asking for something would do for the caller, and why.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainBody {
    /// The entitlement (`target/name`) or profile.
    #[schema(
        pattern = r"^[A-Za-z0-9._@/-]{1,128}$",
        min_length = 1,
        max_length = 128
    )]
    pub access: String,
    /// As in a request; the default duration when absent.
    #[serde(default)]
    #[schema(
        pattern = r"^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
        min_length = 2,
        max_length = 32
    )]
    pub duration: Option<String>,
    /// A ticket reference, taken as open and assigned to the caller.
    #[serde(default)]
    pub ticket: Option<String>,
}

/// One policy decision: allowed or not, and the policies that determined it (empty for a
/// default deny).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecisionView {
    pub allowed: bool,
    pub policy_ids: Vec<String>,
}

/// The answer of `POST /v1/explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExplainView {
    pub access: String,
    pub duration: String,
    pub max_duration: String,
    /// `at_once`, `needs_approval`, `needs_ticket` or `refused`.
    pub outcome: String,
    /// Why, in one sentence.
    pub detail: String,
    /// Policy's `Request` (may ask at all).
    pub eligible: DecisionView,
    /// Policy's `AutoApprove` (granted without a person).
    pub auto_approve: DecisionView,
    pub approvals_required: u32,
    /// The policy set the decisions were made under.
    pub policy_hash: String,
}

/// `POST /v1/grants/{id}/token`: an Hourglass access token for an active grant on a `token`
/// target, signed now, valid until the grant ends (`act` names the agent that asked for the
/// holder). Verified offline against `/.well-known/jwks.json`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantTokenView {
    pub grant_id: String,
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// When it stops being valid: the grant's end.
    pub expires_at: String,
    /// Its `aud`: the service that accepts it.
    pub audience: String,
}

/// One line of an elevated state's story: one audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoryLineView {
    pub seq: u64,
    pub at: String,
    pub action: String,
    pub actor: String,
    pub subject: String,
    /// Ordered key/value pairs, as the audit records them.
    #[schema(value_type = Vec<Vec<String>>)]
    pub details: Vec<(String, String)>,
}

/// One elevated state: a grant while it was active, and why it existed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ElevationView {
    pub grant_id: String,
    pub principal: String,
    pub entitlement: String,
    pub target: String,
    pub request_id: String,
    /// The agents that asked for the principal, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acting: Vec<String>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    pub break_glass: bool,
    /// When the access was confirmed in the target.
    pub active_from: String,
    /// When its revocation was proven (absent: still elevated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    pub story: Vec<StoryLineView>,
}

/// `GET /v1/why`: every elevated state in scope, each with its story, and the chain head that
/// covers every line (`hourglass audit verify` checks them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhyView {
    pub head_seq: u64,
    pub head_hash: String,
    pub elevated: Vec<ElevationView>,
}

/// One overdue revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OverdueView {
    pub grant_id: String,
    pub principal: String,
    pub entitlement: String,
    /// When it was due.
    pub due_at: String,
    /// How long past due, in seconds.
    pub overdue_secs: i64,
}

/// `GET /v1/reports/revocation-debt`: one target's revocation debt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevocationDebtView {
    pub target: String,
    /// Revocations due longer than `server.overdue_after` ago and not yet proven.
    pub overdue: Vec<OverdueView>,
    /// Leftovers the last reconciliation found and could not remove.
    pub leftovers: u64,
}

/// `POST /v1/tasks/release`: end every live grant of a task that is the caller's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseTaskBody {
    /// The task id its requests named.
    #[schema(
        pattern = r"^[A-Za-z0-9._:/-]{1,128}$",
        min_length = 1,
        max_length = 128
    )]
    pub task: String,
    /// Why it ends (`task done`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/agents/tool-calls`: an agent host's record of one MCP tool call
/// (`agent.tool_called`; `hourglass mcp` sends one per call). Never arguments or secrets.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolCallBody {
    /// One of the MCP tools; ignored when `outcome` is `unknown`.
    pub tool: String,
    /// `ok`, `refused`, `invalid` or `unknown`.
    #[schema(value_type = ToolOutcome)]
    pub outcome: String,
    /// The refusal's code.
    #[serde(default)]
    pub code: Option<String>,
    /// The request or grant the call touched.
    #[serde(default)]
    pub subject: Option<String>,
}

/// One difference between a target and the ledger, found by the reconciler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DriftView {
    pub target: String,
    /// `leftover` (exists in the target, no live grant explains it; removed) or `missing` (an
    /// active grant whose access is gone from the target).
    pub kind: String,
    /// The name in the target (role, account, membership).
    pub name: String,
    pub grant_id: String,
    /// The grant's state in the ledger; absent when the ledger never knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_state: Option<String>,
    pub removed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /v1/admin/reconcile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconcileView {
    /// Targets whose connector could list what Hourglass created there.
    pub targets_checked: Vec<String>,
    pub drift: Vec<DriftView>,
    /// Targets that could not be checked: `[target, reason]`.
    #[schema(value_type = Vec<Vec<String>>)]
    pub errors: Vec<(String, String)>,
}

/// Privilege held outside any grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StandingView {
    pub target: String,
    pub holder: String,
    pub privilege: String,
}

/// One target in `GET /v1/reports/standing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetStandingView {
    pub target: String,
    pub standing: Vec<StandingView>,
    /// Holdings explained by a live grant.
    pub just_in_time: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/session`: who the session cookie stands for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    pub principal: String,
    /// Whether the sign-in had a second factor.
    pub mfa: bool,
    /// How the person signed in (`demo`, `oidc`).
    pub via: String,
    pub expires_at: String,
    /// What a page sends back as `X-CSRF-Token` (or the form's `csrf_token`) with every change.
    pub csrf_token: String,
}

/// `POST /v1/tickets/sources/{name}/tickets/{reference}/reopen`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReopenTicketBody {
    /// Why the closed ticket is open again (audited).
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// `POST /v1/tickets/events` and `/v1/tickets/sources/{name}/events`: what an event changed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TicketEventView {
    /// The ticket source that owns the reference.
    pub source: String,
    pub reference: String,
    pub open: bool,
    pub status: String,
    /// Grants moved to revocation because the ticket closed.
    pub revoked: Vec<String>,
    /// Pending or approved requests cancelled because the ticket closed.
    pub cancelled: Vec<String>,
}

/// One change to a request or grant the caller may see: an event of `GET /v1/events`
/// (`event: change`, `id:` its `seq`). Read the object itself for what it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChangeView {
    /// The audit sequence number; resume after it (`Last-Event-ID`, or `?after=`).
    pub seq: u64,
    pub at: String,
    /// What happened: `request.created`, `request.approved`, `grant.activated`, `grant.revoked`, …
    pub action: String,
    /// The request (`req_…`) or grant (`grt_…`) it happened to.
    pub subject: String,
}
