// The services page: every service's DataServiceInfo with its owner,
// incarnation, standbys or replicas, and the seqnum and subscribers of each
// table it publishes; polled every 2 s.
import * as api from './api.js';
import {h, replace, badge, fmtInt, hashLink, debounce} from './dom.js';
import {poll, card, pageHead, errorSlot, button, modal, toast} from './widgets.js';

const POLL_MS = 2000;
const DETAIL_LIMIT = 100; // services whose detail one poll asks for

// replicaList shows standbys, or replicas with their in-sync state when
// the node reports them.
export function replicaList(d) {
  if (d && Array.isArray(d.replicas) && d.replicas.length) {
    return h('span', {class: 'chips'}, d.replicas.map((r) =>
      h('span', {class: ['chip', r.in_sync ? 'chip-ok' : 'chip-warn'], title: r.in_sync ? 'in sync' : 'not in sync', 'data-replica': r.node_id},
        r.node_id, h('span', {class: 'chip-sub'}, r.in_sync ? ' in sync' : ' behind'))));
  }
  if (d && d.standbys && d.standbys.length) {
    return h('span', {class: 'chips'}, d.standbys.map((n) => h('span', {class: 'chip'}, n, h('span', {class: 'chip-sub'}, ' standby'))));
  }
  return h('span', {class: 'muted'}, '—');
}

function tableChips(info, d) {
  const byName = new Map((d ? d.tables : []).map((t) => [t.table, t]));
  if (!info.published_tables.length) return h('span', {class: 'muted'}, '—');
  return h('span', {class: 'chips'}, info.published_tables.map((t) => {
    const td = byName.get(t);
    return h('a', {class: 'chip chip-link', href: hashLink('table', info.service_id, t), 'data-table': t},
      t, td ? h('span', {class: 'chip-sub'}, ` seq ${fmtInt(td.seqnum)} · ${td.subscribers} sub${td.subscribers === 1 ? '' : 's'}`) : null);
  }));
}

// Every service answers these (DESIGN.md's RPC section, and a
// datasource's status): listed apart from its own actions.
const BUILTIN = new Set(['ping', 'get_snapshot', 'get_last_published_data_with_seqnum', 'datasource_status']);

export function endpoints(list) {
  const own = list.filter((e) => !BUILTIN.has(e));
  const builtin = list.length - own.length;
  return h('span', {class: 'endpoints', title: list.join(', ')},
    own.length ? h('span', {class: 'mono small'}, own.join(', ')) : null,
    builtin ? h('span', {class: 'muted small'}, `${own.length ? ' + ' : ''}${builtin} built-in`) : null,
    list.length ? null : h('span', {class: 'muted'}, '—'));
}

function createService(done) {
  const input = h('input', {type: 'text', class: 'input', id: 'new-service-id', placeholder: 'inventory', autocomplete: 'off'});
  const err = h('div', {class: 'form-error'});
  const submit = async () => {
    try {
      const info = await api.send('POST', '/v1/services', {id: input.value.trim()});
      toast('ok', `Service ${info.service_id} created.`);
      done(info.service_id);
      return true;
    } catch (e) {
      replace(err, e.message);
      return false;
    }
  };
  modal('New service', h('form', {onsubmit: (e) => { e.preventDefault(); }},
    h('p', null, 'A service whose tables are set by publishing rows to it (dse services create).'),
    h('label', {for: 'new-service-id'}, 'Service id'), input, err), [
    ['Cancel', 'default', null],
    ['Create', 'primary', submit, 'create-service-submit'],
  ]);
}

export function mount(el, {session}) {
  const errs = errorSlot();
  const tbody = h('tbody', {id: 'services'});
  const count = h('span', {class: 'muted', id: 'services-count'});
  let filter = '';
  let last = [];
  const details = new Map();
  const filterInput = h('input', {type: 'search', class: 'input input-filter', placeholder: 'Filter services', id: 'services-filter',
    oninput: debounce((e) => { filter = e.target.value.toLowerCase(); render(); }, 120)});

  const render = () => {
    const shown = last.filter((i) => !filter || i.service_id.toLowerCase().includes(filter) ||
      i.node_id.toLowerCase().includes(filter) || i.published_tables.some((t) => t.toLowerCase().includes(filter)));
    replace(count, `${shown.length} of ${last.length} services`);
    if (!last.length) {
      tbody.replaceChildren(h('tr', null, h('td', {colspan: 7, class: 'empty'}, 'No services yet.')));
      return;
    }
    tbody.replaceChildren(...shown.map((info) => {
      const d = details.get(info.service_id);
      return h('tr', {'data-service': info.service_id},
        h('td', null, h('a', {href: hashLink('service', info.service_id), class: 'strong mono'}, info.service_id)),
        h('td', null, d ? badge(d.kind, d.kind === 'datasource' ? 'info' : 'muted') : '…'),
        h('td', {class: 'nowrap'}, info.node_id ? h('span', {class: 'mono'}, info.node_id) : badge('no owner', 'bad'),
          d ? h('span', {class: 'muted'}, ` · inc ${d.incarnation}`) : null),
        h('td', null, replicaList(d)),
        h('td', null, tableChips(info, d)),
        h('td', null, info.subscribed_tables.length
          ? h('span', {class: 'chips'}, info.subscribed_tables.map(([p, t]) => h('a', {class: 'chip chip-link', href: hashLink('table', p, t)}, `${p}/${t}`)))
          : h('span', {class: 'muted'}, '—')),
        h('td', null, endpoints(info.rpc_endpoints_info)));
    }));
  };

  const tick = async (signal) => {
    try {
      last = await api.get('/v1/services', {signal});
      const want = last.slice(0, DETAIL_LIMIT).map((i) => i.service_id);
      const got = await Promise.all(want.map((id) => api.get(api.path('/v1/services', id), {signal}).catch((e) => {
        if (e.name === 'AbortError') throw e;
        return null; // deleted meanwhile: the next poll drops it
      })));
      details.clear();
      got.forEach((d, i) => { if (d) details.set(want[i], d); });
      errs.set(null);
      render();
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      errs.set(e, 'services');
    }
  };

  replace(el,
    pageHead('Services', 'Every service on the cluster, its owner and the tables it publishes.',
      session.can('write') ? button('New service', () => createService((id) => { location.hash = hashLink('service', id); }), {kind: 'primary', testid: 'new-service'}) : null),
    errs.el,
    card([h('h2', null, 'Services'), h('div', {class: 'card-tools'}, count, filterInput)],
      h('div', {class: 'table-wrap'}, h('table', {class: 'grid'},
        h('thead', null, h('tr', null, h('th', null, 'Service'), h('th', null, 'Kind'), h('th', null, 'Owner'),
          h('th', null, 'Standbys / replicas'), h('th', null, 'Published tables'), h('th', null, 'Subscribes to'), h('th', null, 'RPC endpoints'))),
        tbody))));
  return poll(tick, POLL_MS);
}
