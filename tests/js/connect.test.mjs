// Connecting with the real centrifuge SDK: tokens from `herald gentoken` and signed by a backend.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { once, startHerald, signHS256 } from './herald.mjs';

let herald;
before(async () => {
  herald = await startHerald();
});
after(async () => {
  await herald?.close();
});

test('connects with a token printed by `herald gentoken`', async () => {
  const token = herald.gentoken('alice');
  assert.equal(token.split('.').length, 3, `not a JWT: ${token}`);
  const client = herald.client('alice', { token });
  try {
    const connected = once(client, 'connected');
    client.connect();
    const ctx = await connected;
    assert.equal(ctx.transport, 'websocket');
    assert.match(ctx.client, /^[0-9a-f-]{36}$/, 'connection id is a UUID');
    assert.equal(client.state, 'connected');
  } finally {
    client.disconnect();
  }
});

test('connects with an HS256 token signed by the backend (node:crypto)', async () => {
  const client = herald.client('bob');
  try {
    client.connect();
    await client.ready(5000);
    assert.equal(client.state, 'connected');
  } finally {
    client.disconnect();
  }
});

test('a token signed with the wrong secret is refused with 3500 and no reconnect', async () => {
  const token = signHS256({ sub: 'mallory' }, 'not-the-secret');
  const client = herald.client('mallory', { token });
  try {
    const disconnected = once(client, 'disconnected');
    client.connect();
    const ctx = await disconnected;
    assert.equal(ctx.code, 3500, `disconnect code: ${JSON.stringify(ctx)}`);
    assert.equal(client.state, 'disconnected');
  } finally {
    client.disconnect();
  }
});

test('an expired token makes the SDK ask getToken for a fresh one', async () => {
  const expired = herald.token('carol', { exp: Math.floor(Date.now() / 1000) - 60 });
  let asked = 0;
  const client = herald.client('carol', {
    token: expired,
    getToken: async () => {
      asked += 1;
      return herald.token('carol');
    },
  });
  try {
    client.connect();
    await client.ready(5000);
    assert.equal(asked, 1, 'getToken called once after error 109');
  } finally {
    client.disconnect();
  }
});
