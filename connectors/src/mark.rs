//! A watermark for platforms that give times to the second and ask "since" inclusively
//! (GitHub's `since`, Algolia's `created_at_i`): the newest second handed over and the ids
//! of that second, so the next read from that second repeats nothing and loses nothing.

use serde::{Deserialize, Serialize};

/// The ids of the mark's second kept in a cursor.
const MAX_MARK_IDS: usize = 100;

/// The newest second handed over, and the ids of that second.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mark {
    pub(crate) at: i64,
    #[serde(default)]
    pub(crate) ids: Vec<String>,
}

impl Mark {
    /// Takes in an item of second `at`: a newer second replaces the mark, the same one
    /// adds its id.
    pub(crate) fn add(&mut self, at: i64, id: &str) {
        if at > self.at {
            *self = Mark {
                at,
                ids: vec![id.to_owned()],
            };
        } else if at == self.at
            && self.ids.len() < MAX_MARK_IDS
            && !self.ids.iter().any(|known| known == id)
        {
            self.ids.push(id.to_owned());
        }
    }

    /// The later of two marks (the ids of both when they share a second).
    pub(crate) fn merge(self, other: Mark) -> Mark {
        let mut merged = if other.at > self.at {
            other.clone()
        } else {
            self
        };
        if other.at == merged.at {
            for id in &other.ids {
                merged.add(other.at, id);
            }
        }
        merged
    }

    /// Whether the item `id` of second `at` was handed over already.
    pub(crate) fn covers(&self, at: i64, id: &str) -> bool {
        at < self.at || (at == self.at && self.ids.iter().any(|known| known == id))
    }
}
