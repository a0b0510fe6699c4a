//! SCIM 2.0 as a service provider speaks it (RFC 7643, RFC 7644), without storage: filters
//! ([`filter`]), PATCH operations ([`patch`]), errors with their `scimType`, list responses and
//! the `attributes` / `excludedAttributes` projection. The server keeps the directory; this is
//! the protocol around it.

pub mod filter;
pub mod patch;

use serde_json::{Map, Value, json};

pub use filter::{AttrPath, Filter, get_ci};
pub use patch::{PatchOp, PatchRequest};

/// The core schemas and the enterprise extension.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Message schemas.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The `scimType` of a 400 (or 409) error, RFC 7644 §3.12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
}

impl ScimType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }
}

/// A SCIM error: the HTTP status, the `scimType` where SCIM has one, and a detail for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<ScimType>,
    pub detail: String,
}

impl ScimError {
    /// A 400 with its `scimType`.
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// Another status, without a `scimType` (401, 403, 404, 412, 500…); 409 is `uniqueness`.
    pub fn status(status: u16, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type: (status == 409).then_some(ScimType::Uniqueness),
            detail: detail.into(),
        }
    }

    /// The error as SCIM writes it (`status` is a string, as RFC 7644 §3.12 shows it).
    pub fn body(&self) -> Value {
        let mut v = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            v["scimType"] = json!(t.as_str());
        }
        v
    }
}

/// A list response: `totalResults` over the whole filtered set, this page's resources, and
/// where it starts (1-based).
pub fn list_response(total: usize, start_index: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// Reads `startIndex` and `count` (RFC 7644 §3.4.2.4): a start below 1 is 1; a negative
/// count is 0; a count above `max` is `max`.
pub fn page(
    start_index: Option<&str>,
    count: Option<&str>,
    max: usize,
) -> Result<(usize, usize), ScimError> {
    let num = |s: Option<&str>, name: &str| -> Result<Option<i64>, ScimError> {
        s.map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ScimError::bad(ScimType::InvalidValue, format!("{name} must be an integer"))
            })
        })
        .transpose()
    };
    let start = num(start_index, "startIndex")?.unwrap_or(1).max(1);
    let count = num(count, "count")?
        .unwrap_or(i64::try_from(max).unwrap_or(i64::MAX))
        .max(0);
    Ok((
        usize::try_from(start).unwrap_or(usize::MAX),
        usize::try_from(count).unwrap_or(0).min(max),
    ))
}

/// Keeps the attributes a client asked for (`attributes`), or drops those it asked to leave
/// out (`excludedAttributes`), RFC 7644 §3.4.2.5. `always` are returned whatever is asked
/// (`id`, `schemas`, `meta`…). Names may carry their schema URI and a sub-attribute.
pub fn project(
    resource: &Value,
    core: &str,
    attributes: &[String],
    excluded: &[String],
    always: &[&str],
) -> Result<Value, ScimError> {
    let Value::Object(obj) = resource else {
        return Ok(resource.clone());
    };
    let parse = |list: &[String]| -> Result<Vec<AttrPath>, ScimError> {
        list.iter()
            .map(|a| AttrPath::parse(a.trim()))
            .collect::<Result<Vec<_>, _>>()
    };
    let (wanted, unwanted) = (parse(attributes)?, parse(excluded)?);
    let keep_always = |k: &str| always.iter().any(|a| a.eq_ignore_ascii_case(k));
    let in_schema = |p: &AttrPath, holder: Option<&str>| match (&p.uri, holder) {
        (None, None) => true,
        (Some(u), None) => u.eq_ignore_ascii_case(core),
        (Some(u), Some(h)) => u.eq_ignore_ascii_case(h),
        (None, Some(_)) => false,
    };
    // What of one object (the top level, or an extension's) to keep.
    let pick = |o: &Map<String, Value>, holder: Option<&str>| -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in o {
            if holder.is_none() && (keep_always(k) || k.starts_with("urn:")) {
                out.insert(k.clone(), v.clone());
                continue;
            }
            if !wanted.is_empty() {
                let subs: Vec<&AttrPath> = wanted
                    .iter()
                    .filter(|p| in_schema(p, holder) && p.name.eq_ignore_ascii_case(k))
                    .collect();
                if subs.is_empty() {
                    continue;
                }
                if subs.iter().any(|p| p.sub.is_none()) {
                    out.insert(k.clone(), v.clone());
                } else {
                    out.insert(k.clone(), keep_subs(v, &subs, true));
                }
            } else {
                let subs: Vec<&AttrPath> = unwanted
                    .iter()
                    .filter(|p| in_schema(p, holder) && p.name.eq_ignore_ascii_case(k))
                    .collect();
                if subs.iter().any(|p| p.sub.is_none()) {
                    continue;
                }
                if subs.is_empty() {
                    out.insert(k.clone(), v.clone());
                } else {
                    out.insert(k.clone(), keep_subs(v, &subs, false));
                }
            }
        }
        out
    };
    let mut top = pick(obj, None);
    let extensions: Vec<String> = top
        .keys()
        .filter(|k| k.starts_with("urn:"))
        .cloned()
        .collect();
    for ext in extensions {
        if let Some(Value::Object(inner)) = top.get(&ext) {
            let kept = pick(inner, Some(&ext));
            if kept.is_empty() {
                top.remove(&ext);
            } else {
                top.insert(ext, Value::Object(kept));
            }
        }
    }
    Ok(Value::Object(top))
}

/// Keeps (or drops) the named sub-attributes of a complex value, or of each element of a
/// multi-valued one.
fn keep_subs(v: &Value, subs: &[&AttrPath], keep: bool) -> Value {
    let one = |item: &Value| -> Value {
        let Value::Object(o) = item else {
            return item.clone();
        };
        Value::Object(
            o.iter()
                .filter(|(k, _)| {
                    let named = subs
                        .iter()
                        .any(|p| p.sub.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(k)));
                    named == keep
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    };
    match v {
        Value::Array(items) => Value::Array(items.iter().map(one).collect()),
        other => one(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_written_as_scim_writes_them() {
        let e = ScimError::bad(ScimType::InvalidFilter, "no");
        assert_eq!(
            e.body(),
            json!({"schemas": [ERROR_SCHEMA], "status": "400", "scimType": "invalidFilter", "detail": "no"})
        );
        let c = ScimError::status(409, "taken");
        assert_eq!(c.body()["scimType"], "uniqueness");
        assert!(
            ScimError::status(404, "gone")
                .body()
                .get("scimType")
                .is_none()
        );
    }

    #[test]
    fn pages_are_clamped_as_the_rfc_says() {
        assert_eq!(page(None, None, 100).unwrap(), (1, 100));
        assert_eq!(page(Some("0"), Some("-5"), 100).unwrap(), (1, 0));
        assert_eq!(page(Some("11"), Some("5000"), 100).unwrap(), (11, 100));
        assert_eq!(
            page(Some("x"), None, 100).unwrap_err().scim_type,
            Some(ScimType::InvalidValue)
        );
    }

    #[test]
    fn attributes_and_excluded_attributes_shape_what_is_returned() {
        let user = json!({
            "schemas": [USER_SCHEMA], "id": "1", "userName": "alice",
            "name": {"givenName": "Alice", "familyName": "Jensen"},
            "emails": [{"value": "a@example.com", "type": "work"}],
            "meta": {"resourceType": "User"},
            ENTERPRISE_SCHEMA: {"department": "SRE", "costCenter": "42"}
        });
        let always = ["id", "schemas", "meta"];
        let only = project(
            &user,
            USER_SCHEMA,
            &[
                "userName".into(),
                "name.familyName".into(),
                format!("{ENTERPRISE_SCHEMA}:department"),
            ],
            &[],
            &always,
        )
        .unwrap();
        assert_eq!(
            only,
            json!({"schemas": [USER_SCHEMA], "id": "1", "userName": "alice",
                   "name": {"familyName": "Jensen"}, "meta": {"resourceType": "User"},
                   ENTERPRISE_SCHEMA: {"department": "SRE"}})
        );
        let without = project(
            &user,
            USER_SCHEMA,
            &[],
            &["emails".into(), "name.givenName".into(), "id".into()],
            &always,
        )
        .unwrap();
        assert!(without.get("emails").is_none());
        assert_eq!(without["name"], json!({"familyName": "Jensen"}));
        assert_eq!(without["id"], "1", "id is always returned");
        assert!(project(&user, USER_SCHEMA, &["1bad".into()], &[], &always).is_err());
    }
}
