/**
 * The simulated network: the peer transport (`Transport` and `SnapshotTransport`) and the
 * follower-to-leader API link (`LeaderLink`) of every simulated node, over one set of links that
 * partition (any way, one-way too), drop, delay, duplicate and reorder. Snapshots travel on their
 * own stream, with their own delays, and a transfer can be cut part-way — so a snapshot's payload
 * and the ordinary messages around it arrive in any order.
 *
 * Deliveries are events of the receiving node (held while it is paused, dropped while it is
 * down); answers are events of the sending incarnation.
 */
import { ApiError, Code } from '../../src/api/status.js';
import type { ForwardedCalls, ForwardedMethod, LeaderLink, RegistryApi } from '../../src/api/handlers.js';
import type { InstallSnapshot, Message, NodeId } from '../../src/raft/index.js';
import type { Member } from '../../src/registry/types.js';
import { STATE_PAYLOAD_FORMATS, STATE_STREAM_MAGIC_V1, STATE_STREAM_MAGIC_V2 } from '../../src/storage/snapshot-codec.js';
import type { MessageHandler, SnapshotTransport, Transport } from '../../src/transport/types.js';
import type { Owner, SimWorld } from './world.js';

/** Network conditions: rates are probabilities per message (or per transfer), delays in ms. */
export interface NetConditions {
  drop: number;
  duplicate: number;
  minDelay: number;
  maxDelay: number;
  /** Extra delay of a snapshot transfer, in ms (drawn in [0, snapshotDelay]). */
  snapshotDelay: number;
  /** Probability that a snapshot transfer is cut part-way. */
  snapshotCut: number;
  /**
   * Probability that a snapshot transfer arrives as a payload no node can install: its magic
   * names a format nobody reads, or its end marker the wrong pair count (one or the other, even
   * odds). Damage a decoder always sees, unlike a flipped bit inside a deflated frame.
   */
  snapshotDamage: number;
}

/** A clean network: 10-50 ms per message, nothing lost. */
export const CLEAN_NET: NetConditions = { drop: 0, duplicate: 0, minDelay: 10, maxDelay: 50, snapshotDelay: 100, snapshotCut: 0, snapshotDamage: 0 };

/** The magic of a payload format no version reads ("RSP9"), for damaged transfers. */
const UNKNOWN_FORMAT_MAGIC = Uint8Array.from([0x52, 0x53, 0x50, 0x39]);
/** The magics of the formats a node of an earlier version reads: 1 and 2. */
const LEGACY_READABLE_MAGICS = [STATE_STREAM_MAGIC_V1, STATE_STREAM_MAGIC_V2];

/** `payload` (chunks) damaged as {@link NetConditions.snapshotDamage} says, in new chunks. */
function damaged(payload: readonly Uint8Array[], wrongCount: boolean): Uint8Array[] {
  const whole = Uint8Array.from(Buffer.concat(payload));
  if (wrongCount) {
    // The pair count is the last u32; one more than it says is never what was encoded.
    const view = new DataView(whole.buffer);
    view.setUint32(whole.byteLength - 4, (view.getUint32(whole.byteLength - 4) + 1) >>> 0);
  } else {
    whole.set(UNKNOWN_FORMAT_MAGIC, 0);
  }
  return [whole];
}

/** What the network needs to know of a node's current incarnation. */
export interface NetNode {
  readonly owner: Owner;
  readonly up: boolean;
  /** The handlers its transport registered (undefined until it started). */
  messageHandler: MessageHandler | undefined;
  snapshotHandler: ((m: InstallSnapshot, chunks: AsyncIterable<Uint8Array>) => Promise<void>) | undefined;
  readonly api: RegistryApi | undefined;
  /**
   * Peers its transport was told to forget (`removePeer`). As the gRPC transport does, hearing
   * from one again brings it back (its stream tells where it is).
   */
  readonly removedPeers: Set<string>;
}

/** A message handed to the transport twice (the driver must send each exactly once). */
export class DuplicateSendError extends Error {
  override readonly name = 'DuplicateSendError';
}

/** The links between the simulated nodes. */
export class SimNetwork {
  net: NetConditions = { ...CLEAN_NET };
  private readonly blocked = new Set<string>();
  /** Every message object handed to a transport, to catch one sent twice. */
  private readonly sent = new WeakSet<Message>();
  /** Messages delivered, by type (coverage). */
  readonly delivered = new Map<string, number>();
  /** Snapshot transfers completed and cut (coverage). */
  snapshotTransfers = 0;
  snapshotCuts = 0;
  /** The first message sent twice, reported by the simulator's checks. */
  duplicateSend: string | undefined;
  /** Snapshot transfers damaged on purpose ({@link NetConditions.snapshotDamage}), by `to/index/term`. */
  readonly damagedTransfers = new Map<string, number>();
  /**
   * Nodes that play an earlier version on the wire: they advertise no snapshot formats, and a
   * payload sent to one in a format it would not read (3 and later) is a violation — the node of
   * that version would step it and stop at its install.
   */
  readonly legacyNodes = new Set<string>();
  /** The first payload sent to a {@link legacyNodes} node in a format it does not read. */
  legacyViolation: string | undefined;
  /** Calls and transfers in flight, by the node serving them: a crash of that node resets them. */
  private readonly connections = new Map<string, Set<(why: string) => void>>();

  constructor(
    private readonly world: SimWorld,
    private readonly node: (id: string) => NetNode | undefined,
    private readonly describe: (m: Message) => string,
    private readonly trace: (line: string) => void,
  ) {}

  /** Blocks messages from `a` to `b` (one direction). */
  block(a: string, b: string): void {
    this.blocked.add(`${a}>${b}`);
  }

  /** Whether messages from `a` to `b` are blocked. */
  isBlocked(a: string, b: string): boolean {
    return this.blocked.has(`${a}>${b}`);
  }

  /** Removes every block. */
  unblockAll(): void {
    this.blocked.clear();
  }

  /**
   * Registers a call or transfer that `node` is serving; `reset` fails it if `node` crashes
   * first (its connections die with the process). Returns the function that unregisters it.
   */
  private connect(node: string, reset: (why: string) => void): () => void {
    let set = this.connections.get(node);
    if (!set) {
      set = new Set();
      this.connections.set(node, set);
    }
    set.add(reset);
    return () => set.delete(reset);
  }

  /** `node` crashed: every call and transfer it was serving fails, as its connections reset. */
  crashed(node: string): void {
    const set = this.connections.get(node);
    if (!set) return;
    this.connections.delete(node);
    for (const reset of set) reset(`connection to ${node} reset`);
  }

  private delayMs(): number {
    return this.world.int(this.net.minDelay, Math.max(this.net.minDelay, this.net.maxDelay));
  }

  /** The transport of one node incarnation. */
  transport(self: NetNode & { readonly id: string }): Transport & SnapshotTransport {
    const net = this;
    const removed = self.removedPeers;
    removed.clear();
    return {
      send(messages: readonly Message[]): void {
        for (const m of messages) {
          if (net.sent.has(m)) net.duplicateSend ??= `${self.id} sent one message twice: ${net.describe(m)}`;
          net.sent.add(m);
          // An InstallSnapshot here (the driver never sends one this way) arrives without payload.
          if (removed.has(m.to)) continue;
          net.deliver(m);
        }
      },
      onMessage(handler: MessageHandler): void {
        self.messageHandler = handler;
      },
      setPeer(id: NodeId): void {
        removed.delete(id);
      },
      removePeer(id: NodeId): void {
        removed.add(id);
      },
      close: async () => undefined,
      sendSnapshot: (m, chunks) => net.sendSnapshot(self, m, chunks),
      onSnapshot(handler): void {
        self.snapshotHandler = handler;
      },
      snapshotFormatsOf: (peer) => (net.legacyNodes.has(peer) ? undefined : STATE_PAYLOAD_FORMATS),
    };
  }

  /** Puts `m` on the wire: lost, delayed, maybe duplicated; delivered unless cut on arrival. */
  private deliver(m: Message): void {
    if (this.isBlocked(m.from, m.to) || this.world.rand() < this.net.drop) return;
    const copies = this.world.rand() < this.net.duplicate ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      this.world.at(this.world.now + this.delayMs(), { node: m.to }, () => {
        // A partition also cuts what is on the wire.
        if (this.isBlocked(m.from, m.to)) return;
        const to = this.node(m.to);
        if (!to?.up || !to.messageHandler) return;
        to.removedPeers.delete(m.from);
        this.delivered.set(m.type, (this.delivered.get(m.type) ?? 0) + 1);
        this.trace(this.describe(m));
        to.messageHandler(m);
      });
    }
  }

  /**
   * A snapshot transfer: the sender's chunks are read, travel (with a delay of their own) and
   * are handed to the receiver's snapshot handler; the sender learns the outcome when the
   * receiver's answer comes back. A blocked link, a lost transfer or a cut fails it.
   */
  private sendSnapshot(from: NetNode & { readonly id: string }, m: InstallSnapshot, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      void (async () => {
        let payload: Uint8Array[] = [];
        try {
          for await (const c of chunks) payload.push(c);
        } catch (err) {
          reject(err as Error);
          return;
        }
        const fail = (why: string): void => {
          this.world.at(this.world.now + this.delayMs(), from.owner, () => reject(new Error(why)));
        };
        if (this.isBlocked(m.from, m.to) || this.world.rand() < this.net.drop) {
          fail('snapshot transfer: peer unreachable');
          return;
        }
        if (this.legacyNodes.has(m.to) && !LEGACY_READABLE_MAGICS.some((magic) => magic.every((b, i) => payload[0]?.[i] === b))) {
          this.legacyViolation ??= `${m.from} sent ${m.to}, a node of an earlier version, a snapshot payload in a format it does not read (magic ${Buffer.from(payload[0] ?? []).subarray(0, 4).toString('latin1')})`;
        }
        // No draw without damage, so the schedules of earlier seeds replay exactly as they did.
        if (this.net.snapshotDamage > 0 && this.world.rand() < this.net.snapshotDamage) {
          payload = damaged(payload, this.world.rand() < 0.5);
          const key = `${m.to}/${m.snapshot.metadata.index}/${m.snapshot.metadata.term}`;
          this.damagedTransfers.set(key, (this.damagedTransfers.get(key) ?? 0) + 1);
        }
        const cutAfter = this.world.rand() < this.net.snapshotCut ? this.world.int(0, payload.length) : undefined;
        const arriveIn = this.delayMs() + this.world.int(0, this.net.snapshotDelay);
        this.world.at(this.world.now + arriveIn, { node: m.to }, () => {
          const to = this.node(m.to);
          if (this.isBlocked(m.from, m.to) || !to?.up || !to.snapshotHandler) {
            fail('snapshot transfer: peer unreachable');
            return;
          }
          const net = this;
          const stream = (async function* () {
            for (let i = 0; i < payload.length; i++) {
              if (cutAfter !== undefined && i >= cutAfter) {
                net.snapshotCuts++;
                throw new Error('snapshot transfer cut');
              }
              yield payload[i] as Uint8Array;
            }
            if (cutAfter !== undefined && cutAfter >= payload.length) {
              net.snapshotCuts++;
              throw new Error('snapshot transfer cut');
            }
          })();
          this.trace(`${m.from}->${m.to} snapshot stream ${m.snapshot.metadata.index}/${m.snapshot.metadata.term}${cutAfter !== undefined ? ' (cut)' : ''}`);
          let done = false;
          const disconnect = this.connect(m.to, (why) => {
            if (done) return;
            done = true;
            fail(`snapshot transfer: ${why}`);
          });
          to.snapshotHandler(m, stream).then(
            () => {
              if (done) return;
              done = true;
              disconnect();
              this.snapshotTransfers++;
              this.world.at(this.world.now + this.delayMs(), from.owner, () => {
                if (this.isBlocked(m.to, m.from)) reject(new Error('snapshot transfer: answer lost'));
                else resolve();
              });
            },
            (err: unknown) => {
              if (done) return;
              done = true;
              disconnect();
              fail(`snapshot transfer refused: ${String(err)}`);
            },
          );
        });
      })();
    });
  }

  /** The follower-to-leader API link of one node incarnation. */
  leaderLink(self: NetNode & { readonly id: string }): LeaderLink {
    const net = this;
    return {
      call<M extends ForwardedMethod>(to: Member, method: M, request: ForwardedCalls[M][0], budgetMs: number, fromId: string): Promise<ForwardedCalls[M][1]> {
        return new Promise((resolve, reject) => {
          let settled = false;
          const settle = (f: () => void): void => {
            if (settled) return;
            settled = true;
            deadline.cancel();
            f();
          };
          const deadline = net.world.at(net.world.now + budgetMs, self.owner, () =>
            settle(() => reject(new ApiError(Code.DEADLINE_EXCEEDED, `forwarded ${method} got no answer within ${budgetMs} ms`))),
          );
          if (net.isBlocked(self.id, to.id) || net.world.rand() < net.net.drop) {
            // Connection refused or reset: the caller hears of it soon.
            net.world.at(net.world.now + net.delayMs(), self.owner, () => settle(() => reject(new ApiError(Code.UNAVAILABLE, `leader ${to.id} unreachable`))));
            return;
          }
          const sentAt = net.world.now;
          net.world.at(net.world.now + net.delayMs(), { node: to.id }, () => {
            const target = net.node(to.id);
            if (net.isBlocked(self.id, to.id) || !target?.up || !target.api) {
              net.world.at(net.world.now + net.delayMs(), self.owner, () => settle(() => reject(new ApiError(Code.UNAVAILABLE, `leader ${to.id} unreachable`))));
              return;
            }
            const left = Math.max(0, budgetMs - (net.world.now - sentAt));
            const disconnect = net.connect(to.id, (why) =>
              net.world.at(net.world.now + net.delayMs(), self.owner, () => settle(() => reject(new ApiError(Code.UNAVAILABLE, why)))),
            );
            const answer = callApi(target.api, method, request, { budgetMs: left, forwardedBy: fromId });
            answer.then(
              (res) => {
                disconnect();
                net.world.at(net.world.now + net.delayMs(), self.owner, () => {
                  if (!net.isBlocked(to.id, self.id)) settle(() => resolve(res));
                });
              },
              (err: unknown) => {
                disconnect();
                net.world.at(net.world.now + net.delayMs(), self.owner, () => {
                  if (!net.isBlocked(to.id, self.id)) settle(() => reject(err));
                });
              },
            );
          });
        });
      },
      close: () => undefined,
    };
  }
}

/** Calls one forwarded method of `api`. */
function callApi<M extends ForwardedMethod>(api: RegistryApi, method: M, request: ForwardedCalls[M][0], call: { budgetMs: number; forwardedBy: string }): Promise<ForwardedCalls[M][1]> {
  type Fn = (req: ForwardedCalls[M][0], c: typeof call) => Promise<ForwardedCalls[M][1]>;
  const table: Record<ForwardedMethod, Fn> = {
    Register: (r, c) => api.register(r as ForwardedCalls['Register'][0], c) as Promise<ForwardedCalls[M][1]>,
    Deregister: (r, c) => api.deregister(r as ForwardedCalls['Deregister'][0], c) as Promise<ForwardedCalls[M][1]>,
    Heartbeat: (r, c) => api.heartbeat(r as ForwardedCalls['Heartbeat'][0], c) as Promise<ForwardedCalls[M][1]>,
    AddMember: (r, c) => api.addMember(r as ForwardedCalls['AddMember'][0], c) as Promise<ForwardedCalls[M][1]>,
    RemoveMember: (r, c) => api.removeMember(r as ForwardedCalls['RemoveMember'][0], c) as Promise<ForwardedCalls[M][1]>,
    PromoteMember: (r, c) => api.promoteMember(r as ForwardedCalls['PromoteMember'][0], c) as Promise<ForwardedCalls[M][1]>,
    TransferLeadership: (r, c) => api.transferLeadership(r as ForwardedCalls['TransferLeadership'][0], c) as Promise<ForwardedCalls[M][1]>,
    RevokeToken: (r, c) => api.revokeToken(r as ForwardedCalls['RevokeToken'][0], c) as Promise<ForwardedCalls[M][1]>,
    RotateSigningKey: (r, c) => api.rotateSigningKey(r as ForwardedCalls['RotateSigningKey'][0], c) as Promise<ForwardedCalls[M][1]>,
    TrustCardKey: (r, c) => api.trustCardKey(r as ForwardedCalls['TrustCardKey'][0], c) as Promise<ForwardedCalls[M][1]>,
    UntrustCardKey: (r, c) => api.untrustCardKey(r as ForwardedCalls['UntrustCardKey'][0], c) as Promise<ForwardedCalls[M][1]>,
  };
  return table[method](request, call);
}
