//! What every operation's entry in the OpenAPI document states beyond its own annotation, in
//! one place, because the server does it the same way for all of them:
//!
//! - ids in paths have their exact form (`req_` and 32 hexadecimal digits), names theirs;
//! - page sizes, states and formats in queries have the bounds and values the handlers enforce;
//! - every operation that takes input may answer `400` (`body.invalid`, `query.invalid`, …), and
//!   every operation behind a bearer may answer `401`, and `429` once its caller's address is
//!   over the refusal budget;
//! - public operations say so (`security: []`).
//!
//! `tests/it/contract.rs` drives every operation with input generated from the document and
//! checks every answer against it, so a statement here that the server does not keep fails.

use serde_json::{Map, Value, json};

/// Operations that need no bearer: keys anyone may fetch, the token exchange (the identity
/// token is the credential), signed webhooks, the KRL sshd fetches, probes and metrics.
const PUBLIC: &[(&str, &str)] = &[
    ("get", "/.well-known/jwks.json"),
    ("post", "/v1/token"),
    ("get", "/v1/ssh/krl"),
    ("post", "/v1/tickets/events"),
    ("post", "/v1/tickets/sources/{name}/events"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// A prefixed id (`req_0123…`): the prefix and 32 lower-case hexadecimal digits.
fn prefixed(prefix: &str) -> Value {
    json!({
        "type": "string",
        "pattern": format!("^{prefix}_[0-9a-f]{{32}}$"),
        "minLength": prefix.len() + 33,
        "maxLength": prefix.len() + 33,
    })
}

/// A name (identity, ticket source): 1–128 of `[A-Za-z0-9._@-]`.
fn name() -> Value {
    json!({ "type": "string", "pattern": "^[A-Za-z0-9._@-]{1,128}$", "minLength": 1, "maxLength": 128 })
}

/// The schema of path parameter `param` of `path`, where the document states more than
/// "a string".
fn path_param(path: &str, param: &str) -> Option<Value> {
    let id = |p: &str| Some(prefixed(p));
    match (param, path) {
        ("id", p) if p.starts_with("/v1/requests/") => id("req"),
        ("id", p) if p.starts_with("/v1/grants/") => id("grt"),
        ("id", p) if p.starts_with("/v1/reviews/") => id("rev"),
        ("id", p) if p.starts_with("/v1/campaigns/items/") => id("itm"),
        ("id", p) if p.starts_with("/v1/campaigns/") => id("cmp"),
        ("id", p) if p.starts_with("/v1/keys/") => id("key"),
        ("name", _) => Some(name()),
        _ => None,
    }
}

/// The schema of query parameter `param` of `path`, where the document states more.
fn query_param(path: &str, param: &str) -> Option<Value> {
    let states = |all: Vec<&str>| Some(json!({ "type": "string", "enum": all }));
    match (param, path) {
        ("limit", "/v1/audit") => {
            Some(json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 1000 }))
        }
        ("limit", p) if p.starts_with("/v1/campaigns/") => {
            Some(json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 500 }))
        }
        ("limit", _) => {
            Some(json!({ "type": "integer", "minimum": 1, "maximum": 500, "default": 100 }))
        }
        ("after", p) if p.starts_with("/v1/campaigns/") => Some(prefixed("itm")),
        ("after", _) => Some(json!({ "type": "integer", "minimum": 0 })),
        ("unused_days", _) => {
            Some(json!({ "type": "integer", "minimum": 1, "maximum": 3650, "default": 30 }))
        }
        ("state", "/v1/requests") => states(
            hourglass_core::state::RequestState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect(),
        ),
        ("state", "/v1/grants") => states(
            hourglass_core::state::GrantState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect(),
        ),
        ("state", "/v1/reviews") => states(
            hourglass_core::review::ReviewState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect(),
        ),
        ("format", _) => Some(json!({ "type": "string", "enum": ["json", "csv", "html"] })),
        ("at" | "from" | "to", "/v1/why" | "/v1/reports/elevations") => {
            Some(json!({ "type": "string", "format": "date-time" }))
        }
        _ => None,
    }
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": {
            "schema": { "$ref": "#/components/schemas/Problem" }
        } }
    })
}

/// Free text (reasons, comments, notes) is plain text on one line: the server refuses control
/// characters, C1 included.
const PLAIN_TEXT: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// States the plain-text rule on every free-text property of every schema.
fn plain_text_properties(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for schema in schemas.values_mut() {
        let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, prop) in props.iter_mut() {
            let free_text = matches!(name.as_str(), "reason" | "comment" | "note");
            let is_string = match prop.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            if let (true, true, Some(p)) = (free_text, is_string, prop.as_object_mut()) {
                p.entry("pattern").or_insert_with(|| json!(PLAIN_TEXT));
            }
        }
    }
}

/// Completes the document (see the module).
pub(super) fn complete(doc: &mut Value) {
    plain_text_properties(doc);
    // Bodies whose every field is optional may be left out (the server reads none as `{}`).
    let optional_bodies: Vec<String> = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .map(|schemas| {
            schemas
                .iter()
                .filter(|(_, s)| {
                    s.get("type") == Some(&json!("object"))
                        && s.get("required")
                            .and_then(Value::as_array)
                            .is_none_or(Vec::is_empty)
                })
                .map(|(name, _)| format!("#/components/schemas/{name}"))
                .collect()
        })
        .unwrap_or_default();
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, ops) in paths.iter_mut() {
        let Some(ops) = ops.as_object_mut() else {
            continue;
        };
        for (method, op) in ops.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let public = PUBLIC.contains(&(method.as_str(), path.as_str()));
            if public {
                op.insert("security".into(), json!([]));
            }
            let has_input = op.contains_key("requestBody")
                || op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .is_some_and(|p| !p.is_empty());
            let all_optional = op
                .get("requestBody")
                .and_then(|b| b.pointer("/content/application~1json/schema/$ref"))
                .and_then(Value::as_str)
                .is_some_and(|r| optional_bodies.iter().any(|o| o == r));
            if let Some(body) = op.get_mut("requestBody").and_then(Value::as_object_mut)
                && all_optional
            {
                body.insert("required".into(), json!(false));
            }
            if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                for p in params.iter_mut().filter_map(Value::as_object_mut) {
                    complete_param(path, p);
                }
            }
            let responses = op
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            let Some(responses) = responses else {
                continue;
            };
            if has_input && !responses.contains_key("400") {
                responses.insert(
                    "400".into(),
                    problem("Bad input, naming the field; nothing changed"),
                );
            }
            if !public && !responses.contains_key("401") {
                responses.insert("401".into(), problem("No valid token"));
            }
            if !public && !responses.contains_key("429") {
                responses.insert(
                    "429".into(),
                    problem(
                        "Too many refused keys or tokens from this address this minute (auth.throttled; Retry-After says when to come back)",
                    ),
                );
            }
            sort_responses(responses);
        }
    }
}

fn complete_param(path: &str, p: &mut Map<String, Value>) {
    let (Some(name), Some(place)) = (
        p.get("name").and_then(Value::as_str).map(str::to_owned),
        p.get("in").and_then(Value::as_str).map(str::to_owned),
    ) else {
        return;
    };
    // `/v1/events?after=` is a query parameter (the annotation cannot say so for a stream).
    let place = if name == "after" && place == "path" && !path.contains("{after}") {
        p.insert("in".into(), json!("query"));
        "query".to_owned()
    } else {
        place
    };
    let schema = match place.as_str() {
        "path" => path_param(path, &name),
        "query" => query_param(path, &name),
        _ => None,
    };
    if let Some(s) = schema {
        p.insert("schema".into(), s);
    }
}

/// Status codes in ascending order, so that the checked-in document is stable.
fn sort_responses(responses: &mut Map<String, Value>) {
    let mut all: Vec<(String, Value)> = std::mem::take(responses).into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    responses.extend(all);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_and_pages_have_their_exact_form() {
        let req = path_param("/v1/requests/{id}/approve", "id").unwrap();
        assert_eq!(req["pattern"], "^req_[0-9a-f]{32}$");
        assert_eq!(req["maxLength"], 36);
        assert_eq!(
            path_param("/v1/campaigns/items/{id}/decide", "id").unwrap()["pattern"],
            "^itm_[0-9a-f]{32}$"
        );
        assert_eq!(
            path_param("/v1/campaigns/{id}", "id").unwrap()["pattern"],
            "^cmp_[0-9a-f]{32}$"
        );
        assert!(path_param("/v1/whatever/{x}", "x").is_none());
        assert_eq!(query_param("/v1/grants", "limit").unwrap()["maximum"], 500);
        assert_eq!(query_param("/v1/audit", "limit").unwrap()["maximum"], 1000);
        assert_eq!(
            query_param("/v1/requests", "state").unwrap()["enum"][0],
            "pending"
        );
    }

    #[test]
    fn public_operations_drop_the_bearer_and_others_may_answer_401() {
        let mut doc = json!({ "paths": {
            "/v1/token": { "post": { "requestBody": {}, "responses": { "200": {} } } },
            "/v1/grants/{id}": { "get": {
                "parameters": [{ "name": "id", "in": "path" }],
                "responses": { "200": {} }
            } },
            "/v1/events": { "get": {
                "parameters": [{ "name": "after", "in": "path" }],
                "responses": { "200": {} }
            } }
        } });
        complete(&mut doc);
        let token = &doc["paths"]["/v1/token"]["post"];
        assert_eq!(token["security"], json!([]));
        assert!(token["responses"]["401"].is_null());
        assert!(!token["responses"]["400"].is_null());
        let grant = &doc["paths"]["/v1/grants/{id}"]["get"];
        assert!(grant["security"].is_null());
        assert!(!grant["responses"]["401"].is_null());
        assert!(!grant["responses"]["429"].is_null());
        assert_eq!(
            grant["parameters"][0]["schema"]["pattern"],
            "^grt_[0-9a-f]{32}$"
        );
        assert_eq!(
            doc["paths"]["/v1/events"]["get"]["parameters"][0]["in"],
            "query"
        );
    }
}
