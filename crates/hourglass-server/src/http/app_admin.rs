//! The web app's administration pages, for a person who may administer every entitlement: the
//! audit log (filtered, with the chain's head and a verification), live and overdue access
//! (revoke), identities with their keys (suspend, resume, offboard, a new key shown once), the
//! hygiene and standing-privilege reports, and policy explain. The engine checks the authority
//! of each use case; the pages only call and show.

use askama::Template;
use axum::{
    extract::{FromRequestParts, Path, Query, State},
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use hourglass_core::{Error, Timestamp, engine::AuditSearch, grant::GrantState};
use secrecy::ExposeSecret;

use super::{
    Shared,
    app::{Chrome, MessagePage, Person, Posted, done, field, render, text},
};

/// Audit events the log page reads back from the head at most.
const SCANNED: u64 = 2_000;

/// An administrator (of every entitlement) on a page, as an extractor; anyone else gets the
/// page that says they are not one.
pub(super) struct Admin(pub(super) Person);

impl FromRequestParts<Shared> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, Response> {
        let p = Person::from_request_parts(parts, app).await?;
        if let Err(e) = app
            .engine
            .require_admin_of_all(&p.caller, hourglass_core::ErrorCode::AdminNotAllowed)
        {
            let chrome = app.chrome(&p, "Administration", "admin", false).await;
            return Err(render(
                StatusCode::FORBIDDEN,
                &MessagePage {
                    chrome,
                    text: e.to_string(),
                    back: "/".into(),
                    error: true,
                },
            ));
        }
        Ok(Admin(p))
    }
}

pub(super) struct EventRow {
    seq: u64,
    at: String,
    actor: String,
    action: String,
    subject: String,
    details: String,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct AuditFilter {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    since: String,
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
pub(super) struct AuditPage {
    chrome: Chrome,
    section: &'static str,
    head_seq: u64,
    head_hash: String,
    filter: AuditFilter,
    filtered: bool,
    scanned: u64,
    events: Vec<EventRow>,
}

/// `GET /admin`: the latest audit events, filtered by who, what about, action and time.
pub(super) async fn audit(
    State(app): State<Shared>,
    Query(filter): Query<AuditFilter>,
    Admin(p): Admin,
) -> Response {
    let since = match filter.since.trim() {
        "" => None,
        s => match Timestamp::parse_rfc3339(s) {
            Some(t) => Some(t),
            None => {
                let chrome = app.chrome(&p, "Audit log", "admin", false).await;
                return render(
                    StatusCode::BAD_REQUEST,
                    &MessagePage {
                        chrome,
                        text: format!("since: {s:?} is not an RFC 3339 time"),
                        back: "/admin".into(),
                        error: true,
                    },
                );
            }
        },
    };
    let search = AuditSearch {
        actor: filter.actor.clone(),
        subject: filter.subject.clone(),
        action: filter.action.clone(),
        since,
    };
    let found = match app
        .engine
        .search_audit(&p.caller, &search, SCANNED, 500)
        .await
    {
        Ok(f) => f,
        Err(e) => return super::ApiError(e).into_response(),
    };
    let rows: Vec<EventRow> = found
        .events
        .into_iter()
        .map(|e| EventRow {
            seq: e.seq,
            at: e.record.at.to_string(),
            actor: e.record.actor,
            action: e.record.action,
            subject: e.record.subject,
            details: e
                .record
                .details
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" · "),
        })
        .collect();
    let filtered = !(filter.actor.is_empty()
        && filter.subject.is_empty()
        && filter.action.is_empty()
        && filter.since.is_empty());
    let chrome = app.chrome(&p, "Audit log", "admin", false).await;
    render(
        StatusCode::OK,
        &AuditPage {
            chrome,
            section: "audit",
            head_seq: found.head_seq,
            head_hash: found.head_hash,
            filter,
            filtered,
            scanned: found.scanned,
            events: rows,
        },
    )
}

/// `POST /admin/verify`: verifies the whole chain now and says what it found.
pub(super) async fn verify(
    State(app): State<Shared>,
    Posted { person: p, .. }: Posted,
) -> Response {
    let (text, error) = match app.engine.verify_audit(&p.caller).await {
        Ok((n, head, None)) => (
            format!("The audit chain is whole: {n} events, head {head}."),
            false,
        ),
        Ok((n, _, Some(b))) => (
            format!(
                "The audit chain is BROKEN at event {}: {} ({n} events verified before it).",
                b.seq, b.reason
            ),
            true,
        ),
        Err(e) => return done(&app, &p, Err(e), "/admin", "admin").await,
    };
    let chrome = app.chrome(&p, "Audit chain", "admin", false).await;
    render(
        if error {
            StatusCode::CONFLICT
        } else {
            StatusCode::OK
        },
        &MessagePage {
            chrome,
            text,
            back: "/admin".into(),
            error,
        },
    )
}

pub(super) struct LiveRow {
    id: String,
    principal: String,
    entitlement: String,
    state: String,
    due: String,
    break_glass: bool,
}

#[derive(Template)]
#[template(path = "admin_grants.html")]
pub(super) struct GrantsPage {
    chrome: Chrome,
    section: &'static str,
    live: Vec<LiveRow>,
    overdue: Vec<LiveRow>,
}

/// `GET /admin/grants`: everyone's live access, and revocations past their due time.
pub(super) async fn grants(State(app): State<Shared>, Admin(p): Admin) -> Response {
    let now = app.engine.clock().now();
    let mut live = Vec::new();
    let mut overdue = Vec::new();
    for state in [
        GrantState::Provisioning,
        GrantState::Active,
        GrantState::Revoking,
    ] {
        let gs = match app.engine.list_grants(&p.caller, Some(state), 500).await {
            Ok(g) => g,
            Err(e) => return super::ApiError(e).into_response(),
        };
        for g in gs {
            let late = state == GrantState::Revoking && g.revoke_due_at.is_some_and(|d| d < now);
            let row = LiveRow {
                id: g.id.to_string(),
                principal: g.principal.to_string(),
                entitlement: g.entitlement.to_string(),
                state: g.state.as_str().to_owned(),
                due: g.revoke_due_at.unwrap_or(g.expires_at).to_string(),
                break_glass: g.break_glass,
            };
            if late {
                overdue.push(row);
            } else {
                live.push(row);
            }
        }
    }
    let chrome = app.chrome(&p, "Live access", "admin", true).await;
    render(
        StatusCode::OK,
        &GrantsPage {
            chrome,
            section: "grants",
            live,
            overdue,
        },
    )
}

/// `POST /admin/grants/{id}/revoke`.
pub(super) async fn revoke(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Posted { person: p, form: f }: Posted,
) -> Response {
    let reason = text(&f, "reason");
    let r = app
        .engine
        .revoke(&p.caller, &id, (!reason.is_empty()).then_some(reason))
        .await
        .map(|_| ());
    done(&app, &p, r, "/admin/grants", "admin").await
}

pub(super) struct IdentityRow {
    name: String,
    kind: String,
    owner: Option<String>,
    owner_gone: bool,
    groups: String,
    status: String,
    status_reason: Option<String>,
    keys: Vec<String>,
    live_grants: usize,
    /// The identity-provider account the person signs in with, once bound.
    sign_in: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_identities.html")]
pub(super) struct IdentitiesPage {
    chrome: Chrome,
    section: &'static str,
    identities: Vec<IdentityRow>,
}

/// `GET /admin/identities`: every identity with its owner, keys and live grants.
pub(super) async fn identities(State(app): State<Shared>, Admin(p): Admin) -> Response {
    let inventory = match app.engine.inventory(&p.caller).await {
        Ok(i) => i,
        Err(e) => return super::ApiError(e).into_response(),
    };
    let now = app.engine.clock().now();
    let identities = inventory
        .into_iter()
        .map(|e| {
            let i = e.identity.principal;
            IdentityRow {
                name: i.id.to_string(),
                kind: i.kind.as_str().to_owned(),
                owner: i.owner.clone(),
                owner_gone: e.owner_status.is_some(),
                groups: i.groups.join(", "),
                status: i.status.as_str().to_owned(),
                status_reason: e.identity.status_reason.clone(),
                keys: e
                    .keys
                    .iter()
                    .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|x| x > now))
                    .map(|k| {
                        format!(
                            "{}{}",
                            k.prefix.clone().unwrap_or_else(|| k.id.to_string()),
                            k.expires_at
                                .map(|x| format!(" (until {x})"))
                                .unwrap_or_default()
                        )
                    })
                    .collect(),
                live_grants: e.live_grants.len(),
                sign_in: e.identity.sign_in_subject.clone(),
            }
        })
        .collect();
    let chrome = app.chrome(&p, "Identities", "admin", false).await;
    render(
        StatusCode::OK,
        &IdentitiesPage {
            chrome,
            section: "identities",
            identities,
        },
    )
}

/// `POST /admin/identities/{name}/{suspend|resume|offboard}`.
pub(super) async fn identity_status(
    State(app): State<Shared>,
    Path((name, what)): Path<(String, String)>,
    Posted { person: p, form: f }: Posted,
) -> Response {
    let reason = text(&f, "reason");
    let r = match what.as_str() {
        "suspend" => app
            .engine
            .set_identity_active(
                &p.caller,
                &name,
                false,
                (!reason.is_empty()).then_some(reason),
            )
            .await
            .map(|_| ()),
        "resume" => app
            .engine
            .set_identity_active(&p.caller, &name, true, None)
            .await
            .map(|_| ()),
        "offboard" => app
            .engine
            .offboard(&p.caller, &name, &reason)
            .await
            .map(|_| ()),
        "unbind" => app
            .engine
            .unbind_sign_in(&p.caller, &name)
            .await
            .map(|_| ()),
        _ => Err(Error::not_found(
            hourglass_core::ErrorCode::RouteNotFound,
            "no such action",
        )),
    };
    done(&app, &p, r, "/admin/identities", "admin").await
}

#[derive(Template)]
#[template(path = "key.html")]
pub(super) struct KeyPage {
    chrome: Chrome,
    identity: String,
    key_id: String,
    expires_at: String,
    secret: String,
}

/// `POST /admin/identities/{name}/keys`: a new API key, shown once on a `no-store` page.
pub(super) async fn new_key(
    State(app): State<Shared>,
    Path(name): Path<String>,
    Posted { person: p, form: f }: Posted,
) -> Response {
    let expires = text(&f, "expires");
    match app
        .engine
        .create_key(
            &p.caller,
            &name,
            field(&f, "expires").and(Some(expires.as_str())),
        )
        .await
    {
        Ok(k) => {
            let chrome = app.chrome(&p, "A new key", "admin", false).await;
            render(
                StatusCode::OK,
                &KeyPage {
                    chrome,
                    identity: name,
                    key_id: k.key.id.to_string(),
                    expires_at: k
                        .key
                        .expires_at
                        .map_or_else(|| "never".to_owned(), |x| x.to_string()),
                    secret: k.secret.expose_secret().to_owned(),
                },
            )
        }
        Err(e) => done(&app, &p, Err(e), "/admin/identities", "admin").await,
    }
}

pub(super) struct StandingView {
    target: String,
    standing: Vec<(String, String)>,
    just_in_time: usize,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_reports.html")]
pub(super) struct ReportsPage {
    chrome: Chrome,
    section: &'static str,
    findings: Vec<(String, String, String)>,
    standing: Vec<StandingView>,
}

/// `GET /admin/reports`: identity hygiene, and standing privilege in every target (asked now).
pub(super) async fn reports(State(app): State<Shared>, Admin(p): Admin) -> Response {
    let findings = match app.engine.identity_report(&p.caller, 90).await {
        Ok(f) => f
            .into_iter()
            .map(|f| (f.identity, f.finding.to_owned(), f.detail))
            .collect(),
        Err(e) => return super::ApiError(e).into_response(),
    };
    let standing = match app.engine.standing(&p.caller).await {
        Ok(s) => s
            .into_iter()
            .map(|t| StandingView {
                target: t.target,
                standing: t
                    .standing
                    .into_iter()
                    .map(|s| (s.holder, s.privilege))
                    .collect(),
                just_in_time: t.just_in_time,
                error: t.error,
            })
            .collect(),
        Err(e) => return super::ApiError(e).into_response(),
    };
    let chrome = app.chrome(&p, "Reports", "admin", false).await;
    render(
        StatusCode::OK,
        &ReportsPage {
            chrome,
            section: "reports",
            findings,
            standing,
        },
    )
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct EvidenceQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// `GET /admin/reports/evidence?from=YYYY-MM-DD&to=YYYY-MM-DD`: the printable evidence report
/// of the days from `from` up to and including `to` (UTC).
pub(super) async fn evidence(
    State(app): State<Shared>,
    Admin(p): Admin,
    Query(q): Query<EvidenceQuery>,
) -> Response {
    let day = |s: &str, field: &'static str, next: bool| {
        Timestamp::parse_rfc3339(&format!("{}T00:00:00Z", s.trim()))
            .map(|t| if next { t.plus_millis(86_400_000) } else { t })
            .ok_or_else(|| {
                Error::invalid(
                    hourglass_core::ErrorCode::WhyRangeInvalid,
                    field,
                    "a day such as 2026-10-01",
                )
            })
    };
    let scope = match (day(&q.from, "from", false), day(&q.to, "to", true)) {
        (Ok(from), Ok(to)) => crate::evidence::Scope {
            from,
            to,
            principal: None,
            target: None,
            entitlement: None,
        },
        (Err(e), _) | (_, Err(e)) => {
            return done(&app, &p, Err(e), "/admin/reports", "admin").await;
        }
    };
    match crate::evidence::build(&app, &p.caller, &scope, crate::evidence::Format::Html).await {
        Ok((w, e)) => super::export_response(&w, e),
        Err(e) => done(&app, &p, Err(e), "/admin/reports", "admin").await,
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ExplainQuery {
    #[serde(default)]
    principal: String,
    #[serde(default)]
    access: String,
}

#[derive(Template)]
#[template(path = "admin_explain.html")]
pub(super) struct ExplainPage {
    chrome: Chrome,
    section: &'static str,
    principal: String,
    access: String,
    error: Option<String>,
    rows: Vec<(String, bool, Vec<String>)>,
}

/// `GET /admin/explain?principal=…&access=…`: how policy judges someone on something now.
pub(super) async fn explain(
    State(app): State<Shared>,
    Query(q): Query<ExplainQuery>,
    Admin(p): Admin,
) -> Response {
    let (mut rows, mut error) = (Vec::new(), None);
    let mut status = StatusCode::OK;
    if !q.principal.trim().is_empty() || !q.access.trim().is_empty() {
        match app.engine.explain(&p.caller, &q.principal, &q.access).await {
            Ok(x) => {
                rows = x
                    .into_iter()
                    .map(|e| {
                        (
                            e.action.as_str().to_owned(),
                            e.decision.allowed,
                            e.decision.policy_ids,
                        )
                    })
                    .collect();
            }
            Err(e @ Error::Invalid { .. }) => {
                status = StatusCode::BAD_REQUEST;
                error = Some(e.to_string());
            }
            Err(e) => return super::ApiError(e).into_response(),
        }
    }
    let chrome = app.chrome(&p, "Explain a decision", "admin", false).await;
    render(
        status,
        &ExplainPage {
            chrome,
            section: "explain",
            principal: q.principal,
            access: q.access,
            error,
            rows,
        },
    )
}

#[derive(serde::Deserialize)]
pub(super) struct WhyPageQuery {
    #[serde(default)]
    principal: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    at: String,
}

#[derive(Template)]
#[template(path = "admin_why.html")]
pub(super) struct WhyPage {
    chrome: Chrome,
    section: &'static str,
    principal: String,
    target: String,
    at: String,
    error: Option<String>,
    answer: Option<hourglass_api::WhyView>,
}

/// `GET /admin/why?principal=…&target=…&at=…`: every elevated state at that moment, with its
/// story from the audit chain.
pub(super) async fn why(
    State(app): State<Shared>,
    Query(q): Query<WhyPageQuery>,
    Admin(p): Admin,
) -> Response {
    let (mut answer, mut error) = (None, None);
    let mut status = StatusCode::OK;
    if !q.at.trim().is_empty() {
        let question = hourglass_core::Timestamp::parse_rfc3339(q.at.trim())
            .ok_or_else(|| {
                Error::invalid(
                    hourglass_core::ErrorCode::WhyRangeInvalid,
                    "at",
                    format!("{:?} is not an RFC 3339 time", q.at),
                )
            })
            .map(|at| hourglass_core::engine::WhyQuestion {
                principal: Some(q.principal.clone()).filter(|s| !s.trim().is_empty()),
                target: Some(q.target.clone()).filter(|s| !s.trim().is_empty()),
                entitlement: None,
                from: Some(at),
                to: None,
            });
        let result = match question {
            Ok(question) => app.engine.why(&p.caller, question).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(w) => answer = Some(crate::views::why(&w)),
            Err(e @ Error::Invalid { .. }) => {
                status = StatusCode::BAD_REQUEST;
                error = Some(e.to_string());
            }
            Err(e) => return super::ApiError(e).into_response(),
        }
    }
    let chrome = app.chrome(&p, "Why elevated", "admin", false).await;
    render(
        status,
        &WhyPage {
            chrome,
            section: "why",
            principal: q.principal,
            target: q.target,
            at: q.at,
            error,
            answer,
        },
    )
}

super::app::pages!(
    AuditPage,
    GrantsPage,
    IdentitiesPage,
    KeyPage,
    ReportsPage,
    ExplainPage,
    WhyPage,
);
