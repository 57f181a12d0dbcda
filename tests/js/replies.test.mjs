// Replies made of stored publications, as the real centrifuge SDK sees them when they do not
// fit the client's byte budget (`client.queue_max_size`): a recovery that does not fit comes
// as `subscribed` with `wasRecovering: true, recovered: false` (the app's cue to reload) and
// the client stays connected; `sub.history()` answers shorter pages, and paging with `since`
// until the stream's top reads everything. Before, both closed the client with 3008 "slow",
// and the SDK reconnected into the same reply, again and again.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { once, sleep, startHerald } from './herald.mjs';

/** Publications of 10 KB in a 64 KiB budget: 20 of them are three times what fits. */
const QUEUE = 64 * 1024;
const INBOX = {
  name: 'inbox',
  allow_user_limited_channels: true,
  allow_publish_for_client: true,
  allow_history_for_subscriber: true,
  history_size: 1000,
  history_ttl: '720h',
  force_recovery: true,
};

let herald;
const clients = [];
before(async () => {
  herald = await startHerald({
    client: { queue_max_size: QUEUE, recovery_max_publication_limit: 1000 },
    channel: { namespaces: [INBOX] },
  });
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

/** Publishes `count` publications of 10 KB into `channel` through the server API. */
async function fill(channel, count) {
  let epoch = '';
  for (let i = 1; i <= count; i++) {
    const response = await fetch(`${herald.apiUrl}/publish`, {
      method: 'POST',
      headers: { 'X-API-Key': herald.apiKey },
      body: JSON.stringify({ channel, data: { n: i, pad: 'x'.repeat(10_000) } }),
    });
    const body = await response.json();
    assert.equal(body.result?.offset, i, JSON.stringify(body));
    epoch = body.result.epoch;
  }
  return epoch;
}

test('a recovery over the budget: subscribed, not recovered, still connected; history pages read it all', async () => {
  const channel = 'inbox:#bob';
  const epoch = await fill(channel, 20);

  const bob = client('bob');
  bob.connect();
  await bob.ready(5000);
  // From here on, any of these would be the 3008 loop.
  const events = [];
  for (const name of ['connecting', 'disconnected']) {
    bob.on(name, (ctx) => events.push(`${name} ${ctx.code} ${ctx.reason}`));
  }
  const sub = bob.newSubscription(channel, { since: { offset: 0, epoch: '' } });
  const pubs = [];
  sub.on('publication', (ctx) => pubs.push(ctx.offset));
  const subscribed = once(sub, 'subscribed');
  sub.subscribe();
  const ctx = await subscribed;
  assert.equal(ctx.wasRecovering, true, JSON.stringify(ctx));
  assert.equal(ctx.recovered, false, JSON.stringify(ctx));
  assert.deepEqual(ctx.streamPosition, { offset: 20, epoch });

  // The app reloads, the way the centrifuge history-pagination example does: pages from
  // the start until a page ends at the top the reply names.
  const seen = [];
  let since = { offset: 0, epoch };
  let pages = 0;
  for (;;) {
    pages += 1;
    assert.ok(pages <= 20, `no progress: ${seen}`);
    const page = await sub.history({ since, limit: 100 });
    assert.ok(page.publications.length > 0, `an empty page before the top: ${seen}`);
    assert.ok(page.publications.length < 20, 'all 200 KB in one page');
    for (const p of page.publications) seen.push(p.offset);
    const last = page.publications[page.publications.length - 1].offset;
    if (last === page.offset) break;
    since = { offset: last, epoch: page.epoch };
  }
  assert.deepEqual(
    seen,
    Array.from({ length: 20 }, (_, i) => i + 1)
  );
  assert.ok(pages >= 4, `${pages} pages`);

  await sleep(300);
  assert.deepEqual(events, [], 'the client was disconnected');
  assert.equal(bob.state, 'connected');
  assert.deepEqual(pubs, [], 'a partial recovery was replayed');
});
