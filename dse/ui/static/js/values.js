// Row values as the API writes them: strings, int64 and float64 numbers,
// booleans, null. JavaScript's numbers are doubles, so an integer beyond
// 2^53 would lose digits, and the float 1500000.0 would equal the integer
// 1500000 (two different rows in dse). parseRows keeps every number whose
// text a double would not reproduce as a Num holding that text.

// Num is a number with the exact text the node sent.
export class Num {
  constructor(value, text) {
    this.value = value;
    this.text = text;
  }
  valueOf() { return this.value; }
  toString() { return this.text; }
}

const hasSource = (() => {
  let ok = false;
  try {
    JSON.parse('1', (k, v, ctx) => { ok = !!(ctx && typeof ctx.source === 'string'); return v; });
  } catch (e) { /* an engine without JSON.parse source text */ }
  return ok;
})();

// parseRows parses JSON that holds rows (a watch line, a table).
export function parseRows(text) {
  if (!hasSource) return JSON.parse(text);
  return JSON.parse(text, (k, v, ctx) =>
    typeof v === 'number' && ctx && ctx.source !== String(v) ? new Num(v, ctx.source) : v);
}

function cellKey(v) {
  if (v === null) return 'z';
  switch (typeof v) {
    case 'string': return 's' + JSON.stringify(v);
    case 'number': return 'n' + String(v);
    case 'boolean': return v ? 'T' : 'F';
  }
  if (v instanceof Num) return 'n' + v.text;
  return 'j' + JSON.stringify(v);
}

// rowKey identifies a row: two rows have one key exactly when the node
// holds them as one row. (JSON.stringify escapes control characters, so
// the separator never occurs inside a cell's key.)
export function rowKey(row) {
  return row.map(cellKey).join('\u0001');
}

// cellText is what a cell shows.
export function cellText(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return v;
  if (v instanceof Num) return v.text;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// cellClass is the CSS class of a cell of value v (numbers align right,
// null and booleans stand apart from strings that read the same).
export function cellClass(v) {
  if (v === null || v === undefined) return 'v-null';
  if (typeof v === 'number' || v instanceof Num) return 'v-num';
  if (typeof v === 'boolean') return 'v-bool';
  return 'v-str';
}

// rank orders the kinds of value: null, booleans, numbers, strings, other.
export function rank(v) {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'boolean') return 1;
  if (typeof v === 'number' || v instanceof Num) return 2;
  if (typeof v === 'string') return 3;
  return 4;
}

// compareCells orders values: null, booleans, numbers, strings.
export function compareCells(a, b) {
  const ra = rank(a), rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 2) {
    const x = +a, y = +b;
    if (x !== y) return x < y ? -1 : 1;
    // Equal doubles: the exact texts decide (big integers).
    const ta = cellText(a), tb = cellText(b);
    if (ta.length !== tb.length) return ta.length - tb.length;
    return ta < tb ? -1 : ta > tb ? 1 : 0;
  }
  if (ra === 4) {
    a = JSON.stringify(a);
    b = JSON.stringify(b);
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

// compareRows orders rows by column first (if given), then column by
// column; a row that is a prefix of another comes first.
export function compareRows(a, b, first = -1) {
  if (first >= 0) {
    const d = compareCells(a[first], b[first]);
    if (d) return d;
  }
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (i >= a.length) return -1;
    if (i >= b.length) return 1;
    const d = compareCells(a[i], b[i]);
    if (d) return d;
  }
  return 0;
}
