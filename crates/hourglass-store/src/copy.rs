//! `hourglass store copy`: moves everything from one store to another (SQLite to PostgreSQL, or
//! back), row for row, and verifies the audit chain on arrival.
//!
//! The destination must be empty (freshly migrated). Rows are copied table by table in the order
//! their references need, in batches of one transaction each; an extension's reference to the
//! grant it extends is set once the grants are there. The audit events keep their sequence
//! numbers and hashes, so the copied chain is the same chain: it is walked and checked on
//! arrival, and its head must equal the source's. Checkpoints of archived events are copied
//! too, and both chains are walked from the latest one. A copy that fails part-way leaves a partial
//! destination, which the next attempt refuses (it is not empty): drop it and copy again.

use std::borrow::Cow;

use hourglass_core::{
    Error, Result,
    store::{Store, verify_chain},
};

use crate::{
    PgStore, PoolOptions, SqliteStore, is_postgres, is_sqlite,
    ledger::{Backend, SqlStore},
    rows::{Cols, get},
    sql::{Step, Stmt, Val, Wakes, stmt},
    unsupported,
};

#[derive(Clone, Copy)]
enum Ty {
    Text,
    Int,
    Bool,
}
use Ty::{Bool, Int, Text};

struct Table {
    name: &'static str,
    /// The ordering column(s) for paging.
    order: &'static str,
    cols: &'static [(&'static str, Ty)],
}

/// Every table, in the order their references need. `requests.extends` is copied afterwards.
const TABLES: &[Table] = &[
    Table {
        name: "directory",
        order: "kind, id",
        cols: &[
            ("kind", Text),
            ("id", Text),
            ("name", Text),
            ("name_key", Text),
            ("external_id", Text),
            ("principal", Text),
            ("manager_id", Text),
            ("resource", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("version", Int),
        ],
    },
    Table {
        name: "identities",
        order: "id",
        cols: &[
            ("id", Text),
            ("kind", Text),
            ("owner", Text),
            ("groups", Text),
            ("status", Text),
            ("status_reason", Text),
            ("origin", Text),
            ("created_at", Int),
            ("last_seen_at", Int),
            ("status_set_by", Text),
            ("sign_in_subject", Text),
            ("manager", Text),
            ("department", Text),
            ("version", Int),
        ],
    },
    Table {
        name: "api_keys",
        order: "id",
        cols: &[
            ("id", Text),
            ("principal", Text),
            ("prefix", Text),
            ("hash", Text),
            ("origin", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("revoked_at", Int),
            ("last_used_at", Int),
            ("replaced_by", Text),
            ("version", Int),
        ],
    },
    Table {
        name: "sessions",
        order: "id_hash",
        cols: &[
            ("id_hash", Text),
            ("principal", Text),
            ("mfa", Bool),
            ("via", Text),
            ("created_at", Int),
            ("last_seen_at", Int),
            ("expires_at", Int),
        ],
    },
    Table {
        name: "token_uses",
        order: "issuer, jti",
        cols: &[("issuer", Text), ("jti", Text), ("expires_at", Int)],
    },
    Table {
        name: "requests",
        order: "id",
        cols: &[
            ("id", Text),
            ("requester", Text),
            ("access_kind", Text),
            ("entitlement", Text),
            ("duration_secs", Int),
            ("reason", Text),
            ("ticket", Text),
            ("state", Text),
            ("state_reason", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("decide_by", Int),
            ("policy_hash", Text),
            ("grant_id", Text),
            ("public_key", Text),
            ("break_glass", Bool),
            ("mfa", Bool),
            ("source_ip", Text),
            ("starts_at", Int),
            ("actor", Text),
            ("exchange", Text),
            ("ticket_facts", Text),
            ("task", Text),
            ("version", Int),
        ],
    },
    Table {
        name: "approvals",
        order: "request_id, approver",
        cols: &[
            ("request_id", Text),
            ("approver", Text),
            ("verdict", Text),
            ("via", Text),
            ("policy_ids", Text),
            ("policy_hash", Text),
            ("comment", Text),
            ("at", Int),
        ],
    },
    Table {
        name: "grants",
        order: "id",
        cols: &[
            ("id", Text),
            ("request_id", Text),
            ("principal", Text),
            ("entitlement", Text),
            ("target", Text),
            ("state", Text),
            ("starts_at", Int),
            ("expires_at", Int),
            ("created_at", Int),
            ("activated_at", Int),
            ("revoke_due_at", Int),
            ("ended_at", Int),
            ("end_reason", Text),
            ("handle", Text),
            ("credential_fingerprint", Text),
            ("public_key", Text),
            ("break_glass", Bool),
            ("version", Int),
        ],
    },
    Table {
        name: "policy_in_force",
        order: "id",
        cols: &[
            ("id", Int),
            ("hash", Text),
            ("set_at", Int),
            ("set_by", Text),
        ],
    },
    Table {
        name: "sealed_credentials",
        order: "grant_id",
        cols: &[
            ("grant_id", Text),
            ("holder", Text),
            ("expires_at", Int),
            ("sealed", Text),
        ],
    },
    Table {
        name: "grant_jobs",
        order: "grant_id",
        cols: &[
            ("grant_id", Text),
            ("action", Text),
            ("run_at", Int),
            ("attempts", Int),
            ("last_error", Text),
            ("lease_owner", Text),
            ("lease_token", Text),
            ("lease_until", Int),
            ("due_at", Int),
        ],
    },
    Table {
        name: "reviews",
        order: "id",
        cols: &[
            ("id", Text),
            ("request_id", Text),
            ("grant_id", Text),
            ("principal", Text),
            ("access_kind", Text),
            ("entitlement", Text),
            ("reason", Text),
            ("state", Text),
            ("opened_at", Int),
            ("closed_at", Int),
            ("closed_by", Text),
            ("comment", Text),
            ("version", Int),
        ],
    },
    Table {
        name: "campaigns",
        order: "id",
        cols: &[
            ("id", Text),
            ("name", Text),
            ("scope", Text),
            ("reviewers", Text),
            ("default_action", Text),
            ("state", Text),
            ("created_by", Text),
            ("created_at", Int),
            ("deadline", Int),
            ("remind_at", Int),
            ("reminded", Bool),
            ("closed_at", Int),
            ("items", Int),
            ("version", Int),
        ],
    },
    Table {
        name: "campaign_items",
        order: "id",
        cols: &[
            ("id", Text),
            ("campaign", Text),
            ("kind", Text),
            ("principal", Text),
            ("access", Text),
            ("target", Text),
            ("holder", Text),
            ("privilege", Text),
            ("reviewer", Text),
            ("decision", Text),
            ("decided_by", Text),
            ("decided_at", Int),
            ("note", Text),
            ("work", Text),
            ("run_at", Int),
            ("attempts", Int),
            ("last_error", Text),
            ("version", Int),
        ],
    },
    Table {
        name: "eligibility",
        order: "principal, access",
        cols: &[
            ("principal", Text),
            ("access", Text),
            ("effect", Text),
            ("item", Text),
            ("at", Int),
        ],
    },
    Table {
        name: "tickets",
        order: "source, reference",
        cols: &[
            ("source", Text),
            ("reference", Text),
            ("ticket", Text),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "notifications",
        order: "id",
        cols: &[
            ("id", Text),
            ("notifier", Text),
            ("dedup_key", Text),
            ("event", Text),
            ("subject", Text),
            ("message", Text),
            ("state", Text),
            ("run_at", Int),
            ("due_at", Int),
            ("attempts", Int),
            ("last_error", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("lease_owner", Text),
            ("lease_token", Text),
            ("lease_until", Int),
            ("receipt", Text),
        ],
    },
    // Before the events: the checkpoints of archived events, where the live chain resumes.
    Table {
        name: "audit_archives",
        order: "through_seq",
        cols: &[
            ("through_seq", Int),
            ("first_seq", Int),
            ("through_hash", Text),
            ("archived_at", Int),
            ("events_sha256", Text),
        ],
    },
    Table {
        name: "audit_events",
        order: "seq",
        cols: &[
            ("seq", Int),
            ("at", Int),
            ("actor", Text),
            ("action", Text),
            ("subject", Text),
            ("details", Text),
            ("prev_hash", Text),
            ("hash", Text),
        ],
    },
];

/// Rows per read and per destination transaction.
const BATCH: i64 = 500;

/// What a copy moved, and the chain it verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows per table, in copy order.
    pub tables: Vec<(String, u64)>,
    /// Audit events verified at the destination.
    pub audit_events: u64,
    /// The hash of the last audit event (equal at both ends).
    pub head_hash: String,
}

/// Copies the store at `from` into the empty store at `to` (migrated first), then verifies the
/// copied audit chain against the source's.
pub async fn copy(from: &str, to: &str) -> Result<CopyReport> {
    let opts = PoolOptions {
        max_connections: 2,
        ..PoolOptions::default()
    };
    macro_rules! open_dst {
        ($src:expr) => {
            if is_sqlite(to) {
                run(&$src, &SqliteStore::open(to).await?).await
            } else if is_postgres(to) {
                run(&$src, &PgStore::open(to, &opts).await?).await
            } else {
                Err(unsupported(to))
            }
        };
    }
    if is_sqlite(from) {
        let src = SqliteStore::open_read_only(from).await?;
        open_dst!(src)
    } else if is_postgres(from) {
        let src = PgStore::open(
            from,
            &PoolOptions {
                migrate: false,
                ..opts.clone()
            },
        )
        .await?;
        open_dst!(src)
    } else {
        Err(unsupported(from))
    }
}

fn value(row: &impl Cols, col: &str, ty: Ty) -> Result<Val> {
    Ok(match ty {
        Text => Val::Text(get(row, col)?),
        Int => Val::Int(get(row, col)?),
        Bool => Val::Bool(get(row, col)?),
    })
}

async fn run<S: Backend, D: Backend>(src: &SqlStore<S>, dst: &SqlStore<D>) -> Result<CopyReport> {
    for t in TABLES {
        let rows = dst
            .0
            .all(Stmt {
                sql: Cow::Owned(format!("SELECT 1 AS one FROM {} LIMIT 1", t.name)),
                args: Vec::new(),
            })
            .await?;
        if !rows.is_empty() {
            return Err(Error::internal(format!(
                "the destination is not empty (table {} has rows): copy into a new, empty database",
                t.name
            )));
        }
    }
    let mut tables = Vec::new();
    for t in TABLES {
        let names: Vec<&str> = t.cols.iter().map(|(c, _)| *c).collect();
        let select = format!(
            "SELECT {} FROM {} ORDER BY {} LIMIT $1 OFFSET $2",
            names.join(", "),
            t.name,
            t.order
        );
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            t.name,
            names.join(", "),
            placeholders.join(", ")
        );
        let mut copied = 0u64;
        loop {
            let rows = src
                .0
                .all(Stmt {
                    sql: Cow::Owned(select.clone()),
                    args: vec![Val::Int(Some(BATCH)), Val::from(cap(copied))],
                })
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut steps = Vec::with_capacity(rows.len());
            for row in &rows {
                let args = t
                    .cols
                    .iter()
                    .map(|(c, ty)| value(row, c, *ty))
                    .collect::<Result<Vec<_>>>()?;
                steps.push(Step::one(Stmt {
                    sql: Cow::Owned(insert.clone()),
                    args,
                }));
            }
            copied += steps.len() as u64;
            dst.0.write(steps, Vec::new(), Wakes::default()).await?;
        }
        tables.push((t.name.to_owned(), copied));
    }
    // The grants are there now: point extensions at the grants they extend.
    let mut offset = 0u64;
    loop {
        let rows = src
            .0
            .all(stmt!(
                "SELECT id, extends FROM requests WHERE extends IS NOT NULL ORDER BY id LIMIT $1 OFFSET $2",
                BATCH,
                cap(offset),
            ))
            .await?;
        if rows.is_empty() {
            break;
        }
        offset += rows.len() as u64;
        let steps = rows
            .iter()
            .map(|r| {
                Ok(Step::one(stmt!(
                    "UPDATE requests SET extends = $1 WHERE id = $2",
                    get::<String>(r, "extends")?,
                    get::<String>(r, "id")?,
                )))
            })
            .collect::<Result<Vec<_>>>()?;
        dst.0.write(steps, Vec::new(), Wakes::default()).await?;
    }
    dst.0.imported().await?;
    verify(src, dst, tables).await
}

fn cap(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Walks both chains: the destination's must verify, and end where the source's ends.
async fn verify<S: Backend, D: Backend>(
    src: &SqlStore<S>,
    dst: &SqlStore<D>,
    tables: Vec<(String, u64)>,
) -> Result<CopyReport> {
    let (at_dst, broken) = verify_chain(dst).await?;
    if let Some(b) = broken {
        return Err(Error::internal(format!(
            "the copied audit chain does not verify at sequence {}: {}",
            b.seq, b.reason
        )));
    }
    // Both resume after their latest checkpoint (copied with the rest). The source is read as
    // it is: a break there stops its walk, and shows as a different head below.
    let (at_src, _) = verify_chain(src).await?;
    if at_src.checked() != at_dst.checked() || at_src.head_hash() != at_dst.head_hash() {
        return Err(Error::internal(format!(
            "the copied audit chain differs from the source's: {} events ending {} there, {} ending {} here",
            at_src.checked(),
            at_src.head_hash(),
            at_dst.checked(),
            at_dst.head_hash()
        )));
    }
    dst.ping().await?;
    Ok(CopyReport {
        tables,
        audit_events: at_dst.checked(),
        head_hash: at_dst.head_hash().to_owned(),
    })
}
