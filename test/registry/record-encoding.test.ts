/**
 * The stored bytes of a record and of a revision's watch events do not change with the code that
 * builds them: `fixtures/record-encodings.json` holds what the encoders wrote before records were
 * built by assignment (one agent with no optional field, one with all of them), and stores and
 * snapshots written then must read, and compare, the same.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeEvents, encodeEvents } from '../../src/registry/event-history.js';
import { decodeAgentRecord, encodeAgentRecord } from '../../src/registry/records.js';
import type { Agent, WatchEvent } from '../../src/registry/types.js';

interface Fixture {
  readonly agents: { readonly bare: Agent; readonly full: Agent };
  readonly record: { readonly bare: string; readonly full: string };
  readonly events: { readonly value: WatchEvent[]; readonly hex: string };
}

const fixture = JSON.parse(readFileSync(new URL('./fixtures/record-encodings.json', import.meta.url), 'utf8')) as Fixture;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('record and event encodings', () => {
  it.each(['bare', 'full'] as const)('encodes the %s record to the stored bytes, and decodes them back', (which) => {
    const agent = fixture.agents[which];
    expect(hex(encodeAgentRecord(agent))).toBe(fixture.record[which]);
    expect(decodeAgentRecord(Buffer.from(fixture.record[which], 'hex'), 'a/x')).toEqual(agent);
  });

  it('encodes a revision\'s events to the stored bytes, and decodes them back', () => {
    expect(hex(encodeEvents(fixture.events.value))).toBe(fixture.events.hex);
    expect(decodeEvents(Buffer.from(fixture.events.hex, 'hex'), 'ev/9', 9)).toEqual(fixture.events.value);
  });
});
