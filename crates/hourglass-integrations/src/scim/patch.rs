//! SCIM PATCH (RFC 7644 §3.5.2): `add`, `replace` and `remove` operations applied to a
//! resource as JSON, with paths that may carry a value filter (`members[value eq "…"]`,
//! `emails[type eq "work"].value`) and the habits of real clients: Entra ID writes `op` in any
//! letter case, sends `remove` of `members` with the members to remove as its `value`, and puts
//! attribute paths (`name.givenName`, `urn:…:User:department`) as keys of a path-less value.
//!
//! The result is plain JSON: the server reads it back into its typed resource, which refuses
//! unknown attributes, read-only ones and values of the wrong type.

use serde_json::{Map, Value};

use super::{
    ENTERPRISE_SCHEMA, PATCH_SCHEMA, ScimError, ScimType,
    filter::{AttrPath, Filter, get_ci},
};

/// The most operations one request may carry.
pub const MAX_OPERATIONS: usize = 1000;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Add,
    Remove,
    Replace,
}

/// Where an operation acts: `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// The sub-attribute after a value filter (`.value` in `emails[type eq "work"].value`).
    pub sub: Option<String>,
}

impl PatchPath {
    pub fn parse(s: &str) -> Result<Self, ScimError> {
        let s = s.trim();
        let Some(open) = s.find('[') else {
            return Ok(PatchPath {
                attr: AttrPath::parse(s)?,
                filter: None,
                sub: None,
            });
        };
        let close = s.rfind(']').filter(|c| *c > open).ok_or_else(|| {
            ScimError::bad(
                ScimType::InvalidPath,
                format!("{s:?}: a bracket is not closed"),
            )
        })?;
        let attr = AttrPath::parse(&s[..open])?;
        if attr.sub.is_some() {
            return Err(ScimError::bad(
                ScimType::InvalidPath,
                format!("{s:?}: a value filter follows an attribute, not a sub-attribute"),
            ));
        }
        let filter = Filter::parse_value_filter(&s[open + 1..close])?;
        let sub = match &s[close + 1..] {
            "" => None,
            rest => {
                let name = rest.strip_prefix('.').ok_or_else(|| {
                    ScimError::bad(ScimType::InvalidPath, format!("{s:?}: after ] comes .name"))
                })?;
                AttrPath::parse(name)?;
                Some(name.to_owned())
            }
        };
        Ok(PatchPath {
            attr,
            filter: Some(filter),
            sub,
        })
    }
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub kind: PatchKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// A PATCH request body.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    pub operations: Vec<PatchOp>,
}

fn syntax(why: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidSyntax, why)
}

impl PatchRequest {
    /// Reads a `PatchOp` message.
    pub fn parse(body: &Value) -> Result<Self, ScimError> {
        let schemas = get_ci(body, "schemas")
            .and_then(Value::as_array)
            .ok_or_else(|| syntax("schemas must list the PatchOp message schema"))?;
        if !schemas.iter().any(|s| {
            s.as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_SCHEMA))
        }) {
            return Err(syntax(format!("schemas must include {PATCH_SCHEMA}")));
        }
        let ops = get_ci(body, "Operations")
            .and_then(Value::as_array)
            .ok_or_else(|| syntax("Operations must be a list"))?;
        if ops.is_empty() {
            return Err(syntax("Operations is empty"));
        }
        if ops.len() > MAX_OPERATIONS {
            return Err(ScimError::bad(
                ScimType::TooMany,
                format!("at most {MAX_OPERATIONS} operations in one request"),
            ));
        }
        let mut operations = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let kind = match get_ci(op, "op")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("add") => PatchKind::Add,
                Some("remove") => PatchKind::Remove,
                Some("replace") => PatchKind::Replace,
                _ => {
                    return Err(syntax(format!(
                        "Operations[{i}].op must be add, remove or replace"
                    )));
                }
            };
            let path = match get_ci(op, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.trim().is_empty() => None,
                Some(Value::String(p)) => Some(PatchPath::parse(p)?),
                Some(_) => return Err(syntax(format!("Operations[{i}].path must be a string"))),
            };
            let value = get_ci(op, "value").cloned().filter(|v| !v.is_null());
            match (kind, &path, &value) {
                (PatchKind::Remove, None, _) => {
                    return Err(ScimError::bad(
                        ScimType::NoTarget,
                        format!("Operations[{i}]: remove needs a path"),
                    ));
                }
                (PatchKind::Add | PatchKind::Replace, _, None) => {
                    return Err(ScimError::bad(
                        ScimType::InvalidValue,
                        format!("Operations[{i}]: {kind:?} needs a value"),
                    ));
                }
                (PatchKind::Add | PatchKind::Replace, None, Some(v)) if !v.is_object() => {
                    return Err(ScimError::bad(
                        ScimType::InvalidValue,
                        format!(
                            "Operations[{i}]: without a path, the value is an object of attributes"
                        ),
                    ));
                }
                _ => {}
            }
            operations.push(PatchOp { kind, path, value });
        }
        Ok(PatchRequest { operations })
    }

    /// Applies every operation in order; the first that fails fails the whole request (the
    /// caller keeps the resource it had).
    pub fn apply(
        &self,
        resource: &mut Value,
        core: &str,
        case_exact: &[&str],
    ) -> Result<(), ScimError> {
        for op in &self.operations {
            apply(resource, op, core, case_exact)?;
        }
        Ok(())
    }
}

/// The key in `o` named `name` without regard to case, or `name` itself.
fn key_in(o: &Map<String, Value>, name: &str) -> String {
    o.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// The object holding `attr`: the resource, or an extension's object (made if missing when
/// `create`).
fn holder<'a>(
    resource: &'a mut Value,
    attr: &AttrPath,
    core: &str,
    create: bool,
) -> Result<Option<&'a mut Map<String, Value>>, ScimError> {
    let Value::Object(top) = resource else {
        return Err(syntax("the resource is not an object"));
    };
    match &attr.uri {
        Some(uri) if !uri.eq_ignore_ascii_case(core) => {
            let key = key_in(top, uri);
            if !top.contains_key(&key) {
                if !create {
                    return Ok(None);
                }
                top.insert(key.clone(), Value::Object(Map::new()));
            }
            match top.get_mut(&key) {
                Some(Value::Object(o)) => Ok(Some(o)),
                _ => Err(syntax(format!("{uri} is not an object"))),
            }
        }
        _ => Ok(Some(top)),
    }
}

/// Adds `value` to the attribute `key` of `o`: appended to a multi-valued one (an equal value
/// is not added twice), merged into a complex one, set otherwise.
fn add_to(o: &mut Map<String, Value>, name: &str, value: Value) {
    let key = key_in(o, name);
    match (o.get_mut(&key), value) {
        (Some(Value::Array(items)), Value::Array(new)) => {
            for v in new {
                if !items.iter().any(|i| same_value(i, &v)) {
                    items.push(v);
                }
            }
        }
        (Some(Value::Array(items)), v) => {
            if !items.iter().any(|i| same_value(i, &v)) {
                items.push(v);
            }
        }
        (Some(Value::Object(existing)), Value::Object(new)) => {
            for (k, v) in new {
                let k = key_in(existing, &k);
                existing.insert(k, v);
            }
        }
        (_, v) => {
            o.insert(key, v);
        }
    }
}

/// Whether two elements of a multi-valued attribute are the same: equal, or complex with the
/// same `value`.
fn same_value(a: &Value, b: &Value) -> bool {
    match (get_ci(a, "value"), get_ci(b, "value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn apply(
    resource: &mut Value,
    op: &PatchOp,
    core: &str,
    case_exact: &[&str],
) -> Result<(), ScimError> {
    let Some(path) = &op.path else {
        // A path-less add or replace: each key of the value is an attribute, an attribute
        // path (Entra ID), or an extension's object of attributes.
        let Some(Value::Object(values)) = &op.value else {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                "the value is not an object",
            ));
        };
        for (k, v) in values {
            if let (true, Value::Object(fields)) = (k.eq_ignore_ascii_case(ENTERPRISE_SCHEMA), v) {
                for (field, fv) in fields {
                    let path = PatchPath::parse(&format!("{ENTERPRISE_SCHEMA}:{field}"))?;
                    apply_at(resource, op.kind, &path, Some(fv.clone()), core, case_exact)?;
                }
                continue;
            }
            let path = PatchPath::parse(k)?;
            apply_at(resource, op.kind, &path, Some(v.clone()), core, case_exact)?;
        }
        return Ok(());
    };
    apply_at(resource, op.kind, path, op.value.clone(), core, case_exact)
}

fn apply_at(
    resource: &mut Value,
    kind: PatchKind,
    path: &PatchPath,
    value: Option<Value>,
    core: &str,
    case_exact: &[&str],
) -> Result<(), ScimError> {
    let create = kind != PatchKind::Remove;
    let Some(o) = holder(resource, &path.attr, core, create)? else {
        return Ok(());
    };
    let key = key_in(o, &path.attr.name);
    if let Some(filter) = &path.filter {
        let Some(Value::Array(items)) = o.get_mut(&key) else {
            return match kind {
                PatchKind::Remove => Ok(()),
                _ => Err(ScimError::bad(
                    ScimType::NoTarget,
                    format!("{} has no values to match", path.attr.name),
                )),
            };
        };
        let mut hits = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if filter.matches(item, core, case_exact)? {
                hits.push(i);
            }
        }
        match (kind, &path.sub) {
            (PatchKind::Remove, None) => {
                let mut i = 0;
                items.retain(|_| {
                    let keep = !hits.contains(&i);
                    i += 1;
                    keep
                });
            }
            (PatchKind::Remove, Some(sub)) => {
                for i in hits {
                    if let Some(Value::Object(e)) = items.get_mut(i) {
                        let k = key_in(e, sub);
                        e.remove(&k);
                    }
                }
            }
            (_, _) if hits.is_empty() => {
                return Err(ScimError::bad(
                    ScimType::NoTarget,
                    format!("no value of {} matches the filter", path.attr.name),
                ));
            }
            (_, Some(sub)) => {
                for i in hits {
                    if let Some(Value::Object(e)) = items.get_mut(i) {
                        let k = key_in(e, sub);
                        e.insert(k, value.clone().unwrap_or(Value::Null));
                    }
                }
            }
            (PatchKind::Add, None) => {
                for i in hits {
                    if let (Some(Value::Object(e)), Some(Value::Object(new))) =
                        (items.get_mut(i), &value)
                    {
                        for (k, v) in new {
                            let k = key_in(e, k);
                            e.insert(k, v.clone());
                        }
                    }
                }
            }
            (_, None) => {
                for i in hits {
                    if let Some(slot) = items.get_mut(i) {
                        *slot = value.clone().unwrap_or(Value::Null);
                    }
                }
            }
        }
        return Ok(());
    }
    match (kind, &path.attr.sub) {
        (PatchKind::Remove, None) => {
            match (o.get_mut(&key), value) {
                // Entra ID: remove these members (by their `value`).
                (Some(Value::Array(items)), Some(v)) => {
                    let gone: Vec<Value> = match v {
                        Value::Array(a) => a,
                        one => vec![one],
                    };
                    items.retain(|i| !gone.iter().any(|g| same_value(i, g)));
                }
                _ => {
                    o.remove(&key);
                }
            }
        }
        (PatchKind::Remove, Some(sub)) => match o.get_mut(&key) {
            Some(Value::Object(e)) => {
                let k = key_in(e, sub);
                e.remove(&k);
            }
            Some(Value::Array(items)) => {
                for e in items.iter_mut().filter_map(Value::as_object_mut) {
                    let k = key_in(e, sub);
                    e.remove(&k);
                }
            }
            _ => {}
        },
        (PatchKind::Add, None) => add_to(o, &key, value.unwrap_or(Value::Null)),
        (PatchKind::Replace, None) => {
            let v = value.unwrap_or(Value::Null);
            match (o.get_mut(&key), v) {
                // A complex single value: the sub-attributes given replace theirs.
                (Some(Value::Object(existing)), Value::Object(new)) => {
                    for (k, v) in new {
                        let k = key_in(existing, &k);
                        existing.insert(k, v);
                    }
                }
                (_, v) => {
                    o.insert(key, v);
                }
            }
        }
        (PatchKind::Add | PatchKind::Replace, Some(sub)) => {
            let entry = o
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(e) = entry else {
                return Err(ScimError::bad(
                    ScimType::InvalidPath,
                    format!("{} has no sub-attributes", path.attr.name),
                ));
            };
            let k = key_in(e, sub);
            e.insert(k, value.unwrap_or(Value::Null));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::{GROUP_SCHEMA, USER_SCHEMA};

    fn patch(resource: &mut Value, core: &str, ops: Value) -> Result<(), ScimError> {
        PatchRequest::parse(&json!({"schemas": [PATCH_SCHEMA], "Operations": ops}))?.apply(
            resource,
            core,
            &["id", "externalId"],
        )
    }

    #[test]
    fn okta_deactivates_and_renames_with_a_pathless_replace() {
        let mut u = json!({"userName": "alice", "active": true, "name": {"givenName": "Alice", "familyName": "J"}});
        patch(
            &mut u,
            USER_SCHEMA,
            json!([{"op": "replace", "value": {"active": false, "name": {"familyName": "Jensen"}}}]),
        )
        .unwrap();
        assert_eq!(u["active"], false);
        assert_eq!(
            u["name"],
            json!({"givenName": "Alice", "familyName": "Jensen"})
        );
    }

    #[test]
    fn entra_habits_are_understood() {
        let mut u = json!({"userName": "alice", "active": true});
        patch(
            &mut u,
            USER_SCHEMA,
            json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "value": {"name.givenName": "Alice", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "SRE"}},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "26118915"},
                {"op": "add", "path": "emails[type eq \"work\"].value", "value": "x"}
            ]),
        )
        .unwrap_err();
        // The last operation had nothing to match: the request fails (the caller keeps its
        // resource). Without it, the rest applies.
        let mut u = json!({"userName": "alice", "active": true});
        patch(
            &mut u,
            USER_SCHEMA,
            json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "value": {"name.givenName": "Alice", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "SRE"}},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "26118915"}
            ]),
        )
        .unwrap();
        assert_eq!(u["active"], "False", "typed later, by the server");
        assert_eq!(u["name"]["givenName"], "Alice");
        assert_eq!(u[ENTERPRISE_SCHEMA]["department"], "SRE");
        assert_eq!(u[ENTERPRISE_SCHEMA]["manager"], "26118915");
    }

    #[test]
    fn group_members_are_added_removed_by_filter_and_by_value() {
        let mut g = json!({"displayName": "sre", "members": [{"value": "a"}]});
        patch(
            &mut g,
            GROUP_SCHEMA,
            json!([{"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "b"}, {"value": "c"}]}]),
        )
        .unwrap();
        assert_eq!(
            g["members"],
            json!([{"value": "a"}, {"value": "b"}, {"value": "c"}])
        );
        patch(
            &mut g,
            GROUP_SCHEMA,
            json!([{"op": "remove", "path": "members[value eq \"b\"]"}]),
        )
        .unwrap();
        patch(
            &mut g,
            GROUP_SCHEMA,
            json!([{"op": "Remove", "path": "members", "value": [{"value": "c"}]}]),
        )
        .unwrap();
        assert_eq!(g["members"], json!([{"value": "a"}]));
        // Removing what is not there changes nothing, and is no error.
        patch(
            &mut g,
            GROUP_SCHEMA,
            json!([{"op": "remove", "path": "members[value eq \"zzz\"]"}]),
        )
        .unwrap();
        patch(
            &mut g,
            GROUP_SCHEMA,
            json!([{"op": "replace", "path": "members", "value": []}]),
        )
        .unwrap();
        assert_eq!(g["members"], json!([]));
    }

    #[test]
    fn value_paths_reach_sub_attributes() {
        let mut u =
            json!({"emails": [{"value": "a@x", "type": "work"}, {"value": "a@y", "type": "home"}]});
        patch(
            &mut u,
            USER_SCHEMA,
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "a@z"},
                   {"op": "remove", "path": "emails[type eq \"home\"]"}]),
        )
        .unwrap();
        assert_eq!(u["emails"], json!([{"value": "a@z", "type": "work"}]));
    }

    proptest::proptest! {
        /// Any operation list parses or is refused with a SCIM error, and applying what parses
        /// never panics.
        #[test]
        fn any_operations_parse_or_are_refused_and_never_panic(
            ops in proptest::collection::vec(
                ("(add|Remove|REPLACE|move)", proptest::option::of("\\PC{0,40}"), proptest::option::of("\\PC{0,20}")),
                0..8,
            )
        ) {
            let ops: Vec<Value> = ops
                .into_iter()
                .map(|(op, path, value)| {
                    let mut o = json!({"op": op});
                    if let Some(p) = path { o["path"] = json!(p); }
                    if let Some(v) = value { o["value"] = json!(v); }
                    o
                })
                .collect();
            let body = json!({"schemas": [PATCH_SCHEMA], "Operations": ops});
            if let Ok(req) = PatchRequest::parse(&body) {
                let mut u = json!({"userName": "a", "emails": [{"value": "a@x", "type": "work"}], "members": [{"value": "1"}]});
                let _ = req.apply(&mut u, USER_SCHEMA, &["id"]);
            }
        }
    }

    #[test]
    fn malformed_requests_are_scim_errors() {
        let bad = |body: Value, t: ScimType| {
            assert_eq!(
                PatchRequest::parse(&body).unwrap_err().scim_type,
                Some(t),
                "{body}"
            );
        };
        bad(
            json!({"Operations": [{"op": "add", "value": {}}]}),
            ScimType::InvalidSyntax,
        );
        bad(
            json!({"schemas": [PATCH_SCHEMA], "Operations": []}),
            ScimType::InvalidSyntax,
        );
        bad(
            json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "move"}]}),
            ScimType::InvalidSyntax,
        );
        bad(
            json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove"}]}),
            ScimType::NoTarget,
        );
        bad(
            json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "x"}]}),
            ScimType::InvalidValue,
        );
        bad(
            json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "value": 1}]}),
            ScimType::InvalidValue,
        );
        bad(
            json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "members[value eq", "value": 1}]}),
            ScimType::InvalidPath,
        );
        bad(
            json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "members[x eq]", "value": 1}]}),
            ScimType::InvalidFilter,
        );
        let many: Vec<Value> = (0..=MAX_OPERATIONS)
            .map(|_| json!({"op": "add", "path": "a", "value": 1}))
            .collect();
        bad(
            json!({"schemas": [PATCH_SCHEMA], "Operations": many}),
            ScimType::TooMany,
        );
    }
}
