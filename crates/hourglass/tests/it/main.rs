//! End-to-end tests: a real server in-process (SQLite, the exec demo target, a manual clock),
//! driven through the typed client.

mod lifecycle;
