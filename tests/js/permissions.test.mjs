// Permission errors as the real centrifuge SDK surfaces them.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { once, startHerald } from './herald.mjs';

let herald;
let client;
before(async () => {
  // Namespace `locked` (from the test defaults) has no allow_subscribe_for_client.
  herald = await startHerald();
  client = herald.client('alice');
  client.connect();
  await client.ready(5000);
});
after(async () => {
  client?.disconnect();
  await herald?.close();
});

test('subscribing to a namespace without allow_subscribe_for_client gives error 103', async () => {
  const sub = client.newSubscription('locked:room');
  const errors = [];
  sub.on('error', (ctx) => errors.push(ctx));
  const unsubscribed = once(sub, 'unsubscribed');
  sub.subscribe();
  // centrifuge-js: a non-temporary subscribe error moves the subscription to `unsubscribed`
  // with the server's error code and message as the unsubscribe code and reason.
  const ctx = await unsubscribed;
  assert.equal(ctx.channel, 'locked:room');
  assert.equal(ctx.code, 103, `unsubscribed: ${JSON.stringify(ctx)}`);
  assert.equal(ctx.reason, 'permission denied');
  assert.equal(sub.state, 'unsubscribed');
  assert.deepEqual(errors, [], 'no retry-able error events for a permanent error');
  assert.equal(client.state, 'connected', 'the connection stays up');
});

test('publishing to a namespace without allow_publish_for_client is refused with 103', async () => {
  await assert.rejects(client.publish('locked:room', { text: 'no' }), (err) => {
    assert.equal(err.code, 103, JSON.stringify(err));
    return true;
  });
  assert.equal(client.state, 'connected');
});

test('subscribing to an unknown namespace gives error 102', async () => {
  const sub = client.newSubscription('nosuchns:room');
  const unsubscribed = once(sub, 'unsubscribed');
  sub.subscribe();
  const ctx = await unsubscribed;
  assert.equal(ctx.code, 102, `unsubscribed: ${JSON.stringify(ctx)}`);
});
