// The transports other than the WebSocket, in headless Chromium:
//
// * the chat app where no WebSocket gets through (every connection to /connection/websocket
//   fails, as behind a proxy that refuses upgrades): it falls back to HTTP-streaming, and the
//   offline private messages scenario passes on it — alice writes to bob while he is away,
//   the server is killed (-9) and restarted, bob signs in and finds the three messages once;
// * the SDK's Protobuf build (`centrifuge/dist/centrifuge.protobuf.js`) over the WebSocket:
//   connect, subscribe, a server API publication, a publication of its own;
// * a plain `EventSource` on the unidirectional SSE endpoint receiving API publications.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { HeraldProcess } from '../support/herald-process.mjs';
import { Herald, HERALD_BIN, launchBrowser, screenshot, chatPages, STEP, RECONNECT } from './harness.mjs';

/** The SDK's Protobuf build for browsers (its package exports no path to it). */
const PROTOBUF_BUNDLE = join(
  dirname(fileURLToPath(import.meta.url)),
  'node_modules/centrifuge/dist/centrifuge.protobuf.js'
);

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/**
 * Makes every WebSocket the page opens to `/connection/websocket` fail as a blocked one does
 * (an error, then a close, never an open): it is pointed at a port nothing listens on. Other
 * WebSockets are left alone. Counts the attempts in `window.__blockedWebSockets`.
 */
function blockWebSocket() {
  const Native = window.WebSocket;
  window.__blockedWebSockets = 0;
  window.WebSocket = function WebSocket(url, protocols) {
    if (String(url).includes('/connection/websocket')) {
      window.__blockedWebSockets += 1;
      return new Native('ws://127.0.0.1:9/blocked', protocols);
    }
    return new Native(url, protocols);
  };
  Object.assign(window.WebSocket, Native);
  window.WebSocket.prototype = Native.prototype;
}

test('the chat falls back to HTTP-streaming where no WebSocket gets through', async (t) => {
  const herald = await new Herald().start();
  t.after(async () => {
    if (process.exitCode && herald.log) process.stderr.write(`--- herald log ---\n${herald.log}\n`);
    await herald.close();
  });
  const { openChat, waitStatus, signIn, send, waitForMessage } = chatPages(() => ({ browser, herald }));
  /** The chat with WebSockets blocked, and the streaming requests it makes. */
  async function openBlocked() {
    const opened = await openChat();
    const streams = [];
    opened.page.on('request', (r) => {
      const path = new URL(r.url()).pathname;
      if (path === '/connection/http_stream' || path === '/connection/sse') streams.push(path);
    });
    await opened.context.addInitScript(blockWebSocket);
    await opened.page.reload();
    return { ...opened, streams };
  }
  const messages = (page) =>
    page.$$eval('[data-testid=message]', (els) =>
      els.map((el) => [el.dataset.author, el.querySelector('.msg-text').textContent, Number(el.dataset.offset)])
    );

  const alice = await openBlocked();
  await signIn(alice.page, 'alice');
  assert.ok((await alice.page.evaluate(() => window.__blockedWebSockets)) >= 1, 'the WebSocket was tried first');
  assert.ok(alice.streams.includes('/connection/http_stream'), `fell back: ${JSON.stringify(alice.streams)}`);

  await alice.page.fill('input[aria-label="User name"]', 'bob');
  await alice.page.press('input[aria-label="User name"]', 'Enter');
  const sent = ['Are you there?', 'I pushed the release notes.', 'Call me when you are back.'];
  for (const text of sent) {
    await send(alice.page, text);
    await waitForMessage(alice.page, text);
  }
  await screenshot(alice.page, 'fallback-dm-sent');

  await herald.stop('SIGKILL');
  await herald.start();

  const bob = await openBlocked();
  await signIn(bob.page, 'bob');
  assert.ok(bob.streams.includes('/connection/http_stream'), `fell back: ${JSON.stringify(bob.streams)}`);
  const dm = bob.page.locator('.nav-item[data-kind=dm][data-id=alice]');
  await dm.waitFor({ timeout: STEP });
  await bob.page
    .locator('.nav-item[data-kind=dm][data-id=alice] [data-testid=unread]', { hasText: '3' })
    .waitFor({ timeout: STEP });
  await dm.click();
  await waitForMessage(bob.page, 'Call me when you are back.');
  const got = await messages(bob.page);
  assert.deepEqual(
    got.map(([author, text]) => [author, text]),
    sent.map((text) => ['alice', text]),
    'the three messages, in order, once'
  );
  await screenshot(bob.page, 'fallback-bob-reads-dms');

  // alice's chat reconnected on its own (over the fallback again) and gets bob's answer.
  await waitStatus(alice.page, 'Connected', RECONNECT);
  await send(bob.page, 'Back now, thanks!');
  await waitForMessage(alice.page, 'Back now, thanks!');
  await alice.context.close();
  await bob.context.close();
});

/** A signed HS256 connection token. */
function token(secret, sub) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

test('the Protobuf SDK build and a plain EventSource on uni_sse, in Chromium', async (t) => {
  const secret = randomBytes(24).toString('hex');
  const herald = new HeraldProcess(
    HERALD_BIN,
    (dir) => ({
      http_server: { address: '127.0.0.1', port: 0 },
      data_dir: join(dir, 'data'),
      client: { token: { hmac_secret_key: secret } },
      http_api: { key: randomBytes(24).toString('hex') },
      health: { enabled: true },
      uni_sse: { enabled: true },
      channel: {
        without_namespace: { allow_subscribe_for_client: true, allow_publish_for_subscriber: true },
      },
    }),
    'herald-browser-'
  );
  await herald.start();
  t.after(async () => {
    if (process.exitCode && herald.log) process.stderr.write(`--- herald log ---\n${herald.log}\n`);
    await herald.close();
  });
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  // A page of the server's own origin (its health endpoint), so the browser sends no
  // cross-origin requests.
  await page.goto(`${herald.url}/health`);

  await t.test('centrifuge.protobuf.js: connect, subscribe, API publication, publish', async () => {
    await page.addScriptTag({ path: PROTOBUF_BUNDLE });
    const ready = await page.evaluate(async (tok) => {
      const c = new window.Centrifuge(`ws://${location.host}/connection/websocket`, { token: tok });
      window.__proto = { client: c, got: [] };
      const sub = c.newSubscription('news');
      sub.on('publication', (p) => window.__proto.got.push(new TextDecoder().decode(p.data)));
      const subscribed = new Promise((resolve) => sub.once('subscribed', resolve));
      const connected = new Promise((resolve) => c.once('connected', resolve));
      sub.subscribe();
      c.connect();
      const ctx = await connected;
      await subscribed;
      window.__proto.sub = sub;
      return { transport: ctx.transport, client: ctx.client };
    }, token(secret, 'pia'));
    assert.equal(ready.transport, 'websocket');
    assert.ok(ready.client, JSON.stringify(ready));
    await herald.api('publish', { channel: 'news', data: { from: 'api' } });
    await page.waitForFunction(() => window.__proto.got.length === 1, null, { timeout: STEP });
    await page.evaluate(() => window.__proto.sub.publish(new TextEncoder().encode(JSON.stringify({ from: 'page' }))));
    await page.waitForFunction(() => window.__proto.got.length === 2, null, { timeout: STEP });
    const got = (await page.evaluate(() => window.__proto.got)).map((s) => JSON.parse(s));
    assert.deepEqual(got, [{ from: 'api' }, { from: 'page' }]);
    await page.evaluate(() => window.__proto.client.disconnect());
  });

  await t.test('a plain EventSource on uni_sse gets the connect push and API publications', async () => {
    await page.evaluate((tok) => {
      const url = new URL('/connection/uni_sse', location.origin);
      url.searchParams.set('cf_connect', JSON.stringify({ token: tok }));
      window.__sse = [];
      const source = new EventSource(url);
      source.onmessage = (e) => window.__sse.push(JSON.parse(e.data));
      window.__source = source;
    }, token(secret, 'uma'));
    await page.waitForFunction(() => window.__sse.some((m) => m.connect), null, { timeout: STEP });
    await herald.api('subscribe', { user: 'uma', channel: 'news' });
    await herald.api('publish', { channel: 'news', data: { n: 1 } });
    await herald.api('publish', { channel: 'news', data: { n: 2 } });
    await page.waitForFunction(() => window.__sse.filter((m) => m.pub).length === 2, null, { timeout: STEP });
    const pubs = await page.evaluate(() => window.__sse.filter((m) => m.pub));
    assert.deepEqual(
      pubs.map((m) => [m.channel, m.pub.data.n]),
      [
        ['news', 1],
        ['news', 2],
      ]
    );
    await page.evaluate(() => window.__source.close());
  });
});
