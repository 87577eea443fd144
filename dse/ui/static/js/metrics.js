// The node's own figures over the last minutes: /metrics (Prometheus text)
// scraped every few seconds while the console is open, turned into rates
// and latencies, kept in the page.
import * as api from './api.js';

export const INTERVAL_MS = 2000;
const KEEP_MS = 5 * 60 * 1000;

// parse reads the Prometheus text format into name -> [{labels, value}].
export function parse(text) {
  const out = new Map();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    let name, labels = {}, rest;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    if (brace >= 0 && (space < 0 || brace < space)) {
      name = line.slice(0, brace);
      const end = line.indexOf('}', brace);
      if (end < 0) continue;
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      const body = line.slice(brace + 1, end);
      let m;
      while ((m = re.exec(body)) !== null) {
        labels[m[1]] = m[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      }
      rest = line.slice(end + 1).trim();
    } else {
      if (space < 0) continue;
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const v = rest.split(/\s+/)[0];
    const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v);
    if (!out.has(name)) out.set(name, []);
    out.get(name).push({labels, value});
  }
  return out;
}

// scalar is the sum of a metric's samples (null when absent).
export function scalar(m, name) {
  const s = m.get(name);
  return s ? s.reduce((a, x) => a + x.value, 0) : null;
}

// histogram returns the buckets (le ascending, cumulative), sum and count.
export function histogram(m, name) {
  const buckets = (m.get(name + '_bucket') || [])
    .map((x) => ({le: x.labels.le === '+Inf' ? Infinity : Number(x.labels.le), count: x.value}))
    .sort((a, b) => a.le - b.le);
  return {buckets, sum: scalar(m, name + '_sum'), count: scalar(m, name + '_count')};
}

// quantile estimates the q-quantile of the observations between two
// scrapes of a histogram, as Prometheus's histogram_quantile does: linear
// within the bucket that holds it.
export function quantile(q, prev, cur) {
  if (!prev || cur.buckets.length !== prev.buckets.length) return null;
  const delta = cur.buckets.map((b, i) => ({le: b.le, count: b.count - prev.buckets[i].count}));
  const total = delta.length ? delta[delta.length - 1].count : 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (const b of delta) {
    if (b.count >= rank) {
      if (b.le === Infinity) return lower;
      const inBucket = b.count - below;
      return inBucket > 0 ? lower + (b.le - lower) * ((rank - below) / inBucket) : b.le;
    }
    lower = b.le;
    below = b.count;
  }
  return lower;
}

// The sampler: one for the whole page, so that history survives moving
// between pages.
const samples = []; // {t, pubs, deliveries, applyMean, applyP99, resubs, gauges}
const subscribers = new Set();
let prev = null;
let stop = null;
let lastError = null;

function rate(cur, old, dt) {
  if (cur === null || old === null || cur < old) return null; // a restart reset it
  return (cur - old) / dt;
}

async function sample(signal) {
  let text;
  try {
    text = await api.getText('/metrics', {signal});
    lastError = null;
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    lastError = e;
    prev = null;
    for (const fn of subscribers) fn();
    return;
  }
  const m = parse(text);
  const now = Date.now();
  const cur = {
    t: now,
    pubs: scalar(m, 'dse_publications_total'),
    deliveries: scalar(m, 'dse_deliveries_total'),
    resubs: scalar(m, 'dse_resubscribes_total'),
    apply: histogram(m, 'dse_raft_apply_seconds'),
  };
  const gauges = {
    watches: scalar(m, 'dse_watches_open'),
    goroutines: scalar(m, 'go_goroutines'),
    rss: scalar(m, 'process_resident_memory_bytes'),
    dropped: scalar(m, 'dse_push_dropped_total'),
    unknown: scalar(m, 'dse_leader_outcome_unknown_total'),
    rpc: (m.get('dse_rpc_calls_total') || []).map((x) => [x.labels.outcome || '', x.value]),
    pubsTotal: cur.pubs,
    deliveriesTotal: cur.deliveries,
    resubsTotal: cur.resubs,
    commits: cur.apply.count,
  };
  if (prev) {
    const dt = (now - prev.t) / 1000;
    const dc = cur.apply.count - prev.apply.count;
    samples.push({
      t: now,
      pubs: rate(cur.pubs, prev.pubs, dt),
      deliveries: rate(cur.deliveries, prev.deliveries, dt),
      resubs: cur.resubs === null || prev.resubs === null || cur.resubs < prev.resubs ? null : cur.resubs - prev.resubs,
      applyMean: dc > 0 ? (cur.apply.sum - prev.apply.sum) / dc : null,
      applyP99: dc > 0 ? quantile(0.99, prev.apply, cur.apply) : null,
      gauges,
    });
    while (samples.length && samples[0].t < now - KEEP_MS) samples.shift();
  } else if (!samples.length) {
    samples.push({t: now, pubs: null, deliveries: null, resubs: null, applyMean: null, applyP99: null, gauges});
  }
  prev = cur;
  for (const fn of subscribers) fn();
}

// start begins sampling (once), whenever active() says so (a page whose
// token is not known yet would be refused).
export function start(poll, active) {
  if (!stop) stop = poll((signal) => (active() ? sample(signal) : undefined), INTERVAL_MS);
}

export function history() {
  return samples;
}

export function error() {
  return lastError;
}

export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

export const KEEP = KEEP_MS;
