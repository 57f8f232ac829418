//! The integration tests: one binary (fewer link steps), a module per area. Every test
//! that touches the database runs twice, on SQLite and on PostgreSQL (when
//! `RAPPORT_TEST_DATABASE_URL` is set; otherwise the PostgreSQL run says why it skipped).

mod common;
mod platform;
mod processes;

mod abuse;
mod api;
mod batches;
mod bench;
mod bluesky;
mod callers;
mod cli;
mod customers;
mod dedupe;
mod discourse;
mod duplicates;
mod email;
mod failpoints;
mod feeds;
mod fuzz;
mod gdpr;
mod github;
mod graphiql;
mod hackernews;
mod hostile_input;
mod import;
mod inbox;
mod ingest;
mod live;
mod loaders;
mod mastodon;
mod matrix;
mod merge;
mod order;
mod outbound;
mod persisted_and_batched;
mod quality;
mod reddit;
mod replies;
mod roles;
mod scale;
mod schema;
mod search;
mod server;
mod service;
mod telegram;
mod tenancy;
mod transport;
mod trusted_documents;
mod validation;
mod x;
mod youtube;
