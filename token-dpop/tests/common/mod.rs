//! Signs proofs for the tests with the same RustCrypto crates the verifier checks them with.
#![allow(dead_code, unreachable_pub)]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use token_dpop::Algorithm;

/// A 2048-bit test key, checked in: generating RSA keys in debug builds takes too long.
const RSA_PEM: &str = include_str!("../data/rsa2048-test-key.pem");

pub const HTU: &str = "https://api.example.com/widgets";
pub const TOKEN: &str = "acme_live_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV";

pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn ath(token: &str) -> String {
    b64(Sha256::digest(token.as_bytes()))
}

fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

pub fn rsa_key() -> &'static rsa::PrivateKey {
    static KEY: OnceLock<rsa::PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::PrivateKey::from_pkcs8_pem(RSA_PEM).unwrap())
}

/// A client key for one algorithm.
pub enum Key {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(&'static rsa::PrivateKey),
}

impl Key {
    pub fn new(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Es256 => {
                Self::P256(p256::ecdsa::SigningKey::from_slice(&random32()).unwrap())
            }
            Algorithm::EdDsa => Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&random32())),
            _ => Self::Rsa(rsa_key()),
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        match self {
            Self::P256(key) => {
                let point = key.verifying_key().to_sec1_point(false);
                let bytes = point.as_bytes();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&bytes[1..33]), "y": b64(&bytes[33..65])})
            }
            Self::Ed25519(key) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().to_bytes())})
            }
            Self::Rsa(key) => {
                let n = key.n().to_be_bytes_trimmed_vartime();
                let e = key.e().to_be_bytes_trimmed_vartime();
                json!({"kty": "RSA", "n": b64(&n), "e": b64(&e)})
            }
        }
    }

    /// Signs `signing_input` for `alg` (JWS encoding of the signature).
    pub fn sign(&self, alg: &str, signing_input: &[u8]) -> Vec<u8> {
        match self {
            Self::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(signing_input);
                signature.to_bytes().to_vec()
            }
            Self::Ed25519(key) => key.sign(signing_input).to_bytes().to_vec(),
            Self::Rsa(key) => {
                let digest = Sha256::digest(signing_input);
                if alg == "PS256" {
                    key.sign_with_rng(&mut getrandom::SysRng, rsa::Pss::<Sha256>::new(), &digest)
                        .unwrap()
                } else {
                    key.sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest)
                        .unwrap()
                }
            }
        }
    }
}

/// The parts of a proof, each changeable on its own.
pub struct Proof {
    pub alg: Algorithm,
    pub key: Key,
    pub header: Value,
    pub claims: Value,
}

impl Proof {
    /// A proof that verifies for `GET HTU` with `TOKEN` at `now()`.
    pub fn new(alg: Algorithm) -> Self {
        let key = Key::new(alg);
        let header = json!({"typ": "dpop+jwt", "alg": alg.as_str(), "jwk": key.jwk()});
        let claims = json!({
            "jti": format!("jti-{}", b64(random32())),
            "htm": "GET",
            "htu": HTU,
            "iat": now().unix_timestamp(),
            "ath": ath(TOKEN),
        });
        Self {
            alg,
            key,
            header,
            claims,
        }
    }

    pub fn header(mut self, name: &str, value: Value) -> Self {
        self.header[name] = value;
        self
    }

    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.claims[name] = value;
        self
    }

    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.as_object_mut().unwrap().remove(name);
        self
    }

    pub fn without_header(mut self, name: &str) -> Self {
        self.header.as_object_mut().unwrap().remove(name);
        self
    }

    /// The compact JWS, signed with the key for `self.alg`.
    pub fn sign(&self) -> String {
        let input = format!(
            "{}.{}",
            b64(self.header.to_string()),
            b64(self.claims.to_string())
        );
        let signature = self.key.sign(self.alg.as_str(), input.as_bytes());
        format!("{input}.{}", b64(signature))
    }
}
