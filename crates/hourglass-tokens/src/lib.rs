//! Hourglass workload identity: the OIDC issuers whose identity tokens workloads exchange
//! ([`issuer`]), and the Ed25519 keys that sign the access tokens Hourglass issues
//! ([`signer`]). No clock is read here: every check takes the caller's time.

pub mod dev;
pub mod issuer;
pub mod signer;

pub use dev::DevIssuer;
pub use issuer::{
    IssuerSpec, Issuers, JwksSource, MayAct, Purpose, Refusal, Rule, Verified, parse_algorithm,
};
pub use signer::{Rotation, Signer, verify_own};
