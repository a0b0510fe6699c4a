//! Hourglass's policy layer, on Cedar.
//!
//! It loads `*.cedar` files, validates them strictly against [`SCHEMA`], and answers the
//! engine's questions through [`hourglass_core::policy::PolicyDecider`], naming the policies that
//! determined each answer and the hash of the set.
//!
//! Cedar evaluates every policy it is given, so its cost grows with the set. [`PolicySetEngine`]
//! indexes policies by scope (action, and the resource they name) and hands Cedar only the slice
//! that can apply to a question; a policy outside the slice cannot match it, so the answer is the
//! one the whole set would give.

pub mod cases;
mod entities;
mod set;

pub use set::{BareInputs, PolicyError, PolicySetEngine, PolicySource};

/// The Cedar schema that policies are validated against.
pub const SCHEMA: &str = include_str!("hourglass.cedarschema");

#[cfg(test)]
mod tests;
