// One service: owner, incarnation, instances, replicas or standbys, the
// tables it publishes with seqnums and subscribers, what it subscribes to,
// its RPC endpoints; polled every 2 s. Writers may publish a table.
import * as api from './api.js';
import {h, replace, badge, fmtInt, hashLink} from './dom.js';
import {poll, card, pageHead, errorSlot, kv} from './widgets.js';
import {replicaList, endpoints} from './services.js';
import {publishForm} from './publish.js';

const POLL_MS = 2000;

export function mount(el, {params, session}) {
  const id = params[0] || '';
  const errs = errorSlot();
  const facts = h('div', {id: 'service-facts'});
  const tables = h('div', {id: 'service-tables'});
  const subs = h('div', {id: 'service-subs'});
  const publishSlot = h('div', {id: 'publish-slot'});

  const tick = async (signal) => {
    try {
      const [d, info] = await Promise.all([
        api.get(api.path('/v1/services', id), {signal}),
        api.get('/v1/services', {signal}).then((all) => all.find((i) => i.service_id === id)),
      ]);
      errs.set(null);
      replace(facts, kv([
        ['Owner node', d.node_id ? h('span', {class: 'mono'}, d.node_id) : badge('none live', 'bad')],
        ['Incarnation', h('span', {class: 'mono'}, String(d.incarnation))],
        ['Kind', badge(d.kind, d.kind === 'datasource' ? 'info' : 'muted')],
        ['Instances', d.instances.length ? h('span', {class: 'mono'}, d.instances.join(', ')) : '—'],
        [Array.isArray(d.replicas) ? 'Replicas' : 'Standbys', replicaList(d)],
        ['RPC endpoints', endpoints(d.endpoints)],
      ]));
      replace(tables, d.tables.length
        ? h('table', {class: 'grid'},
          h('thead', null, h('tr', null, h('th', null, 'Table'), h('th', {class: 'right'}, 'Seqnum'), h('th', {class: 'right'}, 'Subscribers'))),
          h('tbody', null, d.tables.map((t) => h('tr', {'data-table': t.table},
            h('td', null, h('a', {href: hashLink('table', id, t.table), class: 'mono strong'}, t.table)),
            h('td', {class: 'right mono'}, fmtInt(t.seqnum)),
            h('td', {class: 'right mono'}, fmtInt(t.subscribers))))))
        : h('p', {class: 'muted'}, 'This service publishes no table yet.'));
      const st = info ? info.subscribed_tables : [];
      replace(subs, st.length
        ? h('ul', {class: 'plain'}, st.map(([p, t]) => h('li', null, h('a', {href: hashLink('table', p, t), class: 'mono'}, `${p} / ${t}`))))
        : h('p', {class: 'muted'}, 'No subscriptions.'));
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      errs.set(e, `service ${id}`);
    }
  };

  replace(el,
    pageHead(h('span', null, h('a', {href: '#/services', class: 'crumb'}, 'Services'), ' / ', h('span', {class: 'mono'}, id)),
      'The registry\'s record of this service, refreshed every 2 s.'),
    errs.el,
    h('div', {class: 'cols'},
      card('Service', facts),
      card('Subscribes to', subs)),
    card('Published tables', tables),
    publishSlot);
  if (session.can('write')) {
    api.get(api.path('/v1/services', id)).then((d) => {
      publishSlot.dataset.ready = 'true';
      if (d.kind !== 'external') return;
      replace(publishSlot, card('Publish a table', h('p', {class: 'muted'}, 'Sets one of this service\'s tables, as dse publish does.'),
        publishForm(id, null, {onPublished: (t) => { location.hash = hashLink('table', id, t); }})));
    }).catch(() => { publishSlot.dataset.ready = 'true'; /* shown by the poll's error */ });
  } else {
    publishSlot.dataset.ready = 'true';
  }
  return poll(tick, POLL_MS);
}
