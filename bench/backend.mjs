#!/usr/bin/env node
// A backend that answers at once, for measuring Herald's proxies and webhooks rather than a
// backend (bench/proxy.sh). One Node process, no dependencies:
//
//   node bench/backend.mjs --port 0 [--secret WEBHOOK_SECRET]
//
// prints `listening on PORT` once it accepts connections, then serves:
//
//   POST /connect   the connect proxy: {"result": {"user": "p<n>"}}, n counting up, so that
//                   every connection is a user of its own (user_online / user_offline events);
//   POST /publish   the publish proxy: {"result": {}} (publish as sent);
//   POST /events    webhook batches: the signature checked (with --secret), every event counted
//                   by its id — first sightings per type, and repeats (at-least-once delivery
//                   sends a batch again when its answer was lost);
//   GET  /stats     {"requests": {...}, "events": {type: unique}, "duplicates": n,
//                   "bad_signatures": n, "first_event_ms": t, "last_event_ms": t}
//                   (times in ms since the epoch);
//   POST /reset     forgets the counts and the seen ids.
//
// Listens on 127.0.0.1 only. The seen ids are bounded (MAX_IDS, then the count of ids no longer
// checked for repeats is reported as `ids_forgotten`).
import { createServer } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const port = Number(option('--port', '0'));
const secret = option('--secret', '');
/** Most event ids remembered for spotting repeats (about 100 bytes each). */
const MAX_IDS = 2_000_000;
/** Largest request body read (Herald's batches are far smaller). */
const MAX_BODY = 16 << 20;

let state;
const reset = () => {
  state = {
    requests: {},
    events: {},
    seen: new Set(),
    duplicates: 0,
    badSignatures: 0,
    idsForgotten: 0,
    firstEventMs: 0,
    lastEventMs: 0,
    users: 0,
  };
};
reset();

const CONNECT_RESULT = (n) => `{"result":{"user":"p${n}"}}`;
const EMPTY_RESULT = '{"result":{}}';

function signed(req, body) {
  if (!secret) return true;
  const timestamp = req.headers['x-herald-timestamp'] ?? '';
  const signature = String(req.headers['x-herald-signature'] ?? '');
  const expected = 'sha256=' + createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex');
  return signature.length === expected.length && timingSafeEqual(Buffer.from(signature), Buffer.from(expected));
}

function countEvents(body) {
  const now = Date.now();
  const { events } = JSON.parse(body.toString('utf8'));
  for (const event of events) {
    if (state.seen.has(event.id)) {
      state.duplicates += 1;
      continue;
    }
    if (state.seen.size < MAX_IDS) state.seen.add(event.id);
    else state.idsForgotten += 1;
    state.events[event.type] = (state.events[event.type] ?? 0) + 1;
  }
  if (!state.firstEventMs) state.firstEventMs = now;
  state.lastEventMs = now;
}

function answer(res, status, text) {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const server = createServer((req, res) => {
  const path = req.url ?? '';
  state.requests[path] = (state.requests[path] ?? 0) + 1;
  if (req.method === 'GET' && path === '/stats') {
    const { seen, requests, events, duplicates, badSignatures, idsForgotten, firstEventMs, lastEventMs } = state;
    answer(res, 200, JSON.stringify({
      requests, events, unique: seen.size + idsForgotten, duplicates,
      bad_signatures: badSignatures, ids_forgotten: idsForgotten,
      first_event_ms: firstEventMs, last_event_ms: lastEventMs,
    }));
    return;
  }
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) req.destroy();
    else chunks.push(chunk);
  });
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    switch (path) {
      case '/connect':
        state.users += 1;
        answer(res, 200, CONNECT_RESULT(state.users));
        return;
      case '/publish':
        answer(res, 200, EMPTY_RESULT);
        return;
      case '/events':
        if (!signed(req, body)) {
          state.badSignatures += 1;
          answer(res, 401, '{}');
          return;
        }
        try {
          countEvents(body);
        } catch (e) {
          answer(res, 400, JSON.stringify({ error: String(e) }));
          return;
        }
        answer(res, 200, '{}');
        return;
      case '/reset':
        reset();
        answer(res, 200, '{}');
        return;
      default:
        answer(res, 404, '{}');
    }
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`);
});
