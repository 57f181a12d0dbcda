// Centrifugo behaviours the real centrifuge SDK relies on (issue 27): an invalid subscription
// token fails only the subscription (error 103, the client stays connected); map and
// shared-poll subscriptions are refused with 108; the getState flow
// (`reject_unrecovered` subscribe flag) gets error 112 for a position that cannot be recovered,
// so the SDK calls getState again and subscribes from the reloaded position; and the cache
// recovery mode (`force_recovery_mode: "cache"`) hands a subscriber the channel's latest
// publication rather than a replay of the stream. And Centrifugo's environment form of named
// namespaces (`HERALD_CHANNEL_NAMESPACES=name`, `HERALD_CHANNEL_NAMESPACES_NAME_OPTION=…`).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { Herald, once, signHS256, sleep, startHerald, withTimeout } from './herald.mjs';

const STREAM = {
  name: 'stream',
  allow_subscribe_for_client: true,
  history_size: 3,
  history_ttl: '300s',
  force_recovery: true,
};
const STATE = {
  name: 'state',
  allow_subscribe_for_client: true,
  history_size: 10,
  history_ttl: '300s',
  force_recovery: true,
  force_recovery_mode: 'cache',
};

let herald;
const clients = [];
before(async () => {
  herald = await startHerald({ channel: { namespaces: [STREAM, STATE] } });
});
after(async () => {
  for (const c of clients) c.disconnect();
  await herald?.close();
});

async function connected(user) {
  const client = herald.client(user);
  clients.push(client);
  client.connect();
  await client.ready(5000);
  return client;
}

async function publish(channel, data) {
  const reply = await herald.api('publish', { channel, data });
  assert.ok(reply.result, JSON.stringify(reply));
  return reply.result;
}

test('an invalid subscription token fails the subscription with 103, the client stays connected', async () => {
  const client = await connected('alice');
  const cases = {
    'bad signature': signHS256({ sub: 'alice', channel: '$private' }, 'not-the-secret'),
    'no channel claim': signHS256({ sub: 'alice' }, herald.secret),
    malformed: 'not-a-jwt',
  };
  for (const [what, token] of Object.entries(cases)) {
    const sub = client.newSubscription('$private', { token });
    // A permanent subscribe error: the SDK ends the subscription with the error's code.
    const unsubscribed = once(sub, 'unsubscribed');
    sub.subscribe();
    const ctx = await unsubscribed;
    assert.equal(ctx.code, 103, `${what}: ${JSON.stringify(ctx)}`);
    assert.equal(client.state, 'connected', `${what}: the client must stay connected`);
    client.removeSubscription(sub);
  }
  // The same connection subscribes once the token is right.
  const sub = client.newSubscription('$private', {
    token: signHS256({ sub: 'alice', channel: '$private' }, herald.secret),
  });
  sub.subscribe();
  await sub.ready(5000);
  assert.equal(client.state, 'connected');
});

test('map and shared-poll subscriptions are refused with 108 (not available), not served as streams', async () => {
  const client = await connected('erin');
  for (const options of [{ map: true }, { sharedPoll: true }]) {
    const sub = client.newSubscription(`typed-${Object.keys(options)[0]}`, options);
    const unsubscribed = once(sub, 'unsubscribed');
    sub.subscribe();
    const ctx = await unsubscribed;
    assert.equal(ctx.code, 108, `${JSON.stringify(options)}: ${JSON.stringify(ctx)}`);
    assert.equal(client.state, 'connected');
  }
});

test('getState: an unrecoverable position answers 112, the SDK reloads and subscribes from the new state', async () => {
  const channel = 'stream:doc';
  let epoch = '';
  for (let n = 1; n <= 10; n += 1) {
    ({ epoch } = await publish(channel, { n }));
  }
  const client = await connected('bob');
  // The app's state: first a stale snapshot at offset 1 (only 8..10 are still kept), then,
  // reloaded, the current one at offset 10.
  const snapshots = [
    { offset: 1, epoch },
    { offset: 10, epoch },
  ];
  const loaded = [];
  const sub = client.newSubscription(channel, {
    getState: async () => {
      const state = snapshots[Math.min(loaded.length, snapshots.length - 1)];
      loaded.push(state.offset);
      return state;
    },
    minResubscribeDelay: 50,
    maxResubscribeDelay: 200,
  });
  const errors = [];
  sub.on('error', (ctx) => errors.push(ctx.error.code));
  const subscribed = once(sub, 'subscribed');
  sub.subscribe();
  const ctx = await subscribed;
  assert.deepEqual(loaded, [1, 10], 'getState was called again after the 112');
  assert.deepEqual(errors, [], 'the 112 is handled by the SDK, not reported as an error');
  assert.equal(ctx.recovered, true, JSON.stringify(ctx));
  assert.equal(ctx.streamPosition.offset, 10, JSON.stringify(ctx));
  // Live publications follow the reloaded state.
  const publication = once(sub, 'publication');
  await publish(channel, { n: 11 });
  const pub = await publication;
  assert.deepEqual(pub.data, { n: 11 });
  assert.equal(pub.offset, 11);
});

test('cache recovery mode: a subscriber gets the latest publication only', async () => {
  const channel = 'state:board';
  for (let n = 1; n <= 5; n += 1) {
    await publish(channel, { n });
  }
  const client = await connected('carol');
  const sub = client.newSubscription(channel, { since: { offset: 0, epoch: '' } });
  const received = [];
  sub.on('publication', (ctx) => received.push(ctx.data.n));
  const subscribed = once(sub, 'subscribed');
  sub.subscribe();
  const ctx = await subscribed;
  assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
  assert.equal(ctx.recovered, true, JSON.stringify(ctx));
  // The recovered publication comes right after `subscribed`; a replay of the stream would
  // bring 1..5 here.
  await withTimeout(
    (async () => {
      while (received.length < 1) await sleep(10);
    })(),
    5000,
    'the latest publication'
  );
  await sleep(200);
  assert.deepEqual(received, [5]);
  // Live publications follow.
  await publish(channel, { n: 6 });
  await withTimeout(
    (async () => {
      while (received.length < 2) await sleep(10);
    })(),
    5000,
    'a live publication'
  );
  assert.deepEqual(received, [5, 6]);
});

test("namespaces from the environment in Centrifugo's form: names, then options per name", async () => {
  const server = new Herald({});
  server.env = {
    HERALD_CHANNEL_NAMESPACES: 'smallhistory',
    HERALD_CHANNEL_NAMESPACES_SMALLHISTORY_ALLOW_SUBSCRIBE_FOR_CLIENT: 'true',
    HERALD_CHANNEL_NAMESPACES_SMALLHISTORY_HISTORY_SIZE: '10',
    HERALD_CHANNEL_NAMESPACES_SMALLHISTORY_HISTORY_TTL: '300s',
    HERALD_CHANNEL_NAMESPACES_SMALLHISTORY_FORCE_RECOVERY: 'true',
  };
  try {
    await server.start();
    for (let n = 1; n <= 3; n += 1) {
      await server.api('publish', { channel: 'smallhistory:x', data: { n } });
    }
    const client = server.client('dan');
    clients.push(client);
    client.connect();
    await client.ready(5000);
    // Subscribing is allowed, and the history (size, ttl, recovery) is there.
    const sub = client.newSubscription('smallhistory:x', { since: { offset: 0, epoch: '' } });
    const received = [];
    sub.on('publication', (ctx) => received.push(ctx.data.n));
    const subscribed = once(sub, 'subscribed');
    sub.subscribe();
    const ctx = await subscribed;
    assert.equal(ctx.recovered, true, JSON.stringify(ctx));
    await withTimeout(
      (async () => {
        while (received.length < 3) await sleep(10);
      })(),
      5000,
      'the recovered publications'
    );
    assert.deepEqual(received, [1, 2, 3]);
    client.disconnect();
  } finally {
    await server.close();
  }
});
