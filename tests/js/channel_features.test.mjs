// Centrifugo v6 channel features with the real centrifuge SDK: Fossil delta compression
// (`allowed_delta_types`, `delta_publish`, per-publish `delta`, the SDK's `deltaStats()`), tags
// filters (`allow_tags_filter`, the subscription's `tagsFilter`) and version suppression
// (`version` / `version_epoch` on publish).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';

import { once, startHerald, withTimeout } from './herald.mjs';

let herald;
const clients = [];
before(async () => {
  herald = await startHerald({
    channel: {
      namespaces: [
        { name: 'locked' },
        {
          // Deltas on every publication, with history (delivered from the stream).
          name: 'delta',
          allow_subscribe_for_client: true,
          allowed_delta_types: ['fossil'],
          delta_publish: true,
          history_size: 50,
          history_ttl: '300s',
          force_recovery: true,
        },
        {
          // Deltas only when the publish asks for them, without history.
          name: 'deltaondemand',
          allow_subscribe_for_client: true,
          allowed_delta_types: ['fossil'],
        },
        { name: 'nodelta', allow_subscribe_for_client: true },
        {
          name: 'versions',
          allow_subscribe_for_client: true,
          allow_history_for_subscriber: true,
          history_size: 10,
          history_ttl: '300s',
        },
        { name: 'tf', allow_subscribe_for_client: true, allow_tags_filter: true },
        { name: 'notf', allow_subscribe_for_client: true },
      ],
    },
  });
});
after(async () => {
  for (const c of clients) c.disconnect();
  await herald?.close();
});

async function connected(user = 'alice') {
  const client = herald.client(user);
  clients.push(client);
  client.connect();
  await client.ready(5000);
  return client;
}

/** Subscribes and collects publications; resolves once `subscribed`. */
async function subscribed(client, channel, options = {}) {
  const sub = client.newSubscription(channel, options);
  const received = [];
  sub.on('publication', (ctx) => received.push(ctx));
  const ctx = once(sub, 'subscribed');
  sub.subscribe();
  return { sub, received, ctx: await ctx };
}

/** Waits (bounded) until `received` has `n` entries. */
async function until(received, n, what) {
  await withTimeout(
    (async () => {
      while (received.length < n) await new Promise((r) => setTimeout(r, 10));
    })(),
    5000,
    `${what}: ${received.length} of ${n} publications`
  );
}

/** A ~2 KB JSON document (a dashboard state) of which publication `n` changes one field. */
function dashboard(n) {
  const rows = [];
  for (let i = 0; i < 24; i++) {
    rows.push({ id: i, name: `sensor-${i}`, unit: 'celsius', zone: `zone-${i % 4}`, value: 20 + i });
  }
  rows[n % 24].value = 1000 + n;
  return { updated: 'counter', seq: 1, rows };
}

test('a delta subscription gets Fossil deltas the SDK decodes and counts', async () => {
  const client = await connected();
  const { sub, received, ctx } = await subscribed(client, 'delta:board', { delta: 'fossil' });
  assert.equal(ctx.channel, 'delta:board');
  const docs = [];
  for (let n = 1; n <= 20; n++) {
    docs.push(dashboard(n));
    const reply = await herald.api('publish', { channel: 'delta:board', data: docs[n - 1] });
    assert.ok(reply.result, JSON.stringify(reply));
  }
  await until(received, 20, 'delta stream');
  assert.deepEqual(
    received.map((p) => p.data),
    docs,
    'every publication is rebuilt exactly'
  );
  const stats = sub.deltaStats();
  assert.equal(stats.numPublications, 20, JSON.stringify(stats));
  assert.equal(stats.numFullPayloads, 1, 'only the first is sent in full');
  assert.equal(stats.numDeltaPayloads, 19, JSON.stringify(stats));
  assert.ok(stats.compressionRatio > 0.8, `compression ratio ${stats.compressionRatio}`);
});

test('without delta_publish, only publishes with delta: true are sent as deltas', async () => {
  const client = await connected();
  const { sub, received } = await subscribed(client, 'deltaondemand:x', { delta: 'fossil' });
  const docs = [1, 2, 3, 4].map(dashboard);
  for (const [i, doc] of docs.entries()) {
    await herald.api('publish', { channel: 'deltaondemand:x', data: doc, delta: i !== 2 });
  }
  await until(received, 4, 'delta on demand');
  assert.deepEqual(
    received.map((p) => p.data),
    docs
  );
  const stats = sub.deltaStats();
  // 1: nothing to compare with; 3: published without delta.
  assert.equal(stats.numFullPayloads, 2, JSON.stringify(stats));
  assert.equal(stats.numDeltaPayloads, 2, JSON.stringify(stats));
});

test('a subscriber that did not ask for deltas, or whose namespace does not allow them, gets plain data', async () => {
  const client = await connected();
  const plain = await subscribed(client, 'delta:board2');
  const refused = await subscribed(client, 'nodelta:board', { delta: 'fossil' });
  for (let n = 1; n <= 3; n++) {
    await herald.api('publish', { channel: 'delta:board2', data: dashboard(n) });
    await herald.api('publish', { channel: 'nodelta:board', data: dashboard(n), delta: true });
  }
  await until(plain.received, 3, 'plain subscriber');
  await until(refused.received, 3, 'delta not allowed');
  assert.deepEqual(plain.received.map((p) => p.data), [1, 2, 3].map(dashboard));
  assert.deepEqual(refused.received.map((p) => p.data), [1, 2, 3].map(dashboard));
  assert.equal(plain.sub.deltaStats().numDeltaPayloads, 0);
  assert.equal(refused.sub.deltaStats().numDeltaPayloads, 0);
});

test('a delta subscription recovers missed publications and goes on with deltas', async () => {
  // A second delta subscriber keeps the channel's delta base alive meanwhile.
  await subscribed(await connected('bob'), 'delta:recover', { delta: 'fossil' });
  const client = await connected();
  const { sub, received } = await subscribed(client, 'delta:recover', { delta: 'fossil' });
  await herald.api('publish', { channel: 'delta:recover', data: dashboard(1) });
  await until(received, 1, 'first publication');
  sub.unsubscribe();
  // Missed while away: recovered on the way back (the SDK keeps its position).
  await herald.api('publish', { channel: 'delta:recover', data: dashboard(2) });
  await herald.api('publish', { channel: 'delta:recover', data: dashboard(3) });
  const back = once(sub, 'subscribed');
  sub.subscribe();
  const ctx = await back;
  assert.equal(ctx.recovered, true, JSON.stringify(ctx));
  await until(received, 3, 'recovered');
  await herald.api('publish', { channel: 'delta:recover', data: dashboard(4) });
  await until(received, 4, 'after recovery');
  assert.deepEqual(received.map((p) => p.data), [1, 2, 3, 4].map(dashboard));
  // 1 and the first recovered one (2) come in full; the recovered 3 is a delta against 2,
  // and 4 a delta against 3, which the reply ended with.
  const stats = sub.deltaStats();
  assert.equal(stats.numFullPayloads, 2, JSON.stringify(stats));
  assert.equal(stats.numDeltaPayloads, 2, JSON.stringify(stats));
});

/** Bytes of each publication push a raw WebSocket client receives in `channel` (a frame may
 * carry several messages, one per line). */
async function frameSizes(channel, delta, publish) {
  const ws = new WebSocket(herald.wsUrl, 'centrifuge-json');
  const sizes = [];
  let replies = 0;
  const ready = new Promise((resolve, reject) => {
    ws.on('message', (data) => {
      for (const line of data.toString().split('\n')) {
        if (line.startsWith('{"push"')) sizes.push(Buffer.byteLength(line));
        else if (++replies === 2) resolve();
      }
    });
    ws.on('error', reject);
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ id: 1, connect: { token: herald.token('meter') } }));
  ws.send(JSON.stringify({ id: 2, subscribe: { channel, ...(delta ? { delta: 'fossil' } : {}) } }));
  await withTimeout(ready, 5000, 'connect and subscribe replies');
  const n = await publish();
  await withTimeout(
    (async () => {
      while (sizes.length < n) await new Promise((r) => setTimeout(r, 10));
    })(),
    5000,
    'publication frames'
  );
  ws.close();
  return sizes;
}

test('bandwidth: a 2 KB document changing one field costs a fraction with deltas', async () => {
  const publishAll = (channel) => async () => {
    for (let n = 1; n <= 30; n++) await herald.api('publish', { channel, data: dashboard(n) });
    return 30;
  };
  const full = await frameSizes('delta:bw-full', false, publishAll('delta:bw-full'));
  const delta = await frameSizes('delta:bw-delta', true, publishAll('delta:bw-delta'));
  const avg = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const fullAvg = avg(full.slice(1));
  const deltaAvg = avg(delta.slice(1));
  console.log(
    `# document ${JSON.stringify(dashboard(1)).length} B; frame per publication: ` +
      `full ${fullAvg.toFixed(0)} B, delta ${deltaAvg.toFixed(0)} B ` +
      `(first delta-stream frame, sent in full: ${delta[0]} B)`
  );
  assert.ok(deltaAvg * 5 < fullAvg, `delta ${deltaAvg} B vs full ${fullAvg} B`);
});

test('a tags filter lets through only matching publications', async () => {
  const client = await connected();
  const btc = await subscribed(client, 'tf:prices', {
    tagsFilter: { key: 'ticker', cmp: 'eq', val: 'BTC' },
  });
  const cheap = await subscribed(await connected('bob'), 'tf:prices', {
    tagsFilter: {
      op: 'and',
      nodes: [
        { key: 'ticker', cmp: 'in', vals: ['BTC', 'ETH'] },
        { key: 'price', cmp: 'lt', val: '100.5' },
      ],
    },
  });
  const all = await subscribed(await connected('carol'), 'tf:prices');
  const pubs = [
    { tags: { ticker: 'BTC', price: '101' }, data: { n: 1 } },
    { tags: { ticker: 'ETH', price: '99.99' }, data: { n: 2 } },
    { tags: {}, data: { n: 3 } },
    { tags: { ticker: 'BTC', price: '7' }, data: { n: 4 } },
  ];
  for (const p of pubs) await herald.api('publish', { channel: 'tf:prices', ...p });
  await until(all.received, 4, 'unfiltered subscriber');
  await until(btc.received, 2, 'BTC subscriber');
  await until(cheap.received, 2, 'cheap subscriber');
  // A last publication everybody gets proves nothing else was on its way.
  await herald.api('publish', { channel: 'tf:prices', tags: { ticker: 'BTC', price: '1' }, data: { n: 5 } });
  await until(all.received, 5, 'unfiltered subscriber');
  await until(btc.received, 3, 'BTC subscriber');
  await until(cheap.received, 3, 'cheap subscriber');
  assert.deepEqual(all.received.map((p) => p.data.n), [1, 2, 3, 4, 5]);
  assert.deepEqual(btc.received.map((p) => p.data.n), [1, 4, 5]);
  assert.deepEqual(cheap.received.map((p) => p.data.n), [2, 4, 5]);
  assert.deepEqual(btc.received[0].tags, { ticker: 'BTC', price: '101' });
});

test('a tags filter where the namespace does not allow it is refused with 107', async () => {
  const client = await connected();
  const sub = client.newSubscription('notf:prices', {
    tagsFilter: { key: 'ticker', cmp: 'eq', val: 'BTC' },
  });
  const unsubscribed = once(sub, 'unsubscribed');
  sub.subscribe();
  const ctx = await unsubscribed;
  assert.equal(ctx.code, 107, JSON.stringify(ctx));
  // The connection stays.
  assert.equal(client.state, 'connected');
});

test('a publication with a stale version is suppressed: not delivered, no offset used', async () => {
  const client = await connected();
  const { sub, received } = await subscribed(client, 'versions:state');
  const publish = (n, version) =>
    herald.api('publish', { channel: 'versions:state', data: { n }, version, version_epoch: 'e1' });
  const first = await publish(1, 5);
  assert.equal(first.result.offset, 1, JSON.stringify(first));
  // Not newer than 5: answered with the stream's current position, as Centrifugo does.
  const stale = await publish(2, 5);
  assert.deepEqual(stale.result, first.result, JSON.stringify(stale));
  const older = await publish(3, 4);
  assert.deepEqual(older.result, first.result);
  const newer = await publish(4, 6);
  assert.equal(newer.result.offset, 2, JSON.stringify(newer));
  await until(received, 2, 'versioned publications');
  assert.deepEqual(received.map((p) => p.data.n), [1, 4]);
  const history = await sub.history({ limit: -1 });
  assert.deepEqual(history.publications.map((p) => p.data.n), [1, 4]);
});
