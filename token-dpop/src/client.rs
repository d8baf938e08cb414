//! The client side: a key that makes DPoP proofs, for example programs, tests and Rust clients.
//!
//! The server side never needs this module. ES256 and EdDSA only (the algorithms a new client
//! should pick: small keys, fast signing); RSA clients can use the `rsa` crate directly.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::config::Algorithm;
use crate::jwk::{Thumbprint, thumbprint};

/// A client's DPoP key pair (ES256 or EdDSA) that makes proofs for requests.
///
/// The private key never leaves it: no accessor, a `Debug` that shows only the algorithm and
/// thumbprint, and the key is wiped on drop.
///
/// ```
/// use token_dpop::client::ProofKey;
/// use token_dpop::{DpopConfig, DpopVerifier};
///
/// let key = ProofKey::generate_es256()?;
/// // Bind a token to `key.thumbprint()` when it is issued (`cnf.jkt`), then for each request:
/// let now = time::OffsetDateTime::now_utc();
/// let url = "https://api.example/widgets";
/// let proof = key.proof("GET", url, Some("the-access-token"), None, now)?;
///
/// let verified = DpopVerifier::new(DpopConfig::new())
///     .verify(&proof, "GET", url, Some("the-access-token"), now)
///     .unwrap();
/// assert_eq!(verified.jkt, key.thumbprint());
/// # Ok::<(), getrandom::Error>(())
/// ```
pub struct ProofKey {
    signer: Signer,
    jwk: Value,
    jkt: Thumbprint,
}

enum Signer {
    // Both wipe themselves on drop.
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl ProofKey {
    /// A fresh P-256 key for ES256, from the operating system's random number generator.
    pub fn generate_es256() -> Result<Self, getrandom::Error> {
        loop {
            let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::fill(bytes.as_mut())?;
            // Fails only for a scalar of zero or above the group order (about 2^-32).
            if let Some(key) = Self::es256_from_bytes(*bytes) {
                return Ok(key);
            }
        }
    }

    /// A fresh Ed25519 key for EdDSA, from the operating system's random number generator.
    pub fn generate_ed25519() -> Result<Self, getrandom::Error> {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut())?;
        Ok(Self::ed25519_from_bytes(*bytes))
    }

    /// The ES256 key with this 32-byte big-endian private scalar, or `None` when it is not a
    /// valid scalar.
    pub fn es256_from_bytes(secret: [u8; 32]) -> Option<Self> {
        let key = p256::ecdsa::SigningKey::from_slice(&secret).ok()?;
        let point = key.verifying_key().to_sec1_point(false);
        let xy = point.as_bytes();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&xy[1..33]), "y": b64(&xy[33..65])});
        Some(Self::with_jwk(Signer::P256(key), jwk))
    }

    /// The EdDSA key with this 32-byte Ed25519 secret key.
    pub fn ed25519_from_bytes(secret: [u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&secret);
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().to_bytes())});
        Self::with_jwk(Signer::Ed25519(key), jwk)
    }

    fn with_jwk(signer: Signer, jwk: Value) -> Self {
        // The JWK was just built from a valid public key.
        let jkt = thumbprint(&jwk).unwrap_or_else(|_| Thumbprint::from_sha256([0; 32]));
        Self { signer, jwk, jkt }
    }

    /// The algorithm the proofs use.
    pub fn algorithm(&self) -> Algorithm {
        match self.signer {
            Signer::P256(_) => Algorithm::Es256,
            Signer::Ed25519(_) => Algorithm::EdDsa,
        }
    }

    /// The public key as a JWK (what each proof's header carries).
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The RFC 7638 thumbprint of the public key: the `cnf.jkt` to bind tokens to.
    pub fn thumbprint(&self) -> Thumbprint {
        self.jkt.clone()
    }

    /// A proof for one request: `method` and `htu` (the absolute URI, query and fragment are
    /// ignored by verifiers), `ath` for `access_token` when given, the server's `nonce` when it
    /// asked for one, `iat` = `now`, and a random 128-bit `jti`. Make a new one per request.
    pub fn proof(
        &self,
        method: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<String, getrandom::Error> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti)?;
        let header = json!({"typ": "dpop+jwt", "alg": self.algorithm().as_str(), "jwk": self.jwk});
        let mut claims = json!({
            "jti": b64(jti),
            "htm": method,
            "htu": htu,
            "iat": now.unix_timestamp(),
        });
        if let Some(token) = access_token {
            claims["ath"] = b64(Sha256::digest(token.as_bytes())).into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature = match &self.signer {
            Signer::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
                b64(signature.to_bytes())
            }
            Signer::Ed25519(key) => b64(key.sign(input.as_bytes()).to_bytes()),
        };
        Ok(format!("{input}.{signature}"))
    }
}

impl fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofKey")
            .field("algorithm", &self.algorithm())
            .field("jkt", &self.jkt)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DpopConfig, DpopError, DpopVerifier, NonceKey};

    const URL: &str = "https://api.example/widgets?page=2";

    #[test]
    fn client_proofs_verify_for_both_algorithms() {
        let now = OffsetDateTime::now_utc();
        let verifier = DpopVerifier::new(DpopConfig::new());
        for key in [
            ProofKey::generate_es256().unwrap(),
            ProofKey::generate_ed25519().unwrap(),
        ] {
            let proof = key.proof("POST", URL, Some("tok"), None, now).unwrap();
            let verified = verifier
                .verify(&proof, "POST", URL, Some("tok"), now)
                .unwrap();
            assert_eq!(verified.jkt, key.thumbprint());
            assert_eq!(verified.jti.len(), 22);
            let other = key.proof("POST", URL, Some("tok"), None, now).unwrap();
            assert_ne!(
                verifier.verify(&other, "POST", URL, None, now).unwrap().jti,
                verified.jti
            );
        }
    }

    #[test]
    fn client_proofs_carry_the_server_nonce() {
        let now = OffsetDateTime::now_utc();
        let verifier = DpopVerifier::new(DpopConfig::new().nonces(NonceKey::new([5; 32])));
        let key = ProofKey::generate_ed25519().unwrap();
        let proof = key.proof("GET", URL, None, None, now).unwrap();
        assert_eq!(
            verifier.verify(&proof, "GET", URL, None, now),
            Err(DpopError::NonceRequired)
        );
        let nonce = verifier.fresh_nonce(now).unwrap();
        let proof = key.proof("GET", URL, None, Some(&nonce), now).unwrap();
        verifier.verify(&proof, "GET", URL, None, now).unwrap();
    }

    #[test]
    fn keys_from_bytes_are_deterministic_and_debug_hides_them() {
        let a = ProofKey::ed25519_from_bytes([8; 32]);
        let b = ProofKey::ed25519_from_bytes([8; 32]);
        assert_eq!(a.thumbprint(), b.thumbprint());
        assert!(ProofKey::es256_from_bytes([0; 32]).is_none());
        let key = ProofKey::es256_from_bytes([8; 32]).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Es256);
        assert_eq!(key.public_jwk()["crv"], "P-256");
        let debug = format!("{key:?}");
        assert!(
            debug.starts_with("ProofKey { algorithm: Es256, jkt: "),
            "{debug}"
        );
    }
}
