import { pino, type Logger } from 'pino';
import type { LogLevel } from '../config/types.js';

export type { Logger } from 'pino';

/** JSON lines to stdout, written synchronously so the "gvd ready" line is never held back. */
export function createLogger(level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  return pino<'notice'>(
    {
      level,
      // 'notice' ranks above fatal: life-cycle lines (ready, stopped) that scripts wait for are
      // printed whatever --log-level says (only 'silent' hides them).
      customLevels: { notice: 70 },
      base: { pid: process.pid, ...bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ dest: 1, sync: true }),
  ) as unknown as Logger;
}

/** Log a life-cycle line at every level but 'silent'. */
export function notice(log: Logger, obj: object, msg: string): void {
  const n = (log as Logger & { notice?: (o: object, m: string) => void }).notice;
  if (typeof n === 'function') n.call(log, obj, msg);
  else log.info(obj, msg); // a logger made elsewhere (tests) without the custom level
}

/** Adapter to the `(obj, msg) => void` log callbacks protocol modules take. */
export function logFn(log: Logger, level: 'debug' | 'info' | 'warn' = 'debug'): (obj: object, msg: string) => void {
  return (obj, msg) => log[level](obj, msg);
}
