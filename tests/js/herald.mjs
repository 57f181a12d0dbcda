// Test helper: starts a real `herald` binary on a free port with a temporary config, and gives
// the tests what they need to talk to it (WebSocket URL, API key, tokens).
//
// The binary is taken from $HERALD_BIN, else ../../target/debug/herald relative to this folder
// (build it first with `cargo build -p herald`).

import { spawn, execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import WebSocket from 'ws';
import { Centrifuge } from 'centrifuge';

const here = dirname(fileURLToPath(import.meta.url));

/** Absolute path of the herald binary under test. */
export const HERALD_BIN = resolve(here, process.env.HERALD_BIN || '../../target/debug/herald');

function assertBinary() {
  if (!existsSync(HERALD_BIN)) {
    throw new Error(
      `herald binary not found at ${HERALD_BIN}: build it with \`cargo build -p herald\` ` +
        'or set HERALD_BIN to its path'
    );
  }
}

const ANSI = /\x1b\[[0-9;]*m/g;
const LISTENING = /listening on http:\/\/[^\s]*:(\d+)/;

/** Resolves after `ms` milliseconds. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Resolves with the value of `promise`, or rejects after `ms` with an error naming `what`.
 */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    timer.unref?.();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves with the first event `name` emitted by `emitter` (centrifuge Client or Subscription). */
export function once(emitter, name, ms = 5000) {
  const p = withTimeout(
    new Promise((resolve) => emitter.once(name, resolve)),
    ms,
    `event "${name}"`
  );
  // A test that fails before awaiting this must not leave an unhandled rejection behind.
  p.catch(() => {});
  return p;
}

/** A base64url string without padding. */
const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** Signs claims as an HS256 JWT (what a backend does to let a user connect). */
export function signHS256(claims, secret) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url');
  return `${header}.${body}.${sig}`;
}

/** A deep merge of plain objects (arrays and scalars of `extra` replace those of `base`). */
function merge(base, extra) {
  const out = { ...base };
  for (const [k, v] of Object.entries(extra || {})) {
    if (v && typeof v === 'object' && !Array.isArray(v) && base[k] && typeof base[k] === 'object') {
      out[k] = merge(base[k], v);
    } else {
      out[k] = v;
    }
  }
  return out;
}

/**
 * A running herald process.
 *
 * `config` is merged over a default test config: a random token secret and API key, channels
 * without namespace that clients may subscribe and publish to, a namespace `locked` that clients
 * may NOT subscribe to, and a fresh data directory.
 */
export class Herald {
  constructor(config = {}) {
    assertBinary();
    this.dir = mkdtempSync(join(tmpdir(), 'herald-js-'));
    this.secret = randomBytes(24).toString('hex');
    this.apiKey = randomBytes(24).toString('hex');
    this.config = merge(
      {
        http_server: { address: '127.0.0.1', port: 0 },
        log: { level: 'info' },
        data_dir: join(this.dir, 'data'),
        client: { token: { hmac_secret_key: this.secret } },
        http_api: { key: this.apiKey },
        channel: {
          without_namespace: {
            allow_subscribe_for_client: true,
            allow_publish_for_client: true,
          },
          namespaces: [{ name: 'locked' }],
        },
      },
      config
    );
    this.configPath = join(this.dir, 'config.json');
    this.port = 0;
    this.proc = null;
    this.log = '';
  }

  /** Starts the server (on this.port: 0 the first time, the same port on a restart). */
  async start(timeoutMs = 10000) {
    const config = merge(this.config, { http_server: { port: this.port } });
    writeFileSync(this.configPath, JSON.stringify(config, null, 2));
    const proc = spawn(HERALD_BIN, ['-c', this.configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    this.proc = proc;
    // Never leave a server behind, even if the test process ends without running `after`.
    const reap = () => proc.kill('SIGKILL');
    process.once('exit', reap);
    proc.once('exit', () => process.removeListener('exit', reap));
    const started = new Promise((resolve, reject) => {
      let seen = '';
      const onData = (chunk) => {
        const text = chunk.toString();
        this.log += text;
        if (process.env.HERALD_LOG_TESTS) process.stderr.write(text);
        seen += text.replace(ANSI, '');
        const m = LISTENING.exec(seen);
        if (m) {
          seen = '';
          resolve(Number(m[1]));
        }
      };
      proc.stdout.on('data', onData);
      proc.stderr.on('data', onData);
      proc.once('error', reject);
      proc.once('exit', (code, signal) =>
        reject(new Error(`herald exited (code ${code}, signal ${signal}) before listening:\n${this.log}`))
      );
    });
    this.port = await withTimeout(started, timeoutMs, 'herald to listen');
    return this;
  }

  /** Stops the process: SIGTERM (graceful, clients get 3001) or SIGKILL (a crash). */
  async stop(signal = 'SIGTERM') {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    try {
      await withTimeout(exited, 8000, `herald to exit on ${signal}`);
    } catch (e) {
      proc.kill('SIGKILL');
      await exited;
      throw e;
    }
  }

  /** Stops the server and removes its temporary directory. */
  async close() {
    try {
      await this.stop('SIGKILL');
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/connection/websocket`;
  }

  get apiUrl() {
    return `http://127.0.0.1:${this.port}/api`;
  }

  /** A connection token for `user`, signed here with the configured secret. */
  token(user, claims = {}) {
    return signHS256({ sub: user, exp: Math.floor(Date.now() / 1000) + 3600, ...claims }, this.secret);
  }

  /** A connection token made by `herald gentoken -u USER` (the CLI path a user would take). */
  gentoken(user) {
    return execFileSync(HERALD_BIN, ['-c', this.configPath, 'gentoken', '-u', user], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    }).trim();
  }

  /** Calls a server API method; returns the parsed JSON body (throws on a non-200 status). */
  async api(method, body) {
    const res = await fetch(`${this.apiUrl}/${method}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-API-Key': this.apiKey },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    if (res.status !== 200) {
      throw new Error(`POST /api/${method} answered HTTP ${res.status}: ${text}`);
    }
    return JSON.parse(text);
  }

  /** A centrifuge client for `user` (not yet connected), with short test-friendly delays. */
  client(user = 'alice', options = {}) {
    return new Centrifuge(this.wsUrl, {
      websocket: WebSocket,
      token: this.token(user),
      minReconnectDelay: 100,
      maxReconnectDelay: 1000,
      timeout: 3000,
      ...options,
    });
  }
}

/** Starts a herald with `config` merged over the test defaults. */
export async function startHerald(config = {}) {
  const herald = new Herald(config);
  try {
    return await herald.start();
  } catch (e) {
    await herald.close();
    throw e;
  }
}
