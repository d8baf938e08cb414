//! Migration bookkeeping that does not depend on the dialect: the list of migrations, which are
//! pending, and what a recorded schema version means (current, too new, not migrated). Running
//! them — transactions, locks, the versions table's DDL — stays with each store.

use token_core::StoreError;

/// The name of the table in which the SQL stores record applied migrations (`version`,
/// `description`, `applied_at` in Unix microseconds). It is the store's own: sqlx's
/// `_sqlx_migrations` belongs to the host application and is never created or read.
pub const MIGRATIONS_TABLE: &str = "token_store_migrations";

/// One migration: its version, the description recorded with it, and its steps, which share one
/// transaction.
#[derive(Debug)]
pub struct Migration<R: 'static> {
    /// The schema version the migration brings the database to.
    pub version: i64,
    /// Recorded in the versions table with the version.
    pub description: &'static str,
    /// Applied in order.
    pub steps: &'static [Step<R>],
}

/// A step of a [`Migration`].
#[derive(Debug)]
pub enum Step<R: 'static> {
    /// A SQL script (possibly several statements), run as is or after the store substituted its
    /// placeholders.
    Sql(&'static str),
    /// A step the store runs in Rust (e.g. a backfill that computes values SQL cannot), named by
    /// the store's own type.
    Rust(R),
}

/// A store's migrations, in version order, and what a recorded version means for them.
///
/// ```
/// use token_core::StoreError;
/// use token_store_sql::{Migration, Migrations, Step};
///
/// const MIGRATIONS: Migrations<()> = Migrations::new(
///     "example",
///     &[
///         Migration { version: 1, description: "tables", steps: &[Step::Sql("CREATE TABLE t")] },
///         Migration { version: 2, description: "backfill", steps: &[Step::Rust(())] },
///     ],
/// );
/// const _: () = assert!(MIGRATIONS.latest() == 2);
///
/// // What a migrator at version 1 still applies, up to the newest version.
/// let current = MIGRATIONS.current(Some(1))?;
/// let pending: Vec<i64> = MIGRATIONS.pending(current, 2).map(|m| m.version).collect();
/// assert_eq!(pending, [2]);
///
/// // Operations need exactly the newest version.
/// let old = MIGRATIONS.check(Some(1));
/// assert!(matches!(old, Err(StoreError::NotMigrated { found: Some(1), required: 2, .. })));
/// let new = MIGRATIONS.check(Some(3));
/// assert!(matches!(new, Err(StoreError::SchemaTooNew { found: 3, supported: 2, .. })));
/// assert!(MIGRATIONS.check(Some(2)).is_ok());
/// # Ok::<(), StoreError>(())
/// ```
#[derive(Debug)]
pub struct Migrations<R: 'static> {
    store: &'static str,
    list: &'static [Migration<R>],
}

impl<R> Migrations<R> {
    /// The migrations of the store named `store` (in errors), in version order. New versions are
    /// appended, never edited.
    pub const fn new(store: &'static str, list: &'static [Migration<R>]) -> Self {
        Self { store, list }
    }

    /// The newest version (0 without migrations).
    pub const fn latest(&self) -> i64 {
        let mut latest = 0;
        let mut i = 0;
        while i < self.list.len() {
            if self.list[i].version > latest {
                latest = self.list[i].version;
            }
            i += 1;
        }
        latest
    }

    /// Every migration up to and including version `target`.
    pub fn up_to(&self, target: i64) -> impl Iterator<Item = &'static Migration<R>> + use<R> {
        self.list.iter().filter(move |m| m.version <= target)
    }

    /// The migrations a database at version `current` still needs to reach `target`.
    pub fn pending(
        &self,
        current: i64,
        target: i64,
    ) -> impl Iterator<Item = &'static Migration<R>> + use<R> {
        self.up_to(target).filter(move |m| m.version > current)
    }

    /// The version a migrator starts from, given the largest recorded version (`None`: nothing
    /// recorded, version 0). A database migrated by a newer library is refused with
    /// [`StoreError::SchemaTooNew`]: this one cannot know what its schema holds.
    pub fn current(&self, recorded: Option<i64>) -> Result<i64, StoreError> {
        let current = recorded.unwrap_or(0);
        if current > self.latest() {
            return Err(self.too_new(current));
        }
        Ok(current)
    }

    /// Checks that the recorded version (`None`: no versions table, or nothing in it) is exactly
    /// the newest: otherwise [`StoreError::SchemaTooNew`] or [`StoreError::NotMigrated`].
    pub fn check(&self, recorded: Option<i64>) -> Result<(), StoreError> {
        match recorded {
            Some(v) if v == self.latest() => Ok(()),
            Some(v) if v > self.latest() => Err(self.too_new(v)),
            other => Err(self.not_migrated(other)),
        }
    }

    /// [`StoreError::SchemaTooNew`] for a database at version `found`.
    pub fn too_new(&self, found: i64) -> StoreError {
        StoreError::SchemaTooNew {
            store: self.store,
            found,
            supported: self.latest(),
        }
    }

    /// [`StoreError::NotMigrated`] for a database at version `found` (`None`: never migrated).
    pub fn not_migrated(&self, found: Option<i64>) -> StoreError {
        StoreError::NotMigrated {
            store: self.store,
            found,
            required: self.latest(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: Migrations<u8> = Migrations::new(
        "test",
        &[
            Migration {
                version: 1,
                description: "one",
                steps: &[Step::Sql("A")],
            },
            Migration {
                version: 2,
                description: "two",
                steps: &[Step::Rust(2)],
            },
            Migration {
                version: 3,
                description: "three",
                steps: &[Step::Sql("C"), Step::Rust(3)],
            },
        ],
    );

    fn versions<'a>(it: impl Iterator<Item = &'a Migration<u8>>) -> Vec<i64> {
        it.map(|m| m.version).collect()
    }

    #[test]
    fn pending_migrations() {
        assert_eq!(LIST.latest(), 3);
        assert_eq!(Migrations::<u8>::new("empty", &[]).latest(), 0);
        assert_eq!(versions(LIST.up_to(2)), [1, 2]);
        assert_eq!(versions(LIST.pending(0, 3)), [1, 2, 3]);
        assert_eq!(versions(LIST.pending(1, 2)), [2]);
        assert_eq!(versions(LIST.pending(3, 3)), Vec::<i64>::new());
    }

    #[test]
    fn recorded_versions() {
        assert_eq!(LIST.current(None).ok(), Some(0));
        assert_eq!(LIST.current(Some(3)).ok(), Some(3));
        assert!(matches!(
            LIST.current(Some(4)),
            Err(StoreError::SchemaTooNew {
                store: "test",
                found: 4,
                supported: 3
            })
        ));
        assert!(LIST.check(Some(3)).is_ok());
        for found in [None, Some(0), Some(2)] {
            assert!(matches!(
                LIST.check(found),
                Err(StoreError::NotMigrated { store: "test", found: f, required: 3 }) if f == found
            ));
        }
        assert!(matches!(
            LIST.check(Some(9)),
            Err(StoreError::SchemaTooNew { found: 9, .. })
        ));
    }
}
