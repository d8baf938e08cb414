//! The manual: long-form documentation, one chapter per module (no code lives here).
//!
//! Read them in order the first time:
//!
//! 1. [`threat_model`]: what the library promises, what it assumes, what it does not do.
//! 2. [`validation`]: every step of `validate`, in the order the code runs it.
//! 3. [`revocation`]: selectors, cascades, rotation grace, races, the revocation feed.
//! 4. [`usage`]: coalesced usage tracking and what it means for idle timeouts.
//! 5. [`audit_chain`]: the audit trail, its hash chain, truncation and export.
//! 6. [`defaults`]: every default on one page, and where to change it.
//! 7. [`implementing_a_store`]: the [`TokenStore`](crate::TokenStore) contract and a complete
//!    store over a `HashMap`.

#[doc = include_str!("threat_model.md")]
pub mod threat_model {}

#[doc = include_str!("validation.md")]
pub mod validation {}

#[doc = include_str!("revocation.md")]
pub mod revocation {}

#[doc = include_str!("usage.md")]
pub mod usage {}

#[doc = include_str!("audit_chain.md")]
pub mod audit_chain {}

#[doc = include_str!("defaults.md")]
pub mod defaults {}

#[doc = include_str!("implementing_a_store.md")]
pub mod implementing_a_store {}
