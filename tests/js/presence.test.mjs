// Presence, join/leave, private channels with subscription tokens, server-side subscriptions and
// user-level disconnect, as the real centrifuge SDK sees them.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';

import { once, signHS256, sleep, startHerald, withTimeout } from './herald.mjs';

const here = dirname(fileURLToPath(import.meta.url));

let herald;
const clients = [];
before(async () => {
  herald = await startHerald({
    client: { ping_interval: '1s', pong_timeout: '900ms' },
    channel: {
      namespaces: [
        { name: 'locked' },
        {
          name: 'room',
          allow_subscribe_for_client: true,
          presence: true,
          join_leave: true,
          allow_presence_for_subscriber: true,
        },
        { name: 'personal', allow_user_limited_channels: true },
      ],
    },
  });
});
after(async () => {
  for (const c of clients) c.disconnect();
  await herald?.close();
});

/** A connected client for `user`. */
async function connected(user, options = {}) {
  const client = herald.client(user, options);
  clients.push(client);
  client.connect();
  await client.ready(5000);
  return client;
}

/** A subscription of `client` to `channel`, once subscribed. */
async function subscribed(client, channel, options = {}) {
  const sub = client.newSubscription(channel, options);
  const done = once(sub, 'subscribed');
  sub.subscribe();
  await done;
  return sub;
}

/** Users listed by `sub.presence()`, sorted. */
async function presentUsers(sub) {
  const result = await sub.presence();
  return Object.values(result.clients)
    .map((info) => info.user)
    .sort();
}

/** Polls until `sub.presence()` lists exactly `expected` (bounded). */
async function waitPresence(sub, expected, ms = 5000) {
  const deadline = Date.now() + ms;
  let users;
  while (Date.now() < deadline) {
    users = await presentUsers(sub);
    if (JSON.stringify(users) === JSON.stringify(expected)) return users;
    await sleep(50);
  }
  assert.deepEqual(users, expected, 'presence did not settle');
  return users;
}

test('presence lists exactly the connected users, also after a client is killed', async () => {
  const alice = await connected('alice');
  const bob = await connected('bob');
  const aliceSub = await subscribed(alice, 'room:presence');
  await subscribed(bob, 'room:presence');

  // Carol runs in another process, which is killed: no close frame, no unsubscribe.
  const script = `
    import { Centrifuge } from 'centrifuge';
    import WebSocket from 'ws';
    const c = new Centrifuge(${JSON.stringify(herald.wsUrl)}, { websocket: WebSocket, token: ${JSON.stringify(herald.token('carol'))} });
    const s = c.newSubscription('room:presence');
    s.on('subscribed', () => console.log('subscribed'));
    s.subscribe();
    c.connect();
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: here,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    await withTimeout(
      new Promise((resolve) => child.stdout.on('data', (d) => String(d).includes('subscribed') && resolve())),
      5000,
      'carol to subscribe'
    );
    assert.deepEqual(await waitPresence(aliceSub, ['alice', 'bob', 'carol']), ['alice', 'bob', 'carol']);
    const stats = await aliceSub.presenceStats();
    assert.deepEqual({ ...stats }, { numClients: 3, numUsers: 3 });
  } finally {
    child.kill('SIGKILL');
  }
  // Within the pong timeout (1 s ping + 0.9 s), carol is gone.
  assert.deepEqual(await waitPresence(aliceSub, ['alice', 'bob']), ['alice', 'bob']);
  const api = await herald.api('presence', { channel: 'room:presence' });
  assert.deepEqual(Object.values(api.result.presence).map((i) => i.user).sort(), ['alice', 'bob']);
  alice.disconnect();
  bob.disconnect();
});

test('join and leave events arrive once each', async () => {
  const alice = await connected('alice');
  const joins = [];
  const leaves = [];
  const sub = alice.newSubscription('room:joinleave', { joinLeave: true });
  sub.on('join', (ctx) => joins.push(ctx.info.user));
  sub.on('leave', (ctx) => leaves.push(ctx.info.user));
  const done = once(sub, 'subscribed');
  sub.subscribe();
  await done;

  const bob = await connected('bob');
  const bobSub = await subscribed(bob, 'room:joinleave');
  const deadline = Date.now() + 5000;
  while (!joins.includes('bob') && Date.now() < deadline) await sleep(20);
  bobSub.unsubscribe();
  while (!leaves.includes('bob') && Date.now() < deadline) await sleep(20);
  await sleep(300);
  assert.deepEqual(
    joins.filter((u) => u === 'bob'),
    ['bob'],
    `joins: ${joins}`
  );
  assert.deepEqual(leaves, ['bob']);
  alice.disconnect();
  bob.disconnect();
});

test('a private $ channel needs a valid subscription token for that channel and user', async () => {
  const alice = await connected('alice');
  const subToken = (claims) =>
    signHS256({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims }, herald.secret);

  // A token for the channel and user: subscribed, and publications arrive.
  const sub = alice.newSubscription('$secret', {
    getToken: async () => subToken({ sub: 'alice', channel: '$secret' }),
  });
  const got = once(sub, 'publication');
  const done = once(sub, 'subscribed');
  sub.subscribe();
  await done;
  await herald.api('publish', { channel: '$secret', data: { text: 'psst' } });
  assert.deepEqual((await got).data, { text: 'psst' });

  // No token at all: permission denied.
  const noToken = alice.newSubscription('$other');
  const refused = once(noToken, 'unsubscribed');
  noToken.subscribe();
  assert.equal((await refused).code, 103);

  // A token for another channel: the server closes the connection with 3500.
  const bad = alice.newSubscription('$elsewhere', {
    token: subToken({ sub: 'alice', channel: '$secret' }),
  });
  const disconnected = once(alice, 'disconnected');
  bad.subscribe();
  assert.equal((await disconnected).code, 3500);

  // A token for another user: the same.
  const carol = await connected('carol');
  const stolen = carol.newSubscription('$secret', { token: subToken({ sub: 'alice', channel: '$secret' }) });
  const carolGone = once(carol, 'disconnected');
  stolen.subscribe();
  assert.equal((await carolGone).code, 3500);
});

test('server-side subscriptions from the token and from /api/subscribe deliver', async () => {
  const dave = herald.client('dave', { token: herald.token('dave', { channels: ['news'] }) });
  clients.push(dave);
  const serverSide = [];
  dave.on('subscribed', (ctx) => serverSide.push(ctx.channel));
  const publications = [];
  dave.on('publication', (ctx) => publications.push([ctx.channel, ctx.data]));
  dave.connect();
  await dave.ready(5000);
  assert.deepEqual(serverSide, ['news']);

  await herald.api('subscribe', { user: 'dave', channel: 'personal:#dave' });
  const deadline = Date.now() + 5000;
  while (!serverSide.includes('personal:#dave') && Date.now() < deadline) await sleep(20);
  assert.ok(serverSide.includes('personal:#dave'), `subscribed: ${serverSide}`);

  await herald.api('publish', { channel: 'news', data: { n: 1 } });
  await herald.api('publish', { channel: 'personal:#dave', data: { n: 2 } });
  while (publications.length < 2 && Date.now() < deadline) await sleep(20);
  assert.deepEqual(publications, [
    ['news', { n: 1 }],
    ['personal:#dave', { n: 2 }],
  ]);
  dave.disconnect();
});

test('/api/disconnect by user closes all of that user\'s clients and none of another\'s', async () => {
  const phone = await connected('erin');
  const laptop = await connected('erin');
  const other = await connected('frank');
  const closed = [once(phone, 'disconnected'), once(laptop, 'disconnected')];
  await herald.api('disconnect', { user: 'erin' });
  for (const ctx of await Promise.all(closed)) {
    assert.equal(ctx.code, 3503, JSON.stringify(ctx));
  }
  await sleep(200);
  assert.equal(other.state, 'connected');
  assert.equal(phone.state, 'disconnected');
  other.disconnect();
});
