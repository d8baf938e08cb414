//! One `pub async fn` per behaviour of the contract, each taking a [`Fixture`](crate::Fixture)
//! and panicking (failing the test) when the store or manager deviates. Every case is reachable
//! as `token_testkit::cases::<case_name>`, whichever topic file it lives in.
//!
//! # Layout
//!
//! One file per topic; a case lives where its behaviour is:
//!
//! | file             | pins                                                                   |
//! |------------------|------------------------------------------------------------------------|
//! | `binding.rs`     | DPoP key binding: proofs required, replays refused across managers  |
//! | `model.rs`       | random operation sequences against the reference model (`model`)    |
//! | `manage.rs`      | suspend and resume, updates that only narrow, metadata, allowlists   |
//! | `credits.rs`     | usage credits that refill once per period, rate limits on the token  |
//! | `validate.rs`    | secret, checksum, prefix, validity window, scopes, introspection       |
//! | `usage.rs`       | which validations count a use, flushing buffered usage                 |
//! | `revoke.rs`      | every selector, descendants, idempotence, refusal once revoked         |
//! | `derive.rs`      | a child never widens its parent; the store re-checks the parent        |
//! | `rotate.rs`      | the successor's identity and lifetime, grace, a single successor       |
//! | `policy.rs`      | TTL, expiry, scope-ceiling and live-token rules, also at rotation      |
//! | `keys.rs`        | hash-key rotation and retirement                                       |
//! | `list.rs`        | list filters and pagination, the stale-token report                    |
//! | `storage.rs`     | what is persisted: no secret, every field round-trips, duplicate ids   |
//! | `audit.rs`       | audit events, the hash chain, audit queries, export and sink           |
//! | `keyed_chain.rs` | the keyed audit chain: rewrites caught, key rotation, sealed checkpoint |
//! | `feed.rs`        | the revocation feed                                                    |
//! | `sweep.rs`       | retention sweeps: expiry, unused tokens, purge, audit truncation       |
//! | `concurrency.rs` | limits under concurrent validations, issues, rotations, sweeps, writes |
//! | `interleaving.rs`| two managers at once, random operations: the invariants every interleaving keeps |
//! | `races.rs`       | revocation wins races: in-flight issues, lagging clocks, rotated trees |
//!
//! Helpers several topics use are in `support.rs`; a helper one topic uses is in that topic's
//! file.
//!
//! # Adding a case
//!
//! Edit one file, the topic's: write the `pub async fn`, and add its name to the
//! `__conformance_<topic>` list macro at the top of that file. That list is the only one:
//! [`conformance_tests!`](crate::conformance_tests) joins the topic lists into one
//! `#[tokio::test]` per case (named after the case), and this module re-exports each listed case.
//! A case written but not listed is never re-exported, so the build reports it as dead code
//! (`clippy -D warnings` fails); a listed name without its function does not compile.
//!
//! A new topic is a new file plus one `mod`/re-export pair here and its list macro's name in
//! `conformance_tests!`.
//!
//! # Running the suite
//!
//! A store crate implements [`Fixture`](crate::Fixture) and expands the macro once, in
//! `tests/conformance.rs`; a failure names the behaviour:
//!
//! ```ignore
//! token_testkit::conformance_tests!(my_store_tests::Fixture::new());
//! ```
//!
//! A single case can also be called directly, e.g.
//! `token_testkit::cases::revoke_by_id(&fixture).await`.

#![allow(missing_docs)]

mod support;

mod audit;
mod binding;
mod concurrency;
mod credits;
mod derive;
mod feed;
mod interleaving;
mod keyed_chain;
mod keys;
mod list;
mod manage;
mod model;
mod policy;
mod races;
mod revoke;
mod rotate;
mod storage;
mod sweep;
mod usage;
mod validate;

/// Re-exports a topic's listed cases: the callback each topic's list macro is given here.
macro_rules! reexport {
    ($topic:ident; $($case:ident),* $(,)?) => {
        pub use self::$topic::{$($case),*};
    };
}

crate::__conformance_validate!([reexport] validate;);
crate::__conformance_usage!([reexport] usage;);
crate::__conformance_revoke!([reexport] revoke;);
crate::__conformance_derive!([reexport] derive;);
crate::__conformance_rotate!([reexport] rotate;);
crate::__conformance_policy!([reexport] policy;);
crate::__conformance_keys!([reexport] keys;);
crate::__conformance_keyed_chain!([reexport] keyed_chain;);
crate::__conformance_list!([reexport] list;);
crate::__conformance_storage!([reexport] storage;);
crate::__conformance_audit!([reexport] audit;);
crate::__conformance_feed!([reexport] feed;);
crate::__conformance_sweep!([reexport] sweep;);
crate::__conformance_concurrency!([reexport] concurrency;);
crate::__conformance_races!([reexport] races;);
crate::__conformance_manage!([reexport] manage;);
crate::__conformance_binding!([reexport] binding;);
crate::__conformance_credits!([reexport] credits;);
crate::__conformance_interleaving!([reexport] interleaving;);
crate::__conformance_model!([reexport] model;);
