//! The directory through SCIM 2.0, end to end: the request sequences Okta and Entra ID send
//! when they provision (their documented payloads, Entra ID's string booleans and letter
//! cases), what the directory does to principals (groups, leavers), and bad input answered with
//! SCIM errors that change nothing.

use hourglass_client::Client;
use hourglass_testkit::{TestServer, eventually, spawn_server_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::lifecycle::{ask, audit_len};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

struct Scim {
    base: String,
    token: String,
    http: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

impl Scim {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call_with(method, path, body, &[]).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self
            .http
            .request(method, format!("{}/scim/v2{path}", self.base))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Answer {
            status,
            body,
            headers,
        }
    }
}

fn scim_error(a: &Answer, status: u16, scim_type: Option<&str>) {
    assert_eq!(a.status.as_u16(), status, "{}", a.body);
    assert_eq!(a.body["schemas"][0], ERROR, "{}", a.body);
    assert_eq!(a.body["status"], status.to_string());
    assert_eq!(
        a.body.get("scimType").and_then(Value::as_str),
        scim_type,
        "{}",
        a.body
    );
    assert_eq!(
        a.headers.get("content-type").unwrap(),
        "application/scim+json"
    );
}

async fn server() -> (TestServer, Scim) {
    server_with("").await
}

/// A server whose `[scim]` section also says `settings` (lines of TOML).
async fn server_with(settings: &'static str) -> (TestServer, Scim) {
    let token = hourglass_server::auth::new_token().unwrap();
    let hash = hourglass_server::auth::token_hash(&token);
    let s = spawn_server_with(move |_dir, text| {
        format!(
            r#"{text}
[scim]
provisioners = ["okta-scim"]
email_domain = "example.com"
{settings}

[[identities]]
name = "okta-scim"
kind = "workload"
owner = "admin"
token_sha256 = ["{hash}"]

[[identities]]
name = "nightly-job"
kind = "workload"
owner = "platform"
"#
        )
    })
    .await
    .unwrap();
    let scim = Scim {
        base: format!("http://{}", s.addr),
        token,
        http: reqwest::Client::new(),
    };
    (s, scim)
}

/// Okta's create-user body (its SCIM 2.0 reference).
fn okta_user(user_name: &str, given: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": given, "familyName": "Jensen"},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": format!("{given} Jensen"),
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

/// A principal's kind and status, as the identity report says them.
async fn person(s: &TestServer, name: &str) -> (String, String) {
    let all = s.client("admin").identities().await.unwrap();
    let i = all.iter().find(|i| i.name == name).unwrap();
    let text = |v: Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(serde_json::to_value(i.kind).unwrap()),
        text(serde_json::to_value(i.status).unwrap()),
    )
}

fn as_person(s: &TestServer, secret: &str) -> Client {
    Client::new(&format!("http://{}", s.addr), Some(secret.to_owned())).unwrap()
}

#[tokio::test]
async fn okta_provisions_a_person_who_asks_and_whose_leaving_ends_everything_at_once() {
    let (s, scim) = server().await;
    let admin = s.client("admin");

    // Okta looks the person up first, then creates them.
    let found = scim
        .call(
            Method::GET,
            "/Users?filter=userName%20eq%20%22carol%40example.com%22&startIndex=1&count=100",
            None,
        )
        .await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.body["totalResults"], 0);
    let created = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("carol@example.com", "Carol")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let carol_id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["meta"]["resourceType"], "User");
    assert_eq!(created.body["meta"]["version"], "W/\"1\"");
    assert_eq!(created.headers.get("etag").unwrap(), "W/\"1\"");
    assert!(
        created
            .headers
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with(&format!("/scim/v2/Users/{carol_id}"))
    );
    assert!(
        created.body.get("password").is_none(),
        "a password is never kept"
    );
    // The person is the principal carol (the local part in example.com).
    assert_eq!(person(&s, "carol").await, ("human".into(), "active".into()));

    // Okta pushes a group and its member: carol becomes a requester.
    let group = scim
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "requesters", "members": []})),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.body);
    let gid = group.body["id"].as_str().unwrap().to_owned();
    let add = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({"schemas": [PATCH], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": carol_id, "display": "carol@example.com"}]}
            ]})),
        )
        .await;
    assert_eq!(add.status, StatusCode::OK, "{}", add.body);
    assert_eq!(add.body["members"][0]["value"], carol_id.as_str());
    let key = admin.create_key("carol", None).await.unwrap();
    let carol = as_person(&s, &key.secret);
    let logs = carol
        .create_request(&ask("demo/read-logs", "30m", "look at the logs"))
        .await
        .unwrap();
    assert_eq!(logs.state, "fulfilled");
    let grant = logs.grants.clone().unwrap()[0].id.clone();
    assert!(
        eventually(|| async { carol.get_grant(&grant).await.unwrap().state == "active" }).await
    );
    let pending = carol
        .create_request(&ask("demo/ops-admin", "30m", "restart the service"))
        .await
        .unwrap();
    assert_eq!(pending.state, "pending");

    // Entra ID's way of taking a member out: her pending request is no longer permitted and is
    // cancelled; the grant she holds runs to its end.
    let out = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({"schemas": [PATCH], "Operations": [
                {"op": "Remove", "path": "members", "value": [{"value": carol_id}]}
            ]})),
        )
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    assert_eq!(out.body["members"], json!([]));
    assert_eq!(
        admin.get_request(&pending.id).await.unwrap().state,
        "cancelled"
    );
    assert_eq!(admin.get_grant(&grant).await.unwrap().state, "active");
    // Back in the group, she asks again.
    scim.call(
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": carol_id}]}
        ]})),
    )
    .await;
    let pending = carol
        .create_request(&ask("demo/ops-admin", "30m", "restart the service"))
        .await
        .unwrap();
    assert_eq!(pending.state, "pending");

    // Okta deactivates her: in one commit the grant is revoked, the request cancelled, the key
    // revoked and the principal suspended.
    let before = audit_len(&s).await;
    let off = scim
        .call(
            Method::PATCH,
            &format!("/Users/{carol_id}"),
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": false}}]})),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(off.body["active"], false);
    assert_eq!(
        admin.get_request(&pending.id).await.unwrap().state,
        "cancelled"
    );
    assert!(
        eventually(|| async { admin.get_grant(&grant).await.unwrap().state == "revoked" }).await
    );
    assert!(!s.access().contains(&grant));
    assert!(carol.whoami().await.is_err(), "her key no longer works");
    let events = s
        .store()
        .unwrap()
        .audit_after(before as u64, 1000)
        .await
        .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.record.action.as_str()).collect();
    assert!(kinds.contains(&"directory.user_deactivated"), "{kinds:?}");
    assert!(kinds.contains(&"grant.revoke_requested"), "{kinds:?}");
    assert!(kinds.contains(&"key.revoked"), "{kinds:?}");
    assert_eq!(person(&s, "carol").await.1, "suspended");

    // Active again: the person may act again, but nothing she held comes back.
    let on = scim
        .call(
            Method::PATCH,
            &format!("/Users/{carol_id}"),
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": true}}]})),
        )
        .await;
    assert_eq!(on.status, StatusCode::OK);
    assert_eq!(person(&s, "carol").await.1, "active");
    assert_eq!(admin.get_grant(&grant).await.unwrap().state, "revoked");
    assert!(
        admin
            .list_grants(Some("active"))
            .await
            .unwrap()
            .iter()
            .all(|g| g.principal != "carol")
    );

    // Deleted: offboarded for good, gone from the directory and from the group.
    let gone = scim
        .call(Method::DELETE, &format!("/Users/{carol_id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    scim_error(
        &scim
            .call(Method::GET, &format!("/Users/{carol_id}"), None)
            .await,
        404,
        None,
    );
    let g = scim
        .call(Method::GET, &format!("/Groups/{gid}"), None)
        .await;
    assert_eq!(g.body["members"], json!([]));
    assert_eq!(person(&s, "carol").await.1, "offboarded");
    // The same userName again makes no way back for an offboarded principal.
    let again = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("carol@example.com", "Carol")),
        )
        .await;
    scim_error(&again, 409, Some("uniqueness"));
    s.stop().await;
}

#[tokio::test]
async fn entra_id_provisions_with_its_own_habits() {
    let (s, scim) = server().await;
    // Entra ID's test-connection probe: a filter that finds nobody.
    let probe = scim
        .call(
            Method::GET,
            "/Users?filter=userName+eq+%22non-existent-user%22",
            None,
        )
        .await;
    assert_eq!(
        (probe.status, probe.body["totalResults"].clone()),
        (StatusCode::OK, json!(0))
    );
    // Entra ID's create-user body, with the enterprise extension.
    let boss = scim
        .call(
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": [USER, ENTERPRISE],
                "externalId": "8a7b6c5d",
                "userName": "dana@example.com",
                "active": true,
                "displayName": "Dana Boss",
                "emails": [{"primary": true, "type": "work", "value": "dana@example.com"}],
                "meta": {"resourceType": "User"},
                "name": {"formatted": "Dana Boss", "familyName": "Boss", "givenName": "Dana"},
                "roles": []
            })),
        )
        .await;
    assert_eq!(boss.status, StatusCode::CREATED, "{}", boss.body);
    let boss_id = boss.body["id"].as_str().unwrap().to_owned();
    let erin = scim
        .call(
            Method::POST,
            "/Users",
            Some(json!({
                "schemas": [USER, ENTERPRISE],
                "externalId": "1f2e3d4c",
                "userName": "Erin@Example.com",
                "active": "True",
                "displayName": "Erin",
                ENTERPRISE: {"department": "SRE", "employeeNumber": "701"}
            })),
        )
        .await;
    assert_eq!(erin.status, StatusCode::CREATED, "{}", erin.body);
    let erin_id = erin.body["id"].as_str().unwrap().to_owned();
    assert_eq!(erin.body["active"], true, "a string boolean is read as one");
    // Entra ID's PATCH: operations in any letter case, a manager given as its id alone.
    let patched = scim
        .call(
            Method::PATCH,
            &format!("/Users/{erin_id}"),
            Some(json!({"schemas": [PATCH], "Operations": [
                {"op": "Replace", "path": "displayName", "value": "Erin Ops"},
                {"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": boss_id},
                {"op": "Replace", "path": "name.givenName", "value": "Erin"}
            ]})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["displayName"], "Erin Ops");
    assert_eq!(
        patched.body[ENTERPRISE]["manager"]["value"],
        boss_id.as_str()
    );
    assert_eq!(patched.body[ENTERPRISE]["department"], "SRE");
    assert_eq!(patched.body["meta"]["version"], "W/\"2\"");
    // Filters by what Entra ID matches on, and by the extension.
    for (filter, want) in [
        ("externalId eq \"1f2e3d4c\"", 1),
        ("externalId eq \"1F2E3D4C\"", 0),
        ("userName eq \"erin@example.com\"", 1),
        (&format!("{ENTERPRISE}:department eq \"sre\"") as &str, 1),
        ("displayName sw \"Erin\" or displayName sw \"Dana\"", 2),
        ("not (active eq true)", 0),
    ] {
        let q = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>();
        let r = scim
            .call(Method::GET, &format!("/Users?filter={q}"), None)
            .await;
        assert_eq!(r.body["totalResults"], want, "{filter}: {}", r.body);
    }
    // Attribute selection and paging.
    let page = scim
        .call(
            Method::GET,
            "/Users?attributes=userName&count=1&startIndex=2",
            None,
        )
        .await;
    assert_eq!(page.body["totalResults"], 2);
    assert_eq!(page.body["itemsPerPage"], 1);
    assert_eq!(page.body["startIndex"], 2);
    let only = &page.body["Resources"][0];
    assert!(
        only.get("userName").is_some() && only.get("id").is_some() && only.get("emails").is_none()
    );
    // Policy sees the directory: as erin's manager, dana approves erin's request
    // (`managers-approve-their-reports`), though dana is no approver.
    let group = scim
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "requesters", "members": [{"value": erin_id}]})),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.body);
    let admin = s.client("admin");
    let erin = as_person(&s, &admin.create_key("erin", None).await.unwrap().secret);
    let dana = as_person(&s, &admin.create_key("dana", None).await.unwrap().secret);
    let r = erin
        .create_request(&ask("demo/ops-admin", "30m", "rotate keys"))
        .await
        .unwrap();
    assert_eq!(r.state, "pending");
    let approved = dana.approve(&r.id, None).await.unwrap();
    assert_ne!(approved.state, "pending", "{approved:?}");
    // A manager is named by the id Hourglass gave them; one that names nobody is no manager.
    let fay = scim
        .call(
            Method::POST,
            "/Users",
            Some(
                json!({"schemas": [USER, ENTERPRISE], "userName": "fay@example.com",
                        ENTERPRISE: {"manager": {"value": "no-such-user"}}}),
            ),
        )
        .await;
    assert_eq!(fay.status, StatusCode::CREATED, "{}", fay.body);
    let store = s.store().unwrap();
    let manager_of = |name: &'static str| async move {
        store
            .get_identity(&hourglass_core::id::PrincipalId::new(name).unwrap())
            .await
            .unwrap()
            .unwrap()
            .principal
            .manager
    };
    assert_eq!(manager_of("fay").await, None);
    assert_eq!(manager_of("erin").await.as_deref(), Some("dana"));
    let gus = scim
        .call(
            Method::POST,
            "/Users",
            Some(json!({"schemas": [USER], "userName": "gus@example.com"})),
        )
        .await;
    let gus_id = gus.body["id"].as_str().unwrap().to_owned();
    let fay_id = fay.body["id"].as_str().unwrap().to_owned();
    let set = scim
        .call(
            Method::PATCH,
            &format!("/Users/{fay_id}"),
            Some(json!({"schemas": [PATCH], "Operations": [
                {"op": "replace", "path": format!("{ENTERPRISE}:manager"), "value": {"value": gus_id}}
            ]})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(manager_of("fay").await.as_deref(), Some("gus"));
    // gus leaves: fay has no manager in Hourglass until the directory names another.
    assert_eq!(
        scim.call(Method::DELETE, &format!("/Users/{gus_id}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(manager_of("fay").await, None);

    // A group renamed in the directory is renamed in its members' principals.
    let gid = group.body["id"].as_str().unwrap().to_owned();
    let renamed = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "displayName", "value": "sre-requesters"}]})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    let groups_of = store
        .get_identity(&hourglass_core::id::PrincipalId::new("erin").unwrap())
        .await
        .unwrap()
        .unwrap()
        .principal
        .groups;
    assert_eq!(groups_of, ["sre-requesters"]);

    // Entra ID deactivates with a string.
    let off = scim
        .call(
            Method::PATCH,
            &format!("/Users/{erin_id}"),
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})),
        )
        .await;
    assert_eq!(
        (off.status, off.body["active"].clone()),
        (StatusCode::OK, json!(false))
    );
    assert_eq!(person(&s, "erin").await.1, "suspended");
    // Discovery.
    for path in [
        "/ServiceProviderConfig",
        "/ResourceTypes",
        "/Schemas",
        "/ResourceTypes/User",
        &format!("/Schemas/{ENTERPRISE}") as &str,
    ] {
        let d = scim.call(Method::GET, path, None).await;
        assert_eq!(d.status, StatusCode::OK, "{path}: {}", d.body);
    }
    let spc = scim.call(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(spc.body["patch"]["supported"], true);
    assert_eq!(spc.body["etag"]["supported"], true);
    s.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_scim_error_and_changes_nothing() {
    let (s, scim) = server().await;
    let alice_id = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("alice.scim@example.org", "Alice")),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let platform = scim
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "platform"})),
        )
        .await;
    assert_eq!(platform.status, StatusCode::CREATED);
    let pid = platform.body["id"].as_str().unwrap().to_owned();
    let mut before = audit_len(&s).await;

    // Who may call.
    let nobody = Scim {
        token: String::new(),
        base: scim.base.clone(),
        http: reqwest::Client::new(),
    };
    let a = nobody.call(Method::GET, "/Users", None).await;
    scim_error(&a, 401, None);
    assert!(a.headers.get("www-authenticate").is_some());
    let forged = Scim {
        token: "hg_not-a-key".into(),
        base: scim.base.clone(),
        http: reqwest::Client::new(),
    };
    scim_error(&forged.call(Method::GET, "/Users", None).await, 401, None);
    // A forged key is recorded (never the key itself), and changes nothing else.
    let events = s.client("admin").audit(0).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.subject.as_str()),
        ("auth.refused", "scim")
    );
    assert!(
        last.details
            .contains(&("reason".into(), "unknown key".into()))
    );
    assert!(last.details.iter().all(|(_, v)| !v.contains("not-a-key")));
    assert_eq!(audit_len(&s).await, before + 1);
    before += 1;
    // alice's own key is a key, but not a provisioner's.
    let alice_token = s
        .tokens
        .iter()
        .find(|(n, _)| n == "alice")
        .unwrap()
        .1
        .clone();
    let alice = Scim {
        token: alice_token,
        base: scim.base.clone(),
        http: reqwest::Client::new(),
    };
    scim_error(
        &alice
            .call(
                Method::POST,
                "/Users",
                Some(okta_user("x@example.com", "X")),
            )
            .await,
        403,
        None,
    );

    // What is asked.
    for (filter, t) in [
        ("userName eq", "invalidFilter"),
        ("userName xx \"a\"", "invalidFilter"),
        ("((((", "invalidFilter"),
    ] {
        let q = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>();
        scim_error(
            &scim
                .call(Method::GET, &format!("/Users?filter={q}"), None)
                .await,
            400,
            Some(t),
        );
    }
    let mut unknown = okta_user("new@example.com", "New");
    unknown["shoeSize"] = json!(44);
    scim_error(
        &scim.call(Method::POST, "/Users", Some(unknown)).await,
        400,
        Some("invalidSyntax"),
    );
    let mut wrong = okta_user("new@example.com", "New");
    wrong["schemas"] = json!([GROUP]);
    scim_error(
        &scim.call(Method::POST, "/Users", Some(wrong)).await,
        400,
        Some("invalidSyntax"),
    );
    scim_error(
        &scim
            .call(
                Method::POST,
                "/Users",
                Some(okta_user("ALICE.SCIM@example.org", "Twin")),
            )
            .await,
        409,
        Some("uniqueness"),
    );
    // A workload cannot be made a person.
    scim_error(
        &scim
            .call(Method::POST, "/Users", Some(okta_user("okta-scim", "Bot")))
            .await,
        409,
        Some("uniqueness"),
    );
    let stale = scim
        .call_with(
            Method::PUT,
            &format!("/Users/{alice_id}"),
            Some(okta_user("alice.scim@example.org", "Alicia")),
            &[("if-match", "W/\"7\"")],
        )
        .await;
    scim_error(&stale, 412, None);
    scim_error(
        &scim
            .call(
                Method::POST,
                "/Groups",
                Some(json!({"schemas": [GROUP], "displayName": "ghosts", "members": [{"value": "no-such-user"}]})),
            )
            .await,
        400,
        Some("invalidValue"),
    );
    scim_error(
        &scim
            .call(
                Method::PATCH,
                &format!("/Users/{alice_id}"),
                Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "emails[type eq", "value": "x"}]})),
            )
            .await,
        400,
        Some("invalidPath"),
    );
    scim_error(
        &scim
            .call(
                Method::PATCH,
                &format!("/Users/{alice_id}"),
                Some(json!({"schemas": [PATCH], "Operations": [
                    {"op": "replace", "path": "displayName", "value": "changed"},
                    {"op": "replace", "path": "emails[type eq \"home\"].value", "value": "x"}
                ]})),
            )
            .await,
        400,
        Some("noTarget"),
    );
    // A group that owns a workload is neither deleted nor renamed: it would leave the
    // workload with no owner.
    scim_error(
        &scim
            .call(Method::DELETE, &format!("/Groups/{pid}"), None)
            .await,
        400,
        Some("mutability"),
    );
    scim_error(
        &scim
            .call(
                Method::PATCH,
                &format!("/Groups/{pid}"),
                Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "platform-team"}]})),
            )
            .await,
        400,
        Some("mutability"),
    );
    scim_error(
        &scim.call(Method::GET, "/Users/no-such-id", None).await,
        404,
        None,
    );
    scim_error(&scim.call(Method::GET, "/Gadgets", None).await, 404, None);
    // An oversized page is cut to the largest page (ServiceProviderConfig's maxResults).
    let big = scim.call(Method::GET, "/Users?count=100000", None).await;
    assert_eq!(big.status, StatusCode::OK);
    assert_eq!(big.body["itemsPerPage"], 1);

    // Nothing changed: not the audit, not alice.
    assert_eq!(audit_len(&s).await, before);
    let now = scim
        .call(Method::GET, &format!("/Users/{alice_id}"), None)
        .await;
    assert_eq!(now.body["meta"]["version"], "W/\"1\"");
    assert_eq!(now.body["name"]["givenName"], "Alice");
    s.stop().await;
}

#[tokio::test]
async fn a_person_the_directory_manages_is_no_longer_changed_from_the_file() {
    use hourglass_core::{Clock, Timestamp, id::PrincipalId};
    let dir = tempfile::tempdir().unwrap();
    let w = hourglass_server::demo::write_layout(dir.path(), "127.0.0.1:0".parse().unwrap(), false)
        .unwrap();
    let token = hourglass_server::auth::new_token().unwrap();
    let text = format!(
        "{}\n[scim]\nprovisioners = [\"okta-scim\"]\nemail_domain = \"example.com\"\n\n[[identities]]\nname = \"okta-scim\"\nkind = \"workload\"\nowner = \"admin\"\ntoken_sha256 = [\"{}\"]\n",
        std::fs::read_to_string(&w.config).unwrap(),
        hourglass_server::auth::token_hash(&token)
    );
    std::fs::write(&w.config, &text).unwrap();
    let clock = hourglass_testkit::ManualClock::new(Timestamp::from_unix_millis(1_800_000_000_000));
    let start = || async {
        let config = hourglass_server::config::Config::load(&w.config, Vec::new()).unwrap();
        hourglass_server::start(
            config,
            std::sync::Arc::clone(&clock) as std::sync::Arc<dyn Clock>,
        )
        .await
        .unwrap()
    };
    let running = start().await;
    let scim = Scim {
        base: format!("http://{}", running.addr),
        token,
        http: reqwest::Client::new(),
    };
    // The directory takes alice over (declared in the file) and puts her in sre.
    let alice = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("alice@example.com", "Alice")),
        )
        .await;
    assert_eq!(alice.status, StatusCode::CREATED, "{}", alice.body);
    let sre = scim
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "sre", "members": [{"value": alice.body["id"]}]})),
        )
        .await;
    assert_eq!(sre.status, StatusCode::CREATED, "{}", sre.body);
    let events = running.store().audit_after(0, 10_000).await.unwrap();
    let created = events
        .iter()
        .find(|e| e.record.action == "directory.user_created")
        .unwrap();
    assert!(
        created
            .record
            .details
            .iter()
            .any(|(k, v)| k == "adopted" && v == "true"),
        "{:?}",
        created.record.details
    );
    running.stop().await;

    // The file now says other things of alice and of bob; only bob's change is taken.
    let changed = text
        .replace(
            "name = \"alice\"\nkind = \"human\"\ngroups = [\"requesters\"]",
            "name = \"alice\"\nkind = \"human\"\ngroups = [\"admins\"]",
        )
        .replace(
            "name = \"bob\"\nkind = \"human\"\nmanager = \"alice\"\ngroups = [\"approvers\"]",
            "name = \"bob\"\nkind = \"human\"\nmanager = \"alice\"\ngroups = [\"approvers\", \"sre\"]",
        );
    assert_ne!(changed, text, "the test edits what the file says");
    assert!(
        changed.contains("groups = [\"admins\"]") && changed.contains("\"approvers\", \"sre\"")
    );
    std::fs::write(&w.config, changed).unwrap();
    let running = start().await;
    let groups = |name: &'static str| {
        let store = std::sync::Arc::clone(running.store());
        async move {
            store
                .get_identity(&PrincipalId::new(name).unwrap())
                .await
                .unwrap()
                .unwrap()
                .principal
                .groups
        }
    };
    assert_eq!(
        groups("alice").await,
        ["sre"],
        "the directory's, not the file's"
    );
    assert_eq!(groups("bob").await, ["approvers", "sre"], "the file's");
    running.stop().await;
}

#[tokio::test]
async fn the_leaving_settings_are_followed_and_no_push_brings_access_back() {
    let (s, scim) = server_with(
        "on_deactivate = \"offboard\"\non_delete = \"suspend\"\nrevoke_on_eligibility_loss = true",
    )
    .await;
    let admin = s.client("admin");
    let created = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("carol@example.com", "Carol")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let carol_id = created.body["id"].as_str().unwrap().to_owned();
    let group = scim
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "requesters", "members": [{"value": carol_id}]})),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.body);
    let gid = group.body["id"].as_str().unwrap().to_owned();
    let read = |path: String| {
        let scim = &scim;
        async move { scim.call(Method::GET, &path, None).await.body }
    };
    let user_before = read(format!("/Users/{carol_id}")).await;
    let group_before = read(format!("/Groups/{gid}")).await;

    // A grant lives and ends; what SCIM reads is the same throughout (JIT never leaks into the
    // directory's groups).
    let key = admin.create_key("carol", None).await.unwrap();
    let carol = as_person(&s, &key.secret);
    let first = carol
        .create_request(&ask("demo/read-logs", "30m", "look at the logs"))
        .await
        .unwrap();
    let first = first.grants.clone().unwrap()[0].id.clone();
    assert!(
        eventually(|| async { admin.get_grant(&first).await.unwrap().state == "active" }).await
    );
    assert_eq!(read(format!("/Users/{carol_id}")).await, user_before);
    assert_eq!(read(format!("/Groups/{gid}")).await, group_before);
    s.clock.advance_ms(31 * 60_000);
    assert!(
        eventually(|| async { admin.get_grant(&first).await.unwrap().state == "revoked" }).await
    );
    assert_eq!(read(format!("/Groups/{gid}")).await, group_before);

    // Okta pushes the same user and group again (PUT and a group replace, as a full sync does):
    // the expired grant stays ended, nothing new is granted, and a live grant is not extended.
    let second = carol
        .create_request(&ask("demo/read-logs", "30m", "look again"))
        .await
        .unwrap();
    let second = second.grants.clone().unwrap()[0].id.clone();
    assert!(
        eventually(|| async { admin.get_grant(&second).await.unwrap().state == "active" }).await
    );
    let ends = admin.get_grant(&second).await.unwrap().expires_at;
    let grants_before = admin.list_grants(None).await.unwrap().len();
    let mut again = okta_user("carol@example.com", "Carol");
    again["id"] = json!(carol_id);
    let put = scim
        .call(Method::PUT, &format!("/Users/{carol_id}"), Some(again))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let replace = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({"schemas": [PATCH], "Operations": [
                {"op": "replace", "value": {"id": gid, "displayName": "requesters", "members": [{"value": carol_id}]}}
            ]})),
        )
        .await;
    assert_eq!(replace.status, StatusCode::OK, "{}", replace.body);
    assert_eq!(admin.get_grant(&first).await.unwrap().state, "revoked");
    let second_now = admin.get_grant(&second).await.unwrap();
    assert_eq!(second_now.state, "active");
    assert_eq!(second_now.expires_at, ends, "a push extends nothing");
    assert_eq!(admin.list_grants(None).await.unwrap().len(), grants_before);

    // revoke_on_eligibility_loss: leaving the group that permitted the grant ends it now.
    let out = scim
        .call(
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({"schemas": [PATCH], "Operations": [
                {"op": "remove", "path": format!("members[value eq \"{carol_id}\"]")}
            ]})),
        )
        .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    assert_eq!(out.body["members"], json!([]));
    assert!(
        eventually(|| async { admin.get_grant(&second).await.unwrap().state == "revoked" }).await
    );

    // on_deactivate = "offboard": deactivated is offboarded, for good.
    let off = scim
        .call(
            Method::PATCH,
            &format!("/Users/{carol_id}"),
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]})),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(person(&s, "carol").await.1, "offboarded");
    let back = scim
        .call(
            Method::PATCH,
            &format!("/Users/{carol_id}"),
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": true}]})),
        )
        .await;
    assert!(
        back.status.is_success() || back.status.is_client_error(),
        "{}",
        back.body
    );
    assert_eq!(person(&s, "carol").await.1, "offboarded", "for good");

    // on_delete = "suspend": a deleted person holding a grant loses it and is suspended.
    let dave = scim
        .call(
            Method::POST,
            "/Users",
            Some(okta_user("dave@example.com", "Dave")),
        )
        .await;
    let dave_id = dave.body["id"].as_str().unwrap().to_owned();
    scim.call(
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": dave_id}]}
        ]})),
    )
    .await;
    let key = admin.create_key("dave", None).await.unwrap();
    let held = as_person(&s, &key.secret)
        .create_request(&ask("demo/read-logs", "30m", "logs"))
        .await
        .unwrap();
    let held = held.grants.clone().unwrap()[0].id.clone();
    assert!(eventually(|| async { admin.get_grant(&held).await.unwrap().state == "active" }).await);
    let gone = scim
        .call(Method::DELETE, &format!("/Users/{dave_id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(person(&s, "dave").await.1, "suspended");
    assert!(
        eventually(|| async { admin.get_grant(&held).await.unwrap().state == "revoked" }).await
    );
    assert!(!s.access().contains(&held));
    s.stop().await;
}
