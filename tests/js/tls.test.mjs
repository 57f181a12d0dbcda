// TLS termination (http_server.tls) with the real centrifuge SDK: a client over wss:// that
// trusts a CA made for the test receives a publication sent through the server API over
// https://. Compression is on, and the `ws` package offers it, so permessage-deflate runs
// inside TLS too. The certificates are made with the `openssl` command.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import WebSocket from 'ws';

import { once, startHerald, withTimeout } from './herald.mjs';

/** Makes a CA and a `localhost`/`127.0.0.1` server certificate it signs, in `dir`. */
function makeCertificates(dir) {
  const at = (name) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const openssl = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  writeFileSync(
    at('ext.cnf'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' +
      'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n'
  );
  openssl(['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=Herald JS test CA',
    '-keyout', at('ca-key.pem'), '-out', at('ca.pem')]);
  openssl(['req', ...ec, '-subj', '/CN=localhost', '-keyout', at('key.pem'), '-out', at('csr.pem')]);
  openssl(['x509', '-req', '-in', at('csr.pem'), '-CA', at('ca.pem'), '-CAkey', at('ca-key.pem'),
    '-set_serial', '2', '-days', '2', '-extfile', at('ext.cnf'), '-out', at('cert.pem')]);
  return { ca: readFileSync(at('ca.pem')), cert: at('cert.pem'), key: at('key.pem') };
}

/** POST over HTTPS trusting `ca`; resolves with { status, body }. */
function httpsPost(url, headers, body, ca) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = request(url, { method: 'POST', headers, ca }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode, body: text }));
      });
      req.on('error', reject);
      req.end(body);
    }),
    5000,
    `POST ${url}`
  );
}

let dir;
let certs;
let herald;
const clients = [];
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'herald-js-tls-'));
  certs = makeCertificates(dir);
  herald = await startHerald({
    http_server: { tls: { enabled: true, cert_pem_file: certs.cert, key_pem_file: certs.key } },
    websocket: { compression: true, compression_min_size: 0 },
  });
});
after(async () => {
  for (const c of clients) c.disconnect();
  await herald?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('centrifuge-js over wss:// receives a publication sent over https://', async () => {
  const ca = certs.ca;
  // The `ws` package takes TLS options as its third argument: trust the test CA only.
  const sockets = [];
  class TrustingWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { ca });
      sockets.push(this);
    }
  }
  assert.match(herald.wsUrl, /^wss:\/\//);
  const client = herald.client('alice', { websocket: TrustingWebSocket });
  clients.push(client);
  client.connect();
  await client.ready(5000);
  assert.match(sockets.at(-1).extensions, /permessage-deflate/, 'compression was not negotiated');
  const sub = client.newSubscription('news');
  const subscribed = once(sub, 'subscribed');
  sub.subscribe();
  await subscribed;
  const received = once(sub, 'publication');
  const res = await httpsPost(
    `${herald.apiUrl}/publish`,
    { 'Content-Type': 'application/json', 'X-API-Key': herald.apiKey },
    JSON.stringify({ channel: 'news', data: { text: 'over TLS', pad: 'x'.repeat(20000) } }),
    ca
  );
  assert.equal(res.status, 200, res.body);
  assert.ok(JSON.parse(res.body).result, res.body);
  const ctx = await received;
  assert.deepEqual(ctx.data, { text: 'over TLS', pad: 'x'.repeat(20000) });
});

test('a client that does not trust the certificate cannot connect', async () => {
  const ws = new WebSocket(herald.wsUrl);
  const failed = await withTimeout(
    new Promise((resolve) => {
      ws.once('error', (e) => resolve(e));
      ws.once('open', () => resolve(null));
    }),
    5000,
    'the untrusted connection to end'
  );
  ws.terminate();
  assert.ok(failed, 'a client without the test CA connected');
  assert.match(String(failed.code || failed.message), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER|SELF_SIGNED|CERT/);
});
