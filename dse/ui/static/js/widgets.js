// Pieces the pages share: a poller, modals, cards, notices.
import {h, replace} from './dom.js';

// poll runs fn now and then every ms after it finishes (never two at once),
// until the returned stop is called. fn gets an AbortSignal that stop
// aborts.
export function poll(fn, ms) {
  const ctl = new AbortController();
  let timer = 0;
  const tick = async () => {
    try {
      await fn(ctl.signal);
    } catch (e) {
      if (e.name !== 'AbortError') console.error(e);
    }
    if (!ctl.signal.aborted) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    ctl.abort();
    clearTimeout(timer);
  };
}

// notice is a message box in a page: kind is error, warn, info or ok.
export function notice(kind, ...text) {
  return h('div', {class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status'}, ...text);
}

// errorSlot is a place for the last error of a polled view: set(err)
// shows it, set(null) clears it.
export function errorSlot() {
  const el = h('div', {class: 'error-slot'});
  return {
    el,
    set(err, what) {
      if (!err) { el.replaceChildren(); return; }
      replace(el, notice('error', what ? `${what}: ` : '', err.message || String(err)));
    },
  };
}

export function card(title, ...body) {
  return h('section', {class: 'card'},
    title ? h('header', {class: 'card-head'}, ...(Array.isArray(title) ? title : [h('h2', null, title)])) : null,
    h('div', {class: 'card-body'}, ...body));
}

export function pageHead(title, sub, ...actions) {
  return h('div', {class: 'page-head'},
    h('div', null, h('h1', null, title), sub ? h('p', {class: 'sub'}, sub) : null),
    h('div', {class: 'page-actions'}, ...actions));
}

// stat is one figure in a summary strip.
export function stat(label, value, kind, hint) {
  return h('div', {class: ['stat', kind && `stat-${kind}`], title: hint, 'data-stat': label.toLowerCase().replace(/ /g, '-')},
    h('div', {class: 'stat-label'}, label),
    h('div', {class: 'stat-value'}, value));
}

// kv is a two-column list of facts.
export function kv(pairs) {
  return h('dl', {class: 'kv'}, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

export function button(label, onclick, {kind = 'default', title, id, disabled, testid} = {}) {
  return h('button', {type: 'button', class: `btn btn-${kind}`, onclick, title, id, disabled, 'data-testid': testid}, label);
}

// modal opens a dialog over the page with body and buttons; each button is
// [label, kind, fn]; fn returning false keeps the dialog open. It returns
// close.
export function modal(title, body, buttons, {testid, onClose} = {}) {
  const root = document.getElementById('modal-root');
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    wrap.remove();
    document.removeEventListener('keydown', onKey);
    if (onClose) onClose();
  };
  const onKey = (e) => { if (e.key === 'Escape') close(); };
  const foot = h('footer', {class: 'modal-foot'}, buttons.map(([label, kind, fn, id]) =>
    button(label, async () => { if (!fn || (await fn()) !== false) close(); }, {kind, testid: id})));
  const wrap = h('div', {class: 'modal-wrap', 'data-testid': testid},
    h('div', {class: 'modal', role: 'dialog', 'aria-modal': 'true'},
      h('header', {class: 'modal-head'}, h('h2', null, title)),
      h('div', {class: 'modal-body'}, body),
      foot));
  root.appendChild(wrap);
  document.addEventListener('keydown', onKey);
  const first = wrap.querySelector('input, textarea, select');
  if (first) first.focus();
  return close;
}

// confirmModal asks a yes/no question; it resolves true on confirm.
export function confirmModal(title, text, confirmLabel, {danger = false, testid = 'confirm'} = {}) {
  return new Promise((resolve) => {
    let done = false;
    const finish = (v) => { if (!done) { done = true; resolve(v); } };
    modal(title, h('p', null, text), [
      ['Cancel', 'default', () => finish(false), 'modal-cancel'],
      [confirmLabel, danger ? 'danger' : 'primary', () => finish(true), 'modal-confirm'],
    ], {testid, onClose: () => finish(false)}); // Escape: as Cancel
  });
}

// toast shows a short-lived message in the corner.
export function toast(kind, text) {
  const root = document.getElementById('toasts');
  const el = h('div', {class: `toast toast-${kind}`, role: 'status'}, text);
  root.appendChild(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
}
