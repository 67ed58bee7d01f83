import fs from 'node:fs';
import net from 'node:net';
import { GvError } from '../errors.js';
import { MAX_LINE, OPTIONAL_OPS, type ControlOp, type ControlReply, type ControlRequest } from './protocol.js';

type Handler = (req: ControlRequest) => Promise<unknown>;

/** status, reload and nodes always; replication and conflicts when replication runs. */
export type ControlHandlers = Record<Exclude<ControlOp, 'replication' | 'conflicts'>, Handler> & Partial<Record<'replication' | 'conflicts', Handler>>;

export interface ControlServer {
  path: string;
  close(): Promise<void>;
}

/** Is something accepting connections on the unix socket `file`? */
function socketAnswers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(file);
    const t = setTimeout(() => {
      s.destroy();
      resolve(true); // it exists and did not refuse: assume a live (busy) daemon
    }, 2000);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

/**
 * Listen on `file` (0600). A stale socket left by a killed daemon is replaced; a live one means
 * another daemon uses this state directory, which is refused.
 */
export async function startControlServer(file: string, handlers: ControlHandlers, onError?: (err: unknown) => void): Promise<ControlServer> {
  if (fs.existsSync(file)) {
    if (await socketAnswers(file)) {
      throw new GvError('EBUSY', `another gvd is running with this state directory (control socket ${file} answers); stop it first`);
    }
    fs.rmSync(file, { force: true });
  }
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    sock.setEncoding('utf8');
    let buf = '';
    let busy = Promise.resolve();
    sock.on('error', () => undefined);
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE && !buf.includes('\n')) {
        sock.end(JSON.stringify({ ok: false, error: { code: 'PROTOCOL', message: 'request line too long' } }) + '\n');
        buf = '';
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        busy = busy.then(async () => {
          const reply = await answer(line, handlers, onError);
          if (!sock.destroyed) sock.write(JSON.stringify(reply) + '\n');
        });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(file, () => {
      server.off('error', reject);
      resolve();
    });
  });
  fs.chmodSync(file, 0o600);
  return {
    path: file,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => {
          fs.rmSync(file, { force: true });
          resolve();
        });
      }),
  };
}

async function answer(line: string, handlers: ControlHandlers, onError?: (err: unknown) => void): Promise<ControlReply> {
  let req: Partial<ControlRequest>;
  try {
    req = JSON.parse(line) as Partial<ControlRequest>;
  } catch {
    return { ok: false, error: { code: 'PROTOCOL', message: 'request is not JSON' } };
  }
  const op: unknown = req?.op;
  if (typeof op === 'string' && (OPTIONAL_OPS as readonly string[]).includes(op) && !handlers[op as ControlOp]) {
    return { ok: false, error: { code: 'ENOTSUP', message: `"${op}" is not available: replication is not running on this node` } };
  }
  if (typeof op !== 'string' || !Object.hasOwn(handlers, op)) {
    return { ok: false, error: { code: 'PROTOCOL', message: `unknown op ${JSON.stringify(op)} (known: ${Object.keys(handlers).join(', ')})` } };
  }
  if (req.zone !== undefined && typeof req.zone !== 'string') {
    return { ok: false, error: { code: 'PROTOCOL', message: 'zone must be a string' } };
  }
  try {
    const h = handlers[op as ControlOp]!;
    return { ok: true, result: await h({ op: op as ControlOp, ...(req.zone !== undefined ? { zone: req.zone } : {}) }) };
  } catch (err) {
    onError?.(err);
    return { ok: false, error: { code: err instanceof GvError ? err.code : 'INTERNAL', message: err instanceof Error ? err.message : String(err) } };
  }
}
