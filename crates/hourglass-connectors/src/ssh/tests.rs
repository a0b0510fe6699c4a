//! Certificates and KRLs checked with OpenSSH's own `ssh-keygen`.

use std::{
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use hourglass_core::{
    Timestamp,
    connector::{Connector, GrantSpec, Presence},
};
use secrecy::ExposeSecret;

use super::{RevocationList, SshConfig, SshConnector, generate_ca};
use crate::testutil::{FixedClock, spec, wall_clock};

/// The ledger's early revocations, as the store would list them: each grant revoked before its
/// end, until that end.
#[derive(Default)]
struct Ledger(Mutex<Vec<(String, Timestamp)>>);

impl Ledger {
    fn revoke(&self, s: &GrantSpec) {
        self.0
            .lock()
            .unwrap()
            .push((s.grant_id.to_string(), s.expires_at));
    }
}

#[async_trait]
impl RevocationList for Ledger {
    async fn revoked(&self, now: Timestamp) -> Result<Vec<String>, String> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, end)| *end > now)
            .map(|(id, _)| id.clone())
            .collect())
    }
}

async fn connector(cfg: &SshConfig, clock: Arc<FixedClock>) -> (SshConnector, Arc<Ledger>) {
    let ca = SshConnector::new(cfg, clock).unwrap();
    let ledger = Arc::new(Ledger::default());
    ca.use_revocations(ledger.clone());
    ca.write_krl_file().await.unwrap();
    (ca, ledger)
}

fn keygen(args: &[&str]) -> (bool, String) {
    let out = Command::new("ssh-keygen")
        .args(args)
        .env("TZ", "UTC")
        .output()
        .expect("ssh-keygen is installed");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A user key made by ssh-keygen, and its public half.
fn user_key(dir: &Path) -> String {
    let path = dir.join("id_ed25519");
    let (ok, text) = keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        path.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    std::fs::read_to_string(dir.join("id_ed25519.pub"))
        .unwrap()
        .trim()
        .to_owned()
}

fn setup(dir: &Path) -> SshConfig {
    generate_ca(&dir.join("ca"), "hourglass test ca").unwrap();
    SshConfig {
        ca_key_file: dir.join("ca"),
        krl_file: dir.join("revoked.krl"),
        extensions: vec!["permit-pty".into()],
    }
}

#[tokio::test]
async fn certificates_read_back_and_early_revocation_lands_in_the_krl() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let clock = FixedClock::at(wall_clock());
    let (ca, ledger) = connector(&cfg, clock.clone()).await;
    let params =
        serde_json::json!({"principals": ["deploy", "ops"], "source_address": "10.0.0.0/8"});
    let mut s = spec("alice", "ssh-prod/deploy", params.clone(), 30);
    s.public_key = Some(user_key(dir.path()));
    assert!(ca.check_request(&params, s.public_key.as_deref()).is_ok());

    let out = ca.grant(&s).await.unwrap();
    let cert_path = dir.path().join("id_ed25519-cert.pub");
    std::fs::write(&cert_path, out.credential.unwrap().expose_secret()).unwrap();
    let (ok, text) = keygen(&["-L", "-f", cert_path.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("Key ID: \"{}\"", s.grant_id)),
        "{text}"
    );
    assert!(text.contains("deploy") && text.contains("ops"), "{text}");
    assert!(text.contains("source-address 10.0.0.0/8"), "{text}");
    assert!(text.contains("permit-pty"), "{text}");
    let until = s.expires_at.to_string();
    let until = until.split('.').next().unwrap().trim_end_matches('Z');
    assert!(text.contains(&format!("to {until}")), "{until} in {text}");
    assert_eq!(ca.inspect(&s).await.unwrap(), Presence::Present);

    // Extended: a new certificate for the new end, same key id.
    let mut longer = s.clone();
    longer.expires_at = s.expires_at.plus_millis(30 * 60_000);
    let cert = ca.extend(&longer).await.unwrap().unwrap();
    let longer_path = dir.path().join("longer-cert.pub");
    std::fs::write(&longer_path, cert.expose_secret()).unwrap();
    let (ok, text) = keygen(&["-L", "-f", longer_path.to_str().unwrap()]);
    assert!(ok, "{text}");
    let until = longer.expires_at.to_string();
    let until = until.split('.').next().unwrap().trim_end_matches('Z');
    assert!(text.contains(&format!("to {until}")), "{until} in {text}");
    assert!(
        text.contains(&format!("Key ID: \"{}\"", s.grant_id)),
        "{text}"
    );

    // The (empty) KRL exists from the start, and does not revoke the certificate.
    let krl = cfg.krl_file.to_str().unwrap();
    let (ok, text) = keygen(&["-Q", "-f", krl, cert_path.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains(": ok"), "{text}");

    // Not in the ledger yet: the revocation is retried rather than confirmed.
    assert!(ca.revoke(&s).await.is_err());
    assert_eq!(ca.inspect(&s).await.unwrap(), Presence::Present);
    ledger.revoke(&s);
    ca.revoke(&s).await.unwrap();
    ca.revoke(&s).await.unwrap();
    let (ok, text) = keygen(&["-Q", "-f", krl, cert_path.to_str().unwrap()]);
    assert!(!ok, "{text}");
    assert!(text.contains("REVOKED"), "{text}");
    let (ok, text) = keygen(&["-Q", "-f", krl, longer_path.to_str().unwrap()]);
    assert!(
        !ok && text.contains("REVOKED"),
        "the extended certificate too: {text}"
    );
    assert_eq!(ca.inspect(&s).await.unwrap(), Presence::Absent);

    // Another certificate of the same CA stays valid.
    let mut other = spec("bob", "ssh-prod/deploy", params, 30);
    other.public_key = s.public_key.clone();
    let out = ca.grant(&other).await.unwrap();
    std::fs::write(&cert_path, out.credential.unwrap().expose_secret()).unwrap();
    let (ok, text) = keygen(&["-Q", "-f", krl, cert_path.to_str().unwrap()]);
    assert!(ok, "{text}");

    // The served KRL is the same list, rendered from the ledger.
    let served = ca.krl().await.unwrap();
    let served_path = dir.path().join("served.krl");
    std::fs::write(&served_path, &served).unwrap();
    let (ok, text) = keygen(&[
        "-Q",
        "-f",
        served_path.to_str().unwrap(),
        longer_path.to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("REVOKED"), "{text}");

    // Once the revoked certificate has expired on its own, the next write drops its entry.
    clock.set(longer.expires_at.plus_millis(1));
    ledger.revoke(&other);
    ca.revoke(&other).await.unwrap();
    let file = std::fs::read(&cfg.krl_file).unwrap();
    let names = |id: &str| file.windows(id.len()).any(|w| w == id.as_bytes());
    assert!(!names(s.grant_id.as_str()));
}

#[tokio::test]
async fn a_revocation_after_expiry_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let clock = FixedClock::at(wall_clock());
    let (ca, _ledger) = connector(&cfg, clock.clone()).await;
    let mut s = spec(
        "alice",
        "ssh-prod/deploy",
        serde_json::json!({"principals": ["deploy"]}),
        5,
    );
    s.public_key = Some(user_key(dir.path()));
    ca.grant(&s).await.unwrap();
    clock.set(s.expires_at);
    // The ledger lists no entry for a certificate past its end: confirmed without one.
    ca.revoke(&s).await.unwrap();
    let file = std::fs::read(&cfg.krl_file).unwrap();
    let id = s.grant_id.as_str().as_bytes();
    assert!(!file.windows(id.len()).any(|w| w == id));
    assert_eq!(ca.inspect(&s).await.unwrap(), Presence::Absent);
}

#[tokio::test]
async fn requests_need_a_real_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let ca = SshConnector::new(&cfg, FixedClock::at(wall_clock())).unwrap();
    let p = serde_json::json!({"principals": ["deploy"]});
    assert!(
        ca.check_request(&p, None)
            .unwrap_err()
            .contains("public key")
    );
    assert!(ca.check_request(&p, Some("ssh-ed25519 garbage")).is_err());
    let own = std::fs::read_to_string(dir.path().join("ca.pub")).unwrap();
    assert!(
        ca.check_request(&p, Some(own.trim()))
            .unwrap_err()
            .contains("CA")
    );
    assert!(
        !ca.check_params(&serde_json::json!({"principals": []}))
            .is_empty()
    );
    assert!(
        !ca.check_params(
            &serde_json::json!({"principals": ["a"], "extensions": ["permit-everything"]})
        )
        .is_empty()
    );
    // The CA key file is private, and never overwritten.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("ca"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(generate_ca(&dir.path().join("ca"), "again").is_err());
}

/// A CA key others may read is refused at start, naming the file and the fix.
#[test]
fn a_ca_key_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let clock = FixedClock::at(wall_clock());
    assert!(SshConnector::new(&cfg, clock.clone()).is_ok());
    std::fs::set_permissions(&cfg.ca_key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let problems = SshConnector::new(&cfg, clock).err().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("readable or writable by others (mode 644); chmod 600 it")),
        "{problems:?}"
    );
}
