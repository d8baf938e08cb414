//! `token_dpop::DpopVerifier::verify` with arbitrary proofs, methods and `htu`s: never panics;
//! an accepted proof's thumbprint parses as a `token_core::KeyThumbprint` and its `jti` is
//! bounded. Proofs come raw, as base64url-joined arbitrary header/claims/signature bytes (so the
//! fuzzer works on the JSON directly), or signed by a fixed key and then mutated: a signed proof
//! that still verifies names the signing key, and an unmutated one for the request it was made
//! for verifies.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use token_core::KeyThumbprint;
use token_dpop::client::ProofKey;
use token_dpop::{DpopConfig, DpopVerifier, MAX_JTI_BYTES, NonceKey, VerifiedProof};

const HTU: &str = "https://api.example.com/widgets";
const TOKEN: &str = "acme_live_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV";

/// The input, `\n`-separated: mode (`raw`, `parts`, `signed-ed`, `signed-es`; anything else is
/// `raw`), method, `htu`, now (Unix seconds), access token (`~` for the default of each), then for
/// `raw` the proof, for `parts` the header, claims and signature bytes (base64url-encoded here),
/// for `signed-*` mutations as (u16 little-endian offset, byte) pairs applied to a proof signed
/// by a fixed key for that request.
struct Input<'a> {
    mode: &'a [u8],
    method: Option<String>,
    htu: Option<String>,
    now: Option<i64>,
    token: Option<String>,
    rest: &'a [u8],
}

fn parse(data: &[u8]) -> Input<'_> {
    let mut lines = data.splitn(6, |&b| b == b'\n');
    let mut field = || lines.next().unwrap_or_default();
    let text = |b: &[u8]| (b != b"~").then(|| String::from_utf8_lossy(b).into_owned());
    let mode = field();
    let method = text(field());
    let htu = text(field());
    let now = std::str::from_utf8(field())
        .ok()
        .and_then(|t| t.parse().ok());
    let token = text(field());
    let rest = field();
    Input {
        mode,
        method,
        htu,
        now,
        token,
        rest,
    }
}

struct Keys {
    ed25519: ProofKey,
    es256: ProofKey,
    verifiers: [DpopVerifier; 2],
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        ed25519: ProofKey::ed25519_from_bytes([5; 32]),
        es256: ProofKey::es256_from_bytes([6; 32]).expect("a valid P-256 scalar"),
        verifiers: [
            DpopVerifier::new(DpopConfig::new()),
            DpopVerifier::new(DpopConfig::new().nonces(NonceKey::new([1; 32]))),
        ],
    })
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")
}

fn check_accepted(proof: &VerifiedProof) {
    let jkt = proof.jkt.as_str();
    KeyThumbprint::parse(jkt)
        .unwrap_or_else(|e| panic!("accepted thumbprint {jkt:?} is not a KeyThumbprint: {e}"));
    assert!(
        proof.jti.len() <= MAX_JTI_BYTES,
        "jti of {} bytes",
        proof.jti.len()
    );
    assert!(!proof.jti.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let input = parse(data);
    let keys = keys();
    let defaults = input.method.is_none() && input.htu.is_none() && input.now.is_none();
    let method = input.method.as_deref().unwrap_or("GET");
    let htu = input.htu.as_deref().unwrap_or(HTU);
    let token = match &input.token {
        Some(t) if t == "-" => None,
        Some(t) => Some(t.as_str()),
        None => Some(TOKEN),
    };
    let at = input
        .now
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(now);
    let mut signer = None;
    let mut pristine = false;
    let proof = match input.mode {
        b"parts" => {
            let mut parts = input.rest.splitn(3, |&b| b == b'\n');
            let mut part = || URL_SAFE_NO_PAD.encode(parts.next().unwrap_or_default());
            format!("{}.{}.{}", part(), part(), part())
        }
        b"signed-ed" | b"signed-es" => {
            let key = if input.mode == b"signed-es" {
                &keys.es256
            } else {
                &keys.ed25519
            };
            let mut bytes = key
                .proof(method, htu, token, None, at)
                .expect("signing")
                .into_bytes();
            pristine = input.rest.len() < 3;
            for m in input.rest.chunks_exact(3) {
                let offset = usize::from(u16::from_le_bytes([m[0], m[1]]));
                let len = bytes.len();
                bytes[offset % len] = m[2];
            }
            signer = Some(key);
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => String::from_utf8_lossy(input.rest).into_owned(),
    };
    for (n, verifier) in keys.verifiers.iter().enumerate() {
        let result = verifier.verify(&proof, method, htu, token, at);
        if let Ok(verified) = &result {
            check_accepted(verified);
            if let Some(key) = signer {
                assert_eq!(
                    verified.jkt,
                    key.thumbprint(),
                    "a signed proof verified under another key"
                );
            }
        }
        // The verifier without nonces accepts an unmodified proof for its own request.
        if n == 0 && pristine && defaults {
            assert!(result.is_ok(), "a valid proof was refused: {result:?}");
        }
    }
});
