// The demo chat on two herald nodes over one Redis (`engine.type: "redis"`, a redis-server of
// the test's own), in headless Chromium: alice uses node 1 and bob node 2, as a load balancer
// might place them. They chat in #general and see each other online; bob signs out and alice
// sends him three private messages; node 1 — the one that took them — is killed with SIGKILL;
// bob signs in through node 2 and finds all three, once, in order; node 1 comes back, alice's
// page reconnects to it, and bob, signed in through node 1 as well, finds the same messages
// there. A screenshot of each step is saved (see harness.mjs).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Herald, launchBrowser, screenshot, chatPages, sharedSecrets, STEP, RECONNECT } from './harness.mjs';
import { RedisServer } from '../support/redis-server.mjs';

let redis;
let nodes = [];
let browser;

before(async () => {
  redis = await RedisServer.start();
  const secrets = sharedSecrets();
  const engine = { type: 'redis', redis: { address: redis.url, presence_ttl: '5s' } };
  for (let i = 0; i < 2; i++) {
    const node = new Herald({
      ...secrets,
      engine,
      client: { ...secrets.client, presence_update_interval: '1s' },
    });
    nodes.push(node);
    await node.start();
  }
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const node of nodes) {
    if (process.exitCode && node.log) process.stderr.write(`--- herald node ${node.port} log ---\n${node.log}\n`);
    await node.close();
  }
  await redis?.close();
});

// Each page is opened on the node the test names.
let target = 0;
const pages = chatPages(() => ({ browser, herald: nodes[target] }));
const { waitStatus, signIn, send, waitForMessage } = pages;
function openChatOn(node) {
  target = node;
  return pages.openChat();
}

/** The messages of the open conversation: {author, text, offset}. */
async function messages(page) {
  return page.$$eval('[data-testid=message]', (els) =>
    els.map((el) => ({
      author: el.dataset.author,
      offset: Number(el.dataset.offset),
      text: el.querySelector('.msg-text').textContent,
    }))
  );
}

const DMS = ['Are you there?', 'I pushed the release notes.', 'Call me when you are back.'];

/** Signs `user` in on `node`'s page and checks the three private messages from alice, once, in order. */
async function findsTheMessages(node, user) {
  const session = await openChatOn(node);
  await signIn(session.page, user);
  const dm = session.page.locator('.nav-item[data-kind=dm][data-id=alice]');
  await dm.waitFor({ timeout: STEP });
  await dm.click();
  await waitForMessage(session.page, DMS[2]);
  const got = await messages(session.page);
  assert.deepEqual(
    got.map((m) => [m.author, m.text]),
    DMS.map((text) => ['alice', text]),
    `bob on node ${node + 1} finds alice's messages once, in order`
  );
  const offsets = got.map((m) => m.offset);
  assert.deepEqual(offsets, [...new Set(offsets)].sort((a, b) => a - b));
  return session;
}

test('the demo chat on two nodes', async (t) => {
  let alice;
  let bob;

  await t.test('alice on node 1 and bob on node 2 chat and see each other online', async () => {
    for (const node of nodes) {
      const info = await node.api('info', {});
      if (info.result.nodes.length !== 2) {
        // The nodes find each other within one announcement interval.
        await new Promise((r) => setTimeout(r, 3500));
      }
      assert.equal((await node.api('info', {})).result.nodes.length, 2, 'each node sees both');
    }
    alice = await openChatOn(0);
    await signIn(alice.page, 'alice');
    bob = await openChatOn(1);
    await signIn(bob.page, 'bob');
    await send(alice.page, 'Hi bob, I am on node 1.');
    await waitForMessage(bob.page, 'Hi bob, I am on node 1.');
    await send(bob.page, 'Hello alice, node 2 here.');
    await waitForMessage(alice.page, 'Hello alice, node 2 here.');
    for (const [page, other] of [
      [alice.page, 'bob'],
      [bob.page, 'alice'],
    ]) {
      await page.locator(`[data-testid=members] .member[data-user="${other}"]`).waitFor({ timeout: STEP });
    }
    const seen = await messages(alice.page);
    assert.deepEqual(
      seen.map((m) => [m.author, m.text]),
      [
        ['alice', 'Hi bob, I am on node 1.'],
        ['bob', 'Hello alice, node 2 here.'],
      ]
    );
    assert.deepEqual(await messages(bob.page), seen, 'both see the same room');
    await screenshot(alice.page, 'cluster-alice-node1');
    await screenshot(bob.page, 'cluster-bob-node2');
  });

  await t.test('bob signs out; alice sends him three private messages through node 1', async () => {
    await bob.context.close();
    await alice.page.locator('.notice', { hasText: 'bob left' }).waitFor({ timeout: STEP });
    await alice.page.fill('input[aria-label="User name"]', 'bob');
    await alice.page.press('input[aria-label="User name"]', 'Enter');
    for (const text of DMS) {
      await send(alice.page, text);
      await waitForMessage(alice.page, text);
    }
    // (The "bob is offline — notified" notices come from offline_publication, which with
    // several nodes is the webhooks' part, issue 23: not checked here.)
    assert.equal((await messages(alice.page)).length, 3, 'alice sees her three messages once');
    await screenshot(alice.page, 'cluster-dms-sent-on-node1');
  });

  await t.test('node 1 is killed; bob signs in through node 2 and finds the three messages', async () => {
    await nodes[0].stop('SIGKILL');
    await alice.page.locator('.banner').waitFor({ timeout: STEP });
    bob = await findsTheMessages(1, 'bob');
    await screenshot(bob.page, 'cluster-bob-node2-after-kill');
  });

  await t.test('node 1 comes back: alice reconnects to it, bob finds the same messages through it', async () => {
    await nodes[0].start();
    await waitStatus(alice.page, 'Connected', RECONNECT);
    const bobOnOne = await findsTheMessages(0, 'bob');
    // The conversation goes on across the nodes: alice (node 1) to bob on both.
    await send(alice.page, 'Welcome back.');
    await waitForMessage(bob.page, 'Welcome back.');
    await waitForMessage(bobOnOne.page, 'Welcome back.');
    await screenshot(bobOnOne.page, 'cluster-bob-node1-after-restart');
    await bobOnOne.context.close();
  });
});
