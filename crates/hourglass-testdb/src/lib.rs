//! Dev-only: each test gets its own freshly created database on the local servers.
//!
//! PostgreSQL: `HOURGLASS_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! MariaDB/MySQL: `HOURGLASS_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/mysql`).
//!
//! When a server is unreachable the helpers print why and return `None`, so the test can skip;
//! when `CI` is set they panic instead, so CI never passes by skipping. The database is dropped
//! when the handle is dropped.
#![allow(clippy::panic, clippy::expect_used)]

use sqlx::{AssertSqlSafe, Connection};

/// A database created for one test.
pub struct TestDb {
    /// URL of the new database, as the server's administrator.
    pub url: String,
    /// The database name (`hgtest_…`).
    pub name: String,
    /// A name prefix unique to this test, for roles and users that live server-wide.
    pub prefix: String,
    admin_url: String,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Postgres,
    Mysql,
}

fn unique() -> String {
    let mut b = [0u8; 5];
    getrandom::fill(&mut b).expect("the OS random source works");
    hex::encode(b)
}

fn unreachable(what: &str, url: &str, e: &dyn std::fmt::Display) -> Option<TestDb> {
    if std::env::var_os("CI").is_some() {
        panic!("{what} at {url} is unreachable and CI is set: {e}");
    }
    eprintln!("SKIPPED: {what} at {url} is unreachable: {e}");
    None
}

/// Replaces the database part of a `scheme://auth@host:port/db?query` URL.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// A fresh PostgreSQL database, or `None` (with a printed reason) if the server is unreachable.
pub async fn postgres() -> Option<TestDb> {
    let admin_url = std::env::var("HOURGLASS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    create(Kind::Postgres, admin_url, "PostgreSQL").await
}

/// A fresh MariaDB/MySQL database, or `None` (with a printed reason) if the server is unreachable.
pub async fn mysql() -> Option<TestDb> {
    let admin_url = std::env::var("HOURGLASS_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".into());
    create(Kind::Mysql, admin_url, "MariaDB").await
}

async fn create(kind: Kind, admin_url: String, what: &str) -> Option<TestDb> {
    let id = unique();
    let name = format!("hgtest_{id}");
    let stmt = format!("CREATE DATABASE {name}");
    let result = match kind {
        Kind::Postgres => match sqlx::PgConnection::connect(&admin_url).await {
            Ok(mut c) => sqlx::query(AssertSqlSafe(stmt))
                .execute(&mut c)
                .await
                .map(drop),
            Err(e) => return unreachable(what, &admin_url, &e),
        },
        Kind::Mysql => match sqlx::MySqlConnection::connect(&admin_url).await {
            Ok(mut c) => sqlx::query(AssertSqlSafe(stmt))
                .execute(&mut c)
                .await
                .map(drop),
            Err(e) => return unreachable(what, &admin_url, &e),
        },
    };
    result.expect("CREATE DATABASE on the test server");
    Some(TestDb {
        url: with_database(&admin_url, &name),
        name,
        prefix: format!("hgt{id}_"),
        admin_url,
        kind,
    })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (kind, admin_url, name, prefix) = (
            self.kind,
            self.admin_url.clone(),
            self.name.clone(),
            self.prefix.clone(),
        );
        // Best effort, on a thread of its own: Drop cannot await, and the test's runtime may be
        // shutting down.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                match kind {
                    Kind::Postgres => {
                        if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url).await {
                            let stmt = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            let _ = sqlx::query(AssertSqlSafe(stmt)).execute(&mut c).await;
                            // Roles are cluster-wide: drop the ones this test named.
                            let roles: Vec<String> = sqlx::query_scalar(
                                "SELECT rolname FROM pg_roles
                                  WHERE starts_with(rolname, $1) OR starts_with(rolname, $2)",
                            )
                            .bind(&prefix)
                            .bind(&name)
                            .fetch_all(&mut c)
                            .await
                            .unwrap_or_default();
                            for r in roles {
                                let stmt = format!("DROP ROLE IF EXISTS \"{}\"", r.replace('"', "\"\""));
                                let _ = sqlx::query(AssertSqlSafe(stmt)).execute(&mut c).await;
                            }
                        }
                    }
                    Kind::Mysql => {
                        if let Ok(mut c) = sqlx::MySqlConnection::connect(&admin_url).await {
                            let stmt = format!("DROP DATABASE IF EXISTS {name}");
                            let _ = sqlx::query(AssertSqlSafe(stmt)).execute(&mut c).await;
                            // Users and roles are server-wide: drop the ones this test named.
                            let users: Vec<(String, String, String)> = sqlx::query_as(
                                "SELECT CAST(User AS CHAR), CAST(Host AS CHAR), CAST(is_role AS CHAR)
                                   FROM mysql.user
                                  WHERE LEFT(User, CHAR_LENGTH(?)) = ? OR LEFT(User, CHAR_LENGTH(?)) = ?",
                            )
                            .bind(&prefix)
                            .bind(&prefix)
                            .bind(&name)
                            .bind(&name)
                            .fetch_all(&mut c)
                            .await
                            .unwrap_or_default();
                            for (u, h, role) in users {
                                let u = u.replace('\'', "''");
                                let stmt = if role == "Y" {
                                    format!("DROP ROLE IF EXISTS '{u}'")
                                } else {
                                    format!("DROP USER IF EXISTS '{u}'@'{}'", h.replace('\'', "''"))
                                };
                                let _ = sqlx::query(AssertSqlSafe(stmt)).execute(&mut c).await;
                            }
                        }
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_replaced_and_query_kept() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("mysql://root@h:3306", "y"),
            "mysql://root@h:3306/y"
        );
    }
}
