// Test helper: starts a real `herald` binary on a free port with a temporary config, and gives
// the tests what they need to talk to it (WebSocket URL, API key, tokens).
//
// The binary is taken from $HERALD_BIN, else ../../target/debug/herald relative to this folder
// (build it first with `cargo build -p herald`).

import { execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import WebSocket from 'ws';
import { Centrifuge } from 'centrifuge';

import { HeraldProcess, sleep, withTimeout } from '../support/herald-process.mjs';

const here = dirname(fileURLToPath(import.meta.url));

/** Absolute path of the herald binary under test. */
export const HERALD_BIN = resolve(here, process.env.HERALD_BIN || '../../target/debug/herald');

export { sleep, withTimeout };

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
export class Herald extends HeraldProcess {
  constructor(config = {}) {
    const secret = randomBytes(24).toString('hex');
    const apiKey = randomBytes(24).toString('hex');
    super(
      HERALD_BIN,
      (dir) =>
        merge(
          {
            http_server: { address: '127.0.0.1', port: 0 },
            log: { level: 'info' },
            data_dir: join(dir, 'data'),
            client: { token: { hmac_secret_key: secret } },
            http_api: { key: apiKey },
            channel: {
              without_namespace: {
                allow_subscribe_for_client: true,
                allow_publish_for_client: true,
              },
              namespaces: [{ name: 'locked' }],
            },
          },
          config
        ),
      'herald-js-'
    );
    this.secret = secret;
    this.apiKey = apiKey;
  }

  /** Whether the config turns TLS on (then the URLs are wss:// and https:// to `localhost`). */
  get tls() {
    return Boolean(this.config.http_server?.tls?.enabled);
  }

  get wsUrl() {
    return this.tls
      ? `wss://localhost:${this.port}/connection/websocket`
      : `ws://127.0.0.1:${this.port}/connection/websocket`;
  }

  get apiUrl() {
    return this.tls ? `https://localhost:${this.port}/api` : `http://127.0.0.1:${this.port}/api`;
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
