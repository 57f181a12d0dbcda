//! [`ClientId`]: a connection id kept inline in its handle rather than as a string on the heap.
//!
//! Every real connection id is a fresh UUID in its canonical form (lowercase, hyphenated, 36
//! characters). As a `Box<str>` that is one 36-byte allocation (jemalloc's 48-byte class) per
//! connection; as the UUID's 16 bytes it is none. Ids that are not canonical UUIDs (test
//! fixtures, or whatever a server API caller sends) are still accepted and kept as strings:
//! a lookup stays an exact string match either way.

use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU64;

use uuid::Uuid;

/// Length of a UUID's hyphenated form: the size of the buffer [`ClientId::as_str`] writes into.
pub const UUID_LEN: usize = uuid::fmt::Hyphenated::LENGTH;

/// The id of a connection: a UUID stored as its 16 bytes when its string form is canonical
/// (lowercase, hyphenated, as every id made by `connect` is), any other string as is.
///
/// Equal exactly when the string forms are equal: a string has one representation (a UUID
/// with another spelling, upper case or braces, stays a string), so comparing
/// representations is comparing strings, and [`Hash`] agrees with [`Eq`]. Sixteen bytes, no
/// more than the `Box<str>` it replaces, so [`crate::hub::ClientHandle`] does not grow.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientId(Repr);

/// How a [`ClientId`] is stored. Private: which representation a string gets is what keeps
/// equality a string comparison.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// A UUID whose canonical form is the id, as its two big-endian halves. The low half of
    /// a UUID of the standard (RFC 9562) variant, whatever its version, is never zero (its
    /// first byte begins with bits `10`), and that zero is what the compiler uses to tell
    /// the variants apart: no tag, so the id is 16 bytes.
    Uuid { high: u64, low: NonZeroU64 },
    /// Any other string. Behind a second box, a thin pointer, so that it fits beside the
    /// UUID's niche; the extra allocation is only paid by ids no real connection has.
    Other(Box<Box<str>>),
}

impl ClientId {
    /// The id spelt `id`: its UUID when `id` is a UUID in canonical form, else the string
    /// (two small allocations, the string and its box, only for ids no real connection has).
    pub fn new(id: &str) -> ClientId {
        match canonical_uuid(id) {
            Some(uuid) => uuid.into(),
            None => ClientId(Repr::Other(Box::new(id.into()))),
        }
    }

    /// The id as a string, written into `buf` when it is a UUID: no allocation, for callers
    /// that need a `&str` (across an await, say, where [`ClientId::with_str`] cannot reach).
    pub fn as_str<'a>(&'a self, buf: &'a mut [u8; UUID_LEN]) -> &'a str {
        match &self.0 {
            Repr::Uuid { high, low } => Uuid::from_u64_pair(*high, low.get())
                .hyphenated()
                .encode_lower(buf),
            Repr::Other(id) => id,
        }
    }

    /// Calls `f` with the id as a string, formatted on the stack when it is a UUID: no
    /// allocation.
    pub fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        f(self.as_str(&mut [0; UUID_LEN]))
    }
}

/// `id` as a UUID if it is one spelt canonically (lowercase, hyphenated): the only spelling
/// a [`ClientId`] keeps as a UUID, so that the id's string form is `id` exactly.
fn canonical_uuid(id: &str) -> Option<Uuid> {
    if id.len() != UUID_LEN {
        return None;
    }
    let uuid = Uuid::try_parse(id).ok()?;
    let mut buf = [0; UUID_LEN];
    (uuid.hyphenated().encode_lower(&mut buf) == id).then_some(uuid)
}

impl From<Uuid> for ClientId {
    /// The id of `uuid`'s canonical form; kept as its 16 bytes unless its low half is zero
    /// (never for a random UUID), then as that string.
    fn from(uuid: Uuid) -> ClientId {
        let (high, low) = uuid.as_u64_pair();
        match NonZeroU64::new(low) {
            Some(low) => ClientId(Repr::Uuid { high, low }),
            None => ClientId(Repr::Other(Box::new(
                uuid.hyphenated().to_string().into_boxed_str(),
            ))),
        }
    }
}

impl From<&str> for ClientId {
    fn from(id: &str) -> ClientId {
        ClientId::new(id)
    }
}

impl From<String> for ClientId {
    fn from(id: String) -> ClientId {
        match canonical_uuid(&id) {
            Some(uuid) => uuid.into(),
            None => ClientId(Repr::Other(Box::new(id.into_boxed_str()))),
        }
    }
}

impl fmt::Display for ClientId {
    /// The id as sent to clients: a UUID in lowercase hyphenated form, anything else as is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_str(|id| f.pad(id))
    }
}

impl fmt::Debug for ClientId {
    /// As the string would be (quoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_str(|id| fmt::Debug::fmt(id, f))
    }
}

impl PartialEq<str> for ClientId {
    fn eq(&self, other: &str) -> bool {
        self.with_str(|id| id == other)
    }
}

impl PartialEq<&str> for ClientId {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const ID: &str = "936da01f-9abd-4d9d-80c7-02af85c822a8";

    fn is_uuid(id: &ClientId) -> bool {
        matches!(id.0, Repr::Uuid { .. })
    }

    #[test]
    fn an_id_is_as_small_as_the_box_it_replaces() {
        assert_eq!(size_of::<ClientId>(), size_of::<Box<str>>());
    }

    #[test]
    fn a_canonical_uuid_is_kept_inline_and_reads_back_the_same() {
        let id = ClientId::new(ID);
        assert!(is_uuid(&id));
        assert_eq!(id.to_string(), ID);
        assert_eq!(format!("{id:?}"), format!("{ID:?}"));
        assert_eq!(id, ID);
        assert_eq!(id, ClientId::from(ID.to_owned()));
        assert_eq!(id, ClientId::from(Uuid::try_parse(ID).expect("a UUID")));
        let random = ClientId::from(Uuid::new_v4());
        assert!(is_uuid(&random));
        assert_eq!(ClientId::new(&random.to_string()), random);
    }

    #[test]
    fn other_spellings_stay_the_strings_they_are() {
        let upper = ID.to_uppercase();
        let braced = format!("{{{ID}}}");
        let simple = ID.replace('-', "");
        for other in [&*upper, &braced, &simple, "a", "", "not-a-uuid"] {
            let id = ClientId::new(other);
            assert!(!is_uuid(&id), "{other}");
            assert_eq!(id.to_string(), other);
            assert_eq!(id, other);
            assert_ne!(id, ClientId::new(ID));
            assert!(ClientId::new(ID) != *other);
        }
    }

    #[test]
    fn the_nil_uuid_is_a_string_and_still_equal_to_itself() {
        let nil = Uuid::nil().hyphenated().to_string();
        let (parsed, made) = (ClientId::new(&nil), ClientId::from(Uuid::nil()));
        assert!(!is_uuid(&parsed) && !is_uuid(&made));
        assert_eq!(parsed, made);
        assert_eq!(made.to_string(), nil);
    }

    #[test]
    fn lookups_are_exact_string_matches() {
        let set: HashSet<ClientId> = [ID, "a"].into_iter().map(ClientId::new).collect();
        assert!(set.contains(&ClientId::from(ID.to_owned())));
        assert!(set.contains(&ClientId::new("a")));
        assert!(!set.contains(&ClientId::new(&ID.to_uppercase())));
        assert!(!set.contains(&ClientId::new("A")));
    }

    #[test]
    fn as_str_borrows_a_string_and_formats_a_uuid() {
        let mut buf = [0; UUID_LEN];
        assert_eq!(ClientId::new("a").as_str(&mut buf), "a");
        assert_eq!(ClientId::new(ID).as_str(&mut buf), ID);
        assert_eq!(ClientId::new(ID).with_str(str::len), UUID_LEN);
    }
}
