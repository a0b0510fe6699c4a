//! Evidence an auditor accepts: the elevated windows of a period as JSON or CSV, with the
//! SHA-256 of exactly what was sent, the chain head it was read under, and a manifest of both
//! signed with Hourglass's key (verified offline against `/.well-known/jwks.json`).

use hourglass_core::{Error, Timestamp, engine::Caller, engine::Windows};
use hourglass_tokens::Signer;

/// What an export is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
    /// The printable report ([`crate::report`]).
    Html,
}

impl Format {
    pub(crate) fn parse(s: Option<&str>) -> Option<Self> {
        match s {
            None | Some("json") => Some(Format::Json),
            Some("csv") => Some(Format::Csv),
            Some("html") => Some(Format::Html),
            Some(_) => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Html => "html",
        }
    }
}

pub(crate) use crate::report::Scope;

/// An export, ready to send.
pub(crate) struct Export {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// Hex SHA-256 of `body`.
    pub sha256: String,
    /// The signed manifest, when this server signs tokens.
    pub manifest: Option<String>,
}

/// The columns of an elevation export, in order.
const EXPORT_COLUMNS: [&str; 16] = [
    "grant_id",
    "principal",
    "acting",
    "entitlement",
    "target",
    "requested_at",
    "reason",
    "ticket",
    "approved_via",
    "approvers",
    "break_glass",
    "active_from",
    "active_until",
    "end_reason",
    "revoke_due_at",
    "revocation_lag_ms",
];

/// One CSV field: quoted when it must be, and never read as a formula by a spreadsheet
/// (a leading `= + - @` gets a `'`).
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// The elevated windows of `scope` as `format`, read for `caller` now, with the digest and the
/// signed manifest: what `GET /v1/reports/elevations` and the web app's report send.
pub(crate) async fn build(
    app: &crate::App,
    caller: &Caller,
    scope: &Scope,
    format: Format,
) -> Result<(Windows, Export), Error> {
    let w = app
        .engine
        .elevated_windows(
            caller,
            hourglass_core::engine::WhyQuestion {
                principal: scope.principal.clone(),
                target: scope.target.clone(),
                entitlement: scope.entitlement.clone(),
                from: Some(scope.from),
                to: Some(scope.to),
            },
        )
        .await?;
    let now = app.engine.clock().now();
    let signer = app.workload.signer.as_deref();
    let json = export(&w, scope, false, signer, now).map_err(Error::internal)?;
    let e = match format {
        Format::Json => json,
        Format::Csv => export(&w, scope, true, signer, now).map_err(Error::internal)?,
        Format::Html => {
            let extras = report_extras(app, caller, scope, json, now).await?;
            let html = crate::report::render(&w, scope, extras, now).map_err(Error::internal)?;
            let body = html.into_bytes();
            let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
            let manifest = signer
                .and_then(|s| manifest(s, &sha256, Format::Html, w.windows.len(), scope, &w, now));
            Export {
                body,
                content_type: "text/html; charset=utf-8",
                sha256,
                manifest,
            }
        }
    };
    Ok((w, e))
}

/// What the printable report shows besides the windows: standing privilege as discovery finds
/// it now, revocations overdue now, the break-glass reviews, the command, and `json`'s digest
/// and manifest.
async fn report_extras(
    app: &crate::App,
    caller: &Caller,
    scope: &Scope,
    json: Export,
    now: Timestamp,
) -> Result<crate::report::Extras, Error> {
    let standing = app
        .engine
        .standing(caller)
        .await?
        .into_iter()
        .filter(|t| scope.target.as_ref().is_none_or(|s| *s == t.target))
        .map(|t| (t.target, t.just_in_time, t.standing.len(), t.error))
        .collect();
    let overdue = app
        .engine
        .overdue_revocations(caller, now.plus_millis(-app.overdue_after_ms), 1_000)
        .await?
        .into_iter()
        .filter(|g| {
            scope
                .principal
                .as_ref()
                .is_none_or(|p| g.principal.as_str() == p)
                && scope.target.as_ref().is_none_or(|t| g.target.as_str() == t)
                && scope
                    .entitlement
                    .as_ref()
                    .is_none_or(|e| g.entitlement.as_str() == e)
        })
        .map(|g| {
            (
                g.id.to_string(),
                g.principal.to_string(),
                g.entitlement.to_string(),
                g.revoke_due_at.map(|t| t.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    let reviews = app.engine.list_reviews(caller, None, 500).await?;
    let mut command = format!(
        "hourglass report elevations --from {} --to {}",
        scope.from, scope.to
    );
    for (k, v) in [
        ("principal", &scope.principal),
        ("target", &scope.target),
        ("entitlement", &scope.entitlement),
    ] {
        if let Some(v) = v {
            // Quoted for a shell unless it is plainly safe.
            let safe = v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/:@-".contains(&b));
            let v = if safe {
                v.clone()
            } else {
                format!("'{}'", v.replace('\'', "'\\''"))
            };
            command.push_str(&format!(" --{k} {v}"));
        }
    }
    command.push_str(" --format html --out report.html");
    Ok(crate::report::Extras {
        standing,
        overdue,
        reviews,
        by: caller.principal.id.to_string(),
        command,
        manifest: json.manifest,
        export_sha256: json.sha256,
    })
}

/// A manifest of an export: its digest, format, row count, period, scope and chain head, in a
/// JWT signed with Hourglass's key.
fn manifest(
    signer: &Signer,
    sha256: &str,
    format: Format,
    rows: usize,
    scope: &Scope,
    w: &Windows,
    now: Timestamp,
) -> Option<String> {
    let now = now.unix_millis() / 1000;
    let claims = serde_json::json!({
        "iss": signer.issuer(),
        "typ": "hourglass-export",
        "sub": "elevations",
        "iat": now,
        "exp": now + 10 * 365 * 86_400,
        "sha256": sha256,
        "format": format.as_str(),
        "rows": rows,
        "from": scope.from.to_string(),
        "to": scope.to.to_string(),
        "scope": {"principal": scope.principal, "target": scope.target, "entitlement": scope.entitlement},
        "head_seq": w.head_seq,
        "head_hash": w.head_hash,
    });
    match signer.sign(&claims, now) {
        Ok((jwt, _)) => Some(jwt),
        Err(e) => {
            tracing::error!(error = %e, "signing an export manifest failed");
            None
        }
    }
}

/// Builds the export of `w` (CSV when `csv`), and its manifest when there is a `signer`.
fn export(
    w: &Windows,
    scope: &Scope,
    csv: bool,
    signer: Option<&Signer>,
    now: Timestamp,
) -> Result<Export, String> {
    let rows: Vec<Vec<String>> = w
        .windows
        .iter()
        .map(|x| {
            let g = &x.grant;
            let r = x.request.as_ref();
            let humans: Vec<&str> = x
                .approvals
                .iter()
                .filter(|a| a.approver != "policy")
                .map(|a| a.approver.as_str())
                .collect();
            let via = x.approvals.first().map_or("unknown", |a| a.via.as_str());
            vec![
                g.id.to_string(),
                g.principal.to_string(),
                r.map(|r| {
                    r.actors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(";")
                })
                .unwrap_or_default(),
                g.entitlement.to_string(),
                g.target.to_string(),
                r.map(|r| r.created_at.to_string()).unwrap_or_default(),
                r.map(|r| r.reason.clone()).unwrap_or_default(),
                r.and_then(|r| r.ticket.clone()).unwrap_or_default(),
                if g.break_glass {
                    "break_glass".to_owned()
                } else {
                    via.to_owned()
                },
                humans.join(";"),
                g.break_glass.to_string(),
                g.activated_at.map(|t| t.to_string()).unwrap_or_default(),
                g.ended_at.map(|t| t.to_string()).unwrap_or_default(),
                g.end_reason.clone().unwrap_or_default(),
                g.revoke_due_at.map(|t| t.to_string()).unwrap_or_default(),
                match (g.revoke_due_at, g.ended_at) {
                    (Some(due), Some(end)) => end.millis_since(due).max(0).to_string(),
                    _ => String::new(),
                },
            ]
        })
        .collect();
    let (body, content_type) = if csv {
        let mut out = EXPORT_COLUMNS.join(",");
        out.push_str("\r\n");
        for row in &rows {
            let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        }
        (out.into_bytes(), "text/csv; charset=utf-8")
    } else {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| {
                serde_json::Value::Object(
                    EXPORT_COLUMNS
                        .iter()
                        .zip(row)
                        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
                        .collect(),
                )
            })
            .collect();
        (
            serde_json::to_vec(&serde_json::json!({ "items": items }))
                .map_err(|e| e.to_string())?,
            "application/json",
        )
    };
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let format = if csv { Format::Csv } else { Format::Json };
    let manifest = signer.and_then(|s| manifest(s, &sha256, format, rows.len(), scope, w, now));
    Ok(Export {
        body,
        content_type,
        sha256,
        manifest,
    })
}
