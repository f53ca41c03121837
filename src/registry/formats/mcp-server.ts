/**
 * MCP `server.json` (schema 2025-12-11, `modelcontextprotocol/registry`
 * `internal/validators/schemas/2025-12-11.json`): the indexed fields a document derives. The
 * whole document (`repository`, `websiteUrl`, `title`, `icons`, `_meta`, …) stays in the stored
 * card; these are only what the indexes need.
 *
 * Derived fields (pure: the document alone decides them):
 * - `name`, `description`, `version`: the document's; `kind`: {@link MCP_SERVER_KIND};
 * - capabilities, in this order: `package:<registryType>` and `transport:<transport.type>` per
 *   package; `transport:<type>` per remote and {@link MCP_REMOTE_CAPABILITY} when there is a
 *   remote; then the server's own tools, resources and prompts (below) as `tool:<name>`,
 *   `resource:<uri>`, `prompt:<name>`. Duplicates once, empty values none;
 * - endpoints: each remote by its transport type (`streamable-http`, `sse`; a second one of the
 *   same type at another URL `streamable-http-2`…), `repository` = `repository.url`, `website` =
 *   `websiteUrl`;
 * - labels: `title`, `source` = `repository.source`, `repository_id` = `repository.id`.
 *
 * **Tools, resources and prompts.** server.json has no field for what the server offers once
 * running, so they come from the publisher's own metadata, which the official schema reserves
 * for such data: `_meta["io.modelcontextprotocol.registry/publisher-provided"]` may hold
 * `tools: [{name, …}]`, `resources: [{uri, …}]` and `prompts: [{name, …}]`, the shapes MCP's
 * `tools/list`, `resources/list` and `prompts/list` answer with (extra members are ignored). The
 * official schema leaves that object free, so these three arrays are checked here: a wrong shape
 * is refused naming its path, like a schema error. A document with them is still a valid
 * server.json for every other registry.
 */
import { CardValidationError, childPointer, DerivedBuilder, type DerivedFields } from './derived.js';
import { arrayOr, isRecord, stringOr } from '../../util/json.js';

/** The kind of an agent registered from an MCP server.json (the same as the seed import's). */
export const MCP_SERVER_KIND = 'mcp-server';
/** The capability of a server that lists remotes. */
export const MCP_REMOTE_CAPABILITY = 'remote';
/** The `_meta` key of publisher-provided data, where a server's tools, resources and prompts are read. */
export const MCP_PUBLISHER_META_KEY = 'io.modelcontextprotocol.registry/publisher-provided';
/** Most tools, resources and prompts (together) one document may list; each derives a capability. */
export const MAX_MCP_SERVER_FEATURES = 64;

type Json = Record<string, unknown>;

/** The server's own features listed under `_meta[MCP_PUBLISHER_META_KEY]`, checked. */
function serverFeatures(doc: Json, field: string): { capability: string; pointer: string }[] {
  const meta = isRecord(doc._meta) ? doc._meta[MCP_PUBLISHER_META_KEY] : undefined;
  if (!isRecord(meta)) return [];
  const base = childPointer('/_meta', MCP_PUBLISHER_META_KEY);
  const out: { capability: string; pointer: string }[] = [];
  for (const [member, key, prefix] of [
    ['tools', 'name', 'tool:'],
    ['resources', 'uri', 'resource:'],
    ['prompts', 'name', 'prompt:'],
  ] as const) {
    const value = meta[member];
    if (value === undefined) continue;
    const at = childPointer(base, member);
    if (!Array.isArray(value)) throw new CardValidationError(field, at, 'must be array');
    value.forEach((item, i) => {
      if (!isRecord(item)) throw new CardValidationError(field, childPointer(at, i), 'must be object');
      const v = item[key];
      if (typeof v !== 'string') throw new CardValidationError(field, childPointer(at, i, key), v === undefined ? 'is required' : 'must be string');
      if (v === '') throw new CardValidationError(field, childPointer(at, i, key), 'must not be empty');
      out.push({ capability: prefix + v, pointer: childPointer(at, i, key) });
    });
  }
  if (out.length > MAX_MCP_SERVER_FEATURES) {
    throw new CardValidationError(field, (out[MAX_MCP_SERVER_FEATURES] as { pointer: string }).pointer, `lists more than ${MAX_MCP_SERVER_FEATURES} tools, resources and prompts`);
  }
  return out;
}

/**
 * The indexed fields of a schema-valid server.json (see the module comment).
 * @param field the request field of the card, for errors (`agent.card`).
 * @throws CardValidationError when the publisher-provided tools/resources/prompts have the wrong
 *   shape, or a derived value breaks an agent limit; the message names the path.
 */
export function deriveMcpServerFields(doc: unknown, field: string): DerivedFields {
  const d = isRecord(doc) ? doc : {};
  const b = new DerivedBuilder(field, MCP_SERVER_KIND);
  b.setScalars({ name: stringOr(d.name), version: stringOr(d.version), description: stringOr(d.description) }, { name: '/name', version: '/version', description: '/description' });

  arrayOr(d.packages).forEach((p, i) => {
    if (!isRecord(p)) return;
    b.capability('package:', stringOr(p.registryType), childPointer('/packages', i, 'registryType'));
    if (isRecord(p.transport)) b.capability('transport:', stringOr(p.transport.type), childPointer('/packages', i, 'transport', 'type'));
  });
  const remotes = arrayOr(d.remotes);
  remotes.forEach((r, i) => {
    if (!isRecord(r)) return;
    b.capability('transport:', stringOr(r.type), childPointer('/remotes', i, 'type'));
  });
  if (remotes.length > 0) b.capability('', MCP_REMOTE_CAPABILITY, '/remotes');
  for (const f of serverFeatures(d, field)) b.capability('', f.capability, f.pointer);

  remotes.forEach((r, i) => {
    if (isRecord(r)) b.endpoint(stringOr(r.type), stringOr(r.url), childPointer('/remotes', i, 'url'));
  });
  const repository = isRecord(d.repository) ? d.repository : {};
  b.endpoint('repository', stringOr(repository.url), '/repository/url');
  b.endpoint('website', stringOr(d.websiteUrl), '/websiteUrl');

  b.label('title', stringOr(d.title), '/title');
  b.label('source', stringOr(repository.source), '/repository/source');
  b.label('repository_id', stringOr(repository.id), '/repository/id');
  return b.build();
}
