//! `directory`: an identity provider's first sync through SCIM, over HTTP.
//!
//! - Importing N users and N/10 groups (ten members each) the way Okta and Entra ID do it: a
//!   lookup by `userName` (or `displayName`) before each create, 8 requests at once. Users per
//!   second, next to the raw durable SQLite commit rate measured in the same run (each create is
//!   one transaction: the directory entry, the principal and the audit record).
//! - One PATCH adding M members to a group, next to M PATCHes adding one member each to another
//!   group, side by side.
//! - The lookup by `userName` with N users present (an index lookup), next to a filter that must
//!   read every user (`userName co "…"`).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::stats::{Report, Samples, now};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const CLIENTS: usize = 8;

fn write_config(dir: &Path) -> Result<(std::path::PathBuf, String)> {
    std::fs::create_dir_all(dir.join("policies"))?;
    std::fs::write(
        dir.join("policies/bench.cedar"),
        "@id(\"nobody\")\nforbid(principal, action, resource) when { principal.name == \"-\" };\n",
    )?;
    let token = hourglass_server::auth::new_token().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite://hourglass.db\"\n\n\
         [scim]\nprovisioners = [\"idp\"]\nemail_domain = \"example.com\"\nmax_results = 1000\n\n\
         [[identities]]\nname = \"it-admin\"\nkind = \"human\"\n\n\
         [[identities]]\nname = \"idp\"\nkind = \"workload\"\nowner = \"it-admin\"\ntoken_sha256 = [\"{}\"]\n",
        hourglass_server::auth::token_hash(&token)
    );
    let path = dir.join("hourglass.toml");
    std::fs::write(&path, text)?;
    Ok((path, token))
}

#[derive(Clone)]
struct Scim {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Scim {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}/scim/v2{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status}: {text}");
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    /// Looks a name up the way an identity provider does, then creates it; its id.
    async fn sync(&self, resource: &str, attr: &str, body: Value) -> Result<String> {
        let name = body[attr].as_str().context("no name")?.to_owned();
        let filter: String =
            url::form_urlencoded::byte_serialize(format!("{attr} eq \"{name}\"").as_bytes())
                .collect();
        let found = self
            .call(
                reqwest::Method::GET,
                &format!("/{resource}?filter={filter}"),
                None,
            )
            .await?;
        anyhow::ensure!(found["totalResults"] == 0, "{name} exists");
        let created = self
            .call(reqwest::Method::POST, &format!("/{resource}"), Some(body))
            .await?;
        Ok(created["id"].as_str().context("no id")?.to_owned())
    }
}

fn user(i: usize) -> Value {
    json!({
        "schemas": [USER],
        "userName": format!("user{i}@example.com"),
        "name": {"givenName": "User", "familyName": format!("Number {i}")},
        "emails": [{"primary": true, "type": "work", "value": format!("user{i}@example.com")}],
        "externalId": format!("00u{i:08}"),
        "active": true
    })
}

/// Runs `n` operations over `CLIENTS` tasks, `op(i)` each; their ids in order, and the seconds.
async fn spread<F, Fut>(n: usize, op: F) -> Result<(Vec<String>, f64)>
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<String>> + Send,
{
    let t = now();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let op = op.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            for i in (c..n).step_by(CLIENTS) {
                out.push((i, op(i).await?));
            }
            Ok::<_, anyhow::Error>(out)
        });
    }
    let mut ids = vec![String::new(); n];
    while let Some(done) = set.join_next().await {
        for (i, id) in done?? {
            ids[i] = id;
        }
    }
    Ok((ids, t.elapsed().as_secs_f64()))
}

pub async fn run(users: usize, members: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (config, token) = write_config(dir.path())?;
    let raw = crate::harness::sqlite_commits_per_sec(dir.path(), 500).await?;
    let server = crate::harness::Server::start(&config).await?;
    let scim = Scim {
        base: server.base.clone(),
        token,
        http: reqwest::Client::new(),
    };

    // The first sync: users, then groups of ten.
    let s = scim.clone();
    let (user_ids, user_secs) = spread(users, move |i| {
        let s = s.clone();
        async move { s.sync("Users", "userName", user(i)).await }
    })
    .await?;
    let groups = (users / 10).max(1);
    let s = scim.clone();
    let ids = std::sync::Arc::new(user_ids.clone());
    let (_, group_secs) = spread(groups, move |g| {
        let (s, ids) = (s.clone(), std::sync::Arc::clone(&ids));
        async move {
            let members: Vec<Value> = (0..10)
                .filter_map(|k| ids.get(g * 10 + k))
                .map(|id| json!({"value": id}))
                .collect();
            s.sync(
                "Groups",
                "displayName",
                json!({"schemas": [GROUP], "displayName": format!("group-{g}"), "members": members}),
            )
            .await
        }
    })
    .await?;
    let users_per_s = users as f64 / user_secs;
    Report::new("directory-import")
        .field("users", users)
        .field("groups", groups)
        .num("users_per_s", users_per_s, 0)
        .num("groups_per_s", groups as f64 / group_secs, 0)
        .num("seconds", user_secs + group_secs, 1)
        .num("raw_sqlite_commits_per_s", raw, 0)
        .num("ratio", users_per_s / raw, 2)
        .print();

    // One PATCH with M members, against M PATCHes of one.
    let members = members.min(users);
    let bulk = scim
        .sync(
            "Groups",
            "displayName",
            json!({"schemas": [GROUP], "displayName": "bulk"}),
        )
        .await?;
    let single = scim
        .sync(
            "Groups",
            "displayName",
            json!({"schemas": [GROUP], "displayName": "single"}),
        )
        .await?;
    let all: Vec<Value> = user_ids[..members]
        .iter()
        .map(|id| json!({"value": id}))
        .collect();
    let t = now();
    let done = scim
        .call(
            reqwest::Method::PATCH,
            &format!("/Groups/{bulk}"),
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": all}]})),
        )
        .await?;
    let one_patch = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        done["members"].as_array().map(Vec::len) == Some(members),
        "bulk patch"
    );
    let t = now();
    for id in &user_ids[..members] {
        scim.call(
            reqwest::Method::PATCH,
            &format!("/Groups/{single}"),
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]})),
        )
        .await?;
    }
    let many_patches = t.elapsed().as_secs_f64();
    Report::new("directory-patch")
        .field("members", members)
        .num("one_patch_s", one_patch, 3)
        .num("one_member_patches_s", many_patches, 3)
        .num("ratio", many_patches / one_patch, 1)
        .print();

    // A lookup by name (an index), against a filter that reads every user.
    let (mut by_name, mut scan) = (Samples::default(), Samples::default());
    for k in 0..20 {
        let i = (k * 7919) % users;
        let q: String = url::form_urlencoded::byte_serialize(
            format!("userName eq \"user{i}@example.com\"").as_bytes(),
        )
        .collect();
        let t = now();
        let v = scim
            .call(reqwest::Method::GET, &format!("/Users?filter={q}"), None)
            .await?;
        by_name.push(t.elapsed());
        anyhow::ensure!(v["totalResults"] == 1, "lookup");
        let q: String =
            url::form_urlencoded::byte_serialize(format!("userName co \"user{i}@\"").as_bytes())
                .collect();
        let t = now();
        let v = scim
            .call(
                reqwest::Method::GET,
                &format!("/Users?filter={q}&count=10"),
                None,
            )
            .await?;
        scan.push(t.elapsed());
        anyhow::ensure!(v["totalResults"].as_u64().unwrap_or(0) >= 1, "scan");
    }
    Report::new("directory-lookup")
        .field("users", users)
        .num("by_name_p50_us", by_name.median(), 0)
        .num("scan_p50_us", scan.median(), 0)
        .num("ratio", scan.median() / by_name.median(), 0)
        .print();
    server.running.stop().await;
    Ok(())
}
