//! A row type for the unit tests: a map from column names to [`Param`]s.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;
use token_core::{Labels, Revocation, StoreError, TokenId, TokenRecord};

use crate::{Columns, Param, TOKEN_INSERT_COLUMNS, TokenRow, decode_token, token_params};

#[derive(Debug, Default, Clone)]
pub(crate) struct MapRow(pub(crate) HashMap<String, Param>);

fn wrong(column: &str, param: &Param) -> String {
    format!("{column} holds {param:?}")
}

impl Columns for MapRow {
    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, String> {
        match self.0.get(column) {
            None | Some(Param::OptBytes(None)) => Ok(None),
            Some(Param::Bytes(v) | Param::OptBytes(Some(v))) => Ok(Some(v.clone())),
            Some(other) => Err(wrong(column, other)),
        }
    }
    fn int(&self, column: &str) -> Result<Option<i64>, String> {
        match self.0.get(column) {
            None | Some(Param::OptInt(None)) => Ok(None),
            Some(Param::Int(v) | Param::OptInt(Some(v))) => Ok(Some(*v)),
            Some(other) => Err(wrong(column, other)),
        }
    }
    fn text(&self, column: &str) -> Result<Option<String>, String> {
        match self.0.get(column) {
            None | Some(Param::OptText(None)) => Ok(None),
            Some(Param::Text(v) | Param::OptText(Some(v))) => Ok(Some(v.clone())),
            Some(other) => Err(wrong(column, other)),
        }
    }
}

impl TokenRow for MapRow {
    fn record(&self) -> Result<TokenRecord, StoreError> {
        decode_token(self, "test", |_| Ok(Labels::new()))
    }
}

impl MapRow {
    /// The row a store would insert for `record` (labels aside).
    pub(crate) fn of(record: &TokenRecord) -> Self {
        let params = token_params("test", record).unwrap_or_else(|e| panic!("{e}"));
        let columns = TOKEN_INSERT_COLUMNS.split(", ");
        assert_eq!(columns.clone().count(), params.len());
        Self(columns.map(str::to_owned).zip(params).collect())
    }

    pub(crate) fn set(mut self, column: &str, value: Param) -> Self {
        self.0.insert(column.to_owned(), value);
        self
    }
}

pub(crate) fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
}

/// A record with every optional field set, active from 0 s to 1000 s.
pub(crate) fn full_record() -> TokenRecord {
    let minimal = MapRow::default()
        .set("id", Param::Bytes(vec![1; 16]))
        .set("family_id", Param::Bytes(vec![1; 16]))
        .set("hash", Param::Bytes(vec![2; 32]))
        .set("hash_key_id", Param::Int(3))
        .set("created_at", Param::Int(0))
        .set("use_count", Param::Int(2))
        .set("prefix", Param::Text("acme".into()))
        .set("subject", Param::Text("alice".into()))
        .set("scopes", Param::Text("a:read b".into()));
    let mut record = minimal.record().unwrap_or_else(|e| panic!("{e}"));
    record.name = Some("ci".into());
    record.description = Some("deploys".into());
    record.created_by = Some("admin".into());
    record.expires_at = Some(at(1000));
    record.not_before = Some(at(0));
    record.idle_timeout = Some(Duration::from_secs(600));
    record.last_used_at = Some(at(5));
    record.max_uses = Some(10);
    record.parent_id = Some(TokenId::from_bytes([4; 16]));
    record.rotated_from = Some(TokenId::from_bytes([5; 16]));
    record
}

/// `record` revoked at 7 s.
pub(crate) fn revoked(mut record: TokenRecord) -> TokenRecord {
    record.revocation = Some(Revocation {
        at: at(7),
        reason: "leaked".into(),
        actor: Some("admin".into()),
    });
    record
}
