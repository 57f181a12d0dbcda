//! The hub's unit tests: fan-out, subscriptions, users, sizes, deltas and tags filters.

use super::*;
use crate::ws::CloseCode;

fn client(id: &str, user: &str, budget: usize) -> Arc<ClientHandle> {
    Arc::new(ClientHandle::new(
        id.into(),
        user.into(),
        None,
        Arc::new(Outbox::new(budget, CloseCode(3008), "slow")),
    ))
}

/// A hub with three registered clients `a`, `b` and `c` of the given users.
fn hub_with(users: [&str; 3]) -> (Hub, [Arc<ClientHandle>; 3]) {
    let hub = Hub::new();
    let clients = [("a", users[0]), ("b", users[1]), ("c", users[2])]
        .map(|(id, user)| client(id, user, 1 << 20));
    for c in &clients {
        hub.add_client(c.clone());
    }
    (hub, clients)
}

#[test]
fn broadcast_reaches_subscribers_only_and_shares_the_frame() {
    let (hub, [a, b, c]) = hub_with(["u1", "u1", "u2"]);
    assert!(hub.subscribe("news", &a));
    assert!(hub.subscribe("news", &b));
    assert!(!hub.subscribe("news", &b));
    let message = Arc::new(Message::text("{\"x\":1}"));
    let delivery = hub.broadcast("news", &message, 0);
    assert_eq!(delivery.delivered, 2);
    // Two queues plus ours hold the same message: no copies were made.
    assert_eq!(Arc::strong_count(&message), 3);
    assert_eq!(c.outbox.queued_bytes(), 0);
    assert_eq!(hub.num_users(), 2);
    assert_eq!(hub.user_clients("u1").len(), 2);
    assert_eq!(
        hub.remove_client(&a),
        vec![(Arc::from("news"), SubFlags::default())]
    );
    assert_eq!(hub.num_subscribers("news"), 1);
    assert!(hub.unsubscribe("news", &b).is_some());
    assert_eq!(hub.num_channels(), 0);
}

#[test]
fn the_first_subscriber_of_a_channel_is_reported_and_the_last_leaves_it_empty() {
    let (hub, [a, b, _]) = hub_with(["u1", "u2", "u3"]);
    let add = |c| hub.add_pending("ch", c, SubFlags::default(), Selection::default());
    assert_eq!(add(&a), Subscribed::First);
    assert_eq!(add(&b), Subscribed::Another);
    assert_eq!(add(&a), Subscribed::Already);
    // Subscribed elsewhere: still the first here.
    assert!(hub.subscribe("other", &b));
    assert_eq!(
        hub.add_pending("ch2", &b, SubFlags::default(), Selection::default()),
        Subscribed::First
    );
    assert!(hub.unsubscribe("ch", &a).is_some());
    assert_eq!(hub.num_subscribers("ch"), 1, "b is left");
    hub.remove_client(&b);
    assert_eq!(hub.num_subscribers("ch"), 0, "the last one left");
    // The channel is empty again: the next subscriber is its first.
    assert_eq!(add(&a), Subscribed::First);
}

#[test]
fn anonymous_connections_are_found_by_id_and_count_as_one_user() {
    let (hub, [a, b, c]) = hub_with(["", "", "u"]);
    assert_eq!((hub.num_users(), hub.num_clients()), (2, 3));
    assert!(
        hub.client("", "b")
            .is_some_and(|found| Arc::ptr_eq(&found, &b))
    );
    assert!(hub.client("", "c").is_none(), "c is u's");
    assert!(hub.user_clients("").is_empty());
    assert_eq!(hub.all_clients().len(), 3);
    hub.remove_client(&a);
    hub.remove_client(&a);
    assert_eq!((hub.num_users(), hub.num_clients()), (2, 2));
    hub.remove_client(&b);
    assert_eq!((hub.num_users(), hub.num_clients()), (1, 1));
    assert!(Arc::ptr_eq(&hub.all_clients()[0], &c));
}

#[test]
fn a_short_user_id_and_one_channel_take_no_allocation() {
    let c = client("a", "user-1234567890", 1 << 20);
    assert!(!c.user.is_heap_allocated());
    c.channels().insert("news".into());
    assert!(!c.channels().sorted.spilled());
}

#[test]
fn a_users_connections_outlive_the_first_one() {
    let (hub, [a, b, c]) = hub_with(["u", "u", "u"]);
    let ids = |user: &str| -> Vec<String> {
        hub.user_clients(user)
            .iter()
            .map(|c| c.id.to_string())
            .collect()
    };
    assert_eq!(ids("u"), ["a", "b", "c"]);
    hub.remove_client(&a);
    assert_eq!(ids("u"), ["b", "c"]);
    assert!(hub.client("u", "a").is_none());
    assert!(hub.client("v", "b").is_none(), "b is u's, not v's");
    assert_eq!(
        hub.client("u", "b").map(|h| h.id.to_string()).as_deref(),
        Some("b")
    );
    hub.remove_client(&c);
    assert_eq!(ids("u"), ["b"]);
    assert!(
        read(&hub.users).others.is_empty(),
        "a lone connection needs no vector"
    );
    hub.remove_client(&b);
    assert!(ids("u").is_empty());
    assert_eq!((hub.num_users(), hub.num_clients()), (0, 0));
}

#[test]
fn a_handle_stays_within_112_bytes() {
    // With the `Arc` counts, 128 bytes: jemalloc's 128-byte class. The id, a short user
    // id and one channel are inline (no allocation of their own) and must not widen the
    // handle past it.
    assert!(
        size_of::<ClientHandle>() <= 112,
        "{}",
        size_of::<ClientHandle>()
    );
}

#[test]
fn a_client_with_a_uuid_id_is_found_by_its_exact_string() {
    let hub = Hub::new();
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    let c = Arc::new(ClientHandle::new(
        uuid::Uuid::try_parse(&id).expect("a UUID").into(),
        "u".into(),
        None,
        Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow")),
    ));
    hub.add_client(c.clone());
    assert_eq!(c.id.to_string(), id);
    assert_eq!(c.info().client, id);
    assert!(
        hub.client("u", &id)
            .is_some_and(|found| Arc::ptr_eq(&found, &c))
    );
    assert!(hub.client("u", &id.to_uppercase()).is_none());
    assert!(hub.client("u", &id.replace('-', "")).is_none());
    hub.remove_client(&c);
    assert!(hub.client("u", &id).is_none());
}

#[test]
fn a_channel_set_stays_sorted_and_frees_its_memory() {
    let mut set = ChannelSet::default();
    assert!(set.insert("b".into()));
    assert!(set.insert("a".into()));
    assert!(!set.insert("b".into()));
    assert!(set.contains("a") && set.contains("b") && !set.contains("c"));
    assert_eq!(set.iter().map(|c| &**c).collect::<Vec<_>>(), ["a", "b"]);
    assert!(set.remove("a") && !set.remove("a"));
    assert!(set.remove("b"));
    assert!(set.is_empty());
    assert!(!set.sorted.spilled(), "the set went back inline");
    assert!(set.insert("c".into()));
    assert!(!set.sorted.spilled(), "one channel is kept inline");
}

#[test]
fn a_slow_subscriber_is_cut_off_alone() {
    let hub = Hub::new();
    let (slow, fast) = (client("slow", "", 100), client("fast", "", 1 << 20));
    hub.subscribe("ch", &slow);
    hub.subscribe("ch", &fast);
    let message = Arc::new(Message::text(&"x".repeat(60)));
    assert_eq!(hub.broadcast("ch", &message, 0).overflowed, 0);
    let second = hub.broadcast("ch", &message, 0);
    assert_eq!((second.delivered, second.overflowed), (1, 1));
    assert!(slow.outbox.is_closed());
    assert!(!fast.outbox.is_closed());
}

#[test]
fn a_subscriber_takes_16_bytes() {
    assert_eq!(size_of::<Subscriber>(), 16);
}

#[test]
fn a_pending_subscription_can_end_before_it_is_activated() {
    let hub = Hub::new();
    let (a, b) = (client("a", "u", 1 << 20), client("b", "u", 1 << 20));
    assert!(hub.subscribe("ch", &a));
    assert!(hub.subscribe_pending("ch", &b, SubFlags::default()));
    assert_eq!(hub.num_subscribers("ch"), 2);
    assert!(!hub.subscribe("ch", &b), "already subscribed while pending");
    assert_eq!(
        hub.broadcast("ch", &Arc::new(Message::text("1")), 1)
            .delivered,
        1
    );
    assert!(hub.unsubscribe("ch", &b).is_some());
    assert_eq!(hub.num_subscribers("ch"), 1);
    hub.activate("ch", &b, 0);
    assert_eq!(
        b.outbox.queued_bytes(),
        0,
        "nothing is handed to a gone subscription"
    );
    assert!(hub.unsubscribe("ch", &a).is_some());
    assert_eq!(hub.num_channels(), 0);
}

#[test]
fn a_pending_subscription_gets_what_came_after_its_position_once() {
    let hub = Hub::new();
    let c = client("c", "u", 1 << 20);
    assert!(hub.subscribe_pending("ch", &c, SubFlags::default()));
    for offset in 5..=8 {
        hub.broadcast("ch", &Arc::new(Message::text(&offset.to_string())), offset);
    }
    assert_eq!(c.outbox.queued_bytes(), 0, "held back until activated");
    // The subscribe reply carried offsets up to 6: 7 and 8 follow it.
    hub.activate("ch", &c, 6);
    hub.broadcast("ch", &Arc::new(Message::text("9")), 9);
    let mut queued = std::collections::VecDeque::new();
    c.outbox.drain_into(&mut queued);
    let payloads: Vec<Vec<u8>> = queued
        .iter()
        .map(|item| match item {
            crate::ws::Outgoing::Shared(m) => m.payload().to_vec(),
            crate::ws::Outgoing::Frame(f) => f.payload().to_vec(),
        })
        .collect();
    assert_eq!(payloads, vec![b"7".to_vec(), b"8".to_vec(), b"9".to_vec()]);
}

/// What `c` has been sent, as strings.
fn sent(c: &ClientHandle) -> Vec<String> {
    let mut queued = std::collections::VecDeque::new();
    c.outbox.drain_into(&mut queued);
    queued
        .iter()
        .map(|item| match item {
            crate::ws::Outgoing::Shared(m) => m.payload().to_vec(),
            crate::ws::Outgoing::Frame(f) => f.payload().to_vec(),
        })
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .collect()
}

/// Publishes `data` with tags to `channel` the way the node does; returns the plain push.
fn publish(
    hub: &Hub,
    channel: &str,
    data: &str,
    tags: &[(&str, &str)],
    delta: bool,
) -> (Arc<Message>, Delivery) {
    let publication = Publication {
        data: Some(crate::protocol::raw(data).unwrap()),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Publication::default()
    };
    // As `broadcast_publication`, keeping the JSON message for the caller.
    let prepared = Prepared::publication(channel, &publication);
    let delivery = hub.fan_out(channel, &prepared, 0, Some((&publication, delta)));
    (prepared.take(Encoding::Json).unwrap(), delivery)
}

fn selective(hub: &Hub, channel: &str, c: &Arc<ClientHandle>, selection: Selection) {
    assert!(hub.subscribe_pending_selective(channel, c, SubFlags::default(), selection));
    hub.activate(channel, c, 0);
}

fn filter(json: &str) -> Option<Box<FilterNode>> {
    Some(Box::new(serde_json::from_str(json).unwrap()))
}

#[test]
fn a_tags_filter_decides_per_subscriber_and_shares_the_frame() {
    let hub = Hub::new();
    let (plain, btc, eth) = (
        client("p", "", 1 << 20),
        client("b", "", 1 << 20),
        client("e", "", 1 << 20),
    );
    assert!(hub.subscribe("ch", &plain));
    let tf = |v: &str| Selection {
        tags_filter: filter(&format!(r#"{{"key":"ticker","cmp":"eq","val":"{v}"}}"#)),
        delta: false,
    };
    selective(&hub, "ch", &btc, tf("BTC"));
    selective(&hub, "ch", &eth, tf("ETH"));
    assert_eq!(hub.num_subscribers("ch"), 3);
    let (message, delivery) = publish(&hub, "ch", "1", &[("ticker", "BTC")], false);
    assert_eq!(delivery.delivered, 2);
    // The plain subscriber's and BTC's queues hold the very same message.
    assert_eq!(Arc::strong_count(&message), 3);
    publish(&hub, "ch", "2", &[("ticker", "ETH")], false);
    publish(&hub, "ch", "3", &[], false);
    let data = |c: &ClientHandle| -> Vec<String> {
        sent(c)
            .iter()
            .map(|p| {
                let v: serde_json::Value = serde_json::from_str(p).unwrap();
                v["push"]["pub"]["data"].to_string()
            })
            .collect()
    };
    assert_eq!(data(&plain), ["1", "2", "3"]);
    assert_eq!(data(&btc), ["1"]);
    assert_eq!(data(&eth), ["2"]);
    assert!(hub.unsubscribe("ch", &btc).is_some());
    assert!(hub.unsubscribe("ch", &eth).is_some());
    assert!(
        read(hub.shard("ch"))["ch"].special.is_none(),
        "the channel's special list is gone with its last member"
    );
}

#[test]
fn delta_subscribers_get_a_full_string_then_deltas_encoded_once() {
    let hub = Hub::new();
    let (a, b, plain) = (
        client("a", "", 1 << 20),
        client("b", "", 1 << 20),
        client("p", "", 1 << 20),
    );
    let delta = || Selection {
        tags_filter: None,
        delta: true,
    };
    hub.subscribe("ch", &plain);
    selective(&hub, "ch", &a, delta());
    let doc = |n: u32| format!(r#"{{"n":{n},"text":"{}"}}"#, "lorem ipsum ".repeat(20));
    publish(&hub, "ch", &doc(1), &[], true);
    selective(&hub, "ch", &b, delta());
    publish(&hub, "ch", &doc(2), &[], true);
    publish(&hub, "ch", &doc(3), &[], false);
    publish(&hub, "ch", &doc(4), &[], true);
    let pubs = |c: &ClientHandle| -> Vec<serde_json::Value> {
        sent(c)
            .iter()
            .map(|p| serde_json::from_str::<serde_json::Value>(p).unwrap()["push"]["pub"].clone())
            .collect()
    };
    // Rebuild what a delta subscriber sees, as the SDK does.
    let rebuild = |pubs: &[serde_json::Value]| -> (Vec<String>, usize) {
        let mut prev = Vec::new();
        let mut deltas = 0;
        let docs = pubs
            .iter()
            .map(|p| {
                let data = p["data"].as_str().expect("data is a JSON string");
                prev = if p["delta"] == true {
                    deltas += 1;
                    fossil_delta::apply(&prev, data.as_bytes()).unwrap()
                } else {
                    data.as_bytes().to_vec()
                };
                String::from_utf8(prev.clone()).unwrap()
            })
            .collect();
        (docs, deltas)
    };
    let (a_docs, a_deltas) = rebuild(&pubs(&a));
    assert_eq!(a_docs, [doc(1), doc(2), doc(3), doc(4)]);
    // 1: no base yet; 3: published without delta.
    assert_eq!(a_deltas, 2);
    let b_pubs = pubs(&b);
    let (b_docs, b_deltas) = rebuild(&b_pubs);
    assert_eq!(b_docs, [doc(2), doc(3), doc(4)]);
    assert_eq!(b_deltas, 1, "b's first publication is full: it had no base");
    assert!(
        b_pubs[2]["data"].as_str().unwrap().len() < 40,
        "a small delta"
    );
    // The plain subscriber gets plain JSON.
    let plain_pubs = pubs(&plain);
    assert_eq!(plain_pubs.len(), 4);
    assert!(
        plain_pubs
            .iter()
            .all(|p| p["data"]["n"].is_number() && p["delta"].is_null())
    );
}

#[test]
fn one_delta_is_made_per_publication_for_all_subscribers() {
    let hub = Hub::new();
    let subs: Vec<_> = (0..5)
        .map(|i| client(&i.to_string(), "", 1 << 20))
        .collect();
    for c in &subs {
        selective(
            &hub,
            "ch",
            c,
            Selection {
                tags_filter: None,
                delta: true,
            },
        );
    }
    let doc = |n: u32| format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(200));
    publish(&hub, "ch", &doc(1), &[], true);
    publish(&hub, "ch", &doc(2), &[], true);
    let mut deltas: Vec<Arc<Message>> = Vec::new();
    for c in &subs {
        let mut queued = std::collections::VecDeque::new();
        c.outbox.drain_into(&mut queued);
        assert_eq!(queued.len(), 2);
        match &queued[1] {
            crate::ws::Outgoing::Shared(m) => deltas.push(m.clone()),
            crate::ws::Outgoing::Frame(_) => panic!("a shared message expected"),
        }
    }
    assert!(
        deltas.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])),
        "every subscriber got the same message"
    );
    assert!(
        deltas[0]
            .payload()
            .windows(12)
            .any(|w| w == b"\"delta\":true")
    );
}

#[test]
fn a_pending_delta_subscriber_starts_from_a_full_publication() {
    let hub = Hub::new();
    let c = client("c", "", 1 << 20);
    let doc = |n: u32| format!(r#"{{"n":{n},"pad":"{}"}}"#, "y".repeat(100));
    assert!(hub.subscribe_pending_selective(
        "ch",
        &c,
        SubFlags::default(),
        Selection {
            tags_filter: None,
            delta: true
        }
    ));
    let publication = |n: u32| Publication {
        data: Some(crate::protocol::raw(doc(n)).unwrap()),
        offset: n as u64,
        ..Publication::default()
    };
    for n in 1..=2 {
        let p = publication(n);
        hub.broadcast_publication("ch", &p, true);
    }
    hub.activate("ch", &c, 1);
    let p = publication(3);
    hub.broadcast_publication("ch", &p, true);
    let got: Vec<serde_json::Value> = sent(&c)
        .iter()
        .map(|p| serde_json::from_str::<serde_json::Value>(p).unwrap()["push"]["pub"].clone())
        .collect();
    assert_eq!(got.len(), 2, "offset 1 came with the subscribe reply");
    assert_eq!(got[0]["data"], doc(2), "held back as a full string");
    assert_eq!(got[0]["offset"], 2);
    assert_eq!(got[1]["delta"], true, "then a delta against offset 2");
    let rebuilt = fossil_delta::apply(
        doc(2).as_bytes(),
        got[1]["data"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    assert_eq!(rebuilt, doc(3).as_bytes());
}

#[test]
fn a_delta_subscriber_that_missed_a_publication_gets_the_next_in_full() {
    let hub = Hub::new();
    let c = client("c", "", 1 << 20);
    selective(
        &hub,
        "ch",
        &c,
        Selection {
            tags_filter: filter(r#"{"key":"k","cmp":"ex"}"#),
            delta: true,
        },
    );
    let doc = |n: u32| format!(r#"{{"n":{n},"pad":"{}"}}"#, "z".repeat(100));
    publish(&hub, "ch", &doc(1), &[("k", "")], true);
    publish(&hub, "ch", &doc(2), &[], true);
    publish(&hub, "ch", &doc(3), &[("k", "")], true);
    publish(&hub, "ch", &doc(4), &[("k", "")], true);
    let got: Vec<serde_json::Value> = sent(&c)
        .iter()
        .map(|p| serde_json::from_str::<serde_json::Value>(p).unwrap()["push"]["pub"].clone())
        .collect();
    let deltas: Vec<bool> = got.iter().map(|p| p["delta"] == true).collect();
    assert_eq!(
        deltas,
        [false, false, true],
        "3 is full: 2 was filtered out"
    );
    assert_eq!(got[1]["data"], doc(3));
}

#[test]
fn the_delta_base_is_dropped_with_the_last_delta_subscriber() {
    let hub = Hub::new();
    let (a, keep) = (client("a", "", 1 << 20), client("k", "", 1 << 20));
    hub.subscribe("ch", &keep);
    let delta = || Selection {
        tags_filter: None,
        delta: true,
    };
    selective(&hub, "ch", &a, delta());
    publish(&hub, "ch", r#"{"v":1}"#, &[], true);
    assert!(hub.unsubscribe("ch", &a).is_some());
    assert!(read(hub.shard("ch"))["ch"].special.is_none());
    // Published while nobody kept a base: a new delta subscriber must not get a delta
    // against the stale one.
    publish(&hub, "ch", r#"{"v":2}"#, &[], true);
    selective(&hub, "ch", &a, delta());
    publish(&hub, "ch", r#"{"v":3}"#, &[], true);
    let got = sent(&a);
    assert!(
        got[got.len() - 1].contains(r#""data":"{\"v\":3}""#),
        "{got:?}"
    );
}
/// The messages queued for `c`, as the shared messages they are.
fn shared(c: &ClientHandle) -> Vec<Arc<Message>> {
    let mut queued = std::collections::VecDeque::new();
    c.outbox.drain_into(&mut queued);
    queued
        .into_iter()
        .filter_map(|item| match item {
            crate::ws::Outgoing::Shared(m) => Some(m),
            crate::ws::Outgoing::Frame(_) => None,
        })
        .collect()
}

#[test]
fn a_channel_with_two_encodings_encodes_each_publication_once_per_encoding() {
    use crate::protocol::codec::counting;
    let hub = Hub::new();
    let speaking = |id: &str, encoding: Encoding| {
        let outbox = Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow"));
        Arc::new(ClientHandle::new(id.into(), "".into(), None, outbox).with_encoding(encoding))
    };
    let json: Vec<_> = (0..3)
        .map(|i| speaking(&format!("j{i}"), Encoding::Json))
        .collect();
    let other: Vec<_> = (0..3)
        .map(|i| speaking(&format!("c{i}"), Encoding::Counting))
        .collect();
    for c in json.iter().chain(&other) {
        assert!(hub.subscribe("ch", c));
    }
    // One of the other encoding with a tags filter, two with deltas.
    let filtered = speaking("f", Encoding::Counting);
    let ticker = r#"{"key":"ticker","cmp":"eq","val":"BTC"}"#;
    let tf = Selection {
        tags_filter: filter(ticker),
        delta: false,
    };
    selective(&hub, "ch", &filtered, tf);
    let deltas: Vec<_> = (0..2)
        .map(|i| speaking(&format!("d{i}"), Encoding::Counting))
        .collect();
    for c in &deltas {
        let delta = Selection {
            tags_filter: None,
            delta: true,
        };
        selective(&hub, "ch", c, delta);
    }

    let before = counting::encoded();
    let doc = |n: u32| format!(r#"{{"n":{n},"text":"{}"}}"#, "lorem ipsum ".repeat(20));
    let (_, delivery) = publish(&hub, "ch", &doc(1), &[("ticker", "BTC")], true);
    assert_eq!(delivery.delivered, 9);
    // The other encoding: its plain push, and the full form for delta subscribers without
    // a base — once each for its six subscribers.
    assert_eq!(counting::encoded() - before, 2);
    let before = counting::encoded();
    publish(&hub, "ch", &doc(2), &[("ticker", "BTC")], true);
    // Its plain push and one delta for both delta subscribers.
    assert_eq!(counting::encoded() - before, 2);

    // JSON subscribers share one JSON message per publication.
    let first: Vec<_> = json.iter().map(|c| shared(c)).collect();
    for queued in &first {
        assert_eq!(queued.len(), 2);
        assert!(Arc::ptr_eq(&queued[0], &first[0][0]));
        assert!(Arc::ptr_eq(&queued[1], &first[0][1]));
        assert!(queued[0].payload().starts_with(b"{\"push\""));
    }
    // The other encoding's plain subscribers (and the filtered one) share theirs.
    let plain: Vec<_> = other.iter().chain([&filtered]).map(|c| shared(c)).collect();
    for queued in &plain {
        assert_eq!(queued.len(), 2);
        assert!(Arc::ptr_eq(&queued[0], &plain[0][0]));
        assert!(queued[0].payload().starts_with(b"counting:{\"push\""));
    }
    // Its delta subscribers share the full form, then the delta, in their encoding.
    let delta: Vec<_> = deltas.iter().map(|c| shared(c)).collect();
    assert!(Arc::ptr_eq(&delta[0][0], &delta[1][0]));
    assert!(Arc::ptr_eq(&delta[0][1], &delta[1][1]));
    let second = std::str::from_utf8(delta[0][1].payload()).unwrap();
    let second: serde_json::Value =
        serde_json::from_str(second.strip_prefix("counting:").unwrap()).unwrap();
    assert_eq!(second["push"]["pub"]["delta"], true, "{second}");
}

#[test]
fn a_join_push_is_encoded_once_per_encoding() {
    let hub = Hub::new();
    let json = client("j", "", 1 << 20);
    let outbox = Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow"));
    let other = Arc::new(
        ClientHandle::new("c".into(), "".into(), None, outbox).with_encoding(Encoding::Counting),
    );
    let flags = SubFlags {
        push_join_leave: true,
        ..SubFlags::default()
    };
    assert!(hub.subscribe_with("ch", &json, flags));
    assert!(hub.subscribe_with("ch", &other, flags));
    let push = crate::protocol::Push::join("ch", json.info());
    let prepared = Prepared::push(&push);
    assert_eq!(hub.broadcast_join_leave("ch", &prepared).delivered, 2);
    assert!(sent(&json)[0].starts_with(r#"{"push":{"channel":"ch","join""#));
    assert!(sent(&other)[0].starts_with(r#"counting:{"push":{"channel":"ch","join""#));
}
#[test]
fn a_pending_subscriber_is_held_its_own_encoding() {
    let hub = Hub::new();
    let outbox = Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow"));
    let other = Arc::new(
        ClientHandle::new("c".into(), "".into(), None, outbox).with_encoding(Encoding::Counting),
    );
    let json = client("j", "", 1 << 20);
    for c in [&json, &other] {
        assert!(hub.subscribe_pending("ch", c, SubFlags::default()));
    }
    let publication = Publication {
        data: Some(crate::protocol::raw("1").unwrap()),
        offset: 1,
        ..Publication::default()
    };
    hub.broadcast_publication("ch", &publication, false);
    for c in [&json, &other] {
        hub.activate("ch", c, 0);
    }
    assert_eq!(
        sent(&json),
        [r#"{"push":{"channel":"ch","pub":{"data":1,"offset":1}}}"#]
    );
    assert_eq!(
        sent(&other),
        [r#"counting:{"push":{"channel":"ch","pub":{"data":1,"offset":1}}}"#]
    );
}

/// Records what a [`HubObserver`] is told.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl HubObserver for Recorder {
    fn user_up(&self, user: &str) {
        self.0.lock().unwrap().push(format!("up {user}"));
    }
    fn user_down(&self, user: &str) {
        self.0.lock().unwrap().push(format!("down {user}"));
    }
    fn channel_up(&self, channel: &str) {
        self.0.lock().unwrap().push(format!("occupied {channel}"));
    }
    fn channel_down(&self, channel: &str) {
        self.0.lock().unwrap().push(format!("vacated {channel}"));
    }
}

/// The observer hears of a user's first connection and last one only (never of anonymous
/// ones), and of a channel's first subscriber (pending or active) and last one only, however
/// the subscription ends.
#[test]
fn the_observer_hears_first_and_last_only() {
    let hub = Hub::new();
    let recorder = Arc::new(Recorder::default());
    assert!(hub.set_observer(recorder.clone()).is_ok());
    let (a, b, anon) = (
        client("a", "alice", 1 << 20),
        client("b", "alice", 1 << 20),
        client("c", "", 1 << 20),
    );
    for c in [&a, &b, &anon] {
        hub.add_client(c.clone());
    }
    assert!(hub.subscribe_pending("news", &a, SubFlags::default()));
    assert!(hub.subscribe("news", &b));
    assert!(hub.subscribe("news", &anon));
    hub.unsubscribe("news", &a);
    hub.remove_client(&a);
    hub.remove_client(&anon);
    assert_eq!(
        *recorder.0.lock().unwrap(),
        ["up alice", "occupied news"],
        "b is still there"
    );
    hub.remove_client(&b);
    assert_eq!(
        *recorder.0.lock().unwrap(),
        ["up alice", "occupied news", "vacated news", "down alice"]
    );
}
