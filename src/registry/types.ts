/**
 * The registry's data model: the agent record, the commands that change it, and their results.
 * Field names follow `proto/registry/v1/registry.proto` in camelCase.
 */

/** What a client submits: the record without the revisions the registry assigns. */
export interface AgentSpec {
  /** Unique id, 1..MAX_ID_CHARS of `[A-Za-z0-9._:/@-]`. */
  readonly id: string;
  readonly name: string;
  /** Free-form kind such as `mcp-server`, `a2a-agent`, `service`. */
  readonly kind: string;
  readonly version: string;
  readonly description: string;
  /** What the agent can do; a find by capability reads an index, not every record. */
  readonly capabilities: readonly string[];
  /** Named endpoints, e.g. `{ grpc: "10.0.0.1:50051", repository: "https://..." }`. */
  readonly endpoints: Readonly<Record<string, string>>;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * The agent's source document, the JSON text exactly as registered (at most
   * `MAX_CARD_BYTES`, UTF-8), or absent. When present, `cardFormat` says what it is and the
   * fields above were derived from it (`src/registry/formats/`).
   */
  readonly card?: string;
  /** The format of `card`; present exactly when `card` is. */
  readonly cardFormat?: CardFormat;
}

/**
 * The formats an agent's `card` may have (proto `CardFormat`): an A2A AgentCard (v1.0 or v0.3)
 * or an MCP `server.json` (schema 2025-12-11).
 */
export type CardFormat = 'a2aAgentCard' | 'mcpServerJson';

/** An agent's self-reported health (proto `Health`); changes are replicated, repeats are not. */
export type Health = 'unspecified' | 'serving' | 'degraded' | 'notServing';

/** A stored agent: the spec plus the log indexes that created and last modified it (etcd's revisions). */
export interface Agent extends AgentSpec {
  /** Log index of the command that created this record. */
  readonly createRevision: number;
  /** Log index of the command that last wrote this record. */
  readonly modRevision: number;
  /** Lease length in seconds; 0 = no lease (the agent stays until deregistered). */
  readonly ttlSeconds: number;
  readonly health: Health;
  /**
   * When the record was created, in ms since the Unix epoch: the `timeMs` of the register that
   * created it (absent when that entry carried none). Kept when the record is replaced.
   */
  readonly createdAtMs?: number;
  /**
   * When a register last wrote the record, in ms since the Unix epoch (health changes do not
   * count): that register's `timeMs`, never below `createdAtMs`; absent when unknown.
   */
  readonly updatedAtMs?: number;
  /**
   * The principal whose write last changed the record (its token's `sub`; `anonymous` without
   * auth, `system` for a lease expiry); absent in records written before principals existed.
   */
  readonly modifiedBy?: string;
  /** The trusted key id whose signature over the card verified; absent when none did. */
  readonly verifiedKeyId?: string;
  /** Why the card's signatures failed to verify; absent when they verified or there were none. */
  readonly signatureError?: string;
}

/** What the node that took a register found of the card's signatures (`src/auth/card-signatures.ts`). */
export interface CardCheck {
  readonly verifiedKeyId?: string;
  readonly signatureError?: string;
}

/** One signing key of the cluster's tokens: its id and its Ed25519 key pair as JWK JSON text. */
export interface SigningKey {
  readonly kid: string;
  readonly privateJwk: string;
  readonly publicJwk: string;
}

/**
 * A change to the replicated auth state (`auth-state.ts`): a new signing key (`ifNone`: only
 * when there is none yet, the bootstrap key; `retirePrevious`: drop the others), a revoked token
 * id (with its expiry in Unix seconds, 0 when unknown), a trusted card key added or removed.
 */
export type AuthChange =
  | { readonly op: 'addSigningKey'; readonly key: SigningKey; readonly ifNone?: boolean; readonly retirePrevious?: boolean }
  | { readonly op: 'revokeToken'; readonly tokenId: string; readonly expiresAtSec: number }
  | { readonly op: 'trustCardKey'; readonly keyId: string; readonly publicJwk: string }
  | { readonly op: 'untrustCardKey'; readonly keyId: string };

/** One change a watcher sees (etcd's watch event): the agent after a PUT, its last version for a DELETE. */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  readonly agent: Agent;
  /** The log index of the command that caused it. */
  readonly revision: number;
  /** For a DELETE: whether a lease expiry caused it. */
  readonly expired: boolean;
}

/**
 * The exactly-once identity of a client write (thesis §6.3): a client picks a unique
 * `clientId` and numbers its writes 1, 2, 3, ...; a write retried with the same pair (after a
 * timeout or a leader change) is applied once and answered with the first result.
 */
export interface ClientSession {
  readonly clientId: string;
  /** Positive, unique per write of the client. */
  readonly sequence: number;
}

/**
 * A state machine command, carried as the data of a Raft log entry (encoded with msgpackr, with a
 * version tag, by `commands.ts`). `requestId` lets the node that proposed it find the waiting
 * client when the entry is applied; it never changes what apply does.
 */
export type Command =
  | {
      readonly type: 'register';
      readonly requestId: string;
      readonly agent: AgentSpec;
      readonly session?: ClientSession;
      /** Lease length in seconds, 0 for none. */
      readonly ttlSeconds?: number;
      /** Initial health (default `unspecified`; a re-register keeps the stored health unless given). */
      readonly health?: Health;
      /** Compare-and-set: apply only if the agent's current `modRevision` equals this (0 = no condition). */
      readonly expectedRevision?: number;
      /** Apply only if the id is absent. */
      readonly createOnly?: boolean;
      /**
       * Wall-clock time of the write, in ms since the Unix epoch, as the leader's clock read it
       * when it proposed the command (data in the log, so apply stays deterministic); it becomes
       * the record's `createdAtMs` / `updatedAtMs`. Absent in entries written before it existed.
       */
      readonly timeMs?: number;
      /** Who wrote it (becomes the record's `modifiedBy`). */
      readonly principal?: string;
      /** What the proposing node found of the card's signatures (verification is not redone on apply). */
      readonly cardCheck?: CardCheck;
    }
  | {
      readonly type: 'deregister';
      readonly requestId: string;
      readonly id: string;
      readonly session?: ClientSession;
      /** Compare-and-set: apply only if the agent's current `modRevision` equals this (0 = none). */
      readonly expectedRevision?: number;
      readonly principal?: string;
    }
  /** A health change reported by a heartbeat (only changes are proposed). */
  | { readonly type: 'setHealth'; readonly requestId: string; readonly id: string; readonly health: Health; readonly principal?: string }
  /** A change to the replicated auth state, by `principal`. */
  | {
      readonly type: 'auth';
      readonly requestId: string;
      readonly change: AuthChange;
      readonly principal?: string;
      /** The leader's wall clock when it proposed the change, in ms since the Unix epoch. */
      readonly timeMs?: number;
    }
  /**
   * Lease expiry decided by the leader: each listed agent is deleted if it still exists with
   * that `modRevision` and still holds a lease (a re-registration in between keeps it).
   */
  | { readonly type: 'expire'; readonly requestId: string; readonly leases: readonly { readonly id: string; readonly modRevision: number }[] };

/**
 * The outcome of applying one command at `revision` (the entry's log index). `duplicate` marks
 * the answer to a retried write: the result of its first application, at its first revision.
 */
export type CommandResult =
  | { readonly type: 'register'; readonly agent: Agent; readonly revision: number; readonly duplicate?: boolean }
  | { readonly type: 'deregister'; readonly deleted: boolean; readonly revision: number; readonly duplicate?: boolean }
  | { readonly type: 'config'; readonly change: MemberChange; readonly members: readonly Member[]; readonly revision: number }
  /** A compare-and-set condition did not hold: nothing was written. `currentRevision` is the agent's `modRevision`, 0 if absent. */
  | { readonly type: 'conflict'; readonly revision: number; readonly currentRevision: number; readonly reason: string }
  | { readonly type: 'setHealth'; readonly agent: Agent | undefined; readonly revision: number }
  | { readonly type: 'expire'; readonly expired: readonly string[]; readonly revision: number }
  /** An auth change: `applied` false (with `reason`) when it was refused (e.g. a full revocation list). */
  | { readonly type: 'auth'; readonly applied: boolean; readonly reason?: string; readonly revision: number };

/** A member of the cluster, as the replicated membership record holds it. */
export interface Member {
  readonly id: string;
  /** `host:port` serving clients and peers. */
  readonly address: string;
  /** False for a learner (thesis §4.2.1). */
  readonly voter: boolean;
}

/**
 * A membership change as carried by a `config` log entry: the Raft change plus the member's
 * address (so every node, and every snapshot, knows where members are).
 */
export interface MemberChange {
  readonly type: 'addLearner' | 'addVoter' | 'removeNode';
  readonly nodeId: string;
  /** The member's address; empty for `removeNode`. */
  readonly address: string;
  /** Who asked for the change (absent in entries written before principals existed, and in bootstrap entries). */
  readonly principal?: string;
}

/** Filters of a find; all given filters must hold (AND). Empty strings mean "any". */
export interface FindQuery {
  readonly capability?: string;
  /** Only agents listing some capability that starts with this (e.g. `tool:`); empty means any. */
  readonly capabilityPrefix?: string;
  readonly kind?: string;
  readonly labels?: Readonly<Record<string, string>>;
  /** Only agents with this health. */
  readonly health?: Health;
  /** Only agents whose name starts with this. */
  readonly namePrefix?: string;
  /** Only agents whose card signature verified with a trusted key (a filter on the records read). */
  readonly verifiedOnly?: boolean;
  /** Results per page; 0 means DEFAULT_PAGE_SIZE, more than MAX_PAGE_SIZE is refused. */
  readonly pageSize?: number;
  /** Opaque token from a previous page's `nextPageToken`, or empty for the first page. */
  readonly pageToken?: string;
}

/** One page of find results, ordered by id. `nextPageToken` is empty on the last page. */
export interface FindPage {
  readonly agents: Agent[];
  readonly nextPageToken: string;
}

/**
 * A keyword search (`Registry.Search`): the words of `query`, ranked with BM25 over name,
 * capabilities and description (see `text-index.ts`), and every filter of a find. `pageToken`
 * comes from a previous search page's `nextPageToken`.
 */
export interface SearchQuery extends FindQuery {
  /** Free text; at most `MAX_SEARCH_QUERY_CHARS`, at least one and at most `MAX_SEARCH_QUERY_TERMS` distinct words. */
  readonly query: string;
}

/** One page of search results, best first (score descending, then id). `nextPageToken` is empty on the last page. */
export interface SearchPage {
  readonly results: { readonly agent: Agent; readonly score: number }[];
  readonly nextPageToken: string;
}

/** A capability and the number of agents listing it (`Registry.ListCapabilities`). */
export interface CapabilityCount {
  readonly capability: string;
  readonly count: number;
}
