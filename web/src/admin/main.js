// Herald's admin UI: live numbers and graphs of this node, who is connected, which channels are
// in use, and tools to look into a channel (presence, history), publish, and disconnect a user.
// Everything goes through `{admin}/api/…` (crates/herald/src/web/admin.rs), authorized by the
// session token that `login` returns; the actions run the server API's own commands.

import '../common/base.css';
import './admin.css';
import { h, icon, ICONS, avatar, confirmDialog, timeOf } from '../common/dom.js';

const base = location.pathname.replace(/\/(index\.html)?$/, '');
const apiBase = `${base}/api`;
const root = document.getElementById('app');
const HISTORY_POINTS = 120; // seconds shown in the graphs

let token = sessionStorage.getItem('herald.admin.token') || '';
let settings = { insecure: false, version: '' };
let pollTimer = null;
let failures = 0;
const series = { connections: [], rate: [] };
let lastCounters = null;
let els = {};

// ---------------------------------------------------------------------------------------------
// API

class Unauthorized extends Error {}

async function api(path, body) {
  const res = await fetch(`${apiBase}/${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: {
      'Content-Type': 'application/json',
      ...(token ? { Authorization: `token ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json().catch(() => ({}));
  if (res.status === 401) throw new Unauthorized(json?.error?.message || 'log in');
  if (!res.ok) throw new Error(json?.error?.message || `HTTP ${res.status}`);
  return json;
}

/** Runs a server API command; throws with the API error message. */
async function command(method, params) {
  const out = await api(method, params);
  if (out.error) throw new Error(`${out.error.message} (${out.error.code})`);
  return out.result;
}

// ---------------------------------------------------------------------------------------------
// Login

function renderLogin(error = '') {
  stopPolling();
  document.title = 'Herald Admin — log in';
  const input = h('input', { class: 'input', type: 'password', id: 'password', autocomplete: 'current-password', autofocus: true });
  const err = h('div', { class: 'error', role: 'alert' }, error);
  const button = h('button', { class: 'btn', type: 'submit' }, 'Log in');
  root.replaceChildren(
    h(
      'div',
      { class: 'login-screen' },
      h(
        'div',
        { class: 'login-card' },
        h('div', { class: 'brand' }, h('span', { class: 'brand-mark' }, icon(ICONS.lock, 17)), 'Herald Admin'),
        h('h1', {}, 'Log in'),
        h('p', { class: 'lead' }, 'Enter the admin password from the server config (admin.password).'),
        h(
          'form',
          {
            onsubmit: async (e) => {
              e.preventDefault();
              button.disabled = true;
              try {
                const out = await api('login', { password: input.value });
                token = out.token;
                sessionStorage.setItem('herald.admin.token', token);
                renderDashboard();
              } catch (e2) {
                err.textContent = e2 instanceof Unauthorized ? 'Wrong password.' : e2.message;
                button.disabled = false;
                input.select();
              }
            },
          },
          h('label', { for: 'password' }, 'Password'),
          input,
          button,
          err
        )
      )
    )
  );
  input.focus();
}

async function logout() {
  // The server refuses this session from now on; the page forgets it whatever the answer
  // (an expired session, or a server that is down, needs no log-out).
  try {
    await api('logout', {});
  } catch {
    // Nothing to undo: the session is dropped below either way.
  }
  token = '';
  sessionStorage.removeItem('herald.admin.token');
  renderLogin();
}

// ---------------------------------------------------------------------------------------------
// Dashboard

function stat(key, label, note = '') {
  const value = h('div', { class: 'value', 'data-testid': `stat-${key}` }, '–');
  const noteEl = h('div', { class: 'note' }, note);
  els[`stat_${key}`] = value;
  els[`note_${key}`] = noteEl;
  return h('div', { class: 'card stat' }, h('div', { class: 'label' }, label), value, noteEl);
}

function renderDashboard() {
  document.title = 'Herald Admin';
  els = {};
  els.live = h('span', { class: 'live ok', 'data-testid': 'live', role: 'status' }, h('span', { class: 'dot' }), h('span', { class: 'live-text' }, 'Live'));
  els.node = h('span', { class: 'node' });
  els.connChart = h('canvas', { class: 'chart', 'aria-label': 'Connections over the last two minutes' });
  els.rateChart = h('canvas', { class: 'chart', 'aria-label': 'Messages per second over the last two minutes' });
  els.connNow = h('span', { class: 'now' });
  els.rateNow = h('span', { class: 'now' });
  els.nodes = h('tbody');
  els.users = h('tbody');
  els.channels = h('tbody');
  els.usersCount = h('span', { class: 'now' });
  els.channelsCount = h('span', { class: 'now' });

  root.replaceChildren(
    h(
      'header',
      { class: 'topbar' },
      h('div', { class: 'brand' }, h('span', { class: 'brand-mark' }, icon(ICONS.message, 17)), 'Herald', h('small', {}, 'Admin')),
      els.node,
      h('span', { class: 'spacer' }),
      els.live,
      settings.insecure ? null : h('button', { class: 'logout', onclick: logout, title: 'Log out', 'aria-label': 'Log out' }, icon(ICONS.logout, 15), h('span', { class: 'label' }, 'Log out'))
    ),
    h(
      'div',
      { class: 'page' },
      h(
        'section',
        { class: 'cards' },
        stat('clients', 'Connections'),
        stat('users', 'Users'),
        stat('channels', 'Channels'),
        stat('subs', 'Subscriptions'),
        stat('rate', 'Messages / s', 'queued to clients'),
        stat('rss', 'Memory', 'resident')
      ),
      h(
        'section',
        { class: 'charts' },
        h('div', { class: 'card panel' }, h('h2', {}, 'Connections', els.connNow), h('p', { class: 'desc' }, 'Open client connections, last 2 minutes'), els.connChart),
        h('div', { class: 'card panel' }, h('h2', {}, 'Messages per second', els.rateNow), h('p', { class: 'desc' }, 'Messages delivered to clients (fan-out included)'), els.rateChart)
      ),
      h(
        'section',
        { class: 'grid2' },
        h(
          'div',
          { class: 'card panel' },
          h('h2', {}, 'Users', els.usersCount),
          h('p', { class: 'desc' }, 'Connected users, their connections and channels'),
          h('div', { class: 'table-wrap' }, h('table', { 'data-testid': 'users' }, h('thead', {}, h('tr', {}, h('th', {}, 'User'), h('th', { class: 'num' }, 'Conns'), h('th', {}, ''))), els.users))
        ),
        h(
          'div',
          { class: 'card panel' },
          h('h2', {}, 'Channels', els.channelsCount),
          h('p', { class: 'desc' }, 'Channels with subscribers on this node'),
          h('div', { class: 'table-wrap' }, h('table', { 'data-testid': 'channels' }, h('thead', {}, h('tr', {}, h('th', {}, 'Channel'), h('th', { class: 'num' }, 'Subscribers'), h('th', {}, ''))), els.channels))
        )
      ),
      h('section', { class: 'tools' }, publishTool(), inspectTool()),
      h(
        'section',
        { class: 'card panel nodes' },
        h('h2', {}, 'Nodes'),
        h('p', { class: 'desc' }, 'Herald processes of this deployment'),
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            {},
            h(
              'thead',
              {},
              h('tr', {}, ['Name', 'Version', 'Uptime', 'Connections', 'Users', 'Subscriptions', 'CPU', 'Memory'].map((t, i) => h('th', { class: i > 2 ? 'num' : '' }, t)))
            ),
            els.nodes
          )
        )
      )
    )
  );
  window.addEventListener('resize', drawCharts);
  startPolling();
}

function publishTool() {
  const channel = h('input', { class: 'input', id: 'pub-channel', value: 'rooms:general', placeholder: 'channel' });
  const data = h('textarea', { class: 'input mono', id: 'pub-data', rows: 4 }, '{"text": "Hello from the admin!", "from": "admin"}');
  const note = h('div', { class: 'ok-note', 'data-testid': 'publish-result' });
  const button = h('button', { class: 'btn', type: 'submit' }, icon(ICONS.send, 16), 'Publish');
  return h(
    'form',
    {
      class: 'card panel',
      onsubmit: async (e) => {
        e.preventDefault();
        note.className = 'ok-note';
        let parsed;
        try {
          parsed = JSON.parse(data.value);
        } catch {
          note.className = 'ok-note error';
          note.textContent = 'Data must be valid JSON.';
          return;
        }
        button.disabled = true;
        try {
          const result = await command('publish', { channel: channel.value.trim(), data: parsed });
          note.textContent = result.offset ? `Published at offset ${result.offset}.` : 'Published.';
        } catch (e2) {
          note.className = 'ok-note error';
          note.textContent = e2.message;
        } finally {
          button.disabled = false;
        }
      },
    },
    h('h2', {}, 'Publish'),
    h('p', { class: 'desc' }, 'Send a message to every subscriber of a channel'),
    h('label', { class: 'small', for: 'pub-channel' }, 'Channel'),
    h('div', { class: 'form-row' }, channel),
    h('label', { class: 'small', for: 'pub-data' }, 'Data (JSON)'),
    data,
    h('div', { class: 'form-row', style: 'margin-top:10px' }, button),
    note
  );
}

function inspectTool() {
  const channel = h('input', { class: 'input', id: 'inspect-channel', value: 'rooms:general', placeholder: 'channel' });
  const out = h('div', { 'data-testid': 'inspect-result' });
  els.inspectChannel = channel;
  const show = async (what) => {
    const name = channel.value.trim();
    out.replaceChildren();
    try {
      if (what === 'presence') {
        const result = await command('presence', { channel: name });
        const clients = Object.values(result.presence || {});
        out.replaceChildren(
          h(
            'div',
            { class: 'result' },
            clients.length
              ? clients.map((c) =>
                  h(
                    'div',
                    { class: 'row', dataset: { user: c.user } },
                    avatar(c.user || '?', 22),
                    h('span', { class: 'data' }, c.user || '(anonymous)'),
                    h('span', { class: 'off', title: c.client }, `conn ${c.client.slice(0, 8)}`)
                  )
                )
              : h('div', { class: 'empty-note' }, 'Nobody is subscribed.')
          )
        );
      } else {
        const result = await command('history', { channel: name, limit: 50, reverse: true });
        const pubs = result.publications || [];
        out.replaceChildren(
          h(
            'div',
            { class: 'result' },
            h('div', { class: 'row' }, h('span', { class: 'data', style: 'font-family:var(--font);color:var(--muted)' }, `Stream at offset ${result.offset ?? 0}, epoch ${result.epoch || '–'} · newest first`)),
            pubs.length ? pubs.map(publicationRow) : h('div', { class: 'empty-note' }, 'No publications in history.')
          )
        );
      }
    } catch (e) {
      out.replaceChildren(h('div', { class: 'result error' }, e.message));
    }
  };
  els.inspect = show;
  return h(
    'form',
    { class: 'card panel', onsubmit: (e) => (e.preventDefault(), show('history')) },
    h('h2', {}, 'Inspect a channel'),
    h('p', { class: 'desc' }, 'Who is subscribed (presence) and what it holds (history)'),
    h('label', { class: 'small', for: 'inspect-channel' }, 'Channel'),
    h('div', { class: 'form-row' }, channel),
    h(
      'div',
      { class: 'form-row' },
      h('button', { class: 'btn secondary', type: 'button', onclick: () => show('presence') }, icon(ICONS.users, 16), 'Presence'),
      h('button', { class: 'btn secondary', type: 'submit' }, icon(ICONS.refresh, 16), 'History')
    ),
    out
  );
}

/**
 * One publication of a channel's history: offset, who published it (the server-attached
 * identity, or "server API"), and its message — the `text` of chat-like data, readable, with
 * the raw JSON a click away; other data as indented JSON.
 */
function publicationRow(p) {
  const data = p.data;
  const isText = data && typeof data === 'object' && typeof data.text === 'string';
  const ts = isText && Number(data.ts) ? timeOf(Number(data.ts)) : null;
  const json = h('pre', { class: 'json' }, JSON.stringify(data, null, 2));
  return h(
    'div',
    { class: 'row pub' },
    h('span', { class: 'off' }, `#${p.offset}`),
    h(
      'div',
      { class: 'pub-body' },
      h(
        'div',
        { class: 'pub-meta' },
        h('span', { class: 'who-pub' }, p.info?.user || 'server API'),
        isText && data.to ? h('span', {}, `→ ${data.to}`) : null,
        ts ? h('span', {}, ts) : null
      ),
      isText ? h('div', { class: 'pub-text' }, data.text) : json,
      isText ? h('details', {}, h('summary', {}, 'JSON'), json) : null
    )
  );
}

// ---------------------------------------------------------------------------------------------
// Polling

function startPolling() {
  stopPolling();
  const tick = async () => {
    try {
      const [stats, users, channels] = await Promise.all([api('stats'), api('users'), command('channels', {})]);
      failures = 0;
      updateStats(stats);
      updateUsers(users.users || []);
      updateChannels(channels.channels || {});
      els.live.className = 'live ok';
      els.live.lastChild.textContent = 'Live';
      els.live.title = '';
    } catch (e) {
      if (e instanceof Unauthorized) return renderLogin('Your session ended: log in again.');
      failures++;
      els.live.className = 'live bad';
      els.live.lastChild.textContent = failures > 1 ? 'Server unreachable' : 'Retrying…';
      els.live.title = failures > 1 ? 'The admin API does not answer; retrying every second.' : '';
    }
  };
  tick();
  pollTimer = setInterval(tick, 1000);
}

function stopPolling() {
  if (pollTimer) clearInterval(pollTimer);
  pollTimer = null;
}

function fmtBytes(n) {
  if (!n) return '–';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

function fmtUptime(s) {
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  return `${m}m ${s % 60}s`;
}

function push(list, value) {
  list.push(value);
  while (list.length > HISTORY_POINTS) list.shift();
}

function updateStats(stats) {
  const node = stats.nodes?.[0] || {};
  const totals = { clients: 0, users: 0, channels: 0, subs: 0, rss: 0 };
  for (const n of stats.nodes || []) {
    totals.clients += n.num_clients;
    totals.users += n.num_users;
    totals.channels += n.num_channels;
    totals.subs += n.num_subs;
    totals.rss += n.process?.rss || 0;
  }
  let rate = 0;
  if (lastCounters) {
    const dt = Math.max(0.001, (stats.time_ms - lastCounters.time_ms) / 1000);
    rate = Math.max(0, (stats.counters.messages - lastCounters.counters.messages) / dt);
  }
  lastCounters = stats;
  push(series.connections, totals.clients);
  push(series.rate, rate);
  els.stat_clients.textContent = totals.clients;
  els.stat_users.textContent = totals.users;
  els.stat_channels.textContent = totals.channels;
  els.stat_subs.textContent = totals.subs;
  els.stat_rate.textContent = rate < 10 ? rate.toFixed(1) : Math.round(rate);
  els.stat_rss.textContent = fmtBytes(totals.rss);
  els.note_clients.textContent = `${stats.counters.connections_opened} opened since start`;
  els.note_channels.textContent = `${stats.counters.publications} publications`;
  els.connNow.textContent = `${totals.clients} now`;
  els.rateNow.textContent = `${rate.toFixed(1)}/s now`;
  els.node.replaceChildren(`${node.name || ''} · v${node.version || settings.version} · up ${fmtUptime(node.uptime || 0)}`);
  els.nodes.replaceChildren(
    ...(stats.nodes || []).map((n) =>
      h(
        'tr',
        {},
        h('td', {}, h('div', {}, h('b', {}, n.name)), h('div', { class: 'mono' }, n.uid)),
        h('td', {}, n.version),
        h('td', {}, fmtUptime(n.uptime)),
        h('td', { class: 'num' }, n.num_clients),
        h('td', { class: 'num' }, n.num_users),
        h('td', { class: 'num' }, n.num_subs),
        h('td', { class: 'num' }, `${(n.process?.cpu ?? 0).toFixed(1)}%`),
        h('td', { class: 'num' }, fmtBytes(n.process?.rss))
      )
    )
  );
  drawCharts();
}

function updateUsers(users) {
  els.usersCount.textContent = String(users.length);
  if (!users.length) {
    els.users.replaceChildren(h('tr', { class: 'muted-row' }, h('td', { colspan: 3 }, 'Nobody is connected.')));
    return;
  }
  els.users.replaceChildren(
    ...users.map((u) => {
      const channels = [...new Set(u.clients.flatMap((c) => c.channels))];
      return h(
        'tr',
        { dataset: { user: u.user } },
        h('td', {}, h('div', { class: 'who' }, avatar(u.user || '?', 28), u.user || '(anonymous)'), h('div', { class: 'chans' }, channels.join(', ') || 'no channels')),
        h('td', { class: 'num' }, u.clients.length),
        h(
          'td',
          { class: 'num' },
          u.user
            ? h(
                'button',
                {
                  class: 'btn danger small',
                  onclick: (e) => {
                    const b = e.currentTarget;
                    confirmDialog({
                      title: `Disconnect ${u.user}?`,
                      text: `Every connection of ${u.user} is closed, and their apps are told not to reconnect by themselves.`,
                      confirm: 'Disconnect',
                      danger: true,
                      action: async () => {
                        await command('disconnect', { user: u.user });
                        b.disabled = true;
                      },
                    });
                  },
                },
                'Disconnect'
              )
            : null
        )
      );
    })
  );
}

function updateChannels(channels) {
  const entries = Object.entries(channels).sort((a, b) => b[1].num_clients - a[1].num_clients || a[0].localeCompare(b[0]));
  els.channelsCount.textContent = String(entries.length);
  if (!entries.length) {
    els.channels.replaceChildren(h('tr', { class: 'muted-row' }, h('td', { colspan: 3 }, 'No channel has subscribers.')));
    return;
  }
  els.channels.replaceChildren(
    ...entries.map(([name, info]) =>
      h(
        'tr',
        { dataset: { channel: name } },
        h('td', {}, h('code', {}, name)),
        h('td', { class: 'num' }, info.num_clients),
        h(
          'td',
          { class: 'num' },
          h(
            'button',
            {
              class: 'link',
              onclick: () => {
                els.inspectChannel.value = name;
                els.inspect('history');
                els.inspectChannel.scrollIntoView({ behavior: 'smooth', block: 'center' });
              },
            },
            'Inspect'
          )
        )
      )
    )
  );
}

// ---------------------------------------------------------------------------------------------
// Charts (canvas, drawn here: no chart library)

function drawCharts() {
  if (!els.connChart) return;
  drawChart(els.connChart, series.connections, '#4f46e5', (v) => String(Math.round(v)));
  drawChart(els.rateChart, series.rate, '#0ea5e9', (v) => (v < 10 ? v.toFixed(1) : String(Math.round(v))));
}

/** The top of the y axis: four gridlines at round steps (1, 2 or 5 × 10^k). */
function niceMax(v) {
  if (v <= 4) return 4;
  const raw = v / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return 4 * m * p;
  return 40 * p;
}

function drawChart(canvas, data, color, fmt) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const hgt = canvas.clientHeight;
  if (!w || !hgt) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, hgt);
  const left = 36;
  const right = 6;
  const top = 8;
  const bottom = 20;
  const pw = w - left - right;
  const ph = hgt - top - bottom;
  const max = niceMax(Math.max(0, ...data));
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'right';
  for (let i = 0; i <= 4; i++) {
    const y = top + ph - (ph * i) / 4;
    ctx.strokeStyle = i === 0 ? '#cbd5e1' : '#eef2f7';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(left, Math.round(y) + 0.5);
    ctx.lineTo(w - right, Math.round(y) + 0.5);
    ctx.stroke();
    ctx.fillStyle = '#94a3b8';
    ctx.fillText(fmt((max * i) / 4), left - 6, y);
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'alphabetic';
  ctx.fillText('2 min ago', left + 28, hgt - 4);
  ctx.fillText('now', w - right - 12, hgt - 4);
  if (data.length < 2) return;
  const step = pw / (HISTORY_POINTS - 1);
  const x0 = left + pw - step * (data.length - 1);
  const pt = (v, i) => [x0 + i * step, top + ph - (ph * v) / max];
  const grad = ctx.createLinearGradient(0, top, 0, top + ph);
  grad.addColorStop(0, `${color}44`);
  grad.addColorStop(1, `${color}05`);
  ctx.beginPath();
  data.forEach((v, i) => {
    const [x, y] = pt(v, i);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.lineTo(x0 + (data.length - 1) * step, top + ph);
  ctx.lineTo(x0, top + ph);
  ctx.closePath();
  ctx.fillStyle = grad;
  ctx.fill();
  ctx.beginPath();
  data.forEach((v, i) => {
    const [x, y] = pt(v, i);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.strokeStyle = color;
  ctx.lineWidth = 2;
  ctx.lineJoin = 'round';
  ctx.stroke();
  const [lx, ly] = pt(data[data.length - 1], data.length - 1);
  ctx.beginPath();
  ctx.arc(lx, ly, 3.5, 0, Math.PI * 2);
  ctx.fillStyle = color;
  ctx.fill();
}

// ---------------------------------------------------------------------------------------------

(async () => {
  try {
    settings = await api('settings');
  } catch {
    // An older server or a network error: assume a login is needed.
  }
  if (settings.insecure || token) renderDashboard();
  else renderLogin();
})();
