//! What the secret searches share: a `tracing` subscriber that keeps everything it sees as text,
//! and every form a token's secret could leak in (the token string, the secret's base62 digits,
//! its 32 bytes as hex, base64, base64url and a byte array).

#![allow(dead_code)] // each test binary uses what it needs

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Writes every span (name and fields) and event (fields) it sees, at every level, as text.
#[derive(Clone, Default)]
pub(crate) struct Capture {
    pub(crate) text: Arc<Mutex<String>>,
    next_id: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut text = self.text.lock().unwrap();
        let _ = write!(text, "\nspan {}:", span.metadata().name());
        span.record(&mut Fields(&mut text));
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut text = self.text.lock().unwrap();
        text.push_str("\n  record:");
        values.record(&mut Fields(&mut text));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = self.text.lock().unwrap();
        let _ = write!(text, "\nevent {}:", event.metadata().target());
        event.record(&mut Fields(&mut text));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The 32 secret bytes of a token string (`prefix_` + 22 id + 43 secret + 6 checksum digits,
/// fixed-width big-endian base62).
pub(crate) fn secret_bytes(token: &str) -> [u8; 32] {
    let body = &token[token.len() - 71..];
    let mut number = [0u8; 32];
    for digit in body[22..65].bytes() {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'A'..=b'Z' => digit - b'A' + 10,
            b'a'..=b'z' => digit - b'a' + 36,
            _ => panic!("not base62: {digit}"),
        };
        let mut carry = u32::from(value);
        for byte in number.iter_mut().rev() {
            let acc = u32::from(*byte) * 62 + carry;
            *byte = acc as u8;
            carry = acc >> 8;
        }
    }
    number
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The forms a secret could leak in.
pub(crate) fn forms(token: &str) -> Vec<String> {
    let raw = secret_bytes(token);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let body = &token[token.len() - 71..];
    vec![
        token.to_owned(),
        body[22..65].to_owned(),
        hex.clone(),
        hex.to_uppercase(),
        base64(&raw),
        base64(&raw)
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_"),
        format!("{raw:?}"),
    ]
}
