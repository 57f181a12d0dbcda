// A real `herald` process for the Node test suites (tests/js, tests/browser): a temporary
// directory with a JSON config, the binary started on a free port (the same port again on a
// restart), stopped with a signal, and the server API called with the configured key.
//
// Node built-ins only, so that every test package can import it by relative path.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ANSI = /\x1b\[[0-9;]*m/g;
const LISTENING = /listening on https?:\/\/[^\s]*:(\d+)/;

/** Resolves after `ms` milliseconds. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the value of `promise`, or rejects after `ms` with an error naming `what`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    timer.unref?.();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * One herald process: `config` is written to `config.json` in a fresh temporary directory at
 * each start (with `http_server.port` set to the port of the first start), `data_dir` included
 * when the caller puts it under `this.dir`.
 */
export class HeraldProcess {
  constructor(bin, config, prefix = 'herald-test-') {
    if (!existsSync(bin)) {
      throw new Error(`herald binary not found at ${bin}: build it with \`cargo build -p herald\` or set HERALD_BIN`);
    }
    this.bin = bin;
    this.dir = mkdtempSync(join(tmpdir(), prefix));
    this.config = typeof config === 'function' ? config(this.dir) : config;
    this.configPath = join(this.dir, 'config.json');
    this.port = 0;
    this.proc = null;
    this.log = '';
    /** Environment variables for the server (e.g. `HERALD_*` options), set before `start`. */
    this.env = {};
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts the server (port 0 the first time, the same port on a restart). */
  async start(timeoutMs = 15000) {
    const config = { ...this.config, http_server: { ...this.config.http_server, port: this.port } };
    writeFileSync(this.configPath, JSON.stringify(config, null, 2));
    // HERALD_* variables of the test run (HERALD_BIN…) must not configure the server.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_')));
    const proc = spawn(this.bin, ['-c', this.configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...env, NO_COLOR: '1', ...this.env },
    });
    this.proc = proc;
    // Never leave a server behind, even if the test process ends without cleaning up.
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
      await withTimeout(exited, 10000, `herald to exit on ${signal}`);
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

  /** Calls a server API method with `http_api.key`; returns the parsed answer (throws unless HTTP 200). */
  async api(method, body) {
    const res = await fetch(`${this.url}/api/${method}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-API-Key': this.config.http_api.key },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    if (res.status !== 200) {
      throw new Error(`POST /api/${method} answered HTTP ${res.status}: ${text}`);
    }
    return JSON.parse(text);
  }
}
