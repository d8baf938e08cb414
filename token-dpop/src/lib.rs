//! # token-dpop
//!
//! DPoP proof verification (RFC 9449), JWK thumbprints (RFC 7638) and stateless server nonces,
//! for sender-constrained API tokens: a token bound to a client key (`cnf.jkt`) is accepted only
//! with a fresh proof signed by that key, so a stolen token alone is useless.
//!
//! Pure computation: no I/O, no global crypto provider (RustCrypto's `p256`, `ed25519-dalek`,
//! `rsa` and `sha2` are called directly), no `unsafe`.
//!
//! ```
//! use token_dpop::{DpopConfig, DpopError, DpopVerifier};
//!
//! let verifier = DpopVerifier::new(DpopConfig::new());
//! let now = time::OffsetDateTime::now_utc();
//! # let proof = "e30.e30.AA"; let token = "acme_live_...";
//! // `htu` comes from the configured public base URL plus the request path.
//! match verifier.verify(proof, "GET", "https://api.example/widgets", Some(token), now) {
//!     Ok(_verified) => {
//!         // 1. Claim `_verified.jti` once across all instances (the store's replay table).
//!         // 2. Require `_verified.jkt` == the token's `cnf.jkt`.
//!     }
//!     Err(err) => {
//!         // `WWW-Authenticate: DPoP algs="ES256 EdDSA PS256 RS256", error="invalid_dpop_proof"`
//!         let _challenge = format!(
//!             "DPoP algs=\"{}\", error=\"{}\"",
//!             verifier.algorithms_header(),
//!             err.error_code()
//!         );
//!         # assert_eq!(err, DpopError::WrongType);
//!     }
//! }
//! ```
//!
//! ## What is checked, in which order
//!
//! [`DpopVerifier::verify`] runs these checks in this order and returns the first failure, each
//! as its own [`DpopError`] variant. Sizes are bounded before anything is decoded, and nothing
//! expensive (key parsing, signature) runs before the cheap structural checks.
//!
//! 1. The proof is at most [`DpopConfig::max_proof_bytes`] long (default 8 KiB):
//!    [`TooLarge`](DpopError::TooLarge).
//! 2. It is a compact JWS: exactly three non-empty base64url parts; the header part is at most
//!    [`MAX_HEADER_BYTES`] long ([`TooLarge`](DpopError::TooLarge)), else
//!    [`Malformed`](DpopError::Malformed).
//! 3. The header decodes (base64url without padding, canonical) to a JSON object with no
//!    duplicated members and no `crit`, and the signature part decodes:
//!    [`Malformed`](DpopError::Malformed).
//! 4. `typ` is `dpop+jwt` (media-type rules: case-insensitive, optional `application/`):
//!    [`WrongType`](DpopError::WrongType).
//! 5. `alg` is one of the configured algorithms; `none` and MACs (`HS256`, ...) cannot be
//!    configured, so they always fail: [`AlgorithmNotAllowed`](DpopError::AlgorithmNotAllowed).
//! 6. `jwk` is a JSON object: [`MissingJwk`](DpopError::MissingJwk).
//! 7. `jwk` has no private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`):
//!    [`PrivateKeyInJwk`](DpopError::PrivateKeyInJwk).
//! 8. `jwk` is a valid public key for `alg`: EC P-256 for ES256, OKP Ed25519 for EdDSA, RSA with
//!    a 2048 to 4096-bit modulus for PS256 and RS256: [`UnsupportedKey`](DpopError::UnsupportedKey).
//! 9. The claims decode to a JSON object; `jti` is a non-empty string of at most
//!    [`MAX_JTI_BYTES`] ([`MissingJti`](DpopError::MissingJti)); `htm` and `htu` are strings and
//!    `iat` a number ([`Malformed`](DpopError::Malformed)).
//! 10. The signature verifies over `header.claims` with the `jwk`:
//!     [`BadSignature`](DpopError::BadSignature). (ES256: `r || s`; EdDSA: strict Ed25519;
//!     PS256: PSS with SHA-256 and a 32-byte salt; RS256: PKCS #1 v1.5 with SHA-256.)
//! 11. `htm` equals the request method, exactly: [`MethodMismatch`](DpopError::MethodMismatch).
//! 12. `htu` equals the request URI after RFC 3986 normalization of both (scheme and host
//!     lower-cased, default port and empty port removed, empty path as `/`, percent-encoding
//!     normalized, dot segments removed), ignoring query and fragment:
//!     [`UriMismatch`](DpopError::UriMismatch) (or
//!     [`InvalidRequestUri`](DpopError::InvalidRequestUri) when the server's own URI is not an
//!     absolute `http`/`https` URI).
//! 13. When server nonces are configured, `nonce` is present
//!     ([`NonceRequired`](DpopError::NonceRequired)) and was made with the key in the current or
//!     the previous window ([`NonceInvalid`](DpopError::NonceInvalid)). Both answer
//!     `use_dpop_nonce` ([`DpopError::error_code`]): send [`DpopVerifier::fresh_nonce`] in a
//!     `DPoP-Nonce` header.
//! 14. `iat` is within the window of `now` (default ±60 s): not before `now - window`
//!     ([`IssuedTooEarly`](DpopError::IssuedTooEarly)), not after `now + window`
//!     ([`IssuedTooLate`](DpopError::IssuedTooLate)).
//! 15. When the request carries an access token, `ath` is present
//!     ([`MissingAth`](DpopError::MissingAth)) and equals base64url(SHA-256(token))
//!     ([`AthMismatch`](DpopError::AthMismatch)).
//!
//! ## What the caller must still do
//!
//! - **Replay: claim the `jti` once, across every instance.** This crate keeps no state, so
//!   `verify` accepts the same proof again and again. The caller must record
//!   [`VerifiedProof::jti`] with insert-if-absent in storage that all instances share, keep it
//!   until [`VerifiedProof::jti_expires_at`], and refuse the request if the `jti` was already
//!   there. (RFC 9449 section 11.1.)
//! - **Binding: compare [`VerifiedProof::jkt`] with the access token's `cnf.jkt`.** A valid proof
//!   by some key says nothing about the token; refuse a bound token whose binding differs, a
//!   bound token sent as `Bearer`, and an unbound token sent with the `DPoP` scheme.
//! - **Build `htu` from a configured public base URL** plus the request path. Never take the
//!   scheme and host from the request's `Host` header alone: a client chooses that header, so it
//!   could make a proof made for another server match.
//! - **Synchronize clocks** of all instances: the `iat` window and the nonce windows are read
//!   from the `now` each instance passes.
//! - Send one `DPoP` header per request, and refuse requests with more (RFC 9449 section 4.3,
//!   check 1): the verifier sees one proof string.
//!
//! ## The client side
//!
//! [`client::ProofKey`] makes proofs (ES256 or EdDSA) for example programs, tests and Rust
//! clients: generate a key, bind tokens to [`client::ProofKey::thumbprint`], and send
//! [`client::ProofKey::proof`] in the `DPoP` header of each request.
//!
//! ## Server nonces
//!
//! With [`DpopConfig::nonces`], proofs must carry a `nonce` the server handed out
//! ([`DpopVerifier::fresh_nonce`]). Nonces are stateless (see [`NonceKey`]): a keyed BLAKE3 tag
//! over the index of a time window (default 5 minutes, [`DpopConfig::nonce_window`]), accepted
//! in that window and the next, by every instance configured with the same key. A nonce in its
//! second window sets [`VerifiedProof::nonce_rollover_soon`]: answer with a fresh one.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
mod config;
mod error;
mod htu;
mod jwk;
mod nonce;
mod verify;

pub use config::{
    Algorithm, DEFAULT_IAT_WINDOW, DEFAULT_MAX_PROOF_BYTES, DEFAULT_NONCE_WINDOW, DpopConfig,
    MAX_HEADER_BYTES,
};
pub use error::{DpopError, ParseThumbprintError};
pub use jwk::{Thumbprint, thumbprint};
pub use nonce::NonceKey;
pub use verify::{DpopVerifier, MAX_JTI_BYTES, VerifiedProof};
