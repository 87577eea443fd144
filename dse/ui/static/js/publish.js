// The publish form: paste a table's new content as JSON rows; the node
// computes the delta (PUT /v1/services/{id}/tables/{table}, as
// `dse publish`).
import * as api from './api.js';
import {h, replace} from './dom.js';
import {notice} from './widgets.js';

// checkRows says what is wrong with text as a table, or '' (the node checks
// again: this only spares a round trip).
export function checkRows(text) {
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return `not JSON: ${e.message}`;
  }
  if (!Array.isArray(v)) return 'want a JSON array of rows, e.g. [["web1","up"]]';
  for (let i = 0; i < v.length; i++) {
    if (!Array.isArray(v[i])) return `row ${i + 1} is not an array`;
    for (const c of v[i]) {
      if (c !== null && typeof c === 'object') return `row ${i + 1} holds an object or array: values are strings, numbers, booleans or null`;
    }
  }
  return '';
}

// publishForm returns the form for service's table (a table name field when
// table is null); current() may give the table's rows as JSON text to start
// from.
export function publishForm(service, table, {current, onPublished} = {}) {
  const nameInput = table === null
    ? h('input', {type: 'text', class: 'input', id: 'publish-table', placeholder: 'hosts', autocomplete: 'off'})
    : null;
  const rows = h('textarea', {class: 'input mono', id: 'publish-rows', rows: 6, spellcheck: 'false',
    placeholder: '[["web1", "up"], ["db1", "up"]]'});
  const snapshot = h('input', {type: 'checkbox', id: 'publish-snapshot'});
  const result = h('div', {class: 'form-result', id: 'publish-result'});
  const submit = h('button', {type: 'submit', class: 'btn btn-primary', id: 'publish-submit'}, 'Publish');
  const form = h('form', {class: 'publish-form', id: 'publish-form'},
    nameInput ? [h('label', {for: 'publish-table'}, 'Table'), nameInput] : null,
    h('label', {for: 'publish-rows'}, 'The table\'s new content, as a JSON array of rows'),
    rows,
    h('div', {class: 'form-row'},
      h('label', {class: 'check'}, snapshot, ' publish as a snapshot'),
      h('span', {class: 'spacer'}),
      current ? h('button', {type: 'button', class: 'btn btn-ghost', id: 'publish-fill', onclick: () => { rows.value = current(); }}, 'Start from the current rows') : null,
      submit),
    result);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const tbl = table === null ? nameInput.value.trim() : table;
    if (!tbl) { replace(result, notice('error', 'Give the table a name.')); return; }
    const problem = checkRows(rows.value);
    if (problem) { replace(result, notice('error', problem)); return; }
    submit.disabled = true;
    try {
      const url = api.path('/v1/services', service, 'tables', tbl) + (snapshot.checked ? '?snapshot=true' : '');
      const res = await (await api.request('PUT', url, {body: rows.value})).json();
      replace(result, notice('ok', res.changed
        ? `Published ${service}/${tbl}: seqnum ${res.seqnum}.`
        : `No change: ${service}/${tbl} already holds these rows (seqnum ${res.seqnum}).`));
      if (onPublished) onPublished(tbl, res);
    } catch (err) {
      replace(result, notice('error', `Publish refused: ${err.message}`));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
