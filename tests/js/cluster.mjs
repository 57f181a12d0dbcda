// Test helper for the Redis engine: a throwaway `redis-server` on a free port (never the
// machine's own Redis) and several herald nodes on it, sharing one token secret and API key,
// as a deployment behind a load balancer would.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Herald, sleep, withTimeout } from './herald.mjs';

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

/**
 * A Redis and `n` herald nodes on it (`engine.type: "redis"`), `config` merged over each
 * node's test defaults; resolves once every node's `info` lists all of them.
 */
export async function startCluster(n = 3, config = {}) {
  const redis = await RedisServer.start();
  const secret = randomBytes(24).toString('hex');
  const apiKey = randomBytes(24).toString('hex');
  const nodes = [];
  const cluster = {
    redis,
    nodes,
    async close() {
      await Promise.allSettled(nodes.map((node) => node.close()));
      await redis.close();
    },
  };
  try {
    for (let i = 0; i < n; i++) {
      const node = new Herald({
        ...config,
        engine: { type: 'redis', redis: { address: redis.url, presence_ttl: '3s' } },
        client: { ...config.client, presence_update_interval: '1s', token: { hmac_secret_key: secret } },
        http_api: { key: apiKey },
      });
      node.secret = secret;
      node.apiKey = apiKey;
      nodes.push(node);
      await node.start();
    }
    for (const node of nodes) {
      await withTimeout(
        (async () => {
          while ((await node.api('info', {})).result.nodes.length !== n) await sleep(50);
        })(),
        10000,
        `node ${node.port} to list ${n} nodes`
      );
    }
    return cluster;
  } catch (e) {
    await cluster.close();
    throw e;
  }
}
