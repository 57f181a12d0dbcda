// Server API methods that act on connected clients, as the real centrifuge SDK sees them.

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

test('POST /api/subscribe adds a server-side subscription that receives publications', async () => {
  const client = await connected('sam');
  const subscribed = once(client, 'subscribed');
  const reply = await herald.api('subscribe', { user: 'sam', channel: 'server-side' });
  assert.deepEqual(reply, { result: {} });
  assert.equal((await subscribed).channel, 'server-side');

  const publication = once(client, 'publication');
  await herald.api('publish', { channel: 'server-side', data: { via: 'server-side sub' } });
  const ctx = await publication;
  assert.equal(ctx.channel, 'server-side');
  assert.deepEqual(ctx.data, { via: 'server-side sub' });
});

test('POST /api/unsubscribe ends a client subscription with code 2000', async () => {
  const client = await connected('uma');
  const sub = client.newSubscription('to-be-removed');
  sub.subscribe();
  await sub.ready(5000);
  const unsubscribed = once(sub, 'unsubscribed');
  await herald.api('unsubscribe', { user: 'uma', channel: 'to-be-removed' });
  const ctx = await unsubscribed;
  assert.equal(ctx.code, 2000, JSON.stringify(ctx));
  assert.equal(sub.state, 'unsubscribed');
  assert.equal(client.state, 'connected');
});

test('POST /api/disconnect closes every connection of a user with 3503, no reconnect', async () => {
  const a = await connected('dora');
  const b = await connected('dora');
  const other = await connected('otto');
  const gone = [once(a, 'disconnected'), once(b, 'disconnected')];
  await herald.api('disconnect', { user: 'dora' });
  for (const ctx of await Promise.all(gone)) {
    assert.equal(ctx.code, 3503, JSON.stringify(ctx));
  }
  assert.equal(a.state, 'disconnected');
  assert.equal(b.state, 'disconnected');
  assert.equal(other.state, 'connected', 'other users stay connected');
});

test('POST /api/info and /api/channels count the connected clients', async () => {
  const client = await connected('ivy');
  const sub = client.newSubscription('counted');
  sub.subscribe();
  await sub.ready(5000);
  const info = await herald.api('info', {});
  assert.equal(info.result?.nodes?.length, 1, JSON.stringify(info));
  assert.ok(info.result.nodes[0].num_clients >= 1, JSON.stringify(info));
  const channels = await herald.api('channels', { pattern: 'count*' });
  assert.deepEqual(channels.result?.channels, { counted: { num_clients: 1 } });
});
