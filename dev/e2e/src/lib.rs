//! The cross-service end-to-end tests live in `tests/e2e/`; see its `main.rs`.
