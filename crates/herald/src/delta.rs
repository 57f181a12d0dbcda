//! Fossil delta compression of publications, for subscribers that negotiated `delta:
//! "fossil"` (namespace option `allowed_delta_types: ["fossil"]`).
//!
//! Why a module of its own: one publication of a channel is sent in up to three encodings —
//! the plain push (`data` as the application's JSON), the same data as a JSON *string* (what
//! a delta subscriber gets when it has no base to apply a delta to), and a Fossil delta
//! against the channel's previous publication, also as a JSON string, with `delta: true`.
//! [`Variants`] encodes each of them at most once per publication, however many subscribers
//! need it, which keeps fan-out free of per-recipient encoding.
//!
//! The wire form is Centrifugo's (JSON protocol): a delta subscriber's publications always
//! carry `data` as a JSON string — the full JSON text, or the Fossil delta of that text
//! against the previous publication's — and the SDKs parse it back (centrifuge-js counts them
//! in `deltaStats()`). A delta that is not smaller than the data itself is not sent: the full
//! string goes instead, as Centrifugo does.

use std::cell::OnceCell;
use std::sync::Arc;

use crate::prepared::publication_message;
use crate::protocol::{Encoding, Publication};
use crate::ws::Message;

/// The Fossil delta that turns `prev` into `next`, or `None` when it would not be smaller than
/// `next` (or is not UTF-8, so it cannot travel as a JSON string).
pub fn fossil(prev: &[u8], next: &[u8]) -> Option<String> {
    let delta = fossil_delta::delta(next, prev);
    if delta.len() >= next.len() {
        return None;
    }
    String::from_utf8(delta).ok()
}

/// `publication` as a delta subscriber speaking `encoding` receives it without a base: its
/// data in the encoding's delta form (a JSON string in JSON), `delta: false`.
pub fn full_as_string(encoding: Encoding, publication: &Publication) -> Option<Publication> {
    let mut out = publication.clone();
    out.data = match &publication.data {
        Some(data) => Some(encoding.delta_data(data.as_bytes())?),
        None => None,
    };
    out.delta = false;
    Some(out)
}

/// Publications recovered for a delta subscription, as Centrifugo sends them: the first with
/// its data in the encoding's delta form (a JSON string in JSON), each next one as a Fossil
/// delta against the one before it when that is smaller (else in full too). The SDK applies
/// them in order.
pub fn recovered_as_deltas(encoding: Encoding, publications: Vec<Publication>) -> Vec<Publication> {
    let mut out = Vec::with_capacity(publications.len());
    let mut prev: Option<&Publication> = None;
    for publication in &publications {
        let delta = match (prev.and_then(|p| p.data.as_ref()), &publication.data) {
            (Some(before), Some(data)) => fossil(before.as_bytes(), data.as_bytes())
                .and_then(|patch| encoding.delta_data(patch.as_bytes())),
            _ => None,
        };
        let encoded = match delta {
            Some(patch) => {
                let mut p = publication.clone();
                p.data = Some(patch);
                p.delta = true;
                Some(p)
            }
            None => full_as_string(encoding, publication),
        };
        out.extend(encoded);
        prev = Some(publication);
    }
    out
}

/// One message per encoding, each made on first use.
type PerEncoding = [OnceCell<Option<Arc<Message>>>; Encoding::COUNT];

/// The encodings of one publication that delta subscribers need, each made on first use and
/// then shared (see the module doc), per encoding in use; the Fossil delta itself is computed
/// once for all encodings. Lives for one fan-out.
pub struct Variants<'a> {
    channel: &'a str,
    publication: &'a Publication,
    /// Data of the channel's previous publication, when a delta may be sent.
    prev: Option<&'a [u8]>,
    /// The Fossil delta against `prev`, when there is one and it is smaller than the data.
    patch: OnceCell<Option<String>>,
    full: PerEncoding,
    delta: PerEncoding,
}

impl<'a> Variants<'a> {
    /// The variants of `publication` in `channel`; `prev`: the data of the channel's previous
    /// publication when this one is to be sent as a delta (the publish asked for one and the
    /// previous publication is known), else `None`.
    pub fn new(
        channel: &'a str,
        publication: &'a Publication,
        prev: Option<&'a [u8]>,
    ) -> Variants<'a> {
        Variants {
            channel,
            publication,
            prev,
            patch: OnceCell::new(),
            full: Default::default(),
            delta: Default::default(),
        }
    }

    /// The push for a delta subscriber speaking `encoding` that has no base (just subscribed,
    /// or the publish did not ask for a delta): the data in the encoding's delta form. `None`
    /// if it could not be encoded.
    pub fn full_string(&self, encoding: Encoding) -> Option<&Arc<Message>> {
        self.full[encoding.index()]
            .get_or_init(|| {
                let publication = full_as_string(encoding, self.publication)?;
                publication_message(encoding, self.channel, &publication).ok()
            })
            .as_ref()
    }

    /// The push for a delta subscriber speaking `encoding` that has the previous publication:
    /// the Fossil delta against it (or the full data when no delta applies or it would not be
    /// smaller).
    pub fn for_subscriber_with_base(&self, encoding: Encoding) -> Option<&Arc<Message>> {
        let delta = self.delta[encoding.index()].get_or_init(|| {
            let patch = self
                .patch
                .get_or_init(|| {
                    let data = self.publication.data.as_ref()?;
                    fossil(self.prev?, data.as_bytes())
                })
                .as_ref()?;
            let mut publication = self.publication.clone();
            publication.data = Some(encoding.delta_data(patch.as_bytes())?);
            publication.delta = true;
            publication_message(encoding, self.channel, &publication).ok()
        });
        delta.as_ref().or_else(|| self.full_string(encoding))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol;

    #[test]
    fn known_vectors() {
        // Vectors of the Fossil format (base-64 sizes, `@` copies, `:` literals, `;` checksum),
        // each checked with centrifuge-js's own `applyDelta` (which verifies the checksum).
        let a = b"send-snap\nimport zmq\n#c.user_dict.pop('sendsnap', None)\n@others\nmsg = \"snapshot %s\"% snap()\nsend(msg)\n#msg = \"getat 2019-07-11 10:06:21\"\n#res = send(msg, True)\n#with open('/tmp/proba', 'w') as out:\n#    out.write(res)\ng.es('ok')\n";
        let b = b"send-snap\nimport zmq\n#c.user_dict.pop('sendsnap', None)\n@others\nmsg = \"snapshot %s\"% snap()\n\nsend(msg)\n#msg = \"getat 2019-07-11 10:06:21\"\n#res = send(msg, True)\n#with open('/tmp/proba', 'w') as out:\n#    out.write(res)\ng.es('ok')\n";
        assert_eq!(fossil(b, a).as_deref(), Some("3a\n1S@0,29@1T,31_Pqh;"));
        // A source too small to copy from: one literal, then the checksum.
        assert_eq!(
            fossil_delta::delta(b"hello world", b"hi").as_slice(),
            b"B\nB:hello world19x_VR;"
        );
    }

    #[test]
    fn a_delta_rebuilds_the_next_document_and_is_small() {
        let doc = |n: u32| {
            let items: Vec<String> = (0..40)
                .map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\",\"qty\":{}}}", i * 3))
                .collect();
            format!("{{\"seq\":{n},\"items\":[{}]}}", items.join(","))
        };
        let (prev, next) = (doc(1), doc(2));
        let patch = fossil(prev.as_bytes(), next.as_bytes()).expect("a delta");
        assert!(
            patch.len() * 20 < next.len(),
            "{} vs {}",
            patch.len(),
            next.len()
        );
        let rebuilt = fossil_delta::apply(prev.as_bytes(), patch.as_bytes()).expect("applies");
        assert_eq!(rebuilt, next.as_bytes());
        // Nothing in common: no delta.
        assert_eq!(fossil(b"{\"a\":1}", b"[2,3,4]"), None);
    }

    #[test]
    fn variants_are_encoded_once_and_carry_strings() {
        let publication = Publication {
            data: Some(protocol::raw(r#"{"text":"hello"}"#).unwrap()),
            offset: 7,
            ..Publication::default()
        };
        let v = Variants::new("ch", &publication, None);
        let full = v.full_string(Encoding::Json).expect("encodes");
        assert!(
            Arc::ptr_eq(full, v.full_string(Encoding::Json).unwrap()),
            "made once"
        );
        assert_eq!(
            full.payload(),
            br#"{"push":{"channel":"ch","pub":{"data":"{\"text\":\"hello\"}","offset":7}}}"#
        );
        // Without a base, a subscriber with one still gets the full string.
        assert!(Arc::ptr_eq(
            v.for_subscriber_with_base(Encoding::Json).unwrap(),
            full
        ));

        let prev = br#"{"text":"hello"}"#.repeat(8);
        let next = format!("{}!", String::from_utf8_lossy(&prev));
        let publication = Publication {
            data: Some(protocol::raw(format!("[{next:?}]")).unwrap()),
            ..Publication::default()
        };
        let prev = format!("[{:?}]", String::from_utf8_lossy(&prev));
        let v = Variants::new("ch", &publication, Some(prev.as_bytes()));
        let delta = v.for_subscriber_with_base(Encoding::Json).expect("encodes");
        assert!(Arc::ptr_eq(
            delta,
            v.for_subscriber_with_base(Encoding::Json).unwrap()
        ));
        let push: serde_json::Value = serde_json::from_slice(delta.payload()).unwrap();
        assert_eq!(push["push"]["pub"]["delta"], true);
        let patch = push["push"]["pub"]["data"].as_str().expect("a string");
        let rebuilt = fossil_delta::apply(prev.as_bytes(), patch.as_bytes()).unwrap();
        assert_eq!(rebuilt, publication.data.unwrap().as_bytes());
    }

    #[test]
    fn random_edits_round_trip_and_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(27);
        let alphabet: Vec<char> = "abc{}\":,0123456789 é€😀\\".chars().collect();
        let text = |len: usize, rng: &mut rand::rngs::StdRng| -> String {
            (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect()
        };
        let (mut deltas, mut fulls) = (0, 0);
        for round in 0..400 {
            let len = [0, 1, 15, 16, 17, 100, 2000][round % 7];
            let prev = text(len, &mut rng);
            // The next document: a few random edits of the previous one.
            let mut next: Vec<char> = prev.chars().collect();
            for _ in 0..rng.random_range(0..4) {
                let at = rng.random_range(0..=next.len());
                let insert = text(rng.random_range(0..8), &mut rng);
                let cut = rng.random_range(0..4).min(next.len() - at);
                next.splice(at..at + cut, insert.chars());
            }
            let next: String = next.into_iter().collect();
            match fossil(prev.as_bytes(), next.as_bytes()) {
                Some(patch) => {
                    deltas += 1;
                    assert!(patch.len() < next.len());
                    let rebuilt = fossil_delta::apply(prev.as_bytes(), patch.as_bytes())
                        .expect("the delta applies");
                    assert_eq!(rebuilt, next.as_bytes());
                }
                None => fulls += 1,
            }
        }
        assert!(
            deltas > 100 && fulls > 10,
            "{deltas} deltas, {fulls} in full"
        );
    }

    #[test]
    fn recovered_publications_chain_deltas_after_a_full_first() {
        let doc = |n: u32| format!(r#"{{"n":{n},"pad":"{}"}}"#, "q".repeat(200));
        let publications: Vec<Publication> = (1..=3)
            .map(|n| Publication {
                data: Some(protocol::raw(doc(n)).unwrap()),
                offset: n as u64,
                ..Publication::default()
            })
            .collect();
        let sent = recovered_as_deltas(Encoding::Json, publications);
        assert_eq!(sent.len(), 3);
        let text = |p: &Publication| -> String {
            serde_json::from_slice(p.data.as_ref().unwrap().as_bytes()).unwrap()
        };
        assert!(!sent[0].delta);
        assert_eq!(text(&sent[0]), doc(1));
        let mut prev = doc(1).into_bytes();
        for (p, n) in sent[1..].iter().zip(2..) {
            assert!(p.delta, "{n}");
            prev = fossil_delta::apply(&prev, text(p).as_bytes()).unwrap();
            assert_eq!(prev, doc(n).as_bytes());
            assert_eq!(p.offset, n as u64);
        }
    }
}
