// The cluster as the page sees it: every member's HTTP address (learned from
// /v1/cluster/status), its last status, whether it answers, and which member the page follows
// for reads and the watch. Polls every member about once a second; a request that fails on the
// followed member moves on to the next one that answers.

/** How often every member's status is polled, in ms. */
export const POLL_INTERVAL_MS = 1000;
/** How long a status poll may take before the member counts as not answering, in ms. */
export const STATUS_TIMEOUT_MS = 1500;
/** How long a read may take on one member before the next one is tried, in ms. */
export const READ_TIMEOUT_MS = 4000;

/** An HTTP error answered by a node (google.rpc.Status JSON in the body). */
export class ApiError extends Error {
  constructor(httpStatus, code, message, nodeId) {
    super(message);
    this.name = 'ApiError';
    this.httpStatus = httpStatus;
    this.code = code;
    this.nodeId = nodeId;
  }
}

/** gRPC status codes the page distinguishes. */
export const Code = { INVALID_ARGUMENT: 3, NOT_FOUND: 5, RESOURCE_EXHAUSTED: 8, OUT_OF_RANGE: 11, UNAVAILABLE: 14 };

/**
 * Rewrites a wildcard listen address (0.0.0.0, ::) to the host the page was loaded from, so a
 * node started with --http-listen 0.0.0.0:8001 can still be reached.
 */
export function reachableAddress(address, pageHostname) {
  if (!address) return '';
  const m = /^(\[[^\]]*\]|[^:]*):(\d+)$/.exec(address);
  if (!m) return address;
  const host = m[1];
  if (host === '0.0.0.0' || host === '[::]' || host === '::' || host === '') {
    const h = pageHostname.includes(':') && !pageHostname.startsWith('[') ? `[${pageHostname}]` : pageHostname;
    return `${h}:${m[2]}`;
  }
  return address;
}

/** Where the page keeps the bearer token of a cluster running with --auth on (for this tab only). */
const TOKEN_STORAGE_KEY = 'registry-token';

/**
 * The bearer token the page sends: given once in the URL fragment (`#token=<jwt>`, never sent to
 * a server, and removed from the address bar), then kept in sessionStorage. '' for none.
 */
export function pageToken() {
  try {
    const fromHash = new URLSearchParams(globalThis.location?.hash?.slice(1) ?? '').get('token');
    if (fromHash) {
      sessionStorage.setItem(TOKEN_STORAGE_KEY, fromHash);
      history.replaceState(null, '', globalThis.location.pathname + globalThis.location.search);
      return fromHash;
    }
    return sessionStorage.getItem(TOKEN_STORAGE_KEY) ?? '';
  } catch {
    return '';
  }
}

/** Decimal-string (proto3 JSON) 64-bit integers as numbers; registry indexes fit 2^53. */
export const num = (v) => (v === undefined || v === null || v === '' ? 0 : Number(v));

export class Cluster extends EventTarget {
  /**
   * @param {string} homeAddress host:port the page was served from.
   * @param {string} pageProtocol 'http:' or 'https:'.
   * @param {string} pageHostname the page's host name (for wildcard listen addresses).
   */
  constructor(homeAddress, pageProtocol, pageHostname) {
    super();
    this.homeAddress = homeAddress;
    this.protocol = pageProtocol;
    this.hostname = pageHostname;
    /** The bearer token sent with every read and the watch ('' for none). */
    this.token = pageToken();
    /** The node that served the page, once it has answered. */
    this.homeId = '';
    /**
     * id → { id, address (HTTP host:port), status (last answer or null), reachable (bool|null
     * before the first poll), lastOkAt, failingSince (ms or 0), error, voter, inConfig }.
     * Before the home node's first answer it sits under the key `@home`.
     */
    this.nodes = new Map();
    this.nodes.set('@home', this.#blank('@home', homeAddress));
    /** The id the page follows for reads and the watch ('' until one answers). */
    this.current = '';
    this.lastChangeKey = '';
    this.polling = false;
    this.timer = 0;
  }

  #blank(id, address) {
    return { id, address, status: null, reachable: null, lastOkAt: 0, failingSince: 0, error: '', voter: true, inConfig: true };
  }

  start() {
    this.#loop();
  }

  async #loop() {
    const started = performance.now();
    try {
      await this.pollAll();
    } catch (e) {
      console.error('poll failed', e);
    }
    const wait = Math.max(0, POLL_INTERVAL_MS - (performance.now() - started));
    this.timer = setTimeout(() => this.#loop(), wait);
  }

  url(id, path) {
    return `${this.protocol}//${this.nodes.get(id).address}${path}`;
  }

  wsUrl(id, path) {
    // A WebSocket cannot carry an Authorization header: the token goes as access_token (RFC 6750 §2.3).
    const auth = this.token ? `${path.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(this.token)}` : '';
    return `${this.protocol === 'https:' ? 'wss:' : 'ws:'}//${this.nodes.get(id).address}${path}${auth}`;
  }

  /** Polls every known member once, then updates the membership, the leader and the followed node. */
  async pollAll() {
    const polled = new Set();
    // Members learned from an answer in this round are polled in it too.
    for (let round = 0; round < 3; round++) {
      const due = [...this.nodes.values()].filter((n) => n.address && !polled.has(n.id));
      if (due.length === 0) break;
      for (const n of due) polled.add(n.id);
      await Promise.all(due.map((n) => this.pollOne(n.id)));
      // The home node is re-keyed under its id once it answers; it was polled already.
      if (this.homeId) polled.add(this.homeId);
    }
    this.#reconcile();
  }

  /** Polls one member's status; records whether it answered. */
  async pollOne(id) {
    const n = this.nodes.get(id);
    if (!n || !n.address) return;
    try {
      const res = await fetch(this.url(id, '/v1/cluster/status'), { signal: AbortSignal.timeout(STATUS_TIMEOUT_MS), cache: 'no-store' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const st = await res.json();
      this.#learn(n, st);
    } catch (e) {
      const cur = this.nodes.get(id);
      if (!cur) return;
      if (cur.reachable !== false) cur.failingSince = Date.now();
      cur.reachable = false;
      cur.error = e && e.name === 'TimeoutError' ? `no answer within ${STATUS_TIMEOUT_MS} ms` : String((e && e.message) || e);
    }
  }

  /** Records a status answered by node `n` and the members it names. */
  #learn(n, st) {
    let node = n;
    if (n.id === '@home') {
      // The home node names itself: re-key it under its id.
      this.nodes.delete('@home');
      this.homeId = st.nodeId;
      node = this.nodes.get(st.nodeId) ?? this.#blank(st.nodeId, n.address);
      node.address = n.address;
      this.nodes.set(st.nodeId, node);
    } else if (st.nodeId && st.nodeId !== n.id) {
      // The address now belongs to another node (a member replaced); trust what it says.
      node.reachable = false;
      node.failingSince ||= Date.now();
      node.error = `${node.address} now answers as ${st.nodeId}`;
      return;
    }
    node.status = st;
    node.reachable = true;
    node.failingSince = 0;
    node.lastOkAt = Date.now();
    node.error = '';
    for (const m of st.members ?? []) {
      const address = reachableAddress(m.httpAddress, this.hostname);
      let k = this.nodes.get(m.id);
      if (!k) {
        k = this.#blank(m.id, address);
        this.nodes.set(m.id, k);
      } else if (address && !(m.id === this.homeId)) {
        // A member's own answer (httpAddress on its status) wins; otherwise the leader's list.
        if (!k.status || !k.status.httpAddress) k.address = address;
      }
      if (!k.address && address) k.address = address;
    }
    if (st.httpAddress && node.id !== this.homeId) node.address = reachableAddress(st.httpAddress, this.hostname) || node.address;
  }

  /** The configuration as the freshest source knows it (the leader's, else the highest term). */
  #configSource() {
    const up = [...this.nodes.values()].filter((n) => n.reachable && n.status);
    up.sort((a, b) => num(b.status.term) - num(a.status.term) || (b.status.role === 'ROLE_LEADER') - (a.status.role === 'ROLE_LEADER'));
    return up[0]?.status ?? null;
  }

  /**
   * The leader as the members that answer see it: a reachable node that reports ROLE_LEADER in
   * the highest term, or else the leader id the highest-term answers name. '' when none.
   */
  leader() {
    const up = [...this.nodes.values()].filter((n) => n.reachable && n.status);
    let best = null;
    for (const n of up) {
      if (n.status.role === 'ROLE_LEADER' && (!best || num(n.status.term) > num(best.status.term))) best = n;
    }
    const maxTerm = Math.max(0, ...up.map((n) => num(n.status.term)));
    if (best && num(best.status.term) >= maxTerm) return { id: best.id, term: num(best.status.term), reachable: true };
    const named = up.filter((n) => num(n.status.term) === maxTerm && n.status.leaderId).map((n) => n.status.leaderId)[0];
    if (named) return { id: named, term: maxTerm, reachable: Boolean(this.nodes.get(named)?.reachable) };
    return { id: '', term: maxTerm, reachable: false };
  }

  /** Whether node `id` answers and knows a leader (so its reads are fresh and its watch moves). */
  healthy(id) {
    const n = this.nodes.get(id);
    return Boolean(n && n.reachable && n.status && n.status.leaderId && n.status.role !== 'ROLE_CANDIDATE');
  }

  #reconcile() {
    const cfg = this.#configSource();
    if (cfg) {
      const inConfig = new Set((cfg.members ?? []).map((m) => m.id));
      for (const n of this.nodes.values()) {
        if (n.id === '@home') continue;
        n.inConfig = inConfig.has(n.id);
        const m = (cfg.members ?? []).find((x) => x.id === n.id);
        if (m) n.voter = m.voter !== false;
      }
    }
    this.#chooseCurrent();
    this.dispatchEvent(new Event('update'));
  }

  /**
   * Keeps following the current node while it answers and knows a leader; otherwise prefers the
   * home node, then the leader, then any member that answers (one that knows a leader first).
   */
  #chooseCurrent() {
    const before = this.current;
    if (!(this.current && this.healthy(this.current) && this.nodes.get(this.current)?.inConfig !== false)) {
      const ids = [...this.nodes.keys()].filter((id) => id !== '@home').sort();
      const lead = this.leader().id;
      const order = [this.homeId, lead, ...ids].filter((id, i, a) => id && a.indexOf(id) === i);
      const next = order.find((id) => this.healthy(id)) ?? order.find((id) => this.nodes.get(id)?.reachable) ?? (this.nodes.get(this.current)?.reachable ? this.current : '');
      this.current = next ?? '';
    }
    if (this.current !== before) this.dispatchEvent(new CustomEvent('current', { detail: { from: before, to: this.current } }));
  }

  /** A member failed a request: poll it at once, so the page moves on without waiting for the tick. */
  async suspect(id) {
    if (!this.nodes.has(id)) return;
    await this.pollOne(id);
    this.#reconcile();
  }

  /** Ids to try for a read: the followed node first, then the other members that answer. */
  readOrder() {
    const ids = [...this.nodes.keys()].filter((id) => id !== '@home' && this.nodes.get(id).address);
    const rank = (id) => (id === this.current ? 0 : this.healthy(id) ? 1 : this.nodes.get(id).reachable ? 2 : 3);
    ids.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    if (ids.length === 0 && this.nodes.has('@home')) ids.push('@home');
    return ids;
  }

  /**
   * GETs `path` (JSON) from the followed node, and on a network failure, a timeout or
   * UNAVAILABLE from the next member that answers. Other API errors are thrown as ApiError.
   * Resolves with { body, nodeId }.
   */
  async getJson(path) {
    let lastErr = null;
    for (const id of this.readOrder()) {
      try {
        const headers = { accept: 'application/json', ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) };
        const res = await fetch(this.url(id, path), { signal: AbortSignal.timeout(READ_TIMEOUT_MS), cache: 'no-store', headers });
        const text = await res.text();
        let body = null;
        try {
          body = text ? JSON.parse(text) : null;
        } catch {
          body = null;
        }
        if (res.ok) return { body, nodeId: id };
        const err = new ApiError(res.status, body?.code ?? 0, body?.message ?? `HTTP ${res.status}`, id);
        if (err.code === Code.UNAVAILABLE || res.status === 503 || res.status === 502 || res.status === 504) {
          lastErr = err;
          continue;
        }
        throw err;
      } catch (e) {
        if (e instanceof ApiError) throw e;
        lastErr = e;
        this.suspect(id);
      }
    }
    throw lastErr ?? new Error('no member answers');
  }

  /** The label for a node: "n2 (127.0.0.1:8002)". */
  describe(id) {
    const n = this.nodes.get(id);
    if (!n) return id;
    const name = id === '@home' ? 'the node that served this page' : id;
    return n.address ? `${name} (${n.address})` : name;
  }
}
