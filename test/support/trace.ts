/**
 * Readable traces (DESIGN convention 15): one canonical line per message, used in failure
 * reports of the simulator and in golden interaction tests.
 */
import type { Message } from '../../src/raft/index.js';

/** A one-line rendering of a message, e.g. `n1->n2 AppendEntries term=3 prev=7/2 entries=3 commit=9`. */
export function describeMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`;
  switch (m.type) {
    case 'AppendEntries':
      return `${head} prev=${m.prevLogIndex}/${m.prevLogTerm} entries=${m.entries.length} commit=${m.leaderCommit}`;
    case 'AppendEntriesResponse':
      return `${head} ${m.success ? 'ok' : 'reject'} match=${m.matchIndex}${m.success ? '' : ` hint=${m.conflictIndex}/${m.conflictTerm}`}`;
    case 'RequestVote':
      return `${head}${m.preVote ? ' pre' : ''} last=${m.lastLogIndex}/${m.lastLogTerm}`;
    case 'RequestVoteResponse':
      return `${head}${m.preVote ? ' pre' : ''} ${m.voteGranted ? 'granted' : 'rejected'}`;
    case 'Heartbeat':
      return `${head} commit=${m.leaderCommit}`;
    case 'InstallSnapshot':
      return `${head} snap=${m.snapshot.metadata.index}/${m.snapshot.metadata.term}`;
    case 'ReadIndexResponse':
      return `${head} index=${m.index} ${m.success ? 'ok' : 'failed'}`;
    default:
      return head;
  }
}
