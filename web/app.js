// The dashboard: members (polled), the change feed (watch over WebSocket), the agents table
// and an agent's detail. It follows whichever member answers; see cluster.js and watch.js.

import { Agents } from './agents.js';
import { Cluster, num } from './cluster.js';
import { breakable, clock, enumText, h } from './dom.js';
import { Watch } from './watch.js';

/** The feed keeps this many entries, newest first. */
export const FEED_MAX_ITEMS = 200;

const $ = (id) => document.getElementById(id);

const cluster = new Cluster(location.host, location.protocol, location.hostname);
const watch = new Watch(cluster);

// ---------------------------------------------------------------------------------------------
// The feed.

class Feed {
  constructor() {
    this.list = $('feed-list');
    this.pause = $('feed-pause');
    this.watchState = $('watch-state');
    this.held = [];
    this.stateText = '';
    this.pause.addEventListener('change', () => {
      if (!this.pause.checked) {
        const held = this.held;
        this.held = [];
        for (const el of held) this.#insert(el);
      }
      this.#showState();
    });
  }

  minRevision() {
    return watch.lastRevision;
  }

  /** One change, as it arrived. */
  add(event, nodeId) {
    const a = event.agent ?? {};
    const del = event.type === 'EVENT_TYPE_DELETE';
    const now = new Date();
    const el = h(
      'li',
      { 'data-revision': event.revision, 'data-id': a.id, 'data-type': del ? 'delete' : 'put' },
      h('span', { class: 'rev' }, `#${event.revision}`),
      h('span', { class: `type ${del ? 'delete' : 'put'}` }, del ? (event.expired ? 'EXPIRED' : 'DELETE') : 'PUT'),
      h('button', { type: 'button', class: 'link agent-id', 'aria-describedby': 'agents-row-hint' }, breakable(a.id ?? '?')),
      h('span', { class: 'time' }, h('time', { datetime: now.toISOString() }, clock(now.getTime())), ` via ${nodeId}`, del && event.expired ? ' · lease expired' : ''),
    );
    el.querySelector('button').addEventListener('click', () => agents.open(a.id, true));
    this.#queue(el);
  }

  /** A note in the feed: where the stream (re)started, a gap. */
  marker(text) {
    const now = new Date();
    this.#queue(h('li', { class: 'marker' }, text, ' ', h('time', { datetime: now.toISOString() }, `(${clock(now.getTime())})`)));
  }

  #queue(el) {
    if (this.pause.checked) {
      this.held.push(el);
      if (this.held.length > FEED_MAX_ITEMS) this.held.shift();
      this.#showState();
      return;
    }
    this.#insert(el);
  }

  #insert(el) {
    this.list.prepend(el);
    while (this.list.childElementCount > FEED_MAX_ITEMS) this.list.lastElementChild.remove();
  }

  setWatchText(text) {
    this.stateText = text;
    this.#showState();
  }

  #showState() {
    const held = this.pause.checked ? ` Paused: ${this.held.length} new change${this.held.length === 1 ? '' : 's'} held.` : '';
    this.watchState.textContent = this.stateText + held;
  }
}

const feed = new Feed();
const agents = new Agents(cluster, feed);

// ---------------------------------------------------------------------------------------------
// Members, the banner and the status line.

/** Since when each reachable member has known no leader (ms), for the banner. */
const leaderlessSince = new Map();
let bannerKey = '';
let statusText = '';

function renderMembers() {
  const leader = cluster.leader();
  const leaderNode = leader.id ? cluster.nodes.get(leader.id) : undefined;
  const leaderCommit = leaderNode?.reachable && leaderNode.status ? num(leaderNode.status.commitIndex) : null;
  const ids = [...cluster.nodes.keys()].filter((id) => id !== '@home' || !cluster.homeId).sort();
  const rows = ids.map((id) => {
    const n = cluster.nodes.get(id);
    const st = n.reachable ? n.status : null;
    const isLeader = id === leader.id;
    const badges = [
      isLeader ? h('span', { class: 'badge ok' }, 'leader') : null,
      !n.voter ? h('span', { class: 'badge' }, 'learner') : null,
      !n.inConfig ? h('span', { class: 'badge bad' }, 'not a member') : null,
    ];
    const notes = [id === cluster.homeId ? 'served this page' : '', id === cluster.current ? 'page reads here' : ''].filter(Boolean).join(', ');
    let reach;
    if (!n.address) reach = 'address unknown';
    else if (n.reachable === null) reach = 'not polled yet';
    else if (n.reachable) reach = st && !st.leaderId ? 'yes, knows no leader' : 'yes';
    else reach = `unreachable since ${clock(n.failingSince)}`;
    const lag = st && leaderCommit !== null ? String(Math.max(0, leaderCommit - num(st.appliedIndex))) : '—';
    return h(
      'tr',
      { 'data-id': id, 'data-reachable': String(Boolean(n.reachable)), 'data-role': st ? st.role : 'unknown', class: [isLeader ? 'leader' : '', n.reachable === false ? 'unreachable' : ''].join(' ').trim() || null },
      h('th', { scope: 'row' }, id === '@home' ? 'this node' : id, badges, notes ? h('div', { class: 'you' }, notes) : null),
      h('td', { class: 'reach', title: n.error || null }, reach),
      h('td', { class: 'role' }, st ? enumText(st.role, 'ROLE_') : '—'),
      h('td', { class: 'num' }, st ? String(num(st.term)) : '—'),
      h('td', { class: 'num' }, st ? String(num(st.commitIndex)) : '—'),
      h('td', { class: 'num' }, st ? String(num(st.appliedIndex)) : '—'),
      h('td', { class: 'num' }, lag),
      h('td', { class: 'mono' }, n.address || '—'),
    );
  });
  document.querySelector('#members-table tbody').replaceChildren(...rows);

  const up = [...cluster.nodes.values()].filter((n) => n.reachable).length;
  const total = ids.length;
  let summary;
  if (leader.id) summary = `Leader ${leader.id}, term ${leader.term}${leaderCommit !== null ? `, commit index ${leaderCommit}` : leader.reachable ? '' : ' (not answering)'}. ${up} of ${total} members answer.`;
  else summary = up ? `No leader known (term ${leader.term}): an election may be under way. ${up} of ${total} members answer.` : 'No member answers.';
  $('members-summary').textContent = summary;
  return leader;
}

function renderBanner() {
  const now = Date.now();
  for (const n of cluster.nodes.values()) {
    if (n.reachable && n.status && !n.status.leaderId) {
      if (!leaderlessSince.has(n.id)) leaderlessSince.set(n.id, now);
    } else leaderlessSince.delete(n.id);
  }
  const homeId = cluster.homeId || '@home';
  const home = cluster.nodes.get(homeId);
  const lines = [];
  const following = cluster.current && cluster.current !== homeId ? ` The page now follows ${cluster.describe(cluster.current)}.` : '';
  if (home && home.reachable === false) {
    lines.push(`Cut off from ${cluster.describe(homeId)}, the node that served this page: no answer since ${clock(home.failingSince)}.${following}`);
  } else if (home && leaderlessSince.has(homeId)) {
    lines.push(`${cluster.describe(homeId)}, the node that served this page, has known no leader since ${clock(leaderlessSince.get(homeId))}: it may be cut off from the majority.${following}`);
  }
  if (cluster.current && cluster.current !== homeId && !cluster.healthy(cluster.current)) {
    const cur = cluster.nodes.get(cluster.current);
    lines.push(cur?.reachable === false ? `${cluster.describe(cluster.current)} does not answer either.` : `${cluster.describe(cluster.current)} knows no leader either.`);
  }
  const anyUp = [...cluster.nodes.values()].some((n) => n.reachable);
  if (!anyUp && [...cluster.nodes.values()].every((n) => n.reachable === false)) {
    const since = Math.min(...[...cluster.nodes.values()].map((n) => n.failingSince || now));
    lines.splice(0, lines.length, `No member of the cluster answers since ${clock(since)}. The page keeps trying.`);
  }
  const key = lines.join('\n');
  if (key === bannerKey) return;
  bannerKey = key;
  $('banner').replaceChildren(...lines.map((l) => h('p', {}, l)));
}

function renderStatus(leader) {
  const parts = [];
  parts.push(leader.id ? `Leader ${leader.id} (term ${leader.term})` : 'No leader known');
  if (cluster.current) parts.push(`reading from ${cluster.current}`);
  parts.push(watch.state === 'open' ? `watching ${watch.nodeId}` : watch.state === 'idle' ? 'watch not started' : 'watch reconnecting');
  const text = `${parts.join(' · ')}.`;
  if (text !== statusText) {
    statusText = text;
    $('status').textContent = text;
  }
}

function renderAll() {
  const leader = renderMembers();
  renderBanner();
  renderStatus(leader);
}

// ---------------------------------------------------------------------------------------------
// Wiring.

let loadedOnce = false;
cluster.addEventListener('update', () => {
  renderAll();
  if (!loadedOnce && cluster.current) {
    loadedOnce = true;
    agents.load();
  }
});
cluster.addEventListener('current', (e) => {
  if (loadedOnce && e.detail.to) agents.load({ quiet: true });
});

let watchedOnce = false;
watch.addEventListener('connected', (e) => {
  const { nodeId, startRevision } = e.detail;
  feed.marker(watchedOnce ? `Resumed on ${nodeId} from revision ${startRevision}.` : `Watching ${nodeId} from revision ${startRevision}.`);
  watchedOnce = true;
  renderStatus(cluster.leader());
});
watch.addEventListener('state', (e) => {
  feed.setWatchText(e.detail.text);
  renderStatus(cluster.leader());
});
watch.addEventListener('gap', (e) => {
  feed.marker(`Changes from revision ${e.detail.from} are no longer kept by the member; continuing from now (the table is read again). ${e.detail.message}`);
  agents.load({ quiet: true });
});
watch.addEventListener('event', (e) => {
  feed.add(e.detail.event, e.detail.nodeId);
  agents.changed(e.detail.event);
});

// For debugging from the console.
window.dashboard = { cluster, watch, feed, agents };

cluster.start();
