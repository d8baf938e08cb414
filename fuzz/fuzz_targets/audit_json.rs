//! Audit JSON decoding: `serde_json::from_slice::<AuditRecord>` (one line of
//! `TokenManager::export_audit_jsonl`) never panics, and a decoded record re-serializes to JSON
//! that decodes to an equal record and re-serializes to the same bytes (a fixed point).
#![no_main]

use libfuzzer_sys::fuzz_target;
use token_core::{AuditEvent, AuditKind, AuditRecord};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = serde_json::from_slice::<AuditRecord>(data) {
        // Written the way export_audit_jsonl writes it.
        let mut line = Vec::new();
        serde_json::to_writer(&mut line, &record).expect("a decoded record serializes");
        let again: AuditRecord = serde_json::from_slice(&line).unwrap_or_else(|e| {
            panic!(
                "re-serialized record does not decode: {e}: {}",
                String::from_utf8_lossy(&line)
            )
        });
        assert_eq!(again, record, "audit record JSON round trip");
        assert_eq!(
            serde_json::to_vec(&again).unwrap(),
            line,
            "not a fixed point"
        );
        let kind = record.event.kind;
        assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
    }
    // The event alone (the store-facing type) decodes and round trips the same way.
    if let Ok(event) = serde_json::from_slice::<AuditEvent>(data) {
        let json = serde_json::to_vec(&event).expect("a decoded event serializes");
        let again: AuditEvent = serde_json::from_slice(&json).expect("re-serialized event decodes");
        assert_eq!(again, event, "audit event JSON round trip");
    }
});
