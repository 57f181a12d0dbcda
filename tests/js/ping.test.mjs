// Server pings every second, pong timeout half a second: the SDK answers every ping and the
// connection stays up.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import WebSocket from 'ws';

import { sleep, startHerald } from './herald.mjs';

let herald;
before(async () => {
  // pong_timeout must be shorter than ping_interval (as in Centrifugo).
  herald = await startHerald({ client: { ping_interval: '1s', pong_timeout: '500ms' } });
});
after(async () => {
  await herald?.close();
});

/** A `ws` WebSocket that counts the server's pings ({}) and the client's pongs ({}). */
const counts = { pings: 0, pongs: 0 };
class CountingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on('message', (data) => {
      for (const line of data.toString().split('\n')) if (line === '{}') counts.pings += 1;
    });
  }
  send(data, ...rest) {
    for (const line of data.toString().split('\n')) if (line === '{}') counts.pongs += 1;
    return super.send(data, ...rest);
  }
}

test('answers server pings and stays connected for 4.5 s with ping_interval 1s', async () => {
  const client = herald.client('alice', { websocket: CountingWebSocket });
  const events = [];
  client.on('connecting', (ctx) => events.push(['connecting', ctx.code, ctx.reason]));
  client.on('disconnected', (ctx) => events.push(['disconnected', ctx.code, ctx.reason]));
  try {
    client.connect();
    await client.ready(5000);
    const before = events.length;
    await sleep(4500);
    assert.deepEqual(events.slice(before), [], 'no disconnect or reconnect while idle');
    assert.equal(client.state, 'connected');
    assert.ok(counts.pings >= 3, `server sent ${counts.pings} pings in 4.5 s (want >= 3)`);
    assert.ok(counts.pongs >= counts.pings - 1, `client answered ${counts.pongs} of ${counts.pings} pings`);
  } finally {
    client.disconnect();
  }
});
