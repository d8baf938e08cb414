//! Property tests: `verify` (and `thumbprint`, and parsing a `Thumbprint`) returns an error,
//! never panics, whatever the input.

mod common;

use common::{HTU, Key, Proof, TOKEN, b64, now};
use proptest::prelude::*;
use serde_json::{Value, json};
use token_dpop::{Algorithm, DpopConfig, DpopVerifier, NonceKey, Thumbprint, thumbprint};

fn verifiers() -> [DpopVerifier; 2] {
    [
        DpopVerifier::new(DpopConfig::new()),
        DpopVerifier::new(DpopConfig::new().nonces(NonceKey::new([1; 32]))),
    ]
}

fn check(proof: &str, htu: &str) {
    for verifier in verifiers() {
        let _ = verifier.verify(proof, "GET", htu, Some(TOKEN), now());
        let _ = verifier.verify(proof, "GET", htu, None, now());
    }
}

/// JSON values of any shape, biased towards the members a proof has.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        // Multi-byte characters where the verifier compares prefixes.
        "(application/|applicatio\\PC|\\PC{0,13})(dpop\\+jwt)?".prop_map(Value::from),
        prop::sample::select(vec![
            "dpop+jwt", "ES256", "EdDSA", "PS256", "RS256", "none", "HS256", "EC", "OKP", "RSA",
            "P-256", "Ed25519", "AQAB", "GET", HTU,
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "typ", "alg", "jwk", "kty", "crv", "x", "y", "n", "e", "d", "jti", "htm",
                    "htu", "iat", "ath", "nonce", "crit",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn verify_never_panics_on_arbitrary_strings(proof in ".{0,300}", htu in ".{0,60}") {
        check(&proof, &htu);
        check(&proof, HTU);
    }

    #[test]
    fn thumbprint_and_parse_never_panic(jwk in json_value(), s in ".{0,60}") {
        let _ = thumbprint(&jwk);
        let _ = s.parse::<Thumbprint>();
    }

    #[test]
    fn verify_never_panics_on_arbitrary_jws_parts(
        header in prop::collection::vec(any::<u8>(), 0..200),
        claims in prop::collection::vec(any::<u8>(), 0..200),
        signature in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        check(&format!("{}.{}.{}", b64(&header), b64(&claims), b64(&signature)), HTU);
    }

    #[test]
    fn verify_never_panics_on_arbitrary_json_parts(
        header in json_value(),
        claims in json_value(),
        jwk in json_value(),
        signature in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut with_jwk = header.clone();
        if let Value::Object(map) = &mut with_jwk {
            map.insert("jwk".into(), jwk);
        }
        for header in [header, with_jwk] {
            let proof = format!("{}.{}.{}", b64(header.to_string()), b64(claims.to_string()), b64(&signature));
            check(&proof, HTU);
        }
    }

    #[test]
    fn verify_never_panics_on_mutated_valid_proofs(
        alg in prop::sample::select(Algorithm::ALL.to_vec()),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let proof = Proof::new(alg).sign();
        let mut bytes = proof.clone().into_bytes();
        let i = position.index(bytes.len());
        bytes[i] = byte;
        check(&String::from_utf8_lossy(&bytes), HTU);
        check(&proof[..cut.index(proof.len())], HTU);
    }

    #[test]
    fn verify_never_panics_on_valid_signatures_over_arbitrary_claims(
        claims in json_value(),
        jwk_extra in json_value(),
    ) {
        let key = Key::new(Algorithm::EdDsa);
        let mut jwk = key.jwk();
        if let (Value::Object(jwk), Value::Object(extra)) = (&mut jwk, jwk_extra) {
            jwk.extend(extra);
        }
        let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk});
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let proof = format!("{input}.{}", b64(key.sign("EdDSA", input.as_bytes())));
        check(&proof, HTU);
    }
}
