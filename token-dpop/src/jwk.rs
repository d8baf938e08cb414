//! JSON Web Keys: RFC 7638 thumbprints and the public keys proofs are checked with.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::config::Algorithm;
use crate::error::{DpopError, ParseThumbprintError};

/// An RFC 7638 JWK SHA-256 thumbprint: base64url (no padding) of the SHA-256 of the key's
/// canonical JSON, 43 characters. This is the value a bound token's `cnf.jkt` holds
/// (RFC 9449 section 6.1), and what [`VerifiedProof::jkt`](crate::VerifiedProof::jkt) carries.
///
/// It serializes as its string; parsing and deserializing check that it is 43 base64url
/// characters that decode to 32 bytes.
///
/// ```
/// use token_dpop::Thumbprint;
///
/// // RFC 7638 section 3.1.
/// let jkt: Thumbprint = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".parse().unwrap();
/// assert_eq!(jkt.as_str(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
/// assert_eq!(jkt.to_string(), jkt.as_str());
/// assert_eq!(serde_json::to_string(&jkt).unwrap(), format!("\"{jkt}\""));
/// assert!("not a thumbprint".parse::<Thumbprint>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Thumbprint(String);

impl Thumbprint {
    /// The number of characters of every thumbprint.
    pub const LEN: usize = 43;

    /// The thumbprint of a key whose canonical JSON hashes to `digest`.
    pub fn from_sha256(digest: [u8; 32]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(digest))
    }

    /// The base64url string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 bytes of the SHA-256.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        // Every `Thumbprint` holds 43 canonical base64url characters of 32 bytes.
        let _ = URL_SAFE_NO_PAD.decode_slice(&self.0, &mut bytes);
        bytes
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Thumbprint {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Thumbprint {
    type Err = ParseThumbprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != Self::LEN {
            return Err(ParseThumbprintError);
        }
        let mut bytes = [0u8; 33];
        // The strict engine refuses padding and non-canonical trailing bits, so each digest
        // has one spelling.
        match URL_SAFE_NO_PAD.decode_slice(s, &mut bytes) {
            Ok(32) => Ok(Self(s.to_owned())),
            _ => Err(ParseThumbprintError),
        }
    }
}

impl serde::Serialize for Thumbprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Thumbprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK: EC P-256 (`crv`, `kty`, `x`, `y`), OKP
/// Ed25519 (`crv`, `kty`, `x`) or RSA (`e`, `kty`, `n`).
///
/// Only the required members take part, so a key's thumbprint does not change with `kid`,
/// `alg`, `use` or private members. The members must be base64url strings of the right sizes
/// for the key type; anything else is [`DpopError::UnsupportedKey`] (or
/// [`DpopError::MissingJwk`] when `jwk` is not a JSON object).
///
/// ```
/// let jwk = serde_json::json!({
///     "kty": "EC",
///     "crv": "P-256",
///     "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
///     "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
/// });
/// let jkt = token_dpop::thumbprint(&jwk)?;
/// assert_eq!(jkt.as_str().len(), 43);
/// # Ok::<(), token_dpop::DpopError>(())
/// ```
pub fn thumbprint(jwk: &Value) -> Result<Thumbprint, DpopError> {
    let jwk = jwk.as_object().ok_or(DpopError::MissingJwk)?;
    // Validates the members; the thumbprint itself hashes their strings as given.
    let kind = key_kind(jwk)?;
    Ok(thumbprint_of(jwk, kind))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    P256,
    Ed25519,
    Rsa,
}

/// The members RFC 7638 hashes, in lexicographic order.
fn required_members(kind: KeyKind) -> &'static [&'static str] {
    match kind {
        KeyKind::P256 => &["crv", "kty", "x", "y"],
        KeyKind::Ed25519 => &["crv", "kty", "x"],
        KeyKind::Rsa => &["e", "kty", "n"],
    }
}

fn thumbprint_of(jwk: &Map<String, Value>, kind: KeyKind) -> Thumbprint {
    let mut canonical = String::with_capacity(1024);
    canonical.push('{');
    for (i, name) in required_members(kind).iter().enumerate() {
        if i > 0 {
            canonical.push(',');
        }
        canonical.push('"');
        canonical.push_str(name);
        canonical.push_str("\":");
        // `key_kind` checked every required member is a string; serde_json escapes it the way
        // RFC 7638 asks (RFC 7159 JSON, no whitespace).
        let value = jwk.get(*name).and_then(Value::as_str).unwrap_or_default();
        canonical.push_str(&Value::from(value).to_string());
    }
    canonical.push('}');
    Thumbprint::from_sha256(Sha256::digest(canonical.as_bytes()).into())
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, DpopError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or(DpopError::UnsupportedKey)
}

/// Decodes a base64url member into exactly `N` bytes.
fn fixed<const N: usize>(jwk: &Map<String, Value>, name: &str) -> Result<[u8; N], DpopError> {
    let encoded = member(jwk, name)?;
    if encoded.len() != base64::encoded_len(N, false).unwrap_or(0) {
        return Err(DpopError::UnsupportedKey);
    }
    let mut out = [0u8; N];
    match URL_SAFE_NO_PAD.decode_slice(encoded, &mut out) {
        Ok(n) if n == N => Ok(out),
        _ => Err(DpopError::UnsupportedKey),
    }
}

/// RSA moduli accepted, in bits: at least 2048 (NIST), at most 4096 (a bound on the verifier's
/// work per proof).
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

fn rsa_member(
    jwk: &Map<String, Value>,
    name: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, DpopError> {
    let encoded = member(jwk, name)?;
    if encoded.is_empty() || encoded.len() > base64::encoded_len(max_bytes, false).unwrap_or(0) {
        return Err(DpopError::UnsupportedKey);
    }
    URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| DpopError::UnsupportedKey)
}

fn key_kind(jwk: &Map<String, Value>) -> Result<KeyKind, DpopError> {
    let kind = match (member(jwk, "kty")?, jwk.get("crv").and_then(Value::as_str)) {
        ("EC", Some("P-256")) => KeyKind::P256,
        ("OKP", Some("Ed25519")) => KeyKind::Ed25519,
        ("RSA", _) => KeyKind::Rsa,
        _ => return Err(DpopError::UnsupportedKey),
    };
    match kind {
        KeyKind::P256 => {
            fixed::<32>(jwk, "x")?;
            fixed::<32>(jwk, "y")?;
        }
        KeyKind::Ed25519 => {
            fixed::<32>(jwk, "x")?;
        }
        KeyKind::Rsa => {
            rsa_member(jwk, "n", RSA_BITS.end() / 8 + 1)?;
            rsa_member(jwk, "e", 8)?;
        }
    }
    Ok(kind)
}

/// Members that only private (or symmetric) keys have.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

pub(crate) fn has_private_members(jwk: &Map<String, Value>) -> bool {
    PRIVATE_MEMBERS.iter().any(|name| jwk.contains_key(*name))
}

/// A public key a proof's signature is checked with.
pub(crate) enum PublicKey {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(rsa::PublicKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::P256(_) => "PublicKey::P256",
            Self::Ed25519(_) => "PublicKey::Ed25519",
            Self::Rsa(_) => "PublicKey::Rsa",
        })
    }
}

/// The key for `alg` from `jwk` (which has no private members), and its thumbprint.
pub(crate) fn public_key(
    jwk: &Map<String, Value>,
    alg: Algorithm,
) -> Result<(PublicKey, Thumbprint), DpopError> {
    let kind = key_kind(jwk)?;
    let key = match (alg, kind) {
        (Algorithm::Es256, KeyKind::P256) => {
            let mut sec1 = [0u8; 65];
            sec1[0] = 0x04;
            sec1[1..33].copy_from_slice(&fixed::<32>(jwk, "x")?);
            sec1[33..].copy_from_slice(&fixed::<32>(jwk, "y")?);
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|_| DpopError::UnsupportedKey)?;
            PublicKey::P256(key)
        }
        (Algorithm::EdDsa, KeyKind::Ed25519) => {
            let key = ed25519_dalek::VerifyingKey::from_bytes(&fixed::<32>(jwk, "x")?)
                .map_err(|_| DpopError::UnsupportedKey)?;
            if key.is_weak() {
                return Err(DpopError::UnsupportedKey);
            }
            PublicKey::Ed25519(key)
        }
        (Algorithm::Ps256 | Algorithm::Rs256, KeyKind::Rsa) => {
            let n = rsa_member(jwk, "n", RSA_BITS.end() / 8 + 1)?;
            let e = rsa_member(jwk, "e", 8)?;
            let n = rsa::BoxedUint::from_be_slice_vartime(&n);
            let e = rsa::BoxedUint::from_be_slice_vartime(&e);
            let key = rsa::PublicKey::new_with_size_limits(n, e, RSA_BITS)
                .map_err(|_| DpopError::UnsupportedKey)?;
            PublicKey::Rsa(key)
        }
        _ => return Err(DpopError::UnsupportedKey),
    };
    Ok((key, thumbprint_of(jwk, kind)))
}

impl PublicKey {
    /// Checks `signature` over `signing_input` for `alg` (which `public_key` matched to the key).
    pub(crate) fn verify(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), DpopError> {
        use signature_traits::Verifier as _;
        let ok = match (self, alg) {
            (Self::P256(key), Algorithm::Es256) => {
                // JWS ECDSA signatures are the fixed-width `r || s`, not DER.
                let Ok(signature) = p256::ecdsa::Signature::from_slice(signature) else {
                    return Err(DpopError::BadSignature);
                };
                key.verify(signing_input, &signature).is_ok()
            }
            (Self::Ed25519(key), Algorithm::EdDsa) => {
                let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
                    return Err(DpopError::BadSignature);
                };
                // Strict: no small-order keys or malleable signatures.
                key.verify_strict(signing_input, &signature).is_ok()
            }
            (Self::Rsa(key), Algorithm::Ps256) => {
                let digest = Sha256::digest(signing_input);
                key.verify(rsa::Pss::<Sha256>::new(), &digest, signature)
                    .is_ok()
            }
            (Self::Rsa(key), Algorithm::Rs256) => {
                let digest = Sha256::digest(signing_input);
                key.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, signature)
                    .is_ok()
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(DpopError::BadSignature)
        }
    }
}

mod signature_traits {
    pub(super) use p256::ecdsa::signature::Verifier;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7638_section_3_1_thumbprint() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap().as_str(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn thumbprint_ignores_optional_members_and_member_order() {
        let a = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let b = json!({"x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "k1", "crv": "Ed25519", "use": "sig", "kty": "OKP"});
        assert_eq!(thumbprint(&a).unwrap(), thumbprint(&b).unwrap());
    }

    #[test]
    fn thumbprint_refuses_unsupported_and_broken_keys() {
        for jwk in [
            json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}),
            json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
            json!({"kty": "OKP", "crv": "X25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
            json!({"kty": "oct", "k": "AAAA"}),
            json!({"kty": "RSA", "n": "", "e": "AQAB"}),
            json!({"kty": "RSA", "n": 5, "e": "AQAB"}),
            json!({"crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
        ] {
            assert_eq!(thumbprint(&jwk), Err(DpopError::UnsupportedKey), "{jwk}");
        }
        assert_eq!(thumbprint(&json!("EC")), Err(DpopError::MissingJwk));
    }

    #[test]
    fn thumbprint_parsing_is_strict() {
        let good = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
        let parsed: Thumbprint = good.parse().unwrap();
        assert_eq!(Thumbprint::from_sha256(parsed.to_bytes()), parsed);
        for bad in [
            "",
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9X",
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs=",
            "NzbLsXh8uDCcd+6MNwXF4W/7noWXFZAfHkxZsRGC9Xs",
            // Non-zero trailing bits: another spelling of a 32-byte value.
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xt",
        ] {
            assert!(bad.parse::<Thumbprint>().is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(serde_json::from_str::<Thumbprint>(&json).unwrap(), parsed);
        assert!(serde_json::from_str::<Thumbprint>("\"short\"").is_err());
    }

    #[test]
    fn private_members_are_detected() {
        for name in PRIVATE_MEMBERS {
            let mut jwk = Map::new();
            jwk.insert("kty".into(), "EC".into());
            jwk.insert(name.into(), "AAAA".into());
            assert!(has_private_members(&jwk), "{name}");
        }
        let public = json!({"kty": "EC", "crv": "P-256", "x": "a", "y": "b"});
        assert!(!has_private_members(public.as_object().unwrap()));
    }
}
