// The node's HTTP API, as the console calls it: every request carries the
// session's token (if any), so the API's own role checks decide.

const TOKEN_KEY = 'dse.console.token';

// The token lives in sessionStorage only: it ends with the browser tab.
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// APIError is a refused or failed request: status is the HTTP status (0
// when the node could not be reached), code the API's error code.
export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const listeners = new Set();

// onUnauthorized registers fn, called whenever a request is answered 401
// (no token, or one unknown or revoked).
export function onUnauthorized(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function headers(extra) {
  const hd = new Headers(extra);
  const t = token();
  if (t) hd.set('Authorization', `Bearer ${t}`);
  return hd;
}

async function failure(res) {
  let code = 'http_' + res.status, message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch (e) { /* not JSON: keep the status line */ }
  if (res.status === 401) for (const fn of listeners) fn(message);
  return new APIError(res.status, code, message);
}

// request sends one request and returns the response once it is a 2xx.
export async function request(method, path, {body, json, signal, accept} = {}) {
  const init = {method, headers: headers(accept ? {Accept: accept} : undefined), signal, cache: 'no-store'};
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers.set('Content-Type', 'application/json');
  } else if (body !== undefined) {
    init.body = body;
    init.headers.set('Content-Type', 'application/json');
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new APIError(0, 'unreachable', `the node did not answer: ${e.message}`);
  }
  if (!res.ok) throw await failure(res);
  return res;
}

export async function get(path, opts) {
  return (await request('GET', path, opts)).json();
}

export async function getText(path, opts) {
  return (await request('GET', path, opts)).text();
}

export async function send(method, path, json, opts = {}) {
  return (await request(method, path, {...opts, json})).json();
}

export function path(...segments) {
  return segments.map((s, i) => (i === 0 ? s : encodeURIComponent(s))).join('/');
}

// watch follows a table through GET /v1/watch/{service}/{table}: an NDJSON
// stream read with fetch (EventSource cannot send a token), a snapshot
// line, then a line per change. It reconnects when the stream ends or
// fails, after a pause that grows to 5 s; each new stream starts with a
// snapshot again. parse turns a line into a value. It ends when signal
// aborts, or on a refusal that retrying cannot fix (400, 401, 403).
export function watch(service, table, {parse, onLine, onState, signal}) {
  const url = path('/v1/watch', service, table);
  let backoff = 250;
  const pause = (ms) => new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, {once: true});
  });
  (async () => {
    while (!signal.aborted) {
      onState('connecting');
      try {
        const res = await request('GET', url, {signal, accept: 'application/x-ndjson'});
        onState('live');
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buf = '', scanned = 0;
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buf += decoder.decode(value, {stream: true});
          // A snapshot is one long line: look for its end only in what
          // arrived since the last look.
          let nl;
          while ((nl = buf.indexOf('\n', scanned)) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            scanned = 0;
            if (line.trim() === '') continue;
            onLine(parse(line));
            backoff = 250;
          }
          scanned = buf.length;
        }
        // Why the node ended the stream is in its trailers, which fetch
        // does not expose; a new stream starts with a snapshot anyway.
        onState('reconnecting', new APIError(0, 'ended', 'the node ended the watch'));
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof APIError && [400, 401, 403].includes(e.status)) {
          onState('failed', e);
          return;
        }
        onState('reconnecting', e);
      }
      await pause(backoff);
      backoff = Math.min(5000, backoff * 2);
    }
  })();
}
