//! Keys the server keeps for itself (`server_secret`), and what is made with them: the
//! opaque cursors of subscriptions.
//!
//! A key is made once, by whichever process asks first (`INSERT … ON CONFLICT DO
//! NOTHING`, then read back), so every process over one database holds the same key and a
//! cursor one gave is good in all of them, across restarts.
//!
//! A subscription cursor stands for an event's `seq`, the log's global position. Shown as
//! is, it would tell a workspace how many events every other workspace wrote between two
//! of its own (a side channel on other tenants' activity), and a client could make up
//! positions. So the seq is encrypted per workspace: a 64-bit Feistel permutation (eight
//! rounds, SHA-256 as the round function, keyed by the server key and the workspace's id)
//! followed by a 32-bit tag. Cursors look random, do not order, differ between workspaces
//! for the same seq, and a cursor of another workspace, or one altered, is refused.

use base64::Engine as _;
use rand::RngCore as _;
use sea_orm::sea_query::{Alias, Expr, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use entity::WorkspaceId;

/// The name of the cursor key's row.
const CURSOR_KEY: &str = "subscription_cursor";

/// The server's key for `name`, made now if no process made it yet.
pub(super) async fn key(db: &impl ConnectionTrait, name: &str) -> Result<[u8; 32]> {
    let table = Alias::new("server_secret");
    let mut fresh = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut fresh);
    let insert = Query::insert()
        .into_table(table.clone())
        .columns([
            Alias::new("name"),
            Alias::new("value"),
            Alias::new("created_at"),
        ])
        .values_panic([name.into(), hex::encode(fresh).into(), super::now().into()])
        .on_conflict(
            OnConflict::column(Alias::new("name"))
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    let backend = db.get_database_backend();
    db.execute(backend.build(&insert)).await?;
    existing_key(db, name)
        .await?
        .ok_or_else(|| Error::Internal(format!("the server key {name} was not stored")))
}

/// The server's key for `name` if a process made it, without making it (a reader that
/// has nothing to do without one: no erasure key, no tombstones).
pub(super) async fn existing_key(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<[u8; 32]>> {
    let backend = db.get_database_backend();
    let select = Query::select()
        .column(Alias::new("value"))
        .from(Alias::new("server_secret"))
        .and_where(Expr::col(Alias::new("name")).eq(name))
        .to_owned();
    let Some(row) = db.query_one(backend.build(&select)).await? else {
        return Ok(None);
    };
    let value: String = row.try_get("", "value")?;
    hex::decode(value.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .map(Some)
        .ok_or_else(|| Error::Internal(format!("the server key {name} is not 32 bytes of hex")))
}

/// Encrypts and checks subscription cursors (see the module's text).
#[derive(Clone)]
pub struct Cursors {
    key: [u8; 32],
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cursors { .. }")
    }
}

/// Rounds of the permutation: eight, so every output bit depends on every input bit
/// several times over (a seq below 2^32 has an all-zero upper half).
const ROUNDS: u8 = 8;

/// Bytes of a cursor: the encrypted seq and its tag.
const CURSOR_BYTES: usize = 12;

impl Cursors {
    /// The cursors of the database's server key (made now if no process made it yet).
    pub async fn load(db: &DatabaseConnection) -> Result<Cursors> {
        Ok(Cursors::with_key(key(db, CURSOR_KEY).await?))
    }

    pub fn with_key(key: [u8; 32]) -> Cursors {
        Cursors { key }
    }

    /// The workspace's own key: cursors of two workspaces share nothing.
    fn workspace_key(&self, workspace_id: WorkspaceId) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(b"rapport cursor v1");
        hash.update(self.key);
        hash.update(workspace_id.uuid().as_bytes());
        hash.finalize().into()
    }

    fn round(key: &[u8; 32], round: u8, half: u32) -> u32 {
        let digest = Sha256::new()
            .chain_update(key)
            .chain_update([round])
            .chain_update(half.to_be_bytes())
            .finalize();
        u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
    }

    fn tag(key: &[u8; 32], block: &[u8; 8]) -> [u8; 4] {
        let digest = Sha256::new()
            .chain_update(key)
            .chain_update(b"tag")
            .chain_update(block)
            .finalize();
        [digest[0], digest[1], digest[2], digest[3]]
    }

    /// The cursor of the event at `seq` for a subscriber of `workspace_id`.
    pub fn encode(&self, workspace_id: WorkspaceId, seq: i64) -> String {
        let key = self.workspace_key(workspace_id);
        let value = seq as u64;
        let (mut left, mut right) = ((value >> 32) as u32, value as u32);
        for round in 0..ROUNDS {
            let next = left ^ Self::round(&key, round, right);
            left = right;
            right = next;
        }
        let block = ((u64::from(left) << 32) | u64::from(right)).to_be_bytes();
        let mut bytes = [0u8; CURSOR_BYTES];
        bytes[..8].copy_from_slice(&block);
        bytes[8..].copy_from_slice(&Self::tag(&key, &block));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The seq a cursor of `workspace_id` stands for; `None` for anything else (a cursor of
    /// another workspace or server, an altered or made-up one).
    pub fn decode(&self, workspace_id: WorkspaceId, cursor: &str) -> Option<i64> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor.trim())
            .ok()?;
        let bytes = <[u8; CURSOR_BYTES]>::try_from(bytes).ok()?;
        let key = self.workspace_key(workspace_id);
        let block: [u8; 8] = bytes[..8].try_into().ok()?;
        // Constant time is not needed: the tag guards a position, not a credential, and a
        // guess answers the same error either way.
        if Self::tag(&key, &block) != bytes[8..] {
            return None;
        }
        let value = u64::from_be_bytes(block);
        let (mut left, mut right) = ((value >> 32) as u32, value as u32);
        for round in (0..ROUNDS).rev() {
            let previous = right ^ Self::round(&key, round, left);
            right = left;
            left = previous;
        }
        i64::try_from((u64::from(left) << 32) | u64::from(right)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace(n: u128) -> WorkspaceId {
        WorkspaceId::from_uuid(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn a_cursor_round_trips_in_its_own_workspace_only() {
        let cursors = Cursors::with_key([7; 32]);
        let (a, b) = (workspace(1), workspace(2));
        for seq in [0, 1, 2, 41, 1 << 31, (1 << 40) + 5, i64::MAX] {
            let cursor = cursors.encode(a, seq);
            assert_eq!(cursor.len(), 16, "{cursor}");
            assert_eq!(cursors.decode(a, &cursor), Some(seq));
            assert_eq!(
                cursors.decode(b, &cursor),
                None,
                "another workspace's cursor"
            );
            assert_ne!(cursors.encode(b, seq), cursor);
            // Another server key: the cursor means nothing there.
            assert_eq!(Cursors::with_key([8; 32]).decode(a, &cursor), None);
        }
    }

    #[test]
    fn cursors_show_nothing_of_the_order_or_distance_of_seqs() {
        let cursors = Cursors::with_key([3; 32]);
        let a = workspace(1);
        let encoded: Vec<String> = (100..164).map(|seq| cursors.encode(a, seq)).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_ne!(
            sorted, encoded,
            "cursors of consecutive seqs sort as the seqs do"
        );
        // No digit of the seq shows through: consecutive seqs share no common prefix
        // beyond chance.
        let shared = encoded
            .windows(2)
            .filter(|pair| pair[0][..4] == pair[1][..4])
            .count();
        assert!(
            shared <= 1,
            "{shared} neighbours share their first four characters"
        );
    }

    #[test]
    fn altered_and_made_up_cursors_are_refused() {
        let cursors = Cursors::with_key([9; 32]);
        let a = workspace(1);
        let cursor = cursors.encode(a, 12345);
        let mut altered: Vec<char> = cursor.chars().collect();
        altered[3] = if altered[3] == 'A' { 'B' } else { 'A' };
        let altered: String = altered.into_iter().collect();
        assert_eq!(cursors.decode(a, &altered), None);
        for made_up in [
            "",
            "12345",
            "AAAAAAAAAAAAAAAA",
            "not a cursor!!!!",
            &cursor[..15],
        ] {
            assert_eq!(cursors.decode(a, made_up), None, "{made_up:?}");
        }
    }
}
