//! Schema migrations for SQLite and PostgreSQL. Append-only once landed: never edit a
//! migration that has shipped, add a new one.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_foundation;
mod m20261123_000002_sources;
mod m20261123_000003_parent_indexes;
mod m20261203_000004_consumer_lease;
mod m20261203_000005_inbox;
mod m20261204_000008_event_notify;
mod m20261204_000009_service;
mod m20261204_000010_replies;
mod m20261204_000011_server_secret;
mod m20261204_000012_event_levels_index;
mod m20261204_000013_trusted_documents;
mod m20261205_000014_publications;
mod m20261205_000015_duplicate_links;
mod m20261205_000016_customer_fields;
mod m20261205_000017_merges;
mod m20261205_000018_erasure;
mod m20261205_000019_index_diet;
mod m20261205_000020_match_keys;
mod m20261205_000021_quality_snapshots;
mod m20261206_000022_auth_notify;
mod m20261206_000023_user_keys_revoked;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_foundation::Migration),
            Box::new(m20261123_000002_sources::Migration),
            Box::new(m20261123_000003_parent_indexes::Migration),
            Box::new(m20261203_000004_consumer_lease::Migration),
            Box::new(m20261203_000005_inbox::Migration),
            Box::new(m20261204_000008_event_notify::Migration),
            Box::new(m20261204_000009_service::Migration),
            Box::new(m20261204_000010_replies::Migration),
            Box::new(m20261204_000011_server_secret::Migration),
            Box::new(m20261204_000012_event_levels_index::Migration),
            Box::new(m20261204_000013_trusted_documents::Migration),
            Box::new(m20261205_000014_publications::Migration),
            Box::new(m20261205_000015_duplicate_links::Migration),
            Box::new(m20261205_000016_customer_fields::Migration),
            Box::new(m20261205_000017_merges::Migration),
            Box::new(m20261205_000018_erasure::Migration),
            Box::new(m20261205_000019_index_diet::Migration),
            Box::new(m20261205_000020_match_keys::Migration),
            Box::new(m20261205_000021_quality_snapshots::Migration),
            Box::new(m20261206_000022_auth_notify::Migration),
            Box::new(m20261206_000023_user_keys_revoked::Migration),
        ]
    }
}
