/**
 * Graceful stop of the real daemon process: WRITEs in flight when SIGTERM arrives are answered and
 * on disk, new connections are refused from then on, and the process exits 0 within 10 s.
 *
 * To have calls truly in flight (received, not just sent) when the signal is handled, the daemon
 * is SIGSTOPped, the WRITE records are sent until the kernel holds all their bytes in the daemon's
 * socket receive queue (/proc/net/tcp), then SIGTERM and SIGCONT follow: on resume the socket is
 * readable before the signal pipe, so the calls are dispatched first.
 *
 * That order also means a WRITE can be answered before the daemon has handled the signal at all
 * (small writes are synchronous: the reply leaves in the same loop turn, just before the signal
 * callback closes the listeners). A connection attempted right after the first answer may
 * therefore land in the kernel's accept backlog of a listener that is closed a moment later and
 * be reset (ECONNRESET, or 'connect' then a reset). What the daemon promises is that no
 * connection made after SIGTERM is served: the probe sends a NULL call and must get no reply.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RpcServer } from '../src/rpc/server.js';
import { DAEMON_MAIN, ensureBuilt } from './harness/daemon.js';
import { expectOk, mountZone, STABLE, statName } from './harness/nfs3-client.js';
import { RpcClient } from './harness/rpc-client.js';

const STOP_BOUND_MS = 10_000;
const ZONE = 'z';

interface Proc {
  child: ChildProcess;
  dir: string;
  out: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  nfsPort: number;
  mountPort: number;
}

const procs: Proc[] = [];

afterEach(() => {
  for (const p of procs.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGCONT');
      p.child.kill('SIGKILL');
    }
    fs.rmSync(p.dir, { recursive: true, force: true });
  }
});

async function startDaemonProcess(): Promise<Proc> {
  ensureBuilt();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gvfs-shutdown-'));
  fs.mkdirSync(path.join(dir, 'state'));
  fs.mkdirSync(path.join(dir, 'zone'));
  const cfg = path.join(dir, 'gv.toml');
  fs.writeFileSync(cfg, [
    '[node]', 'name = "shutdown-test"', `state_dir = ${JSON.stringify(path.join(dir, 'state'))}`,
    '[nfs]', 'listen = "127.0.0.1"', 'port = 0', 'mount_port = 0', 'portmap = "off"',
    `[zones.${ZONE}]`, `path = ${JSON.stringify(path.join(dir, 'zone'))}`, '',
  ].join('\n'));
  const child = spawn(process.execPath, [DAEMON_MAIN, 'daemon', '--config', cfg, '--log-level', 'info'], {
    cwd: dir, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const p: Proc = { child, dir, out: () => out, exit, nfsPort: 0, mountPort: 0 };
  procs.push(p);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const line = out.split('\n').find((l) => l.includes('"gvd ready"'));
    if (line) {
      const j = JSON.parse(line) as { nfsPort: number; mountPort: number };
      p.nfsPort = j.nfsPort;
      p.mountPort = j.mountPort;
      return p;
    }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`daemon not ready:\n${out}`);
}

/** Bytes waiting in the receive queues of established TCP sockets whose local port is `port`. */
function receiveQueued(port: number): number {
  let total = 0;
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 5 || cols[3] !== '01') continue;
      const local = cols[1]!;
      if (parseInt(local.slice(local.lastIndexOf(':') + 1), 16) !== port) continue;
      total += parseInt(cols[4]!.split(':')[1]!, 16);
    }
  }
  return total;
}

/** Wait for exit, but no longer than `ms`: then SIGKILL (a bound, not a timing assertion). */
async function exitWithin(p: Proc, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
  let killed = false;
  const t = setTimeout(() => {
    killed = true;
    p.child.kill('SIGKILL');
  }, ms);
  const r = await p.exit;
  clearTimeout(t);
  return { ...r, killed };
}

/** A NULL call to NFS v3 (AUTH_NONE), record-marked. */
function nullCallRecord(xid: number): Buffer {
  const b = Buffer.alloc(44);
  b.writeUInt32BE((0x80000000 | 40) >>> 0, 0);
  // xid, CALL, rpcvers 2, prog NFS, vers 3, proc NULL, cred AUTH_NONE (0, len 0), verf likewise.
  [xid, 0, 2, 100003, 3, 0, 0, 0, 0, 0].forEach((v, i) => b.writeUInt32BE(v, 4 + 4 * i));
  return b;
}

type ProbeEnd = 'ECONNREFUSED' | 'ECONNRESET' | 'closed without reply' | 'served' | 'no outcome within bound' | string;

interface Probe {
  /** Resolves once the attempt was refused/reset, or connected with the NULL call written. */
  sent: Promise<void>;
  /** How the attempt ended: anything but 'served' means the daemon did not serve it. */
  end: Promise<ProbeEnd>;
}

/** Open a new connection and send a NULL call on it (bounded: the daemon exits within its bound). */
function probeNewConnection(port: number, boundMs: number): Probe {
  let markSent!: () => void;
  const sent = new Promise<void>((r) => (markSent = r));
  const end = new Promise<ProbeEnd>((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const finish = (how: ProbeEnd) => {
      clearTimeout(t);
      s.destroy();
      markSent();
      resolve(how);
    };
    const t = setTimeout(() => finish('no outcome within bound'), boundMs);
    s.once('connect', () => s.write(nullCallRecord(0x5eed), () => markSent()));
    s.on('data', () => finish('served'));
    s.once('end', () => finish('closed without reply'));
    s.once('close', () => finish('closed without reply'));
    s.once('error', (e: NodeJS.ErrnoException) => finish(e.code ?? String(e)));
  });
  return { sent, end };
}

function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? String(e)));
  });
}

describe('RpcServer.close()', () => {
  it('refuses new connections at once, answers the call in flight and starts no new call on open connections', async () => {
    const PROG = 0x20000099;
    let entered!: () => void;
    const inHandler = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    const server = new RpcServer();
    server.register({
      prog: PROG, low: 1, high: 1,
      handle: async (call) => {
        started++;
        if (call.proc === 1) {
          entered();
          await gate;
        }
        return Buffer.alloc(4);
      },
    });
    const port = await server.listen(0, '127.0.0.1');
    const c = await RpcClient.connect(port);
    try {
      const slow = c.call(PROG, 1, 1, Buffer.alloc(0));
      await inHandler;
      const closed = server.close(10_000);
      // The listener is closed synchronously inside close().
      expect(await connectOutcome(port)).toBe('ECONNREFUSED');
      // A call sent on the open connection after close() stays unread in the kernel's queue.
      const late = c.call(PROG, 1, 0, Buffer.alloc(0)).then(() => 'served', (e: Error) => e.name);
      const deadline = Date.now() + 5000;
      while (receiveQueued(port) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(receiveQueued(port), 'late call queued at the server').toBeGreaterThan(0);
      release();
      expect((await slow).kind).toBe('success');
      await closed;
      expect(await late).toBe('RpcClosedError');
      expect(started).toBe(1);
      expect(server.connectionCount).toBe(0);
    } finally {
      release();
      c.close();
      await server.close(1000);
    }
  });
});

describe('SIGTERM', () => {
  it('answers WRITEs in flight, refuses new connections, leaves the data on disk and exits 0', async () => {
    const p = await startDaemonProcess();
    const { nfs, root } = await mountZone(p.nfsPort, p.mountPort, ZONE);
    const fh = expectOk(await nfs.create(root, 'inflight', { mode: 'guarded', attrs: { mode: 0o644 } }), 'CREATE').fh!;
    const chunk = 8192;
    const parts = [0, 1, 2, 3].map((i) => Buffer.alloc(chunk, 0x41 + i));

    expect(p.child.kill('SIGSTOP')).toBe(true);
    const writes = parts.map((b, i) => nfs.write(fh, i * chunk, b, STABLE.UNSTABLE));
    const deadline = Date.now() + 5000;
    while (receiveQueued(p.nfsPort) < parts.length * chunk && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(receiveQueued(p.nfsPort), 'all WRITE records queued at the stopped daemon').toBeGreaterThanOrEqual(parts.length * chunk);

    p.child.kill('SIGTERM');
    p.child.kill('SIGCONT');
    const stopped = exitWithin(p, STOP_BOUND_MS);

    // Once the first answer is back the daemon has SIGTERM (it was pending before the calls were
    // answered). Stop it again so that it is certainly alive while new connections are tried:
    // were a listener left open, they would sit in its backlog and be served on SIGCONT.
    const first = await Promise.race(writes);
    expect(statName(first.status)).toBe('NFS3_OK');
    expect(p.child.kill('SIGSTOP')).toBe(true);
    const probes = [p.nfsPort, p.mountPort].map((port) => probeNewConnection(port, STOP_BOUND_MS + 5000));
    await Promise.all(probes.map((pr) => pr.sent));
    p.child.kill('SIGCONT');
    const ends = await Promise.all(probes.map((pr) => pr.end));
    for (const [i, how] of ends.entries()) {
      expect(['ECONNREFUSED', 'ECONNRESET', 'closed without reply'], `new connection to ${i ? 'MOUNT' : 'NFS'} port after SIGTERM`).toContain(how);
    }
    for (const w of await Promise.all(writes)) expect(expectOk(w, 'WRITE in flight').count).toBe(chunk);
    nfs.close();

    const r = await stopped;
    expect(r.killed, `daemon did not exit within ${STOP_BOUND_MS} ms\n${p.out()}`).toBe(false);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
    expect(p.out()).toContain('"gvd stopped"');
    expect(fs.readFileSync(path.join(p.dir, 'zone', 'inflight')).equals(Buffer.concat(parts))).toBe(true);
  });

  it('SIGINT stops an idle daemon the same way and leaves no SQLite WAL behind', async () => {
    const p = await startDaemonProcess();
    p.child.kill('SIGINT');
    const r = await exitWithin(p, STOP_BOUND_MS);
    expect(r.killed).toBe(false);
    expect(r.signal, 'the daemon died of the signal instead of handling it').toBeNull();
    expect(r.code).toBe(0);
    expect(p.out()).toContain('"gvd stopped"');
    // SQLite was closed cleanly: no WAL left behind for the next start to replay.
    const state = fs.readdirSync(path.join(p.dir, 'state'));
    expect(state.filter((f) => f.endsWith('-wal') && fs.statSync(path.join(p.dir, 'state', f)).size > 0)).toEqual([]);
  });
});
