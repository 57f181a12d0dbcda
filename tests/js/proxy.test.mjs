// Backend proxies with the real centrifuge SDK: a client connects WITHOUT a token through the
// connect proxy, subscribes through the subscribe proxy, publishes through the publish proxy
// (which rewrites the data) and calls rpc(), which the RPC proxy answers. The backend is
// tests/support/proxy_backend.py, a real HTTP process answering by a scenario file.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import WebSocket from 'ws';
import { Centrifuge } from 'centrifuge';

import { once, sleep, startHerald, withTimeout } from './herald.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const SCRIPT = resolve(here, '../support/proxy_backend.py');

const SCENARIO = {
  '/connect': {
    by: 'data.user',
    cases: { mallory: { body: { error: { code: 4403, message: 'not you' } } } },
    default: { body: { result: { user: '$req.data.user', data: { hello: '$req.data.user' } } } },
  },
  '/subscribe': {
    by: 'channel',
    cases: { 'room:secret': { body: { error: { code: 103, message: 'permission denied' } } } },
    default: { body: { result: { data: { joined: '$req.channel' } } } },
  },
  '/publish': { body: { result: { data: { text: '$req.data.text', checked: true } } } },
  '/rpc': { body: { result: { data: { method: '$req.method', echo: '$req.data', user: '$req.user' } } } },
};

let dir;
let backend;
let herald;
const clients = [];

/** Starts the backend and waits for the port it listens on. */
async function startBackend() {
  dir = mkdtempSync(join(tmpdir(), 'herald-proxy-'));
  writeFileSync(join(dir, 'scenario.json'), JSON.stringify(SCENARIO));
  backend = spawn('python3', [
    SCRIPT,
    '--scenario', join(dir, 'scenario.json'),
    '--log', join(dir, 'requests.jsonl'),
    '--port-file', join(dir, 'port'),
  ], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    try {
      const port = Number(readFileSync(join(dir, 'port'), 'utf8'));
      if (port > 0) return port;
    } catch {
      // not written yet
    }
    await sleep(25);
  }
  throw new Error('the proxy backend did not start');
}

/** The requests the backend got on `path`. */
function requests(path) {
  let text = '';
  try {
    text = readFileSync(join(dir, 'requests.jsonl'), 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.path === path);
}

before(async () => {
  const port = await startBackend();
  const at = (path) => ({ endpoint: `http://127.0.0.1:${port}${path}`, timeout: '2s' });
  herald = await startHerald({
    client: { proxy: { connect: { enabled: true, ...at('/connect') } } },
    channel: {
      proxy: { subscribe: at('/subscribe'), publish: at('/publish') },
      namespaces: [{ name: 'room', subscribe_proxy_enabled: true, publish_proxy_enabled: true }],
    },
    rpc: { proxy: at('/rpc'), without_namespace: { proxy_enabled: true } },
  });
});

after(async () => {
  for (const c of clients) c.disconnect();
  await herald?.close();
  backend?.kill();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A client without a token: the connect proxy decides who it is from `data`. */
function client(user) {
  const c = new Centrifuge(herald.wsUrl, {
    websocket: WebSocket,
    data: { user },
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
    timeout: 3000,
  });
  clients.push(c);
  return c;
}

test('connect, subscribe, publish and rpc through the proxies, without a token', async () => {
  const c = client('zoe');
  const connected = once(c, 'connected');
  c.connect();
  const ctx = await connected;
  assert.deepEqual(ctx.data, { hello: 'zoe' });
  assert.equal(requests('/connect').at(-1).body.data.user, 'zoe');

  const sub = c.newSubscription('room:1');
  const subscribed = once(sub, 'subscribed');
  sub.subscribe();
  const subCtx = await subscribed;
  assert.deepEqual(subCtx.data, { joined: 'room:1' });
  const asked = requests('/subscribe').at(-1).body;
  assert.equal(asked.user, 'zoe');
  assert.equal(asked.channel, 'room:1');

  const publication = once(sub, 'publication');
  await sub.publish({ text: 'hi' });
  const pub = await publication;
  assert.deepEqual(pub.data, { text: 'hi', checked: true }, 'the publish proxy rewrote it');
  assert.equal(pub.info.user, 'zoe');

  const reply = await withTimeout(c.rpc('sum', { a: 2, b: 3 }), 5000, 'rpc');
  assert.deepEqual(reply.data, { method: 'sum', echo: { a: 2, b: 3 }, user: 'zoe' });
});

test('the proxies\' refusals reach the SDK', async () => {
  const c = client('yan');
  const connected = once(c, 'connected');
  c.connect();
  await connected;
  // A permanent subscribe error (103) ends the subscription with that code.
  const sub = c.newSubscription('room:secret');
  const unsubscribed = once(sub, 'unsubscribed');
  sub.subscribe();
  const unsub = await unsubscribed;
  assert.equal(unsub.code, 103);

  // A permanent connect error from the backend ends the connection with its code.
  const refused = client('mallory');
  const disconnected = once(refused, 'disconnected');
  refused.connect();
  const ctx = await disconnected;
  assert.equal(ctx.code, 4403);
  assert.equal(ctx.reason, 'not you');
});
