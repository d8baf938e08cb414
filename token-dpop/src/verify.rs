//! The verifier: RFC 9449 section 4.3, in the order the crate docs give.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::config::{Algorithm, DpopConfig, MAX_HEADER_BYTES};
use crate::error::DpopError;
use crate::htu;
use crate::jwk::{self, Thumbprint};
use crate::nonce::{self, NonceCheck};

/// The longest `jti` accepted, in bytes (it is stored by the replay check).
pub const MAX_JTI_BYTES: usize = 256;

/// Verifies DPoP proofs (RFC 9449) against a [`DpopConfig`]. Cheap to clone (the configuration
/// is shared), `Send + Sync`; build one at startup and share it.
///
/// [`verify`](Self::verify) does **not** detect replays: claim the returned
/// [`VerifiedProof::jti`] once across all instances (see the [crate docs](crate)).
///
/// ```
/// use token_dpop::{DpopConfig, DpopError, DpopVerifier};
///
/// let verifier = DpopVerifier::new(DpopConfig::new());
/// // For the `WWW-Authenticate: DPoP algs="..."` challenge.
/// assert_eq!(verifier.algorithms_header(), "ES256 EdDSA PS256 RS256");
/// let now = time::OffsetDateTime::now_utc();
/// let refused = verifier.verify("not.a.proof", "GET", "https://api.example/widgets", None, now);
/// assert_eq!(refused.unwrap_err(), DpopError::Malformed);
/// // Without `.nonces(..)` in the configuration there are no server nonces.
/// assert_eq!(verifier.fresh_nonce(now), None);
/// ```
#[derive(Debug, Clone)]
pub struct DpopVerifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: DpopConfig,
    algorithms_header: String,
    /// `iat_window` as a signed duration, saturated.
    window: time::Duration,
}

/// What a successful [`DpopVerifier::verify`] established about a proof.
///
/// The caller still has to claim [`jti`](Self::jti) (no proof may be accepted twice, by any
/// instance) and compare [`jkt`](Self::jkt) with the access token's `cnf.jkt`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's `jwk`: compare it with the token's
    /// `cnf.jkt`.
    pub jkt: Thumbprint,
    /// The proof's unique id: accept it at most once, across every instance, until
    /// [`jti_expires_at`](Self::jti_expires_at).
    pub jti: String,
    /// When the client says it made the proof (within the configured window of `now`).
    pub iat: OffsetDateTime,
    /// The proof's server nonce is from the previous window and stops being accepted at the end
    /// of the current one: answer this request with a `DPoP-Nonce` header from
    /// [`DpopVerifier::fresh_nonce`]. Always `false` without server nonces.
    pub nonce_rollover_soon: bool,
    /// `iat` plus the configured window: the last instant at which this proof is accepted. Keep
    /// the replay record for `jti` until then (inclusive); after it the proof is refused as too
    /// old anyway.
    pub jti_expires_at: OffsetDateTime,
}

/// The header members this crate reads. `Option<Value>` so a member of the wrong type is
/// reported by its own check; serde refuses duplicated members.
#[derive(serde::Deserialize)]
struct Header {
    typ: Option<Value>,
    alg: Option<Value>,
    jwk: Option<Value>,
    crit: Option<Value>,
}

#[derive(serde::Deserialize)]
struct Claims {
    jti: Option<Value>,
    htm: Option<Value>,
    htu: Option<Value>,
    iat: Option<Value>,
    ath: Option<Value>,
    nonce: Option<Value>,
}

fn is_base64url(part: &str) -> bool {
    part.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode(part: &str) -> Result<Vec<u8>, DpopError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| DpopError::Malformed)
}

/// The longest `alg` value an error repeats, in bytes: errors get logged, and `alg` is chosen by
/// whoever sent the proof.
const MAX_ECHOED_ALG_BYTES: usize = 32;

fn bounded(mut alg: String) -> String {
    if alg.len() > MAX_ECHOED_ALG_BYTES {
        let mut end = MAX_ECHOED_ALG_BYTES;
        while !alg.is_char_boundary(end) {
            end -= 1;
        }
        alg.truncate(end);
        alg.push('…');
    }
    alg
}

fn is_dpop_type(typ: &str) -> bool {
    // Media types compare case-insensitively, and `application/` may be left out (RFC 7515
    // section 4.1.9).
    const PREFIX: &[u8] = b"application/";
    let bytes = typ.as_bytes();
    // Compared as bytes: slicing the `str` could split a multi-byte character.
    let subtype = match bytes.get(..PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(PREFIX) => &bytes[PREFIX.len()..],
        _ => bytes,
    };
    subtype.eq_ignore_ascii_case(b"dpop+jwt")
}

/// A JSON NumericDate (integer or not) as an instant, when representable.
fn numeric_date(value: &Value) -> Option<OffsetDateTime> {
    if let Some(secs) = value.as_i64() {
        return OffsetDateTime::from_unix_timestamp(secs).ok();
    }
    let secs = value.as_f64()?;
    if !secs.is_finite() || secs.abs() > 1e12 {
        return None;
    }
    // |secs| <= 1e12, so the nanoseconds fit an i128 (and an i64) exactly enough.
    OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128).ok()
}

impl DpopVerifier {
    /// A verifier for `config`.
    pub fn new(config: DpopConfig) -> Self {
        let algorithms_header = config
            .algorithms
            .iter()
            .map(|alg| alg.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let window = time::Duration::try_from(config.iat_window).unwrap_or(time::Duration::MAX);
        Self {
            inner: Arc::new(Inner {
                config,
                algorithms_header,
                window,
            }),
        }
    }

    /// The configured algorithms, space-separated, for the `algs` parameter of the
    /// `WWW-Authenticate: DPoP` challenge: `"ES256 EdDSA PS256 RS256"` by default.
    pub fn algorithms_header(&self) -> String {
        self.inner.algorithms_header.clone()
    }

    /// A nonce for the `DPoP-Nonce` response header, when server nonces are configured
    /// ([`DpopConfig::nonces`]). Send it with `use_dpop_nonce` errors, and on success when
    /// [`VerifiedProof::nonce_rollover_soon`] is set. Every instance sharing the key makes the
    /// same nonce within a window and accepts it until the end of the next window.
    pub fn fresh_nonce(&self, now: OffsetDateTime) -> Option<String> {
        let config = &self.inner.config;
        let key = config.nonce_key.as_ref()?;
        Some(nonce::mint(key, config.nonce_window.as_secs(), now))
    }

    /// Verifies the DPoP `proof` for a request (RFC 9449 section 4.3), in the order the
    /// [crate docs](crate#what-is-checked-in-which-order) give, stopping at the first failure.
    ///
    /// - `method`: the request's HTTP method (`"GET"`), compared exactly with `htm`.
    /// - `htu`: the request's absolute URI as the server sees it, built from the configured
    ///   public base URL and the request path (never from the `Host` header alone). Both sides
    ///   are normalized (RFC 3986 sections 6.2.2 and 6.2.3) and compared without query and
    ///   fragment.
    /// - `access_token`: `Some(token)` when the request carries one; then `ath` is required
    ///   and must be its hash.
    /// - `now`: the server's clock, for the `iat` window and the nonce windows.
    ///
    /// Success does **not** mean the proof is fresh: the caller must still claim
    /// [`VerifiedProof::jti`] once across every instance, and compare
    /// [`VerifiedProof::jkt`] with the token's binding.
    pub fn verify(
        &self,
        proof: &str,
        method: &str,
        htu: &str,
        access_token: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<VerifiedProof, DpopError> {
        let config = &self.inner.config;

        // 1. Size, before any decoding.
        if proof.len() > config.max_proof_bytes {
            return Err(DpopError::TooLarge);
        }
        // 2. Compact JWS shape: three base64url parts; the header bounded before decoding.
        let mut parts = proof.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(DpopError::Malformed);
        };
        if header_b64.len() > MAX_HEADER_BYTES {
            return Err(DpopError::TooLarge);
        }
        if header_b64.is_empty()
            || claims_b64.is_empty()
            || signature_b64.is_empty()
            || !is_base64url(header_b64)
            || !is_base64url(claims_b64)
            || !is_base64url(signature_b64)
        {
            return Err(DpopError::Malformed);
        }
        // 3. The header: a JSON object, no `crit` extensions (none are understood); the
        //    signature: base64url.
        let header: Header =
            serde_json::from_slice(&decode(header_b64)?).map_err(|_| DpopError::Malformed)?;
        if header.crit.is_some() {
            return Err(DpopError::Malformed);
        }
        let signature = decode(signature_b64)?;
        // 4. Explicit typing.
        match header.typ.as_ref().and_then(Value::as_str) {
            Some(typ) if is_dpop_type(typ) => {}
            _ => return Err(DpopError::WrongType),
        }
        // 5. The algorithm: configured, and so asymmetric (`none` and MACs do not exist here).
        let alg = match header.alg {
            Some(Value::String(name)) => match Algorithm::from_jose(&name) {
                Some(alg) if config.algorithms.contains(&alg) => alg,
                _ => return Err(DpopError::AlgorithmNotAllowed(bounded(name))),
            },
            _ => return Err(DpopError::Malformed),
        };
        // 6.-8. The key: present, public only, of the algorithm's type and well formed.
        let jwk: Map<String, Value> = match header.jwk {
            Some(Value::Object(jwk)) => jwk,
            _ => return Err(DpopError::MissingJwk),
        };
        if jwk::has_private_members(&jwk) {
            return Err(DpopError::PrivateKeyInJwk);
        }
        let (key, jkt) = jwk::public_key(&jwk, alg)?;
        // 9. The claims: a JSON object with the required claims, of the right types.
        let claims: Claims =
            serde_json::from_slice(&decode(claims_b64)?).map_err(|_| DpopError::Malformed)?;
        let jti = match claims.jti {
            Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_JTI_BYTES => jti,
            _ => return Err(DpopError::MissingJti),
        };
        let (Some(Value::String(htm)), Some(Value::String(proof_htu)), Some(iat)) =
            (&claims.htm, &claims.htu, &claims.iat)
        else {
            return Err(DpopError::Malformed);
        };
        let iat = numeric_date(iat).ok_or(DpopError::Malformed)?;
        // 10. The signature, over the ASCII `header.claims` exactly as sent.
        let signing_input = &proof[..header_b64.len() + 1 + claims_b64.len()];
        key.verify(alg, signing_input.as_bytes(), &signature)?;
        // 11. `htm`.
        if htm != method {
            return Err(DpopError::MethodMismatch);
        }
        // 12. `htu`.
        let expected = htu::normalize(htu).ok_or(DpopError::InvalidRequestUri)?;
        if htu::normalize(proof_htu).as_deref() != Some(expected.as_str()) {
            return Err(DpopError::UriMismatch);
        }
        // 13. The server nonce, when required.
        let mut nonce_rollover_soon = false;
        if let Some(key) = &config.nonce_key {
            let Some(presented) = &claims.nonce else {
                return Err(DpopError::NonceRequired);
            };
            let Some(presented) = presented.as_str() else {
                return Err(DpopError::NonceInvalid);
            };
            match nonce::check(key, config.nonce_window.as_secs(), now, presented) {
                NonceCheck::Current => {}
                NonceCheck::Previous => nonce_rollover_soon = true,
                NonceCheck::Invalid => return Err(DpopError::NonceInvalid),
            }
        }
        // 14. `iat` within the window.
        let window = self.inner.window;
        if iat < now.saturating_sub(window) {
            return Err(DpopError::IssuedTooEarly);
        }
        if iat > now.saturating_add(window) {
            return Err(DpopError::IssuedTooLate);
        }
        // 15. `ath`, when the request carries an access token.
        if let Some(token) = access_token {
            let Some(ath) = &claims.ath else {
                return Err(DpopError::MissingAth);
            };
            let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
            if ath.as_str() != Some(expected.as_str()) {
                return Err(DpopError::AthMismatch);
            }
        }
        Ok(VerifiedProof {
            jkt,
            jti,
            iat,
            nonce_rollover_soon,
            jti_expires_at: iat.saturating_add(window),
        })
    }
}
