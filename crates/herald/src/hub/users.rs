//! [`Users`]: the hub's table of connected clients, found by user (or by id for anonymous ones).

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::*;

/// Declares `$name(Arc<ClientHandle>)`, a key of a hub table that is looked up by one of the
/// handle's fields (`$field`, borrowed as a `$key`): the table keeps no copy of it.
macro_rules! keyed_by {
    ($(#[$doc:meta])* $name:ident, $field:ident: $key:ty) => {
        $(#[$doc])*
        pub(super) struct $name(pub(super) Arc<ClientHandle>);

        impl Borrow<$key> for $name {
            fn borrow(&self) -> &$key {
                Borrow::<$key>::borrow(&self.0.$field)
            }
        }

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                // Must hash as the `$key` it borrows as.
                Borrow::<$key>::borrow(self).hash(state);
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                Borrow::<$key>::borrow(self) == Borrow::<$key>::borrow(other)
            }
        }

        impl Eq for $name {}
    };
}

keyed_by!(
    /// A client in the hub's table of clients, found by its id (one allocation less per
    /// connection, and 8-byte buckets).
    ById,
    id: ClientId
);

keyed_by!(
    /// The first connection of a user in the hub's table of users, found by its user id: a
    /// user with one connection costs the table no key string and no vector.
    ByUser,
    user: str
);

/// The connected clients, found by user. Every user pays for a bucket of `first`, which is
/// why it holds only the user's first connection (8 bytes); the few users with several
/// connections keep the others, oldest first, in a second, small table. Anonymous connections
/// share the empty user id, so they have a table of their own, by connection id, where one is
/// found without a scan. There is no table of all clients by id: the server API names a
/// connection by user and id, so the user's connections are where to look, and a connection
/// costs one bucket, not two.
#[derive(Default)]
pub(super) struct Users {
    pub(super) first: HashSet<ByUser>,
    pub(super) others: HashMap<Box<str>, Vec<Arc<ClientHandle>>>,
    pub(super) anonymous: HashSet<ById>,
    /// Connections in all three tables.
    pub(super) count: usize,
}

impl Users {
    /// Adds a connection; true when it is the first of a named user.
    pub(super) fn add(&mut self, client: &Arc<ClientHandle>) -> bool {
        let user = client.user.as_str();
        let mut first = false;
        if user.is_empty() {
            // A client id is unique (a fresh UUID): replacing would only happen for a handle
            // registered twice, and then it is the same client.
            if self.anonymous.replace(ById(client.clone())).is_some() {
                return false;
            }
        } else if self.first.contains(user) {
            self.others
                .entry(Box::from(user))
                .or_default()
                .push(client.clone());
        } else {
            self.first.insert(ByUser(client.clone()));
            first = true;
        }
        self.count += 1;
        first
    }

    /// Removes a connection; true when it was the last of a named user.
    pub(super) fn remove(&mut self, client: &ClientHandle) -> bool {
        let user = client.user.as_str();
        let mut last = false;
        let removed = if user.is_empty() {
            self.anonymous.remove(&client.id)
        } else if self
            .first
            .get(user)
            .is_some_and(|first| first.0.id == client.id)
        {
            self.first.remove(user);
            // The next oldest connection, if any, becomes the first.
            if let Some(others) = self.others.get_mut(user) {
                let next = others.remove(0);
                if others.is_empty() {
                    self.others.remove(user);
                }
                self.first.insert(ByUser(next));
            } else {
                last = true;
            }
            true
        } else if let Some(others) = self.others.get_mut(user) {
            let before = others.len();
            others.retain(|c| c.id != client.id);
            let removed = others.len() < before;
            if others.is_empty() {
                self.others.remove(user);
            }
            removed
        } else {
            false
        };
        self.count -= usize::from(removed);
        last
    }

    /// A named user's connections, oldest first.
    pub(super) fn of(&self, user: &str) -> impl Iterator<Item = &Arc<ClientHandle>> {
        let others = self.others.get(user).map_or(&[][..], Vec::as_slice);
        self.first
            .get(user)
            .map(|first| &first.0)
            .into_iter()
            .chain(others)
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &Arc<ClientHandle>> {
        self.first
            .iter()
            .map(|c| &c.0)
            .chain(self.others.values().flatten())
            .chain(self.anonymous.iter().map(|c| &c.0))
    }
}
