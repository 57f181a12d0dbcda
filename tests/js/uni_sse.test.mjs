// Unidirectional SSE as a client with no SDK uses it: a plain `EventSource` (the `eventsource`
// package, WHATWG-compliant, since Node has none) on `/connection/uni_sse` with the connect
// request in `cf_connect`. It receives bare pushes: the connect push, publications of its
// server-side subscriptions, and the disconnect push of `/api/disconnect`.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { EventSource } from 'eventsource';

import { startHerald } from './herald.mjs';

let herald;
before(async () => {
  herald = await startHerald({ uni_sse: { enabled: true } });
});
after(async () => {
  await herald?.close();
});

/** The next message of `source` that `what` accepts, within 5 s. */
function nextMessage(source, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no such message in 5 s')), 5000);
    const onMessage = (event) => {
      const message = JSON.parse(event.data);
      if (!what(message)) return;
      clearTimeout(timer);
      source.removeEventListener('message', onMessage);
      resolve(message);
    };
    source.addEventListener('message', onMessage);
  });
}

test('a plain EventSource on uni_sse receives pushes and the disconnect push', async () => {
  const connect = JSON.stringify({ token: herald.token('frank', { channels: ['news'] }) });
  const url = `${herald.url}/connection/uni_sse?cf_connect=${encodeURIComponent(connect)}`;
  const source = new EventSource(url);
  try {
    const connected = await nextMessage(source, (m) => m.connect);
    assert.equal(typeof connected.connect.client, 'string');
    assert.ok(connected.connect.subs?.news, JSON.stringify(connected));

    const publication = nextMessage(source, (m) => m.pub);
    await herald.api('publish', { channel: 'news', data: { n: 1 } });
    const pushed = await publication;
    assert.equal(pushed.channel, 'news');
    assert.deepEqual(pushed.pub.data, { n: 1 });

    const disconnect = nextMessage(source, (m) => m.disconnect);
    await herald.api('disconnect', { user: 'frank', disconnect: { code: 4504, reason: 'bye' } });
    const last = await disconnect;
    assert.equal(last.disconnect.code, 4504);
    assert.equal(last.disconnect.reason, 'bye');
  } finally {
    source.close();
  }
});
