//! Several replicas of the real binary on one PostgreSQL database.
//!
//! - 2,000 grant lifecycles spread over three replicas while one replica at a time is killed
//!   with SIGKILL every few seconds and started again: every grant is provisioned once and
//!   revoked once (by the target's own record of what changed), none outlives its expiry by
//!   more than the bound plus the lease, and the audit chain verifies with no gap.
//! - The database going away under running replicas (every session terminated, connections
//!   refused for a while, as in a restart): `/readyz` fails, then recovers by itself, and no job
//!   is lost.
//!
//! Time is the clock file the test moves (feature `test-clock`). The target is the demo's
//! script, wrapped to log each real change of state (absent → present, present → absent) under
//! a lock, so a grant provisioned or revoked twice would show twice.

use std::{
    collections::HashMap,
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use hourglass_api::CreateRequest;
use hourglass_client::{Client, ClientError};
use hourglass_testdb::TestDb;
use hourglass_testkit::eventually;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::binary::BIN;

/// The job lease the replicas run with (`[server] job_lease`).
const LEASE_MS: i64 = 30_000;
/// Grants last this long; the test moves the clock past it to expire a round.
const DURATION_MS: i64 = 10 * 60_000;

struct Cluster {
    dir: tempfile::TempDir,
    db: TestDb,
    config: PathBuf,
    clock: PathBuf,
    tokens: Vec<(String, String)>,
    /// The running replicas: process and base URL, `None` while one is down.
    replicas: tokio::sync::Mutex<Vec<Option<(Child, String)>>>,
    log: Arc<Mutex<String>>,
}

async fn cluster(principals: usize) -> Option<Cluster> {
    let db = hourglass_testdb::postgres().await?;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::create_dir_all(d.join("targets")).unwrap();
    std::fs::write(
        d.join("policies/replicas.cedar"),
        r#"@id("workers-read-logs")
permit (
  principal in Hourglass::Group::"workers",
  action in [Hourglass::Action::"Request", Hourglass::Action::"AutoApprove"],
  resource == Hourglass::Entitlement::"demo/read-logs"
);
"#,
    )
    .unwrap();
    let target = d.join("targets/demo-target.sh");
    std::fs::write(&target, hourglass_server::demo::DEMO_TARGET_SCRIPT).unwrap();
    let wrapper = d.join("targets/recorded.sh");
    // Runs the target under a lock of its own and records each real change of state.
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nd={d}\nop=$1\ng=\"$HOURGLASS_GRANT_ID\"\n\
             exec 8>>\"$d/ops.lock\"\nflock 8\ntouch \"$d/access.txt\"\n\
             has() {{ grep -c \" $g\\$\" \"$d/access.txt\" 2>/dev/null || true; }}\n\
             before=$(has)\n\
             {t} \"$@\" || exit $?\n\
             after=$(has)\n\
             if [ \"$op\" = grant ] && [ \"$before\" = 0 ] && [ \"$after\" = 1 ]; then echo \"grant $g\" >> \"$d/ops.log\"; fi\n\
             if [ \"$op\" = revoke ] && [ \"$before\" = 1 ] && [ \"$after\" = 0 ]; then echo \"revoke $g\" >> \"$d/ops.log\"; fi\n\
             if [ \"$op\" = grant ] && [ -f \"$d/credential\" ]; then printf '{{\"handle\": {{\"via\": \"recorded\"}}, \"credential\": \"%s-%s\"}}' \"$(cat \"$d/credential\")\" \"$g\"; fi\n",
            d = d.display(),
            t = target.display()
        ),
    )
    .unwrap();
    for f in [&target, &wrapper] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut tokens = Vec::new();
    let mut identities = String::new();
    for i in 0..principals {
        let name = format!("worker{i:02}");
        let token = hourglass_server::auth::new_token().unwrap();
        identities.push_str(&format!(
            "[[identities]]\nname = \"{name}\"\nkind = \"workload\"\nowner = \"ops\"\ngroups = [\"workers\"]\ntoken_sha256 = [\"{}\"]\n\n",
            hourglass_server::auth::token_hash(&token)
        ));
        tokens.push((name, token));
    }
    let w = wrapper.display();
    let config = d.join("hourglass.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
job_lease = "{lease}s"
retry_base = "1s"
retry_cap = "2s"

[store]
url = "{url}"
max_connections = 6
acquire_timeout = "2s"
poll_interval = "1s"

[policy]
dir = "policies"

[[identities]]
name = "ops"
kind = "human"
groups = ["admins"]

{identities}
[[targets]]
name = "demo"
connector = "exec"
exec = {{ grant = ["{w}", "grant"], revoke = ["{w}", "revoke"], extend = ["{w}", "extend"], inspect = ["{w}", "inspect"], timeout_secs = 10, env = {{ HOURGLASS_DEMO_ACCESS_FILE = "{access}" }} }}

[[entitlements]]
name = "demo/read-logs"
description = "Read the logs"
risk = "low"
default_duration = "10m"
max_duration = "1h"
"#,
            lease = LEASE_MS / 1000,
            url = db.url,
            access = d.join("access.txt").display(),
        ),
    )
    .unwrap();
    let clock = d.join("clock");
    std::fs::write(&clock, "1800000000000").unwrap();
    Some(Cluster {
        dir,
        db,
        config,
        clock,
        tokens,
        replicas: tokio::sync::Mutex::default(),
        log: Arc::default(),
    })
}

impl Cluster {
    async fn spawn(&self) -> (Child, String) {
        self.spawn_with(&self.config).await
    }

    /// Starts a replica with another configuration file (on the same database).
    async fn spawn_with(&self, config: &std::path::Path) -> (Child, String) {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .env("HOURGLASS_TEST_CLOCK_FILE", &self.clock)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::clone(&self.log);
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(a) = line.strip_prefix("listening on ") {
                    return a.to_owned();
                }
                log.lock().unwrap().push_str(&format!("{line}\n"));
            }
            panic!(
                "a replica exited before listening:\n{}",
                log.lock().unwrap()
            );
        })
        .await
        .unwrap();
        let log = Arc::clone(&self.log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        (child, addr)
    }

    /// Starts `n` replicas; their base URLs.
    async fn start(&self, n: usize) -> Vec<String> {
        let mut bases = Vec::new();
        for _ in 0..n {
            let r = self.spawn().await;
            bases.push(r.1.clone());
            self.replicas.lock().await.push(Some(r));
        }
        bases
    }

    async fn kill_all(&self) {
        for r in self.replicas.lock().await.iter_mut().flatten() {
            r.0.kill().await.unwrap();
        }
    }

    fn now(&self) -> i64 {
        std::fs::read_to_string(&self.clock)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn advance(&self, ms: i64) {
        std::fs::write(&self.clock, (self.now() + ms).to_string()).unwrap();
    }

    fn ops(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ops.log")).unwrap_or_default()
    }

    async fn pg(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.db.url).await.unwrap()
    }
}

type Bases = Arc<Mutex<Vec<Option<String>>>>;

/// A client for `token` on some live replica (round-robin by `turn`).
fn client_on(bases: &Bases, token: &str, turn: usize) -> Option<Client> {
    let live: Vec<String> = bases.lock().unwrap().iter().flatten().cloned().collect();
    let base = live.get(turn % live.len().max(1))?;
    Some(Client::new(base, Some(token.to_owned())).unwrap())
}

fn read_logs() -> CreateRequest {
    CreateRequest {
        task: None,
        entitlement: "demo/read-logs".into(),
        duration: Some("10m".into()),
        reason: "replica test".into(),
        ticket: None,
        public_key: None,
        break_glass: false,
        starts_at: None,
    }
}

/// Requests read-logs for the holder of `token` through any live replica, riding out replicas
/// dying mid-call: a request whose answer was lost is found again instead of made twice.
async fn request_once(bases: &Bases, token: &str, turn: &mut usize) -> String {
    for _ in 0..400 {
        *turn += 1;
        let Some(c) = client_on(bases, token, *turn) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        match c.create_request(&read_logs()).await {
            Ok(r) => return r.grant_id.expect("auto-approved"),
            // Already holds it: an earlier attempt got through but its answer was lost.
            Err(ClientError::Problem(p)) if p.status == 409 => {
                if let Ok(gs) = c.list_grants(None).await
                    && let Some(g) = gs
                        .iter()
                        .find(|g| g.state == "provisioning" || g.state == "active")
                {
                    return g.id.clone();
                }
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no replica took the request");
}

/// The state of each grant, read through any live replica.
async fn states(bases: &Bases, token: &str, gids: &[String]) -> Option<Vec<String>> {
    let c = client_on(bases, token, 0)?;
    let mut out = Vec::with_capacity(gids.len());
    for g in gids {
        out.push(c.get_grant(g).await.ok()?.state.to_string());
    }
    Some(out)
}

/// Waits until every grant is in `state`. A replica killed while it held a grant's job leaves
/// it leased: when nothing moves for 2.5 s, the clock is moved past the lease (the bound the
/// issue allows) and that is counted.
async fn settle(c: &Cluster, bases: &Bases, token: &str, gids: &[String], state: &str) -> u32 {
    let mut nudges = 0;
    loop {
        let mut waited = 0;
        while waited < 100 {
            if let Some(s) = states(bases, token, gids).await
                && s.iter().all(|s| s == state)
            {
                return nudges;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            waited += 1;
        }
        assert!(nudges < 5, "grants stuck short of {state}");
        c.advance(LEASE_MS + 1_000);
        nudges += 1;
    }
}

/// What one replica issues or revokes, another hands over or serves: a credential issued while
/// one replica provisioned is handed over by the other, once, and is never in the database in
/// plaintext; an SSH certificate revoked through one is in the KRL the other serves.
#[tokio::test]
async fn what_one_replica_issues_or_revokes_the_other_hands_over_or_serves() {
    let Some(c) = cluster(1).await else { return };
    let d = c.dir.path();
    std::fs::write(d.join("credential"), "s3cret-password").unwrap();
    std::fs::create_dir_all(d.join("ssh")).unwrap();
    hourglass_connectors::ssh::generate_ca(&d.join("ssh/ca"), "replica test ca").unwrap();
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(d.join("ssh/user"))
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let user_key = std::fs::read_to_string(d.join("ssh/user.pub")).unwrap();
    std::fs::write(
        d.join("policies/ssh.cedar"),
        r#"@id("workers-ssh")
permit (
  principal in Hourglass::Group::"workers",
  action in [Hourglass::Action::"Request", Hourglass::Action::"AutoApprove"],
  resource == Hourglass::Entitlement::"ssh/login"
);
"#,
    )
    .unwrap();
    let mut config = std::fs::read_to_string(&c.config).unwrap();
    config.push_str(
        r#"
[[targets]]
name = "ssh"
connector = "ssh"
ssh = { ca_key_file = "ssh/ca", krl_file = "ssh/revoked.krl" }

[[entitlements]]
name = "ssh/login"
default_duration = "10m"
max_duration = "1h"
params = { principals = ["deploy"] }
"#,
    );
    std::fs::write(&c.config, &config).unwrap();
    // Replica B runs as if on another host: its own KRL file.
    let config_b = d.join("hourglass-b.toml");
    std::fs::write(
        &config_b,
        config.replace("ssh/revoked.krl", "ssh/revoked-b.krl"),
    )
    .unwrap();
    let mut bases = c.start(1).await;
    let (mut replica_b, base_b) = c.spawn_with(&config_b).await;
    bases.push(base_b);
    let token = &c.tokens[0].1;
    let a = Client::new(&bases[0], Some(token.clone())).unwrap();
    let b = Client::new(&bases[1], Some(token.clone())).unwrap();

    // The credential.
    let r = a.create_request(&read_logs()).await.unwrap();
    let gid = r.grant_id.unwrap();
    assert!(eventually(|| async { a.get_grant(&gid).await.unwrap().state == "active" }).await);
    let pg = c.pg().await;
    let sealed: Vec<String> = sqlx::query_scalar("SELECT sealed FROM sealed_credentials")
        .fetch_all(&pg)
        .await
        .unwrap();
    assert_eq!(sealed.len(), 1);
    assert!(!sealed[0].contains("s3cret"), "{}", sealed[0]);
    let got = b.credential(&gid).await.unwrap();
    assert_eq!(got.credential, format!("s3cret-password-{gid}"));
    for again in [&a, &b] {
        let err = again.credential(&gid).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Problem(p) if p.status == 404),
            "{err:?}"
        );
    }
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sealed_credentials")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(left, 0);
    // Handed over once, and recorded once, by its holder, in the commit that took it.
    let handed: Vec<String> = sqlx::query_scalar(
        "SELECT actor FROM audit_events WHERE action = 'credential.handed_over' AND subject = $1",
    )
    .bind(&gid)
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(handed, vec![a.whoami().await.unwrap().principal]);

    // The revocation.
    let r = a
        .create_request(&CreateRequest {
            task: None,
            entitlement: "ssh/login".into(),
            public_key: Some(user_key.trim().to_owned()),
            ..read_logs()
        })
        .await
        .unwrap();
    let cert = r.grant_id.unwrap();
    assert!(eventually(|| async { a.get_grant(&cert).await.unwrap().state == "active" }).await);
    let krl_of = |base: &str| {
        let url = format!("{base}/v1/ssh/krl?target=ssh");
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        }
    };
    let names = |krl: &[u8], id: &str| krl.windows(id.len()).any(|w| w == id.as_bytes());
    assert!(!names(&krl_of(&bases[1]).await, &cert));
    a.revoke(&cert, None).await.unwrap();
    // In the ledger from the revoking commit: the other replica serves it at once, and
    // rewrites its own host's file for sshd too.
    assert!(names(&krl_of(&bases[1]).await, &cert));
    assert!(eventually(|| async { a.get_grant(&cert).await.unwrap().state == "revoked" }).await);
    assert!(
        eventually(|| async {
            std::fs::read(d.join("ssh/revoked-b.krl")).is_ok_and(|f| names(&f, &cert))
        })
        .await
    );
    replica_b.kill().await.unwrap();
    c.kill_all().await;
}

/// A reload through one replica (SIGHUP) changes the decisions of the other; a replica started
/// with other policy files puts its set in force, and a replica whose files are not that set
/// says so in `/readyz` and in its metrics.
#[tokio::test]
async fn a_policy_set_put_in_force_through_one_replica_decides_in_every_replica() {
    let Some(c) = cluster(1).await else { return };
    let bases = c.start(2).await;
    let token = &c.tokens[0].1;
    let a = Client::new(&bases[0], Some(token.clone())).unwrap();
    let b = Client::new(&bases[1], Some(token.clone())).unwrap();
    let gid = b.create_request(&read_logs()).await.unwrap().grant_id;
    let gid = gid.expect("auto-approved under the first set");
    assert!(eventually(|| async { b.get_grant(&gid).await.unwrap().state == "active" }).await);
    b.revoke(&gid, None).await.unwrap();
    assert!(eventually(|| async { b.get_grant(&gid).await.unwrap().state == "revoked" }).await);

    // The files now only let workers ask: approval needed. A reload through replica A…
    let policy = c.dir.path().join("policies/replicas.cedar");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replace(
            r#"[Hourglass::Action::"Request", Hourglass::Action::"AutoApprove"]"#,
            r#"[Hourglass::Action::"Request"]"#,
        ),
    )
    .unwrap();
    let pid = {
        let replicas = c.replicas.lock().await;
        replicas[0].as_ref().unwrap().0.id().unwrap().to_string()
    };
    crate::binary::hup(&pid);
    // …changes what replica B decides, without anyone touching B (B says when it follows).
    assert!(
        eventually(|| async {
            c.log
                .lock()
                .unwrap()
                .contains("following the policy set another replica put in force")
        })
        .await
    );
    let r = b.create_request(&read_logs()).await.unwrap();
    assert_eq!(r.state, "pending");
    b.cancel(&r.id).await.unwrap();
    let r = a.create_request(&read_logs()).await.unwrap();
    assert_eq!(r.state, "pending");
    a.cancel(&r.id).await.unwrap();
    let stale = |base: String| async move {
        let anon = Client::new(&base, None).unwrap();
        let ready = anon.get_status("/readyz").await.unwrap();
        let metric = anon
            .metrics()
            .await
            .unwrap()
            .lines()
            .any(|l| l == "hourglass_policy_stale 1");
        (ready, metric)
    };
    assert_eq!(stale(bases[1].clone()).await, (200, false));

    // A replica started with other files (the first set again) puts its set in force: the two
    // others cannot follow with their files, and report it.
    let other_dir = c.dir.path().join("policies-c");
    std::fs::create_dir_all(&other_dir).unwrap();
    std::fs::write(other_dir.join("replicas.cedar"), text).unwrap();
    let other_config = c.dir.path().join("hourglass-c.toml");
    std::fs::write(
        &other_config,
        std::fs::read_to_string(&c.config)
            .unwrap()
            .replace("dir = \"policies\"", "dir = \"policies-c\""),
    )
    .unwrap();
    let (mut third, base_c) = c.spawn_with(&other_config).await;
    let on_c = Client::new(&base_c, Some(token.clone())).unwrap();
    let r = on_c.create_request(&read_logs()).await.unwrap();
    assert!(
        r.grant_id.is_some(),
        "auto-approved under the set it started with"
    );
    for base in &bases {
        assert!(
            eventually(|| async { stale(base.clone()).await == (503, true) }).await,
            "{base} reports itself stale"
        );
    }
    assert_eq!(stale(base_c.clone()).await, (200, false));

    // A replica told to follow (`on_start = "follow"`), started with the files A and B have:
    // it does not put them back in force; it reports itself stale, and C stays ready.
    let follow_config = c.dir.path().join("hourglass-d.toml");
    let text = std::fs::read_to_string(&c.config).unwrap();
    assert!(text.contains("dir = \"policies\"\n"));
    std::fs::write(
        &follow_config,
        text.replace(
            "dir = \"policies\"\n",
            "dir = \"policies\"\non_start = \"follow\"\n",
        ),
    )
    .unwrap();
    let pg = c.pg().await;
    let in_force = || async {
        sqlx::query_scalar::<_, String>("SELECT hash FROM policy_in_force")
            .fetch_one(&pg)
            .await
            .unwrap()
    };
    let before = in_force().await;
    let (mut fourth, base_d) = c.spawn_with(&follow_config).await;
    assert!(eventually(|| async { stale(base_d.clone()).await == (503, true) }).await);
    assert_eq!(
        in_force().await,
        before,
        "a follower never puts its files in force"
    );
    assert_eq!(stale(base_c).await, (200, false));
    fourth.kill().await.unwrap();
    third.kill().await.unwrap();
    c.kill_all().await;
}

#[tokio::test]
async fn three_replicas_killed_at_random_lose_and_double_nothing() {
    const PRINCIPALS: usize = 10;
    const LIFECYCLES: usize = 2_000;
    let Some(c) = cluster(PRINCIPALS).await else {
        return;
    };
    let c = Arc::new(c);
    let bases: Bases = Arc::new(Mutex::new(c.start(3).await.into_iter().map(Some).collect()));

    // The killer: every 3 s one replica (in turn) is killed with SIGKILL and started again.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let killer = {
        let (c, bases) = (Arc::clone(&c), Arc::clone(&bases));
        tokio::spawn(async move {
            let mut kills = 0u32;
            let mut victim = 0;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(3)) => {}
                    _ = stop_rx.changed() => return kills,
                }
                let mut replicas = c.replicas.lock().await;
                if let Some((mut child, _)) = replicas[victim].take() {
                    bases.lock().unwrap()[victim] = None;
                    child.start_kill().unwrap();
                    child.wait().await.unwrap();
                    kills += 1;
                }
                let r = c.spawn().await;
                bases.lock().unwrap()[victim] = Some(r.1.clone());
                replicas[victim] = Some(r);
                victim = (victim + 1) % 3;
            }
        })
    };

    let tokens = c.tokens.clone();
    let mut gids_all = Vec::with_capacity(LIFECYCLES);
    let mut nudges = 0;
    let mut rounds_with_nudges = Vec::new();
    let mut allowed_late = HashMap::new();
    for round in 0..LIFECYCLES / PRINCIPALS {
        let mut tasks = Vec::new();
        for (i, (_, token)) in tokens.iter().enumerate() {
            let (bases, token) = (Arc::clone(&bases), token.clone());
            tasks.push(tokio::spawn(async move {
                let mut turn = round + i;
                request_once(&bases, &token, &mut turn).await
            }));
        }
        let mut gids = Vec::new();
        for t in tasks {
            gids.push(t.await.unwrap());
        }
        // The grants are the principals' own: read them as each holder.
        let holders: Vec<(String, String)> = gids
            .iter()
            .cloned()
            .zip(tokens.iter().map(|(_, t)| t.clone()))
            .collect();
        let n1 = settle_each(&c, &bases, &holders, "active").await;
        c.advance(DURATION_MS + 1_000);
        let n2 = settle_each(&c, &bases, &holders, "revoked").await;
        // How late this round's revocations may be: the step past expiry, plus one lease for
        // each time a killed holder's lease had to run out (while provisioning too: the clock
        // moved on then, and the expiry with it).
        for g in &gids {
            allowed_late.insert(g.clone(), 1_000 + i64::from(n1 + n2) * (LEASE_MS + 1_000));
        }
        if n1 + n2 > 0 {
            rounds_with_nudges.push((round, n1 + n2));
        }
        nudges += n1 + n2;
        gids_all.extend(gids);
    }
    stop_tx.send(true).unwrap();
    let kills = killer.await.unwrap();
    c.kill_all().await;
    eprintln!(
        "{LIFECYCLES} lifecycles, {kills} replicas killed, clock moved past a lease {nudges} times ({rounds_with_nudges:?})"
    );
    assert!(kills >= 3, "the replicas were killed ({kills} times)");

    // The target's own record: each grant appeared once and went away once.
    let ops = c.ops();
    let mut changes: HashMap<&str, (u32, u32)> = HashMap::new();
    for line in ops.lines() {
        let (op, gid) = line.split_once(' ').unwrap();
        let e = changes.entry(gid).or_default();
        match op {
            "grant" => e.0 += 1,
            "revoke" => e.1 += 1,
            _ => panic!("{line}"),
        }
    }
    assert_eq!(changes.len(), LIFECYCLES, "every grant reached the target");
    for g in &gids_all {
        assert_eq!(changes.get(g.as_str()), Some(&(1, 1)), "{g}");
    }
    let access = std::fs::read_to_string(c.dir.path().join("access.txt")).unwrap_or_default();
    assert!(access.trim().is_empty(), "still held: {access}");

    // The ledger agrees: one activation and one revocation each, and no grant ended later past
    // its expiry than the step past it plus a lease for each holder killed with it.
    let pg = c.pg().await;
    let rows: Vec<(String, String, i64, Option<i64>)> =
        sqlx::query_as("SELECT id, state, expires_at, ended_at FROM grants")
            .fetch_all(&pg)
            .await
            .unwrap();
    assert_eq!(rows.len(), LIFECYCLES);
    for (id, state, expires_at, ended_at) in &rows {
        assert_eq!(state, "revoked", "{id}");
        let late = ended_at.unwrap() - expires_at;
        assert!(
            late <= allowed_late[id],
            "{id} outlived its expiry by {late} ms (allowed {} ms)",
            allowed_late[id]
        );
    }
    let per_grant: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT subject,
                COUNT(CASE WHEN action = 'grant.activated' THEN 1 END),
                COUNT(CASE WHEN action = 'grant.revoked' THEN 1 END)
           FROM audit_events WHERE subject LIKE 'grt_%' GROUP BY subject",
    )
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(per_grant.len(), LIFECYCLES);
    for (g, activated, revoked) in &per_grant {
        assert_eq!((*activated, *revoked), (1, 1), "{g}");
    }
    pg.close().await;
    verify_chain(&c).await;
}

/// `settle` for grants read by their holders: `(grant id, holder token)`.
async fn settle_each(c: &Cluster, bases: &Bases, holders: &[(String, String)], state: &str) -> u32 {
    let mut nudges = 0;
    for (gid, token) in holders {
        nudges += settle(c, bases, token, std::slice::from_ref(gid), state).await;
    }
    nudges
}

async fn verify_chain(c: &Cluster) {
    crate::binary::assert_audit_verifies(&c.config);
}

/// Terminates every session on the test database and refuses new ones until `allow` runs.
async fn take_database_away(db: &TestDb) -> sqlx::PgPool {
    let admin = sqlx::PgPool::connect(
        &std::env::var("HOURGLASS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS false",
        db.name
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&db.name)
        .execute(&admin)
        .await
        .unwrap();
    admin
}

async fn bring_database_back(admin: &sqlx::PgPool, db: &TestDb) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS true",
        db.name
    )))
    .execute(admin)
    .await
    .unwrap();
}

#[tokio::test]
async fn replicas_ride_out_the_database_going_away() {
    let Some(c) = cluster(4).await else {
        return;
    };
    let bases = c.start(2).await;
    let shared: Bases = Arc::new(Mutex::new(bases.iter().cloned().map(Some).collect()));
    let mut gids = Vec::new();
    let mut turn = 0;
    for (_, token) in &c.tokens {
        gids.push(request_once(&shared, token, &mut turn).await);
    }
    let holders: Vec<(String, String)> = gids
        .iter()
        .cloned()
        .zip(c.tokens.iter().map(|(_, t)| t.clone()))
        .collect();
    assert_eq!(settle_each(&c, &shared, &holders, "active").await, 0);

    // The database goes away: both replicas say they are not ready, and a request is refused
    // with 503 instead of hanging.
    let admin = take_database_away(&c.db).await;
    let probe = |b: &String| Client::new(b, None).unwrap();
    for b in &bases {
        assert!(
            eventually(|| async { probe(b).get_status("/readyz").await.ok() == Some(503) }).await,
            "{b} still says ready"
        );
    }
    let err = Client::new(&bases[0], Some(c.tokens[0].1.clone()))
        .unwrap()
        .create_request(&read_logs())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Problem(p) if p.status == 503),
        "{err:?}\n{}",
        c.log.lock().unwrap()
    );
    // Meanwhile the grants expire: the revocations are due while nobody can reach the store.
    c.advance(DURATION_MS + 1_000);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Back: ready again by themselves, and every due revocation happens.
    bring_database_back(&admin, &c.db).await;
    admin.close().await;
    for b in &bases {
        assert!(
            eventually(|| async { probe(b).get_status("/readyz").await.ok() == Some(200) }).await,
            "{b} did not recover"
        );
    }
    assert_eq!(settle_each(&c, &shared, &holders, "revoked").await, 0);
    let ops = c.ops();
    for g in &gids {
        assert_eq!(ops.matches(&format!("grant {g}\n")).count(), 1, "{ops}");
        assert_eq!(ops.matches(&format!("revoke {g}\n")).count(), 1, "{ops}");
    }
    c.kill_all().await;
    verify_chain(&c).await;
}

#[tokio::test]
async fn a_replica_told_not_to_migrate_waits_for_hourglass_migrate() {
    let Some(c) = cluster(1).await else {
        return;
    };
    let run = |args: &[&str], migrate: &str| {
        std::process::Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&c.config)
            .env("HOURGLASS_STORE__MIGRATE", migrate)
            .env("HOURGLASS_TEST_CLOCK_FILE", &c.clock)
            .output()
            .unwrap()
    };
    // A fresh database and `migrate = false`: the replica refuses to start, and says why.
    let out = run(&["serve"], "false");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("hourglass migrate"), "{err}");
    let pg = c.pg().await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'grants'",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(tables, 0, "nothing was created");

    // `hourglass migrate` brings it up; twice is harmless; then the replica starts.
    for _ in 0..2 {
        let out = run(&["migrate"], "false");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("is current"));
    }
    // Each migration of this build, applied once: numbered 1 to n with no gap or repeat.
    let (applied, highest): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&pg)
            .await
            .unwrap();
    assert!(applied >= 6 && applied == highest, "{applied} {highest}");
    pg.close().await;
    let bases = c.start(1).await;
    assert_eq!(
        Client::new(&bases[0], None)
            .unwrap()
            .get_status("/readyz")
            .await
            .unwrap(),
        200
    );
    c.kill_all().await;
}

#[tokio::test]
async fn store_copy_moves_a_used_sqlite_store_to_postgres() {
    let Some(db) = hourglass_testdb::postgres().await else {
        return;
    };
    let s = crate::binary::setup();
    let (mut server, client) = s.start().await;
    let gid = client
        .create_request(&CreateRequest {
            reason: "before the move".into(),
            ..read_logs()
        })
        .await
        .unwrap()
        .grant_id
        .unwrap();
    assert!(eventually(|| async { client.get_grant(&gid).await.unwrap().state == "active" }).await);
    server.kill().await.unwrap();
    server.wait().await.unwrap();

    let from = format!("sqlite://{}", s.dir.path().join("hourglass.db").display());
    let copy = |to: &str| {
        std::process::Command::new(BIN)
            .args(["store", "copy", "--from", &from, "--to", to])
            .output()
            .unwrap()
    };
    let out = copy(&db.url);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("audit chain verified at the destination"),
        "{text}"
    );
    assert!(text.contains("grants           1 rows"), "{text}");

    // The copy's chain verifies on its own, through the PostgreSQL store.
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(&s.config)
        .env("HOURGLASS_STORE__URL", &db.url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("audit chain ok"),
        "{text}"
    );

    // Copying again into the now-used database is refused.
    let out = copy(&db.url);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
