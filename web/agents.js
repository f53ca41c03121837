// The agents table (Find with filters and page tokens) and one agent's detail.

import { ApiError, Code, num } from './cluster.js';
import { breakable, clock, enumText, h } from './dom.js';

/** Changes seen in the feed are gathered this long before the table is read again, in ms. */
export const REFRESH_DEBOUNCE_MS = 250;
/** ...but the table is never left stale longer than this while changes keep coming, in ms. */
export const REFRESH_MAX_WAIT_MS = 1500;

/** Parses "a=b, c=d" into [['a','b'],['c','d']]; throws with a message on a malformed pair. */
export function parseLabels(text) {
  const out = [];
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i <= 0) throw new Error(`"${part}" is not key=value`);
    out.push([part.slice(0, i).trim(), part.slice(i + 1).trim()]);
  }
  return out;
}

export class Agents {
  /**
   * @param {import('./cluster.js').Cluster} cluster
   * @param {{ minRevision: () => number }} feed the highest revision the watch delivered
   */
  constructor(cluster, feed) {
    this.cluster = cluster;
    this.feed = feed;
    this.form = document.getElementById('filters');
    this.tbody = document.querySelector('#agents-table tbody');
    this.caption = document.getElementById('agents-caption');
    this.state = document.getElementById('agents-state');
    this.prev = document.getElementById('page-prev');
    this.nextBtn = document.getElementById('page-next');
    this.pageNumber = document.getElementById('page-number');
    this.labelInput = document.getElementById('f-label');
    this.labelError = document.getElementById('f-label-error');
    this.detail = document.getElementById('detail');
    this.detailHeading = document.getElementById('detail-heading');
    this.detailState = document.getElementById('detail-state');
    this.detailBody = document.getElementById('detail-body');

    /** Page tokens of the pages before and at the current one: tokens[i] opens page i + 1. */
    this.tokens = [''];
    this.nextToken = '';
    this.query = {};
    this.rows = new Map(); // id → modRevision shown
    this.selected = '';
    this.loading = false;
    this.dirty = false;
    this.debounceTimer = 0;
    this.firstDirtyAt = 0;
    this.seq = 0;
    this.stateText = '';

    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (this.#readForm()) {
        this.tokens = [''];
        this.load();
      }
    });
    this.form.addEventListener('reset', () => {
      setTimeout(() => {
        this.#readForm();
        this.tokens = [''];
        this.load();
      });
    });
    this.prev.addEventListener('click', () => {
      if (this.tokens.length > 1) {
        this.tokens.pop();
        this.load();
      }
    });
    this.nextBtn.addEventListener('click', () => {
      if (this.nextToken) {
        this.tokens.push(this.nextToken);
        this.load();
      }
    });
    this.tbody.addEventListener('click', (e) => {
      const tr = e.target.closest('tr[data-id]');
      if (tr) this.open(tr.dataset.id, e.target.closest('button') !== null);
    });
    document.getElementById('detail-close').addEventListener('click', () => this.close());
    this.#fromHash();
    this.#readForm();
  }

  /** Filters kept in the URL fragment, so a reload or a shared link keeps them. */
  #fromHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    for (const name of ['capability', 'kind', 'label', 'health', 'namePrefix', 'pageSize']) {
      const v = p.get(name);
      if (v !== null && this.form.elements[name]) this.form.elements[name].value = v;
    }
  }

  #readForm() {
    const f = this.form.elements;
    let labels;
    try {
      labels = parseLabels(f.label.value);
      this.labelInput.removeAttribute('aria-invalid');
      this.labelError.textContent = '';
    } catch (e) {
      this.labelInput.setAttribute('aria-invalid', 'true');
      this.labelError.textContent = `Labels: ${e.message}.`;
      this.labelInput.focus();
      return false;
    }
    this.query = {
      capability: f.capability.value.trim(),
      kind: f.kind.value.trim(),
      labels,
      health: f.health.value,
      namePrefix: f.namePrefix.value,
      pageSize: f.pageSize.value,
    };
    const keep = new URLSearchParams();
    for (const name of ['capability', 'kind', 'label', 'health', 'namePrefix']) if (f[name].value) keep.set(name, f[name].value);
    if (f.pageSize.value !== '25') keep.set('pageSize', f.pageSize.value);
    const hash = keep.toString();
    history.replaceState(null, '', hash ? `#${hash}` : location.pathname + location.search);
    return true;
  }

  #path() {
    const q = this.query;
    const p = new URLSearchParams();
    if (q.capability) p.set('capability', q.capability);
    if (q.kind) p.set('kind', q.kind);
    for (const [k, v] of q.labels) p.append('label', `${k}=${v}`);
    if (q.health) p.set('health', q.health);
    if (q.namePrefix) p.set('namePrefix', q.namePrefix);
    p.set('pageSize', q.pageSize || '25');
    const token = this.tokens[this.tokens.length - 1];
    if (token) p.set('pageToken', token);
    p.set('consistency', 'CONSISTENCY_SERIALIZABLE');
    return `/v1/agents?${p}`;
  }

  /** The feed saw changes: read the page again soon (debounced, at most REFRESH_MAX_WAIT_MS late). */
  changed(event) {
    if (this.selected && event?.agent?.id === this.selected) this.#refreshDetail(event);
    const now = performance.now();
    if (!this.firstDirtyAt) this.firstDirtyAt = now;
    clearTimeout(this.debounceTimer);
    const wait = Math.max(0, Math.min(REFRESH_DEBOUNCE_MS, REFRESH_MAX_WAIT_MS - (now - this.firstDirtyAt)));
    this.debounceTimer = setTimeout(() => {
      this.firstDirtyAt = 0;
      this.load({ quiet: true });
    }, wait);
  }

  #say(text) {
    // Only announce what changed, so a refresh every second does not chatter.
    if (text !== this.stateText) {
      this.stateText = text;
      this.state.textContent = text;
    }
  }

  /** Reads the current page. One read at a time; a change during a read triggers one more. */
  async load({ quiet = false, attempt = 0 } = {}) {
    if (this.loading) {
      this.dirty = true;
      return;
    }
    this.loading = true;
    const seq = ++this.seq;
    if (!quiet) this.#say('Loading agents…');
    const wanted = this.feed.minRevision();
    let backToFirstPage = false;
    try {
      const { body, nodeId } = await this.cluster.getJson(this.#path());
      if (seq !== this.seq) return;
      const revision = num(body?.revision);
      this.nextToken = body?.nextPageToken ?? '';
      this.#render(body?.agents ?? [], revision, nodeId);
      if (revision < wanted && attempt < 5) {
        // Served by a member that has not applied what the feed showed yet: read again shortly.
        setTimeout(() => this.load({ quiet: true, attempt: attempt + 1 }), 200);
      }
    } catch (e) {
      if (e instanceof ApiError && e.code === Code.INVALID_ARGUMENT && this.tokens.length > 1) {
        // A page token the node does not take (another query, another version): back to page 1.
        this.tokens = [''];
        backToFirstPage = true;
      } else {
        this.#say(`Could not load agents: ${e.message}`);
      }
    } finally {
      this.loading = false;
      if (this.dirty || backToFirstPage) {
        this.dirty = false;
        this.load({ quiet: true });
      }
    }
  }

  #render(agents, revision, nodeId) {
    const page = this.tokens.length;
    const focusedId = document.activeElement?.closest?.('#agents-table tr[data-id]')?.dataset.id;
    const before = this.rows;
    this.rows = new Map();
    const rows = agents.map((a) => {
      const mod = num(a.modRevision);
      const changed = before.size > 0 && before.get(a.id) !== mod;
      this.rows.set(a.id, mod);
      const caps = a.capabilities ?? [];
      return h(
        'tr',
        { 'data-id': a.id, class: [changed ? 'changed' : '', a.id === this.selected ? 'selected' : ''].join(' ').trim() || null },
        h(
          'th',
          { scope: 'row', class: 'id' },
          h('button', { type: 'button', class: 'link', 'aria-current': a.id === this.selected ? 'true' : null, 'aria-describedby': 'agents-row-hint' }, breakable(a.id)),
          a.name && a.name !== a.id ? h('div', { class: 'name' }, a.name) : null,
        ),
        h('td', { class: 'nowrap' }, a.kind ?? ''),
        h('td', {}, a.version ?? ''),
        h('td', {}, caps.length > 4 ? `${caps.slice(0, 4).join(', ')} +${caps.length - 4}` : caps.join(', ')),
        h('td', { class: 'nowrap' }, enumText(a.health, 'HEALTH_')),
        h('td', { class: 'num' }, String(mod)),
      );
    });
    if (rows.length === 0) rows.push(h('tr', {}, h('td', { colspan: 6 }, page === 1 ? 'No agent matches these filters.' : 'No more agents.')));
    this.tbody.replaceChildren(...rows);
    if (focusedId) this.tbody.querySelector(`tr[data-id="${CSS.escape(focusedId)}"] button`)?.focus();
    this.caption.textContent = `Agents matching the filters, page ${page}: ${agents.length} shown, read from ${nodeId} at revision ${revision}.`;
    this.pageNumber.textContent = `Page ${page}`;
    this.prev.disabled = this.tokens.length <= 1;
    this.nextBtn.disabled = !this.nextToken;
    this.#say(`Page ${page}: ${agents.length} agent${agents.length === 1 ? '' : 's'}${this.nextToken ? ', more on the next page' : ''}.`);
  }

  /** Shows agent `id` in the detail panel; moves focus there when asked from the keyboard/button. */
  async open(id, focus = true) {
    this.selected = id;
    for (const tr of this.tbody.querySelectorAll('tr[data-id]')) {
      const on = tr.dataset.id === id;
      tr.classList.toggle('selected', on);
      const b = tr.querySelector('button');
      if (on) b?.setAttribute('aria-current', 'true');
      else b?.removeAttribute('aria-current');
    }
    this.detail.hidden = false;
    this.detailHeading.textContent = id;
    this.detailState.textContent = 'Loading…';
    this.detailBody.replaceChildren();
    if (focus) this.detailHeading.focus();
    await this.#loadDetail(id);
  }

  close() {
    const id = this.selected;
    this.selected = '';
    this.detail.hidden = true;
    for (const tr of this.tbody.querySelectorAll('tr.selected')) {
      tr.classList.remove('selected');
      tr.querySelector('button')?.removeAttribute('aria-current');
    }
    this.tbody.querySelector(`tr[data-id="${CSS.escape(id)}"] button`)?.focus();
  }

  async #loadDetail(id) {
    try {
      const { body, nodeId } = await this.cluster.getJson(`/v1/agents/${encodeURIComponent(id)}`);
      if (this.selected !== id) return;
      this.#renderDetail(body.agent, num(body.revision), nodeId);
    } catch (e) {
      if (this.selected !== id) return;
      if (e instanceof ApiError && e.code === Code.NOT_FOUND) {
        this.detailState.textContent = `${id} is not registered (answered by ${e.nodeId}).`;
        this.detailBody.replaceChildren();
      } else {
        this.detailState.textContent = `Could not read ${id}: ${e.message}`;
      }
    }
  }

  #refreshDetail(event) {
    if (event.type === 'EVENT_TYPE_DELETE') {
      this.detailState.textContent = `Removed at revision ${event.revision}${event.expired ? ' (its lease expired)' : ''}.`;
    } else {
      this.#renderDetail(event.agent, num(event.revision), 'the watch');
    }
  }

  #renderDetail(a, revision, source) {
    this.detailHeading.textContent = a.name && a.name !== a.id ? `${a.name} (${a.id})` : a.id;
    this.detailState.textContent = `As of revision ${revision}, from ${source}, at ${clock(Date.now())}.`;
    const lease = num(a.leaseTtlSeconds);
    const expires = num(a.leaseExpiresUnixMs);
    const kv = (obj, keyName, valueName, caption) => {
      const entries = Object.entries(obj ?? {}).sort(([x], [y]) => x.localeCompare(y));
      if (entries.length === 0) return h('p', {}, 'none');
      return h(
        'table',
        {},
        h('caption', { class: 'visually-hidden' }, caption),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, keyName), h('th', { scope: 'col' }, valueName))),
        h('tbody', {}, entries.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, h('code', {}, k)), h('td', {}, h('code', {}, v))))),
      );
    };
    const item = (term, ...value) => [h('dt', {}, term), h('dd', {}, ...value)];
    this.detailBody.replaceChildren(
      h(
        'dl',
        {},
        item('Id', h('code', {}, a.id)),
        item('Name', a.name || '—'),
        item('Kind', a.kind || '—'),
        item('Version', a.version || '—'),
        item('Health', enumText(a.health, 'HEALTH_')),
        item('Capabilities', (a.capabilities ?? []).length ? (a.capabilities ?? []).join(', ') : 'none'),
        item('Lease', lease ? `${lease} s${expires ? `, expires at ${clock(expires)} unless renewed` : ''}` : 'none'),
        item('Created', `revision ${num(a.createRevision)}`),
        item('Modified', `revision ${num(a.modRevision)}`),
      ),
      h('h3', {}, 'Description'),
      h('p', { class: 'description' }, a.description || '—'),
      h('h3', {}, 'Endpoints'),
      kv(a.endpoints, 'Name', 'Address', `Endpoints of ${a.id}`),
      h('h3', {}, 'Labels'),
      kv(a.labels, 'Key', 'Value', `Labels of ${a.id}`),
    );
  }
}
