//! Hourglass connectors: one module per kind of target.
//!
//! Every connector implements [`hourglass_core::connector::Connector`]: idempotent operations
//! keyed by the grant id, called only by workers from persisted jobs.

pub mod aws;
mod db;
pub mod exec;
pub mod github;
pub mod idp;
pub mod mysql;
pub mod outbound;
pub mod postgres;
pub mod redis;
mod rest;
pub mod secret;
pub mod ssh;
#[cfg(test)]
mod testutil;
pub mod token;
pub mod webhook;

pub use aws::{AwsConfig, AwsConnector};
pub use exec::{ExecConfig, ExecConnector};
pub use github::{GithubConfig, GithubConnector};
pub use idp::{EntraConfig, GoogleConfig, GroupConnector, OktaConfig};
pub use mysql::{MysqlConfig, MysqlConnector};
pub use postgres::{PostgresConfig, PostgresConnector};
pub use redis::{RedisConfig, RedisConnector};
pub use ssh::{SshConfig, SshConnector};
pub use token::TokenConnector;
pub use webhook::{WebhookConfig, WebhookConnector};
