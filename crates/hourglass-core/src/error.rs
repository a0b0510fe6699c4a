//! The one error type of the core. Every variant carries a stable machine-readable `code`
//! (`request.duration_exceeds_max`) that the server maps to HTTP status and problem+json, and,
//! for bad input, the offending field. Messages are safe to show to clients: internal detail
//! (SQL text, connector output) goes to the log through `Internal`, whose text is never sent.

use std::fmt;

/// Result with the core error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is malformed or out of bounds; nothing was changed.
    #[error("{message}")]
    Invalid {
        code: &'static str,
        field: &'static str,
        message: String,
    },
    /// The named object does not exist (or the caller may not know that it does).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The caller is authenticated but not allowed to do this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// The object is not in a state that allows this (a second approval, a cancelled request).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A quota is used up: at most so many grants at once, or requests an hour.
    #[error("{message}")]
    Limited { code: &'static str, message: String },
    /// A system Hourglass asks before deciding (a ticket system) did not answer; nothing was
    /// changed and the caller may retry. The message names the system, never a credential.
    #[error("{message}")]
    Upstream { code: &'static str, message: String },
    /// A concurrent writer changed a row this commit expected unchanged. Engines retry.
    #[error("concurrent modification")]
    StoreConflict,
    /// A dependency (the store) cannot be reached now; the caller may retry.
    #[error("service unavailable")]
    Unavailable(String),
    /// A bug or an unexpected fault. The text is for the log only.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    pub fn invalid(code: &'static str, field: &'static str, message: impl fmt::Display) -> Self {
        Error::Invalid {
            code,
            field,
            message: message.to_string(),
        }
    }
    pub fn not_found(code: &'static str, message: impl fmt::Display) -> Self {
        Error::NotFound {
            code,
            message: message.to_string(),
        }
    }
    pub fn forbidden(code: &'static str, message: impl fmt::Display) -> Self {
        Error::Forbidden {
            code,
            message: message.to_string(),
        }
    }
    pub fn conflict(code: &'static str, message: impl fmt::Display) -> Self {
        Error::Conflict {
            code,
            message: message.to_string(),
        }
    }
    pub fn limited(code: &'static str, message: impl fmt::Display) -> Self {
        Error::Limited {
            code,
            message: message.to_string(),
        }
    }
    pub fn upstream(code: &'static str, message: impl fmt::Display) -> Self {
        Error::Upstream {
            code,
            message: message.to_string(),
        }
    }
    pub fn internal(message: impl fmt::Display) -> Self {
        Error::Internal(message.to_string())
    }

    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid { code, .. }
            | Error::NotFound { code, .. }
            | Error::Forbidden { code, .. }
            | Error::Conflict { code, .. }
            | Error::Limited { code, .. }
            | Error::Upstream { code, .. } => code,
            Error::StoreConflict => "store.conflict",
            Error::Unavailable(_) => "service.unavailable",
            Error::Internal(_) => "internal",
        }
    }
}
