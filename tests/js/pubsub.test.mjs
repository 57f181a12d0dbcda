// Publications reach subscribers of the real centrifuge SDK: from the server API
// (POST /api/publish, /api/broadcast) and from another client.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { once, startHerald } from './herald.mjs';

let herald;
const clients = [];
before(async () => {
  herald = await startHerald();
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

async function subscribed(client, channel) {
  const sub = client.newSubscription(channel);
  const ctx = once(sub, 'subscribed');
  sub.subscribe();
  await ctx;
  return sub;
}

test('a publication made through POST /api/publish reaches a subscriber', async () => {
  const client = await connected('alice');
  const sub = await subscribed(client, 'news');
  const received = once(sub, 'publication');
  const reply = await herald.api('publish', { channel: 'news', data: { text: 'hello from the API' } });
  assert.ok(reply.result, `API reply: ${JSON.stringify(reply)}`);
  const ctx = await received;
  assert.equal(ctx.channel, 'news');
  assert.deepEqual(ctx.data, { text: 'hello from the API' });
});

test('POST /api/broadcast reaches subscribers of every channel', async () => {
  const client = await connected('dave');
  const a = await subscribed(client, 'bcast-a');
  const b = await subscribed(client, 'bcast-b');
  const gotA = once(a, 'publication');
  const gotB = once(b, 'publication');
  const reply = await herald.api('broadcast', { channels: ['bcast-a', 'bcast-b'], data: { n: 1 } });
  assert.equal(reply.result?.responses?.length, 2, `API reply: ${JSON.stringify(reply)}`);
  assert.deepEqual((await gotA).data, { n: 1 });
  assert.deepEqual((await gotB).data, { n: 1 });
});

test('the server API refuses a wrong API key with HTTP 401', async () => {
  const res = await fetch(`${herald.apiUrl}/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': 'wrong' },
    body: JSON.stringify({ channel: 'news', data: {} }),
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(res.status, 401);
});

test('a publication from one client reaches another client, with the publisher info', async () => {
  const alice = await connected('alice');
  const bob = await connected('bob');
  const bobSub = await subscribed(bob, 'chat');
  const received = once(bobSub, 'publication');
  await alice.publish('chat', { text: 'hi bob' });
  const ctx = await received;
  assert.deepEqual(ctx.data, { text: 'hi bob' });
  assert.equal(ctx.info?.user, 'alice', `publication info: ${JSON.stringify(ctx.info)}`);
});

test('a subscriber publishing through its subscription receives its own publication', async () => {
  const carol = await connected('carol');
  const sub = await subscribed(carol, 'echo');
  const received = once(sub, 'publication');
  await sub.publish({ n: 42 });
  assert.deepEqual((await received).data, { n: 42 });
});

test('publications arrive in order', async () => {
  const alice = await connected('alice');
  const bob = await connected('bob');
  const sub = await subscribed(bob, 'ordered');
  const seen = [];
  const all = new Promise((resolve) =>
    sub.on('publication', (ctx) => {
      seen.push(ctx.data.i);
      if (seen.length === 50) resolve();
    })
  );
  await Promise.all(Array.from({ length: 50 }, (_, i) => alice.publish('ordered', { i })));
  await Promise.race([all, new Promise((_, rej) => setTimeout(() => rej(new Error(`got ${seen.length}/50`)), 5000))]);
  assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => i));
});
