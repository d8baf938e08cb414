//! What the verifier accepts: algorithms, the `iat` window, size limits, server nonces.

use std::fmt;
use std::time::Duration;

use crate::nonce::NonceKey;

/// A signature algorithm a DPoP proof may use.
///
/// Only asymmetric algorithms exist here, so `none` and MACs (`HS256`, ...) can never be
/// configured: a proof naming them is always refused with
/// [`DpopError::AlgorithmNotAllowed`](crate::DpopError::AlgorithmNotAllowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA with P-256 and SHA-256 (`ES256`, key type `EC`, curve `P-256`).
    Es256,
    /// Ed25519 (`EdDSA`, key type `OKP`, curve `Ed25519`).
    EdDsa,
    /// RSASSA-PSS with SHA-256, MGF1 with SHA-256 and a 32-byte salt (`PS256`, key type `RSA`).
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (`RS256`, key type `RSA`).
    Rs256,
}

impl Algorithm {
    /// Every algorithm, in the default order of the `algs` challenge parameter.
    pub const ALL: [Algorithm; 4] = [Self::Es256, Self::EdDsa, Self::Ps256, Self::Rs256];

    /// The JOSE name: `"ES256"`, `"EdDSA"`, `"PS256"` or `"RS256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Ps256 => "PS256",
            Self::Rs256 => "RS256",
        }
    }

    /// The algorithm with this JOSE name (compared exactly, as JOSE does), if it is supported.
    pub fn from_jose(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The default `iat` window: a proof is accepted while `|now - iat| <= 60 s`.
pub const DEFAULT_IAT_WINDOW: Duration = Duration::from_secs(60);
/// The default bound on a whole proof, in bytes, checked before any decoding.
pub const DEFAULT_MAX_PROOF_BYTES: usize = 8 * 1024;
/// The bound on a proof's encoded JOSE header, in bytes, checked before any decoding. It holds
/// the largest supported key (a 4096-bit RSA `jwk`) with room to spare.
pub const MAX_HEADER_BYTES: usize = 4 * 1024;
/// The default length of a server-nonce window: a nonce is accepted in the window it was made
/// in and the next one, so for between 5 and 10 minutes.
pub const DEFAULT_NONCE_WINDOW: Duration = Duration::from_secs(300);

/// What a [`DpopVerifier`](crate::DpopVerifier) accepts. Builder-style; start from
/// [`DpopConfig::new`].
///
/// Defaults: algorithms ES256, EdDSA, PS256 and RS256; `iat` within ±60 s of the server's clock;
/// proofs of at most 8 KiB; no server nonces.
///
/// ```
/// use std::time::Duration;
/// use token_dpop::{Algorithm, DpopConfig, DpopVerifier, NonceKey};
///
/// let config = DpopConfig::new()
///     .algorithms([Algorithm::Es256, Algorithm::EdDsa])
///     .iat_window(Duration::from_secs(30))
///     .max_proof_bytes(4096)
///     // Every instance that shares this key accepts the nonces the others hand out.
///     .nonces(NonceKey::new([7; 32]));
/// let verifier = DpopVerifier::new(config);
/// assert_eq!(verifier.algorithms_header(), "ES256 EdDSA");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DpopConfig {
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) iat_window: Duration,
    pub(crate) max_proof_bytes: usize,
    pub(crate) nonce_key: Option<NonceKey>,
    pub(crate) nonce_window: Duration,
}

impl DpopConfig {
    /// The defaults: ES256, EdDSA, PS256 and RS256; `iat` window ±60 s; proofs up to 8 KiB; no
    /// server nonces.
    pub fn new() -> Self {
        Self {
            algorithms: Algorithm::ALL.to_vec(),
            iat_window: DEFAULT_IAT_WINDOW,
            max_proof_bytes: DEFAULT_MAX_PROOF_BYTES,
            nonce_key: None,
            nonce_window: DEFAULT_NONCE_WINDOW,
        }
    }

    /// Accept exactly these algorithms, advertised in this order (duplicates are dropped). An
    /// empty set refuses every proof.
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms.clear();
        for alg in algs {
            if !self.algorithms.contains(&alg) {
                self.algorithms.push(alg);
            }
        }
        self
    }

    /// Accept a proof while `|now - iat| <= window` (the allowance for clock skew in both
    /// directions). The caller must remember a proof's `jti` at least this long after its
    /// `iat` (see [`VerifiedProof::jti_expires_at`](crate::VerifiedProof::jti_expires_at)).
    pub fn iat_window(mut self, window: Duration) -> Self {
        self.iat_window = window;
        self
    }

    /// Refuse proofs longer than this many bytes before decoding anything (default 8 KiB).
    pub fn max_proof_bytes(mut self, bytes: usize) -> Self {
        self.max_proof_bytes = bytes;
        self
    }

    /// Require server nonces (RFC 9449 section 8) made with this key. Nonces are stateless: a
    /// keyed BLAKE3 tag over a time-window index, accepted in the window they were made in and
    /// the next one, by every instance configured with the same key.
    pub fn nonces(mut self, key: NonceKey) -> Self {
        self.nonce_key = Some(key);
        self
    }

    /// The length of a nonce window (default 5 minutes; at least 1 second). A nonce is accepted
    /// for one to two windows; [`VerifiedProof::nonce_rollover_soon`](crate::VerifiedProof)
    /// asks the server to hand out a fresh one during its last.
    pub fn nonce_window(mut self, window: Duration) -> Self {
        self.nonce_window = window.max(Duration::from_secs(1));
        self
    }
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self::new()
    }
}
