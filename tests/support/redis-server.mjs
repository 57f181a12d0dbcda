// A throwaway `redis-server` on a free port in a temporary directory, without persistence
// (never the machine's own Redis), for the Node test suites of the Redis engine (tests/js,
// tests/browser).
//
// Node built-ins only, so that every test package can import it by relative path.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { sleep } from './herald-process.mjs';

const REDIS_SERVER = existsSync('/usr/bin/redis-server') ? '/usr/bin/redis-server' : 'redis-server';

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Whether something accepts TCP connections on `port`. */
function accepts(port) {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A running redis-server in a temporary directory, without persistence. */
export class RedisServer {
  static async start() {
    const redis = new RedisServer();
    redis.dir = mkdtempSync(join(tmpdir(), 'herald-redis-'));
    redis.port = await freePort();
    redis.proc = spawn(
      REDIS_SERVER,
      ['--port', String(redis.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redis.dir],
      { stdio: 'ignore' }
    );
    const reap = () => redis.proc.kill('SIGKILL');
    process.once('exit', reap);
    redis.proc.once('exit', () => process.removeListener('exit', reap));
    const deadline = Date.now() + 5000;
    while (!(await accepts(redis.port))) {
      if (Date.now() > deadline || redis.proc.exitCode !== null) {
        await redis.close();
        throw new Error(`redis-server did not start on port ${redis.port} (is it installed?)`);
      }
      await sleep(20);
    }
    return redis;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  async close() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = new Promise((resolve) => this.proc.once('exit', resolve));
      this.proc.kill('SIGKILL');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
