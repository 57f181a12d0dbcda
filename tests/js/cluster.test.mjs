// The real centrifuge SDK against three herald nodes on one Redis: each client talks to one
// node, and sees the others' publications, presence and the server API as if there were one.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { Centrifuge } from 'centrifuge';
import { EventSource } from 'eventsource';

import { once, sleep, withTimeout } from './herald.mjs';
import { startCluster } from './cluster.mjs';

let cluster;
const clients = [];
before(async () => {
  cluster = await startCluster(3, {
    http_stream: { enabled: true },
    sse: { enabled: true },
    channel: {
      without_namespace: { allow_subscribe_for_client: true, allow_publish_for_client: true },
      namespaces: [
        {
          name: 'room',
          allow_subscribe_for_client: true,
          allow_publish_for_subscriber: true,
          allow_presence_for_subscriber: true,
          allow_history_for_subscriber: true,
          presence: true,
          join_leave: true,
          force_push_join_leave: true,
          history_size: 100,
          history_ttl: '300s',
          force_recovery: true,
        },
      ],
    },
  });
});
after(async () => {
  for (const c of clients) c.disconnect();
  await cluster?.close();
});

async function connected(node, user) {
  const client = node.client(user);
  clients.push(client);
  client.connect();
  await client.ready(5000);
  return client;
}

async function subscribed(client, channel, options = {}) {
  const sub = client.newSubscription(channel, options);
  const done = once(sub, 'subscribed');
  sub.subscribe();
  return { sub, ctx: await done };
}

test('publications, presence and join/leave cross the nodes', async () => {
  const [n1, n2, n3] = cluster.nodes;
  const alice = await connected(n1, 'alice');
  const bob = await connected(n3, 'bob');
  const { sub: aliceSub } = await subscribed(alice, 'room:lobby');
  const joined = once(aliceSub, 'join');
  const { sub: bobSub } = await subscribed(bob, 'room:lobby');
  // Alice (node 1) hears Bob (node 3) join.
  let join = await joined;
  while (join.info.user !== 'bob') join = await once(aliceSub, 'join');

  // An API publication on node 2 reaches both.
  const atAlice = once(aliceSub, 'publication');
  const atBob = once(bobSub, 'publication');
  await n2.api('publish', { channel: 'room:lobby', data: { text: 'from node 2' } });
  assert.deepEqual((await atAlice).data, { text: 'from node 2' });
  assert.deepEqual((await atBob).data, { text: 'from node 2' });

  // A client publication on node 1 reaches node 3, with its publisher.
  const fromAlice = once(bobSub, 'publication');
  await aliceSub.publish({ text: 'hi bob' });
  const ctx = await fromAlice;
  assert.deepEqual(ctx.data, { text: 'hi bob' });
  assert.equal(ctx.info.user, 'alice');

  // Presence asked on node 3 lists the client on node 1.
  const presence = await bobSub.presence();
  const users = Object.values(presence.clients).map((c) => c.user).sort();
  assert.deepEqual(users, ['alice', 'bob']);
  const stats = await aliceSub.presenceStats();
  assert.deepEqual([stats.numClients, stats.numUsers], [2, 2]);

  // Bob leaves: Alice hears it on node 1.
  const left = once(aliceSub, 'leave');
  bobSub.unsubscribe();
  assert.equal((await left).info.user, 'bob');
});

test('the server API on one node acts on a user connected to another', async () => {
  const [n1, , n3] = cluster.nodes;
  const carol = await connected(n3, 'carol');
  const serverSide = once(carol, 'subscribed');
  await n1.api('subscribe', { user: 'carol', channel: 'room:api' });
  assert.equal((await serverSide).channel, 'room:api');
  const publication = once(carol, 'publication');
  await n1.api('publish', { channel: 'room:api', data: 42 });
  assert.equal((await publication).data, 42);

  const unsubscribed = once(carol, 'unsubscribed');
  await n1.api('unsubscribe', { user: 'carol', channel: 'room:api' });
  assert.equal((await unsubscribed).channel, 'room:api');

  const disconnected = once(carol, 'disconnected');
  await n1.api('disconnect', { user: 'carol' });
  assert.equal((await disconnected).code, 3503);

  const info = await n1.api('info', {});
  assert.equal(info.result.nodes.length, 3);
});

test("a streaming session on one node is driven through another node's emulation endpoint", async () => {
  const [n1, n2] = cluster.nodes;
  for (const transport of ['http_stream', 'sse']) {
    // The stream is on node 1; every command the SDK sends goes to node 2's /emulation,
    // which forwards it to node 1 (as behind a load balancer without sticky sessions).
    const client = new Centrifuge([{ transport, endpoint: `${n1.url}/connection/${transport}` }], {
      token: n1.token('erin'),
      eventsource: EventSource,
      emulationEndpoint: `${n2.url}/emulation`,
      minReconnectDelay: 100,
      maxReconnectDelay: 1000,
      timeout: 3000,
    });
    clients.push(client);
    const connected = once(client, 'connected');
    client.connect();
    assert.equal((await connected).transport, transport);
    const channel = `room:emulated-${transport}`;
    const { sub } = await subscribed(client, channel);
    const got = [];
    sub.on('publication', (p) => got.push(p.data.n));
    // Publishes sent one after the other are processed in that order.
    for (let n = 1; n <= 5; n++) await sub.publish({ n });
    await withTimeout(
      (async () => {
        while (got.length < 5) await sleep(20);
      })(),
      5000,
      `the publications over ${transport}`
    );
    assert.deepEqual(got, [1, 2, 3, 4, 5]);
    const presence = await sub.presence();
    assert.deepEqual(Object.values(presence.clients).map((c) => c.user), ['erin']);
    const history = await sub.history({ limit: -1 });
    assert.deepEqual(history.publications.map((p) => p.data.n), [1, 2, 3, 4, 5]);
    client.disconnect();
  }
});

test('a client of a node killed with SIGKILL recovers on another node', async () => {
  const [n1, n2] = cluster.nodes;
  const doomed = cluster.nodes[2];
  const dave = await connected(doomed, 'dave');
  const { sub, ctx } = await subscribed(dave, 'room:feed');
  assert.equal(ctx.recoverable, true);
  let position = ctx.streamPosition;
  const first = once(sub, 'publication');
  await n1.api('publish', { channel: 'room:feed', data: { n: 0 } });
  position = { offset: (await first).offset, epoch: position.epoch };
  // Its transport errors once the node is gone are expected.
  dave.on('error', () => {});

  await doomed.stop('SIGKILL');
  dave.disconnect();
  for (let n = 1; n <= 3; n++) await n1.api('publish', { channel: 'room:feed', data: { n } });

  // The application reconnects Dave to a live node, subscribing from where he was.
  const again = await connected(n2, 'dave');
  const resumed = again.newSubscription('room:feed', { since: position });
  const got = [];
  resumed.on('publication', (p) => got.push(p.data.n));
  const done = once(resumed, 'subscribed');
  resumed.subscribe();
  const back = await done;
  assert.equal(back.wasRecovering, true);
  assert.equal(back.recovered, true);
  await withTimeout(
    (async () => {
      while (got.length < 3) await sleep(20);
    })(),
    5000,
    'the missed publications'
  );
  assert.deepEqual(got, [1, 2, 3]);

  // The dead node leaves `info` after three missed announcements (3 s each).
  await withTimeout(
    (async () => {
      while ((await n1.api('info', {})).result.nodes.length !== 2) await sleep(200);
    })(),
    15000,
    'the killed node to leave info'
  );
});
