//! The secret-scanner recipe in `token_core::format`'s rustdoc (and the README), followed to the
//! letter: the documented pattern finds every token in surrounding text, group 2 is its id, and
//! the offline CRC confirmation accepts it and rejects an altered one.

use proptest::prelude::*;
use regex::Regex;
use token_core::{PlaintextToken, TokenPrefix};

/// The pattern exactly as documented.
const PATTERN: &str =
    r"\b([a-z][a-z0-9_]{0,31})_([0-9A-Za-z]{22})([0-9A-Za-z]{43})([0-9A-Za-z]{6})\b";

const ALPHABET: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The documented confirmation: CRC-32/IEEE over groups 2 and 3 as ASCII, as 6 base62 digits
/// (most significant first), equals group 4.
fn confirmed(id: &str, secret: &str, checksum: &str) -> bool {
    let mut crc = u64::from(crc32fast::hash(format!("{id}{secret}").as_bytes()));
    let mut digits = [b'0'; 6];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET.as_bytes()[(crc % 62) as usize];
        crc /= 62;
    }
    crc == 0 && digits == checksum.as_bytes()
}

#[test]
fn the_pattern_is_the_documented_one() {
    for (name, text) in [
        (
            "token-core/src/format/mod.rs",
            include_str!("../src/format/mod.rs"),
        ),
        ("README.md", include_str!("../../README.md")),
    ] {
        assert!(text.contains(PATTERN), "{name} documents another pattern");
    }
}

proptest! {
    #[test]
    fn scanner_finds_and_confirms_every_token(
        prefix in "[a-z][a-z0-9_]{0,31}",
        before in "[ =:\"'(,\n]{1,3}",
        after in "[ ;\"'),\n]{1,3}",
    ) {
        let regex = Regex::new(PATTERN).unwrap();
        let token = PlaintextToken::generate(&TokenPrefix::new(&prefix).unwrap()).unwrap();
        let secret = token.expose_secret();
        let text = format!("config{before}{secret}{after}more text");
        let found: Vec<_> = regex.captures_iter(&text).collect();
        prop_assert_eq!(found.len(), 1);
        let hit = &found[0];
        prop_assert_eq!(&hit[0], secret);
        prop_assert_eq!(&hit[1], prefix.as_str());
        prop_assert_eq!(&hit[2], token.id().to_string());
        prop_assert!(confirmed(&hit[2], &hit[3], &hit[4]));

        // One changed character in the secret: still the shape, no longer confirmed.
        let mut altered = secret.to_owned().into_bytes();
        let at = prefix.len() + 1 + 22 + 5;
        altered[at] = if altered[at] == b'a' { b'b' } else { b'a' };
        let altered = String::from_utf8(altered).unwrap();
        let hit = regex.captures(&altered).unwrap();
        prop_assert!(!confirmed(&hit[2], &hit[3], &hit[4]));
    }
}
