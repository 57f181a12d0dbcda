// Herald's demo chat: rooms with history, presence and join/leave notices, and private
// messages that reach offline users — on the real Centrifugo JavaScript SDK (npm `centrifuge`).
//
// Where the data lives: everything shown comes from Herald. Each room is a channel
// `rooms:<name>`; each user has an inbox `inbox:#<user>` that only they may subscribe to and
// anyone may publish into. A private message is published into the recipient's inbox and into
// the sender's own (so the sender's other tabs and devices see it too). Both namespaces keep a
// durable history with forced recovery: a subscription starts from offset 0 of the stream
// (everything it holds) and, after a network drop or a server restart, the SDK resumes from the
// last offset it delivered. Messages are keyed by offset, so nothing is shown twice.
// The browser keeps only hints: the name last used, the rooms joined, what was read.
//
// Who wrote a message is never taken from its data: anyone may publish anything into an
// inbox. The author is the publisher identity the server attaches (`info.user`, from the
// publisher's token), and a private message belongs to the conversation with its publisher;
// only our own copies (published by us) are filed under the `to` they name.

import './../common/base.css';
import './chat.css';
import { Centrifuge } from 'centrifuge';
import { h, icon, ICONS, avatar, timeOf, dayOf } from '../common/dom.js';

const ROOMS_NS = 'rooms';
const INBOX_NS = 'inbox';
const DEFAULT_ROOMS = ['general', 'random', 'help'];
const NAME_RE = /^[\p{L}\p{N}_.-]{1,32}$/u;
/** Longest message the composer sends, in characters; the counter shows from COUNTER_FROM. */
const MAX_CHARS = 4000;
const COUNTER_FROM = 3500;
/** Messages longer than this (characters or lines) are shown collapsed, with "Show more". */
const COLLAPSE_CHARS = 700;
const COLLAPSE_LINES = 12;

const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/connection/websocket`;
/**
 * The transports the SDK tries in order: the WebSocket, and where a proxy or firewall lets no
 * WebSocket through, HTTP-streaming and then SSE (`--demo` serves both, and `/emulation` for
 * their commands).
 */
const TRANSPORTS = [
  { transport: 'websocket', endpoint: wsUrl },
  { transport: 'http_stream', endpoint: `${location.origin}/connection/http_stream` },
  { transport: 'sse', endpoint: `${location.origin}/connection/sse` },
];
const root = document.getElementById('app');

// ---------------------------------------------------------------------------------------------
// State

/** One conversation: a room or a private dialog. */
function newConv(kind, id) {
  return {
    kind, // 'room' | 'dm'
    id, // room name or peer user
    items: [], // {type:'msg', offset, author, text, ts, mine, server, cid} | {type:'notice', ts, text}
    offsets: new Set(),
    cids: new Set(), // `${author}/${cid}` of the messages shown (a retried send shows once)
    pending: [], // our messages not yet back from the server: {cid, text, ts, state: 'sending'|'failed', error, send}
    dividerAfter: null, // offset after which the "New messages" divider goes (while open)
    unread: 0,
    lastRead: Number(localStorage.getItem(readKey(kind, id)) || 0),
    // A room first seen on this device: its history counts as read (private messages do not).
    fresh: kind === 'room' && localStorage.getItem(readKey(kind, id)) === null,
    presence: new Map(), // client id -> user (rooms)
    presenceState: 'loading', // 'loading' | 'ok' | 'unavailable'
    loaded: false,
  };
}

const state = {
  me: null,
  client: null,
  status: 'offline', // 'connecting' | 'connected' | 'reconnecting' | 'offline'
  everConnected: false,
  rooms: new Map(), // name -> conv
  dms: new Map(), // peer -> conv
  subs: new Map(), // channel -> Subscription
  current: null, // conv
  view: 'list', // phones: 'list' | 'conv'
  showMembers: false,
};

function readKey(kind, id) {
  return `herald.read.${state?.me ?? ''}.${kind}.${id}`;
}

// ---------------------------------------------------------------------------------------------
// Sign-in

/** An error whose message can be shown to a person as it is. */
class HumanError extends Error {}

async function fetchToken(name) {
  let res;
  try {
    res = await fetch('/demo/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name }),
    });
  } catch {
    // fetch() rejects only when no answer came at all ("Failed to fetch").
    throw new HumanError(
      navigator.onLine
        ? 'Cannot reach the chat server. Check that Herald is running, then try again.'
        : 'You are offline. Connect to the network, then try again.'
    );
  }
  const body = await res.json().catch(() => ({}));
  if (res.status === 400) throw new HumanError(body?.error?.message?.replace(/^bad request: /, 'Your ') || 'This name cannot be used.');
  if (res.status === 404) throw new HumanError('This server does not run the demo chat (start Herald with --demo).');
  if (!res.ok) throw new HumanError(`The server could not sign you in (HTTP ${res.status}). Try again in a moment.`);
  return body.token;
}

function renderSignIn(error = '') {
  updateTitle();
  const input = h('input', {
    class: 'input',
    id: 'name',
    name: 'name',
    autocomplete: 'username',
    placeholder: 'e.g. alice',
    maxlength: '32',
    value: localStorage.getItem('herald.name') || '',
    autofocus: true,
  });
  const err = h('div', { class: 'error', role: 'alert' }, error);
  const button = h('button', { class: 'btn', type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    {
      onsubmit: async (e) => {
        e.preventDefault();
        const name = input.value.trim();
        if (!NAME_RE.test(name)) {
          err.textContent = 'Use 1–32 letters, digits, "_", "-" or ".".';
          return;
        }
        button.disabled = true;
        button.textContent = 'Signing in…';
        try {
          await fetchToken(name); // checks the name before the app starts
          startChat(name);
        } catch (e2) {
          err.textContent = e2.message;
          button.disabled = false;
          button.textContent = 'Sign in';
        }
      },
    },
    h('label', { for: 'name' }, 'Your name'),
    input,
    button,
    err
  );
  root.replaceChildren(
    h(
      'div',
      { class: 'login-screen' },
      h(
        'div',
        { class: 'login-card' },
        h('div', { class: 'brand' }, h('span', { class: 'brand-mark' }, icon(ICONS.message, 18)), 'Herald Chat'),
        h('h1', {}, 'Welcome'),
        h('p', { class: 'lead' }, 'Pick a name to join the rooms and message anyone — even people who are offline.'),
        form,
        h('div', { class: 'hint' }, 'Demo mode: no password, any name works.')
      )
    )
  );
  input.focus();
}

// ---------------------------------------------------------------------------------------------
// Connection

function startChat(name) {
  state.me = name;
  localStorage.setItem('herald.name', name);
  sessionStorage.setItem('herald.session', name);
  state.rooms.clear();
  state.dms.clear();
  state.subs.clear();

  const client = new Centrifuge(TRANSPORTS, {
    emulationEndpoint: `${location.origin}/emulation`,
    getToken: () => fetchToken(name),
    minReconnectDelay: 300,
    maxReconnectDelay: 5000,
  });
  state.client = client;
  client.on('connecting', (ctx) => {
    // Code 0 is our own connect(); anything else is a reason worth seeing in the console.
    if (ctx.code !== 0) console.warn(`reconnecting: ${ctx.code} ${ctx.reason}`);
    setStatus(state.everConnected ? 'reconnecting' : 'connecting');
  });
  client.on('connected', () => {
    state.everConnected = true;
    setStatus('connected');
  });
  client.on('disconnected', (ctx) => {
    setStatus('offline');
    // A server restarted without a configured secret signs with a new one: get a fresh token.
    if (state.client === client && ctx.code === 3500) {
      setTimeout(() => {
        if (state.client !== client) return;
        client.setToken('');
        client.connect();
      }, 1000);
    }
  });

  subscribeInbox();
  const saved = JSON.parse(localStorage.getItem(`herald.rooms.${name}`) || 'null');
  const rooms = Array.isArray(saved) && saved.length ? saved : DEFAULT_ROOMS;
  for (const room of rooms) joinRoom(room, false);
  state.current = state.rooms.get(rooms[0]);
  state.view = window.matchMedia('(max-width: 760px)').matches ? 'list' : 'conv';
  client.connect();
  renderApp();
}

function signOut() {
  state.client?.disconnect();
  state.client = null;
  state.me = null;
  state.everConnected = false;
  sessionStorage.removeItem('herald.session');
  renderSignIn();
}

function setStatus(status) {
  state.status = status;
  document.body.dataset.status = status;
  renderStatus();
}

window.addEventListener('offline', () => state.client && setStatus('offline'));
window.addEventListener('online', () => {
  if (!state.client) return;
  if (state.client.state === 'connected') setStatus('connected');
  else if (state.client.state === 'disconnected') state.client.connect();
});

/** Subscribes to `channel` from the start of its stream; the SDK then resumes by offset. */
function subscribe(channel, conv, onPublication) {
  const sub = state.client.newSubscription(channel, {
    since: { offset: 0, epoch: '' },
    joinLeave: conv.kind === 'room',
  });
  sub.on('publication', (ctx) => onPublication(ctx));
  sub.on('subscribed', async (ctx) => {
    conv.loaded = true;
    // Recovered publications are emitted right after this event.
    if (conv.fresh) setTimeout(() => (conv.fresh = false), 0);
    if (ctx.wasRecovering && !ctx.recovered) {
      // More was missed than a recovery returns (or the stream is new): read the newest page.
      try {
        const page = await sub.history({ limit: 200, reverse: true });
        for (const p of page.publications.reverse()) onPublication({ ...p, channel });
      } catch (e) {
        toast(`Could not load the history of ${channel}: ${e.message || e.code}`, true);
      }
    }
    if (conv.kind === 'room') loadPresence(sub, conv);
    if (conv === state.current) renderConv();
    renderSidebar();
  });
  sub.on('join', (ctx) => onJoin(conv, ctx.info));
  sub.on('leave', (ctx) => onLeave(conv, ctx.info));
  sub.on('error', (ctx) => console.warn(`subscription error in ${channel}: ${JSON.stringify(ctx.error)}`));
  // Code 0 is our own unsubscribe(); any other leaves the conversation silent until reload.
  sub.on('unsubscribed', (ctx) => {
    if (ctx.code !== 0) console.warn(`unsubscribed from ${channel}: ${ctx.code} ${ctx.reason}`);
  });
  sub.subscribe();
  state.subs.set(channel, sub);
  return sub;
}

// ---------------------------------------------------------------------------------------------
// Rooms

function roomChannel(room) {
  return `${ROOMS_NS}:${room}`;
}

function joinRoom(room, select = true) {
  let conv = state.rooms.get(room);
  if (!conv) {
    conv = newConv('room', room);
    state.rooms.set(room, conv);
    subscribe(roomChannel(room), conv, (ctx) => {
      const data = ctx.data || {};
      const author = ctx.info?.user || data.from || 'Herald';
      addMessage(conv, {
        offset: ctx.offset,
        author,
        text: String(data.text ?? JSON.stringify(data)),
        ts: Number(data.ts) || Date.now(),
        mine: ctx.info?.user === state.me,
        server: !ctx.info,
        cid: typeof data.cid === 'string' ? data.cid : undefined,
      });
    });
    localStorage.setItem(`herald.rooms.${state.me}`, JSON.stringify([...state.rooms.keys()]));
  }
  if (select) selectConv(conv);
  return conv;
}

async function loadPresence(sub, conv) {
  try {
    const res = await sub.presence();
    conv.presence = new Map();
    for (const [client, info] of Object.entries(res.clients || {})) conv.presence.set(client, info.user);
    conv.presenceState = 'ok';
  } catch (e) {
    conv.presenceState = 'unavailable';
    conv.presence = new Map();
  }
  if (conv === state.current) renderMembers();
  renderSidebar();
}

/** The users seen online in any joined room. */
function onlineEverywhere() {
  const online = new Set();
  for (const conv of state.rooms.values()) for (const u of conv.presence.values()) online.add(u);
  return online;
}

/** The users online in a room (one entry per user, whatever their number of connections). */
function onlineUsers(conv) {
  return new Set(conv.presence.values());
}

function onJoin(conv, info) {
  if (!info?.user || !info.client) return;
  const wasOnline = onlineUsers(conv).has(info.user);
  conv.presence.set(info.client, info.user);
  if (!wasOnline && info.user !== state.me) addNotice(conv, info.user, 'joined');
  if (conv === state.current) renderMembers();
  renderSidebar();
}

function onLeave(conv, info) {
  if (!info?.user || !info.client) return;
  const had = conv.presence.delete(info.client);
  if (had && !onlineUsers(conv).has(info.user) && info.user !== state.me) addNotice(conv, info.user, 'left');
  if (conv === state.current) renderMembers();
  renderSidebar();
}

// ---------------------------------------------------------------------------------------------
// Private messages

function inboxChannel(user) {
  return `${INBOX_NS}:#${user}`;
}

function subscribeInbox() {
  const inbox = { kind: 'inbox', presence: new Map() };
  subscribe(inboxChannel(state.me), inbox, (ctx) => {
    const d = ctx.data || {};
    // The author is who published, as the server says (`info.user` comes from the publisher's
    // token); `d.from` is whatever the publisher wrote and is never trusted. Without a
    // publisher (a server API publication) there is nobody to file the message under.
    const publisher = ctx.info?.user;
    // The server's own notice (no publisher: no client can send one) that a private message
    // found its recipient offline; Herald's offline_publication webhook event, which a real
    // backend would turn into a push notification to the recipient's phone.
    if (!publisher && d.notice === 'offline') {
      if (typeof d.user === 'string' && NAME_RE.test(d.user)) addOfflineNotice(dmConv(d.user), ctx.offset, d);
      return;
    }
    if (typeof d.text !== 'string' || !publisher) return;
    const mine = publisher === state.me;
    // Our own copy names its recipient; anything else belongs to the conversation with its
    // publisher, whatever it claims.
    const peer = mine ? d.to : publisher;
    if (typeof peer !== 'string' || !NAME_RE.test(peer)) return;
    const conv = dmConv(peer);
    addMessage(conv, {
      offset: ctx.offset,
      author: publisher,
      text: d.text,
      ts: Number(d.ts) || Date.now(),
      mine,
      cid: typeof d.cid === 'string' ? d.cid : undefined,
      claimed: typeof d.from === 'string' && d.from !== publisher ? d.from.slice(0, 40) : undefined,
    });
  });
}

function dmConv(peer) {
  let conv = state.dms.get(peer);
  if (!conv) {
    conv = newConv('dm', peer);
    conv.loaded = true;
    state.dms.set(peer, conv);
  }
  return conv;
}

async function sendDirect(peer, msg) {
  // Into the recipient's inbox (delivered now or when they next sign in), then into ours.
  await state.client.publish(inboxChannel(peer), msg);
  if (peer !== state.me) await state.client.publish(inboxChannel(state.me), msg);
}

// ---------------------------------------------------------------------------------------------
// Messages

function addMessage(conv, msg) {
  if (conv.offsets.has(msg.offset)) return; // recovered twice, or history and live overlap
  conv.offsets.add(msg.offset);
  if (msg.cid) {
    // Our own message is back from the server: it is no longer pending.
    if (msg.mine) conv.pending = conv.pending.filter((p) => p.cid !== msg.cid);
    // A send retried after a lost answer reached the server twice: show it once.
    const key = `${msg.author}/${msg.cid}`;
    if (conv.cids.has(key)) {
      if (conv === state.current) renderConv();
      return;
    }
    conv.cids.add(key);
  }
  msg.type = 'msg';
  const items = conv.items;
  // Keep offset order: live messages append; a history page may arrive after live ones.
  let at = items.findIndex((i) => i.type === 'msg' && i.offset > msg.offset);
  if (at < 0) at = items.length;
  items.splice(at, 0, msg);
  const notice = msg.mine && msg.cid && conv.noticeFor?.get(msg.cid);
  if (notice) {
    conv.noticeFor.delete(msg.cid);
    items.splice(at + 1, 0, notice);
  }
  if (conv.fresh) conv.lastRead = Math.max(conv.lastRead, msg.offset);
  if (!msg.mine && msg.offset > conv.lastRead) {
    if (conv === state.current && document.visibilityState !== 'hidden' && isConvVisible()) markRead(conv, msg.offset);
    else conv.unread++;
  }
  if (conv === state.current) renderConv();
  renderSidebar();
}

/**
 * "bob is offline — notified", once per notice (the inbox is recovered from its start), shown
 * under the message it is about (`cid`). The notice is usually back before our own copy of
 * that message, so it waits for it in `conv.noticeFor`.
 */
function addOfflineNotice(conv, offset, d) {
  if (conv.offsets.has(offset)) return;
  conv.offsets.add(offset);
  const notice = { type: 'notice', ts: Number(d.ts) || Date.now(), user: d.user, what: 'is offline — notified' };
  const at = typeof d.cid === 'string' ? conv.items.findIndex((i) => i.type === 'msg' && i.mine && i.cid === d.cid) : -1;
  if (at >= 0) conv.items.splice(at + 1, 0, notice);
  else if (typeof d.cid === 'string') (conv.noticeFor ??= new Map()).set(d.cid, notice);
  else conv.items.push(notice);
  if (conv === state.current) renderConv();
}

function addNotice(conv, user, what) {
  conv.items.push({ type: 'notice', ts: Date.now(), user, what });
  if (conv === state.current) renderConv();
}

function markRead(conv, offset) {
  conv.lastRead = Math.max(conv.lastRead, offset);
  conv.unread = 0;
  localStorage.setItem(readKey(conv.kind, conv.id), String(conv.lastRead));
}

function isConvVisible() {
  return !window.matchMedia('(max-width: 760px)').matches || state.view === 'conv';
}

/** What went wrong with a send, in words for the person who sent it. */
function sendErrorText(e) {
  if (!navigator.onLine) return 'you are offline';
  switch (e?.code) {
    case 1: // timeout
    case 2: // transport closed
    case 3: // client disconnected
    case 11: // connection closed
      return state.status === 'connected' ? 'the server did not answer in time' : 'no connection to the server';
    case 7:
      return 'you are no longer in this room';
    case 103:
      return 'you may not post here';
    case 106:
      return 'too many messages: wait a moment';
    default:
      return e?.message && !/^[a-z ]+$/.test(e.message) ? e.message : `the server refused it (${e?.message || `error ${e?.code}`})`;
  }
}

/** A random id for one message, carried in its data, to recognize it when it comes back. */
function newCid() {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return btoa(String.fromCharCode(...bytes)).replace(/[+/=]/g, '');
}

/** Sends `text` into the open conversation: shown at once as "Sending…", then as sent when the
 * server delivers it back, or as failed with a Retry button. */
function send(text) {
  const conv = state.current;
  if (!conv || !text.trim()) return;
  const cid = newCid();
  const ts = Date.now();
  const data =
    conv.kind === 'room'
      ? { text, ts, cid }
      : { type: 'dm', from: state.me, to: conv.id, text, ts, cid };
  const channel = conv.kind === 'room' ? roomChannel(conv.id) : null;
  const pending = { cid, text, ts, state: 'sending', error: '' };
  pending.send = async () => {
    pending.state = 'sending';
    pending.error = '';
    if (conv === state.current) renderConv();
    try {
      if (channel) {
        const sub = state.subs.get(channel);
        if (!sub) throw { code: 7 }; // the room was left meanwhile
        await sub.publish(data);
      } else await sendDirect(conv.id, data);
    } catch (e) {
      if (!conv.pending.includes(pending)) return; // it came back meanwhile
      pending.state = 'failed';
      pending.error = sendErrorText(e);
      if (conv === state.current) renderConv();
    }
  };
  conv.pending.push(pending);
  if (conv === state.current) renderConv(true);
  pending.send();
}

// ---------------------------------------------------------------------------------------------
// Rendering

function selectConv(conv) {
  if (state.current && state.current !== conv) state.current.dividerAfter = null;
  state.current = conv;
  state.view = 'conv';
  state.showMembers = false;
  const last = [...conv.items].reverse().find((i) => i.type === 'msg');
  // Unread messages get a "New messages" divider above them while the conversation is open.
  if (conv.unread && last && last.offset > conv.lastRead) conv.dividerAfter = conv.lastRead;
  markRead(conv, last ? last.offset : conv.lastRead);
  renderApp();
  root.querySelector('.composer textarea')?.focus({ preventScroll: true });
}

let els = {};

function renderApp() {
  const app = h('div', { class: 'app', 'data-view': state.view });
  els = {
    app,
    sidebar: h('aside', { class: 'sidebar' }),
    conv: h('main', { class: 'conv' }),
    members: h('aside', { class: 'members', 'aria-label': 'People online' }),
  };
  app.append(els.sidebar, els.conv, els.members);
  root.replaceChildren(app, h('div', { class: 'toast-area' }));
  renderSidebar();
  renderConv(true);
  renderMembers();
  renderStatus();
}

function statusLabel(status) {
  return { connected: 'Connected', connecting: 'Connecting…', reconnecting: 'Reconnecting…', offline: 'Offline' }[status];
}

function statusPill() {
  return h('span', { class: `pill ${state.status}`, 'data-testid': 'status' }, h('span', { class: 'dot' }), statusLabel(state.status));
}

function renderStatus() {
  if (!els.app) return;
  const pill = els.sidebar.querySelector('[data-testid="status"]');
  pill?.replaceWith(statusPill());
  const banner = els.conv.querySelector('.banner');
  const want = state.status !== 'connected';
  if (want) {
    const text =
      state.status === 'offline'
        ? state.client?.state === 'disconnected'
          ? 'Disconnected. Messages will catch up when you reconnect.'
          : 'You are offline. Messages will catch up when the connection is back.'
        : state.status === 'connecting'
          ? 'Connecting…'
          : 'Connection lost — reconnecting…';
    const el = h(
      'div',
      { class: `banner ${state.status}`, role: 'status' },
      h('span', { class: 'dot' }),
      text,
      state.status === 'offline' && state.client?.state === 'disconnected'
        ? h('button', { class: 'btn small secondary', onclick: () => state.client?.connect() }, 'Reconnect')
        : null
    );
    if (banner) banner.replaceWith(el);
    else els.conv.querySelector('.conv-head')?.after(el);
  } else banner?.remove();
}

/** The tab's title: who is signed in, and how many messages they have not read. */
function updateTitle() {
  if (!state.me) {
    document.title = 'Herald Chat — sign in';
    return;
  }
  let unread = 0;
  for (const conv of [...state.rooms.values(), ...state.dms.values()]) unread += conv.unread;
  document.title = `${unread ? `(${unread}) ` : ''}${state.me} — Herald Chat`;
}

function renderSidebar() {
  updateTitle();
  if (!els.sidebar || !state.me) return;
  const roomForm = h('input', { placeholder: 'Join or create a room', 'aria-label': 'Room name', maxlength: '40' });
  const dmForm = h('input', { placeholder: 'Message someone…', 'aria-label': 'User name', maxlength: '32' });
  const online = onlineEverywhere();

  els.sidebar.replaceChildren(
    h(
      'div',
      { class: 'sidebar-head' },
      h('div', { class: 'brand' }, h('span', { class: 'brand-mark' }, icon(ICONS.message, 17)), 'Herald Chat'),
      h(
        'div',
        { class: 'me' },
        avatar(state.me, 36),
        h('div', { class: 'who' }, h('div', { class: 'name', 'data-testid': 'me' }, state.me), statusPill()),
        h('button', { class: 'icon-btn', title: 'Sign out', 'aria-label': 'Sign out', onclick: signOut }, icon(ICONS.logout))
      )
    ),
    h(
      'nav',
      { class: 'sidebar-body' },
      h('div', { class: 'section-title' }, 'Rooms'),
      [...state.rooms.values()].map((conv) => navItem(conv, h('span', { class: 'hash' }, icon(ICONS.hash, 16)), conv.id)),
      h(
        'form',
        {
          class: 'mini-form',
          onsubmit: (e) => {
            e.preventDefault();
            const name = roomForm.value.trim().toLowerCase().replace(/\s+/g, '-');
            if (!/^[\p{L}\p{N}_.-]{1,40}$/u.test(name)) return toast('Room names: letters, digits, "-", "_", "."', true);
            joinRoom(name);
          },
        },
        roomForm,
        h('button', { type: 'submit', title: 'Join room', 'aria-label': 'Join room' }, icon(ICONS.plus, 16))
      ),
      h('div', { class: 'section-title' }, 'Direct messages'),
      [...state.dms.values()].map((conv) =>
        navItem(conv, h('span', { class: `presence-dot${online.has(conv.id) ? ' on' : ''}` }), conv.id)
      ),
      state.dms.size === 0 ? h('div', { class: 'section-title', style: 'text-transform:none;letter-spacing:0;font-weight:500' }, 'No conversations yet') : null,
      h(
        'form',
        {
          class: 'mini-form',
          onsubmit: (e) => {
            e.preventDefault();
            const peer = dmForm.value.trim();
            if (!NAME_RE.test(peer)) return toast('Enter a user name', true);
            selectConv(dmConv(peer));
          },
        },
        dmForm,
        h('button', { type: 'submit', title: 'Open conversation', 'aria-label': 'Open conversation' }, icon(ICONS.send, 15))
      )
    ),
    h('div', { class: 'sidebar-foot' }, 'Served live by Herald')
  );
  const subtitle = els.conv?.querySelector('.conv-head .sub');
  if (subtitle && state.current) subtitle.textContent = convSubtitle(state.current);
}

function navItem(conv, lead, label) {
  const active = conv === state.current && (state.view === 'conv' || !window.matchMedia('(max-width: 760px)').matches);
  return h(
    'button',
    {
      class: `nav-item${active ? ' active' : ''}${conv.unread ? ' unread' : ''}`,
      dataset: { kind: conv.kind, id: conv.id },
      onclick: () => selectConv(conv),
    },
    lead,
    h('span', { class: 'text' }, h('span', { class: 'label' }, label), h('span', { class: 'preview' }, preview(conv))),
    conv.unread ? h('span', { class: 'badge', 'data-testid': 'unread' }, String(conv.unread)) : null
  );
}

/** The last message of a conversation, for the phone list. */
function preview(conv) {
  const last = [...conv.items].reverse().find((i) => i.type === 'msg');
  if (!last) return conv.kind === 'room' ? 'No messages yet' : '';
  return `${last.mine ? 'You' : last.author}: ${last.text}`;
}

function renderConv(focus = false) {
  const conv = state.current;
  if (!els.conv || !conv) return;
  const list = els.conv.querySelector('.messages');
  const atBottom = !list || list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const previousScroll = list?.scrollTop ?? 0;
  if (!els.conv.querySelector('.conv-head') || els.conv.dataset.conv !== `${conv.kind}:${conv.id}`) {
    buildConvFrame(conv);
  }
  const messages = els.conv.querySelector('.messages');
  messages.replaceChildren(...renderItems(conv));
  const subtitle = els.conv.querySelector('.conv-head .sub');
  subtitle.textContent = convSubtitle(conv);
  const divider = focus ? messages.querySelector('.new-divider') : null;
  if (divider) messages.scrollTop = Math.max(0, divider.offsetTop - messages.offsetTop - 24);
  else if (atBottom || focus) messages.scrollTop = messages.scrollHeight;
  else messages.scrollTop = previousScroll;
}

function convSubtitle(conv) {
  if (conv.kind === 'dm') {
    if (conv.id === state.me) return 'Notes to yourself';
    return onlineEverywhere().has(conv.id)
      ? 'Online · private conversation'
      : 'Offline · gets your messages when back';
  }
  const n = onlineUsers(conv).size;
  if (conv.presenceState === 'ok') return `${n} online`;
  return 'Public room';
}

function buildConvFrame(conv) {
  els.conv.dataset.conv = `${conv.kind}:${conv.id}`;
  const textarea = h('textarea', {
    rows: 1,
    placeholder: conv.kind === 'room' ? `Message #${conv.id}` : `Message ${conv.id}`,
    'aria-label': 'Message',
  });
  const sendButton = h('button', { class: 'send', type: 'submit', title: 'Send', 'aria-label': 'Send' }, icon(ICONS.send, 18));
  const form = h('form', {}, textarea, sendButton);
  // Near the limit a counter appears; over it the message is not cut but refused, and the
  // counter says by how much.
  const counter = h('span', { class: 'counter', 'data-testid': 'counter', 'aria-live': 'polite' });
  const length = () => [...textarea.value].length;
  const updateCounter = () => {
    const n = length();
    const over = n > MAX_CHARS;
    counter.hidden = n < COUNTER_FROM;
    counter.classList.toggle('over', over);
    counter.textContent = over
      ? `${(n - MAX_CHARS).toLocaleString('en')} characters too long (limit ${MAX_CHARS.toLocaleString('en')})`
      : `${n.toLocaleString('en')} / ${MAX_CHARS.toLocaleString('en')}`;
    sendButton.disabled = over;
  };
  const submit = () => {
    const text = textarea.value;
    if (!text.trim() || length() > MAX_CHARS) return;
    textarea.value = '';
    autosize();
    updateCounter();
    send(text);
  };
  const autosize = () => {
    textarea.style.height = 'auto';
    textarea.style.height = `${Math.min(textarea.scrollHeight, 140)}px`;
  };
  textarea.addEventListener('input', () => {
    autosize();
    updateCounter();
  });
  updateCounter();
  textarea.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    submit();
  });
  els.conv.replaceChildren(
    h(
      'header',
      { class: 'conv-head' },
      h(
        'button',
        {
          class: 'icon-btn back-btn',
          'aria-label': 'Back',
          onclick: () => {
            state.view = 'list';
            els.app.dataset.view = 'list';
            renderSidebar();
          },
        },
        icon(ICONS.back, 22)
      ),
      conv.kind === 'dm' ? avatar(conv.id, 34) : null,
      h(
        'div',
        { class: 'title' },
        h('h2', {}, conv.kind === 'room' ? h('span', { class: 'hash' }, icon(ICONS.hash, 17)) : null, conv.id),
        h('div', { class: 'sub' })
      ),
      conv.kind === 'room'
        ? h(
            'button',
            {
              class: 'icon-btn members-btn',
              'aria-label': 'People online',
              title: 'People online',
              onclick: () => {
                state.showMembers = !state.showMembers;
                els.app.classList.toggle('show-members', state.showMembers);
              },
            },
            icon(ICONS.users, 20)
          )
        : null
    ),
    h('div', { class: 'messages', role: 'log', 'aria-live': 'polite' }),
    h('div', { class: 'composer' }, form, h('div', { class: 'composer-foot' }, h('span', { class: 'hint' }, 'Enter to send · Shift+Enter for a new line'), counter))
  );
  els.app.classList.toggle('no-members', conv.kind !== 'room');
  renderStatus();
}

function renderItems(conv) {
  const out = [];
  if (!conv.items.some((i) => i.type === 'msg') && !conv.pending.length) {
    out.push(
      h(
        'div',
        { class: 'empty' },
        h('div', { class: 'big' }, icon(conv.kind === 'room' ? ICONS.hash : ICONS.message, 28)),
        h('strong', {}, conv.loaded ? (conv.kind === 'room' ? `Welcome to #${conv.id}` : `Say hi to ${conv.id}`) : 'Loading…'),
        conv.loaded
          ? h('span', {}, conv.kind === 'room' ? 'No messages yet. Start the conversation!' : 'They will get your message even if they are offline right now.')
          : null
      )
    );
  }
  let prev = null;
  let day = null;
  let divided = false;
  for (const item of conv.items) {
    if (dayOf(item.ts) !== day) {
      day = dayOf(item.ts);
      out.push(h('div', { class: 'day' }, day));
    }
    if (!divided && conv.dividerAfter !== null && item.type === 'msg' && !item.mine && item.offset > conv.dividerAfter) {
      divided = true;
      out.push(h('div', { class: 'new-divider', role: 'separator', 'data-testid': 'new-divider' }, h('span', {}, 'New messages')));
      prev = null;
    }
    if (item.type === 'notice') {
      out.push(h('div', { class: 'notice' }, h('b', {}, item.user), ` ${item.what} · ${timeOf(item.ts)}`));
      prev = null;
      continue;
    }
    const cont = prev && prev.author === item.author && item.ts - prev.ts < 5 * 60 * 1000 && dayOf(prev.ts) === dayOf(item.ts);
    out.push(
      h(
        'div',
        {
          class: `msg${cont ? ' cont' : ''}${item.mine ? ' mine' : ''}`,
          dataset: { offset: item.offset, author: item.author },
          'data-testid': 'message',
        },
        avatar(item.author, 36),
        h(
          'div',
          { class: 'body' },
          cont
            ? null
            : h(
                'div',
                { class: 'meta' },
                h('span', { class: 'author' }, item.author),
                item.server ? h('span', { class: 'tag' }, 'server') : null,
                item.claimed
                  ? h('span', { class: 'tag warn', title: `This message says it is from ${item.claimed}, but ${item.author} sent it.` }, `claims to be ${item.claimed}`)
                  : null,
                h('span', { class: 'time' }, timeOf(item.ts))
              ),
          messageText(item)
        )
      )
    );
    prev = item;
  }
  for (const p of conv.pending) {
    const failed = p.state === 'failed';
    out.push(
      h(
        'div',
        { class: `msg mine pending${failed ? ' failed' : ''}`, 'data-testid': 'pending-message' },
        avatar(state.me, 36),
        h(
          'div',
          { class: 'body' },
          h('div', { class: 'meta' }, h('span', { class: 'author' }, state.me), h('span', { class: 'time' }, timeOf(p.ts))),
          messageText(p),
          h(
            'div',
            { class: 'send-state', role: failed ? 'alert' : 'status' },
            failed ? `Not sent: ${p.error}.` : 'Sending…',
            failed ? h('button', { class: 'link', onclick: () => p.send() }, 'Retry') : null,
            failed
              ? h(
                  'button',
                  {
                    class: 'link muted',
                    onclick: () => {
                      conv.pending = conv.pending.filter((x) => x !== p);
                      renderConv();
                    },
                  },
                  'Discard'
                )
              : null
          )
        )
      )
    );
  }
  return out;
}

/** A message's text; a long one collapsed to a few lines with "Show more". */
function messageText(item) {
  const text = h('div', { class: 'msg-text' }, item.text);
  const long = item.text.length > COLLAPSE_CHARS || item.text.split('\n').length > COLLAPSE_LINES;
  if (!long) return text;
  text.classList.toggle('collapsed', !item.expanded);
  const toggle = h(
    'button',
    {
      class: 'link more',
      'aria-expanded': String(Boolean(item.expanded)),
      onclick: () => {
        item.expanded = !item.expanded;
        text.classList.toggle('collapsed', !item.expanded);
        toggle.textContent = item.expanded ? 'Show less' : 'Show more';
        toggle.setAttribute('aria-expanded', String(item.expanded));
      },
    },
    item.expanded ? 'Show less' : 'Show more'
  );
  return h('div', { class: 'msg-long' }, text, toggle);
}

function renderMembers() {
  if (!els.members) return;
  const conv = state.current;
  if (!conv || conv.kind !== 'room') {
    els.members.replaceChildren();
    return;
  }
  const users = [...onlineUsers(conv)].sort((a, b) => (a === state.me ? -1 : b === state.me ? 1 : a.localeCompare(b)));
  els.members.replaceChildren(
    h(
      'div',
      { class: 'members-head' },
      h('span', {}, 'Online ', h('span', { class: 'count', 'data-testid': 'online-count' }, conv.presenceState === 'ok' ? `· ${users.length}` : '')),
      h(
        'button',
        {
          class: 'icon-btn members-close',
          'aria-label': 'Close',
          onclick: () => {
            state.showMembers = false;
            els.app.classList.remove('show-members');
          },
        },
        icon(ICONS.x)
      )
    ),
    conv.presenceState === 'unavailable'
      ? h('div', { class: 'note' }, 'Presence is not available on this server yet.')
      : h(
          'div',
          { class: 'members-list', 'data-testid': 'members' },
          users.map((u) =>
            h(
              'div',
              { class: 'member', dataset: { user: u } },
              avatar(u, 30),
              h('span', { class: 'online' }),
              h('span', { class: 'mname' }, u, u === state.me ? h('span', { class: 'you' }, ' (you)') : null),
              u === state.me
                ? null
                : h(
                    'button',
                    { class: 'btn secondary small', title: `Message ${u}`, onclick: () => selectConv(dmConv(u)) },
                    'Message'
                  )
            )
          )
        )
  );
  const sub = els.conv.querySelector('.conv-head .sub');
  if (sub) sub.textContent = convSubtitle(conv);
}

function toast(text, error = false) {
  const area = root.querySelector('.toast-area');
  if (!area) return;
  const el = h('div', { class: `toast${error ? ' error' : ''}`, role: 'status' }, text);
  area.append(el);
  setTimeout(() => el.remove(), 4000);
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && state.current) {
    const last = [...state.current.items].reverse().find((i) => i.type === 'msg');
    if (last && state.current.unread) {
      markRead(state.current, last.offset);
      renderSidebar();
    }
  }
});

// ---------------------------------------------------------------------------------------------

const session = sessionStorage.getItem('herald.session');
if (session && NAME_RE.test(session)) startChat(session);
else renderSignIn();
