/**
 * The write timeline (`registry-node --timeline`): one log line per stage of every replicated
 * entry, as the node sees it — proposed, sent to a peer (early: before the leader's own write was
 * durable), received by a follower, durable, acknowledged by a peer, applied. Each line carries a
 * wall-clock time in ms with microsecond resolution, so the lines of all nodes on one host merge
 * into one timeline of a write (`npm run bench:timeline` does that for sequential writes).
 *
 * Costly under load (a line per stage per batch): for measuring, not for production traffic.
 */
import type { Logger } from '../log.js';
import type { Message } from '../raft/index.js';
import type { RaftNodeObserver } from './ports.js';

/** Wall-clock now in ms, with sub-millisecond resolution (one clock for every process of a host). */
function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** An observer that logs the stages of every entry at info level under `component: 'timeline'`. */
export function timelineObserver(log: Logger): RaftNodeObserver {
  const tl = log.child({ component: 'timeline' });
  const entriesOf = (m: Message): { first: number; last: number } | undefined => {
    if (m.type !== 'AppendEntries' || m.entries.length === 0) return undefined;
    return { first: m.entries[0]?.index ?? 0, last: m.entries[m.entries.length - 1]?.index ?? 0 };
  };
  return {
    onProposed: (_id, first, last) => tl.info({ t: wallMs(), stage: 'proposed', first, last }),
    onSent: (_id, messages, early) => {
      const t = wallMs();
      for (const m of messages) {
        const range = entriesOf(m);
        if (range) tl.info({ t, stage: 'sent', peer: m.to, early, ...range });
        else if (m.type === 'AppendEntriesResponse' && m.success) tl.info({ t, stage: 'ack-sent', peer: m.to, match: m.matchIndex });
      }
    },
    onStep: (_id, m) => {
      const range = entriesOf(m);
      if (range) tl.info({ t: wallMs(), stage: 'received', peer: m.from, ...range });
      else if (m.type === 'AppendEntriesResponse' && m.success) tl.info({ t: wallMs(), stage: 'acked', peer: m.from, match: m.matchIndex });
    },
    onPersisted: (_id, rd, synced) => {
      const first = rd.entries[0];
      const last = rd.entries[rd.entries.length - 1];
      if (first && last) tl.info({ t: wallMs(), stage: 'durable', first: first.index, last: last.index, synced });
    },
    onApplied: (_id, entries) => {
      const first = entries[0];
      const last = entries[entries.length - 1];
      if (first && last) tl.info({ t: wallMs(), stage: 'applied', first: first.index, last: last.index });
    },
  };
}
