//! PostgreSQL store (work in progress in this session).
