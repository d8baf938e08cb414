//! DPoP (RFC 9449) in the layer: `Authorization: DPoP <token>` with a `DPoP: <proof>` header.
//! The proof is verified with [`token_dpop::DpopVerifier`] against the request's method and its
//! URI under the configured public base URL (never the client's `Host` header), then the
//! token is validated with [`TokenManager::validate_with_proof`](token_core::TokenManager::validate_with_proof),
//! which checks the token's key binding and claims the proof's `jti` once across instances.

use http::HeaderName;
use http::request::Parts;
use time::OffsetDateTime;
use token_core::{KeyThumbprint, ProofOfPossession};
use token_dpop::{DpopError, DpopVerifier};

use crate::credential;
use crate::rejection::RejectionKind;

/// The `DPoP` proof header.
static DPOP: HeaderName = HeaderName::from_static("dpop");

/// How a layer takes DPoP: the verifier, the public base URL `htu` is checked under, and
/// whether plain `Bearer` tokens are still accepted.
#[derive(Clone)]
pub(crate) struct DpopSettings {
    pub(crate) verifier: DpopVerifier,
    /// `scheme://host[:port]` as clients reach this service, without a trailing `/`.
    pub(crate) public_base: String,
    /// The verifier's algorithms, for the challenge's `algs`.
    pub(crate) algs: String,
    /// `Bearer` (and the API key header) accepted too.
    pub(crate) bearer: bool,
}

/// A refusal of the proof: the kind to answer with, and a fresh nonce to send.
pub(crate) struct ProofRefusal {
    pub(crate) kind: RejectionKind,
    pub(crate) nonce: Option<String>,
}

/// A verified proof of `request` for `token`, as token-core takes it, and a fresh nonce to
/// offer when the one it carried rolls over soon.
pub(crate) fn verified(
    settings: &DpopSettings,
    request: &Parts,
    token: &str,
    now: OffsetDateTime,
) -> Result<(ProofOfPossession, Option<String>), ProofRefusal> {
    let invalid = |nonce| ProofRefusal {
        kind: RejectionKind::InvalidDpopProof,
        nonce,
    };
    let proof = match credential::single(request, &DPOP) {
        Ok(Some(proof)) => proof,
        // No proof, or two: the DPoP scheme needs exactly one (RFC 9449 section 4.3).
        Ok(None) | Err(_) => return Err(invalid(None)),
    };
    let htu = format!("{}{}", settings.public_base, request.uri.path());
    let verified = settings
        .verifier
        .verify(proof, request.method.as_str(), &htu, Some(token), now)
        .map_err(|error| refusal(settings, &error, now))?;
    let jkt = KeyThumbprint::parse(verified.jkt.as_str()).map_err(|_| invalid(None))?;
    let offer = if verified.nonce_rollover_soon {
        settings.verifier.fresh_nonce(now)
    } else {
        None
    };
    Ok((
        ProofOfPossession::new(jkt, verified.jti, verified.jti_expires_at),
        offer,
    ))
}

/// `use_dpop_nonce` (with a fresh nonce) for a missing or stale nonce, `invalid_dpop_proof`
/// for every other failure.
fn refusal(settings: &DpopSettings, error: &DpopError, now: OffsetDateTime) -> ProofRefusal {
    if error.error_code() == "use_dpop_nonce" {
        ProofRefusal {
            kind: RejectionKind::UseDpopNonce,
            nonce: settings.verifier.fresh_nonce(now),
        }
    } else {
        ProofRefusal {
            kind: RejectionKind::InvalidDpopProof,
            nonce: None,
        }
    }
}
