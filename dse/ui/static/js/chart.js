// Small SVG time-series charts, drawn with attributes only (the CSP allows
// no inline style).
import {s} from './dom.js';

const W = 560, H = 150, PAD_L = 56, PAD_R = 10, PAD_T = 10, PAD_B = 22;

// niceMax rounds a maximum up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// lineChart draws series ([{values: [[t, v|null]...], cls, label}]) over
// the window [from, to] (ms); fmt formats the y axis.
export function lineChart({series, from, to, fmt, label}) {
  let max = 0;
  for (const se of series) for (const [, v] of se.values) if (v !== null && v > max) max = v;
  const top = niceMax(max);
  const x = (t) => PAD_L + ((t - from) / (to - from)) * (W - PAD_L - PAD_R);
  const y = (v) => PAD_T + (1 - v / top) * (H - PAD_T - PAD_B);
  const grid = [];
  for (const f of [0, 0.5, 1]) {
    const gy = y(top * f);
    grid.push(s('line', {x1: PAD_L, x2: W - PAD_R, y1: gy, y2: gy, class: 'gridline'}));
    grid.push(s('text', {x: PAD_L - 6, y: gy + 4, class: 'axis', 'text-anchor': 'end'}, fmt(top * f)));
  }
  const mins = Math.round((to - from) / 60000);
  grid.push(s('text', {x: PAD_L, y: H - 6, class: 'axis'}, `${mins} min ago`));
  grid.push(s('text', {x: W - PAD_R, y: H - 6, class: 'axis', 'text-anchor': 'end'}, 'now'));
  const paths = [];
  for (const se of series) {
    // A gap (null) breaks the line: a scrape failed or a counter reset.
    let d = '', area = '', run = [];
    const flush = () => {
      if (run.length > 1) {
        d += 'M' + run.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join('L');
        area += `M${run[0][0].toFixed(1)},${y(0).toFixed(1)}L` +
          run.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join('L') +
          `L${run[run.length - 1][0].toFixed(1)},${y(0).toFixed(1)}Z`;
      } else if (run.length === 1) {
        const [px, py] = run[0];
        paths.push(s('circle', {cx: px.toFixed(1), cy: py.toFixed(1), r: 2, class: `dot ${se.cls}`}));
      }
      run = [];
    };
    for (const [t, v] of se.values) {
      if (t < from) continue;
      if (v === null) { flush(); continue; }
      run.push([x(t), y(v)]);
    }
    flush();
    if (area && se.fill) paths.push(s('path', {d: area, class: `area ${se.cls}`}));
    if (d) paths.push(s('path', {d, class: `line ${se.cls}`}));
  }
  return s('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label},
    ...grid, ...paths);
}
