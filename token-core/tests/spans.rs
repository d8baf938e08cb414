//! The manager's tracing spans: every operation of a lifecycle has its span with the documented
//! fields, and nothing a subscriber sees at TRACE contains a token's secret (raw, hex, base64 or
//! the token's own base62) or a whole token string.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use token_core::{
    DeriveRequest, HashKey, IssueRequest, KeyId, Keyring, RevokeSelector, ScopeSet, TokenManager,
};
use token_store_memory::MemoryStore;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Writes every span (name and fields) and event (fields) it sees, at every level, as text.
#[derive(Clone, Default)]
struct Capture {
    text: Arc<Mutex<String>>,
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
fn secret_bytes(token: &str) -> [u8; 32] {
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
fn forms(token: &str) -> Vec<String> {
    let raw = secret_bytes(token);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let body = &token[token.len() - 71..];
    vec![
        token.to_owned(),
        body[22..65].to_owned(),
        hex.clone(),
        hex.to_uppercase(),
        base64(&raw),
        format!("{raw:?}"),
    ]
}

#[test]
fn spans_cover_a_lifecycle_and_never_carry_a_secret() {
    let capture = Capture::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scopes = |text: &str| ScopeSet::parse(text).unwrap();
    let mut tokens = Vec::new();
    tracing::subscriber::with_default(capture.clone(), || {
        runtime.block_on(async {
            let manager = TokenManager::builder(
                MemoryStore::new(),
                Keyring::new(HashKey::new(KeyId::new(1), [5; 32])),
            )
            .prefix("acme")
            .unwrap()
            .build()
            .unwrap();
            let root = manager
                .issue(IssueRequest::new("user:42", scopes("a b")).ttl(Duration::from_secs(3600)))
                .await
                .unwrap();
            tokens.push(root.token.expose_secret().to_owned());
            let read = "a".parse().unwrap();
            manager
                .validate(root.token.expose_secret(), &[read])
                .await
                .unwrap();
            let mut wrong = root.token.expose_secret().to_owned();
            // A different digit (the random one may already be '0'), so the checksum fails.
            let at = wrong.len() - 30;
            let other = if &wrong[at..=at] == "0" { "1" } else { "0" };
            wrong.replace_range(at..=at, other);
            let _ = manager.validate(&wrong, &[]).await;
            let child = manager
                .derive(root.token.id(), DeriveRequest::new(scopes("a")))
                .await
                .unwrap();
            tokens.push(child.token.expose_secret().to_owned());
            let successor = manager
                .rotate(root.token.id(), Duration::ZERO)
                .await
                .unwrap();
            tokens.push(successor.token.expose_secret().to_owned());
            let _ = manager
                .issue(
                    IssueRequest::new("user:42", scopes("a")).ttl(Duration::from_secs(999_999_999)),
                )
                .await;
            manager
                .revoke(RevokeSelector::Token(successor.token.id()), "done")
                .await
                .unwrap();
            let _ = manager.validate(successor.token.expose_secret(), &[]).await;
            let _ = manager.sweep().await;
            manager.flush_usage().await.unwrap();
        });
    });
    let text = capture.text.lock().unwrap().clone();
    for span in [
        "span token.issue",
        "span token.validate",
        "span token.derive",
        "span token.rotate",
        "span token.revoke",
        "span token.sweep",
    ] {
        assert!(text.contains(span), "no {span} in:\n{text}");
    }
    for field in [
        "outcome=ok",
        "outcome=refused",
        "reason=bad_checksum",
        "reason=revoked",
        "reason=invalid_request",
        "subject=user:42",
        "selector=token",
        "revoked=",
    ] {
        assert!(text.contains(field), "no {field} in:\n{text}");
    }
    for token in &tokens {
        for form in forms(token) {
            assert!(!text.contains(&form), "a secret form leaked: {form}");
        }
    }
}
