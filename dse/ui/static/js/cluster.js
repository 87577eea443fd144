// The cluster page: members, leader, lag, quorum and fault tolerance,
// polled every second; leadership transfer and member removal for admins.
import * as api from './api.js';
import {h, replace, badge, fmtInt} from './dom.js';
import {poll, card, pageHead, stat, errorSlot, button, confirmModal, modal, notice, toast} from './widgets.js';

const POLL_MS = 1000;

export function stateKind(state) {
  return {leader: 'ok', follower: 'info', candidate: 'warn'}[state] || 'bad';
}

// faultTolerance is how many more voters can fail before the cluster stops
// committing: the live voters beyond a quorum (Consul's failure tolerance).
export function faultTolerance(members) {
  const voters = members.filter((m) => m.voter);
  const live = voters.filter((m) => m.state !== 'down' && m.reachable);
  const quorum = Math.floor(voters.length / 2) + 1;
  return {voters: voters.length, live: live.length, quorum, tolerance: Math.max(0, live.length - quorum), hasQuorum: live.length >= quorum};
}

// consoleLink is a link to another member's console, when its HTTP
// address looks like one (it is data from the registry: never a URL as is).
function consoleLink(addr) {
  if (!/^[A-Za-z0-9.\-:[\]]+$/.test(addr || '')) return h('span', {class: 'mono'}, addr || '—');
  return h('a', {href: `${location.protocol}//${addr}/ui/`, class: 'mono', rel: 'noreferrer'}, addr);
}

export function mount(el, {session}) {
  const isAdmin = session.can('admin');
  const errs = errorSlot();
  const summary = h('div', {class: 'stats', id: 'cluster-summary'});
  const tolerance = h('div', {class: 'tolerance', id: 'fault-tolerance'});
  const tbody = h('tbody', {id: 'members'});
  const actionHead = isAdmin ? h('th', {class: 'right'}, 'Actions') : null;
  const membersTable = h('table', {class: 'grid'},
    h('thead', null, h('tr', null,
      h('th', null, 'Member'), h('th', null, 'Suffrage'), h('th', null, 'State'), h('th', null, 'Reachable'),
      h('th', null, 'Cluster address'), h('th', null, 'HTTP'), h('th', {class: 'right'}, 'Last index'),
      h('th', {class: 'right'}, 'Lag'), actionHead)),
    tbody);
  let busy = false;
  let refresh = () => {};

  const transfer = async (to) => {
    if (busy) return;
    busy = true;
    try {
      const r = await api.send('POST', '/v1/leader/transfer', to ? {to} : {});
      toast('ok', `Leadership moved to ${r.leader}.`);
    } catch (e) {
      toast('error', `Transfer failed: ${e.message}`);
      errs.set(e, 'leader transfer');
    } finally {
      busy = false;
      refresh();
    }
  };

  const remove = async (id, force) => {
    const url = api.path('/v1/members', id) + (force ? '?force=true' : '');
    try {
      await api.send('DELETE', url);
      toast('ok', `Member ${id} removed.`);
      refresh();
    } catch (e) {
      if (e.code === 'quorum' && !force) {
        // The CLI's refusal, and --force behind a second confirmation.
        modal(`Removing ${id} would lose quorum`, h('div', null,
          notice('error', e.message),
          h('p', null, 'Forcing it removes the member anyway: the voters left may not be able to elect a leader, and the cluster may stop committing until they can.')), [
          ['Cancel', 'default', null, 'quorum-cancel'],
          ['Remove anyway (--force)', 'danger', () => remove(id, true), 'quorum-force'],
        ], {testid: 'quorum-refusal'});
      } else {
        toast('error', `Remove failed: ${e.message}`);
        errs.set(e, `remove ${id}`);
      }
    }
  };

  const askRemove = async (m) => {
    const ok = await confirmModal(`Remove member ${m.id}?`,
      `${m.id} (${m.address}) leaves the cluster's Raft configuration and no longer votes or takes the log. Restarted with --join, its agent asks to be added again.`,
      'Remove member', {danger: true, testid: 'confirm-remove'});
    if (ok) await remove(m.id, false);
  };

  const render = (members, st) => {
    const leader = members.find((m) => m.leader);
    const ft = faultTolerance(members);
    replace(summary,
      stat('Leader', leader ? leader.id : 'none', leader ? 'ok' : 'bad'),
      stat('Term', fmtInt(st.term)),
      stat('Commit index', fmtInt(st.commit_index)),
      stat('Applied index', fmtInt(st.applied_index), null, `as applied on ${st.id}`),
      stat('Voters', `${ft.live} / ${ft.voters} up`, ft.live === ft.voters ? 'ok' : ft.hasQuorum ? 'warn' : 'bad'),
      stat('Fault tolerance', String(ft.tolerance), ft.tolerance > 0 ? 'ok' : ft.hasQuorum ? 'warn' : 'bad',
        'voters that can fail before the cluster stops committing'));
    let text;
    if (!ft.hasQuorum) {
      text = notice('error', `No quorum: ${ft.live} of ${ft.voters} voters are up, ${ft.quorum} are needed. The cluster cannot commit.`);
    } else if (ft.tolerance === 0) {
      text = notice('warn', `${ft.live} of ${ft.voters} voters are up and a quorum is ${ft.quorum}: one more failure stops the cluster from committing.`);
    } else {
      text = notice('ok', `${ft.tolerance} voter${ft.tolerance === 1 ? '' : 's'} can fail before the cluster stops committing (quorum ${ft.quorum} of ${ft.voters}).`);
    }
    replace(tolerance, text);
    tbody.replaceChildren(...members.map((m) => {
      const down = m.state === 'down';
      const lag = !down && leader ? Math.max(0, leader.last_index - m.last_index) : null;
      const actions = [];
      if (isAdmin) {
        if (m.voter && !m.leader && !down) actions.push(button('Make leader', () => transfer(m.id), {kind: 'ghost', testid: 'transfer-' + m.id}));
        actions.push(button('Remove', () => askRemove(m), {kind: 'danger-ghost', testid: 'remove-' + m.id}));
      }
      return h('tr', {class: down ? 'row-down' : null, 'data-member': m.id, 'data-state': m.state},
        h('td', null, h('strong', {class: 'mono'}, m.id), m.leader ? badge('leader', 'ok') : null, m.id === st.id ? badge('this node', 'muted') : null),
        h('td', null, m.voter ? 'voter' : 'non-voter'),
        h('td', {class: 'member-state'}, badge(m.state, stateKind(m.state))),
        h('td', null, m.reachable ? badge('yes', 'ok') : badge('no', 'bad')),
        h('td', {class: 'mono'}, m.address),
        h('td', null, consoleLink(m.http)),
        h('td', {class: 'right mono'}, down ? '—' : fmtInt(m.last_index)),
        h('td', {class: ['right', 'mono', lag > 100 ? 'lagging' : null]}, lag === null ? '—' : fmtInt(lag)),
        isAdmin ? h('td', {class: 'right actions'}, actions) : null);
    }));
  };

  const tick = async (signal) => {
    try {
      const [members, st] = await Promise.all([api.get('/v1/members', {signal}), api.get('/v1/status', {signal})]);
      errs.set(null);
      render(members, st);
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      errs.set(e, 'members');
    }
  };

  replace(el,
    pageHead('Cluster', 'Raft members as this node sees them, refreshed every second.',
      isAdmin ? button('Transfer leadership', () => transfer(''), {kind: 'default', testid: 'transfer-any'}) : null),
    errs.el, summary, tolerance,
    card('Members', h('div', {class: 'table-wrap'}, membersTable)));
  let stop = poll(tick, POLL_MS);
  refresh = () => { stop(); stop = poll(tick, POLL_MS); };
  return () => stop();
}
