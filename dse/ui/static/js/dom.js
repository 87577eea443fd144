// DOM helpers. Every string that reaches the page goes through a text node
// or an attribute set with setAttribute: nothing here parses markup, so a
// value from the cluster (a row, a name, a config) shows as the characters
// it holds.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) {
        // Handlers are functions only: an attribute would be inline script.
        if (typeof v !== 'function') throw new TypeError(`attribute ${k} must be a function`);
        el.addEventListener(k.slice(2), v);
      } else if (k === 'class') {
        el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
      } else if (k === 'value' && 'value' in el) {
        el.value = v;
      } else if (k === 'checked' && 'checked' in el) {
        el.checked = !!v;
      } else {
        el.setAttribute(k, v === true ? '' : String(v));
      }
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// h creates an HTML element: h('a', {href: '#/x', class: 'y'}, 'text', child).
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s creates an SVG element.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

// replace empties el and appends children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// badge is a small coloured label: kind is ok, warn, bad, info or muted.
export function badge(text, kind = 'muted', title) {
  return h('span', {class: `badge badge-${kind}`, title}, text);
}

export function fmtInt(n) {
  if (n === null || n === undefined || n === '') return '—';
  return Number(n).toLocaleString('en-US');
}

// fmtRate shows a per-second figure with a sensible precision.
export function fmtRate(v) {
  if (v === null || v === undefined || !isFinite(v)) return '—';
  if (v >= 1000) return Math.round(v).toLocaleString('en-US');
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

// fmtSeconds shows a duration given in seconds (a latency) as ms or s.
export function fmtSeconds(v) {
  if (v === null || v === undefined || !isFinite(v)) return '—';
  if (v < 0.001) return `${(v * 1e6).toFixed(0)} µs`;
  if (v < 1) return `${(v * 1000).toFixed(v < 0.01 ? 2 : 1)} ms`;
  return `${v.toFixed(2)} s`;
}

export function fmtBytes(n) {
  if (!isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// fmtAgo shows how long ago an ISO time was.
export function fmtAgo(iso, now = Date.now()) {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (isNaN(t)) return String(iso);
  const d = Math.max(0, (now - t) / 1000);
  if (d < 1) return 'just now';
  if (d < 60) return `${Math.floor(d)} s ago`;
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  return new Date(t).toLocaleString();
}

export function fmtClock(ms) {
  return new Date(ms).toLocaleTimeString('en-GB', {hour12: false});
}

// hashLink builds a console route from path segments, each escaped.
export function hashLink(...segments) {
  return '#/' + segments.map(encodeURIComponent).join('/');
}

// debounce calls fn once calls stop coming for ms.
export function debounce(fn, ms) {
  let t = 0;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}
