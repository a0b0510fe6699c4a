//! The SCIM 2.0 service provider (RFC 7643, RFC 7644) at `/scim/v2`: `Users` and `Groups`
//! (create, read, replace, patch, delete, list with filters, pages and attribute selection),
//! ETags with `If-Match`, and the discovery documents. Authenticated by the API key of an
//! identity named in `[scim] provisioners`, which the audit records as the actor.
//!
//! Resources are read into the engine's [`DirectoryWrite`]: known attributes only (the core
//! User and Group schemas and the enterprise extension), `password` never kept, read-only
//! attributes (`id`, `meta`, `groups`) ignored. Every error is SCIM's own
//! (`application/scim+json`, `scimType`), and changes nothing.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use hourglass_core::{
    Error, ErrorCode,
    directory::{DirectoryEntry, DirectoryKind},
    engine::{AuthRefusal, AuthVia, DirectoryWrite},
    id::PrincipalId,
};
use hourglass_integrations::scim::{
    self, ENTERPRISE_SCHEMA, Filter, GROUP_SCHEMA, PatchRequest, ScimError, ScimType, USER_SCHEMA,
};
use serde_json::{Map, Value, json};

use super::{Peer, Shared};

const SCIM_JSON: &str = "application/scim+json";
/// Attributes whose strings compare with case (RFC 7643: `id` and `externalId`).
const CASE_EXACT: [&str; 2] = ["id", "externalId"];
/// Returned whatever `attributes` asks.
const ALWAYS: [&str; 3] = ["id", "schemas", "meta"];

/// The core User attributes Hourglass keeps (besides `schemas`, `externalId`).
const USER_ATTRS: [&str; 19] = [
    "userName",
    "name",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
    "emails",
    "phoneNumbers",
    "addresses",
    "ims",
    "photos",
    "x509Certificates",
    "roles",
    "entitlements",
];
const ENTERPRISE_ATTRS: [&str; 6] = [
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
    "manager",
];

fn scim_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    r
}

fn error(e: &ScimError) -> Response {
    scim_response(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.body(),
    )
}

/// An engine error as SCIM says it.
fn from_engine(e: &Error) -> ScimError {
    match e {
        Error::NotFound { message, .. } => ScimError::status(404, message.clone()),
        Error::Conflict { code, message } if *code == ErrorCode::DirectoryVersionMismatch => {
            ScimError::status(412, message.clone())
        }
        Error::Conflict { code, message } if *code == ErrorCode::DirectoryOwnerGroup => {
            ScimError::bad(ScimType::Mutability, message.clone())
        }
        Error::Conflict { message, .. } => ScimError::status(409, message.clone()),
        Error::Invalid { message, .. } => ScimError::bad(ScimType::InvalidValue, message.clone()),
        Error::Forbidden { message, .. } => ScimError::status(403, message.clone()),
        Error::Unavailable(_) | Error::StoreConflict => {
            ScimError::status(503, "the store is busy or unavailable; try again")
        }
        other => {
            tracing::error!(error = ?other, "SCIM request failed");
            ScimError::status(500, "an unexpected fault; the server log has the details")
        }
    }
}

/// The provisioning identity the request's bearer key belongs to.
async fn provisioner(
    app: &Shared,
    headers: &HeaderMap,
    source_ip: Option<&str>,
) -> Result<String, Response> {
    if app.scim.provisioners.is_empty() {
        return Err(error(&ScimError::status(
            404,
            "SCIM is not enabled ([scim] provisioners)",
        )));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        let mut r = error(&ScimError::status(401, "a bearer token is required"));
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"hourglass-scim\""),
        );
        return Err(r);
    };
    let principal = match app.engine.authenticate_key(token).await {
        Ok(Ok(p)) => p,
        Ok(Err(key)) => {
            let refused = error(&ScimError::status(401, "the token is not valid"));
            let refusal = AuthRefusal::key(AuthVia::Scim, key);
            return Err(super::auth_refused(app, refusal, source_ip, refused).await);
        }
        Err(e) => return Err(error(&from_engine(&e))),
    };
    if principal.status != hourglass_core::catalog::PrincipalStatus::Active
        || !app
            .scim
            .provisioners
            .iter()
            .any(|p| p == principal.id.as_str())
    {
        tracing::warn!(principal = %principal.id, "SCIM request by an identity that is not a provisioner");
        return Err(error(&ScimError::status(
            403,
            format!("{} may not provision the directory", principal.id),
        )));
    }
    Ok(principal.id.to_string())
}

fn base_url(app: &Shared, headers: &HeaderMap) -> String {
    super::public_base(app, headers)
}

fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The version an `If-Match` names (`W/"3"`, `"3"`), `None` for `*` or none.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ScimError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or("").trim();
    if v == "*" {
        return Ok(None);
    }
    v.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| {
            ScimError::status(
                412,
                format!("If-Match {v:?} names no version of this resource"),
            )
        })
}

/// An entry as a SCIM resource.
fn resource(entry: &DirectoryEntry, base: &str) -> Value {
    let (kind, path) = match entry.kind {
        DirectoryKind::User => ("User", "Users"),
        DirectoryKind::Group => ("Group", "Groups"),
    };
    let mut v = entry.resource.clone();
    if let Value::Object(o) = &mut v {
        o.insert("id".into(), json!(entry.id));
        if let Some(x) = &entry.external_id {
            o.insert("externalId".into(), json!(x));
        }
        o.insert(
            "meta".into(),
            json!({
                "resourceType": kind,
                "created": entry.created_at.to_string(),
                "lastModified": entry.updated_at.to_string(),
                "version": etag(entry.version),
                "location": format!("{base}/scim/v2/{path}/{}", entry.id),
            }),
        );
    }
    v
}

fn with_etag(mut r: Response, version: i64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&etag(version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

fn read_json(body: &Bytes) -> Result<Value, ScimError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ScimError::bad(
            ScimType::InvalidSyntax,
            format!("the body is not JSON: {e}"),
        )
    })?;
    if !v.is_object() {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            "the body is not a JSON object",
        ));
    }
    Ok(v)
}

fn text(v: &Value, key: &str, max: usize) -> Result<Option<String>, ScimError> {
    match scim::get_ci(v, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max && !s.chars().any(char::is_control) => {
            Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty()))
        }
        Some(_) => Err(ScimError::bad(
            ScimType::InvalidValue,
            format!("{key} must be text of at most {max} characters"),
        )),
    }
}

/// Checks the `schemas` a resource names: the core one, and only extensions Hourglass knows.
fn check_schemas(v: &Value, core: &str, allowed: &[&str]) -> Result<Vec<String>, ScimError> {
    let schemas: Vec<String> = scim::get_ci(v, "schemas")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::bad(ScimType::InvalidSyntax, "schemas must be a list"))?
        .iter()
        .map(|s| s.as_str().unwrap_or("").to_owned())
        .collect();
    if !schemas.iter().any(|s| s.eq_ignore_ascii_case(core)) {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            format!("schemas must include {core}"),
        ));
    }
    if let Some(s) = schemas
        .iter()
        .find(|s| !allowed.iter().any(|a| a.eq_ignore_ascii_case(s)))
    {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            format!("schema {s:?} is not supported"),
        ));
    }
    Ok(schemas)
}

/// A User resource read into what the engine keeps.
fn user_write(v: &Value) -> Result<DirectoryWrite, ScimError> {
    check_schemas(v, USER_SCHEMA, &[USER_SCHEMA, ENTERPRISE_SCHEMA])?;
    let Value::Object(o) = v else {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            "a User is an object",
        ));
    };
    let user_name = text(v, "userName", 256)?
        .ok_or_else(|| ScimError::bad(ScimType::InvalidValue, "userName is required"))?;
    let mut kept = Map::new();
    let mut schemas = vec![json!(USER_SCHEMA)];
    for (k, val) in o {
        if ["schemas", "id", "meta", "externalId", "groups", "password"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(k))
        {
            // Read-only, kept apart, or never kept (a password is not Hourglass's to hold).
            continue;
        }
        if k.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
            let Value::Object(ext) = val else {
                return Err(ScimError::bad(
                    ScimType::InvalidSyntax,
                    format!("{k} must be an object"),
                ));
            };
            let mut keep = Map::new();
            for (ek, ev) in ext {
                let Some(name) = ENTERPRISE_ATTRS.iter().find(|a| a.eq_ignore_ascii_case(ek))
                else {
                    return Err(ScimError::bad(
                        ScimType::InvalidSyntax,
                        format!("{ENTERPRISE_SCHEMA}:{ek} is not an attribute Hourglass knows"),
                    ));
                };
                // Entra ID sets the manager as its id alone.
                let ev = match (*name, ev) {
                    ("manager", Value::String(id)) => json!({"value": id}),
                    (_, other) => other.clone(),
                };
                if !ev.is_null() {
                    keep.insert((*name).to_owned(), ev);
                }
            }
            if !keep.is_empty() {
                schemas.push(json!(ENTERPRISE_SCHEMA));
                kept.insert(ENTERPRISE_SCHEMA.to_owned(), Value::Object(keep));
            }
            continue;
        }
        let Some(name) = USER_ATTRS.iter().find(|a| a.eq_ignore_ascii_case(k)) else {
            return Err(ScimError::bad(
                ScimType::InvalidSyntax,
                format!("{k} is not an attribute of a User that Hourglass knows"),
            ));
        };
        if !val.is_null() {
            kept.insert((*name).to_owned(), val.clone());
        }
    }
    // Entra ID writes booleans as strings ("False").
    let active = match kept.get("active") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                "active must be true or false",
            ));
        }
    };
    kept.insert("active".into(), json!(active));
    kept.insert("userName".into(), json!(user_name));
    kept.insert("schemas".into(), Value::Array(schemas));
    if serde_json::to_vec(&kept).map_or(0, |b| b.len()) > 64 * 1024 {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            "a User is at most 64 KiB",
        ));
    }
    let ext = kept.get(ENTERPRISE_SCHEMA);
    let manager = ext
        .and_then(|e| e.pointer("/manager/value"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let department = ext
        .and_then(|e| e.get("department"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(DirectoryWrite {
        name: user_name,
        external_id: text(v, "externalId", 256)?,
        resource: Value::Object(kept),
        active,
        members: Vec::new(),
        manager,
        department,
    })
}

/// A Group resource read into what the engine keeps.
fn group_write(v: &Value) -> Result<DirectoryWrite, ScimError> {
    check_schemas(v, GROUP_SCHEMA, &[GROUP_SCHEMA])?;
    let name = text(v, "displayName", 256)?
        .ok_or_else(|| ScimError::bad(ScimType::InvalidValue, "displayName is required"))?;
    let mut members = Vec::new();
    let mut kept_members = Vec::new();
    match scim::get_ci(v, "members") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for m in list {
                let Some(id) = scim::get_ci(m, "value").and_then(Value::as_str) else {
                    return Err(ScimError::bad(
                        ScimType::InvalidValue,
                        "each member needs a value (a user's id)",
                    ));
                };
                if scim::get_ci(m, "type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("group"))
                {
                    return Err(ScimError::bad(
                        ScimType::InvalidValue,
                        "groups within groups are not supported",
                    ));
                }
                if !members.iter().any(|x| x == id) {
                    members.push(id.to_owned());
                    let mut entry = json!({"value": id});
                    if let Some(d) = scim::get_ci(m, "display").and_then(Value::as_str) {
                        entry["display"] = json!(d);
                    }
                    kept_members.push(entry);
                }
            }
        }
        Some(_) => {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                "members must be a list",
            ));
        }
    }
    if let Value::Object(o) = v
        && let Some(k) = o.keys().find(|k| {
            ![
                "schemas",
                "id",
                "meta",
                "externalId",
                "displayName",
                "members",
            ]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(k))
        })
    {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            format!("{k} is not an attribute of a Group that Hourglass knows"),
        ));
    }
    Ok(DirectoryWrite {
        name: name.clone(),
        external_id: text(v, "externalId", 256)?,
        resource: json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": kept_members}),
        active: true,
        members,
        manager: None,
        department: None,
    })
}

/// The principal a new user is: its `userName`, or the local part in `email_domain`.
fn principal_for(app: &Shared, user_name: &str) -> Result<PrincipalId, ScimError> {
    let lower = user_name.to_lowercase();
    let name = match (&app.scim.email_domain, lower.split_once('@')) {
        (Some(d), Some((local, domain))) if domain.eq_ignore_ascii_case(d) => local.to_owned(),
        _ => lower,
    };
    PrincipalId::new(name.clone()).map_err(|e| {
        ScimError::bad(
            ScimType::InvalidValue,
            format!("userName {user_name:?} makes no principal name ({name}): {e}"),
        )
    })
}

/// The provisioner and the resource type of a request to `/scim/v2/{Users|Groups}…`, or the
/// answer that refuses it.
async fn open(
    app: &Shared,
    headers: &HeaderMap,
    source_ip: Option<&str>,
    path: &str,
) -> Result<(String, DirectoryKind), Response> {
    let actor = provisioner(app, headers, source_ip).await?;
    let kind = kind_of(path)
        .ok_or_else(|| error(&ScimError::status(404, format!("no resource type {path}"))))?;
    Ok((actor, kind))
}

/// An entry as the answer to a replacement or a patch: 200, the resource, its ETag.
fn answer(app: &Shared, headers: &HeaderMap, e: &DirectoryEntry) -> Response {
    with_etag(
        scim_response(StatusCode::OK, &resource(e, &base_url(app, headers))),
        e.version,
    )
}

fn kind_of(path: &str) -> Option<DirectoryKind> {
    match path {
        "Users" => Some(DirectoryKind::User),
        "Groups" => Some(DirectoryKind::Group),
        _ => None,
    }
}

fn core_of(kind: DirectoryKind) -> &'static str {
    match kind {
        DirectoryKind::User => USER_SCHEMA,
        DirectoryKind::Group => GROUP_SCHEMA,
    }
}

fn list_param(q: &std::collections::BTreeMap<String, String>, key: &str) -> Vec<String> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn param<'a>(q: &'a std::collections::BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// The name a filter asks for exactly (`userName eq "…"` for users, `displayName eq "…"` for
/// groups), if that is all it asks.
fn by_name(f: &Filter, kind: DirectoryKind) -> Option<&str> {
    let attr = match kind {
        DirectoryKind::User => "userName",
        DirectoryKind::Group => "displayName",
    };
    match f {
        Filter::Compare {
            path,
            op: scim::filter::CompareOp::Eq,
            value: Value::String(v),
        } if path.sub.is_none()
            && path.name.eq_ignore_ascii_case(attr)
            && path
                .uri
                .as_deref()
                .is_none_or(|u| u.eq_ignore_ascii_case(core_of(kind))) =>
        {
            Some(v)
        }
        _ => None,
    }
}

/// `GET /scim/v2/{Users|Groups}`.
pub async fn list(
    State(app): State<Shared>,
    Path(path): Path<String>,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    let kind = match open(&app, &headers, peer.as_deref(), &path).await {
        Ok((_, kind)) => kind,
        Err(r) => return r,
    };
    let result = async {
        let filter = param(&q, "filter").map(Filter::parse).transpose()?;
        let (start, count) = scim::page(
            param(&q, "startIndex"),
            param(&q, "count"),
            app.scim.max_results,
        )?;
        if let Some(by) = param(&q, "sortBy") {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                format!("sortBy ({by}) is not supported"),
            ));
        }
        let base = base_url(&app, &headers);
        let core = core_of(kind);
        // The lookup clients make before every create (`userName eq "…"`, `displayName eq
        // "…"`) is an index lookup; any other filter reads every entry.
        let candidates = match filter.as_ref().and_then(|f| by_name(f, kind)) {
            Some(name) => app
                .engine
                .directory_named(kind, name)
                .await
                .map_err(|e| from_engine(&e))?
                .into_iter()
                .collect(),
            None => app
                .engine
                .directory_entries(kind)
                .await
                .map_err(|e| from_engine(&e))?,
        };
        let mut all = Vec::new();
        for e in candidates {
            let r = resource(&e, &base);
            if match &filter {
                Some(f) => f.matches(&r, core, &CASE_EXACT)?,
                None => true,
            } {
                all.push(r);
            }
        }
        let total = all.len();
        let (attrs, excluded) = (
            list_param(&q, "attributes"),
            list_param(&q, "excludedAttributes"),
        );
        let mut page = Vec::new();
        for r in all.into_iter().skip(start - 1).take(count) {
            page.push(scim::project(&r, core, &attrs, &excluded, &ALWAYS)?);
        }
        Ok::<_, ScimError>(scim::list_response(total, start, page))
    }
    .await;
    match result {
        Ok(v) => scim_response(StatusCode::OK, &v),
        Err(e) => error(&e),
    }
}

/// `GET /scim/v2/{Users|Groups}/{id}`.
pub async fn get_one(
    State(app): State<Shared>,
    Path((path, id)): Path<(String, String)>,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    let kind = match open(&app, &headers, peer.as_deref(), &path).await {
        Ok((_, kind)) => kind,
        Err(r) => return r,
    };
    match app.engine.directory_entry(kind, &id).await {
        Ok(e) => {
            let r = resource(&e, &base_url(&app, &headers));
            match scim::project(
                &r,
                core_of(kind),
                &list_param(&q, "attributes"),
                &list_param(&q, "excludedAttributes"),
                &ALWAYS,
            ) {
                Ok(v) => with_etag(scim_response(StatusCode::OK, &v), e.version),
                Err(err) => error(&err),
            }
        }
        Err(e) => error(&from_engine(&e)),
    }
}

/// `POST /scim/v2/{Users|Groups}`.
pub async fn create(
    State(app): State<Shared>,
    Path(path): Path<String>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (actor, kind) = match open(&app, &headers, peer.as_deref(), &path).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let result = async {
        let v = read_json(&body)?;
        let entry = match kind {
            DirectoryKind::User => {
                let w = user_write(&v)?;
                let principal = principal_for(&app, &w.name)?;
                app.engine.directory_create_user(&actor, principal, w).await
            }
            DirectoryKind::Group => {
                app.engine
                    .directory_create_group(&actor, group_write(&v)?)
                    .await
            }
        }
        .map_err(|e| from_engine(&e))?;
        Ok::<_, ScimError>(entry)
    }
    .await;
    match result {
        Ok(e) => {
            let r = resource(&e, &base_url(&app, &headers));
            let mut resp = with_etag(scim_response(StatusCode::CREATED, &r), e.version);
            if let Some(loc) = r.pointer("/meta/location").and_then(Value::as_str)
                && let Ok(h) = HeaderValue::from_str(loc)
            {
                resp.headers_mut().insert(header::LOCATION, h);
            }
            resp
        }
        Err(e) => error(&e),
    }
}

async fn update(
    app: &Shared,
    actor: &str,
    kind: DirectoryKind,
    id: &str,
    version: Option<i64>,
    v: &Value,
) -> Result<DirectoryEntry, ScimError> {
    match kind {
        DirectoryKind::User => {
            app.engine
                .directory_update_user(actor, id, version, user_write(v)?)
                .await
        }
        DirectoryKind::Group => {
            app.engine
                .directory_update_group(actor, id, version, group_write(v)?)
                .await
        }
    }
    .map_err(|e| from_engine(&e))
}

/// `PUT /scim/v2/{Users|Groups}/{id}`.
pub async fn replace(
    State(app): State<Shared>,
    Path((path, id)): Path<(String, String)>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (actor, kind) = match open(&app, &headers, peer.as_deref(), &path).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let result = async {
        let v = read_json(&body)?;
        update(&app, &actor, kind, &id, if_match(&headers)?, &v).await
    }
    .await;
    match result {
        Ok(e) => answer(&app, &headers, &e),
        Err(e) => error(&e),
    }
}

/// `PATCH /scim/v2/{Users|Groups}/{id}`: the operations applied to the resource as it is, the
/// result read and kept like a replacement. Without `If-Match`, a change made meanwhile by
/// someone else is read and the operations applied again.
pub async fn patch(
    State(app): State<Shared>,
    Path((path, id)): Path<(String, String)>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (actor, kind) = match open(&app, &headers, peer.as_deref(), &path).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let result = async {
        let ops = PatchRequest::parse(&read_json(&body)?)?;
        let wanted = if_match(&headers)?;
        let mut tries = 0;
        loop {
            let current = app
                .engine
                .directory_entry(kind, &id)
                .await
                .map_err(|e| from_engine(&e))?;
            if let Some(v) = wanted
                && v != current.version
            {
                return Err(ScimError::status(
                    412,
                    format!("{id} is at version {}, not {v}", current.version),
                ));
            }
            let mut doc = current.resource.clone();
            if let (Value::Object(o), Some(x)) = (&mut doc, &current.external_id) {
                o.insert("externalId".into(), json!(x));
            }
            ops.apply(&mut doc, core_of(kind), &CASE_EXACT)?;
            match update(&app, &actor, kind, &id, Some(current.version), &doc).await {
                Err(e) if e.status == 412 && wanted.is_none() && tries < 3 => tries += 1,
                other => return other,
            }
        }
    }
    .await;
    match result {
        Ok(e) => answer(&app, &headers, &e),
        Err(e) => error(&e),
    }
}

/// `DELETE /scim/v2/{Users|Groups}/{id}`.
pub async fn delete(
    State(app): State<Shared>,
    Path((path, id)): Path<(String, String)>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    let (actor, kind) = match open(&app, &headers, peer.as_deref(), &path).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let result = async {
        let version = if_match(&headers)?;
        match kind {
            DirectoryKind::User => app.engine.directory_delete_user(&actor, &id, version).await,
            DirectoryKind::Group => {
                app.engine
                    .directory_delete_group(&actor, &id, version)
                    .await
            }
        }
        .map_err(|e| from_engine(&e))
    }
    .await;
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(&e),
    }
}

/// `GET /scim/v2/ServiceProviderConfig`.
pub async fn service_provider_config(
    State(app): State<Shared>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = provisioner(&app, &headers, peer.as_deref()).await {
        return r;
    }
    scim_response(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/hourglass/hourglass/blob/main/docs/directory.md",
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": app.scim.max_results},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "An Hourglass API key of an identity named in [scim] provisioners",
                "primary": true
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{}/scim/v2/ServiceProviderConfig", base_url(&app, &headers))}
        }),
    )
}

fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User", "name": "User", "endpoint": "/Users",
            "description": "A person: a human principal of Hourglass",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/scim/v2/ResourceTypes/User")}
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group", "name": "Group", "endpoint": "/Groups",
            "description": "A group: its name is a group of Hourglass policy",
            "schema": GROUP_SCHEMA,
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/scim/v2/ResourceTypes/Group")}
        }),
    ]
}

/// `GET /scim/v2/ResourceTypes[/{id}]`.
pub async fn resource_type_list(
    State(app): State<Shared>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = provisioner(&app, &headers, peer.as_deref()).await {
        return r;
    }
    let all = resource_types(&base_url(&app, &headers));
    scim_response(StatusCode::OK, &scim::list_response(all.len(), 1, all))
}

pub async fn resource_type_one(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = provisioner(&app, &headers, peer.as_deref()).await {
        return r;
    }
    match resource_types(&base_url(&app, &headers))
        .into_iter()
        .find(|r| r["id"] == id.as_str())
    {
        Some(r) => scim_response(StatusCode::OK, &r),
        None => error(&ScimError::status(404, format!("no resource type {id}"))),
    }
}

fn attribute(
    name: &str,
    ty: &str,
    multi: bool,
    required: bool,
    mutability: &str,
    uniqueness: &str,
) -> Value {
    json!({
        "name": name, "type": ty, "multiValued": multi, "required": required,
        "caseExact": name == "id" || name == "externalId", "mutability": mutability,
        "returned": "default", "uniqueness": uniqueness
    })
}

fn complex(name: &str, multi: bool, subs: &[&str]) -> Value {
    let mut a = attribute(name, "complex", multi, false, "readWrite", "none");
    a["subAttributes"] = Value::Array(
        subs.iter()
            .map(|s| {
                attribute(
                    s,
                    if *s == "primary" { "boolean" } else { "string" },
                    false,
                    false,
                    "readWrite",
                    "none",
                )
            })
            .collect(),
    );
    a
}

fn schemas(base: &str) -> Vec<Value> {
    let rw = |n: &str| attribute(n, "string", false, false, "readWrite", "none");
    let plural = ["value", "display", "type", "primary"];
    let mut user = vec![
        attribute("userName", "string", false, true, "readWrite", "server"),
        complex(
            "name",
            false,
            &[
                "formatted",
                "familyName",
                "givenName",
                "middleName",
                "honorificPrefix",
                "honorificSuffix",
            ],
        ),
    ];
    user.extend(
        [
            "displayName",
            "nickName",
            "profileUrl",
            "title",
            "userType",
            "preferredLanguage",
            "locale",
            "timezone",
        ]
        .map(rw),
    );
    user.push(attribute(
        "active",
        "boolean",
        false,
        false,
        "readWrite",
        "none",
    ));
    user.extend(
        [
            "emails",
            "phoneNumbers",
            "ims",
            "photos",
            "x509Certificates",
        ]
        .map(|n| complex(n, true, &plural)),
    );
    user.push(complex(
        "addresses",
        true,
        &[
            "formatted",
            "streetAddress",
            "locality",
            "region",
            "postalCode",
            "country",
            "type",
            "primary",
        ],
    ));
    let mut groups = complex("groups", true, &["value", "display", "type"]);
    groups["mutability"] = json!("readOnly");
    user.push(groups);
    let mut enterprise: Vec<Value> = [
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
    ]
    .map(rw)
    .into();
    enterprise.push(complex("manager", false, &["value", "displayName"]));
    let mut members = complex("members", true, &["value", "display", "type"]);
    members["subAttributes"][0]["mutability"] = json!("immutable");
    let schema = |id: &str, name: &str, desc: &str, attrs: Vec<Value>| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": id, "name": name, "description": desc, "attributes": attrs,
            "meta": {"resourceType": "Schema", "location": format!("{base}/scim/v2/Schemas/{id}")}
        })
    };
    vec![
        schema(USER_SCHEMA, "User", "User Account", user),
        schema(
            ENTERPRISE_SCHEMA,
            "EnterpriseUser",
            "Enterprise User",
            enterprise,
        ),
        schema(
            GROUP_SCHEMA,
            "Group",
            "Group",
            vec![
                attribute("displayName", "string", false, true, "readWrite", "server"),
                members,
            ],
        ),
    ]
}

/// `GET /scim/v2/Schemas[/{id}]`.
pub async fn schema_list(
    State(app): State<Shared>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = provisioner(&app, &headers, peer.as_deref()).await {
        return r;
    }
    let all = schemas(&base_url(&app, &headers));
    scim_response(StatusCode::OK, &scim::list_response(all.len(), 1, all))
}

pub async fn schema_one(
    State(app): State<Shared>,
    Path(id): Path<String>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = provisioner(&app, &headers, peer.as_deref()).await {
        return r;
    }
    match schemas(&base_url(&app, &headers)).into_iter().find(|s| {
        s["id"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(&id))
    }) {
        Some(s) => scim_response(StatusCode::OK, &s),
        None => error(&ScimError::status(404, format!("no schema {id}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_keep_known_attributes_only_and_never_a_password() {
        let w = user_write(&json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
            "userName": "Alice@Example.com", "externalId": "00u1",
            "name": {"givenName": "Alice"}, "active": "False", "password": "hunter2",
            "meta": {"version": "x"}, "id": "ignored",
            ENTERPRISE_SCHEMA: {"department": "SRE", "manager": "26118915"}
        }))
        .unwrap();
        assert_eq!(w.name, "Alice@Example.com");
        assert!(!w.active);
        assert_eq!(w.external_id.as_deref(), Some("00u1"));
        assert!(w.resource.get("password").is_none() && w.resource.get("id").is_none());
        assert_eq!(
            w.resource[ENTERPRISE_SCHEMA]["manager"],
            json!({"value": "26118915"})
        );
        for (body, t) in [
            (json!({"schemas": [USER_SCHEMA]}), ScimType::InvalidValue),
            (json!({"userName": "a"}), ScimType::InvalidSyntax),
            (
                json!({"schemas": [USER_SCHEMA], "userName": "a", "shoeSize": 9}),
                ScimType::InvalidSyntax,
            ),
            (
                json!({"schemas": [USER_SCHEMA, "urn:x:custom"], "userName": "a"}),
                ScimType::InvalidSyntax,
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": "a", "active": "maybe"}),
                ScimType::InvalidValue,
            ),
            (
                json!({"schemas": [USER_SCHEMA], "userName": 7}),
                ScimType::InvalidValue,
            ),
        ] {
            assert_eq!(user_write(&body).unwrap_err().scim_type, Some(t), "{body}");
        }
    }

    #[test]
    fn groups_keep_their_members_once() {
        let w = group_write(&json!({
            "schemas": [GROUP_SCHEMA], "displayName": "sre",
            "members": [{"value": "u1", "display": "Alice"}, {"value": "u1"}, {"value": "u2"}]
        }))
        .unwrap();
        assert_eq!(w.members, ["u1", "u2"]);
        assert_eq!(
            hourglass_core::engine::members_of(&w.resource),
            ["u1", "u2"]
        );
        assert!(group_write(&json!({"schemas": [GROUP_SCHEMA], "displayName": "x", "members": [{"value": "g", "type": "Group"}]})).is_err());
    }

    #[test]
    fn if_match_names_a_version() {
        let mut h = HeaderMap::new();
        assert_eq!(if_match(&h).unwrap(), None);
        h.insert(header::IF_MATCH, HeaderValue::from_static("W/\"3\""));
        assert_eq!(if_match(&h).unwrap(), Some(3));
        h.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert_eq!(if_match(&h).unwrap(), None);
        h.insert(header::IF_MATCH, HeaderValue::from_static("\"abc\""));
        assert_eq!(if_match(&h).unwrap_err().status, 412);
    }
}
