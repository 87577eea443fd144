// The datasources page: each datasource's config (secrets hidden), where it
// runs and how its source is (node, incarnation, polls, last good poll,
// last error), its driver and the tables it publishes; polled every 2 s.
// Writers add, update, disable and delete datasources; the file driver,
// which reads the node's own files, and secrets are for admins.
import * as api from './api.js';
import {h, replace, badge, fmtInt, fmtAgo, hashLink, debounce} from './dom.js';
import {poll, card, pageHead, errorSlot, button, modal, confirmModal, notice, toast, kv} from './widgets.js';

const POLL_MS = 2000;
const DETAIL_LIMIT = 50;
const HIDDEN = '<hidden>';

const driverCache = new Map(); // driver id -> Promise of its info

function driverInfo(id) {
  if (!driverCache.has(id)) {
    const p = api.get(api.path('/v1/drivers', id));
    p.catch(() => driverCache.delete(id));
    driverCache.set(id, p);
  }
  return driverCache.get(id);
}

// health is a datasource's state in one word, and its colour.
export function health(ds, st) {
  if (!ds.enabled) return ['disabled', 'muted'];
  if (!st) return ['unknown', 'muted'];
  if (!st.node) return ['not placed', 'warn'];
  if (st.running && st.healthy) return ['healthy', 'ok'];
  if (st.running) return ['failing', 'bad'];
  if (st.last_error) return ['unavailable', 'bad'];
  return ['starting', 'warn'];
}

function valueText(v) {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function configTable(config, secretFields) {
  const keys = Object.keys(config || {}).sort();
  if (!keys.length) return h('p', {class: 'muted'}, 'No config.');
  return h('table', {class: 'grid compact config'}, h('tbody', null, keys.map((k) => {
    const v = config[k];
    const hidden = v === HIDDEN;
    return h('tr', {'data-key': k},
      h('th', {class: 'mono'}, k, secretFields.has(k) ? h('span', {class: 'muted small'}, ' secret') : null),
      h('td', {class: hidden ? 'secret' : 'mono'}, hidden ? badge('hidden', 'muted', 'a secret: shown only to admins who ask') : valueText(v)));
  })));
}

function driverBlock(info) {
  if (!info) return h('p', {class: 'muted'}, 'Loading the driver…');
  return h('div', {class: 'driver'},
    h('p', null, info.description),
    h('table', {class: 'grid compact'},
      h('thead', null, h('tr', null, h('th', null, 'Config field'), h('th', null, 'Type'), h('th', null, ''), h('th', null, 'Description'))),
      h('tbody', null, info.config.map((f) => h('tr', null,
        h('td', {class: 'mono'}, f.name), h('td', null, f.type),
        h('td', null, f.required ? badge('required', 'info') : null, f.secret ? badge('secret', 'warn') : null),
        h('td', null, f.description))))));
}

// configFromForm reads a driver's config inputs: empty ones are left out,
// lists are comma-separated.
function configInputs(info, current = {}) {
  const inputs = new Map();
  const rows = info.config.map((f) => {
    const id = `cfg-${f.name}`;
    const cur = current[f.name];
    const input = h('input', {
      type: f.secret ? 'password' : 'text', class: 'input', id, autocomplete: 'off', spellcheck: 'false',
      placeholder: f.type === 'list' ? 'a, b, c' : f.type === 'duration' ? '1s' : '',
      value: cur === undefined || cur === HIDDEN ? '' : Array.isArray(cur) ? cur.join(', ') : valueText(cur),
    });
    inputs.set(f.name, [f, input]);
    return h('div', {class: 'field'},
      h('label', {for: id}, f.name, f.required ? ' *' : '', f.secret ? ' (secret)' : ''),
      input, h('div', {class: 'hint'}, f.description));
  });
  const read = () => {
    const out = {};
    for (const [name, [f, input]] of inputs) {
      const v = input.value.trim();
      if (v === '') continue;
      out[name] = f.type === 'list' ? v.split(',').map((x) => x.trim()).filter(Boolean) : v;
    }
    return out;
  };
  return {el: h('div', {class: 'fields'}, rows), read};
}

async function addDatasource(session, done) {
  let list;
  try {
    list = await api.get('/v1/drivers');
  } catch (e) {
    toast('error', `Cannot list drivers: ${e.message}`);
    return;
  }
  // The file driver reads the node's own files: admins only (the API says
  // so too).
  const offered = list.filter((d) => d.id !== 'file' || session.can('admin'));
  const name = h('input', {type: 'text', class: 'input', id: 'ds-name', autocomplete: 'off', placeholder: 'hosts'});
  const desc = h('input', {type: 'text', class: 'input', id: 'ds-description', autocomplete: 'off'});
  const driver = h('select', {class: 'input', id: 'ds-driver'}, offered.map((d) => h('option', {value: d.id}, `${d.id} — ${d.description}`)));
  const enabled = h('input', {type: 'checkbox', id: 'ds-enabled', checked: true});
  const fieldsSlot = h('div');
  const err = h('div', {class: 'form-error', id: 'ds-add-error'});
  let cfg = null;
  const loadFields = async () => {
    const want = driver.value;
    cfg = null;
    replace(fieldsSlot, h('p', {class: 'muted'}, 'Loading the driver…'));
    try {
      const info = await driverInfo(want);
      if (driver.value !== want) return; // another driver was picked meanwhile
      cfg = configInputs(info);
      replace(fieldsSlot, cfg.el);
    } catch (e) {
      replace(fieldsSlot, notice('error', e.message));
    }
  };
  driver.addEventListener('change', loadFields);
  const submit = async () => {
    if (!cfg) return false;
    try {
      const ds = await api.send('POST', '/v1/datasources', {
        name: name.value.trim(), driver: driver.value, description: desc.value, config: cfg.read(), enabled: enabled.checked,
      });
      toast('ok', `Datasource ${ds.name} added.`);
      done();
      return true;
    } catch (e) {
      replace(err, e.message);
      return false;
    }
  };
  modal('Add a datasource', h('form', {id: 'ds-add-form', onsubmit: (e) => e.preventDefault()},
    h('div', {class: 'field'}, h('label', {for: 'ds-name'}, 'Name (the service its tables are published as) *'), name),
    h('div', {class: 'field'}, h('label', {for: 'ds-driver'}, 'Driver'), driver,
      session.can('admin') ? null : h('div', {class: 'hint'}, 'The file driver reads the node\'s own files: only admins may add one.')),
    h('div', {class: 'field'}, h('label', {for: 'ds-description'}, 'Description'), desc),
    fieldsSlot,
    h('label', {class: 'check'}, enabled, ' enabled'),
    err), [
    ['Cancel', 'default', null, 'ds-add-cancel'],
    ['Add datasource', 'primary', submit, 'ds-add-submit'],
  ], {testid: 'ds-add'});
  loadFields();
}

function editConfig(ds, session, done) {
  const text = h('textarea', {class: 'input mono', id: 'ds-config', rows: 10, spellcheck: 'false'});
  text.value = JSON.stringify(ds.config, null, 2);
  const err = h('div', {class: 'form-error', id: 'ds-edit-error'});
  const hasHidden = Object.values(ds.config).includes(HIDDEN);
  const submit = async () => {
    let config;
    try {
      config = JSON.parse(text.value);
    } catch (e) {
      replace(err, `not JSON: ${e.message}`);
      return false;
    }
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      replace(err, 'want a JSON object of config fields');
      return false;
    }
    try {
      await api.send('PATCH', api.path('/v1/datasources', ds.id), {config});
      toast('ok', `Datasource ${ds.name} updated.`);
      done();
      return true;
    } catch (e) {
      replace(err, e.message);
      return false;
    }
  };
  modal(`Config of ${ds.name}`, h('div', null,
    h('p', null, 'The whole new config, as a JSON object. The datasource restarts with it.'),
    hasHidden ? notice('info', session.can('admin')
      ? 'A value "<hidden>" keeps the stored secret.'
      : 'Secrets read "<hidden>": give them again (only an admin may keep a stored secret).') : null,
    text, err), [
    ['Cancel', 'default', null],
    ['Save config', 'primary', submit, 'ds-edit-submit'],
  ], {testid: 'ds-edit'});
}

export function mount(el, {session}) {
  const canWrite = session.can('write');
  const isAdmin = session.can('admin');
  const errs = errorSlot();
  const list = h('div', {class: 'ds-list', id: 'datasources'});
  let showSecrets = false;
  const openDrivers = new Set(); // cards whose driver details are open
  let filter = '';
  let last = {items: [], status: new Map(), services: new Map()};
  let refresh = () => {};

  const setEnabled = async (ds, on) => {
    try {
      await api.send('PATCH', api.path('/v1/datasources', ds.id), {enabled: on});
      toast('ok', `Datasource ${ds.name} ${on ? 'enabled' : 'disabled'}.`);
    } catch (e) {
      toast('error', `Update failed: ${e.message}`);
    }
    refresh();
  };

  const remove = async (ds) => {
    const ok = await confirmModal(`Delete datasource ${ds.name}?`,
      `Its config leaves the registry and its tables stop being published. This cannot be undone.`, 'Delete datasource', {danger: true, testid: 'confirm-delete'});
    if (!ok) return;
    try {
      await api.send('DELETE', api.path('/v1/datasources', ds.id));
      toast('ok', `Datasource ${ds.name} deleted.`);
    } catch (e) {
      toast('error', `Delete failed: ${e.message}`);
    }
    refresh();
  };

  const dsCard = (ds, st, svc, info) => {
    const [word, kind] = health(ds, st);
    const secret = new Set(info ? info.config.filter((f) => f.secret).map((f) => f.name) : []);
    const actions = [];
    if (canWrite) {
      if (ds.driver !== 'file' || isAdmin) actions.push(button('Edit config', () => editConfig(ds, session, refresh), {kind: 'ghost', testid: 'ds-edit-' + ds.name}));
      actions.push(ds.enabled
        ? button('Disable', () => setEnabled(ds, false), {kind: 'ghost', testid: 'ds-disable-' + ds.name})
        : button('Enable', () => setEnabled(ds, true), {kind: 'ghost', testid: 'ds-enable-' + ds.name}));
      actions.push(button('Delete', () => remove(ds), {kind: 'danger-ghost', testid: 'ds-delete-' + ds.name}));
    }
    const tables = svc && svc.tables.length
      ? h('span', {class: 'chips'}, svc.tables.map((t) => h('a', {class: 'chip chip-link', href: hashLink('table', ds.name, t.table)},
        t.table, h('span', {class: 'chip-sub'}, ` seq ${fmtInt(t.seqnum)}`))))
      : h('span', {class: 'muted'}, 'none yet');
    return h('section', {class: 'card ds-card', 'data-datasource': ds.name},
      h('header', {class: 'card-head'},
        h('h2', null, h('span', {class: 'mono'}, ds.name), ' ', badge(word, kind)),
        h('div', {class: 'card-tools'}, actions)),
      h('div', {class: 'card-body ds-body'},
        h('div', {class: 'ds-col'},
          ds.description ? h('p', {class: 'ds-description'}, ds.description) : null,
          kv([
            ['Driver', h('span', {class: 'mono'}, ds.driver)],
            ['ID', h('span', {class: 'mono small'}, ds.id)],
            ['Node', st && st.node ? h('span', {class: 'mono'}, st.node) : '—'],
            ['Incarnation', st ? h('span', {class: 'mono'}, String(st.incarnation)) : '—'],
            ['Polls', st ? `${fmtInt(st.polls)} (${fmtInt(st.failures)} failed)` : '—'],
            ['Last good poll', st ? fmtAgo(st.last_success) : '—'],
            ['Tables', tables],
          ]),
          st && st.last_error ? notice('error', 'Last error: ', h('span', {class: 'mono ds-error'}, st.last_error)) : null),
        h('div', {class: 'ds-col'},
          h('h3', null, 'Config'), configTable(ds.config, secret),
          h('details', {class: 'driver-details', open: openDrivers.has(ds.name),
            ontoggle: (e) => { if (e.target.open) openDrivers.add(ds.name); else openDrivers.delete(ds.name); }},
          h('summary', null, `Driver ${ds.driver}`), driverBlock(info)))));
  };

  const render = async () => {
    const shown = last.items.filter((ds) => !filter || ds.name.toLowerCase().includes(filter) || ds.driver.includes(filter));
    if (!last.items.length) {
      replace(list, card(null, h('p', {class: 'empty'}, 'No datasources yet.', canWrite ? ' Add one with the button above.' : '')));
      return;
    }
    const infos = new Map();
    for (const ds of shown) {
      try { infos.set(ds.driver, await driverInfo(ds.driver)); } catch (e) { /* shown as loading */ }
    }
    replace(list, shown.map((ds) => dsCard(ds, last.status.get(ds.id), last.services.get(ds.name), infos.get(ds.driver))));
  };

  const tick = async (signal) => {
    try {
      const items = await api.get('/v1/datasources' + (showSecrets ? '?show_secrets=true' : ''), {signal});
      const some = items.slice(0, DETAIL_LIMIT);
      const [sts, svcs] = await Promise.all([
        Promise.all(some.map((ds) => api.get(api.path('/v1/datasources', ds.id, 'status'), {signal}).catch((e) => { if (e.name === 'AbortError') throw e; return null; }))),
        Promise.all(some.map((ds) => api.get(api.path('/v1/services', ds.name), {signal}).catch((e) => { if (e.name === 'AbortError') throw e; return null; }))),
      ]);
      last = {items, status: new Map(), services: new Map()};
      some.forEach((ds, i) => {
        if (sts[i]) last.status.set(ds.id, sts[i]);
        if (svcs[i]) last.services.set(ds.name, svcs[i]);
      });
      errs.set(null);
      await render();
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      errs.set(e, 'datasources');
    }
  };

  const secretsToggle = isAdmin
    ? h('label', {class: 'check'}, h('input', {type: 'checkbox', id: 'show-secrets', onchange: (e) => { showSecrets = e.target.checked; refresh(); }}), ' show secrets')
    : null;
  const filterInput = h('input', {type: 'search', class: 'input input-filter', placeholder: 'Filter datasources', id: 'ds-filter',
    oninput: debounce((e) => { filter = e.target.value.toLowerCase(); render(); }, 120)});
  replace(el,
    pageHead('Datasources', 'Drivers that turn external sources into tables, each run on one live node.',
      secretsToggle, filterInput,
      canWrite ? button('Add datasource', () => addDatasource(session, refresh), {kind: 'primary', testid: 'ds-add-open'}) : null),
    errs.el, list);
  let stop = poll(tick, POLL_MS);
  refresh = () => { stop(); stop = poll(tick, POLL_MS); };
  return () => stop();
}
