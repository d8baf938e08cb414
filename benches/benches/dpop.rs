//! DPoP proof verification (token-dpop) per algorithm: ES256, EdDSA, PS256 and RS256, each a
//! fresh valid proof with `ath` for `GET https://api.example.com/widgets`, verified at its `iat`;
//! plus the cheap refusals (garbage, a bad signature), a thumbprint, and the bare signature checks
//! with already-parsed keys (what the proof checks add on top), in the same run.
//!
//! ```text
//! cargo bench -p benches --bench dpop
//! ```

use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use p256::ecdsa::signature::Signer as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use token_dpop::{Algorithm, DpopConfig, DpopVerifier, thumbprint};

const HTU: &str = "https://api.example.com/widgets";
const TOKEN: &str = "acme_live_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("OS randomness");
    bytes
}

/// A proof for `alg` signed with a fresh key, and the key's JWK.
fn proof(alg: Algorithm, rsa_key: &rsa::PrivateKey, now: OffsetDateTime) -> (String, Value) {
    let jwk = match alg {
        Algorithm::Es256 => {
            let key = p256::ecdsa::SigningKey::from_slice(&random32()).expect("a P-256 scalar");
            let point = key.verifying_key().to_sec1_point(false);
            let xy = point.as_bytes();
            (
                Signer::P256(key),
                json!({"kty": "EC", "crv": "P-256", "x": b64(&xy[1..33]), "y": b64(&xy[33..])}),
            )
        }
        Algorithm::EdDsa => {
            let key = ed25519_dalek::SigningKey::from_bytes(&random32());
            let x = b64(key.verifying_key().to_bytes());
            (
                Signer::Ed25519(key),
                json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            )
        }
        _ => {
            let n = b64(rsa_key.n().to_be_bytes_trimmed_vartime());
            let e = b64(rsa_key.e().to_be_bytes_trimmed_vartime());
            (Signer::Rsa(rsa_key), json!({"kty": "RSA", "n": n, "e": e}))
        }
    };
    let (signer, jwk) = jwk;
    let header = json!({"typ": "dpop+jwt", "alg": alg.as_str(), "jwk": jwk});
    let claims = json!({
        "jti": b64(random32()),
        "htm": "GET",
        "htu": HTU,
        "iat": now.unix_timestamp(),
        "ath": b64(Sha256::digest(TOKEN)),
    });
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let signature = signer.sign(alg, input.as_bytes());
    (format!("{input}.{}", b64(signature)), jwk)
}

enum Signer<'a> {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(&'a rsa::PrivateKey),
}

impl Signer<'_> {
    fn sign(&self, alg: Algorithm, input: &[u8]) -> Vec<u8> {
        match self {
            Self::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(input);
                signature.to_bytes().to_vec()
            }
            Self::Ed25519(key) => key.sign(input).to_bytes().to_vec(),
            Self::Rsa(key) => {
                let digest = Sha256::digest(input);
                if alg == Algorithm::Ps256 {
                    key.sign_with_rng(&mut getrandom::SysRng, rsa::Pss::<Sha256>::new(), &digest)
                } else {
                    key.sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest)
                }
                .expect("RSA signing")
            }
        }
    }
}

fn bench_verify(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let rsa_key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).expect("RSA key generation");
    let verifier = DpopVerifier::new(DpopConfig::new());

    let mut group = c.benchmark_group("dpop_verify");
    let mut es256 = None;
    for alg in Algorithm::ALL {
        let (proof, jwk) = proof(alg, &rsa_key, now);
        verifier
            .verify(&proof, "GET", HTU, Some(TOKEN), now)
            .expect("the bench proof verifies");
        group.bench_function(alg.as_str(), |b| {
            b.iter(|| verifier.verify(black_box(&proof), "GET", HTU, Some(TOKEN), now))
        });
        if alg == Algorithm::Es256 {
            es256 = Some((proof, jwk));
        }
    }
    let (es256, jwk) = es256.expect("ES256 is in Algorithm::ALL");
    let garbage = "x".repeat(600);
    group.bench_function("refuse_garbage", |b| {
        b.iter(|| verifier.verify(black_box(&garbage), "GET", HTU, Some(TOKEN), now))
    });
    let mut bad = es256.clone().into_bytes();
    let last = bad.len() - 2;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).expect("ASCII");
    group.bench_function("refuse_bad_signature_ES256", |b| {
        b.iter(|| verifier.verify(black_box(&bad), "GET", HTU, Some(TOKEN), now))
    });
    group.finish();

    c.bench_function("dpop_thumbprint_EC", |b| {
        b.iter(|| thumbprint(black_box(&jwk)))
    });

    // The signature checks alone, with already-parsed keys: what the proof checks add on top.
    let mut group = c.benchmark_group("signature_only");
    let message = [7u8; 400];
    let p256_key = p256::ecdsa::SigningKey::from_slice(&random32()).expect("a P-256 scalar");
    let p256_signature: p256::ecdsa::Signature = p256_key.sign(&message);
    let p256_public = *p256_key.verifying_key();
    group.bench_function("ES256", |b| {
        b.iter(|| {
            use p256::ecdsa::signature::Verifier as _;
            p256_public.verify(black_box(&message), &p256_signature)
        })
    });
    let ed_key = ed25519_dalek::SigningKey::from_bytes(&random32());
    let ed_signature = ed_key.sign(&message);
    let ed_public = ed_key.verifying_key();
    group.bench_function("EdDSA", |b| {
        b.iter(|| ed_public.verify_strict(black_box(&message), &ed_signature))
    });
    let rsa_public = rsa::PublicKey::from(&rsa_key);
    let digest = Sha256::digest(message);
    let rsa_signature = rsa_key
        .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest)
        .expect("RSA signing");
    group.bench_function("RS256", |b| {
        b.iter(|| {
            let digest = Sha256::digest(black_box(&message));
            rsa_public.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, &rsa_signature)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
