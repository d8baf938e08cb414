//! The SQL row decoders of `token-store-sql` (`decode_token`, `decode_event`,
//! `decode_audit_record`, `decode_checkpoint`) fed arbitrary column values: never panic, and
//! either decode or fail with `StoreError::Corrupt`. A decoded token re-encoded with
//! `token_params` (the stores' insert values) decodes to an equal record; a decoded audit row
//! re-encoded column by column decodes to an equal record.
//!
//! The input picks a starting row (empty, or a valid token and audit row) and overrides columns
//! with arbitrary cells, so both the refusals and the success path are reached.
#![no_main]

use std::collections::{BTreeMap, HashMap};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use token_core::{AuditRecord, Labels, StoreError, TokenRecord};
use token_store_sql::{
    Columns, Param, RowReader, TOKEN_INSERT_COLUMNS, decode_audit_record, decode_checkpoint,
    decode_event, decode_token, id_bytes, micros, token_params,
};

const STORE: &str = "fuzz";

/// Every column any decoder reads.
const COLUMNS: &[&str] = &[
    "id",
    "hash",
    "hash_key_id",
    "prefix",
    "subject",
    "scopes",
    "name",
    "description",
    "created_at",
    "created_by",
    "expires_at",
    "not_before",
    "idle_timeout_us",
    "last_used_at",
    "use_count",
    "max_uses",
    "parent_id",
    "family_id",
    "rotated_from",
    "rotated_to",
    "revoked_at",
    "revoke_reason",
    "revoked_by",
    "suspended_at",
    "metadata",
    "allowed_cidrs",
    "dpop_jkt",
    "labels",
    "seq",
    "at",
    "kind",
    "token_id",
    "fingerprint",
    "actor",
    "client_ip",
    "user_agent",
    "request_id",
    "reason",
    "detail",
    "chain_key_id",
];

/// One stored value, as a driver would hand it back.
#[derive(Arbitrary, Debug, Clone)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    /// The driver could not read the value (wrong type, bad encoding).
    Unreadable,
}

#[derive(Arbitrary, Debug)]
struct Input {
    valid_base: bool,
    overrides: Vec<(u8, Cell)>,
    checkpoint: (i64, Vec<u8>, Option<i64>, Option<Vec<u8>>, Option<i64>),
}

#[derive(Default, Clone)]
struct Row(HashMap<&'static str, Cell>);

impl Row {
    fn get(&self, column: &str) -> &Cell {
        self.0.get(column).unwrap_or(&Cell::Null)
    }

    fn set(&mut self, column: &'static str, cell: Cell) {
        self.0.insert(column, cell);
    }
}

impl Columns for Row {
    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, String> {
        match self.get(column) {
            Cell::Null => Ok(None),
            Cell::Bytes(b) => Ok(Some(b.clone())),
            Cell::Unreadable => Err("unreadable".into()),
            _ => Err("not bytes".into()),
        }
    }
    fn int(&self, column: &str) -> Result<Option<i64>, String> {
        match self.get(column) {
            Cell::Null => Ok(None),
            Cell::Int(i) => Ok(Some(*i)),
            Cell::Unreadable => Err("unreadable".into()),
            _ => Err("not an integer".into()),
        }
    }
    fn text(&self, column: &str) -> Result<Option<String>, String> {
        match self.get(column) {
            Cell::Null => Ok(None),
            Cell::Text(t) => Ok(Some(t.clone())),
            Cell::Unreadable => Err("unreadable".into()),
            _ => Err("not text".into()),
        }
    }
}

fn valid_row() -> Row {
    let mut row = Row::default();
    row.set("id", Cell::Bytes(vec![7; 16]));
    row.set("hash", Cell::Bytes(vec![9; 32]));
    row.set("hash_key_id", Cell::Int(1));
    row.set("prefix", Cell::Text("acme".into()));
    row.set("subject", Cell::Text("user:1".into()));
    row.set("scopes", Cell::Text("widgets:read repo:*:write".into()));
    row.set("created_at", Cell::Int(1_700_000_000_000_000));
    row.set("use_count", Cell::Int(0));
    row.set("family_id", Cell::Bytes(vec![7; 16]));
    row.set("seq", Cell::Int(1));
    row.set("at", Cell::Int(1_700_000_000_000_000));
    row.set("kind", Cell::Text("issued".into()));
    row
}

/// Labels as the SQLite store keeps them: one JSON object of text values.
fn labels(r: &RowReader<'_, Row>) -> Result<Labels, StoreError> {
    match r.opt_text("labels")? {
        None => Ok(Labels::new()),
        Some(json) => serde_json::from_str::<BTreeMap<String, String>>(&json)
            .map_err(|e| r.corrupt("labels", format!("not text key/value pairs ({e})"))),
    }
}

fn assert_corrupt(error: &StoreError) {
    assert!(
        matches!(error, StoreError::Corrupt { store: STORE, .. }),
        "a bad row must be Corrupt, got {error:?}"
    );
}

fn cell(param: Param) -> Cell {
    match param {
        Param::Int(i) | Param::OptInt(Some(i)) => Cell::Int(i),
        Param::Text(t) | Param::OptText(Some(t)) => Cell::Text(t),
        Param::Bytes(b) | Param::OptBytes(Some(b)) => Cell::Bytes(b),
        _ => Cell::Null,
    }
}

/// The row the stores would write for `record`.
fn token_row(record: &TokenRecord) -> Row {
    let params = token_params(STORE, record).expect("a decoded record is representable");
    let names: Vec<&'static str> = TOKEN_INSERT_COLUMNS.split(',').map(str::trim).collect();
    assert_eq!(
        names.len(),
        params.len(),
        "TOKEN_INSERT_COLUMNS and token_params disagree"
    );
    let mut row = Row::default();
    for (name, param) in names.into_iter().zip(params) {
        row.set(name, cell(param));
    }
    if !record.labels.is_empty() {
        row.set(
            "labels",
            Cell::Text(serde_json::to_string(&record.labels).unwrap()),
        );
    }
    row
}

/// The row the stores would write for `record`.
fn audit_row(record: &AuditRecord) -> Row {
    let e = &record.event;
    let text = |t: &Option<String>| t.clone().map_or(Cell::Null, Cell::Text);
    let mut row = Row::default();
    row.set("seq", Cell::Int(i64::try_from(record.seq).unwrap()));
    row.set("at", Cell::Int(micros(e.at)));
    row.set("kind", Cell::Text(e.kind.as_str().into()));
    row.set(
        "token_id",
        e.token_id
            .map_or(Cell::Null, |id| Cell::Bytes(id_bytes(id))),
    );
    row.set("fingerprint", text(&e.fingerprint));
    row.set("subject", text(&e.subject));
    row.set("actor", text(&e.actor));
    row.set("client_ip", text(&e.client_ip));
    row.set("user_agent", text(&e.user_agent));
    row.set("request_id", text(&e.request_id));
    row.set("reason", text(&e.reason));
    row.set("detail", text(&e.detail));
    row.set("hash", Cell::Bytes(record.hash.as_bytes().to_vec()));
    row.set(
        "chain_key_id",
        record
            .chain_key_id
            .map_or(Cell::Null, |k| Cell::Int(i64::from(k.get()))),
    );
    row
}

fuzz_target!(|input: Input| {
    let mut row = if input.valid_base {
        valid_row()
    } else {
        Row::default()
    };
    // Anchor: the untouched valid row decodes, so the success path is always exercised.
    let untouched = input.valid_base && input.overrides.is_empty();
    for (index, cell) in input.overrides {
        row.set(COLUMNS[usize::from(index) % COLUMNS.len()], cell);
    }

    if untouched {
        assert!(
            decode_token(&row, STORE, labels).is_ok(),
            "the valid token row"
        );
        assert!(
            decode_audit_record(&row, STORE).is_ok(),
            "the valid audit row"
        );
    }
    match decode_token(&row, STORE, labels) {
        Ok(record) => {
            let again = decode_token(&token_row(&record), STORE, labels)
                .unwrap_or_else(|e| panic!("re-encoded token row does not decode: {e}"));
            assert_eq!(again, record, "token row round trip");
        }
        Err(e) => assert_corrupt(&e),
    }

    let event = decode_event(&row, STORE);
    if let Err(e) = &event {
        assert_corrupt(e);
    }
    match decode_audit_record(&row, STORE) {
        Ok(record) => {
            let (seq, event) =
                event.expect("decode_audit_record accepted a row decode_event refused");
            assert_eq!((seq, &event), (record.seq, &record.event));
            let again = decode_audit_record(&audit_row(&record), STORE)
                .unwrap_or_else(|e| panic!("re-encoded audit row does not decode: {e}"));
            assert_eq!(again, record, "audit row round trip");
        }
        Err(e) => assert_corrupt(&e),
    }

    let (seq, hash, at, mac, mac_key_id) = input.checkpoint;
    if let Err(e) = decode_checkpoint(STORE, seq, &hash, at, mac.as_deref(), mac_key_id) {
        assert_corrupt(&e);
    }
});
