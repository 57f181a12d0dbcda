// The streaming transports as the real centrifuge SDK uses them when a WebSocket cannot get
// through: `transports: [{transport: 'http_stream' | 'sse', endpoint}]`, with their commands
// POSTed to the emulation endpoint. Node 20's own fetch and ReadableStream carry
// HTTP-streaming; Node has no EventSource, so SSE uses the `eventsource` package (the
// WHATWG-compliant one).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Centrifuge } from 'centrifuge';
import { EventSource } from 'eventsource';

import { once, sleep, startHerald } from './herald.mjs';

const CHAT = {
  name: 'chat',
  allow_subscribe_for_client: true,
  allow_publish_for_client: true,
  allow_presence_for_subscriber: true,
  allow_history_for_subscriber: true,
  presence: true,
  history_size: 10,
  history_ttl: '300s',
  force_recovery: true,
};

let herald;
let dataDir;
const clients = [];
before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'herald-http-stream-'));
  herald = await startHerald({
    data_dir: dataDir,
    http_stream: { enabled: true },
    sse: { enabled: true },
    channel: { namespaces: [CHAT] },
  });
});
after(async () => {
  for (const c of clients) c.disconnect();
  await herald?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** A client of `user` that may use `transport` only (`options` added to, or replacing, the defaults). */
function streamingClient(transport, user, options = {}) {
  const c = new Centrifuge([{ transport, endpoint: `${herald.url}/connection/${transport}` }], {
    token: herald.token(user),
    ...options,
    eventsource: EventSource,
    emulationEndpoint: `${herald.url}/emulation`,
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
    timeout: 3000,
  });
  clients.push(c);
  return c;
}

/** Waits until `check()` is true, up to 5 s. */
async function until(check, what) {
  for (let i = 0; i < 250 && !check(); i++) await sleep(20);
  assert.ok(check(), `timed out waiting for ${what}`);
}

for (const transport of ['http_stream', 'sse']) {
  test(`${transport}: connect, subscribe, publications, client publish, rpc error, presence, history`, async () => {
    const c = streamingClient(transport, `alice-${transport}`);
    const connected = once(c, 'connected');
    c.connect();
    const ctx = await connected;
    assert.equal(ctx.transport, transport);
    assert.ok(ctx.client, JSON.stringify(ctx));

    const sub = c.newSubscription(`chat:room-${transport}`);
    const pubs = [];
    sub.on('publication', (p) => pubs.push(p.data));
    const subscribed = once(sub, 'subscribed');
    sub.subscribe();
    await subscribed;

    await herald.api('publish', { channel: `chat:room-${transport}`, data: { from: 'api' } });
    await until(() => pubs.length === 1, 'the API publication');
    await sub.publish({ from: 'client' });
    await until(() => pubs.length === 2, "the client's own publication");
    assert.deepEqual(pubs, [{ from: 'api' }, { from: 'client' }]);

    await assert.rejects(c.rpc('nothing', {}), (e) => e.code === 108, 'rpc is not available');

    const presence = await sub.presence();
    assert.deepEqual(
      Object.values(presence.clients).map((info) => info.user),
      [`alice-${transport}`]
    );
    const history = await sub.history({ limit: 10 });
    assert.deepEqual(
      history.publications.map((p) => p.data),
      [{ from: 'api' }, { from: 'client' }]
    );
    c.disconnect();
  });

  test(`${transport}: kill -9 and restart: the SDK reconnects and recovers what it missed`, async () => {
    const c = streamingClient(transport, `bob-${transport}`);
    const sub = c.newSubscription(`chat:crash-${transport}`);
    const pubs = [];
    sub.on('publication', (p) => pubs.push(p.data.n));
    const subscribed = once(sub, 'subscribed');
    sub.subscribe();
    c.connect();
    await subscribed;
    await herald.api('publish', { channel: `chat:crash-${transport}`, data: { n: 1 } });
    await until(() => pubs.length === 1, 'the first publication');

    const lost = once(c, 'connecting');
    await herald.stop('SIGKILL');
    await lost;
    const resubscribed = once(sub, 'subscribed', 10000);
    await herald.start();
    await herald.api('publish', { channel: `chat:crash-${transport}`, data: { n: 2 } });
    await herald.api('publish', { channel: `chat:crash-${transport}`, data: { n: 3 } });
    const ctx = await resubscribed;
    assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
    assert.equal(ctx.recovered, true, JSON.stringify(ctx));
    await until(() => pubs.length === 3, 'the publications made while it was away');
    await sleep(200);
    assert.deepEqual(pubs, [1, 2, 3], 'each once, in order');
    c.disconnect();
  });

  test(`${transport}: short-lived tokens are refreshed with getToken over the emulation endpoint`, async () => {
    // Tokens that expire 2 s after they are made: the connect result says when, the SDK asks
    // getToken before then and sends a refresh command (through /emulation); the connection
    // lives on past several expiries and keeps receiving.
    const user = `carol-${transport}`;
    const shortLived = () => herald.token(user, { exp: Math.floor(Date.now() / 1000) + 2 });
    let asked = 0;
    const c = streamingClient(transport, user, {
      token: shortLived(),
      getToken: async () => {
        asked += 1;
        return shortLived();
      },
    });
    const sub = c.newSubscription(`chat:refresh-${transport}`);
    const pubs = [];
    sub.on('publication', (p) => pubs.push(p.data.n));
    const subscribed = once(sub, 'subscribed');
    sub.subscribe();
    c.connect();
    await subscribed;
    const lost = [];
    c.on('disconnected', (ctx) => lost.push(JSON.stringify(ctx)));
    c.on('connecting', (ctx) => lost.push(JSON.stringify(ctx)));
    await sleep(4500);
    assert.ok(asked >= 2, `getToken was asked ${asked} times in 4.5 s of 2 s tokens`);
    assert.deepEqual(lost, [], 'the connection was never lost');
    assert.equal(c.state, 'connected');
    await herald.api('publish', { channel: `chat:refresh-${transport}`, data: { n: 1 } });
    await until(() => pubs.length === 1, 'a publication after the first token expired');
    c.disconnect();
  });
}
