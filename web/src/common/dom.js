// Tiny DOM helpers shared by the chat app and the admin UI (no framework).

/**
 * Creates an element: h('div', {class: 'x', onclick: fn, dataset: {id: 1}}, 'text', child…).
 * Strings become text nodes (never HTML), null/false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An inline SVG icon from a path list (24×24 viewBox, stroked). */
export function icon(paths, size = 18) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', size);
  svg.setAttribute('height', size);
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  for (const d of [].concat(paths)) {
    const p = document.createElementNS(ns, 'path');
    p.setAttribute('d', d);
    svg.append(p);
  }
  return svg;
}

export const ICONS = {
  hash: ['M4 9h16', 'M4 15h16', 'M10 3 8 21', 'M16 3l-2 18'],
  send: ['M22 2 11 13', 'M22 2 15 22l-4-9-9-4 20-7z'],
  back: ['M15 18l-6-6 6-6'],
  users: ['M17 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2', 'M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8z', 'M23 21v-2a4 4 0 0 0-3-3.87', 'M16 3.13a4 4 0 0 1 0 7.75'],
  plus: ['M12 5v14', 'M5 12h14'],
  logout: ['M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4', 'M16 17l5-5-5-5', 'M21 12H9'],
  lock: ['M5 11h14v10H5z', 'M8 11V7a4 4 0 0 1 8 0v4'],
  message: ['M21 15a2 2 0 0 1-2 2H7l-4 4V5a2 2 0 0 1 2-2h14a2 2 0 0 1 2 2z'],
  x: ['M18 6 6 18', 'M6 6l12 12'],
  refresh: ['M23 4v6h-6', 'M20.49 15a9 9 0 1 1-2.12-9.36L23 10'],
};

/** A stable pleasant colour for a name (avatars). */
export function colorFor(name) {
  let hash = 0;
  for (const ch of String(name)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  const hues = [226, 262, 290, 330, 12, 28, 160, 190, 200, 145];
  return `hsl(${hues[hash % hues.length]} 62% 52%)`;
}

/** A round avatar with the name's initial. */
export function avatar(name, size = 36) {
  const el = h('span', { class: 'avatar', 'aria-hidden': 'true' }, (String(name)[0] || '?').toUpperCase());
  el.style.background = colorFor(name);
  el.style.width = el.style.height = `${size}px`;
  el.style.fontSize = `${Math.round(size * 0.42)}px`;
  return el;
}

/** "14:05" */
export function timeOf(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** "Today", "Yesterday" or a date. */
export function dayOf(ts) {
  const d = new Date(ts);
  const today = new Date();
  const yesterday = new Date(Date.now() - 86400000);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return d.toLocaleDateString([], { weekday: 'long', month: 'long', day: 'numeric' });
}

/**
 * Asks for a confirmation in the page (not the browser's confirm(), which blocks the page and
 * cannot be styled): a dialog with `title`, `text`, Cancel and a `confirm` button. On confirm it
 * runs `action()`; if that throws, the dialog stays open and shows the error; otherwise it
 * closes. Escape or a click outside cancels.
 */
export function confirmDialog({ title, text, confirm, danger = false, action }) {
  const error = h('div', { class: 'error', role: 'alert' });
  const close = () => {
    backdrop.remove();
    document.removeEventListener('keydown', onKey);
  };
  const onKey = (e) => e.key === 'Escape' && close();
  const ok = h(
    'button',
    {
      class: `btn small${danger ? ' danger' : ''}`,
      'data-testid': 'confirm',
      onclick: async () => {
        ok.disabled = true;
        error.textContent = '';
        try {
          await action();
          close();
        } catch (e) {
          error.textContent = e.message || String(e);
          ok.disabled = false;
        }
      },
    },
    confirm
  );
  const backdrop = h(
    'div',
    { class: 'modal-backdrop', onclick: (e) => e.target === backdrop && close() },
    h(
      'div',
      { class: 'modal', role: 'dialog', 'aria-modal': 'true', 'aria-label': title },
      h('h2', {}, title),
      h('p', {}, text),
      error,
      h('div', { class: 'actions' }, h('button', { class: 'btn small secondary', onclick: close }, 'Cancel'), ok)
    )
  );
  document.addEventListener('keydown', onKey);
  document.body.append(backdrop);
  ok.focus();
}
