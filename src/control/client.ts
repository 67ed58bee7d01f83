import net from 'node:net';
import { GvError } from '../errors.js';
import { MAX_LINE, type ControlOp, type ControlReply, type ControlRequest } from './protocol.js';

/** What asking the daemon gave: its answer, or why there is none (not running, ...). */
export type ControlOutcome = { running: true; result: unknown } | { running: false; reason: string };

/**
 * Send one request over the control socket and wait (bounded) for the reply. "Not running" (no
 * socket, or nobody listening) is an outcome, not an error; a daemon answering with an error is
 * (GvError EIO with the daemon's code in `data.code`).
 */
export function controlRequest(file: string, op: ControlOp, timeoutMs = 30_000, args: Omit<ControlRequest, 'op'> = {}): Promise<ControlOutcome> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(file);
    let buf = '';
    let connected = false;
    const done = (fn: () => void) => {
      clearTimeout(timer);
      sock.destroy();
      fn();
    };
    const timer = setTimeout(() => done(() => reject(new GvError('EAGAIN', `gvd did not answer "${op}" within ${timeoutMs} ms (control socket ${file})`))), timeoutMs);
    sock.setEncoding('utf8');
    sock.once('connect', () => {
      connected = true;
      sock.write(JSON.stringify({ ...args, op }) + '\n');
    });
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) return done(() => reject(new GvError('PROTOCOL', 'control reply too long')));
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let reply: ControlReply;
      try {
        reply = JSON.parse(buf.slice(0, nl)) as ControlReply;
      } catch {
        return done(() => reject(new GvError('PROTOCOL', 'control reply is not JSON')));
      }
      if (reply.ok) done(() => resolve({ running: true, result: reply.result }));
      else done(() => reject(new GvError('EIO', `gvd: ${reply.error.message}`, { code: reply.error.code })));
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      if (!connected && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) {
        done(() => resolve({ running: false, reason: err.code === 'ENOENT' ? 'no control socket' : 'control socket not answering (stale)' }));
      } else done(() => reject(new GvError('EIO', `control socket ${file}: ${err.message}`)));
    });
    sock.once('close', () => {
      if (connected) done(() => reject(new GvError('EIO', `gvd closed the control connection without answering "${op}"`)));
    });
  });
}
