//! Why a proof was refused: one variant per check.

/// Why [`DpopVerifier::verify`](crate::DpopVerifier::verify) refused a proof (or why
/// [`thumbprint`](crate::thumbprint) refused a key).
///
/// There is one variant per check, in the order the checks run (see the
/// [crate docs](crate#what-is-checked-in-which-order)); each message names the check and what
/// is allowed. No message contains the access token, and no message echoes attacker-chosen input
/// except the `alg` value of [`AlgorithmNotAllowed`](Self::AlgorithmNotAllowed) (cut to 32 bytes,
/// quoted and escaped).
///
/// Facing the network, answer with [`error_code`](Self::error_code) in the `WWW-Authenticate`
/// challenge (RFC 9449 section 7.1). For the two nonce errors, send a fresh nonce from
/// [`DpopVerifier::fresh_nonce`](crate::DpopVerifier::fresh_nonce) in a `DPoP-Nonce` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// The proof (or its JOSE header) is longer than allowed. Checked before any decoding.
    #[error(
        "DPoP proof too large: the proof may be at most the configured max_proof_bytes \
         (default 8192 bytes) and its encoded header at most 4096 bytes"
    )]
    TooLarge,
    /// Not a compact JWS with a JSON header and JSON claims of the right types.
    #[error(
        "malformed DPoP proof: expected a compact JWS (three base64url parts without padding, \
         separated by '.') whose header and claims are JSON objects, with string `alg`, `htm` \
         and `htu`, a numeric `iat`, and no `crit` header"
    )]
    Malformed,
    /// The header's `typ` is not `dpop+jwt`.
    #[error("wrong DPoP proof type: the header's `typ` must be \"dpop+jwt\"")]
    WrongType,
    /// The header's `alg` is `none`, a MAC, or not one of the configured algorithms. Holds the
    /// `alg` value, cut to 32 bytes.
    #[error(
        "DPoP proof algorithm {0:?} is not allowed: use one of the server's configured asymmetric \
         algorithms (the `algs` of its DPoP challenge; `none` and MACs are never accepted)"
    )]
    AlgorithmNotAllowed(String),
    /// The header has no `jwk` object.
    #[error(
        "DPoP proof header has no `jwk`: it must carry the public key as a JSON Web Key object"
    )]
    MissingJwk,
    /// The header's `jwk` contains private key members.
    #[error(
        "DPoP proof `jwk` contains private key members: only the public key is allowed \
         (no `d`, `p`, `q`, `dp`, `dq`, `qi`, `oth` or `k`)"
    )]
    PrivateKeyInJwk,
    /// The `jwk` is not a supported public key for the header's `alg`.
    #[error(
        "unsupported DPoP proof key: ES256 needs an EC P-256 key (32-byte `x` and `y`), EdDSA an \
         OKP Ed25519 key (32-byte `x`), PS256 and RS256 an RSA key with a 2048 to 4096-bit \
         modulus and an exponent below 2^33"
    )]
    UnsupportedKey,
    /// The signature does not verify with the header's `jwk`.
    #[error("DPoP proof signature is invalid: it must verify with the header's `jwk` and `alg`")]
    BadSignature,
    /// The `htm` claim is not the request's method.
    #[error("DPoP proof `htm` does not match the request method (compared exactly, e.g. \"GET\")")]
    MethodMismatch,
    /// The `htu` claim is not the request's URI (after normalization, without query and fragment).
    #[error(
        "DPoP proof `htu` does not match the request URI: it must be the absolute URI of the \
         request without query and fragment (scheme and host case, default ports, \
         percent-encoding and dot segments are normalized)"
    )]
    UriMismatch,
    /// The request URI the server passed is not an absolute `http`/`https` URI (a server bug).
    #[error(
        "the server's request URI for the DPoP `htu` check is not an absolute http or https \
         URI: build it from the configured public base URL and the request path"
    )]
    InvalidRequestUri,
    /// The nonce is required and missing.
    #[error(
        "DPoP proof has no `nonce`: this server requires one; retry with the nonce from the \
         `DPoP-Nonce` response header"
    )]
    NonceRequired,
    /// The nonce is not one this server issued, or it is stale.
    #[error(
        "DPoP proof `nonce` is unknown or stale: retry with the nonce from the `DPoP-Nonce` \
         response header"
    )]
    NonceInvalid,
    /// `iat` is older than the allowed window (the proof was issued too early).
    #[error(
        "DPoP proof is too old: its `iat` is earlier than the server's clock minus the allowed \
         window (default 60 s); create a fresh proof for each request"
    )]
    IssuedTooEarly,
    /// `iat` is further in the future than the allowed window (the proof was issued too late).
    #[error(
        "DPoP proof is from the future: its `iat` is later than the server's clock plus the \
         allowed window (default 60 s); check the client's clock"
    )]
    IssuedTooLate,
    /// There is no usable `jti`.
    #[error("DPoP proof has no usable `jti`: it must be a non-empty string of at most 256 bytes")]
    MissingJti,
    /// The request carries an access token but the proof has no `ath`.
    #[error(
        "DPoP proof has no `ath`: a proof sent with an access token must carry \
         base64url(SHA-256(access token))"
    )]
    MissingAth,
    /// `ath` is not the hash of the request's access token.
    #[error(
        "DPoP proof `ath` does not match the access token: it must be \
         base64url(SHA-256(access token)) without padding"
    )]
    AthMismatch,
}

impl DpopError {
    /// The RFC 9449 error code for the `WWW-Authenticate` challenge: `"use_dpop_nonce"` for
    /// [`NonceRequired`](Self::NonceRequired) and [`NonceInvalid`](Self::NonceInvalid),
    /// `"invalid_dpop_proof"` for everything else.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::NonceRequired | Self::NonceInvalid => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }
}

/// Why a string is not a [`Thumbprint`](crate::Thumbprint).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid JWK thumbprint: expected 43 base64url characters without padding \
     (the SHA-256 of the key, RFC 7638)"
)]
#[non_exhaustive]
pub struct ParseThumbprintError;
