// Test helper for the Redis engine: a throwaway `redis-server` on a free port (never the
// machine's own Redis) and several herald nodes on it, sharing one token secret and API key,
// as a deployment behind a load balancer would.

import { randomBytes } from 'node:crypto';

import { RedisServer } from '../support/redis-server.mjs';
import { Herald, sleep, withTimeout } from './herald.mjs';

export { RedisServer };

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
