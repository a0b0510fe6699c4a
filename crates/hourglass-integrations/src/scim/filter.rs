//! SCIM filters (RFC 7644 §3.4.2.2): parsed into a [`Filter`] and evaluated against a resource
//! as JSON.
//!
//! Operators and attribute names are matched without regard to case; `and` binds tighter than
//! `or`; `not` takes a parenthesised filter. String comparisons ignore case unless the
//! attribute is case-exact (the caller names those, such as `id` and `externalId`). A filter is
//! at most [`MAX_LEN`] bytes and nests at most [`MAX_DEPTH`] deep, so that no input can exhaust
//! the stack.

use serde_json::Value;

use super::{ScimError, ScimType};

/// The longest filter read, in bytes.
pub const MAX_LEN: usize = 4096;
/// The deepest nesting of parentheses, brackets and `not`.
pub const MAX_DEPTH: usize = 32;

/// An attribute path: `[schema URI ":"] name ["." sub]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URI, when the path names one (`urn:…:enterprise:2.0:User`).
    pub uri: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// Reads `urn:…:User:manager.value`, `name.givenName` or `userName`.
    pub fn parse(s: &str) -> Result<Self, ScimError> {
        let bad = || {
            ScimError::bad(
                ScimType::InvalidPath,
                format!("{s:?} is not an attribute path"),
            )
        };
        let (uri, rest) =
            if s.len() > 4 && s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
                let i = s.rfind(':').ok_or_else(bad)?;
                (Some(s[..i].to_owned()), &s[i + 1..])
            } else {
                (None, s)
            };
        let (name, sub) = match rest.split_once('.') {
            Some((n, sub)) => (n, Some(sub)),
            None => (rest, None),
        };
        let valid = |n: &str| {
            n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
        };
        if !valid(name) || sub.is_some_and(|s| !valid(s)) {
            return Err(bad());
        }
        Ok(AttrPath {
            uri,
            name: name.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: Value,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `emails[type eq "work" and value co "@example.com"]`: some element of a multi-valued
    /// attribute matches the inner filter.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Word(String),
    Literal(Value),
}

fn invalid(why: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidFilter, why)
}

fn tokens(s: &str) -> Result<Vec<Token>, ScimError> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Token::Open);
                i += 1;
            }
            b')' => {
                out.push(Token::Close);
                i += 1;
            }
            b'[' => {
                out.push(Token::OpenBracket);
                i += 1;
            }
            b']' => {
                out.push(Token::CloseBracket);
                i += 1;
            }
            b'"' => {
                // A JSON string: find its end, honouring escapes, and let JSON read it.
                let start = i;
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(invalid("a string is not closed")),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                let v: String = serde_json::from_str(&s[start..i])
                    .map_err(|_| invalid("a string is not valid JSON"))?;
                out.push(Token::Literal(Value::String(v)));
            }
            _ => {
                let start = i;
                while i < b.len()
                    && !matches!(
                        b[i],
                        b' ' | b'\t' | b'\n' | b'\r' | b'(' | b')' | b'[' | b']' | b'"'
                    )
                {
                    i += 1;
                }
                out.push(Token::Word(s[start..i].to_owned()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn deeper(&mut self) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid(format!("the filter nests deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    /// `or` of `and`s.
    fn filter(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        let mut left = self.conjunction(in_brackets)?;
        while self.keyword("or") {
            self.at += 1;
            let right = self.conjunction(in_brackets)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn conjunction(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        let mut left = self.unit(in_brackets)?;
        while self.keyword("and") {
            self.at += 1;
            let right = self.unit(in_brackets)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unit(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        if self.keyword("not") {
            self.at += 1;
            if self.next() != Some(Token::Open) {
                return Err(invalid("not must be followed by a parenthesised filter"));
            }
            self.deeper()?;
            let inner = self.filter(in_brackets)?;
            self.depth -= 1;
            if self.next() != Some(Token::Close) {
                return Err(invalid("a parenthesis is not closed"));
            }
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.next() {
            Some(Token::Open) => {
                self.deeper()?;
                let inner = self.filter(in_brackets)?;
                self.depth -= 1;
                if self.next() != Some(Token::Close) {
                    return Err(invalid("a parenthesis is not closed"));
                }
                Ok(inner)
            }
            Some(Token::Word(w)) => {
                let path = AttrPath::parse(&w).map_err(|e| invalid(e.detail))?;
                if self.peek() == Some(&Token::OpenBracket) {
                    if in_brackets {
                        return Err(invalid("a value filter cannot hold another"));
                    }
                    self.at += 1;
                    self.deeper()?;
                    let inner = self.filter(true)?;
                    self.depth -= 1;
                    if self.next() != Some(Token::CloseBracket) {
                        return Err(invalid("a bracket is not closed"));
                    }
                    return Ok(Filter::ValuePath {
                        path,
                        filter: Box::new(inner),
                    });
                }
                let Some(Token::Word(op)) = self.next() else {
                    return Err(invalid(format!("an operator must follow {w}")));
                };
                if op.eq_ignore_ascii_case("pr") {
                    return Ok(Filter::Present(path));
                }
                let op = CompareOp::parse(&op)
                    .ok_or_else(|| invalid(format!("{op:?} is not an operator")))?;
                let value = match self.next() {
                    Some(Token::Literal(v)) => v,
                    Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        "null" => Value::Null,
                        _ => serde_json::from_str::<serde_json::Number>(&w)
                            .map(Value::Number)
                            .map_err(|_| {
                                invalid(format!("{w:?} is not a value (quote strings)"))
                            })?,
                    },
                    _ => return Err(invalid(format!("a value must follow the operator on {w}"))),
                };
                Ok(Filter::Compare { path, op, value })
            }
            _ => Err(invalid("an attribute or a parenthesis was expected")),
        }
    }
}

impl Filter {
    /// Parses a filter.
    pub fn parse(s: &str) -> Result<Filter, ScimError> {
        if s.len() > MAX_LEN {
            return Err(invalid(format!("a filter is at most {MAX_LEN} bytes")));
        }
        let mut p = Parser {
            tokens: tokens(s)?,
            at: 0,
            depth: 0,
        };
        if p.tokens.is_empty() {
            return Err(invalid("the filter is empty"));
        }
        let f = p.filter(false)?;
        if p.at != p.tokens.len() {
            return Err(invalid("the filter goes on after its end"));
        }
        Ok(f)
    }

    /// Parses the filter inside a value path (`type eq "work"` in `emails[type eq "work"]`).
    pub fn parse_value_filter(s: &str) -> Result<Filter, ScimError> {
        let f = Filter::parse(s)?;
        if f.has_value_path() {
            return Err(invalid("a value filter cannot hold another"));
        }
        Ok(f)
    }

    fn has_value_path(&self) -> bool {
        match self {
            Filter::ValuePath { .. } => true,
            Filter::And(a, b) | Filter::Or(a, b) => a.has_value_path() || b.has_value_path(),
            Filter::Not(a) => a.has_value_path(),
            Filter::Compare { .. } | Filter::Present(_) => false,
        }
    }

    /// Whether `resource` matches. `core` is the resource's core schema URI (a path may name
    /// it); `case_exact` names the attributes whose strings compare with case. A comparison the
    /// attribute's type does not allow (`gt` on a boolean) is an error.
    pub fn matches(
        &self,
        resource: &Value,
        core: &str,
        case_exact: &[&str],
    ) -> Result<bool, ScimError> {
        Ok(match self {
            Filter::And(a, b) => {
                a.matches(resource, core, case_exact)? && b.matches(resource, core, case_exact)?
            }
            Filter::Or(a, b) => {
                a.matches(resource, core, case_exact)? || b.matches(resource, core, case_exact)?
            }
            Filter::Not(a) => !a.matches(resource, core, case_exact)?,
            Filter::Present(path) => values(resource, path, core).iter().any(|v| present(v)),
            Filter::Compare { path, op, value } => {
                let exact = case_exact
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(&path.name));
                let found = values(resource, path, core);
                match op {
                    CompareOp::Ne => !any_compare(&found, CompareOp::Eq, value, exact)?,
                    CompareOp::Eq if value.is_null() => !found.iter().any(|v| present(v)),
                    op => any_compare(&found, *op, value, exact)?,
                }
            }
            Filter::ValuePath { path, filter } => {
                let Some(attr) = attribute(resource, path, core) else {
                    return Ok(false);
                };
                let elements: Vec<&Value> = match attr {
                    Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                let mut any = false;
                for e in elements {
                    if filter.matches(e, core, case_exact)? {
                        any = true;
                        break;
                    }
                }
                any
            }
        })
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// The key of `obj` named `name`, without regard to case (SCIM attribute names ignore case).
pub fn get_ci<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The attribute `path` names (not its sub-attribute).
fn attribute<'a>(resource: &'a Value, path: &AttrPath, core: &str) -> Option<&'a Value> {
    let holder = match &path.uri {
        Some(uri) if !uri.eq_ignore_ascii_case(core) => get_ci(resource, uri)?,
        _ => resource,
    };
    get_ci(holder, &path.name)
}

/// The values a path reaches: a multi-valued attribute's elements (their sub-attribute, or
/// their `value` for a complex one without a sub-attribute named).
fn values<'a>(resource: &'a Value, path: &AttrPath, core: &str) -> Vec<&'a Value> {
    let Some(attr) = attribute(resource, path, core) else {
        return Vec::new();
    };
    match attr {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| match (&path.sub, v) {
                (Some(sub), v) => get_ci(v, sub),
                (None, Value::Object(_)) => get_ci(v, "value"),
                (None, v) => Some(v),
            })
            .collect(),
        single => match &path.sub {
            Some(sub) => get_ci(single, sub).into_iter().collect(),
            None => vec![single],
        },
    }
}

fn any_compare(
    found: &[&Value],
    op: CompareOp,
    want: &Value,
    exact: bool,
) -> Result<bool, ScimError> {
    for v in found {
        if compare(v, op, want, exact)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn compare(have: &Value, op: CompareOp, want: &Value, exact: bool) -> Result<bool, ScimError> {
    use CompareOp::*;
    match (have, want) {
        (Value::String(h), Value::String(w)) => {
            let (h, w) = if exact {
                (h.clone(), w.clone())
            } else {
                (h.to_lowercase(), w.to_lowercase())
            };
            Ok(match op {
                Eq => h == w,
                Ne => h != w,
                Co => h.contains(&w),
                Sw => h.starts_with(&w),
                Ew => h.ends_with(&w),
                Gt => h > w,
                Ge => h >= w,
                Lt => h < w,
                Le => h <= w,
            })
        }
        (Value::Bool(h), Value::Bool(w)) => match op {
            Eq => Ok(h == w),
            Ne => Ok(h != w),
            _ => Err(invalid("a boolean compares only with eq and ne")),
        },
        (Value::Number(h), Value::Number(w)) => {
            let (h, w) = (
                h.as_f64().unwrap_or(f64::NAN),
                w.as_f64().unwrap_or(f64::NAN),
            );
            match op {
                Eq => Ok(h == w),
                Ne => Ok(h != w),
                Gt => Ok(h > w),
                Ge => Ok(h >= w),
                Lt => Ok(h < w),
                Le => Ok(h <= w),
                Co | Sw | Ew => Err(invalid("a number does not take co, sw or ew")),
            }
        }
        // Booleans sent as strings ("True") by some clients compare as booleans.
        (Value::Bool(h), Value::String(w)) if matches!(op, Eq | Ne) => {
            match w.to_ascii_lowercase().as_str() {
                "true" => Ok(*h == (op == Eq)),
                "false" => Ok(*h != (op == Eq)),
                _ => Ok(op == Ne),
            }
        }
        _ => Ok(op == Ne),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

    fn alice() -> Value {
        json!({
            "schemas": [USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "00ujl29u0le5T6Aj10h7",
            "userName": "Alice@Example.com",
            "name": {"givenName": "Alice", "familyName": "Jensen"},
            "active": true,
            "emails": [
                {"value": "alice@example.com", "type": "work", "primary": true},
                {"value": "alice@home.example", "type": "home"}
            ],
            "meta": {"lastModified": "2026-11-30T10:00:00Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "department": "SRE", "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
            }
        })
    }

    fn m(f: &str) -> bool {
        Filter::parse(f)
            .unwrap_or_else(|e| panic!("{f}: {e:?}"))
            .matches(&alice(), USER, &["id", "externalId"])
            .unwrap_or_else(|e| panic!("{f}: {e:?}"))
    }

    #[test]
    fn every_operator_as_the_rfc_writes_it() {
        assert!(
            m(r#"userName eq "alice@example.com""#),
            "userName ignores case"
        );
        assert!(m(r#"USERNAME Eq "ALICE@EXAMPLE.COM""#));
        assert!(
            !m(r#"id eq "2819C223-7F76-453A-919D-413861904646""#),
            "id is case-exact"
        );
        assert!(m(r#"userName ne "bob""#));
        assert!(m(r#"name.familyName co "ens""#));
        assert!(m(r#"userName sw "alice@""#));
        assert!(m(r#"userName ew "example.com""#));
        assert!(m(r#"meta.lastModified gt "2026-01-01T00:00:00Z""#));
        assert!(m(r#"meta.lastModified ge "2026-11-30T10:00:00Z""#));
        assert!(!m(r#"meta.lastModified lt "2026-01-01T00:00:00Z""#));
        assert!(m(r#"meta.lastModified le "2026-11-30T10:00:00Z""#));
        assert!(!m("title pr") && m("name pr") && m("emails pr"));
        assert!(m("active eq true") && !m("active eq false"));
        assert!(
            m(r#"active eq "True""#) && m(r#"active ne "false""#),
            "Entra writes booleans as strings"
        );
        assert!(m(r#"emails eq "alice@home.example""#), "complex: its value");
        assert!(m(r#"emails.type eq "home""#));
        assert!(m(r#"emails[type eq "work" and value co "@example.com"]"#));
        assert!(!m(r#"emails[type eq "home" and primary eq true]"#));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sre""#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "alice""#
        ));
        assert!(m("title eq null"));
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_negates_a_group() {
        // false and false or true = (false and false) or true = true
        assert!(m(
            r#"userName eq "x" and active eq false or active eq true"#
        ));
        // false and (false or true) = false
        assert!(!m(
            r#"userName eq "x" and (active eq false or active eq true)"#
        ));
        assert!(m(r#"not (userName eq "x")"#));
        assert!(!m(r#"not(active eq true) or userName eq "bob""#));
        assert!(m(
            r#"(userName eq "x" or (name.givenName eq "alice")) and active eq true"#
        ));
    }

    proptest::proptest! {
        /// Whatever a client sends, parsing answers (a filter or an `invalidFilter`), and a
        /// parsed filter evaluates without panicking.
        #[test]
        fn any_text_parses_or_is_refused_and_never_panics(text in "\\PC{0,200}") {
            if let Ok(f) = Filter::parse(&text) {
                let _ = f.matches(&alice(), USER, &["id"]);
            } else {
                proptest::prop_assert_eq!(
                    Filter::parse(&text).unwrap_err().scim_type,
                    Some(ScimType::InvalidFilter)
                );
            }
        }

        /// Filters built from the grammar's own pieces always parse, however deep and mixed.
        #[test]
        fn grammatical_filters_parse(
            attrs in proptest::collection::vec("(userName|name\\.givenName|emails|active|meta\\.lastModified)", 1..6),
            ops in proptest::collection::vec("(eq|ne|co|sw|ew|gt|ge|lt|le|pr)", 6),
            joins in proptest::collection::vec("(and|or)", 6),
            nots in proptest::collection::vec(proptest::bool::ANY, 6),
        ) {
            let mut f = String::new();
            for (i, a) in attrs.iter().enumerate() {
                if i > 0 {
                    f.push_str(&format!(" {} ", joins[i]));
                }
                let cmp = if ops[i] == "pr" {
                    format!("{a} pr")
                } else {
                    format!("{a} {} \"x{i}\"", ops[i])
                };
                if nots[i] {
                    f.push_str(&format!("not ({cmp})"));
                } else {
                    f.push_str(&format!("({cmp})"));
                }
            }
            proptest::prop_assert!(Filter::parse(&f).is_ok(), "{}", f);
        }
    }

    #[test]
    fn malformed_filters_are_invalid_filter_errors() {
        for f in [
            "",
            "userName",
            "userName eq",
            "userName eq alice",
            r#"userName equals "alice""#,
            r#"userName eq "alice"#,
            r#"(userName eq "alice""#,
            r#"userName eq "alice")"#,
            r#"not userName eq "alice""#,
            r#"emails[type eq "work""#,
            r#"emails[members[value eq "x"]]"#,
            r#"userName eq "a" and"#,
            r#"1userName eq "a""#,
            "\"\\x\"",
        ] {
            let e = Filter::parse(f).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{f:?}");
        }
        // Found by the property test below: a multi-byte character where "urn:" would end.
        assert!(Filter::parse("ab\u{e9} eq 1").is_err());
        assert!(AttrPath::parse("urn\u{e9}x").is_err());
        let deep = format!("{}active eq true{}", "(".repeat(40), ")".repeat(40));
        assert!(Filter::parse(&deep).unwrap_err().detail.contains("deeper"));
        let long = format!(r#"userName eq "{}""#, "a".repeat(MAX_LEN));
        assert!(Filter::parse(&long).is_err());
        // Types that do not compare are refused when evaluated.
        let gt = Filter::parse("active gt true").unwrap();
        assert!(gt.matches(&alice(), USER, &[]).is_err());
    }
}
