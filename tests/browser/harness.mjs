// Test harness: a real `herald` binary in demo mode (chat app and admin UI on) and Debian's
// headless Chromium driven by playwright-core.
//
// The binary is $HERALD_BIN, else ../../target/debug/herald; the browser is $CHROMIUM_BIN,
// else /usr/bin/chromium (`apt-get install chromium`; never a downloaded browser).
// Screenshots go to $HERALD_BROWSER_ARTIFACTS, else ../../target/browser-artifacts.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { HeraldProcess, sleep } from '../support/herald-process.mjs';

const here = dirname(fileURLToPath(import.meta.url));

export const HERALD_BIN = resolve(here, process.env.HERALD_BIN || '../../target/debug/herald');
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const ARTIFACTS = resolve(here, process.env.HERALD_BROWSER_ARTIFACTS || '../../target/browser-artifacts');
export const ADMIN_PASSWORD = 'browser-test-password';

export { sleep };

/**
 * A herald process in demo mode with the admin UI, restartable on the same port and data.
 * `extra` is merged over its config, top-level key by key: several nodes of one deployment
 * share their secrets and engine that way (see `sharedSecrets`).
 */
export class Herald extends HeraldProcess {
  constructor(extra = {}) {
    super(
      HERALD_BIN,
      (dir) => ({
        http_server: { address: '127.0.0.1', port: 0 },
        log: { level: 'info' },
        data_dir: join(dir, 'data'),
        demo: true,
        ...sharedSecrets(),
        ...extra,
      }),
      'herald-browser-'
    );
  }

  /** Starts the server and checks that its binary carries the web UI. */
  async start() {
    await super.start(15000);
    const page = await fetch(this.url).then((r) => r.text());
    if (page.includes('UI not built')) {
      throw new Error(`${HERALD_BIN} was built with HERALD_SKIP_WEB=1: rebuild it without that variable`);
    }
    return this;
  }
}

/** Fresh secrets (token key, API key, admin UI), as config keys: give the same to every node. */
export function sharedSecrets() {
  return {
    client: { token: { hmac_secret_key: randomBytes(24).toString('hex') } },
    http_api: { key: randomBytes(24).toString('hex') },
    admin: { enabled: true, password: ADMIN_PASSWORD, secret: randomBytes(24).toString('hex') },
  };
}

/** Launches headless Chromium. */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM_BIN)) {
    throw new Error(`Chromium not found at ${CHROMIUM_BIN}: apt-get install -y chromium (or set CHROMIUM_BIN)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM_BIN,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--font-render-hinting=none'],
  });
}

let shot = 0;
/** Saves a screenshot as NN-name.png in the artifacts folder; returns its path. */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  shot += 1;
  const path = join(ARTIFACTS, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path });
  return path;
}

/** Viewports the suites take their screenshots at. */
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };
/** Upper bound (ms) for one step of a test: a page update, a message, a status. */
export const STEP = 10000;
/** Reconnecting after a restart or a network drop (the SDK backs off up to 5 s). */
export const RECONNECT = 25000;

/**
 * The page helpers of the chat suites, for the browser and server that `state()` returns
 * (`{browser, herald}`, set by each suite's `before`).
 */
export function chatPages(state) {
  /** A new browser context (viewport, and `extra` options such as offline) on the chat. */
  async function openChat(viewport = DESKTOP, extra = {}) {
    const { browser, herald } = state();
    const context = await browser.newContext({ viewport, deviceScaleFactor: 1, ...extra });
    const page = await context.newPage();
    page.on('pageerror', (e) => console.error('page error:', e.message));
    // The app reports subscription and connection errors with console.warn/error: shown in the
    // test output, so that a failure says what the page saw (a subscribe refused, a timeout).
    page.on('console', (m) => {
      if (m.type() === 'warning' || m.type() === 'error') console.error(`page ${m.type()}: ${m.text()}`);
    });
    await page.goto(herald.url);
    return { context, page };
  }

  async function waitStatus(page, text, timeout = STEP) {
    await page.locator('[data-testid=status]', { hasText: text }).first().waitFor({ timeout });
  }

  async function signIn(page, name) {
    await page.fill('#name', name);
    await page.click('button[type=submit]');
    await waitStatus(page, 'Connected');
  }

  async function send(page, text) {
    const box = page.locator('.composer textarea');
    await box.fill(text);
    await box.press('Enter');
  }

  /** Waits until a message is shown as delivered (not one of ours still "Sending…"). */
  async function waitForMessage(page, text) {
    await page.locator('[data-testid=message] .msg-text', { hasText: text }).first().waitFor({ timeout: STEP });
  }

  return { openChat, waitStatus, signIn, send, waitForMessage };
}
