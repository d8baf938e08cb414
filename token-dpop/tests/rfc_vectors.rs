//! Test vectors from RFC 9449 (DPoP) and RFC 7638 (JWK thumbprints).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use token_dpop::{DpopConfig, DpopError, DpopVerifier, Thumbprint, thumbprint};

/// RFC 9449 section 4.1, figure 2 (line breaks removed).
const FIGURE_2_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";

/// RFC 9449 section 7.1, figure 13: a proof for a protected resource, with `ath`.
const FIGURE_13_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";

/// The access token of RFC 9449 section 7.1, figure 12.
const FIGURE_12_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";

/// The `cnf.jkt` RFC 9449 section 6.1 gives for the examples' key.
const EXAMPLE_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

#[test]
fn rfc9449_figure_2_token_request_proof_verifies_at_its_iat() {
    let verifier = DpopVerifier::new(DpopConfig::new());
    let verified = verifier
        .verify(
            FIGURE_2_PROOF,
            "POST",
            "https://server.example.com/token",
            None,
            at(1_562_262_616),
        )
        .unwrap();
    assert_eq!(verified.jti, "-BwC3ESc6acc2lTc");
    assert_eq!(verified.iat, at(1_562_262_616));
    assert_eq!(verified.jkt.as_str(), EXAMPLE_JKT);
}

#[test]
fn rfc9449_figure_2_proof_is_too_old_today() {
    let verifier = DpopVerifier::new(DpopConfig::new());
    let result = verifier.verify(
        FIGURE_2_PROOF,
        "POST",
        "https://server.example.com/token",
        None,
        at(1_800_000_000),
    );
    assert_eq!(result, Err(DpopError::IssuedTooEarly));
}

#[test]
fn rfc9449_figure_13_resource_proof_verifies_with_its_access_token() {
    let verifier = DpopVerifier::new(DpopConfig::new());
    let htu = "https://resource.example.org/protectedresource";
    let verified = verifier
        .verify(
            FIGURE_13_PROOF,
            "GET",
            htu,
            Some(FIGURE_12_TOKEN),
            at(1_562_262_618),
        )
        .unwrap();
    assert_eq!(verified.jti, "e1j3V_bKic8-LAEB");
    assert_eq!(verified.jkt.as_str(), EXAMPLE_JKT);
    let result = verifier.verify(
        FIGURE_13_PROOF,
        "GET",
        htu,
        Some("another"),
        at(1_562_262_618),
    );
    assert_eq!(result, Err(DpopError::AthMismatch));
}

#[test]
fn rfc9449_ath_example_is_base64url_sha256_of_the_token() {
    assert_eq!(
        URL_SAFE_NO_PAD.encode(Sha256::digest(FIGURE_12_TOKEN)),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

#[test]
fn rfc9449_example_key_thumbprint() {
    let jwk = json!({
        "kty": "EC",
        "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
        "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
        "crv": "P-256"
    });
    assert_eq!(thumbprint(&jwk).unwrap().as_str(), EXAMPLE_JKT);
}

#[test]
fn rfc7638_section_3_1_rsa_thumbprint() {
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    let expected: Thumbprint = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        .parse()
        .unwrap();
    assert_eq!(thumbprint(&jwk).unwrap(), expected);
}
