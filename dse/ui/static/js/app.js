// The console's shell: who is signed in, the header, the router.
import * as api from './api.js';
import {h, replace, badge} from './dom.js';
import {poll, modal, notice} from './widgets.js';
import * as metrics from './metrics.js';
import * as cluster from './cluster.js';
import * as services from './services.js';
import * as service from './service.js';
import * as tablePage from './table.js';
import * as datasources from './datasources.js';
import * as node from './node.js';

const pages = {cluster, services, service, table: tablePage, datasources, node};
// Which nav entry each page belongs under.
const navOf = {cluster: 'cluster', services: 'services', service: 'services', table: 'services', datasources: 'datasources', node: 'node'};

const rank = {read: 1, write: 2, admin: 3};

// session is what pages know of the caller: the node's auth and the role of
// the token (admin on a cluster without tokens). can(need) tells whether
// to offer an action; the API decides anyway.
export const session = {
  authRequired: false,
  role: '',
  tokenName: '',
  status: null,
  can(need) { return (rank[this.role] || 0) >= rank[need]; },
};

let unmount = null;
let signingIn = null; // the open sign-in dialog's close, if any

function main() { return document.getElementById('main'); }

function route() {
  if (unmount) { unmount(); unmount = null; }
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter((p) => p !== '').map((p) => {
    try { return decodeURIComponent(p); } catch (e) { return p; }
  });
  let name = parts[0] || 'cluster';
  if (!pages[name]) name = 'cluster';
  for (const a of document.querySelectorAll('nav.nav a')) {
    a.classList.toggle('active', a.dataset.page === navOf[name]);
  }
  const el = main();
  el.replaceChildren();
  if (session.role === '') {
    el.appendChild(notice('info', 'This cluster requires a token. ',
      h('button', {type: 'button', class: 'btn btn-primary btn-small', onclick: () => askToken()}, 'Sign in')));
    return;
  }
  document.title = `dse · ${name}`;
  el.dataset.page = name;
  unmount = pages[name].mount(el, {params: parts.slice(1), session}) || null;
}

// askToken opens the sign-in dialog (once): the token is checked against
// GET /v1/auth before it is kept.
function askToken(why) {
  if (signingIn) return;
  api.setToken('');
  session.role = '';
  renderWho();
  route();
  const input = h('input', {type: 'password', id: 'token-input', autocomplete: 'off', spellcheck: 'false', placeholder: 'dse_…', class: 'input'});
  const err = h('div', {class: 'form-error', id: 'token-error'});
  const form = h('form', {id: 'token-form'},
    h('p', null, 'This cluster requires a token (read, write or admin). It is kept for this browser tab only.'),
    why ? notice('warn', why) : null,
    h('label', {for: 'token-input'}, 'Token'), input, err);
  const submit = async () => {
    const t = input.value.trim();
    if (!t) { replace(err, 'Enter a token.'); return false; }
    api.setToken(t);
    try {
      const a = await api.get('/v1/auth');
      if (!a.role) throw new api.APIError(401, 'unauthorized', 'the token was not accepted');
      applyAuth(a);
      route();
      return true;
    } catch (e) {
      api.setToken('');
      replace(err, e.status === 401 ? 'Token refused: unknown or revoked.' : e.message);
      return false;
    }
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); submit().then((ok) => { if (ok) close(); }); });
  const close = modal('Sign in', form, [['Sign in', 'primary', submit, 'token-submit']],
    {testid: 'signin', onClose: () => { signingIn = null; }});
  signingIn = close;
}

function applyAuth(a) {
  session.authRequired = !!a.auth_required;
  session.role = a.role || '';
  session.tokenName = a.token_name || a.token_id || '';
  renderWho();
}

async function checkAuth() {
  for (;;) {
    try {
      const a = await api.get('/v1/auth');
      applyAuth(a);
      if (a.auth_required && !a.role) askToken();
      return;
    } catch (e) {
      if (e.status === 401) { askToken('Your token was refused: unknown or revoked.'); return; }
      banner(`Cannot reach this node: ${e.message}. Retrying…`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

function banner(text) {
  const b = document.getElementById('banner');
  if (!text) { b.hidden = true; b.replaceChildren(); return; }
  replace(b, text);
  b.hidden = false;
}

function stateKind(state) {
  return {leader: 'ok', follower: 'info', candidate: 'warn'}[state] || 'bad';
}

function renderWho() {
  const st = session.status;
  const who = document.getElementById('whoami');
  const items = [];
  if (st) {
    items.push(h('span', {class: 'who-item'}, h('span', {class: 'who-label'}, 'node'), h('strong', {id: 'hdr-node'}, st.id), badge(st.state, stateKind(st.state))));
    items.push(h('span', {class: 'who-item'}, h('span', {class: 'who-label'}, 'leader'),
      st.leader ? h('strong', {id: 'hdr-leader'}, st.leader) : badge('none', 'bad')));
    items.push(h('span', {class: 'who-item'}, h('span', {class: 'who-label'}, 'term'), h('strong', null, String(st.term))));
  }
  if (session.authRequired && session.role) {
    items.push(h('span', {class: 'who-item'}, h('span', {class: 'who-label'}, 'role'),
      h('strong', {id: 'hdr-role'}, session.role), session.tokenName ? h('span', {class: 'who-token'}, session.tokenName) : null,
      h('button', {type: 'button', class: 'btn btn-ghost btn-small', id: 'signout', onclick: () => askToken()}, 'Sign out')));
  }
  replace(who, items);
}

async function headerTick(signal) {
  if (!session.role) return;
  try {
    session.status = await api.get('/v1/status', {signal});
    banner(null);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    if (e.status !== 401) banner(`This node does not answer: ${e.message}. Retrying…`);
  }
  renderWho();
}

async function start() {
  api.onUnauthorized((msg) => askToken(`Your token was refused (${msg}).`));
  window.addEventListener('hashchange', route);
  await checkAuth();
  route();
  poll(headerTick, 2000);
  metrics.start(poll, () => session.role !== '');
}

start();
