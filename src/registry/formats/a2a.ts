/**
 * A2A AgentCard: which version a card is, and the indexed fields it derives.
 *
 * Versions (`schemas/README.md`): v1.0 (`a2aproject/A2A` `specification/a2a.proto`, the JSON
 * form of `message AgentCard`: `supportedInterfaces[]` of `{url, protocolBinding,
 * protocolVersion}`) and v0.3 (`specification/json/a2a.json`: a flat `url` with
 * `preferredTransport`, default `JSONRPC`, and `additionalInterfaces[]` of `{url, transport}`). A
 * card with `supportedInterfaces` is v1.0; one without it but with `url`, `preferredTransport`,
 * `additionalInterfaces` or `protocolVersion` is v0.3; anything else is checked as v1.0 (so its
 * error names the missing `/supportedInterfaces`).
 *
 * Derived fields (pure: the card alone decides them):
 * - `name`, `description`, `version`: the card's; `kind`: {@link A2A_AGENT_KIND};
 * - capabilities, in this order: `skill:<id>` and `tag:<tag>` for every skill (its tags after its
 *   id), `input:<media type>` for `defaultInputModes`, `output:<media type>` for
 *   `defaultOutputModes`; duplicates once, empty values none;
 * - endpoints: one per interface, named by its protocol binding lowercased (`jsonrpc`, `grpc`,
 *   `http+json`); a second interface of the same binding at another URL is `jsonrpc-2`, then
 *   `jsonrpc-3`…; the same binding and URL twice is one endpoint. v1.0: `supportedInterfaces` in
 *   order. v0.3: `url` with `preferredTransport` first, then `additionalInterfaces` in order;
 * - labels: `provider.organization` and `provider.url` from `provider`.
 */
import { childPointer, DerivedBuilder, type DerivedFields } from './derived.js';
import type { CardSchemaId } from './schemas.js';
import { arrayOr, isRecord, stringOr } from '../../util/json.js';

/** The kind of an agent registered from an A2A AgentCard. */
export const A2A_AGENT_KIND = 'a2a-agent';
/** The v0.3 transport of the main `url` when `preferredTransport` is absent (a2a.json default). */
export const A2A_V03_DEFAULT_TRANSPORT = 'JSONRPC';


/** The schema an AgentCard is checked against (see the module comment). */
export function a2aSchemaOf(card: unknown): CardSchemaId {
  if (!isRecord(card) || 'supportedInterfaces' in card) return 'a2a-v1.0';
  if (['url', 'preferredTransport', 'additionalInterfaces', 'protocolVersion'].some((k) => k in card)) return 'a2a-v0.3';
  return 'a2a-v1.0';
}

/**
 * The indexed fields of a schema-valid AgentCard (see the module comment).
 * @param field the request field of the card, for errors (`agent.card`).
 * @throws CardValidationError when a derived value breaks an agent limit, naming its card path.
 */
export function deriveA2aFields(card: unknown, schema: CardSchemaId, field: string): DerivedFields {
  const c = isRecord(card) ? card : {};
  const b = new DerivedBuilder(field, A2A_AGENT_KIND);
  b.setScalars({ name: stringOr(c.name), version: stringOr(c.version), description: stringOr(c.description) }, { name: '/name', version: '/version', description: '/description' });

  arrayOr(c.skills).forEach((skill, i) => {
    if (!isRecord(skill)) return;
    b.capability('skill:', stringOr(skill.id), childPointer('/skills', i, 'id'));
    arrayOr(skill.tags).forEach((tag, j) => b.capability('tag:', stringOr(tag), childPointer('/skills', i, 'tags', j)));
  });
  arrayOr(c.defaultInputModes).forEach((m, i) => b.capability('input:', stringOr(m), childPointer('/defaultInputModes', i)));
  arrayOr(c.defaultOutputModes).forEach((m, i) => b.capability('output:', stringOr(m), childPointer('/defaultOutputModes', i)));

  if (schema === 'a2a-v0.3') {
    b.endpoint((stringOr(c.preferredTransport) || A2A_V03_DEFAULT_TRANSPORT).toLowerCase(), stringOr(c.url), '/url');
    arrayOr(c.additionalInterfaces).forEach((itf, i) => {
      if (isRecord(itf)) b.endpoint(stringOr(itf.transport).toLowerCase(), stringOr(itf.url), childPointer('/additionalInterfaces', i));
    });
  } else {
    arrayOr(c.supportedInterfaces).forEach((itf, i) => {
      if (isRecord(itf)) b.endpoint(stringOr(itf.protocolBinding).toLowerCase(), stringOr(itf.url), childPointer('/supportedInterfaces', i));
    });
  }

  if (isRecord(c.provider)) {
    b.label('provider.organization', stringOr(c.provider.organization), '/provider/organization');
    b.label('provider.url', stringOr(c.provider.url), '/provider/url');
  }
  return b.build();
}
