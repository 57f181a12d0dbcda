//! [`ReplyRoom`]: how many bytes of stored publications a connection may still be sent in
//! one go (a `history` page, a recovery) without being closed as too slow. The client's
//! `history` and every subscribe (the client's and the server API's) measure with it, so a
//! replay is cut or refused the same way whichever side asked for it.

use std::sync::Arc;

use crate::engine::StoredPublication;
use crate::protocol::{Publication, publication_len};

/// The bytes of stored publications (a `history` page, a recovery) that replies may still
/// carry to one client without being closed as too slow.
///
/// Everything queued for a connection counts against its byte budget
/// (`client.queue_max_size`), and a reply over it closes the client with 3008. A reply made of
/// stored content would then close it again after every reconnect, since the same content
/// would follow: anyone who can publish into a channel could lock its subscribers out. So
/// replies with publications fill at most half of the budget (the rest is headroom for the
/// publications that arrive meanwhile), less what is already queued or gathered; a single
/// publication may use the whole budget, as its live delivery could.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyRoom {
    /// Bytes the publications may take in all.
    shared: usize,
    /// Bytes one publication alone may take, when it is the first.
    single: usize,
}

impl ReplyRoom {
    /// Bytes kept for the rest of a reply (its id, epoch, offset, channel…).
    const REPLY_OVERHEAD: usize = 512;

    /// The room in a connection with a byte budget of `budget` of which `used` are taken.
    pub fn new(budget: usize, used: usize) -> ReplyRoom {
        let used = used + Self::REPLY_OVERHEAD;
        ReplyRoom {
            shared: (budget / 2).saturating_sub(used),
            single: budget.saturating_sub(used),
        }
    }

    /// The encoded size of a publication in a list, its separator included.
    fn cost(publication: &Publication) -> usize {
        publication_len(publication) + 1
    }

    /// Whether `len` bytes of `count` publications fit.
    fn fits(&self, len: usize, count: usize) -> bool {
        len <= self.shared || (count == 1 && len <= self.single)
    }

    fn consume(&mut self, len: usize) {
        self.shared = self.shared.saturating_sub(len);
        self.single = self.single.saturating_sub(len);
    }

    /// The first of `stored` (in their order) that fit: a page.
    pub fn take_prefix(&mut self, stored: &[Arc<StoredPublication>]) -> Vec<Publication> {
        let mut taken = Vec::new();
        for publication in stored {
            let publication = publication.to_publication();
            let len = Self::cost(&publication);
            if !self.fits(len, taken.len() + 1) {
                break;
            }
            self.consume(len);
            taken.push(publication);
        }
        taken
    }

    /// All of `stored`, or `None` (and nothing taken) if they do not fit together: a recovery,
    /// which is whole or not at all.
    pub fn take_all(&mut self, stored: &[Arc<StoredPublication>]) -> Option<Vec<Publication>> {
        let publications: Vec<Publication> = stored.iter().map(|p| p.to_publication()).collect();
        let len = publications.iter().map(Self::cost).sum();
        if !self.fits(len, publications.len()) {
            return None;
        }
        self.consume(len);
        Some(publications)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol;

    fn stored(offset: u64, text_len: usize) -> Arc<StoredPublication> {
        let data = protocol::raw(format!("\"{}\"", "x".repeat(text_len))).expect("valid JSON");
        Arc::new(StoredPublication {
            offset,
            data,
            info: None,
            tags: Default::default(),
            time_ms: 0,
        })
    }

    /// A page takes the publications that fit in half the budget, and the first one alone
    /// up to the whole budget.
    #[test]
    fn a_reply_room_cuts_a_page_to_half_the_budget() {
        let cost = ReplyRoom::cost(&stored(1, 1000).to_publication());
        let page: Vec<_> = (1..=100).map(|i| stored(i, 1000)).collect();
        let budget = 64 * 1024;
        let mut room = ReplyRoom::new(budget, 0);
        let taken = room.take_prefix(&page);
        let expected = (budget / 2 - ReplyRoom::REPLY_OVERHEAD) / cost;
        assert_eq!(taken.len(), expected);
        assert_eq!(taken[0].offset, 1);
        // In the same frame, one more at most: alone, within what is left of the budget.
        assert_eq!(room.take_prefix(&page).len(), 1);
        // One publication of 40 KB: over half the budget, alone within it.
        let big = [stored(1, 40_000), stored(2, 10)];
        let taken = ReplyRoom::new(budget, 0).take_prefix(&big);
        assert_eq!(taken.len(), 1);
        // What is queued already counts.
        assert!(ReplyRoom::new(budget, 30_000).take_prefix(&big).is_empty());
    }

    /// A recovery is all or nothing, and takes nothing when it does not fit.
    #[test]
    fn a_reply_room_takes_a_recovery_whole_or_not_at_all() {
        let budget = 64 * 1024;
        let mut room = ReplyRoom::new(budget, 0);
        let missed: Vec<_> = (1..=4).map(|i| stored(i, 10_000)).collect();
        assert!(room.take_all(&missed).is_none());
        assert_eq!(room, ReplyRoom::new(budget, 0), "a failed take took room");
        assert_eq!(room.take_all(&missed[..3]).map(|p| p.len()), Some(3));
        assert!(room.take_all(&missed[..2]).is_none());
    }
}
