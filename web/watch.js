// The watch stream over WebSocket (/v1/watch/ws), on the member the page follows. When that
// member fails or loses the leader, the stream resumes on another one from the last revision
// seen plus one, so no change is missed or shown twice.

import { Code, num } from './cluster.js';

/** First reconnect delay after a failed stream, in ms; doubles up to WATCH_MAX_BACKOFF_MS. */
export const WATCH_MIN_BACKOFF_MS = 150;
export const WATCH_MAX_BACKOFF_MS = 2000;
/** A stream that has not opened within this long is given up, in ms. */
export const WATCH_OPEN_TIMEOUT_MS = 3000;

export class Watch extends EventTarget {
  /** @param {import('./cluster.js').Cluster} cluster */
  constructor(cluster) {
    super();
    this.cluster = cluster;
    /** The next revision to ask for (0 until pinned: "from now" is pinned to applied + 1). */
    this.next = 0;
    /** The highest revision delivered. */
    this.lastRevision = 0;
    this.ws = null;
    this.nodeId = '';
    this.startRevision = 0;
    this.state = 'idle';
    this.failures = 0;
    this.retryTimer = 0;
    this.openTimer = 0;
    cluster.addEventListener('update', () => this.#check());
  }

  /** Starts once the followed member is known; re-checks on every cluster update. */
  #check() {
    if (this.ws) {
      // Leave a member that stopped answering or lost its leader for the one the page now follows.
      if (this.nodeId !== this.cluster.current && !this.cluster.healthy(this.nodeId) && this.cluster.current) this.#drop(`${this.nodeId} stopped answering`);
      return;
    }
    if (!this.retryTimer && this.cluster.current) this.#connect();
  }

  #setState(state, text) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, text, nodeId: this.nodeId } }));
  }

  #connect() {
    const id = this.cluster.current;
    const node = this.cluster.nodes.get(id);
    if (!id || !node || !node.address) return;
    if (this.next === 0) {
      // "From now" pinned to the member's applied index + 1 (its last status), so that a stream
      // resumed elsewhere continues exactly where this one would have started.
      if (!node.status) return;
      this.next = num(node.status.appliedIndex) + 1;
    }
    const start = this.next;
    this.nodeId = id;
    this.startRevision = start;
    const ws = new WebSocket(this.cluster.wsUrl(id, `/v1/watch/ws?startRevision=${start}`));
    this.ws = ws;
    this.#setState('connecting', `Connecting to ${this.cluster.describe(id)} from revision ${start}…`);
    this.openTimer = setTimeout(() => {
      if (this.ws === ws && ws.readyState === WebSocket.CONNECTING) this.#drop(`${id} did not open the stream in time`);
    }, WATCH_OPEN_TIMEOUT_MS);
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      clearTimeout(this.openTimer);
      this.#setState('open', `Following ${this.cluster.describe(id)} from revision ${start}.`);
      this.dispatchEvent(new CustomEvent('connected', { detail: { nodeId: id, startRevision: start } }));
    });
    ws.addEventListener('message', (m) => {
      if (this.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      if (msg.error) {
        this.#onStreamError(ws, msg.error);
        return;
      }
      this.failures = 0;
      const rev = num(msg.revision);
      // A resumed stream starts at `start`; anything before was delivered already. Several
      // events may share one revision (a lease expiry removes several agents in one entry).
      if (rev < start || rev < this.lastRevision) return;
      this.lastRevision = rev;
      this.next = rev + 1;
      this.dispatchEvent(new CustomEvent('event', { detail: { event: msg, nodeId: id } }));
    });
    ws.addEventListener('close', (ev) => {
      if (this.ws !== ws) return;
      clearTimeout(this.openTimer);
      this.ws = null;
      this.#retry(id, ev.code === 1000 ? 'the stream ended' : `the stream closed (code ${ev.code})`);
    });
  }

  #onStreamError(ws, error) {
    if (error.code === Code.OUT_OF_RANGE) {
      // The member no longer keeps the history from `next`: go on from now and say so.
      const from = this.next;
      this.next = 0;
      this.dispatchEvent(new CustomEvent('gap', { detail: { from, message: error.message ?? '' } }));
    }
    this.#setState('error', `${this.nodeId}: ${error.message ?? 'watch error'} (code ${error.code})`);
    this.ws = null;
    try {
      ws.close();
    } catch {
      /* already closed */
    }
    this.#retry(this.nodeId, error.message ?? 'watch error');
  }

  #drop(reason) {
    const ws = this.ws;
    this.ws = null;
    clearTimeout(this.openTimer);
    try {
      ws?.close();
    } catch {
      /* already closed */
    }
    this.#retry(this.nodeId, reason);
  }

  #retry(id, reason) {
    this.failures++;
    const delay = Math.min(WATCH_MAX_BACKOFF_MS, WATCH_MIN_BACKOFF_MS * 2 ** Math.min(this.failures - 1, 8));
    this.#setState('retrying', `Watch on ${id} lost: ${reason}. Resuming from revision ${this.next || 'now'}…`);
    this.dispatchEvent(new CustomEvent('lost', { detail: { nodeId: id, reason } }));
    this.cluster.suspect(id);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = 0;
      this.#check();
    }, delay);
  }
}
