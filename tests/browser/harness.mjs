// Test harness: a real `herald` binary in demo mode (chat app and admin UI on) and Debian's
// headless Chromium driven by playwright-core.
//
// The binary is $HERALD_BIN, else ../../target/debug/herald; the browser is $CHROMIUM_BIN,
// else /usr/bin/chromium (`apt-get install chromium`; never a downloaded browser).
// Screenshots go to $HERALD_BROWSER_ARTIFACTS, else ../../target/browser-artifacts.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

export const HERALD_BIN = resolve(here, process.env.HERALD_BIN || '../../target/debug/herald');
export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const ARTIFACTS = resolve(here, process.env.HERALD_BROWSER_ARTIFACTS || '../../target/browser-artifacts');
export const ADMIN_PASSWORD = 'browser-test-password';

const LISTENING = /listening on http:\/\/[^\s]*:(\d+)/;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A herald process in demo mode with the admin UI, restartable on the same port and data. */
export class Herald {
  constructor() {
    if (!existsSync(HERALD_BIN)) {
      throw new Error(`herald binary not found at ${HERALD_BIN}: run \`cargo build -p herald\` or set HERALD_BIN`);
    }
    this.dir = mkdtempSync(join(tmpdir(), 'herald-browser-'));
    this.port = 0;
    this.proc = null;
    this.log = '';
    this.config = {
      http_server: { address: '127.0.0.1', port: 0 },
      log: { level: 'info' },
      data_dir: join(this.dir, 'data'),
      demo: true,
      client: { token: { hmac_secret_key: randomBytes(24).toString('hex') } },
      http_api: { key: randomBytes(24).toString('hex') },
      admin: { enabled: true, password: ADMIN_PASSWORD, secret: randomBytes(24).toString('hex') },
    };
    this.configPath = join(this.dir, 'config.json');
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.config.http_server.port = this.port;
    writeFileSync(this.configPath, JSON.stringify(this.config, null, 2));
    const proc = spawn(HERALD_BIN, ['-c', this.configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_'))), NO_COLOR: '1' },
    });
    this.proc = proc;
    const reap = () => proc.kill('SIGKILL');
    process.once('exit', reap);
    proc.once('exit', () => process.removeListener('exit', reap));
    const started = new Promise((resolveStart, reject) => {
      let seen = '';
      const onData = (chunk) => {
        const text = chunk.toString();
        this.log += text;
        if (process.env.HERALD_LOG_TESTS) process.stderr.write(text);
        seen += text;
        const m = LISTENING.exec(seen);
        if (m) {
          seen = '';
          resolveStart(Number(m[1]));
        }
      };
      proc.stdout.on('data', onData);
      proc.stderr.on('data', onData);
      proc.once('error', reject);
      proc.once('exit', (code, signal) => reject(new Error(`herald exited (${code ?? signal}) before listening:\n${this.log}`)));
    });
    this.port = await withTimeout(started, 15000, 'herald to listen');
    const page = await fetch(this.url).then((r) => r.text());
    if (page.includes('UI not built')) {
      throw new Error(`${HERALD_BIN} was built with HERALD_SKIP_WEB=1: rebuild it without that variable`);
    }
    return this;
  }

  /** Calls a server API method with the API key; returns the JSON answer. */
  async api(method, body) {
    const res = await fetch(`${this.url}/api/${method}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-API-Key': this.config.http_api.key },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    if (res.status !== 200) throw new Error(`POST /api/${method}: HTTP ${res.status} ${await res.text()}`);
    return res.json();
  }

  async stop(signal = 'SIGTERM') {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    try {
      await withTimeout(exited, 10000, `herald to exit on ${signal}`);
    } catch (e) {
      proc.kill('SIGKILL');
      await exited;
      throw e;
    }
  }

  async close() {
    try {
      await this.stop('SIGKILL');
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
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
