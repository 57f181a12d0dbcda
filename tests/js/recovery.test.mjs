// Durable history as the real centrifuge SDK sees it: a subscription that loses its connection
// (disconnect()/connect(), a network drop, a kill -9 of the server) recovers exactly the
// publications it missed, once and in order; a gap longer than the history is reported as
// not recovered, with no partial set; and the offline inbox: a user who was never connected
// receives everything published to his `inbox:#user` channel with `since: {offset: 0}`.
//
// centrifuge-js keeps a subscription's position (`_offset`/`_epoch`, moved by every
// publication it delivers) for as long as the subscription stays in the client, across
// disconnect()/connect() and reconnects alike, and resubscribes with `recover: true` when
// the previous reply said `recoverable`. Recovered publications come as `publication`
// events right after the `subscribed` event.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import WebSocket from 'ws';
import { Centrifuge } from 'centrifuge';

import { once, sleep, startHerald } from './herald.mjs';

const CHAT = {
  name: 'chat',
  allow_subscribe_for_client: true,
  allow_publish_for_client: true,
  history_size: 10,
  history_ttl: '300s',
  force_recovery: true,
};
// A larger history for the test that drops the network while publications keep coming.
const FEED = { ...CHAT, name: 'feed', history_size: 1000 };
const INBOX = {
  name: 'inbox',
  allow_user_limited_channels: true,
  allow_publish_for_client: true,
  history_size: 1000,
  history_ttl: '720h',
  force_recovery: true,
};

let herald;
let dataDir;
const clients = [];
const proxies = [];
before(async () => {
  // History lives in data_dir, which every restart below reuses.
  dataDir = mkdtempSync(join(tmpdir(), 'herald-recovery-'));
  herald = await startHerald({ data_dir: dataDir, channel: { namespaces: [CHAT, FEED, INBOX] } });
});
after(async () => {
  for (const c of clients) c.disconnect();
  for (const p of proxies) p.close();
  await herald?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/**
 * A TCP relay between the SDK and the server that can cut the network: `cut()` drops every
 * open connection without a WebSocket close (as a lost network does) and refuses new ones
 * until `restore()`.
 */
class Relay {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.up = true;
    this.sockets = new Set();
    this.server = net.createServer((down) => this.#accept(down));
  }

  async listen() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
    return this;
  }

  #accept(down) {
    this.sockets.add(down);
    down.on('close', () => this.sockets.delete(down));
    down.on('error', () => {});
    if (!this.up) {
      down.destroy();
      return;
    }
    const up = net.connect(this.targetPort(), '127.0.0.1');
    this.sockets.add(up);
    up.on('close', () => {
      this.sockets.delete(up);
      down.destroy();
    });
    up.on('error', () => {});
    down.on('close', () => up.destroy());
    down.pipe(up);
    up.pipe(down);
  }

  cut() {
    this.up = false;
    for (const s of this.sockets) s.destroy();
  }

  restore() {
    this.up = true;
  }

  close() {
    this.cut();
    this.server.close();
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/connection/websocket`;
  }
}

async function relay() {
  const r = await new Relay(() => herald.port).listen();
  proxies.push(r);
  return r;
}

/**
 * A centrifuge client for `user` on `url` (default: straight to the server) whose WebSocket
 * records every frame it sends (`client.sent`, parsed commands).
 */
function client(user, url = herald.wsUrl) {
  const sent = [];
  class RecordingWebSocket extends WebSocket {
    send(data, ...rest) {
      for (const line of data.toString().split('\n')) {
        if (line) sent.push(JSON.parse(line));
      }
      return super.send(data, ...rest);
    }
  }
  const c = new Centrifuge(url, {
    websocket: RecordingWebSocket,
    token: herald.token(user),
    minReconnectDelay: 100,
    maxReconnectDelay: 500,
    timeout: 3000,
  });
  c.sent = sent;
  clients.push(c);
  return c;
}

/** The subscribe commands a client sent for `channel`, oldest first. */
const subscribes = (c, channel) =>
  c.sent.filter((cmd) => cmd.subscribe?.channel === channel).map((cmd) => cmd.subscribe);

/** Records a subscription's `subscribed` contexts and publications, in event order. */
function record(sub) {
  const log = { subscribed: [], pubs: [], events: [] };
  sub.on('subscribed', (ctx) => {
    log.subscribed.push(ctx);
    log.events.push('subscribed');
  });
  sub.on('publication', (ctx) => {
    log.pubs.push(ctx);
    log.events.push(`pub:${ctx.offset}`);
  });
  return log;
}

/** Resolves once `cond()` holds (polled), or fails naming `what`. */
async function until(cond, what, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Publishes `data` through the server API; returns `{offset, epoch}`. */
async function publish(channel, data) {
  const reply = await herald.api('publish', { channel, data });
  assert.ok(reply.result, `publish answered ${JSON.stringify(reply)}`);
  return reply.result;
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const offsets = (pubs) => pubs.map((p) => p.offset);

/**
 * A subscribed client on `channel` that has received `n` publications made through the API;
 * returns what the test needs to go on.
 */
async function subscribedWith(channel, n, url) {
  const c = client('alice', url);
  c.connect();
  await c.ready(5000);
  const sub = c.newSubscription(channel);
  const log = record(sub);
  sub.subscribe();
  await sub.ready(5000);
  const first = log.subscribed[0];
  assert.equal(first.recoverable, true, `force_recovery: ${JSON.stringify(first)}`);
  assert.equal(first.wasRecovering, false);
  assert.equal(first.streamPosition.offset, 0, 'a new stream');
  let epoch = first.streamPosition.epoch;
  assert.ok(epoch, 'the subscribe reply carries the epoch');
  for (let i = 1; i <= n; i++) {
    const r = await publish(channel, { n: i });
    assert.deepEqual(r, { offset: i, epoch });
  }
  await until(() => log.pubs.length === n, `${n} live publications`);
  assert.deepEqual(offsets(log.pubs), range(1, n));
  return { c, sub, log, epoch };
}

/** Publishes `from..=to` as `{n}` through the API, checking offsets and epoch. */
async function publishRange(channel, from, to, epoch) {
  for (let i = from; i <= to; i++) {
    assert.deepEqual(await publish(channel, { n: i }), { offset: i, epoch });
  }
}

/** Asserts the subscription ends up with exactly `1..=top` as `{n}`, once each, in order. */
async function assertExactly(log, top) {
  await until(() => log.pubs.length >= top, `${top} publications in all`);
  // Anything doubled would arrive right behind.
  await sleep(300);
  assert.deepEqual(offsets(log.pubs), range(1, top), `events: ${log.events.join(' ')}`);
  assert.deepEqual(
    log.pubs.map((p) => p.data.n),
    range(1, top)
  );
}

test('disconnect() and connect(): the missed publications are recovered, once, in order', async () => {
  const channel = 'chat:a';
  const { c, sub, log, epoch } = await subscribedWith(channel, 3);

  const disconnected = once(c, 'disconnected');
  c.disconnect();
  await disconnected;
  assert.equal(sub.state, 'subscribing', 'the subscription stays in the client');
  await publishRange(channel, 4, 8, epoch);

  const resubscribed = once(sub, 'subscribed');
  c.connect();
  const ctx = await resubscribed;
  assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
  assert.equal(ctx.recovered, true, JSON.stringify(ctx));
  assert.deepEqual(ctx.streamPosition, { offset: 8, epoch });
  const resub = subscribes(c, channel).at(-1);
  assert.equal(resub.recover, true);
  assert.equal(resub.offset, 3, 'the SDK asks from the last offset it delivered');
  assert.equal(resub.epoch, epoch);
  await assertExactly(log, 8);
  assert.deepEqual(log.events.slice(4), ['subscribed', ...range(4, 8).map((o) => `pub:${o}`)]);

  // Live delivery goes on after the recovered ones.
  await publishRange(channel, 9, 9, epoch);
  await assertExactly(log, 9);
});

test('a network drop: the SDK reconnects by itself and recovers exactly what it missed', async () => {
  const channel = 'chat:net';
  const link = await relay();
  const { c, sub, log, epoch } = await subscribedWith(channel, 2, link.wsUrl);

  const lost = once(c, 'connecting');
  link.cut();
  const why = await lost;
  assert.notEqual(why.code, 3001, 'no close frame from the server: a dropped network');
  assert.equal(sub.state, 'subscribing');
  await publishRange(channel, 3, 7, epoch);

  const resubscribed = once(sub, 'subscribed', 10000);
  link.restore();
  const ctx = await resubscribed;
  assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
  assert.equal(ctx.recovered, true, JSON.stringify(ctx));
  assert.deepEqual(ctx.streamPosition, { offset: 7, epoch });
  await assertExactly(log, 7);
  assert.deepEqual(log.events.slice(3), ['subscribed', 'pub:3', 'pub:4', 'pub:5', 'pub:6', 'pub:7']);
});

test('network drops while publications keep coming: every one arrives once, in order', async () => {
  const channel = 'feed:live';
  const link = await relay();
  const { c, sub, log, epoch } = await subscribedWith(channel, 1, link.wsUrl);
  const TOTAL = 150;
  let published = 1;
  const publisher = (async () => {
    for (let i = 2; i <= TOTAL; i++) {
      assert.deepEqual(await publish(channel, { n: i }), { offset: i, epoch });
      published = i;
      await sleep(5);
    }
  })();
  // Three drops at different points of the stream; the SDK resubscribes (recovering) while
  // the publisher goes on.
  for (const at of [30, 70, 110]) {
    await until(() => published >= at, `publication ${at}`, 10000);
    const lost = once(c, 'connecting');
    link.cut();
    await lost;
    await sleep(20);
    const back = once(sub, 'subscribed', 10000);
    link.restore();
    await back;
  }
  await publisher;
  await assertExactly(log, TOTAL);
  const resubscribes = log.subscribed.slice(1);
  assert.equal(resubscribes.length, 3, `one resubscribe per drop: ${log.events.join(' ')}`);
  for (const ctx of resubscribes) {
    assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
    assert.equal(ctx.recovered, true, JSON.stringify(ctx));
  }
});

test('a gap longer than history_size: recovered false and no partial set', async () => {
  const channel = 'chat:gap';
  const { c, sub, log, epoch } = await subscribedWith(channel, 2);

  const disconnected = once(c, 'disconnected');
  c.disconnect();
  await disconnected;
  await publishRange(channel, 3, 17, epoch); // 15 missed, history keeps 10

  const resubscribed = once(sub, 'subscribed');
  c.connect();
  const ctx = await resubscribed;
  assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
  assert.equal(ctx.recovered, false, JSON.stringify(ctx));
  assert.deepEqual(ctx.streamPosition, { offset: 17, epoch });
  await sleep(300);
  assert.deepEqual(offsets(log.pubs), [1, 2], `no partial set: ${log.events.join(' ')}`);

  // The subscription goes on from the top of the stream.
  await publishRange(channel, 18, 18, epoch);
  await until(() => log.pubs.length === 3, 'the next live publication');
  assert.deepEqual(offsets(log.pubs), [1, 2, 18]);
});

test('kill -9 and restart: the SDK reconnects by itself and gets what was published after', async () => {
  const channel = 'chat:crash';
  const { c, sub, log, epoch } = await subscribedWith(channel, 2);
  const port = herald.port;

  const lost = once(c, 'connecting');
  await herald.stop('SIGKILL');
  await lost;
  const resubscribed = once(sub, 'subscribed', 10000);
  await herald.start();
  assert.equal(herald.port, port, 'restarted on the same port');
  // Right away: the SDK may be back before, during or after these.
  await publishRange(channel, 3, 5, epoch);
  const ctx = await resubscribed;
  assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
  assert.equal(ctx.recovered, true, JSON.stringify(ctx));
  assert.equal(ctx.streamPosition.epoch, epoch, 'the same stream after the restart');
  await assertExactly(log, 5);
});

test('kill -9 and restart while the client is cut off: recovered from disk, same epoch', async () => {
  const channel = 'chat:crash2';
  const link = await relay();
  const { c, sub, log, epoch } = await subscribedWith(channel, 2, link.wsUrl);

  link.cut();
  const lost = once(c, 'connecting');
  await lost;
  await herald.stop('SIGKILL');
  await herald.start();
  await publishRange(channel, 3, 5, epoch);

  const resubscribed = once(sub, 'subscribed', 10000);
  link.restore();
  const ctx = await resubscribed;
  assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
  assert.equal(ctx.recovered, true, JSON.stringify(ctx));
  assert.deepEqual(ctx.streamPosition, { offset: 5, epoch });
  const resub = subscribes(c, channel).at(-1);
  assert.deepEqual([resub.recover, resub.offset, resub.epoch], [true, 2, epoch]);
  await assertExactly(log, 5);
  assert.deepEqual(log.events.slice(3), ['subscribed', 'pub:3', 'pub:4', 'pub:5']);
});

test('offline inbox: bob, never connected before, receives all 20 with since {offset 0}', async () => {
  const channel = 'inbox:#bob';
  const alice = client('alice');
  alice.connect();
  await alice.ready(5000);
  for (let i = 1; i <= 20; i++) {
    await alice.publish(channel, { text: i });
  }

  // Anyone may write into bob's inbox; only bob may read it.
  const denied = alice.newSubscription(channel);
  const refused = once(denied, 'unsubscribed');
  denied.subscribe();
  const why = await refused;
  assert.equal(why.code, 103, `alice subscribing to bob's inbox: ${JSON.stringify(why)}`);

  const bob = client('bob');
  bob.connect();
  await bob.ready(5000);
  const sub = bob.newSubscription(channel, { since: { offset: 0, epoch: '' } });
  const log = record(sub);
  const subscribed = once(sub, 'subscribed');
  sub.subscribe();
  const ctx = await subscribed;
  // centrifuge-js leaves a zero offset and an empty epoch out of the command: the server
  // takes them as 0 and "any epoch", i.e. everything from the start of the stream.
  const cmd = subscribes(bob, channel)[0];
  assert.equal(cmd.recover, true, JSON.stringify(cmd));
  assert.ok(!cmd.offset && !cmd.epoch, JSON.stringify(cmd));
  assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
  assert.equal(ctx.recovered, true, JSON.stringify(ctx));
  assert.equal(ctx.streamPosition.offset, 20);

  await until(() => log.pubs.length >= 20, '20 recovered publications');
  await sleep(300);
  assert.deepEqual(offsets(log.pubs), range(1, 20));
  assert.deepEqual(
    log.pubs.map((p) => p.data.text),
    range(1, 20)
  );
  assert.ok(log.pubs.every((p) => p.info?.user === 'alice'), 'the publisher is alice');

  // New mail arrives live, once.
  await alice.publish(channel, { text: 21 });
  await until(() => log.pubs.length >= 21, 'the live publication');
  await sleep(200);
  assert.deepEqual(offsets(log.pubs), range(1, 21));
});
