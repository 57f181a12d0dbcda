// Two Herald nodes over one nats-server -js (NATS engine, history on JetStream), as the real
// centrifuge SDK sees them: a publication by a client on node A reaches a subscriber on node B;
// the subscriber leaves, and a new client on node A that subscribes from B's last position
// (`since`) recovers exactly what was published meanwhile, once and in order.
//
// The test starts its own nats-server (Debian's, /usr/sbin/nats-server, or $NATS_SERVER) on a
// free port with its JetStream store in a temporary directory, never the machine's.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

import { once, sleep, startHerald } from './herald.mjs';

const NATS_BIN =
  process.env.NATS_SERVER ||
  ['/usr/sbin/nats-server', '/usr/bin/nats-server'].find((p) => existsSync(p)) ||
  'nats-server';

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function until(check, what, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not ${what} within ${ms} ms`);
    await sleep(50);
  }
}

let nats;
let store;
const nodes = [];
const clients = [];
const secret = randomBytes(24).toString('hex');
const apiKey = randomBytes(24).toString('hex');

before(async () => {
  store = mkdtempSync(join(tmpdir(), 'herald-nats-'));
  const port = await freePort();
  nats = spawn(NATS_BIN, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', store], {
    stdio: 'ignore',
  });
  await until(
    () =>
      new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.destroy();
          resolve(true);
        });
        socket.on('error', () => resolve(false));
      }),
    'nats-server listening'
  );
  const config = {
    client: { token: { hmac_secret_key: secret } },
    http_api: { key: apiKey },
    health: { enabled: true },
    broker: {
      enabled: true,
      type: 'nats',
      nats: { url: `nats://127.0.0.1:${port}`, prefix: 'js', jetstream: { enabled: true } },
    },
    channel: {
      namespaces: [
        {
          name: 'chat',
          allow_subscribe_for_client: true,
          allow_publish_for_client: true,
          history_size: 100,
          history_ttl: '300s',
          force_recovery: true,
        },
      ],
    },
  };
  for (let i = 0; i < 2; i++) {
    const node = await startHerald(config);
    // One secret for the cluster: a token signed for one node is good on every node.
    node.secret = secret;
    nodes.push(node);
  }
  for (const node of nodes) {
    await until(async () => (await fetch(`${node.url}/health`)).status === 200, 'healthy');
  }
});

after(async () => {
  for (const c of clients) c.disconnect();
  for (const node of nodes) await node.close();
  nats?.kill('SIGKILL');
  if (store) rmSync(store, { recursive: true, force: true });
});

test('a client on node A reaches node B, and recovers on node A what it missed on B', async () => {
  const [a, b] = nodes;
  const channel = 'chat:nats';

  const bob = b.client('bob');
  clients.push(bob);
  const pubs = [];
  const sub = bob.newSubscription(channel);
  sub.on('publication', (ctx) => pubs.push(ctx));
  const subscribed = once(sub, 'subscribed');
  sub.subscribe();
  bob.connect();
  await subscribed;

  const alice = a.client('alice');
  clients.push(alice);
  const connected = once(alice, 'connected');
  alice.connect();
  await connected;
  await alice.publish(channel, { text: 'hello from A' });
  await until(() => pubs.length === 1, 'the publication on B');
  assert.deepEqual(pubs[0].data, { text: 'hello from A' });
  assert.equal(pubs[0].offset, 1);
  assert.equal(pubs[0].info.user, 'alice');

  // Bob leaves B; three publications on A meanwhile.
  const position = { offset: pubs[0].offset, epoch: sub._epoch };
  assert.ok(position.epoch, 'the subscription knows its epoch');
  bob.disconnect();
  for (let n = 2; n <= 4; n++) {
    await a.api('publish', { channel, data: { n } });
  }

  // Bob again, on A, from where he was: exactly 2, 3, 4, then live ones.
  const bobAgain = a.client('bob');
  clients.push(bobAgain);
  const recovered = [];
  const resub = bobAgain.newSubscription(channel, { since: position });
  resub.on('publication', (ctx) => recovered.push(ctx));
  const again = once(resub, 'subscribed');
  resub.subscribe();
  bobAgain.connect();
  const ctx = await again;
  assert.equal(ctx.recovered, true);
  await until(() => recovered.length === 3, '3 recovered publications');
  assert.deepEqual(
    recovered.map((p) => p.offset),
    [2, 3, 4]
  );
  assert.deepEqual(recovered[0].data, { n: 2 });
  await b.api('publish', { channel, data: { n: 5 } });
  await until(() => recovered.length === 4, 'the live publication from B');
  assert.equal(recovered[3].offset, 5);
  await sleep(200);
  assert.equal(recovered.length, 4, 'each once');
});
