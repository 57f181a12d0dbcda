// The chat app and the admin UI end to end, in headless Chromium against the herald binary:
// alice and bob chat in a room and see each other online; bob leaves, alice sends him three
// private messages (and is told, for each, that bob is offline and was notified), bob comes
// back and finds them in order, once; the server restarts under
// both and the conversation goes on with nothing lost or doubled; the admin UI lists both and
// publishes into the room, and logs out (the server then refuses its session); the chat fits a
// phone. A screenshot of each step is saved (see harness.mjs) — look at them.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  Herald, launchBrowser, screenshot, chatPages, ADMIN_PASSWORD, PHONE, STEP, RECONNECT,
} from './harness.mjs';

// Presence and join/leave are checked unless this is set (only for working on a server
// without presence; CI never sets it).
const CHECK_PRESENCE = !process.env.HERALD_BROWSER_NO_PRESENCE;

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

function assertNoDuplicates(list, who) {
  const offsets = list.map((m) => m.offset);
  assert.equal(new Set(offsets).size, offsets.length, `${who} shows a message twice: ${JSON.stringify(list)}`);
  const sorted = [...offsets].sort((a, b) => a - b);
  assert.deepEqual(offsets, sorted, `${who} shows messages out of order`);
}

test('chat and admin in a real browser', async (t) => {
  let alice;
  let bob;

  await t.test('alice and bob sign in, chat in #general and see each other online', async () => {
    alice = await openChat();
    await screenshot(alice.page, 'sign-in');
    await signIn(alice.page, 'alice');
    bob = await openChat();
    await signIn(bob.page, 'bob');

    await send(alice.page, 'Hi bob! Welcome to Herald.');
    await waitForMessage(bob.page, 'Hi bob! Welcome to Herald.');
    await send(bob.page, 'Hello alice, this is fast!');
    await waitForMessage(alice.page, 'Hello alice, this is fast!');

    if (CHECK_PRESENCE) {
      for (const [page, other] of [
        [alice.page, 'bob'],
        [bob.page, 'alice'],
      ]) {
        await page.locator(`[data-testid=members] .member[data-user="${other}"]`).waitFor({ timeout: STEP });
      }
      await alice.page.locator('.notice', { hasText: 'bob joined' }).waitFor({ timeout: STEP });
    }
    const seen = await messages(alice.page);
    assert.deepEqual(
      seen.map((m) => [m.author, m.text]),
      [
        ['alice', 'Hi bob! Welcome to Herald.'],
        ['bob', 'Hello alice, this is fast!'],
      ]
    );
    assert.deepEqual(await messages(bob.page), seen);
    await screenshot(alice.page, 'room-alice');
    await screenshot(bob.page, 'room-bob');
  });

  await t.test('bob leaves; alice sends him three private messages; he comes back to all three, once', async () => {
    await bob.context.close();
    if (CHECK_PRESENCE) await alice.page.locator('.notice', { hasText: 'bob left' }).waitFor({ timeout: STEP });
    await alice.page.fill('input[aria-label="User name"]', 'bob');
    await alice.page.press('input[aria-label="User name"]', 'Enter');
    for (const text of ['Are you there?', 'I pushed the release notes.', 'Call me when you are back.']) {
      await send(alice.page, text);
      await waitForMessage(alice.page, text);
    }
    assert.equal((await messages(alice.page)).length, 3, 'alice sees her three messages once');
    // Each found bob offline: Herald's offline_publication event, shown to the sender.
    const offline = alice.page.locator('.notice', { hasText: 'bob is offline — notified' });
    await offline.nth(2).waitFor({ timeout: STEP });
    assert.equal(await offline.count(), 3, 'one offline notice per message');
    const order = await alice.page.$$eval('[data-testid=message], .notice', (els) =>
      els.map((el) => (el.classList.contains('notice') ? 'notice' : 'message'))
    );
    assert.deepEqual(order, ['message', 'notice', 'message', 'notice', 'message', 'notice'], 'each notice under its message');
    await screenshot(alice.page, 'dm-sent-while-bob-offline');

    bob = await openChat();
    await signIn(bob.page, 'bob');
    const dm = bob.page.locator('.nav-item[data-kind=dm][data-id=alice]');
    await dm.waitFor({ timeout: STEP });
    await bob.page.locator('.nav-item[data-kind=dm][data-id=alice] [data-testid=unread]', { hasText: '3' }).waitFor({ timeout: STEP });
    await screenshot(bob.page, 'bob-back-unread');
    await dm.click();
    await waitForMessage(bob.page, 'Call me when you are back.');
    const got = await messages(bob.page);
    assert.deepEqual(
      got.map((m) => [m.author, m.text]),
      [
        ['alice', 'Are you there?'],
        ['alice', 'I pushed the release notes.'],
        ['alice', 'Call me when you are back.'],
      ]
    );
    assertNoDuplicates(got, 'bob');
    await send(bob.page, 'Back now, thanks!');
    await waitForMessage(alice.page, 'Back now, thanks!');
    // Alice is subscribed to her inbox: bob's reply finds her online, and says nothing more.
    await bob.page.waitForTimeout(500);
    assert.equal(await bob.page.locator('.notice', { hasText: 'is offline' }).count(), 0, 'alice is online: no notice');
    assert.equal(await offline.count(), 3);
    await screenshot(bob.page, 'bob-reads-dms');
  });

  await t.test('the server restarts under both; the conversation goes on with nothing lost', async () => {
    // Both in #general.
    await alice.page.click('.nav-item[data-kind=room][data-id=general]');
    await bob.page.click('.nav-item[data-kind=room][data-id=general]');
    await herald.stop('SIGTERM');
    await Promise.all([alice.page, bob.page].map((p) => p.locator('.banner').waitFor({ timeout: STEP })));
    await screenshot(alice.page, 'server-down-reconnecting');
    await herald.start();
    await Promise.all([waitStatus(alice.page, 'Connected', RECONNECT), waitStatus(bob.page, 'Connected', RECONNECT)]);

    await send(alice.page, 'Still here after the restart?');
    await waitForMessage(bob.page, 'Still here after the restart?');
    await send(bob.page, 'Yes, nothing lost.');
    await waitForMessage(alice.page, 'Yes, nothing lost.');
    const expected = [
      ['alice', 'Hi bob! Welcome to Herald.'],
      ['bob', 'Hello alice, this is fast!'],
      ['alice', 'Still here after the restart?'],
      ['bob', 'Yes, nothing lost.'],
    ];
    for (const [who, page] of [
      ['alice', alice.page],
      ['bob', bob.page],
    ]) {
      const list = await messages(page);
      assertNoDuplicates(list, who);
      assert.deepEqual(list.map((m) => [m.author, m.text]), expected, `${who}'s #general after the restart`);
    }
    // Private messages keep flowing too.
    await alice.page.click('.nav-item[data-kind=dm][data-id=bob]');
    await send(alice.page, 'One more after the restart.');
    await bob.page.locator('.nav-item[data-kind=dm][data-id=alice] [data-testid=unread]', { hasText: '1' }).waitFor({ timeout: STEP });
    await bob.page.click('.nav-item[data-kind=dm][data-id=alice]');
    await waitForMessage(bob.page, 'One more after the restart.');
    const dms = await messages(bob.page);
    assertNoDuplicates(dms, 'bob (DMs)');
    assert.equal(dms.length, 5, JSON.stringify(dms));
    await screenshot(bob.page, 'after-restart');
    await bob.page.click('.nav-item[data-kind=room][data-id=general]');
    await alice.page.click('.nav-item[data-kind=room][data-id=general]');
  });

  await t.test("bob's network drops; what alice says meanwhile reaches him once when it is back", async () => {
    await bob.context.setOffline(true);
    await bob.page.locator('.banner').waitFor({ timeout: RECONNECT });
    await screenshot(bob.page, 'network-drop-offline');
    await send(alice.page, 'Sent while your network was down.');
    await send(alice.page, 'And a second one.');
    await waitForMessage(alice.page, 'And a second one.');
    await bob.context.setOffline(false);
    await waitStatus(bob.page, 'Connected', RECONNECT);
    await waitForMessage(bob.page, 'And a second one.');
    const list = await messages(bob.page);
    assertNoDuplicates(list, 'bob after the drop');
    assert.deepEqual(
      list.slice(-2).map((m) => m.text),
      ['Sent while your network was down.', 'And a second one.']
    );
    assert.deepEqual(list, await messages(alice.page), 'alice and bob see the same room');
  });

  await t.test('the admin UI shows both users and publishes into the room', async () => {
    const context = await browser.newContext({ viewport: { width: 1360, height: 1000 } });
    const page = await context.newPage();
    page.on('pageerror', (e) => console.error('admin page error:', e.message));
    await page.goto(`${herald.url}/admin/`);
    await page.fill('#password', 'wrong');
    await page.press('#password', 'Enter');
    await page.locator('.login-card .error', { hasText: 'Wrong password' }).waitFor({ timeout: STEP });
    await screenshot(page, 'admin-login');
    await page.fill('#password', ADMIN_PASSWORD);
    await page.press('#password', 'Enter');
    for (const user of ['alice', 'bob']) {
      await page.locator(`[data-testid=users] tr[data-user="${user}"]`).waitFor({ timeout: STEP });
    }
    await page.locator('[data-testid=channels] tr[data-channel="rooms:general"]').waitFor({ timeout: STEP });
    // Some traffic for the graphs: a burst of publications into #random over a few seconds.
    for (let i = 0; i < 12; i++) {
      await Promise.all(
        Array.from({ length: 2 + (i % 4) * 3 }, (_, j) =>
          herald.api('publish', { channel: 'rooms:random', data: { text: `tick ${i}.${j}`, from: 'bot' } })
        )
      );
      await page.waitForTimeout(400);
    }
    await page.waitForTimeout(1000);
    await screenshot(page, 'admin-dashboard');

    await page.fill('#pub-data', '{"text": "Maintenance at 18:00, no downtime expected.", "from": "admin"}');
    await page.click('form:has(#pub-data) button[type=submit]');
    await page.locator('[data-testid=publish-result]', { hasText: 'Published' }).waitFor({ timeout: STEP });
    for (const p of [alice.page, bob.page]) await waitForMessage(p, 'Maintenance at 18:00');
    await page.click('button:has-text("Presence")');
    for (const user of ['alice', 'bob']) {
      await page.locator(`[data-testid=inspect-result] .row[data-user="${user}"]`).waitFor({ timeout: STEP });
    }
    await page.click('button:has-text("History")');
    await page.locator('[data-testid=inspect-result] .row', { hasText: 'Maintenance at 18:00' }).waitFor({ timeout: STEP });
    await page.locator('[data-testid=inspect-result]').scrollIntoViewIfNeeded();
    await screenshot(page, 'admin-published');
    await screenshot(alice.page, 'chat-shows-admin-message');
    // Disconnect bob from the admin: his chat says so and offers to reconnect; nothing is lost.
    // Asked in the page, not with the browser's confirm().
    let nativeDialog = false;
    page.on('dialog', (dialog) => {
      nativeDialog = true;
      dialog.dismiss();
    });
    await page.click('[data-testid=users] tr[data-user="bob"] button:has-text("Disconnect")');
    await page.locator('.modal', { hasText: 'Disconnect bob?' }).waitFor({ timeout: STEP });
    await page.waitForTimeout(300); // the dialog fades in
    await screenshot(page, 'admin-confirm-disconnect');
    await page.click('.modal [data-testid=confirm]');
    await page.locator('.modal').waitFor({ state: 'detached', timeout: STEP });
    assert.equal(nativeDialog, false, 'the admin used a native dialog');
    await bob.page.locator('.banner', { hasText: 'Disconnected' }).waitFor({ timeout: STEP });
    await screenshot(bob.page, 'bob-disconnected-by-admin');
    await send(alice.page, 'Did the admin just kick you?');
    await waitForMessage(alice.page, 'Did the admin just kick you?');
    await bob.page.click('.banner button:has-text("Reconnect")');
    await waitStatus(bob.page, 'Connected', RECONNECT);
    await waitForMessage(bob.page, 'Did the admin just kick you?');
    assert.deepEqual(await messages(bob.page), await messages(alice.page), 'bob caught up exactly');
    await page.setViewportSize(PHONE);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.waitForTimeout(1200);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the admin page is ${overflow}px wider than a phone`);
    await screenshot(page, 'admin-phone');
    // Log out: the page goes back to its login form, and the server refuses the old session.
    await page.setViewportSize({ width: 1360, height: 1000 });
    const session = await page.evaluate(() => sessionStorage.getItem('herald.admin.token'));
    assert.ok(session, 'the page keeps its session token');
    await page.click('button.logout');
    await page.locator('#password').waitFor({ timeout: STEP });
    const refused = await page.evaluate(
      async (token) => (await fetch('api/stats', { headers: { Authorization: `token ${token}` } })).status,
      session
    );
    assert.equal(refused, 401, 'the logged-out session is refused by the server');
    await context.close();
  });

  await t.test('the chat fits a phone', async () => {
    const carol = await openChat(PHONE, { isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    await screenshot(carol.page, 'phone-sign-in');
    await signIn(carol.page, 'carol');
    await screenshot(carol.page, 'phone-rooms');
    await carol.page.click('.nav-item[data-kind=room][data-id=general]');
    await waitForMessage(carol.page, 'Maintenance at 18:00');
    const list = await messages(carol.page);
    assertNoDuplicates(list, 'carol');
    assert.deepEqual(list, await messages(alice.page), 'carol sees the room as alice does');
    const overflow = await carol.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
    await send(carol.page, 'Hello from my phone!');
    await waitForMessage(alice.page, 'Hello from my phone');
    await screenshot(carol.page, 'phone-room');
    if (CHECK_PRESENCE) {
      await carol.page.click('.members-btn');
      for (const user of ['alice', 'bob', 'carol']) {
        await carol.page.locator(`[data-testid=members] .member[data-user="${user}"]`).waitFor({ timeout: STEP });
      }
      await carol.page.waitForTimeout(300); // the drawer slides in
      await screenshot(carol.page, 'phone-people-online');
    }
    await carol.context.close();
  });

  await alice?.context.close();
  await bob?.context.close();
});
