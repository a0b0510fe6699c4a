//! Ticket systems Hourglass asks about tickets: Jira (REST API v3) and ServiceNow (Table API).
//! Both map the system's users and groups to Hourglass names through configured tables, and
//! report "did not answer" (down, slow, refused credentials) apart from "no such ticket", so that
//! the engine can apply the configured outcome instead of guessing.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use hourglass_connectors::outbound;
use hourglass_core::{
    Timestamp,
    ticket::{Ticket, TicketSource, TicketUnavailable},
};
use regex::Regex;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// How Hourglass authenticates to the ticket system.
#[derive(Debug)]
pub enum Auth {
    /// `user` and an API token or password (Jira Cloud: email and API token).
    Basic { user: String, secret: SecretString },
    /// A bearer token (Jira Data Center personal access token, ServiceNow OAuth token).
    Bearer(SecretString),
}

/// Which API a source speaks.
#[derive(Debug, Clone)]
pub enum Api {
    Jira,
    ServiceNow {
        /// The table to read (`incident`).
        table: String,
        /// `state` values that mean closed (incident: 6 resolved, 7 closed, 8 cancelled).
        closed_states: Vec<String>,
    },
}

/// The settings of one HTTP ticket source.
#[derive(Debug)]
pub struct SourceSettings {
    pub name: String,
    pub pattern: String,
    pub base_url: String,
    pub api: Api,
    pub auth: Option<Auth>,
    /// The system's user ids (Jira `accountId` or email, ServiceNow `user_name`) → principals.
    pub users: BTreeMap<String, String>,
    /// The system's group names → Hourglass groups.
    pub groups: BTreeMap<String, String>,
    pub timeout: Duration,
    pub allow_private: bool,
}

/// A ticket system's time of change: RFC 3339, Jira's `2026-11-30T10:11:12.123+0000`, or
/// ServiceNow's `2026-11-30 10:11:12` (UTC, as the Table API gives `sys_updated_on`).
pub fn ticket_time(text: &str) -> Option<Timestamp> {
    let t = text.trim();
    if let Some(ts) = Timestamp::parse_rfc3339(t) {
        return Some(ts);
    }
    // Jira: a zone offset without its colon.
    let bytes = t.as_bytes();
    if bytes.len() > 5 && matches!(bytes[bytes.len() - 5], b'+' | b'-') {
        let (head, zone) = t.split_at(t.len() - 5);
        if let Some(ts) = Timestamp::parse_rfc3339(&format!("{head}{}:{}", &zone[..3], &zone[3..]))
        {
            return Some(ts);
        }
    }
    // ServiceNow: a space for the T, and UTC.
    if t.len() == 19 && bytes.get(10) == Some(&b' ') {
        return Timestamp::parse_rfc3339(&format!("{}T{}Z", &t[..10], &t[11..]));
    }
    None
}

/// A reference pattern, matched against the whole reference.
pub fn whole_pattern(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("pattern {pattern:?}: {e}"))
}

/// A Jira or ServiceNow source.
pub struct HttpTicketSource {
    name: String,
    pattern: Regex,
    base: reqwest::Url,
    api: Api,
    auth: Option<Auth>,
    users: BTreeMap<String, String>,
    groups: BTreeMap<String, String>,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpTicketSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTicketSource")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// A string field, or the `value` of a ServiceNow `{value, display_value}` object.
fn text(v: &Value, display: bool) -> Option<&str> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Object(o) => o
            .get(if display { "display_value" } else { "value" })
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty()),
        _ => None,
    }
}

impl HttpTicketSource {
    pub fn new(s: SourceSettings) -> Result<Self, String> {
        let mut base = outbound::check_url(&s.base_url, s.allow_private)?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(HttpTicketSource {
            pattern: whole_pattern(&s.pattern)?,
            name: s.name,
            base,
            api: s.api,
            auth: s.auth,
            users: s.users,
            groups: s.groups,
            client: outbound::client(s.allow_private, s.timeout)?,
        })
    }

    fn user(&self, ids: &[Option<&str>]) -> Option<String> {
        let ids: Vec<&str> = ids.iter().flatten().copied().collect();
        ids.iter()
            .find_map(|id| self.users.get(*id).cloned())
            .or_else(|| ids.first().map(|id| (*id).to_owned()))
    }

    fn group(&self, name: Option<&str>) -> Option<String> {
        name.map(|g| self.groups.get(g).cloned().unwrap_or_else(|| g.to_owned()))
    }

    async fn get(&self, url: reqwest::Url) -> Result<Option<Value>, TicketUnavailable> {
        let mut req = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        req = match &self.auth {
            Some(Auth::Basic { user, secret }) => {
                req.basic_auth(user, Some(secret.expose_secret()))
            }
            Some(Auth::Bearer(token)) => req.bearer_auth(token.expose_secret()),
            None => req,
        };
        let name = &self.name;
        let resp = req.send().await.map_err(|e| {
            TicketUnavailable(if e.is_timeout() {
                format!("{name} did not answer in time")
            } else {
                format!("{name} could not be reached: {}", e.without_url())
            })
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(TicketUnavailable(format!("{name} answered HTTP {status}")));
        }
        resp.json::<Value>()
            .await
            .map(Some)
            .map_err(|e| TicketUnavailable(format!("{name} sent an unreadable answer: {e}")))
    }

    async fn jira(&self, key: &str) -> Result<Option<Ticket>, TicketUnavailable> {
        let mut url = self
            .base
            .join("rest/api/3/issue/")
            .map_err(|e| TicketUnavailable(e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| TicketUnavailable("bad base url".into()))?
            .pop_if_empty()
            .push(key);
        url.query_pairs_mut()
            .append_pair("fields", "status,assignee,priority,updated");
        let Some(body) = self.get(url).await? else {
            return Ok(None);
        };
        Ok(Some(self.jira_ticket(key, &body)))
    }

    /// A Jira issue (`GET /rest/api/3/issue/{key}`, or a webhook's `issue`) as a ticket.
    pub fn jira_ticket(&self, key: &str, issue: &Value) -> Ticket {
        let f = &issue["fields"];
        let category = f["status"]["statusCategory"]["key"].as_str().unwrap_or("");
        let assignee = &f["assignee"];
        Ticket {
            reference: issue["key"].as_str().unwrap_or(key).to_owned(),
            open: category != "done",
            status: f["status"]["name"].as_str().unwrap_or("unknown").to_owned(),
            assignee: self.user(&[
                assignee["accountId"].as_str(),
                assignee["emailAddress"].as_str(),
                assignee["name"].as_str(),
            ]),
            group: None,
            priority: f["priority"]["name"].as_str().map(str::to_owned),
            updated: f["updated"].as_str().and_then(ticket_time),
        }
    }

    async fn servicenow(&self, number: &str) -> Result<Option<Ticket>, TicketUnavailable> {
        let Api::ServiceNow { table, .. } = &self.api else {
            return Ok(None);
        };
        // The reference matched the source's pattern; an encoded query must not be extendable.
        if number.contains(['^', '=', '&']) {
            return Ok(None);
        }
        let mut url = self
            .base
            .join("api/now/table/")
            .map_err(|e| TicketUnavailable(e.to_string()))?;
        url.path_segments_mut()
            .map_err(|()| TicketUnavailable("bad base url".into()))?
            .pop_if_empty()
            .push(table);
        url.query_pairs_mut()
            .append_pair("sysparm_query", &format!("number={number}"))
            .append_pair(
                "sysparm_fields",
                "number,state,priority,assigned_to.user_name,assignment_group.name,sys_updated_on",
            )
            .append_pair("sysparm_display_value", "all")
            .append_pair("sysparm_limit", "1");
        let Some(body) = self.get(url).await? else {
            return Ok(None);
        };
        Ok(body["result"]
            .as_array()
            .and_then(|rows| rows.first())
            .map(|row| self.servicenow_ticket(number, row)))
    }

    /// A ServiceNow record (Table API with `sysparm_display_value=all`, or a business rule's
    /// post of plain values) as a ticket.
    pub fn servicenow_ticket(&self, number: &str, row: &Value) -> Ticket {
        let closed: &[String] = match &self.api {
            Api::ServiceNow { closed_states, .. } => closed_states,
            Api::Jira => &[],
        };
        let state = &row["state"];
        let value = text(state, false).unwrap_or("");
        let assignee = row
            .get("assigned_to.user_name")
            .or_else(|| row.get("assigned_to"))
            .and_then(|v| text(v, false));
        let group = row
            .get("assignment_group.name")
            .or_else(|| row.get("assignment_group"))
            .and_then(|v| text(v, true));
        Ticket {
            reference: text(&row["number"], false).unwrap_or(number).to_owned(),
            open: !closed.iter().any(|c| c == value),
            status: text(state, true).unwrap_or(value).to_owned(),
            assignee: self.user(&[assignee]),
            group: self.group(group),
            priority: text(&row["priority"], true).map(str::to_owned),
            updated: row
                .get("sys_updated_on")
                .and_then(|v| text(v, false))
                .and_then(ticket_time),
        }
    }
}

#[async_trait]
impl TicketSource for HttpTicketSource {
    fn name(&self) -> &str {
        &self.name
    }
    fn matches(&self, reference: &str) -> bool {
        self.pattern.is_match(reference)
    }
    async fn lookup(&self, reference: &str) -> Result<Option<Ticket>, TicketUnavailable> {
        match self.api {
            Api::Jira => self.jira(reference).await,
            Api::ServiceNow { .. } => self.servicenow(reference).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(api: Api) -> HttpTicketSource {
        HttpTicketSource::new(SourceSettings {
            name: "t".into(),
            pattern: r"HD-\d+|INC\d{7}".into(),
            base_url: "http://127.0.0.1:9/".into(),
            api,
            auth: None,
            users: BTreeMap::from([("5b10ac8d82e05b22cc7d4ef5".into(), "alice".into())]),
            groups: BTreeMap::from([("Service Desk".into(), "helpdesk".into())]),
            timeout: Duration::from_secs(1),
            allow_private: true,
        })
        .unwrap()
    }

    #[test]
    fn patterns_match_whole_references() {
        let s = source(Api::Jira);
        assert!(s.matches("HD-12"));
        assert!(s.matches("INC0010001"));
        assert!(!s.matches("XHD-12"));
        assert!(!s.matches("HD-12; DROP"));
        assert!(whole_pattern("(").is_err());
    }

    #[test]
    fn jira_issues_map_status_category_and_users() {
        let s = source(Api::Jira);
        let issue = json!({"key": "HD-1", "fields": {
            "status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
            "assignee": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Alice"},
            "priority": {"name": "High"}}});
        let t = s.jira_ticket("HD-1", &issue);
        assert!(t.open);
        assert_eq!(t.status, "In Progress");
        assert_eq!(t.assignee.as_deref(), Some("alice"));
        assert_eq!(t.priority.as_deref(), Some("High"));
        let done = json!({"key": "HD-1", "fields": {
            "status": {"name": "Done", "statusCategory": {"key": "done"}}, "assignee": null}});
        let t = s.jira_ticket("HD-1", &done);
        assert!(!t.open);
        assert_eq!(t.assignee, None);
    }

    #[test]
    fn servicenow_records_map_state_values_in_both_shapes() {
        let s = source(Api::ServiceNow {
            table: "incident".into(),
            closed_states: vec!["6".into(), "7".into(), "8".into()],
        });
        let row = json!({
            "number": {"display_value": "INC0010001", "value": "INC0010001"},
            "state": {"display_value": "In Progress", "value": "2"},
            "priority": {"display_value": "2 - High", "value": "2"},
            "assigned_to.user_name": {"display_value": "bob", "value": "bob"},
            "assignment_group.name": {"display_value": "Service Desk", "value": "Service Desk"}});
        let t = s.servicenow_ticket("INC0010001", &row);
        assert!(t.open);
        assert_eq!(t.status, "In Progress");
        assert_eq!(t.assignee.as_deref(), Some("bob"));
        assert_eq!(t.group.as_deref(), Some("helpdesk"));
        let plain = json!({"number": "INC0010001", "state": "7"});
        let t = s.servicenow_ticket("INC0010001", &plain);
        assert!(!t.open);
        assert_eq!(t.status, "7");
    }
}
