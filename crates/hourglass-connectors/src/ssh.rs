//! The `ssh` connector: short-lived OpenSSH user certificates.
//!
//! Hourglass holds an SSH certificate authority key (Ed25519, OpenSSH format; `hourglass init`
//! generates one) and, for each grant, signs the requester's public key for the entitlement's
//! principals with `valid_before` = the grant's end and the grant id as key id. Servers trust
//! the CA with `TrustedUserCAKeys`; the certificate stops working on its own at expiry.
//!
//! Revoking before expiry puts the key id in an OpenSSH key revocation list (KRL). The list is
//! the ledger's: a grant of this target that was revoked (or failed) before its end is in it
//! from the commit that revoked it until its certificate has expired anyway, so it stays small
//! and every replica renders the same list. The KRL is served at `/v1/ssh/krl` rendered from the
//! ledger at each call, and written to `krl_file` for sshd's `RevokedKeys` at start, by the
//! replica that carries out a revocation, and by every replica when another one schedules work
//! (its wake-up), so each host's file follows the ledger.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use hourglass_core::{
    Clock, Timestamp,
    connector::{Connector, ConnectorError, GrantSpec, Holding, Presence, Provisioned},
};
use secrecy::SecretString;
use serde::Deserialize;
use ssh_key::{
    Certificate, LineEnding, PrivateKey, PublicKey,
    certificate::{Builder, CertType},
    private::Ed25519Keypair,
};
use tokio::sync::Mutex;

/// Configuration of an `ssh` target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// The CA's private key (OpenSSH format, unencrypted, readable by Hourglass only).
    pub ca_key_file: PathBuf,
    /// Where the key revocation list is written (sshd `RevokedKeys`).
    pub krl_file: PathBuf,
    /// Certificate extensions unless an entitlement names its own (default `permit-pty`).
    #[serde(default = "default_extensions")]
    pub extensions: Vec<String>,
}

fn default_extensions() -> Vec<String> {
    vec!["permit-pty".into()]
}

/// An entitlement's parameters on an `ssh` target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The login names the certificate is valid for (`["deploy"]`).
    principals: Vec<String>,
    #[serde(default)]
    extensions: Option<Vec<String>>,
    /// Restricts where the certificate may be used from (`10.0.0.0/8,192.168.1.7`).
    #[serde(default)]
    source_address: Option<String>,
    /// A command forced on every session.
    #[serde(default)]
    force_command: Option<String>,
}

const KNOWN_EXTENSIONS: [&str; 5] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

fn params(v: &serde_json::Value) -> Result<Params, String> {
    let p: Params = serde_json::from_value(v.clone()).map_err(|e| format!("params: {e}"))?;
    if p.principals.is_empty() {
        return Err("params.principals: name at least one login".into());
    }
    if let Some(bad) = p
        .principals
        .iter()
        .find(|n| n.is_empty() || n.chars().any(|c| c.is_whitespace() || c == ','))
    {
        return Err(format!("params.principals: {bad:?} is not a login name"));
    }
    check_extensions(p.extensions.iter().flatten()).map_err(|e| format!("params.{e}"))?;
    Ok(p)
}

fn check_extensions<'a>(exts: impl Iterator<Item = &'a String>) -> Result<(), String> {
    for e in exts {
        if !KNOWN_EXTENSIONS.contains(&e.as_str()) {
            return Err(format!(
                "extensions: {e:?} is not one of {}",
                KNOWN_EXTENSIONS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Writes a new Ed25519 CA key to `path` (mode 0600) and its public key to `path.pub`.
pub fn generate_ca(path: &Path, comment: &str) -> Result<PublicKey, String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("random: {e}"))?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| format!("encoding the CA key: {e}"))?;
    write_private(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    let public = key.public_key().clone();
    let pub_text = public
        .to_openssh()
        .map_err(|e| format!("encoding the CA public key: {e}"))?;
    let pub_path = PathBuf::from(format!("{}.pub", path.display()));
    std::fs::write(&pub_path, format!("{pub_text}\n"))
        .map_err(|e| format!("{}: {e}", pub_path.display()))?;
    Ok(public)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Replaces `path` atomically (write beside it, then rename).
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // A name of this process's own: replicas on one machine may share the file.
    let tmp = PathBuf::from(format!("{}.{}.tmp", path.display(), std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Where the connector learns which certificates were revoked before their end: the ledger.
#[async_trait]
pub trait RevocationList: Send + Sync {
    /// The key ids of certificates revoked before their end whose end is still after `now`.
    async fn revoked(&self, now: Timestamp) -> Result<Vec<String>, String>;
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(s);
}

/// Encodes an OpenSSH KRL (PROTOCOL.krl) that revokes certificates by key id for one CA.
fn encode_krl(ca: &[u8], revoked: &[String], generated: Timestamp) -> Vec<u8> {
    const MAGIC: &[u8; 8] = b"SSHKRL\n\0";
    const FORMAT_VERSION: u32 = 1;
    const SECTION_CERTIFICATES: u8 = 1;
    const CERT_SECTION_KEY_ID: u8 = 0x23;
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, FORMAT_VERSION);
    // The version only has to grow: the moment it was rendered, in milliseconds.
    put_u64(
        &mut out,
        u64::try_from(generated.unix_millis()).unwrap_or(0),
    );
    put_u64(
        &mut out,
        u64::try_from(generated.unix_millis().div_euclid(1000)).unwrap_or(0),
    );
    put_u64(&mut out, 0); // flags
    put_string(&mut out, b""); // reserved
    put_string(&mut out, b"hourglass");
    if revoked.is_empty() {
        return out;
    }
    let mut ids: Vec<&str> = revoked.iter().map(String::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut key_ids = Vec::new();
    for id in ids {
        put_string(&mut key_ids, id.as_bytes());
    }
    let mut certs = Vec::new();
    put_string(&mut certs, ca);
    put_string(&mut certs, b""); // reserved
    certs.push(CERT_SECTION_KEY_ID);
    put_string(&mut certs, &key_ids);
    out.push(SECTION_CERTIFICATES);
    put_string(&mut out, &certs);
    out
}

/// The SSH certificate connector.
pub struct SshConnector {
    ca: PrivateKey,
    ca_blob: Vec<u8>,
    krl_file: PathBuf,
    extensions: Vec<String>,
    clock: Arc<dyn Clock>,
    /// The ledger's list of early revocations (set once the store is open).
    revocations: std::sync::OnceLock<Arc<dyn RevocationList>>,
    /// Serialises writes of the KRL file.
    krl: Mutex<()>,
}

impl std::fmt::Debug for SshConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConnector")
            .field("krl_file", &self.krl_file)
            .finish_non_exhaustive()
    }
}

impl SshConnector {
    /// Loads the CA key. Call [`SshConnector::use_revocations`] and then
    /// [`SshConnector::write_krl_file`] before serving.
    pub fn new(cfg: &SshConfig, clock: Arc<dyn Clock>) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = check_extensions(cfg.extensions.iter()) {
            problems.push(e);
        }
        // A CA key others may read is a CA anyone on the host can sign with.
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(&cfg.ca_key_file)
                && meta.permissions().mode() & 0o077 != 0
            {
                problems.push(format!(
                    "ca_key_file: {}: readable or writable by others (mode {:o}); chmod 600 it",
                    cfg.ca_key_file.display(),
                    meta.permissions().mode() & 0o777
                ));
            }
        }
        let ca = match std::fs::read_to_string(&cfg.ca_key_file) {
            Ok(text) => match PrivateKey::from_openssh(text.as_bytes()) {
                Ok(k) if k.is_encrypted() => {
                    problems.push("ca_key_file: the key is encrypted; give an unencrypted key readable by Hourglass only".into());
                    None
                }
                Ok(k) => Some(k),
                Err(e) => {
                    problems.push(format!("ca_key_file: not an OpenSSH private key: {e}"));
                    None
                }
            },
            Err(e) => {
                problems.push(format!("ca_key_file: {}: {e}", cfg.ca_key_file.display()));
                None
            }
        };
        let ca_blob = ca
            .as_ref()
            .and_then(|k| k.public_key().to_bytes().ok())
            .unwrap_or_default();
        let (Some(ca), true) = (ca, problems.is_empty()) else {
            return Err(problems);
        };
        Ok(SshConnector {
            ca,
            ca_blob,
            krl_file: cfg.krl_file.clone(),
            extensions: cfg.extensions.clone(),
            clock,
            revocations: std::sync::OnceLock::new(),
            krl: Mutex::new(()),
        })
    }

    /// Takes the ledger's list of early revocations (once; later calls change nothing).
    pub fn use_revocations(&self, list: Arc<dyn RevocationList>) {
        let _ = self.revocations.set(list);
    }

    /// The CA's public key, one OpenSSH line (for `TrustedUserCAKeys`).
    pub fn ca_public_key(&self) -> String {
        self.ca.public_key().to_openssh().unwrap_or_default()
    }

    async fn revoked_now(&self) -> Result<Vec<String>, ConnectorError> {
        let list = self
            .revocations
            .get()
            .ok_or_else(|| ConnectorError::new("the SSH CA has no revocation list yet"))?;
        list.revoked(self.clock.now())
            .await
            .map_err(|e| ConnectorError::new(format!("reading the revocation list: {e}")))
    }

    /// The current KRL, rendered from the ledger (as served at `/v1/ssh/krl`).
    pub async fn krl(&self) -> Result<Vec<u8>, ConnectorError> {
        let revoked = self.revoked_now().await?;
        Ok(encode_krl(&self.ca_blob, &revoked, self.clock.now()))
    }

    /// Renders the KRL from the ledger into `krl_file` (replaced whole, never half written).
    /// sshd refuses every key when its `RevokedKeys` file is missing, so this runs at start.
    /// Replicas on one host may share the file: each write holds an exclusive lock on
    /// `<krl_file>.lock` from reading the ledger to the rename, so a writer that read the ledger
    /// before a revocation never replaces a file that already lists it.
    pub async fn write_krl_file(&self) -> Result<Vec<String>, ConnectorError> {
        let _in_process = self.krl.lock().await;
        let lock_path = PathBuf::from(format!("{}.lock", self.krl_file.display()));
        let cannot =
            |e: std::io::Error| ConnectorError::new(format!("{}: {e}", lock_path.display()));
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(cannot)?;
        // Another process holds it for a ledger read and a file write: a moment.
        let lock_file = tokio::task::spawn_blocking(move || lock_file.lock().map(|()| lock_file))
            .await
            .map_err(|e| ConnectorError::new(format!("KRL lock task: {e}")))?
            .map_err(cannot)?;
        let revoked = self.revoked_now().await?;
        let bytes = encode_krl(&self.ca_blob, &revoked, self.clock.now());
        let written = replace_file(&self.krl_file, &bytes)
            .map_err(|e| ConnectorError::new(format!("{}: {e}", self.krl_file.display())));
        drop(lock_file);
        written.map(|()| revoked)
    }

    fn serial(spec: &GrantSpec) -> u64 {
        // The last 16 hex digits of the grant id: the random part of its UUIDv7.
        let id = spec.grant_id.as_str();
        u64::from_str_radix(&id[id.len().saturating_sub(16)..], 16).unwrap_or(0)
    }

    fn parse_key(key: Option<&str>) -> Result<PublicKey, String> {
        let text = key.ok_or("this entitlement issues an SSH certificate: give your public key (request --public-key-file ~/.ssh/id_ed25519.pub)")?;
        if text.contains("-cert-v01@openssh.com") {
            return Err("give a public key, not a certificate".into());
        }
        PublicKey::from_openssh(text).map_err(|e| format!("not an OpenSSH public key: {e}"))
    }
}

#[async_trait]
impl Connector for SshConnector {
    async fn grant(&self, spec: &GrantSpec) -> Result<Provisioned, ConnectorError> {
        let p = params(&spec.params).map_err(ConnectorError::new)?;
        let key = Self::parse_key(spec.public_key.as_deref()).map_err(ConnectorError::new)?;
        let secs = |t: Timestamp| u64::try_from(t.unix_millis().div_euclid(1000)).unwrap_or(0);
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce).map_err(|e| ConnectorError::new(format!("random: {e}")))?;
        let ssh = |e: ssh_key::Error| ConnectorError::new(format!("ssh certificate: {e}"));
        // A minute of leeway for servers whose clocks run a little behind.
        let mut b = Builder::new(
            nonce,
            key.key_data().clone(),
            secs(spec.starts_at).saturating_sub(60),
            secs(spec.expires_at),
        )
        .map_err(ssh)?;
        b.serial(Self::serial(spec)).map_err(ssh)?;
        b.cert_type(CertType::User).map_err(ssh)?;
        b.key_id(spec.grant_id.as_str()).map_err(ssh)?;
        b.comment(format!("{} {}", spec.principal, spec.entitlement))
            .map_err(ssh)?;
        for name in &p.principals {
            b.valid_principal(name.as_str()).map_err(ssh)?;
        }
        for ext in p.extensions.as_ref().unwrap_or(&self.extensions) {
            b.extension(ext.as_str(), "").map_err(ssh)?;
        }
        if let Some(addr) = &p.source_address {
            b.critical_option("source-address", addr.as_str())
                .map_err(ssh)?;
        }
        if let Some(cmd) = &p.force_command {
            b.critical_option("force-command", cmd.as_str())
                .map_err(ssh)?;
        }
        let cert: Certificate = b.sign(&self.ca).map_err(ssh)?;
        let text = cert.to_openssh().map_err(ssh)?;
        Ok(Provisioned {
            handle: Some(serde_json::json!({
                "key_id": spec.grant_id.as_str(),
                "serial": Self::serial(spec),
                "principals": p.principals,
                "key_fingerprint": key.fingerprint(Default::default()).to_string(),
            })),
            credential: Some(SecretString::from(text)),
        })
    }

    /// A certificate's validity cannot change: a new one is issued for the new end, with the
    /// same key id and serial (so an early revocation in the KRL covers both).
    async fn extend(&self, spec: &GrantSpec) -> Result<Option<SecretString>, ConnectorError> {
        self.grant(spec).await.map(|p| p.credential)
    }

    /// The revocation is already in the ledger (the commit that revoked the grant put it
    /// there): this writes the KRL file with it, and fails (to be retried) if the ledger does
    /// not list it, unless the certificate has expired anyway.
    async fn revoke(&self, spec: &GrantSpec) -> Result<(), ConnectorError> {
        let revoked = self.write_krl_file().await?;
        if spec.expires_at > self.clock.now()
            && !revoked.iter().any(|id| id == spec.grant_id.as_str())
        {
            return Err(ConnectorError::new(format!(
                "the ledger does not list {} as revoked yet",
                spec.grant_id
            )));
        }
        Ok(())
    }

    /// Absent once the certificate has expired, or once the KRL file that sshd reads names it.
    async fn inspect(&self, spec: &GrantSpec) -> Result<Presence, ConnectorError> {
        if spec.expires_at <= self.clock.now() {
            return Ok(Presence::Absent);
        }
        let bytes = match std::fs::read(&self.krl_file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(ConnectorError::new(format!(
                    "{}: {e}",
                    self.krl_file.display()
                )));
            }
        };
        let id = spec.grant_id.as_str().as_bytes();
        Ok(if bytes.windows(id.len()).any(|w| w == id) {
            Presence::Absent
        } else {
            Presence::Present
        })
    }

    async fn discover(&self) -> Result<Vec<Holding>, ConnectorError> {
        // Certificates leave no trace at the CA; standing SSH access (authorized_keys) is on
        // the servers, out of this connector's sight.
        Ok(Vec::new())
    }

    fn check_params(&self, params_value: &serde_json::Value) -> Vec<String> {
        params(params_value).err().into_iter().collect()
    }

    fn check_request(
        &self,
        _params: &serde_json::Value,
        public_key: Option<&str>,
    ) -> Result<(), String> {
        let key = Self::parse_key(public_key)?;
        if key.key_data() == self.ca.public_key().key_data() {
            return Err("that is the CA's own key".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
