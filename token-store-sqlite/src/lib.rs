//! SQLite store (work in progress in this session).
