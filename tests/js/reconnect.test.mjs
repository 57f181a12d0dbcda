// The server restarts on the same port: the SDK reconnects by itself, resubscribes, and
// receives publications made after the restart.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { once, startHerald } from './herald.mjs';

let herald;
const clients = [];
before(async () => {
  herald = await startHerald();
});
after(async () => {
  for (const c of clients) c.disconnect();
  await herald?.close();
});

function client(user) {
  const c = herald.client(user);
  clients.push(c);
  return c;
}

for (const signal of ['SIGTERM', 'SIGKILL']) {
  test(`reconnects and resubscribes after a restart (${signal})`, async () => {
    const alice = client('alice');
    alice.connect();
    await alice.ready(5000);
    const channel = `restart-${signal.toLowerCase()}`;
    const sub = alice.newSubscription(channel);
    sub.subscribe();
    await sub.ready(5000);

    const port = herald.port;
    const lost = once(alice, 'connecting', 10000);
    await herald.stop(signal);
    const ctx = await lost;
    if (signal === 'SIGTERM') {
      assert.equal(ctx.code, 3001, `graceful shutdown advises reconnect: ${JSON.stringify(ctx)}`);
    }
    assert.equal(sub.state, 'subscribing', 'the subscription waits for the connection');

    const back = once(alice, 'connected', 10000);
    const resubscribed = once(sub, 'subscribed', 10000);
    await herald.start();
    assert.equal(herald.port, port, 'restarted on the same port');
    await back;
    await resubscribed;

    // A new publication after the restart, from another client.
    const bob = client('bob');
    bob.connect();
    await bob.ready(5000);
    const received = once(sub, 'publication');
    await bob.publish(channel, { after: 'restart' });
    assert.deepEqual((await received).data, { after: 'restart' });
  });
}
