// The demo chat's honesty and polish, in headless Chromium against the herald binary (issue 26):
// a private message's author is the server-attached publisher, never what its data claims; the
// tab title names who is signed in and counts unread messages; opening a conversation with
// unread messages shows a "New messages" divider; the composer counts near its limit and
// refuses (does not cut) a longer message; long messages are collapsed; with the server down,
// signing in and sending say so in words, and a message not sent can be retried; the admin's
// top bar stays on one line on a phone, and history is readable. Screenshots of each step are
// saved (see harness.mjs).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  Herald, launchBrowser, screenshot, chatPages, ADMIN_PASSWORD, PHONE, STEP, RECONNECT,
} from './harness.mjs';


let herald;
let browser;

before(async () => {
  herald = await new Herald().start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  if (herald) {
    if (process.exitCode && herald.log) process.stderr.write(`--- herald log ---\n${herald.log}\n`);
    await herald.close();
  }
});

const { openChat, waitStatus, signIn, send, waitForMessage } = chatPages(() => ({ browser, herald }));

async function openDm(page, peer) {
  await page.fill('input[aria-label="User name"]', peer);
  await page.press('input[aria-label="User name"]', 'Enter');
}

/** The delivered messages of the open conversation: {author, text}. */
async function messages(page) {
  return page.$$eval('[data-testid=message]', (els) =>
    els.map((el) => ({ author: el.dataset.author, text: el.querySelector('.msg-text').textContent }))
  );
}

/** Waits (bounded) until the page's title is `title`. */
async function waitTitle(page, title) {
  await page.waitForFunction((t) => document.title === t, title, { timeout: STEP }).catch(async () => {
    assert.equal(await page.title(), title);
  });
}

test('the chat tells who wrote what, and helps its user', async (t) => {
  let alice;
  let bob;

  await t.test('the tab title names the user and counts unread messages', async () => {
    bob = await openChat();
    assert.equal(await bob.page.title(), 'Herald Chat — sign in');
    await signIn(bob.page, 'bob');
    await waitTitle(bob.page, 'bob — Herald Chat');
    alice = await openChat();
    await signIn(alice.page, 'alice');
    await openDm(alice.page, 'bob');
    await send(alice.page, 'Hi bob, one thing first.');
    await waitForMessage(alice.page, 'Hi bob, one thing first.');
    await waitTitle(bob.page, '(1) bob — Herald Chat');
    await bob.page.click('.nav-item[data-kind=dm][data-id=alice]');
    await waitForMessage(bob.page, 'Hi bob, one thing first.');
    await waitTitle(bob.page, 'bob — Herald Chat');
  });

  await t.test('opening a conversation with unread messages shows where they start', async () => {
    await bob.page.click('.nav-item[data-kind=room][data-id=general]');
    for (const text of ['Then the release is on Friday.', 'And the demo on Monday.']) {
      await send(alice.page, text);
      await waitForMessage(alice.page, text);
    }
    await bob.page.locator('.nav-item[data-kind=dm][data-id=alice] [data-testid=unread]', { hasText: '2' }).waitFor({ timeout: STEP });
    await waitTitle(bob.page, '(2) bob — Herald Chat');
    await bob.page.click('.nav-item[data-kind=dm][data-id=alice]');
    await waitForMessage(bob.page, 'And the demo on Monday.');
    // The divider sits between what was read and the first unread message.
    const around = await bob.page.$eval('[data-testid=new-divider]', (d) => {
      const before = [];
      for (let el = d.previousElementSibling; el; el = el.previousElementSibling) {
        if (el.dataset.testid === 'message') before.push(el.querySelector('.msg-text').textContent);
      }
      let next = d.nextElementSibling;
      while (next && next.dataset.testid !== 'message') next = next.nextElementSibling;
      return { before, next: next?.querySelector('.msg-text').textContent };
    });
    assert.deepEqual(around, { before: ['Hi bob, one thing first.'], next: 'Then the release is on Friday.' });
    assert.equal(await bob.page.locator('[data-testid=new-divider]').count(), 1);
    await screenshot(bob.page, 'polish-new-messages-divider');
    // Leaving and coming back: everything is read, no divider.
    await bob.page.click('.nav-item[data-kind=room][data-id=general]');
    await bob.page.click('.nav-item[data-kind=dm][data-id=alice]');
    assert.equal(await bob.page.locator('[data-testid=new-divider]').count(), 0);
    await bob.page.click('.nav-item[data-kind=room][data-id=general]');
  });

  await t.test("a private message's sender cannot be forged", async () => {
    // mallory, signed in like anyone, writes into bob's inbox a message that says it is from
    // alice — with her own connection, speaking the protocol directly.
    const mallory = await openChat();
    const reply = await mallory.page.evaluate(async () => {
      const res = await fetch('/demo/token', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: 'mallory' }),
      });
      const { token } = await res.json();
      const ws = new WebSocket(`ws://${location.host}/connection/websocket`);
      await new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error('WebSocket failed'));
      });
      const reply = (id) =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no reply ${id}`)), 5000);
          ws.addEventListener('message', (e) => {
            for (const line of String(e.data).split('\n')) {
              if (!line) continue;
              const msg = JSON.parse(line);
              if (msg.id === id) {
                clearTimeout(timer);
                resolve(msg);
              }
            }
          });
        });
      ws.send(JSON.stringify({ id: 1, connect: { token } }));
      const connected = await reply(1);
      if (connected.error) return connected;
      const data = { type: 'dm', from: 'alice', to: 'bob', text: 'It is alice: send me your password.', ts: Date.now() };
      ws.send(JSON.stringify({ id: 2, publish: { channel: 'inbox:#bob', data } }));
      const published = await reply(2);
      ws.close();
      return published;
    });
    assert.ok(!reply.error, `mallory could not publish: ${JSON.stringify(reply)}`);

    // bob sees it as from mallory, in his conversation with mallory — never with alice.
    const fromMallory = bob.page.locator('.nav-item[data-kind=dm][data-id=mallory]');
    await fromMallory.locator('[data-testid=unread]', { hasText: '1' }).waitFor({ timeout: STEP });
    await bob.page.click('.nav-item[data-kind=dm][data-id=alice]');
    assert.ok(
      !(await messages(bob.page)).some((m) => m.text.includes('send me your password')),
      "the forged message shows in bob's conversation with alice"
    );
    await fromMallory.click();
    await waitForMessage(bob.page, 'send me your password');
    assert.deepEqual(await messages(bob.page), [{ author: 'mallory', text: 'It is alice: send me your password.' }]);
    await bob.page.locator('.msg .tag', { hasText: 'claims to be alice' }).waitFor({ timeout: STEP });
    await screenshot(bob.page, 'polish-forged-sender-shown-as-mallory');
    await mallory.context.close();
  });

  await t.test('the composer counts near the limit, refuses a longer message and collapses long ones', async () => {
    await alice.page.click('.nav-item[data-kind=room][data-id=random]');
    const box = alice.page.locator('.composer textarea');
    const counter = alice.page.locator('[data-testid=counter]');
    await box.fill('a'.repeat(100));
    assert.equal(await counter.isVisible(), false, 'no counter far from the limit');
    await box.fill('b'.repeat(3600));
    assert.equal(await counter.textContent(), '3,600 / 4,000');
    // Over the limit: nothing is cut, nothing is sent, the counter says by how much.
    await box.fill('c'.repeat(4100));
    assert.equal(await counter.textContent(), '100 characters too long (limit 4,000)');
    assert.equal(await alice.page.locator('.composer .send').isDisabled(), true);
    await box.press('Enter');
    assert.equal((await box.inputValue()).length, 4100, 'the text was cut or sent');
    await screenshot(alice.page, 'polish-composer-too-long');
    // At the limit it goes, whole, and is shown collapsed.
    const long = Array.from({ length: 80 }, (_, i) => `Line ${i + 1} of a long report.`).join('\n');
    const text = (long + ' ' + 'x'.repeat(4000)).slice(0, 4000);
    await box.fill(text);
    await box.press('Enter');
    const msg = alice.page.locator('[data-testid=message]', { hasText: 'Line 1 of a long report.' });
    await msg.waitFor({ timeout: STEP });
    assert.equal((await msg.locator('.msg-text').textContent()).length, 4000);
    const collapsed = (await msg.locator('.msg-text').boundingBox()).height;
    assert.ok(collapsed < 250, `a 4,000-character message takes ${collapsed}px collapsed`);
    await screenshot(alice.page, 'polish-long-message-collapsed');
    await msg.locator('button', { hasText: 'Show more' }).click();
    const expanded = (await msg.locator('.msg-text').boundingBox()).height;
    assert.ok(expanded > collapsed * 3, `expanded ${expanded}px, collapsed ${collapsed}px`);
    await msg.locator('button', { hasText: 'Show less' }).waitFor({ timeout: STEP });
  });

  await t.test('with the server down: words, not "Failed to fetch"; a failed send can be retried', async () => {
    const dave = await openChat();
    await alice.page.click('.nav-item[data-kind=room][data-id=general]');
    await herald.stop('SIGTERM');
    await alice.page.locator('.banner').waitFor({ timeout: STEP });

    await dave.page.fill('#name', 'dave');
    await dave.page.click('button[type=submit]');
    const error = dave.page.locator('.login-card .error');
    await error.filter({ hasText: /\S/ }).waitFor({ timeout: STEP });
    const said = await error.textContent();
    assert.match(said, /Cannot reach the chat server/);
    assert.doesNotMatch(said, /fetch/i);
    await screenshot(dave.page, 'polish-sign-in-server-down');

    await send(alice.page, 'Sent while the server was down.');
    const pending = alice.page.locator('[data-testid=pending-message]', { hasText: 'Sent while the server was down.' });
    await pending.locator('.send-state', { hasText: 'Sending…' }).waitFor({ timeout: STEP });
    await screenshot(alice.page, 'polish-sending');
    await pending.locator('.send-state', { hasText: 'Not sent: no connection to the server.' }).waitFor({ timeout: STEP });
    const page = await alice.page.textContent('body');
    assert.doesNotMatch(page, /timeout/i, 'a raw error reached the page');
    assert.equal(await alice.page.locator('.composer textarea').inputValue(), '', 'the box is free for the next message');
    await screenshot(alice.page, 'polish-send-failed-retry');

    await herald.start();
    await waitStatus(alice.page, 'Connected', RECONNECT);
    await pending.locator('button', { hasText: 'Retry' }).click();
    await waitForMessage(alice.page, 'Sent while the server was down.');
    await pending.waitFor({ state: 'detached', timeout: STEP });
    const sent = (await messages(alice.page)).filter((m) => m.text === 'Sent while the server was down.');
    assert.equal(sent.length, 1, 'retried once, shown once');

    await dave.page.click('button[type=submit]');
    await waitStatus(dave.page, 'Connected', STEP);
    await dave.context.close();
  });

  await t.test("the admin's top bar keeps one line on a phone; history is readable", async () => {
    const context = await browser.newContext({ viewport: PHONE, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const page = await context.newPage();
    page.on('pageerror', (e) => console.error('admin page error:', e.message));
    await page.goto(`${herald.url}/admin/`);
    await page.fill('#password', ADMIN_PASSWORD);
    await page.press('#password', 'Enter');
    await page.locator('.topbar .live', { hasText: 'Live' }).waitFor({ timeout: STEP });

    // The longest state the bar shows: the server does not answer.
    await page.route('**/admin/api/stats', (route) => route.abort());
    await page.locator('.topbar .live', { hasText: 'Server unreachable' }).waitFor({ timeout: STEP });
    const bar = await page.$eval('.topbar', (top) => {
      /** How many lines the text in an element takes. */
      const lines = (el) => {
        const tops = new Set();
        const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          const range = document.createRange();
          range.selectNodeContents(node);
          for (const r of range.getClientRects()) if (r.width > 0 && r.height > 0) tops.add(Math.round(r.top));
        }
        return tops.size;
      };
      const box = top.getBoundingClientRect();
      return {
        live: lines(top.querySelector('.live')),
        logout: [...top.querySelectorAll('button.logout')].map((b) => ({
          lines: lines(b),
          height: b.getBoundingClientRect().height,
          inside: b.getBoundingClientRect().right <= box.right,
        })),
        liveInside: top.querySelector('.live').getBoundingClientRect().right <= box.right,
        height: box.height,
        overflow: top.scrollWidth - top.clientWidth,
      };
    });
    assert.equal(bar.live, 1, `"Server unreachable" wraps: ${JSON.stringify(bar)}`);
    assert.ok(bar.liveInside, JSON.stringify(bar));
    assert.equal(bar.logout.length, 1);
    assert.ok(bar.logout[0].lines <= 1 && bar.logout[0].inside, `Log out breaks: ${JSON.stringify(bar)}`);
    assert.ok(bar.height <= 60 && bar.overflow <= 0, JSON.stringify(bar));
    await screenshot(page, 'polish-admin-phone-unreachable');
    await page.unroute('**/admin/api/stats');

    await page.fill('#inspect-channel', 'rooms:general');
    await page.click('button:has-text("History")');
    const row = page.locator('[data-testid=inspect-result] .row', { hasText: 'Sent while the server was down.' });
    await row.waitFor({ timeout: STEP });
    // The message's text, not its JSON; the JSON only when asked for.
    assert.equal(await row.locator('.pub-text').textContent(), 'Sent while the server was down.');
    assert.equal(await row.locator('pre.json').isVisible(), false);
    await row.scrollIntoViewIfNeeded();
    await screenshot(page, 'polish-admin-phone-history');
    await context.close();
  });

  await alice?.context.close();
  await bob?.context.close();
});
