// The node page: this node's Raft view and its own figures over the last
// minutes, from what /metrics exposes (publications/s, deliveries/s, Raft
// commit latency, catch-ups), as small charts.
import * as api from './api.js';
import {h, replace, badge, fmtInt, fmtRate, fmtSeconds, fmtBytes} from './dom.js';
import {poll, card, pageHead, errorSlot, kv} from './widgets.js';
import * as metrics from './metrics.js';
import {lineChart} from './chart.js';
import {stateKind} from './cluster.js';

function chartCard(id, title, unit, latest, chart, legend) {
  return h('section', {class: 'card chart-card', id},
    h('header', {class: 'card-head'}, h('h2', null, title),
      h('div', {class: 'chart-now'}, h('span', {class: 'chart-value'}, latest), h('span', {class: 'chart-unit'}, unit))),
    h('div', {class: 'card-body'}, chart, legend ? h('div', {class: 'legend'}, legend) : null));
}

function legendItem(cls, text) {
  return h('span', {class: 'legend-item'}, h('span', {class: `swatch ${cls}`}), text);
}

export function mount(el) {
  const errs = errorSlot();
  const facts = h('div', {id: 'node-facts'});
  const charts = h('div', {class: 'charts', id: 'charts'});
  const gauges = h('div', {id: 'node-gauges'});
  let state = ''; // this node's Raft state, from the last status

  const draw = () => {
    const hist = metrics.history();
    // The window grows, a minute at a time, with the history the page has.
    const to = Date.now();
    const have = hist.length ? to - hist[0].t : 0;
    const from = to - Math.min(metrics.KEEP, Math.max(60000, Math.ceil(have / 60000) * 60000));
    const series = (field) => hist.map((x) => [x.t, x[field]]);
    const lastOf = (field) => {
      for (let i = hist.length - 1; i >= 0; i--) if (hist[i][field] !== null) return hist[i][field];
      return null;
    };
    const mErr = metrics.error();
    errs.set(mErr, 'metrics');
    replace(charts,
      chartCard('chart-pubs', 'Publications', '/s', fmtRate(lastOf('pubs')),
        lineChart({series: [{values: series('pubs'), cls: 's1', fill: true}], from, to, fmt: fmtRate, label: 'publications per second'})),
      chartCard('chart-deliveries', 'Deliveries', '/s', fmtRate(lastOf('deliveries')),
        lineChart({series: [{values: series('deliveries'), cls: 's2', fill: true}], from, to, fmt: fmtRate, label: 'deliveries per second'})),
      chartCard('chart-commit', 'Raft commit latency', 'p99', fmtSeconds(lastOf('applyP99')),
        lineChart({series: [{values: series('applyP99'), cls: 's3'}, {values: series('applyMean'), cls: 's4'}], from, to, fmt: (v) => (v ? fmtSeconds(v) : '0'), label: 'Raft commit latency'}),
        [legendItem('s3', 'p99'), legendItem('s4', 'mean'),
          state && state !== 'leader' ? h('span', {class: 'legend-note'}, 'timed by the leader: this node is a ' + state) : null]),
      chartCard('chart-catchups', 'Catch-ups', `per ${metrics.INTERVAL_MS / 1000} s`, fmtInt(lastOf('resubs')),
        lineChart({series: [{values: series('resubs'), cls: 's5', fill: true}], from, to, fmt: (v) => (v >= 10 ? fmtInt(v) : v.toFixed(1)), label: 'subscriber catch-ups'})));
    const g = hist.length ? hist[hist.length - 1].gauges : null;
    replace(gauges, g ? kv([
      ['Publications (total)', fmtInt(g.pubsTotal)],
      ['Deliveries (total)', fmtInt(g.deliveriesTotal)],
      ['Raft commits timed', fmtInt(g.commits)],
      ['Catch-ups (total)', fmtInt(g.resubsTotal)],
      ['Pushes dropped', fmtInt(g.dropped)],
      ['Watches open', fmtInt(g.watches)],
      ['RPC calls', g.rpc.length ? g.rpc.map(([o, v]) => `${o} ${fmtInt(v)}`).join(', ') : '—'],
      ['Goroutines', fmtInt(g.goroutines)],
      ['Resident memory', g.rss === null ? '—' : fmtBytes(g.rss)],
    ]) : h('p', {class: 'muted'}, 'Waiting for the first scrape…'));
  };

  const tick = async (signal) => {
    try {
      const st = await api.get('/v1/status', {signal});
      state = st.state;
      replace(facts, kv([
        ['Node', h('span', {class: 'mono strong'}, st.id)],
        ['State', badge(st.state, stateKind(st.state))],
        ['Leader', st.leader ? h('span', {class: 'mono'}, st.leader) : badge('none', 'bad')],
        ['Term', fmtInt(st.term)],
        ['Commit index', fmtInt(st.commit_index)],
        ['Applied index', fmtInt(st.applied_index)],
        ['Members', fmtInt(st.members)],
        ['Log store', st.log_store],
      ]));
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      errs.set(e, 'status');
    }
  };

  replace(el,
    pageHead('Node', `This node's own figures, scraped from /metrics every ${metrics.INTERVAL_MS / 1000} s while the console is open (the last ${metrics.KEEP / 60000} minutes).`),
    errs.el,
    charts,
    h('div', {class: 'cols'}, card('Raft', facts), card('Counters', gauges)));
  draw();
  const unsub = metrics.subscribe(draw);
  const stop = poll(tick, 2000);
  return () => { unsub(); stop(); };
}
