//! RFC 9449 section 4.3: each algorithm accepted, then each check failing on its own.

mod common;

use std::time::Duration;

use common::{HTU, Key, Proof, TOKEN, ath, b64, now};
use serde_json::json;
use time::OffsetDateTime;
use token_dpop::{Algorithm, DpopConfig, DpopError, DpopVerifier, NonceKey, thumbprint};

fn verifier() -> DpopVerifier {
    DpopVerifier::new(DpopConfig::new())
}

fn verify(proof: &str) -> Result<token_dpop::VerifiedProof, DpopError> {
    verifier().verify(proof, "GET", HTU, Some(TOKEN), now())
}

fn verify_at(proof: &str, htu: &str) -> Result<token_dpop::VerifiedProof, DpopError> {
    verifier().verify(proof, "GET", htu, Some(TOKEN), now())
}

fn each_algorithm(check: impl Fn(Algorithm)) {
    for alg in Algorithm::ALL {
        check(alg);
    }
}

#[test]
fn valid_proof_is_accepted_for_every_algorithm() {
    each_algorithm(|alg| {
        let proof = Proof::new(alg);
        let verified = verify(&proof.sign()).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.jkt, thumbprint(&proof.key.jwk()).unwrap(), "{alg}");
        assert_eq!(verified.jti, proof.claims["jti"].as_str().unwrap());
        assert_eq!(verified.iat, now());
        assert!(!verified.nonce_rollover_soon);
        assert_eq!(verified.jti_expires_at, now() + Duration::from_secs(60));
    });
}

#[test]
fn proof_without_access_token_needs_no_ath() {
    let proof = Proof::new(Algorithm::Es256).without_claim("ath").sign();
    verifier().verify(&proof, "GET", HTU, None, now()).unwrap();
}

#[test]
fn verify_does_not_detect_replay_the_caller_claims_the_jti() {
    let proof = Proof::new(Algorithm::EdDsa).sign();
    let first = verify(&proof).unwrap();
    let second = verify(&proof).unwrap();
    assert_eq!(first.jti, second.jti);
}

#[test]
fn oversized_proof_is_refused_before_parsing() {
    let small = DpopVerifier::new(DpopConfig::new().max_proof_bytes(64));
    let proof = Proof::new(Algorithm::Es256).sign();
    assert_eq!(
        small.verify(&proof, "GET", HTU, None, now()),
        Err(DpopError::TooLarge)
    );
    let junk = "x".repeat(8 * 1024 + 1);
    assert_eq!(verify(&junk), Err(DpopError::TooLarge));
}

#[test]
fn oversized_header_is_refused_before_parsing() {
    let proof = format!("{}.e30.AA", "e".repeat(4097));
    assert_eq!(verify(&proof), Err(DpopError::TooLarge));
}

#[test]
fn non_jws_strings_are_malformed() {
    let good = Proof::new(Algorithm::Es256).sign();
    let parts: Vec<&str> = good.split('.').collect();
    for proof in [
        String::new(),
        "abc".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        format!("{}.{}.", parts[0], parts[1]),
        format!(".{}.{}", parts[1], parts[2]),
        format!("{}={}.{}.{}", parts[0], "", parts[1], parts[2]),
        format!("{}.{}.{}+", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", b64("not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64("[1,2]"), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], b64("{\"jti\":"), parts[2]),
    ] {
        assert_eq!(verify(&proof), Err(DpopError::Malformed), "{proof:?}");
    }
}

#[test]
fn duplicate_header_members_are_malformed() {
    let proof = Proof::new(Algorithm::Es256);
    let header = format!(
        r#"{{"typ":"dpop+jwt","alg":"ES256","alg":"ES256","jwk":{}}}"#,
        proof.key.jwk()
    );
    let input = format!("{}.{}", b64(header), b64(proof.claims.to_string()));
    let signed = format!("{input}.{}", b64(proof.key.sign("ES256", input.as_bytes())));
    assert_eq!(verify(&signed), Err(DpopError::Malformed));
}

#[test]
fn crit_header_is_malformed() {
    let proof = Proof::new(Algorithm::Es256)
        .header("crit", json!(["exp"]))
        .sign();
    assert_eq!(verify(&proof), Err(DpopError::Malformed));
}

#[test]
fn wrong_typ_is_refused() {
    for typ in [
        json!("jwt"),
        json!("JWT"),
        json!("at+jwt"),
        json!("application/jwt"),
        json!("applicationé/dpop+jwt"),
        // A multi-byte character across byte 12, where the `application/` prefix would end.
        json!("xéééééééééééé"),
        json!(1),
        json!(null),
    ] {
        let proof = Proof::new(Algorithm::Es256)
            .header("typ", typ.clone())
            .sign();
        assert_eq!(verify(&proof), Err(DpopError::WrongType), "{typ}");
    }
    let proof = Proof::new(Algorithm::Es256).without_header("typ").sign();
    assert_eq!(verify(&proof), Err(DpopError::WrongType));
}

#[test]
fn typ_compares_as_a_media_type() {
    for typ in ["DPoP+JWT", "application/dpop+jwt"] {
        let proof = Proof::new(Algorithm::Es256)
            .header("typ", json!(typ))
            .sign();
        verify(&proof).unwrap_or_else(|e| panic!("{typ}: {e}"));
    }
}

#[test]
fn alg_none_and_hs256_are_never_allowed() {
    for alg in ["none", "HS256", "HS512", "ES384", "es256", ""] {
        let proof = Proof::new(Algorithm::Es256).header("alg", json!(alg));
        // Unsigned, as an attacker would send it.
        let input = format!(
            "{}.{}",
            b64(proof.header.to_string()),
            b64(proof.claims.to_string())
        );
        for signature in [String::new(), b64("sig")] {
            let forged = format!("{input}.{signature}");
            let expected = if signature.is_empty() {
                DpopError::Malformed
            } else {
                DpopError::AlgorithmNotAllowed(alg.to_owned())
            };
            assert_eq!(verify(&forged), Err(expected), "{alg}");
        }
    }
}

#[test]
fn long_alg_is_cut_in_the_error() {
    let alg = "é".repeat(100);
    let proof = Proof::new(Algorithm::Es256)
        .header("alg", json!(alg))
        .sign();
    let Err(DpopError::AlgorithmNotAllowed(echoed)) = verify(&proof) else {
        panic!("expected AlgorithmNotAllowed");
    };
    assert_eq!(echoed, format!("{}…", "é".repeat(16)));
    let err = DpopError::AlgorithmNotAllowed("a\nb".into()).to_string();
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn alg_outside_the_configured_set_is_refused() {
    let only_ed = DpopVerifier::new(DpopConfig::new().algorithms([Algorithm::EdDsa]));
    let proof = Proof::new(Algorithm::Es256).sign();
    assert_eq!(
        only_ed.verify(&proof, "GET", HTU, Some(TOKEN), now()),
        Err(DpopError::AlgorithmNotAllowed("ES256".into()))
    );
    let none = DpopVerifier::new(DpopConfig::new().algorithms([]));
    assert_eq!(none.algorithms_header(), "");
    assert!(none.verify(&proof, "GET", HTU, Some(TOKEN), now()).is_err());
}

#[test]
fn missing_jwk_is_refused() {
    let proof = Proof::new(Algorithm::Es256).without_header("jwk").sign();
    assert_eq!(verify(&proof), Err(DpopError::MissingJwk));
    let proof = Proof::new(Algorithm::Es256)
        .header("jwk", json!("key"))
        .sign();
    assert_eq!(verify(&proof), Err(DpopError::MissingJwk));
}

#[test]
fn private_key_members_in_jwk_are_refused() {
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        let mut proof = Proof::new(Algorithm::Es256);
        proof.header["jwk"][member] = json!("AAAA");
        assert_eq!(
            verify(&proof.sign()),
            Err(DpopError::PrivateKeyInJwk),
            "{member}"
        );
    }
}

#[test]
fn key_of_another_type_than_alg_is_refused() {
    // An Ed25519 key in a proof that says ES256, and the reverse.
    let mut proof = Proof::new(Algorithm::Es256);
    proof.header["jwk"] = Key::new(Algorithm::EdDsa).jwk();
    assert_eq!(verify(&proof.sign()), Err(DpopError::UnsupportedKey));
    let mut proof = Proof::new(Algorithm::Ps256);
    proof.header["jwk"] = Key::new(Algorithm::Es256).jwk();
    assert_eq!(verify(&proof.sign()), Err(DpopError::UnsupportedKey));
}

#[test]
fn point_not_on_the_curve_is_refused() {
    let mut proof = Proof::new(Algorithm::Es256);
    proof.header["jwk"]["y"] = json!(b64([7u8; 32]));
    assert_eq!(verify(&proof.sign()), Err(DpopError::UnsupportedKey));
}

#[test]
fn rsa_key_below_2048_bits_is_refused() {
    let mut proof = Proof::new(Algorithm::Rs256);
    // An odd 1024-bit modulus: refused for its size before any signature work.
    let mut n = [0xffu8; 128];
    n[127] = 0xfb;
    proof.header["jwk"]["n"] = json!(b64(n));
    assert_eq!(verify(&proof.sign()), Err(DpopError::UnsupportedKey));
    // 2047 bits.
    let mut n = [0xffu8; 256];
    n[0] = 0x7f;
    proof.header["jwk"]["n"] = json!(b64(n));
    assert_eq!(verify(&proof.sign()), Err(DpopError::UnsupportedKey));
}

#[test]
fn rsa_key_above_4096_bits_is_refused() {
    let mut proof = Proof::new(Algorithm::Ps256);
    proof.header["jwk"]["n"] = json!(b64([0xffu8; 513]));
    assert_eq!(verify(&proof.sign()), Err(DpopError::UnsupportedKey));
}

#[test]
fn bad_signature_is_refused_for_every_algorithm() {
    each_algorithm(|alg| {
        let proof = Proof::new(alg).sign();
        let (input, signature) = proof.rsplit_once('.').unwrap();
        let mut bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
                .unwrap();
        bytes[5] ^= 0x01;
        let tampered = format!("{input}.{}", b64(&bytes));
        assert_eq!(verify(&tampered), Err(DpopError::BadSignature), "{alg}");
        // A signature of the wrong length.
        let short = format!("{input}.{}", b64(&bytes[..10]));
        assert_eq!(verify(&short), Err(DpopError::BadSignature), "{alg}");
    });
}

#[test]
fn claims_changed_after_signing_are_refused() {
    let signed = Proof::new(Algorithm::Es256).sign();
    let parts: Vec<&str> = signed.split('.').collect();
    let other = Proof::new(Algorithm::Es256).claim("htm", json!("GET"));
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        b64(other.claims.to_string()),
        parts[2]
    );
    assert_eq!(verify(&swapped), Err(DpopError::BadSignature));
}

#[test]
fn signature_by_another_key_is_refused() {
    let mut proof = Proof::new(Algorithm::EdDsa);
    proof.header["jwk"] = Key::new(Algorithm::EdDsa).jwk();
    assert_eq!(verify(&proof.sign()), Err(DpopError::BadSignature));
}

#[test]
fn rs256_signature_does_not_pass_as_ps256() {
    let proof = Proof::new(Algorithm::Ps256);
    let input = format!(
        "{}.{}",
        b64(proof.header.to_string()),
        b64(proof.claims.to_string())
    );
    let pkcs1 = proof.key.sign("RS256", input.as_bytes());
    assert_eq!(
        verify(&format!("{input}.{}", b64(pkcs1))),
        Err(DpopError::BadSignature)
    );
}

#[test]
fn wrong_htm_is_refused() {
    let proof = Proof::new(Algorithm::Es256).sign();
    let result = verifier().verify(&proof, "POST", HTU, Some(TOKEN), now());
    assert_eq!(result, Err(DpopError::MethodMismatch));
    // Methods are case-sensitive.
    let result = verifier().verify(&proof, "get", HTU, Some(TOKEN), now());
    assert_eq!(result, Err(DpopError::MethodMismatch));
}

#[test]
fn htu_for_another_path_is_refused() {
    let proof = Proof::new(Algorithm::Es256).sign();
    assert_eq!(
        verify_at(&proof, "https://api.example.com/widgets/1"),
        Err(DpopError::UriMismatch)
    );
    assert_eq!(
        verify_at(&proof, "https://api.example.com/Widgets"),
        Err(DpopError::UriMismatch)
    );
}

#[test]
fn htu_for_another_host_scheme_or_port_is_refused() {
    let proof = Proof::new(Algorithm::Es256).sign();
    for htu in [
        "https://evil.example.com/widgets",
        "http://api.example.com/widgets",
        "https://api.example.com:8443/widgets",
    ] {
        assert_eq!(verify_at(&proof, htu), Err(DpopError::UriMismatch), "{htu}");
    }
}

#[test]
fn htu_query_and_fragment_are_ignored() {
    let proof = Proof::new(Algorithm::Es256)
        .claim("htu", json!(format!("{HTU}?page=2#top")))
        .sign();
    verify_at(&proof, "https://api.example.com/widgets?page=3").unwrap();
}

#[test]
fn htu_default_port_and_case_normalize_as_equal() {
    let proof = Proof::new(Algorithm::Es256)
        .claim("htu", json!("HTTPS://API.Example.COM:443/widgets"))
        .sign();
    verify_at(&proof, HTU).unwrap();
    let proof = Proof::new(Algorithm::Es256).claim("htu", json!(HTU)).sign();
    verify_at(&proof, "https://api.example.com:443/%77idgets").unwrap();
}

#[test]
fn htu_that_is_not_a_uri_is_refused() {
    for htu in [json!("/widgets"), json!("api.example.com/widgets")] {
        let proof = Proof::new(Algorithm::Es256).claim("htu", htu).sign();
        assert_eq!(verify(&proof), Err(DpopError::UriMismatch));
    }
}

#[test]
fn server_uri_that_is_not_absolute_is_a_server_error() {
    let proof = Proof::new(Algorithm::Es256).sign();
    assert_eq!(
        verify_at(&proof, "/widgets"),
        Err(DpopError::InvalidRequestUri)
    );
}

#[test]
fn iat_too_old_is_refused() {
    let old = now() - Duration::from_secs(61);
    let proof = Proof::new(Algorithm::Es256)
        .claim("iat", json!(old.unix_timestamp()))
        .sign();
    assert_eq!(verify(&proof), Err(DpopError::IssuedTooEarly));
    // At the edge of the window it is still accepted.
    let edge = now() - Duration::from_secs(60);
    let proof = Proof::new(Algorithm::Es256)
        .claim("iat", json!(edge.unix_timestamp()))
        .sign();
    verify(&proof).unwrap();
}

#[test]
fn iat_too_new_is_refused() {
    let future = now() + Duration::from_secs(61);
    let proof = Proof::new(Algorithm::Es256)
        .claim("iat", json!(future.unix_timestamp()))
        .sign();
    assert_eq!(verify(&proof), Err(DpopError::IssuedTooLate));
    let edge = now() + Duration::from_secs(60);
    let proof = Proof::new(Algorithm::Es256)
        .claim("iat", json!(edge.unix_timestamp()))
        .sign();
    verify(&proof).unwrap();
}

#[test]
fn iat_window_is_configurable() {
    let strict = DpopVerifier::new(DpopConfig::new().iat_window(Duration::from_secs(5)));
    let old = now() - Duration::from_secs(6);
    let proof = Proof::new(Algorithm::Es256)
        .claim("iat", json!(old.unix_timestamp()))
        .sign();
    assert_eq!(
        strict.verify(&proof, "GET", HTU, Some(TOKEN), now()),
        Err(DpopError::IssuedTooEarly)
    );
}

#[test]
fn fractional_iat_is_accepted_and_non_numeric_iat_is_malformed() {
    let proof = Proof::new(Algorithm::Es256)
        .claim("iat", json!(1_800_000_000.5))
        .sign();
    let verified = verify(&proof).unwrap();
    assert_eq!(verified.iat, now() + Duration::from_millis(500));
    for iat in [json!("1800000000"), json!(null), json!(1e300)] {
        let proof = Proof::new(Algorithm::Es256)
            .claim("iat", iat.clone())
            .sign();
        assert_eq!(verify(&proof), Err(DpopError::Malformed), "{iat}");
    }
}

#[test]
fn missing_jti_is_refused() {
    let proof = Proof::new(Algorithm::Es256).without_claim("jti").sign();
    assert_eq!(verify(&proof), Err(DpopError::MissingJti));
    for jti in [json!(""), json!(42), json!("x".repeat(257))] {
        let proof = Proof::new(Algorithm::Es256).claim("jti", jti).sign();
        assert_eq!(verify(&proof), Err(DpopError::MissingJti));
    }
}

#[test]
fn missing_htm_or_htu_is_malformed() {
    for claim in ["htm", "htu", "iat"] {
        let proof = Proof::new(Algorithm::Es256).without_claim(claim).sign();
        assert_eq!(verify(&proof), Err(DpopError::Malformed), "{claim}");
    }
}

#[test]
fn missing_ath_with_a_token_is_refused() {
    let proof = Proof::new(Algorithm::Es256).without_claim("ath").sign();
    assert_eq!(verify(&proof), Err(DpopError::MissingAth));
}

#[test]
fn wrong_ath_is_refused() {
    let proof = Proof::new(Algorithm::Es256)
        .claim("ath", json!(ath("another token")))
        .sign();
    assert_eq!(verify(&proof), Err(DpopError::AthMismatch));
    let proof = Proof::new(Algorithm::Es256).claim("ath", json!(5)).sign();
    assert_eq!(verify(&proof), Err(DpopError::AthMismatch));
}

fn nonce_verifier(key: [u8; 32]) -> DpopVerifier {
    DpopVerifier::new(DpopConfig::new().nonces(NonceKey::new(key)))
}

#[test]
fn nonce_from_fresh_nonce_is_accepted() {
    let verifier = nonce_verifier([3; 32]);
    let nonce = verifier.fresh_nonce(now()).unwrap();
    let proof = Proof::new(Algorithm::Es256)
        .claim("nonce", json!(nonce))
        .sign();
    let verified = verifier
        .verify(&proof, "GET", HTU, Some(TOKEN), now())
        .unwrap();
    assert!(!verified.nonce_rollover_soon);
}

#[test]
fn nonce_is_accepted_by_another_instance_sharing_the_key() {
    let nonce = nonce_verifier([3; 32]).fresh_nonce(now()).unwrap();
    let proof = Proof::new(Algorithm::EdDsa)
        .claim("nonce", json!(nonce))
        .sign();
    nonce_verifier([3; 32])
        .verify(&proof, "GET", HTU, Some(TOKEN), now())
        .unwrap();
}

#[test]
fn missing_nonce_is_refused_with_use_dpop_nonce() {
    let verifier = nonce_verifier([3; 32]);
    let proof = Proof::new(Algorithm::Es256).sign();
    let err = verifier
        .verify(&proof, "GET", HTU, Some(TOKEN), now())
        .unwrap_err();
    assert_eq!(err, DpopError::NonceRequired);
    assert_eq!(err.error_code(), "use_dpop_nonce");
}

#[test]
fn nonce_from_the_previous_window_asks_for_rollover() {
    let verifier = nonce_verifier([3; 32]);
    let old = verifier
        .fresh_nonce(now() - Duration::from_secs(300))
        .unwrap();
    let proof = Proof::new(Algorithm::Es256)
        .claim("nonce", json!(old))
        .sign();
    let verified = verifier
        .verify(&proof, "GET", HTU, Some(TOKEN), now())
        .unwrap();
    assert!(verified.nonce_rollover_soon);
    // The nonce to offer instead is the current window's.
    let fresh = verifier.fresh_nonce(now()).unwrap();
    assert_ne!(fresh, old);
    let proof = Proof::new(Algorithm::Es256)
        .claim("nonce", json!(fresh))
        .sign();
    let verified = verifier
        .verify(&proof, "GET", HTU, Some(TOKEN), now())
        .unwrap();
    assert!(!verified.nonce_rollover_soon);
}

#[test]
fn stale_nonce_is_refused_with_use_dpop_nonce() {
    let verifier = nonce_verifier([3; 32]);
    let nonce = verifier
        .fresh_nonce(now() - Duration::from_secs(600))
        .unwrap();
    let proof = Proof::new(Algorithm::Es256)
        .claim("nonce", json!(nonce))
        .sign();
    let err = verifier
        .verify(&proof, "GET", HTU, Some(TOKEN), now())
        .unwrap_err();
    assert_eq!(err, DpopError::NonceInvalid);
    assert_eq!(err.error_code(), "use_dpop_nonce");
}

#[test]
fn nonce_from_another_key_is_refused() {
    let nonce = nonce_verifier([4; 32]).fresh_nonce(now()).unwrap();
    let proof = Proof::new(Algorithm::Es256)
        .claim("nonce", json!(nonce))
        .sign();
    let result = nonce_verifier([3; 32]).verify(&proof, "GET", HTU, Some(TOKEN), now());
    assert_eq!(result, Err(DpopError::NonceInvalid));
    for bogus in [json!("made-up"), json!(7)] {
        let proof = Proof::new(Algorithm::Es256).claim("nonce", bogus).sign();
        let result = nonce_verifier([3; 32]).verify(&proof, "GET", HTU, Some(TOKEN), now());
        assert_eq!(result, Err(DpopError::NonceInvalid));
    }
}

#[test]
fn nonces_are_ignored_when_not_configured() {
    let proof = Proof::new(Algorithm::Es256)
        .claim("nonce", json!("anything"))
        .sign();
    verify(&proof).unwrap();
    assert_eq!(verifier().fresh_nonce(now()), None);
}

#[test]
fn error_codes_follow_rfc_9449() {
    assert_eq!(DpopError::BadSignature.error_code(), "invalid_dpop_proof");
    assert_eq!(
        DpopError::AlgorithmNotAllowed("none".into()).error_code(),
        "invalid_dpop_proof"
    );
    assert_eq!(DpopError::NonceInvalid.error_code(), "use_dpop_nonce");
}

#[test]
fn error_messages_name_the_check() {
    assert!(DpopError::WrongType.to_string().contains("dpop+jwt"));
    assert!(
        DpopError::AlgorithmNotAllowed("HS256".into())
            .to_string()
            .contains("\"HS256\"")
    );
    assert!(DpopError::IssuedTooEarly.to_string().contains("iat"));
    assert!(DpopError::AthMismatch.to_string().contains("SHA-256"));
}

#[test]
fn algorithms_header_lists_the_configured_algorithms() {
    assert_eq!(verifier().algorithms_header(), "ES256 EdDSA PS256 RS256");
    let config =
        DpopConfig::new().algorithms([Algorithm::Rs256, Algorithm::Es256, Algorithm::Rs256]);
    assert_eq!(DpopVerifier::new(config).algorithms_header(), "RS256 ES256");
}

#[test]
fn verifier_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<DpopVerifier>();
    let a = verifier();
    let b = a.clone();
    let proof = Proof::new(Algorithm::Es256).sign();
    assert_eq!(
        a.verify(&proof, "GET", HTU, Some(TOKEN), now()),
        b.verify(&proof, "GET", HTU, Some(TOKEN), now())
    );
}

#[test]
fn proof_at_a_far_clock_does_not_panic() {
    let proof = Proof::new(Algorithm::Es256)
        .claim("iat", json!(i64::MAX))
        .sign();
    assert_eq!(verify(&proof), Err(DpopError::Malformed));
    let far = OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap();
    let proof = Proof::new(Algorithm::Es256).sign();
    let verifier = DpopVerifier::new(DpopConfig::new().iat_window(Duration::MAX));
    verifier
        .verify(&proof, "GET", HTU, Some(TOKEN), far)
        .unwrap();
}
