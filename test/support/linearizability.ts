/**
 * A linearizability checker for registry histories.
 *
 * The simulator records each client operation as an interval `[call, ret]` together with what
 * the client observed; this module decides whether some total order of the operations, each
 * taking effect at one instant inside its interval, is legal for a per-key register model.
 *
 * Method (after Porcupine, github.com/anishathalye/porcupine, and Knossos):
 * - P-compositionality (Horn & Kroening 2015): a history of a map of independent registers is
 *   linearizable iff every per-key sub-history is, so the history is partitioned by key and
 *   each key is checked on its own.
 * - Per key, the Wing & Gong (1993) backtracking search over the list of call/return entries
 *   sorted by time: the first pending call may be linearized when the model allows it, a return
 *   entry of a not-yet-linearized operation forces a backtrack.
 * - Lowe's memoization ("Testing for linearizability", 2017): a cache of
 *   (set of linearized operations, model state) configurations already explored; reaching one
 *   again cannot succeed where it failed before, so it is pruned.
 *
 * Recording rules for callers:
 * - An operation known to have failed (rejected before taking effect) must NOT be recorded.
 * - An operation whose outcome is indeterminate (timeout, lost connection, ambiguous error) is
 *   recorded with `outcome: 'unknown'`: its `ret` is ignored and treated as +infinity, and the
 *   checker may also omit it entirely (it never took effect).
 * - A `get` with an indeterminate outcome carries no information and must NOT be recorded.
 */

/**
 * One client operation as observed from outside: invoked at `call`, completed at `ret`
 * (simulated time, any unit; `ret >= call`).
 *
 * - `register(key, value)` sets the key's value (create or replace).
 * - `deregister(key)` removes the key; with `outcome: 'ok'` and `deleted` present it reports
 *   whether the key existed just before (`deleted` absent means "not observed").
 * - `get(key)` returns the value, or `null` when absent; always `outcome: 'ok'`.
 *
 * `outcome: 'unknown'` marks a register/deregister that may have taken effect at any instant
 * after `call`, or never; its `ret` and `deleted` are ignored. `clientId` is informational only.
 *
 * Conditional writes (etcd's compare-and-set): with `expected`, a register or deregister takes
 * effect only if the key's value is `expected` at that instant (`null`: the key is absent, a
 * create-only register); `outcome: 'conflict'` reports that it did not (the key held something
 * else), which is itself an observation. Callers turn an expected revision into the value
 * written at that revision, which is exact when every write writes a value of its own.
 */
export type Operation =
  | { kind: 'register'; key: string; value: string; call: number; ret: number; outcome: 'ok' | 'unknown' | 'conflict'; expected?: string | null; clientId?: string }
  | { kind: 'deregister'; key: string; call: number; ret: number; outcome: 'ok' | 'unknown' | 'conflict'; deleted?: boolean; expected?: string; clientId?: string }
  | { kind: 'get'; key: string; call: number; ret: number; outcome: 'ok'; found: string | null; clientId?: string };

/** Options of {@link checkLinearizable}. */
export interface CheckOptions {
  /**
   * Search budget per key: the number of distinct (linearized set, model state) configurations
   * the search may visit for one key before giving up with `ok: 'unknown'`. Must be a positive
   * integer; defaults to {@link DEFAULT_MAX_STATES}.
   */
  maxStates?: number;
}

/**
 * Outcome of {@link checkLinearizable}.
 *
 * - `{ ok: true }`: every per-key sub-history is linearizable.
 * - `{ ok: false, key, reason, history }`: the sub-history of `key` is not linearizable (so the
 *   whole history is not); `reason` is a human-readable account of the deepest partial
 *   linearization and the operation that could not follow it; `history` is that key's
 *   sub-history sorted by call time (then return time).
 * - `{ ok: 'unknown', key, reason }`: no key was found non-linearizable, but the search on `key`
 *   exceeded `maxStates` before reaching a verdict.
 */
export type CheckResult =
  | { ok: true }
  | { ok: false; key: string; reason: string; history: Operation[] }
  | { ok: 'unknown'; key: string; reason: string };

/** Default per-key search budget of {@link checkLinearizable}, in explored configurations. */
export const DEFAULT_MAX_STATES = 1_000_000;

/** Model state of one key: its value, or `null` when absent. */
type State = string | null;

const ILLEGAL: unique symbol = Symbol('illegal');

/** The per-key register model: the state after `op`, or ILLEGAL when `op`'s observation contradicts `state`. */
function step(op: Operation, state: State): State | typeof ILLEGAL {
  switch (op.kind) {
    case 'register':
      if (op.expected !== undefined) {
        const holds = state === op.expected;
        if (op.outcome === 'conflict') return holds ? ILLEGAL : state;
        // A write of unknown outcome whose condition fails is a no-op: the same as omitting it.
        return holds ? op.value : ILLEGAL;
      }
      return op.value;
    case 'deregister':
      if (op.expected !== undefined) {
        const holds = state === op.expected;
        if (op.outcome === 'conflict') return holds ? ILLEGAL : state;
        return holds ? null : ILLEGAL;
      }
      if (op.outcome === 'ok' && op.deleted !== undefined && op.deleted !== (state !== null)) return ILLEGAL;
      return null;
    case 'get':
      return op.found === state ? state : ILLEGAL;
  }
}

/** Effective return time: +infinity for operations of unknown outcome. */
function effectiveRet(op: Operation): number {
  return op.outcome === 'unknown' ? Number.POSITIVE_INFINITY : op.ret;
}

function compareByCall(a: Operation, b: Operation): number {
  if (a.call !== b.call) return a.call < b.call ? -1 : 1;
  const ra = effectiveRet(a);
  const rb = effectiveRet(b);
  return ra === rb ? 0 : ra < rb ? -1 : 1;
}

function formatTime(t: number): string {
  return t === Number.POSITIVE_INFINITY ? '+inf' : String(t);
}

/**
 * One-line rendering of an operation for traces and failure reports, e.g.
 * `register "svc" := "v1" @[3, 5] ok`, `deregister "svc" -> deleted=true @[6, 7] ok`,
 * `get "svc" -> null @[8, 9]`, `register "svc" := "v2" @[10, +inf) unknown client=c2`.
 * Keys and values are JSON-quoted; times are printed as recorded (unknown outcomes show `+inf`).
 */
export function describeOperation(op: Operation): string {
  const key = JSON.stringify(op.key);
  const interval = op.outcome === 'unknown' ? `@[${formatTime(op.call)}, +inf)` : `@[${formatTime(op.call)}, ${formatTime(op.ret)}]`;
  const client = op.clientId === undefined ? '' : ` client=${op.clientId}`;
  const cond = op.kind !== 'get' && op.expected !== undefined ? ` if ${op.expected === null ? 'absent' : `= ${JSON.stringify(op.expected)}`}` : '';
  switch (op.kind) {
    case 'register':
      return `register ${key} := ${JSON.stringify(op.value)}${cond} ${interval} ${op.outcome}${client}`;
    case 'deregister': {
      const observed = op.outcome === 'ok' && op.deleted !== undefined ? ` -> deleted=${op.deleted}` : '';
      return `deregister ${key}${cond}${observed} ${interval} ${op.outcome}${client}`;
    }
    case 'get':
      return `get ${key} -> ${op.found === null ? 'null' : JSON.stringify(op.found)} ${interval}${client}`;
  }
}

function validate(op: Operation, index: number): void {
  if (typeof op.call !== 'number' || !Number.isFinite(op.call)) {
    throw new RangeError(`operation #${index} (${op.kind} ${JSON.stringify(op.key)}): call must be a finite number, got ${op.call}`);
  }
  // Runtime guard for callers outside the type system: the type already forbids it.
  const outcome: string = op.outcome;
  if (op.kind === 'get' && outcome !== 'ok') {
    throw new TypeError(`operation #${index} (get ${JSON.stringify(op.key)}): gets of unknown outcome must not be recorded`);
  }
  if (op.kind !== 'get' && op.outcome === 'conflict' && op.expected === undefined) {
    throw new TypeError(`operation #${index} (${op.kind} ${JSON.stringify(op.key)}): only a conditional write can report a conflict`);
  }
  if (op.outcome !== 'unknown' && (typeof op.ret !== 'number' || Number.isNaN(op.ret) || op.ret < op.call)) {
    throw new RangeError(`operation #${index} (${op.kind} ${JSON.stringify(op.key)}): ret must be a number >= call (${op.call}), got ${op.ret}`);
  }
}

/**
 * Checks that `history` is linearizable for the per-key register model (every key initially
 * absent), key by key (P-compositionality), with the Wing & Gong search and Lowe's memoization
 * as in Porcupine's `CheckOperations`.
 *
 * Intervals are closed: an operation returning at `t` and one invoked at the same `t` are
 * treated as concurrent (Porcupine orders call entries before return entries at equal times),
 * which can only make the checker more permissive, never report a false violation. Operations
 * with `outcome: 'unknown'` may take effect at any instant after `call`, or never.
 *
 * Keys are checked in order of first appearance. The first non-linearizable key is reported
 * (`ok: false`); otherwise the first key whose search exceeded `opts.maxStates` configurations
 * (`ok: 'unknown'`); otherwise `{ ok: true }`.
 *
 * Cost: for `n` operations on a key the search visits at most (subsets of concurrently pending
 * operations) × (distinct values) configurations, each costing O(n / 16) to key the memo; a
 * few hundred operations per key with modest concurrency check in milliseconds.
 *
 * @throws RangeError when an operation's `call` is not finite, or an `ok` operation has
 *   `ret < call` or a NaN `ret`; when `opts.maxStates` is not a positive integer.
 * @throws TypeError when a `get` has an outcome other than `'ok'`.
 */
export function checkLinearizable(history: readonly Operation[], opts: CheckOptions = {}): CheckResult {
  const maxStates = opts.maxStates ?? DEFAULT_MAX_STATES;
  if (!Number.isInteger(maxStates) || maxStates < 1) {
    throw new RangeError(`maxStates must be a positive integer, got ${maxStates}`);
  }
  const byKey = new Map<string, Operation[]>();
  history.forEach((op, index) => {
    validate(op, index);
    let ops = byKey.get(op.key);
    if (ops === undefined) {
      ops = [];
      byKey.set(op.key, ops);
    }
    ops.push(op);
  });
  let firstUnknown: CheckResult | undefined;
  for (const [key, ops] of byKey) {
    const sorted = ops.slice().sort(compareByCall);
    const result = checkKey(key, sorted, maxStates);
    if (result.ok === false) return result;
    if (result.ok === 'unknown' && firstUnknown === undefined) firstUnknown = result;
  }
  return firstUnknown ?? { ok: true };
}

const NIL = -1;
const HEAD = 0;
const FROM_CHAR_CODE_CHUNK = 4096;

/** Memo key: the linearized-set bitset as fixed-length UTF-16 text, then the model state. */
function memoKey(words16: Uint16Array, state: State): string {
  let s = '';
  for (let j = 0; j < words16.length; j += FROM_CHAR_CODE_CHUNK) {
    s += String.fromCharCode(...words16.subarray(j, j + FROM_CHAR_CODE_CHUNK));
  }
  return state === null ? s + '\u0000' : s + '\u0001' + state;
}

/** Wing & Gong search with Lowe's memo over one key's sub-history `ops` (sorted by call). */
function checkKey(key: string, ops: Operation[], maxStates: number): CheckResult {
  const n = ops.length;
  // Entries: a call entry per operation, a return entry per operation of known outcome.
  const raw: { op: number; isCall: boolean; time: number }[] = [];
  let required = 0;
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    raw.push({ op: i, isCall: true, time: op.call });
    if (op.outcome !== 'unknown') {
      raw.push({ op: i, isCall: false, time: op.ret });
      required++;
    }
  }
  raw.sort((a, b) => {
    if (a.time !== b.time) return a.time < b.time ? -1 : 1;
    if (a.isCall !== b.isCall) return a.isCall ? -1 : 1;
    return a.op - b.op;
  });

  // Doubly linked list over entries 1..E with a sentinel head at 0 (dancing links).
  const size = raw.length + 1;
  const next = new Int32Array(size);
  const prev = new Int32Array(size);
  const opOf = new Int32Array(size);
  const isCall = new Uint8Array(size);
  const retEntry = new Int32Array(n).fill(NIL);
  for (let e = 1; e < size; e++) {
    const r = raw[e - 1]!;
    opOf[e] = r.op;
    isCall[e] = r.isCall ? 1 : 0;
    if (!r.isCall) retEntry[r.op] = e;
    prev[e] = e - 1;
    next[e] = e + 1 < size ? e + 1 : NIL;
  }
  next[HEAD] = size > 1 ? 1 : NIL;
  prev[HEAD] = NIL;

  const unlink = (e: number): void => {
    const p = prev[e]!;
    const q = next[e]!;
    next[p] = q;
    if (q !== NIL) prev[q] = p;
  };
  const relink = (e: number): void => {
    next[prev[e]!] = e;
    const q = next[e]!;
    if (q !== NIL) prev[q] = e;
  };
  const lift = (callEntry: number): void => {
    unlink(callEntry);
    const r = retEntry[opOf[callEntry]!]!;
    if (r !== NIL) unlink(r);
  };
  const unlift = (callEntry: number): void => {
    const r = retEntry[opOf[callEntry]!]!;
    if (r !== NIL) relink(r);
    relink(callEntry);
  };

  const words = Math.max(1, Math.ceil(n / 32));
  const bits = new Uint32Array(words);
  const bits16 = new Uint16Array(bits.buffer);
  const memo = new Set<string>();

  const stackEntry: number[] = [];
  const stackState: State[] = [];
  let state: State = null;
  let remaining = required;
  let entry = next[HEAD]!;

  // Deepest dead end seen, for the failure report.
  let bestDepth = -1;
  let bestSeq: number[] = [];
  let bestState: State = null;
  let bestBlocker = NIL;

  while (remaining > 0) {
    if (entry !== NIL && isCall[entry] === 1) {
      const i = opOf[entry]!;
      const nextState = step(ops[i]!, state);
      if (nextState !== ILLEGAL) {
        const w = i >>> 5;
        const mask = 1 << (i & 31);
        bits[w] = bits[w]! | mask;
        const k = memoKey(bits16, nextState);
        if (!memo.has(k)) {
          if (memo.size >= maxStates) {
            return {
              ok: 'unknown',
              key,
              reason:
                `search on key ${JSON.stringify(key)} (${n} operations) exceeded maxStates=${maxStates} ` +
                `explored configurations without a verdict`,
            };
          }
          memo.add(k);
          stackEntry.push(entry);
          stackState.push(state);
          state = nextState;
          if (ops[i]!.outcome !== 'unknown') remaining--;
          lift(entry);
          entry = next[HEAD]!;
          continue;
        }
        bits[w] = bits[w]! & ~mask;
      }
      entry = next[entry]!;
      continue;
    }
    // A return entry of an operation not yet linearized (or, defensively, the end of the
    // list): this branch is dead, backtrack.
    if (stackEntry.length > bestDepth) {
      bestDepth = stackEntry.length;
      bestSeq = stackEntry.map((e) => opOf[e]!);
      bestState = state;
      bestBlocker = entry === NIL ? NIL : opOf[entry]!;
    }
    const top = stackEntry.pop();
    if (top === undefined) {
      return { ok: false, key, reason: failureReason(key, ops, bestSeq, bestState, bestBlocker), history: ops };
    }
    state = stackState.pop()!;
    const i = opOf[top]!;
    bits[i >>> 5] = bits[i >>> 5]! & ~(1 << (i & 31));
    if (ops[i]!.outcome !== 'unknown') remaining++;
    unlift(top);
    entry = next[top]!;
  }
  return { ok: true };
}

const PREFIX_SHOWN = 8;

function failureReason(key: string, ops: Operation[], seq: number[], state: State, blocker: number): string {
  const shown = seq.slice(-PREFIX_SHOWN).map((i) => describeOperation(ops[i]!));
  const elided = seq.length - shown.length;
  const prefix =
    seq.length === 0
      ? 'no operation can be linearized first'
      : `the longest linearizable prefix has ${seq.length} operation(s): ` +
        (elided > 0 ? `[... ${elided} earlier; ` : '[') +
        shown.join('; ') +
        ']';
  const stateText = state === null ? 'absent' : `= ${JSON.stringify(state)}`;
  let tail = '';
  if (blocker !== NIL) {
    const op = ops[blocker]!;
    tail =
      `; after it the key is ${stateText} and ${describeOperation(op)} must take effect before it returns, ` +
      `but neither it nor any ordering of the other pending operations allows that`;
    if (op.kind === 'get' && op.found !== null) {
      const found = op.found;
      if (!ops.some((o) => o.kind === 'register' && o.value === found)) {
        tail += ` (no register of ${JSON.stringify(found)} exists on this key)`;
      } else if (!ops.some((o) => o.kind === 'register' && o.value === found && o.call <= effectiveRet(op))) {
        tail += ` (every register of ${JSON.stringify(found)} on this key is invoked after this get returned)`;
      }
    }
  }
  return `key ${JSON.stringify(key)}: no linearization of its ${ops.length} operation(s); ${prefix}${tail}`;
}
