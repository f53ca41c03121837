/**
 * Client sessions (Raft thesis §6.3, exactly-once writes): what the state machine keeps of a
 * client write's first result, under `sess/<clientId>/<sequence>`, so that a retry is answered
 * with it and not applied again; and the window of a client's most recent writes that is kept.
 */
import { CorruptionError, type WriteBatch } from '../storage/types.js';
import { agentSpecFields, HEALTH_VALUES, registryPackr } from './commands.js';
import { sessionKey } from './keys.js';
import { agentOf } from './records.js';
import type { Agent, ClientSession, Command, CommandResult, Health } from './types.js';

/**
 * How many of a client's most recent writes keep their result for exactly-once retries
 * (thesis §6.3). Writing sequence `n` forgets the result of `n - SESSION_WINDOW_SEQUENCES`, so
 * a client must never have more writes than this outstanding at once.
 */
export const SESSION_WINDOW_SEQUENCES = 4096;

/** What is kept of a write's first result to answer its retries. */
export type SessionResult =
  | { readonly t: 'register'; readonly revision: number; readonly createRevision: number; readonly health: Health }
  | { readonly t: 'deregister'; readonly revision: number; readonly deleted: boolean }
  | { readonly t: 'conflict'; readonly revision: number; readonly currentRevision: number; readonly reason: string };

/** The result of a command (a `config` entry is not a command). */
export type CommandOutcome = Exclude<CommandResult, { type: 'config' }>;

/** The exactly-once session of a command, if it carries one (only client writes do). */
export function sessionOf(cmd: Command): ClientSession | undefined {
  return cmd.type === 'register' || cmd.type === 'deregister' ? cmd.session : undefined;
}

/** What a session keeps of a client write's first result; `undefined` for other results. */
export function sessionResultOf(result: CommandOutcome): SessionResult | undefined {
  switch (result.type) {
    case 'register':
      return { t: 'register', revision: result.revision, createRevision: result.agent.createRevision, health: result.agent.health };
    case 'deregister':
      return { t: 'deregister', revision: result.revision, deleted: result.deleted };
    case 'conflict':
      return { t: 'conflict', revision: result.revision, currentRevision: result.currentRevision, reason: result.reason };
    default:
      return undefined;
  }
}

/**
 * Stages `kept` as the first result of `session` and forgets the result that leaves the window
 * ({@link SESSION_WINDOW_SEQUENCES} sequences back); returns the key forgotten, if any.
 */
export function stageSessionResult(batch: WriteBatch, session: ClientSession, kept: SessionResult): string | undefined {
  batch.put(sessionKey(session.clientId, session.sequence), registryPackr.pack(kept));
  if (session.sequence <= SESSION_WINDOW_SEQUENCES) return undefined;
  const old = sessionKey(session.clientId, session.sequence - SESSION_WINDOW_SEQUENCES);
  batch.del(old);
  return old;
}

/** The answer to a retried write, rebuilt from its stored first result. */
export function duplicateResult(cmd: Command, first: SessionResult): CommandResult | undefined {
  if ((cmd.type === 'register' || cmd.type === 'deregister') && first.t === 'conflict') {
    return { type: 'conflict', revision: first.revision, currentRevision: first.currentRevision, reason: first.reason };
  }
  if (cmd.type === 'register' && first.t === 'register') {
    const agent: Agent = agentOf(agentSpecFields(cmd.agent), first.createRevision, first.revision, cmd.ttlSeconds ?? 0, first.health);
    return { type: 'register', agent, revision: first.revision, duplicate: true };
  }
  if (cmd.type === 'deregister' && first.t === 'deregister') {
    return { type: 'deregister', deleted: first.deleted, revision: first.revision, duplicate: true };
  }
  // The client reused a sequence number for a different kind of write: nothing is applied and
  // there is no result to give (the server answers FAILED_PRECONDITION).
  return undefined;
}

/** Decodes a stored session result; throws {@link CorruptionError} naming the key. */
export function decodeSessionResult(value: Uint8Array, key: string): SessionResult {
  const r = registryPackr.unpack(value) as Partial<Record<string, unknown>>;
  if (r?.t === 'register' && typeof r.revision === 'number' && typeof r.createRevision === 'number') {
    // Results stored before health existed carry none.
    const health = typeof r.health === 'string' && (HEALTH_VALUES as readonly string[]).includes(r.health) ? (r.health as Health) : 'unspecified';
    return { t: 'register', revision: r.revision, createRevision: r.createRevision, health };
  }
  if (r?.t === 'conflict' && typeof r.revision === 'number' && typeof r.currentRevision === 'number' && typeof r.reason === 'string') {
    return { t: 'conflict', revision: r.revision, currentRevision: r.currentRevision, reason: r.reason };
  }
  if (r?.t === 'deregister' && typeof r.revision === 'number' && typeof r.deleted === 'boolean') {
    return { t: 'deregister', revision: r.revision, deleted: r.deleted };
  }
  throw new CorruptionError(`session result ${JSON.stringify(key)} does not decode`);
}
