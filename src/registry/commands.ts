/**
 * The wire form of state machine commands: the data of a `normal` Raft log entry.
 *
 * A command is a msgpackr map with a version tag `v` and a type tag `t`:
 *
 * - `{ v: 1, t: 'register',   requestId, agent: { id, name, kind, version, description,
 *      capabilities, endpoints, labels, card?, cardFormat? }, ttlSeconds?, health?, expectedRevision?, createOnly?,
 *      timeMs? }`
 * - `{ v: 1, t: 'deregister', requestId, id, expectedRevision? }`
 * - `{ v: 1, t: 'setHealth',  requestId, id, health }`
 * - `{ v: 1, t: 'expire',     requestId, leases: [[id, modRevision], ...] }`
 * - `{ v: 1, t: 'auth',       requestId, change: { op, ... } }` (see {@link AuthChange})
 *
 * `register`, `deregister`, `setHealth` and `auth` may carry `p`, the principal that wrote
 * them; `register` may carry `cc: [verifiedKeyId, signatureError]`, what the proposing node
 * found of the card's signatures.
 *
 * `register` and `deregister` may carry `s: [clientId, sequence]`, the writer's exactly-once
 * session (thesis §6.3). Optional fields are written only when they differ from their default
 * (`ttlSeconds` 0, `expectedRevision` 0, `createOnly` false, `health` and `timeMs` absent), and decoding
 * treats an absent field as its default, so entries written before these fields existed still
 * apply. Health values are the internal names (`serving`, `notServing`, ...).
 *
 * Decoding checks the shape (types of every field) and nothing else: the limits on ids, sizes
 * and counts are checked where requests enter (`validation.ts`), before anything is proposed.
 * A log may outlive a software version, so an entry that does not decode becomes a
 * {@link CommandDecodeError}, which the state machine logs and skips (deterministically, on
 * every node), never a crash.
 */
import { Packr } from 'msgpackr';
import { assertNever } from '../raft/types.js';
import type { AgentSpec, AuthChange, CardCheck, CardFormat, ClientSession, Command, Health, MemberChange } from './types.js';

/** The command format version this code writes and reads. */
export const COMMAND_VERSION = 1;

/** The msgpackr codec of commands and records: plain maps, no shared record structures. */
export const registryPackr = new Packr({ useRecords: false });

/** An entry's data is not a command this version understands; `field` names what was wrong. */
export class CommandDecodeError extends Error {
  override readonly name = 'CommandDecodeError';
  /** The offending field, e.g. `agent.capabilities[2]`, or `data` for undecodable bytes. */
  readonly field: string;

  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

/** The health values a command or record may carry (the internal names of proto `Health`). */
export const HEALTH_VALUES: readonly Health[] = ['unspecified', 'serving', 'degraded', 'notServing'];

/**
 * The bytes of `packed` in a buffer of their own. msgpackr packs into a shared buffer of up to a
 * few MiB and returns a view of it; an entry's data lives as long as the in-memory Raft log keeps
 * the entry, and a view would keep the whole shared buffer (and everything else packed into it)
 * alive with it: the leader's memory grew with the writes, by MiBs per few thousand entries.
 */
function ownBytes(packed: Uint8Array): Uint8Array {
  return new Uint8Array(packed);
}

/** The register command. */
type RegisterCommand = Extract<Command, { type: 'register' }>;

/** Encodes a command as a versioned msgpackr map (see the module documentation), in bytes of its own. */
export function encodeCommand(cmd: Command): Uint8Array {
  return ownBytes(packCommand(cmd));
}

function packCommand(cmd: Command): Uint8Array {
  switch (cmd.type) {
    case 'register': {
      // Optional fields assigned in a fixed order, not spread (the bytes are those of the spread form).
      const m: Record<string, unknown> = { v: COMMAND_VERSION, t: 'register', requestId: cmd.requestId, agent: agentSpecFields(cmd.agent) };
      if (cmd.session) m['s'] = [cmd.session.clientId, cmd.session.sequence];
      if (cmd.ttlSeconds) m['ttlSeconds'] = cmd.ttlSeconds;
      if (cmd.health !== undefined) m['health'] = cmd.health;
      if (cmd.expectedRevision) m['expectedRevision'] = cmd.expectedRevision;
      if (cmd.createOnly) m['createOnly'] = true;
      if (cmd.timeMs) m['timeMs'] = cmd.timeMs;
      if (cmd.principal !== undefined) m['p'] = cmd.principal;
      if (cmd.cardCheck) m['cc'] = [cmd.cardCheck.verifiedKeyId ?? '', cmd.cardCheck.signatureError ?? ''];
      return registryPackr.pack(m);
    }
    case 'deregister':
      return registryPackr.pack({
        v: COMMAND_VERSION,
        t: 'deregister',
        requestId: cmd.requestId,
        id: cmd.id,
        ...(cmd.session ? { s: [cmd.session.clientId, cmd.session.sequence] } : {}),
        ...(cmd.expectedRevision ? { expectedRevision: cmd.expectedRevision } : {}),
        ...(cmd.principal !== undefined ? { p: cmd.principal } : {}),
      });
    case 'setHealth':
      return registryPackr.pack({ v: COMMAND_VERSION, t: 'setHealth', requestId: cmd.requestId, id: cmd.id, health: cmd.health, ...(cmd.principal !== undefined ? { p: cmd.principal } : {}) });
    case 'auth':
      return registryPackr.pack({
        v: COMMAND_VERSION,
        t: 'auth',
        requestId: cmd.requestId,
        change: { ...cmd.change },
        ...(cmd.principal !== undefined ? { p: cmd.principal } : {}),
        ...(cmd.timeMs ? { timeMs: cmd.timeMs } : {}),
      });
    case 'expire':
      return registryPackr.pack({
        v: COMMAND_VERSION,
        t: 'expire',
        requestId: cmd.requestId,
        leases: cmd.leases.map((l) => [l.id, l.modRevision]),
      });
    default:
      return assertNever(cmd);
  }
}

/**
 * Decodes an entry's data written by {@link encodeCommand}. Throws {@link CommandDecodeError}
 * (with the offending `field`) when the bytes are not msgpack, the version is not
 * {@link COMMAND_VERSION}, the type is unknown, or a field is missing or of the wrong type.
 * Optional fields absent from the data are absent from the result.
 */
export function decodeCommand(data: Uint8Array): Command {
  if (!(data instanceof Uint8Array) || data.length === 0) {
    throw new CommandDecodeError('data', 'empty or not bytes');
  }
  let decoded: unknown;
  try {
    decoded = registryPackr.unpack(data);
  } catch (err) {
    throw new CommandDecodeError('data', `not msgpack: ${(err as Error).message}`);
  }
  if (!isPlainMap(decoded)) throw new CommandDecodeError('data', 'not a map');
  if (decoded.v !== COMMAND_VERSION) {
    throw new CommandDecodeError('v', `unknown command version ${JSON.stringify(decoded.v)}`);
  }
  const requestId = expectString(decoded.requestId, 'requestId');
  switch (decoded.t) {
    case 'register': {
      const session = parseSession(decoded.s);
      const ttlSeconds = optionalCount(decoded.ttlSeconds, 'ttlSeconds');
      const expectedRevision = optionalCount(decoded.expectedRevision, 'expectedRevision');
      const createOnly = decoded.createOnly;
      const timeMs = optionalCount(decoded.timeMs, 'timeMs');
      const principal = optionalString(decoded.p, 'p');
      const cardCheck = parseCardCheck(decoded.cc);
      if (createOnly !== undefined && typeof createOnly !== 'boolean') throw new CommandDecodeError('createOnly', `expected a boolean, got ${typeof createOnly}`);
      // Assigned one by one, not spread: every node decodes every register it applies.
      const cmd: { -readonly [K in keyof RegisterCommand]: RegisterCommand[K] } = { type: 'register', requestId, agent: parseAgentSpec(decoded.agent, 'agent') };
      if (session) cmd.session = session;
      if (ttlSeconds !== undefined) cmd.ttlSeconds = ttlSeconds;
      if (decoded.health !== undefined) cmd.health = parseHealth(decoded.health, 'health');
      if (expectedRevision !== undefined) cmd.expectedRevision = expectedRevision;
      if (createOnly !== undefined) cmd.createOnly = createOnly;
      if (timeMs !== undefined) cmd.timeMs = timeMs;
      if (principal !== undefined) cmd.principal = principal;
      if (cardCheck) cmd.cardCheck = cardCheck;
      return cmd;
    }
    case 'deregister': {
      const session = parseSession(decoded.s);
      const expectedRevision = optionalCount(decoded.expectedRevision, 'expectedRevision');
      const principal = optionalString(decoded.p, 'p');
      return {
        type: 'deregister',
        requestId,
        id: expectString(decoded.id, 'id'),
        ...(session ? { session } : {}),
        ...(expectedRevision !== undefined ? { expectedRevision } : {}),
        ...(principal !== undefined ? { principal } : {}),
      };
    }
    case 'setHealth': {
      const principal = optionalString(decoded.p, 'p');
      return { type: 'setHealth', requestId, id: expectString(decoded.id, 'id'), health: parseHealth(decoded.health, 'health'), ...(principal !== undefined ? { principal } : {}) };
    }
    case 'auth': {
      const principal = optionalString(decoded.p, 'p');
      const timeMs = optionalCount(decoded.timeMs, 'timeMs');
      return { type: 'auth', requestId, change: parseAuthChange(decoded.change), ...(principal !== undefined ? { principal } : {}), ...(timeMs !== undefined ? { timeMs } : {}) };
    }
    case 'expire':
      return { type: 'expire', requestId, leases: parseLeases(decoded.leases) };
    default:
      throw new CommandDecodeError('t', `unknown command type ${JSON.stringify(decoded.t)}`);
  }
}

/**
 * Checks that `x` is one of {@link HEALTH_VALUES}; throws {@link CommandDecodeError} naming
 * `field` otherwise.
 */
export function parseHealth(x: unknown, field: string): Health {
  if (typeof x !== 'string' || !(HEALTH_VALUES as readonly string[]).includes(x)) {
    throw new CommandDecodeError(field, `expected one of ${HEALTH_VALUES.join(', ')}, got ${JSON.stringify(x)}`);
  }
  return x as Health;
}

/** An optional non-negative safe integer field; `undefined` when absent. */
function optionalCount(x: unknown, field: string): number | undefined {
  if (x === undefined) return undefined;
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) throw new CommandDecodeError(field, 'expected a non-negative integer');
  return x;
}

/** An optional string field; `undefined` when absent. */
function optionalString(x: unknown, field: string): string | undefined {
  return x === undefined ? undefined : expectString(x, field);
}

/** Decodes the optional `cc: [verifiedKeyId, signatureError]` of a register ('' = none). */
function parseCardCheck(x: unknown): CardCheck | undefined {
  if (x === undefined) return undefined;
  if (!Array.isArray(x) || x.length !== 2) throw new CommandDecodeError('cc', 'expected [verifiedKeyId, signatureError]');
  const verifiedKeyId = expectString(x[0], 'cc[0]');
  const signatureError = expectString(x[1], 'cc[1]');
  return { ...(verifiedKeyId !== '' ? { verifiedKeyId } : {}), ...(signatureError !== '' ? { signatureError } : {}) };
}

/** Decodes the `change` of an `auth` command. */
function parseAuthChange(x: unknown): AuthChange {
  if (!isPlainMap(x)) throw new CommandDecodeError('change', 'not a map');
  switch (x.op) {
    case 'addSigningKey': {
      const key = x.key;
      if (!isPlainMap(key)) throw new CommandDecodeError('change.key', 'not a map');
      for (const f of ['ifNone', 'retirePrevious'] as const) {
        if (x[f] !== undefined && typeof x[f] !== 'boolean') throw new CommandDecodeError(`change.${f}`, 'expected a boolean');
      }
      return {
        op: 'addSigningKey',
        key: { kid: expectString(key.kid, 'change.key.kid'), privateJwk: expectString(key.privateJwk, 'change.key.privateJwk'), publicJwk: expectString(key.publicJwk, 'change.key.publicJwk') },
        ...(x.ifNone === true ? { ifNone: true } : {}),
        ...(x.retirePrevious === true ? { retirePrevious: true } : {}),
      };
    }
    case 'revokeToken': {
      const expiresAtSec = optionalCount(x.expiresAtSec, 'change.expiresAtSec') ?? 0;
      return { op: 'revokeToken', tokenId: expectString(x.tokenId, 'change.tokenId'), expiresAtSec };
    }
    case 'trustCardKey':
      return { op: 'trustCardKey', keyId: expectString(x.keyId, 'change.keyId'), publicJwk: expectString(x.publicJwk, 'change.publicJwk') };
    case 'untrustCardKey':
      return { op: 'untrustCardKey', keyId: expectString(x.keyId, 'change.keyId') };
    default:
      throw new CommandDecodeError('change.op', `unknown auth change ${JSON.stringify(x.op)}`);
  }
}

/** Decodes the `leases: [[id, modRevision], ...]` of an `expire` command. */
function parseLeases(x: unknown): { id: string; modRevision: number }[] {
  if (!Array.isArray(x)) throw new CommandDecodeError('leases', 'not an array');
  return x.map((pair: unknown, i) => {
    if (!Array.isArray(pair) || pair.length !== 2) throw new CommandDecodeError(`leases[${i}]`, 'expected [id, modRevision]');
    const [id, modRevision] = pair as [unknown, unknown];
    if (typeof modRevision !== 'number' || !Number.isSafeInteger(modRevision) || modRevision < 1) {
      throw new CommandDecodeError(`leases[${i}][1]`, 'expected a positive integer modRevision');
    }
    return { id: expectString(id, `leases[${i}][0]`), modRevision };
  });
}

/** Decodes the optional `s: [clientId, sequence]` of a command. */
function parseSession(x: unknown): ClientSession | undefined {
  if (x === undefined) return undefined;
  if (!Array.isArray(x) || x.length !== 2) throw new CommandDecodeError('s', 'expected [clientId, sequence]');
  const [clientId, sequence] = x as [unknown, unknown];
  if (typeof sequence !== 'number' || !Number.isSafeInteger(sequence) || sequence < 1) {
    throw new CommandDecodeError('s[1]', 'expected a positive integer sequence');
  }
  return { clientId: expectString(clientId, 's[0]'), sequence };
}

/** Encodes a membership change as the data of a `config` log entry (`{ v: 1, t: 'conf', ..., p? }`, `p` the principal). */
export function encodeMemberChange(c: MemberChange): Uint8Array {
  return ownBytes(registryPackr.pack({ v: COMMAND_VERSION, t: 'conf', type: c.type, nodeId: c.nodeId, address: c.address, ...(c.principal !== undefined ? { p: c.principal } : {}) }));
}

/** Decodes a `config` entry's data; throws {@link CommandDecodeError} naming the field. */
export function decodeMemberChange(data: Uint8Array): MemberChange {
  let decoded: unknown;
  try {
    decoded = registryPackr.unpack(data);
  } catch (err) {
    throw new CommandDecodeError('data', `not msgpack: ${(err as Error).message}`);
  }
  if (!isPlainMap(decoded) || decoded.t !== 'conf') throw new CommandDecodeError('t', 'not a membership change');
  if (decoded.v !== COMMAND_VERSION) throw new CommandDecodeError('v', `unknown version ${JSON.stringify(decoded.v)}`);
  const type = decoded.type;
  if (type !== 'addLearner' && type !== 'addVoter' && type !== 'removeNode') throw new CommandDecodeError('type', `unknown change ${JSON.stringify(type)}`);
  const principal = optionalString(decoded.p, 'p');
  return { type, nodeId: expectString(decoded.nodeId, 'nodeId'), address: expectString(decoded.address, 'address'), ...(principal !== undefined ? { principal } : {}) };
}

/**
 * Checks that `x` has the shape of an {@link AgentSpec} and returns a fresh copy with exactly
 * its fields. Throws {@link CommandDecodeError} naming the field (prefixed with `field`).
 */
export function parseAgentSpec(x: unknown, field: string): AgentSpec {
  if (!isPlainMap(x)) throw new CommandDecodeError(field, 'not a map');
  const capabilities = x.capabilities;
  if (!Array.isArray(capabilities)) throw new CommandDecodeError(`${field}.capabilities`, 'not an array');
  const spec: { -readonly [K in keyof AgentSpec]: AgentSpec[K] } = {
    id: expectString(x.id, `${field}.id`),
    name: expectString(x.name, `${field}.name`),
    kind: expectString(x.kind, `${field}.kind`),
    version: expectString(x.version, `${field}.version`),
    description: expectString(x.description, `${field}.description`),
    capabilities: capabilities.map((c: unknown, i) => expectString(c, `${field}.capabilities[${i}]`)),
    endpoints: expectStringMap(x.endpoints, `${field}.endpoints`),
    labels: expectStringMap(x.labels, `${field}.labels`),
  };
  const card = parseCardFields(x, field);
  if (card !== undefined) {
    spec.card = card.card;
    spec.cardFormat = card.cardFormat;
  }
  return spec;
}

/** The formats a command or record's `cardFormat` may name (the internal names of proto `CardFormat`). */
export const CARD_FORMAT_VALUES: readonly CardFormat[] = ['a2aAgentCard', 'mcpServerJson'];

/**
 * The optional `card` and `cardFormat` of a decoded spec: both absent (a spec without a card, or
 * one written before cards existed: `undefined`), or a string and one of {@link CARD_FORMAT_VALUES}.
 */
function parseCardFields(x: Record<string, unknown>, field: string): { card: string; cardFormat: CardFormat } | undefined {
  if (x.card === undefined && x.cardFormat === undefined) return undefined;
  const card = expectString(x.card, `${field}.card`);
  if (typeof x.cardFormat !== 'string' || !(CARD_FORMAT_VALUES as readonly string[]).includes(x.cardFormat)) {
    throw new CommandDecodeError(`${field}.cardFormat`, `expected one of ${CARD_FORMAT_VALUES.join(', ')}, got ${JSON.stringify(x.cardFormat)}`);
  }
  return { card, cardFormat: x.cardFormat as CardFormat };
}

/** The fields of an {@link AgentSpec}, copied, in a fixed order (so encodings are stable). */
export function agentSpecFields(spec: AgentSpec): AgentSpec {
  const out: { -readonly [K in keyof AgentSpec]: AgentSpec[K] } = {
    id: spec.id,
    name: spec.name,
    kind: spec.kind,
    version: spec.version,
    description: spec.description,
    capabilities: [...spec.capabilities],
    endpoints: { ...spec.endpoints },
    labels: { ...spec.labels },
  };
  // Written only when present, so a spec without a card encodes as before cards existed.
  if (spec.card !== undefined && spec.cardFormat !== undefined) {
    out.card = spec.card;
    out.cardFormat = spec.cardFormat;
  }
  return out;
}

/** A msgpack map decoded as a plain object (not an array, bytes, or a msgpackr extension value). */
function isPlainMap(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null) return false;
  const proto: unknown = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

function expectString(x: unknown, field: string): string {
  if (typeof x !== 'string') throw new CommandDecodeError(field, `expected a string, got ${typeof x}`);
  return x;
}

function expectStringMap(x: unknown, field: string): Record<string, string> {
  if (!isPlainMap(x)) throw new CommandDecodeError(field, 'not a map');
  const out: [string, string][] = [];
  for (const [key, value] of Object.entries(x)) out.push([key, expectString(value, `${field}.${key}`)]);
  // fromEntries defines own properties, so a key like `__proto__` stays a plain key.
  return Object.fromEntries(out);
}
