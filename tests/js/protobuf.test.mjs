// The centrifuge SDK's Protobuf build (`centrifuge/build/protobuf`: WebSocket subprotocol
// `centrifuge-protobuf`, binary frames) against Herald: connect, subscribe, publications from
// the server API, a Protobuf client and a JSON client in one channel, history, presence, and
// recovery after the server is killed and restarted; and the same build over HTTP-streaming
// (binary POST, varint-delimited replies, Protobuf emulation requests).
//
// The Protobuf build carries payloads as bytes (Uint8Array): what a JSON client publishes
// arrives as the bytes of its JSON text, and JSON text a Protobuf client publishes arrives at
// JSON clients as that JSON.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import WebSocket from 'ws';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';

import { once, sleep, startHerald } from './herald.mjs';

const CHAT = {
  name: 'chat',
  allow_subscribe_for_client: true,
  allow_publish_for_client: true,
  allow_history_for_client: true,
  allow_presence_for_client: true,
  presence: true,
  history_size: 100,
  history_ttl: '300s',
  force_recovery: true,
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** JSON as the bytes a Protobuf client sends. */
const bytesOf = (value) => encoder.encode(JSON.stringify(value));
/** The JSON a Protobuf client received as bytes. */
const jsonOf = (data) => {
  assert.ok(data instanceof Uint8Array, `Protobuf data is bytes, got ${typeof data}`);
  return JSON.parse(decoder.decode(data));
};

let herald;
let dataDir;
const clients = [];
before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'herald-protobuf-'));
  herald = await startHerald({
    data_dir: dataDir,
    channel: { namespaces: [CHAT] },
    http_stream: { enabled: true },
  });
});
after(async () => {
  for (const c of clients) c.disconnect();
  await herald?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** A Protobuf SDK client for `user`, connected. */
async function protobufClient(user) {
  const c = new ProtobufCentrifuge(herald.wsUrl, {
    websocket: WebSocket,
    token: herald.token(user),
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
    timeout: 3000,
  });
  clients.push(c);
  const connected = once(c, 'connected');
  c.connect();
  const ctx = await connected;
  assert.equal(ctx.transport, 'websocket');
  return c;
}

/** A JSON SDK client for `user`, connected. */
async function jsonClient(user) {
  const c = herald.client(user);
  clients.push(c);
  const connected = once(c, 'connected');
  c.connect();
  await connected;
  return c;
}

/** Subscribes `c` to `channel`, recording the publications it receives. */
async function subscribed(c, channel) {
  const sub = c.newSubscription(channel);
  const pubs = [];
  sub.on('publication', (ctx) => pubs.push(ctx));
  const done = once(sub, 'subscribed');
  sub.subscribe();
  const ctx = await done;
  return { sub, pubs, ctx };
}

async function until(condition, what, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

test('Protobuf SDK: connects, subscribes, receives server API publications as bytes', async () => {
  const c = await protobufClient('alice');
  const { pubs } = await subscribed(c, 'chat:api');
  await herald.api('publish', { channel: 'chat:api', data: { text: 'from the API' } });
  await until(() => pubs.length === 1, 'the API publication');
  assert.deepEqual(jsonOf(pubs[0].data), { text: 'from the API' });
  assert.equal(pubs[0].offset, 1);
});

test('Protobuf and JSON SDK clients publish to each other in one channel', async () => {
  const pb = await protobufClient('alice');
  const js = await jsonClient('bob');
  const pbSub = await subscribed(pb, 'chat:mixed');
  const jsSub = await subscribed(js, 'chat:mixed');

  await pbSub.sub.publish(bytesOf({ from: 'protobuf' }));
  await until(() => jsSub.pubs.length === 1, 'the Protobuf publication at the JSON client');
  assert.deepEqual(jsSub.pubs[0].data, { from: 'protobuf' });
  assert.equal(jsSub.pubs[0].info.user, 'alice');

  await jsSub.sub.publish({ from: 'json' });
  await until(() => pbSub.pubs.length === 2, 'both publications at the Protobuf client');
  assert.deepEqual(pbSub.pubs.map((p) => jsonOf(p.data)), [{ from: 'protobuf' }, { from: 'json' }]);
  assert.equal(pbSub.pubs[1].info.user, 'bob');

  // History and presence, through Protobuf, agree with JSON.
  const pbHistory = await pbSub.sub.history({ limit: -1 });
  const jsHistory = await jsSub.sub.history({ limit: -1 });
  assert.deepEqual(pbHistory.publications.map((p) => jsonOf(p.data)), [
    { from: 'protobuf' },
    { from: 'json' },
  ]);
  assert.deepEqual(
    jsHistory.publications.map((p) => p.data),
    pbHistory.publications.map((p) => jsonOf(p.data))
  );
  assert.equal(pbHistory.offset, 2);
  assert.ok(pbHistory.epoch);
  assert.equal(pbHistory.epoch, jsHistory.epoch);

  const presence = await pbSub.sub.presence();
  const users = Object.values(presence.clients).map((info) => info.user).sort();
  assert.deepEqual(users, ['alice', 'bob']);
  const stats = await pbSub.sub.presenceStats();
  assert.deepEqual(stats, { numClients: 2, numUsers: 2 });
});

test('Protobuf SDK: kill -9 and restart, the subscription recovers what was published', async () => {
  const c = await protobufClient('carol');
  const { sub, pubs } = await subscribed(c, 'chat:crash');
  await herald.api('publish', { channel: 'chat:crash', data: { n: 1 } });
  await until(() => pubs.length === 1, 'the first publication');

  const lost = once(c, 'connecting');
  await herald.stop('SIGKILL');
  await lost;
  const resubscribed = once(sub, 'subscribed', 10000);
  await herald.start();
  await herald.api('publish', { channel: 'chat:crash', data: { n: 2 } });
  await herald.api('publish', { channel: 'chat:crash', data: { n: 3 } });
  const ctx = await resubscribed;
  assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
  assert.equal(ctx.recovered, true, JSON.stringify(ctx));
  await until(() => pubs.length === 3, 'the publications made around the restart');
  await sleep(200);
  assert.deepEqual(pubs.map((p) => jsonOf(p.data)), [{ n: 1 }, { n: 2 }, { n: 3 }]);
  assert.deepEqual(pubs.map((p) => p.offset), [1, 2, 3]);
});

test('Protobuf SDK: a server API b64data publication arrives as the exact bytes, live and from history', async () => {
  const c = await protobufClient('alice');
  const { sub, pubs } = await subscribed(c, 'chat:b64');
  // Not UTF-8, not JSON: a zero byte, a newline, bytes over 0x7f.
  const bytes = Uint8Array.from([0xff, 0x00, 0x0a, 0x80, 0x7b]);
  const b64data = Buffer.from(bytes).toString('base64');
  const published = await herald.api('publish', { channel: 'chat:b64', b64data });
  assert.equal(published.error, undefined, JSON.stringify(published));
  await until(() => pubs.length === 1, 'the b64data publication');
  assert.ok(pubs[0].data instanceof Uint8Array, 'Protobuf data is bytes');
  assert.deepEqual(Array.from(pubs[0].data), Array.from(bytes));
  const history = await sub.history({ limit: -1 });
  assert.equal(history.publications.length, 1);
  assert.deepEqual(Array.from(history.publications[0].data), Array.from(bytes));
});

test('Protobuf over HTTP-streaming: connect, subscribe, API publication, publish, history, refresh', async () => {
  // The Protobuf build's HTTP-streaming: the connect command POSTed as application/octet-stream,
  // the response a stream of varint-delimited Replies, later commands as Protobuf
  // EmulationRequests to /emulation. Tokens of 2 s so that a refresh goes that way too.
  const user = 'pat-stream';
  const shortLived = () => herald.token(user, { exp: Math.floor(Date.now() / 1000) + 2 });
  let asked = 0;
  const c = new ProtobufCentrifuge(
    [{ transport: 'http_stream', endpoint: `${herald.url}/connection/http_stream` }],
    {
      token: shortLived(),
      getToken: async () => {
        asked += 1;
        return shortLived();
      },
      emulationEndpoint: `${herald.url}/emulation`,
      minReconnectDelay: 100,
      maxReconnectDelay: 1000,
      timeout: 3000,
    }
  );
  clients.push(c);
  const connected = once(c, 'connected');
  c.connect();
  const ctx = await connected;
  assert.equal(ctx.transport, 'http_stream');

  const sub = c.newSubscription('chat:proto-stream');
  const got = [];
  sub.on('publication', (p) => got.push(jsonOf(p.data)));
  const subscribed = once(sub, 'subscribed');
  sub.subscribe();
  await subscribed;

  await herald.api('publish', { channel: 'chat:proto-stream', data: { from: 'api' } });
  await sub.publish(bytesOf({ from: 'client' }));
  for (let i = 0; i < 250 && got.length < 2; i++) await sleep(20);
  assert.deepEqual(got, [{ from: 'api' }, { from: 'client' }]);

  const history = await sub.history({ limit: 10 });
  assert.deepEqual(
    history.publications.map((p) => jsonOf(p.data)),
    [{ from: 'api' }, { from: 'client' }]
  );

  const lost = [];
  c.on('connecting', (ctx) => lost.push(JSON.stringify(ctx)));
  await sleep(3500);
  assert.ok(asked >= 1, `getToken asked ${asked} times over a 2 s token`);
  assert.deepEqual(lost, [], 'the connection outlived its first token');

  const disconnected = once(c, 'disconnected');
  await herald.api('disconnect', { user, disconnect: { code: 4501, reason: 'bye' } });
  const gone = await disconnected;
  assert.equal(gone.code, 4501, JSON.stringify(gone));
});

test('Protobuf SDK: server pings arrive as Protobuf and its pongs keep it connected', async () => {
  // Pings every second, a pong due within half a second: a ping the SDK cannot read (or a
  // pong the server cannot) ends the connection within a few of them.
  const pinging = await startHerald({
    data_dir: join(dataDir, 'pings'),
    client: { ping_interval: '1s', pong_timeout: '500ms' },
  });
  const c = new ProtobufCentrifuge(pinging.wsUrl, {
    websocket: WebSocket,
    token: pinging.token('pinged'),
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
    timeout: 3000,
  });
  const troubles = [];
  // A closed transport makes the SDK reconnect ('connecting'), not disconnect.
  c.on('connecting', (ctx) => troubles.push(`connecting ${ctx.code} ${ctx.reason}`));
  c.on('disconnected', (ctx) => troubles.push(`disconnected ${ctx.code} ${ctx.reason}`));
  c.on('error', (ctx) => troubles.push(`error ${ctx.error?.message}`));
  try {
    const connected = once(c, 'connected');
    c.connect();
    await connected;
    troubles.length = 0; // the first 'connecting', of the connect itself
    await sleep(4000);
    assert.deepEqual(troubles, [], 'no reconnect, no disconnect and no error across four pings');
    assert.equal(c.state, 'connected');
  } finally {
    c.disconnect();
    await pinging.close();
  }
});
