// A table, live: the watch stream's snapshot, then each delta as it
// happens, the rows it added and deleted marked for a moment, and a feed of
// the last changes. Rows sort by any column, filter by substring, and page
// 100 at a time, so a table of 100,000 rows stays responsive.
import * as api from './api.js';
import {h, replace, badge, fmtInt, fmtClock, hashLink, debounce} from './dom.js';
import {card, pageHead, errorSlot, button} from './widgets.js';
import {parseRows, rowKey, cellText, cellClass, compareRows, compareCells, rank} from './values.js';
import {publishForm} from './publish.js';

const PAGE_SIZE = 100;
const MARK_MS = 4000; // how long added and deleted rows stay marked
const FEED_LEN = 20;
const FEED_ROWS = 3; // rows of each kind a feed entry shows

// Model holds a table's rows and what changed lately. It knows nothing of
// the page, so it is easy to reason about.
export class Model {
  constructor() {
    this.live = new Map(); // key -> {key, cells, text, added}
    this.gone = new Map(); // deleted, still shown marked: key -> entry
    this.seqnum = null;
    this.version = 0; // bumped on every change
  }

  static entry(cells, added) {
    return {key: rowKey(cells), cells, text: null, added, deleted: 0};
  }

  // snapshot replaces the rows; the first one marks nothing, a later one
  // (after a reconnect) marks what it changed, as a relist diff.
  snapshot(seqnum, rows, now) {
    const first = this.seqnum === null;
    const next = new Map();
    for (const r of rows) {
      const k = rowKey(r);
      next.set(k, this.live.get(k) || Model.entry(r, first ? 0 : now));
    }
    const add = [], del = [];
    if (!first) {
      for (const [k, e] of this.live) if (!next.has(k)) { e.deleted = now; this.gone.set(k, e); del.push(e.cells); }
      for (const [k, e] of next) if (!this.live.has(k)) add.push(e.cells);
    }
    this.live = next;
    this.seqnum = seqnum;
    this.version++;
    return {add, del};
  }

  delta(seqnum, add, del, now) {
    for (const r of del) {
      const k = rowKey(r);
      const e = this.live.get(k);
      if (e) {
        this.live.delete(k);
        e.deleted = now;
        e.added = 0;
        this.gone.set(k, e);
      }
    }
    for (const r of add) {
      const k = rowKey(r);
      this.gone.delete(k);
      this.live.set(k, Model.entry(r, now));
    }
    this.seqnum = seqnum;
    this.version++;
  }

  // expire unmarks what was marked before now - MARK_MS; it reports whether
  // anything changed.
  expire(now) {
    let changed = false;
    for (const [k, e] of this.gone) if (now - e.deleted >= MARK_MS) { this.gone.delete(k); changed = true; }
    for (const e of this.live.values()) if (e.added && now - e.added >= MARK_MS) { e.added = 0; changed = true; }
    if (changed) this.version++;
    return changed;
  }

  // marked reports whether any row is marked (so the page keeps expiring).
  marked() {
    if (this.gone.size) return true;
    for (const e of this.live.values()) if (e.added) return true;
    return false;
  }

  // view is the rows to show: filtered by substring, sorted by column col
  // (-1: the rows' natural order) in direction dir (1 or -1).
  view(filter, col, dir) {
    let rows = [...this.live.values(), ...this.gone.values()];
    if (filter) {
      const f = filter.toLowerCase();
      rows = rows.filter((e) => {
        if (e.text === null) e.text = e.cells.map(cellText).join('\u0000').toLowerCase();
        return e.text.includes(f);
      });
    }
    // Mostly in order already (a snapshot comes sorted, deltas append):
    // the engine's merge sort does little work here.
    rows.sort((a, b) => compareRows(a.cells, b.cells));
    if (col >= 0) return sortByColumn(rows, col, dir);
    if (dir < 0) rows.reverse();
    return rows;
  }
}

// sortByColumn sorts entries, in row order, by one column; the sort is
// stable, so ties stay in row order. A column of one kind (all strings,
// all numbers) compares plain values: several times faster than the
// general order on 100,000 rows.
function sortByColumn(rows, col, dir) {
  let kind = null;
  const keyed = rows.map((e) => {
    const v = e.cells[col];
    const r = rank(v);
    if (kind === null) kind = r;
    else if (kind !== r) kind = -1;
    return {e, v: r === 2 ? +v : v};
  });
  if (kind === 2 || kind === 3) {
    keyed.sort((a, b) => (a.v < b.v ? -dir : a.v > b.v ? dir : 0));
  } else {
    keyed.sort((a, b) => dir * compareCells(a.e.cells[col], b.e.cells[col]));
  }
  return keyed.map((k) => k.e);
}

// columnNames are the datasource's column names for this table, when its
// config names them (the http driver's "columns").
async function columnNames(service, table, signal) {
  try {
    const ds = await api.get(api.path('/v1/datasources', service), {signal});
    const cols = ds.config && ds.config.columns;
    const name = (ds.config && ds.config.table) || 'data';
    if (ds.driver === 'http' && Array.isArray(cols) && name === table && cols.every((c) => typeof c === 'string')) return cols;
  } catch (e) { /* not a datasource: columns are numbered */ }
  return null;
}

function rowsJSON(rows) {
  return '[\n' + rows.map((r) => '  [' + r.map((v) => (v !== null && typeof v === 'object' ? v.text : JSON.stringify(v))).join(', ') + ']').join(',\n') + '\n]';
}

export function mount(el, {params, session}) {
  const [service = '', table = ''] = params;
  const model = new Model();
  const ctl = new AbortController();
  const errs = errorSlot();
  let names = null;
  let sortCol = -1, sortDir = 1, filter = '', page = 0;
  let cached = null, cachedFor = '';
  const feed = [];

  const seqEl = h('span', {class: 'mono', id: 'table-seqnum'}, '—');
  const countEl = h('span', {class: 'mono', id: 'table-count'}, '—');
  const liveEl = h('span', {id: 'watch-state'}, badge('connecting', 'muted'));
  const thead = h('thead');
  const tbody = h('tbody', {id: 'rows'});
  const pager = h('div', {class: 'pager', id: 'pager'});
  const feedEl = h('ol', {class: 'feed', id: 'feed'});
  const filterInput = h('input', {type: 'search', class: 'input input-filter', id: 'rows-filter', placeholder: 'Filter rows',
    oninput: debounce((e) => { filter = e.target.value; page = 0; draw(); }, 150)});

  // columns is the widest row's width among the first rows and those shown.
  const columns = (shown) => {
    let n = names ? names.length : 0, i = 0;
    for (const e of model.live.values()) {
      n = Math.max(n, e.cells.length);
      if (++i >= 1000) break;
    }
    for (const e of shown) n = Math.max(n, e.cells.length);
    return n;
  };

  const renderHead = (n) => {
    const ths = [];
    for (let i = 0; i < n; i++) {
      const label = names && names[i] ? names[i] : `col ${i + 1}`;
      const arrow = sortCol === i ? (sortDir > 0 ? ' ▲' : ' ▼') : '';
      ths.push(h('th', {class: ['sortable', sortCol === i && 'sorted'], 'data-col': i, title: 'Sort by this column',
        onclick: () => {
          if (sortCol === i) sortDir = -sortDir; else { sortCol = i; sortDir = 1; }
          draw();
        }}, label + arrow));
    }
    replace(thead, h('tr', null, ths));
  };

  const render = () => {
    const key = `${model.version}|${filter}|${sortCol}|${sortDir}`;
    if (cachedFor !== key) {
      cached = model.view(filter, sortCol, sortDir);
      cachedFor = key;
    }
    const pages = Math.max(1, Math.ceil(cached.length / PAGE_SIZE));
    if (page >= pages) page = pages - 1;
    const slice = cached.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
    const n = columns(slice);
    renderHead(n);
    replace(seqEl, model.seqnum === null ? '—' : fmtInt(model.seqnum));
    replace(countEl, fmtInt(model.live.size));
    if (!slice.length) {
      tbody.replaceChildren(h('tr', null, h('td', {colspan: Math.max(1, n), class: 'empty'},
        model.seqnum === null ? 'Waiting for the table…' : filter ? 'No row matches the filter.' : 'The table is empty.')));
    } else {
      tbody.replaceChildren(...slice.map((e) => {
        const tds = [];
        for (let i = 0; i < n; i++) {
          const v = i < e.cells.length ? e.cells[i] : undefined;
          tds.push(h('td', {class: i < e.cells.length ? cellClass(v) : 'v-none'}, i < e.cells.length ? cellText(v) : ''));
        }
        return h('tr', {class: e.deleted ? 'row-deleted' : e.added ? 'row-added' : null}, tds);
      }));
    }
    const from = cached.length ? page * PAGE_SIZE + 1 : 0;
    replace(pager,
      h('span', {class: 'muted', id: 'pager-info'}, `Rows ${fmtInt(from)}–${fmtInt(Math.min(cached.length, (page + 1) * PAGE_SIZE))} of ${fmtInt(cached.length)}${filter ? ' matching' : ''}`),
      h('span', {class: 'spacer'}),
      button('« First', () => { page = 0; draw(); }, {kind: 'ghost', disabled: page === 0, testid: 'page-first'}),
      button('‹ Prev', () => { page--; draw(); }, {kind: 'ghost', disabled: page === 0, testid: 'page-prev'}),
      h('span', {class: 'page-no'}, `page ${fmtInt(page + 1)} of ${fmtInt(pages)}`),
      button('Next ›', () => { page++; draw(); }, {kind: 'ghost', disabled: page >= pages - 1, testid: 'page-next'}),
      button('Last »', () => { page = pages - 1; draw(); }, {kind: 'ghost', disabled: page >= pages - 1, testid: 'page-last'}));
  };

  // Renders are coalesced: a burst of deltas to a big table redraws it a few
  // times a second, not once per delta.
  // What the operator does (sort, filter, page) redraws at once.
  let pending = 0, lastRender = 0;
  const draw = () => {
    clearTimeout(pending);
    pending = 0;
    render();
    lastRender = performance.now();
  };
  const schedule = () => {
    if (pending) return;
    const gap = model.live.size > 20000 ? 400 : 50;
    pending = setTimeout(draw, Math.max(0, lastRender + gap - performance.now()));
  };

  const feedRows = (sign, rows) => rows.slice(0, FEED_ROWS).map((r) =>
    h('li', {class: sign === '+' ? 'feed-add' : 'feed-del'}, h('span', {class: 'feed-sign'}, sign), ' ',
      h('span', {class: 'mono'}, '[' + r.map((v) => (typeof v === 'string' ? JSON.stringify(v) : cellText(v))).join(', ') + ']')));

  const renderFeed = () => {
    if (!feed.length) { replace(feedEl, h('li', {class: 'muted'}, 'No change since the page opened.')); return; }
    replace(feedEl, feed.map((f) => h('li', {class: 'feed-entry', 'data-seqnum': f.seqnum},
      h('div', {class: 'feed-head'},
        h('span', {class: 'mono strong'}, `#${f.seqnum}`), ' ',
        f.snapshot ? badge('snapshot', 'info') : null,
        h('span', {class: 'feed-counts'}, h('span', {class: 'plus'}, `+${f.add.length}`), ' ', h('span', {class: 'minus'}, `−${f.del.length}`)),
        h('span', {class: 'muted feed-time'}, fmtClock(f.t))),
      h('ul', {class: 'feed-rows'}, feedRows('+', f.add), feedRows('−', f.del),
        f.add.length + f.del.length > 2 * FEED_ROWS ? h('li', {class: 'muted'}, '…') : null))));
  };

  const onLine = (line) => {
    const now = Date.now();
    if (line.snapshot) {
      const first = model.seqnum === null;
      const {add, del} = model.snapshot(line.seqnum, line.rows, now);
      if (!first && (add.length || del.length)) feed.unshift({seqnum: line.seqnum, snapshot: true, add, del, t: now});
    } else {
      model.delta(line.seqnum, line.add, line.del, now);
      feed.unshift({seqnum: line.seqnum, snapshot: false, add: line.add, del: line.del, t: now});
    }
    feed.length = Math.min(feed.length, FEED_LEN);
    renderFeed();
    schedule();
  };

  const onState = (state, err) => {
    const kinds = {live: ['live', 'ok'], connecting: ['connecting', 'muted'], reconnecting: ['reconnecting', 'warn'], failed: ['stopped', 'bad']};
    const [text, kind] = kinds[state] || [state, 'muted'];
    replace(liveEl, badge(text, kind));
    if (state === 'live') errs.set(null);
    else if (err) errs.set(err, state === 'failed' ? 'watch refused' : 'watch interrupted, reconnecting');
  };

  // Only a service whose tables are set from outside takes a publish (a
  // datasource's or a Go service's are its own).
  const publishSlot = h('div', {id: 'publish-slot'});
  if (session.can('write')) {
    api.get(api.path('/v1/services', service), {signal: ctl.signal}).then((d) => {
      publishSlot.dataset.ready = 'true';
      if (d.kind !== 'external') return;
      replace(publishSlot, card('Publish', publishForm(service, table,
        {current: () => rowsJSON([...model.live.values()].map((e) => e.cells).sort((a, b) => compareRows(a, b)))})));
    }).catch(() => { publishSlot.dataset.ready = 'true'; /* no such service: nothing to publish to */ });
  } else {
    publishSlot.dataset.ready = 'true';
  }

  const expiry = setInterval(() => { if (model.marked() && model.expire(Date.now())) schedule(); }, 500);

  replace(el,
    pageHead(h('span', null, h('a', {href: '#/services', class: 'crumb'}, 'Services'), ' / ',
      h('a', {href: hashLink('service', service), class: 'crumb mono'}, service), ' / ', h('span', {class: 'mono'}, table)),
    'Rows as the watch stream delivers them: a snapshot, then every change as it happens.'),
    errs.el,
    h('div', {class: 'stats'},
      h('div', {class: 'stat'}, h('div', {class: 'stat-label'}, 'Seqnum'), h('div', {class: 'stat-value'}, seqEl)),
      h('div', {class: 'stat'}, h('div', {class: 'stat-label'}, 'Rows'), h('div', {class: 'stat-value'}, countEl)),
      h('div', {class: 'stat'}, h('div', {class: 'stat-label'}, 'Watch'), h('div', {class: 'stat-value'}, liveEl))),
    h('div', {class: 'cols cols-main'},
      card([h('h2', null, 'Rows'), h('div', {class: 'card-tools'}, filterInput)],
        h('div', {class: 'table-wrap'}, h('table', {class: 'grid rows'}, thead, tbody)), pager),
      card('Last changes', feedEl)),
    publishSlot);
  renderFeed();
  render();
  columnNames(service, table, ctl.signal).then((n) => { if (n) { names = n; schedule(); } });
  api.watch(service, table, {parse: parseRows, onLine, onState, signal: ctl.signal});
  return () => {
    ctl.abort();
    clearInterval(expiry);
    clearTimeout(pending);
  };
}
