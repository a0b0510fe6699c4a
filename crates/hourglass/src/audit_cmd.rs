//! `hourglass audit archive` and `hourglass audit verify`: old events moved to a signed archive
//! file, and the chain checked across archives and the live store.
//!
//! An archive is JSON lines: a first line with the manifest (a JWT signed with Hourglass's
//! Ed25519 key: the sequence range, the hash before the first event and of the last, the count
//! and the SHA-256 of the event lines) and the public key that signed it; then one event per
//! line, exactly as the chain holds it. The store keeps a checkpoint (the last archived
//! sequence number and its hash) and the live chain continues from it.

use std::{
    io::{BufRead, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, bail};
use hourglass_core::{
    Clock, Timestamp,
    audit::{AuditEvent, ChainVerifier, Checkpoint, GENESIS_HASH},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const FORMAT: u64 = 1;

/// The signer of the deployment configured in `config` (its key directory).
fn signer(config: &hourglass_server::config::Config) -> Result<hourglass_tokens::Signer> {
    let now = hourglass_server::clock::SystemClock.now().unix_millis() / 1000;
    hourglass_server::workload::archive_signer(config, now).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The keys an archive's manifest may be signed with: the key directory's, read as they are,
/// and those of a saved JWKS (`--jwks`: keys retired since). Never the key a file carries.
fn trusted_keys(config: &hourglass_server::config::Config, saved: Option<&Path>) -> Result<Value> {
    let mut keys = Vec::new();
    if let Some(dir) = hourglass_server::workload::key_dir(config)
        && dir.is_dir()
        && let Ok(v) = hourglass_tokens::signer::published(&dir)
    {
        keys.extend(v["keys"].as_array().cloned().unwrap_or_default());
    }
    if let Some(path) = saved {
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{} is not a JWKS", path.display()))?;
        keys.extend(v["keys"].as_array().cloned().unwrap_or_default());
    }
    Ok(json!({ "keys": keys }))
}

/// Moves every event before `before` (all but the head) to `out`, signed, then deletes them
/// from the store, leaving a checkpoint the live chain continues from.
pub async fn archive(config_path: &Path, before: &str, out: &Path) -> Result<ExitCode> {
    let before = Timestamp::parse_rfc3339(before.trim())
        .with_context(|| format!("--before {before:?} is not an RFC 3339 time"))?;
    if out.exists() {
        bail!("{} exists: an archive is never overwritten", out.display());
    }
    let config = crate::cli::load_config(config_path)?;
    let signer = signer(&config)?;
    let store = hourglass_store::open(
        &config.store.url,
        &hourglass_store::PoolOptions {
            max_connections: 2,
            migrate: false,
            ..hourglass_store::PoolOptions::default()
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("opening the store: {e:?}"))?;
    let head = store
        .audit_head_seq()
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let checkpoint = store
        .audit_checkpoint()
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (mut v, since, prev_hash) = match &checkpoint {
        Some(c) => (
            ChainVerifier::after(c.through_seq, &c.through_hash),
            c.through_seq,
            c.through_hash.clone(),
        ),
        None => (ChainVerifier::default(), 0, GENESIS_HASH.to_owned()),
    };
    // Read and check the events to archive: the chain must be whole up to there. Nothing is
    // written over: the working files are new, named after the archive.
    let with = |suffix: &str| {
        let mut name = out.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let tmp = with(".events.partial");
    let partial = with(".partial");
    let create = |p: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .with_context(|| format!("creating {}", p.display()))
    };
    let mut events = std::io::BufWriter::new(create(&tmp)?);
    let mut digest = Sha256::new();
    let mut last: Option<(u64, String)> = None;
    let mut count = 0u64;
    let mut broken = None;
    hourglass_core::store::walk_audit::<anyhow::Error>(store.as_ref(), since, |e| {
        if e.seq >= head || e.record.at >= before {
            return Ok(false);
        }
        if let Err(b) = v.check(&e) {
            broken = Some(b);
            return Ok(false);
        }
        let line = format!("{}\n", serde_json::to_string(&e)?);
        digest.update(line.as_bytes());
        events.write_all(line.as_bytes())?;
        last = Some((e.seq, e.hash.clone()));
        count += 1;
        Ok(true)
    })
    .await?;
    events.flush()?;
    drop(events);
    if let Some(b) = broken {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "the audit chain is broken at sequence {}: {}; nothing archived",
            b.seq,
            b.reason
        );
    }
    let Some((through_seq, through_hash)) = last else {
        let _ = std::fs::remove_file(&tmp);
        println!("nothing to archive: no event before {before} (the head event always stays)");
        return Ok(ExitCode::SUCCESS);
    };
    let first_seq = since + 1;
    let events_sha256 = hex::encode(digest.finalize());
    let now = hourglass_server::clock::SystemClock.now();
    let (manifest, kid) = signer
        .sign(
            &json!({
                "iss": signer.issuer(),
                "typ": "hourglass-audit-archive",
                "iat": now.unix_millis() / 1000,
                "format": FORMAT,
                "first_seq": first_seq,
                "through_seq": through_seq,
                "prev_hash": prev_hash,
                "through_hash": through_hash,
                "events": count,
                "events_sha256": events_sha256,
                "before": before.to_string(),
            }),
            now.unix_millis() / 1000,
        )
        .context("signing the archive's manifest")?;
    let jwk = signer.jwks()["keys"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["kid"] == kid.as_str()).cloned())
        .unwrap_or(Value::Null);
    // The file: the manifest line, then the events; written whole and synced before anything
    // leaves the store, and given its name only once the store has recorded it.
    {
        let mut f = create(&partial)?;
        writeln!(
            f,
            "{}",
            json!({"hourglass_audit_archive": FORMAT, "manifest": manifest, "jwk": jwk})
        )?;
        std::io::copy(&mut std::fs::File::open(&tmp)?, &mut f)?;
        f.sync_all()?;
    }
    std::fs::remove_file(&tmp)?;
    let file = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let record = hourglass_core::audit::AuditRecord::new(
        now,
        "system",
        hourglass_core::event::EventKind::AuditArchived,
        &events_sha256,
    )
    .with("first_seq", first_seq)
    .with("through_seq", through_seq)
    .with("through_hash", &through_hash)
    .with("events", count)
    .with("file", &file);
    let deleted = match store
        .archive_audit(
            &Checkpoint {
                first_seq,
                through_seq,
                through_hash: through_hash.clone(),
                archived_at: now,
                events_sha256: events_sha256.clone(),
            },
            record,
        )
        .await
    {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            bail!("recording the archive in the store: {e}; nothing archived");
        }
    };
    std::fs::rename(&partial, out)
        .with_context(|| format!("naming {} (the store has recorded it)", partial.display()))?;
    println!(
        "archived events {first_seq}..{through_seq} ({count}; {deleted} removed from the store) to {}; the live chain continues after {through_seq} (hash {through_hash})",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What an archive says of itself, once checked.
struct Checked {
    first_seq: u64,
    through_seq: u64,
    through_hash: String,
    events: u64,
    signed: String,
}

/// Reads and checks one archive continuing `v`: the manifest's signature (against trusted
/// keys only: the key directory's and a saved JWKS, never the key the file carries), the
/// digest and count of its event lines, and the hash chain.
fn check_archive(path: &Path, v: &mut ChainVerifier, keys: &Value) -> Result<Checked> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut lines = std::io::BufReader::new(f).lines();
    let head: Value = serde_json::from_str(&lines.next().context("an empty file is no archive")??)
        .context("the first line is not an archive's manifest")?;
    if head["hourglass_audit_archive"] != FORMAT {
        bail!("{} is not an Hourglass audit archive", path.display());
    }
    let token = head["manifest"].as_str().context("no manifest")?;
    // Only keys this deployment trusts count; the key the file carries is for reading only.
    let claims = hourglass_tokens::verify_own(token, keys).map_err(|e| {
        anyhow::anyhow!(
            "{}: the manifest's signature: {e} (a key retired since must come from a saved JWKS: --jwks)",
            path.display()
        )
    })?;
    let signed = format!(
        "signed by key {}",
        head["jwk"]["kid"].as_str().unwrap_or("?")
    );
    if claims["typ"] != "hourglass-audit-archive" {
        bail!("the manifest is not an audit archive's");
    }
    let num = |k: &str| {
        claims[k]
            .as_u64()
            .with_context(|| format!("the manifest has no {k}"))
    };
    let text = |k: &str| {
        claims[k]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("the manifest has no {k}"))
    };
    let (first_seq, through_seq, events) = (num("first_seq")?, num("through_seq")?, num("events")?);
    if first_seq != v.next_seq() {
        bail!(
            "{} starts at {first_seq}, but the chain continues at {}",
            path.display(),
            v.next_seq()
        );
    }
    if text("prev_hash")? != v.head_hash() {
        bail!("{} does not continue the chain before it", path.display());
    }
    let mut digest = Sha256::new();
    let mut n = 0u64;
    for line in lines {
        let line = line?;
        digest.update(line.as_bytes());
        digest.update(b"\n");
        let e: AuditEvent = serde_json::from_str(&line)
            .with_context(|| format!("{}: event line {} is not an event", path.display(), n + 1))?;
        v.check(&e).map_err(|b| {
            anyhow::anyhow!(
                "{}: the chain is broken at sequence {}: {}",
                path.display(),
                b.seq,
                b.reason
            )
        })?;
        n += 1;
    }
    if hex::encode(digest.finalize()) != text("events_sha256")? || n != events {
        bail!(
            "{}: the event lines are not the ones the manifest signed",
            path.display()
        );
    }
    if v.head_hash() != text("through_hash")? || v.next_seq() != through_seq + 1 {
        bail!(
            "{}: the last event is not the one the manifest names",
            path.display()
        );
    }
    Ok(Checked {
        first_seq,
        through_seq,
        through_hash: text("through_hash")?,
        events,
        signed,
    })
}

/// An evidence export to check with the chain: the file, and its manifest (by default the file
/// the CLI wrote beside it, `FILE.manifest.jwt`).
pub struct ExportCheck<'a> {
    pub file: &'a Path,
    pub manifest: Option<&'a Path>,
}

/// Checks the chain (as [`verify_chain`]) and then an evidence export against it: the
/// manifest's signature with trusted keys, the file's SHA-256, and that the chain holds the
/// manifest's head (sequence and hash).
pub async fn verify(
    config_path: &Path,
    archives: &[PathBuf],
    jwks: Option<&Path>,
    export: Option<ExportCheck<'_>>,
) -> Result<ExitCode> {
    let chain = verify_chain(config_path, archives, jwks).await?;
    let Some(x) = export else {
        return Ok(chain);
    };
    if chain != ExitCode::SUCCESS {
        println!("export not checked: the chain is not whole");
        return Ok(chain);
    }
    let config = crate::cli::load_config(config_path)?;
    let keys = trusted_keys(&config, jwks)?;
    let manifest_path = x.manifest.map_or_else(
        || {
            let mut n = x.file.as_os_str().to_owned();
            n.push(".manifest.jwt");
            PathBuf::from(n)
        },
        Path::to_path_buf,
    );
    let token = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let claims = match hourglass_tokens::verify_own(token.trim(), &keys) {
        Ok(c) if c["typ"] == "hourglass-export" => c,
        Ok(_) => {
            println!(
                "export BROKEN: {} is not an export's manifest",
                manifest_path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            println!(
                "export BROKEN: the manifest's signature: {e} (a key retired since must come from a saved JWKS: --jwks)"
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let body = std::fs::read(x.file).with_context(|| format!("reading {}", x.file.display()))?;
    let digest = hex::encode(Sha256::digest(&body));
    if claims["sha256"].as_str() != Some(digest.as_str()) {
        println!(
            "export BROKEN: {} is not the file the manifest signed (SHA-256 {digest})",
            x.file.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let (Some(seq), Some(hash)) = (claims["head_seq"].as_u64(), claims["head_hash"].as_str())
    else {
        println!("export BROKEN: the manifest names no chain head");
        return Ok(ExitCode::FAILURE);
    };
    let found = chain_hash_at(&config, archives, seq).await?;
    match found {
        Some(h) if h == hash => {
            println!(
                "export {} ok: {} rows, {} to {}, SHA-256 {digest}, signed; its head (sequence {seq}, hash {hash}) is in the verified chain",
                x.file.display(),
                claims["rows"],
                claims["from"].as_str().unwrap_or("?"),
                claims["to"].as_str().unwrap_or("?"),
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(h) => {
            println!(
                "export BROKEN: the chain's event {seq} has hash {h}, not the manifest's {hash}"
            );
            Ok(ExitCode::FAILURE)
        }
        None => {
            println!(
                "export not checked: event {seq} is neither live nor in the archives given (--archive)"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The hash of event `seq`, from the live store or the archives (both already verified).
async fn chain_hash_at(
    config: &hourglass_server::config::Config,
    archives: &[PathBuf],
    seq: u64,
) -> Result<Option<String>> {
    let store = hourglass_store::open_read_only(&config.store.url)
        .await
        .map_err(|e| anyhow::anyhow!("opening the store: {e:?}"))?;
    if let Some(e) = store
        .audit_after(seq.saturating_sub(1), 1)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .into_iter()
        .find(|e| e.seq == seq)
    {
        return Ok(Some(e.hash));
    }
    for path in archives {
        let f = std::fs::File::open(path)?;
        for line in std::io::BufReader::new(f).lines().skip(1) {
            let e: AuditEvent = serde_json::from_str(&line?)?;
            if e.seq == seq {
                return Ok(Some(e.hash));
            }
        }
    }
    Ok(None)
}

/// Checks the whole chain: the archives given, in order, then the live store from where they
/// end (which must be the store's checkpoint).
async fn verify_chain(
    config_path: &Path,
    archives: &[PathBuf],
    jwks: Option<&Path>,
) -> Result<ExitCode> {
    let config = crate::cli::load_config(config_path)?;
    let store = hourglass_store::open_read_only(&config.store.url)
        .await
        .map_err(|e| anyhow::anyhow!("opening the store: {e:?}"))?;
    let checkpoint = store
        .audit_checkpoint()
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    if archives.is_empty() {
        let (v, broken) = hourglass_core::store::verify_chain(store.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("reading the audit log: {e:?}"))?;
        if let Some(b) = broken {
            println!(
                "audit chain BROKEN at sequence {}: {} ({} events verified before it)",
                b.seq,
                b.reason,
                v.checked()
            );
            return Ok(ExitCode::FAILURE);
        }
        match checkpoint {
            Some(c) => println!(
                "audit chain ok: {} live events after the archived {}..{} (hash {}), head {}; give the archives (--archive) to check those too",
                v.checked(),
                1,
                c.through_seq,
                c.through_hash,
                v.head_hash()
            ),
            None => println!(
                "audit chain ok: {} events, head {}",
                v.checked(),
                v.head_hash()
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let keys = trusted_keys(&config, jwks)?;
    let mut v = ChainVerifier::default();
    let mut archived = 0;
    for path in archives {
        match check_archive(path, &mut v, &keys) {
            Ok(c) => {
                println!(
                    "archive {} ok: events {}..{} ({}), last hash {}; {}",
                    path.display(),
                    c.first_seq,
                    c.through_seq,
                    c.events,
                    c.through_hash,
                    c.signed
                );
                archived += c.events;
            }
            Err(e) => {
                println!("audit chain BROKEN: {e:#}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    match &checkpoint {
        Some(c) if c.through_seq + 1 == v.next_seq() && c.through_hash == v.head_hash() => {}
        Some(c) => {
            println!(
                "audit chain BROKEN: the archives end at {} but the store's checkpoint is {} (hash {}); give every archive, oldest first",
                v.next_seq() - 1,
                c.through_seq,
                c.through_hash
            );
            return Ok(ExitCode::FAILURE);
        }
        None => {
            println!(
                "audit chain BROKEN: the store has no checkpoint, so these archives are not its past"
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    // The live chain, and the checkpoint's own `audit.archived` event in it.
    let (v, broken) = hourglass_core::store::verify_live(store.as_ref(), v, checkpoint.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("reading the audit log: {e:?}"))?;
    if let Some(b) = broken {
        println!("audit chain BROKEN at sequence {}: {}", b.seq, b.reason);
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "audit chain ok: {} events ({archived} archived, {} live), head {}",
        v.checked(),
        v.checked() - archived,
        v.head_hash()
    );
    Ok(ExitCode::SUCCESS)
}
