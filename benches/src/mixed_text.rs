//! Mixed text for the scanner's throughput: source code, logs with JSON escapes, URL-encoded
//! query strings, base64 blobs, YAML, prose, hashes and snake_case identifiers (every `_` is a
//! place the token pattern must look at), with one real token about every 64 KiB.

use std::io::{self, Write};

use token_core::{PlaintextToken, TokenPrefix};

const WORDS: [&str; 24] = [
    "request",
    "user_id",
    "widget",
    "billing",
    "tenant",
    "session",
    "deploy_key",
    "config",
    "retry",
    "timeout",
    "cache_hit",
    "payload",
    "invoice",
    "service",
    "region_eu",
    "checksum",
    "handler",
    "queue",
    "status",
    "latency_ms",
    "account",
    "feature_flag",
    "batch",
    "cursor",
];

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Writes about `bytes` bytes of mixed text to `out`; returns how many tokens it planted.
///
/// ```
/// let mut text = Vec::new();
/// let planted = benches::mixed_text::write(&mut text, 256 * 1024, 1)?;
/// assert!(text.len() >= 256 * 1024 && planted >= 3);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write(out: &mut impl Write, bytes: u64, seed: u64) -> io::Result<usize> {
    let prefix = TokenPrefix::new("acme_live").map_err(io::Error::other)?;
    let mut walk = crate::Walk(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let word = |walk: &mut crate::Walk| WORDS[walk.next_index(WORDS.len())];
    let (mut written, mut next_token, mut planted) = (0u64, 0u64, 0usize);
    let mut line = String::with_capacity(512);
    while written < bytes {
        line.clear();
        let n = walk.next_index(1_000_000);
        match walk.next_index(9) {
            0 => line.push_str(&format!(
                "    let {} = {}.{}(&{}, {n})?; // {} {}\n",
                word(&mut walk), word(&mut walk), word(&mut walk), word(&mut walk), word(&mut walk), word(&mut walk)
            )),
            1 => line.push_str(&format!(
                "{{\"ts\":\"2026-12-01T10:{:02}:00Z\",\"level\":\"info\",\"msg\":\"{} {} \\\"{}\\\" done\\n\",\"{}\":{n}}}\n",
                n % 60, word(&mut walk), word(&mut walk), word(&mut walk), word(&mut walk)
            )),
            2 => line.push_str(&format!(
                "GET /api/{}?next=https%3A%2F%2Fapp.example%2F{}%3Fpage%3D{n}&{}={} HTTP/1.1 200\n",
                word(&mut walk), word(&mut walk), word(&mut walk), n * 7
            )),
            3 => {
                line.push_str("  data: ");
                for _ in 0..(120 + walk.next_index(80)) {
                    line.push(char::from(BASE64[walk.next_index(BASE64.len())]));
                }
                line.push('\n');
            }
            4 => line.push_str(&format!("  {}_{}: {} # {}\n", word(&mut walk), word(&mut walk), n, word(&mut walk))),
            5 => line.push_str(&format!(
                "The {} {} the {} before the {} and after {}; see section {n}.\n",
                word(&mut walk), word(&mut walk), word(&mut walk), word(&mut walk), word(&mut walk)
            )),
            6 => line.push_str(&format!("sha256:{:016x}{:016x}{:016x}{:016x}\n", walk.0, walk.0 ^ 1, walk.0 ^ 2, walk.0 ^ 3)),
            7 => line.push_str(&format!(
                "{}_{}_{}_{} = {}_{}({}_{})\n",
                word(&mut walk), word(&mut walk), word(&mut walk), word(&mut walk), word(&mut walk), word(&mut walk), word(&mut walk), word(&mut walk)
            )),
            _ => line.push_str(&format!("export {}_{}=\"{}{n}\"\n", word(&mut walk).to_uppercase(), n % 97, word(&mut walk))),
        }
        if written >= next_token {
            let token = PlaintextToken::generate(&prefix).map_err(io::Error::other)?;
            line.push_str("ACME_TOKEN=");
            line.push_str(token.expose_secret());
            line.push('\n');
            planted += 1;
            next_token += 64 * 1024;
        }
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    Ok(planted)
}
