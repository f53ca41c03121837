/**
 * The process-wide structured logger (pino). Every module takes a child logger with its
 * component name, e.g. `logger.child({ component: 'transport' })`.
 *
 * Level comes from `LOG_LEVEL` (default `info`; tests set `silent`).
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/** Creates the root logger for one process; `base` fields (e.g. `{ node: 'n1' }`) go on every line. */
export function createLogger(base: Record<string, unknown> = {}, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base }, pino.destination({ fd: 2, sync: false }));
}

/** A logger that writes nothing, for tests and library defaults. */
export const silentLogger: Logger = pino({ level: 'silent' });
