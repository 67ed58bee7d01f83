/**
 * A chokidar watcher on a zone's directory while the daemon runs: every path it reports is, after
 * a short debounce, reconciled with the index on the journal's queue (scan.ts). The daemon's own
 * changes are already in the index (or pending in the coalescer) by then, so they compare equal
 * and are not journaled twice. Removals wait a little longer than additions, so that a rename
 * (unlink + add) is seen from its new name first and journaled as a rename.
 *
 * chokidar runs in a child process: it re-reads a directory (readdir + stat of every entry) on
 * each event in it, which for a directory of thousands of files costs milliseconds per event. On
 * the main thread that time is taken from NFS calls, and even in a worker thread its stat calls
 * crowd the libuv thread pool the daemon's file I/O shares (measured with the small-file bench:
 * creates 700/s -> 50/s on the main thread, 250/s in a worker). The child exits when the daemon's
 * IPC channel closes, so it cannot outlive a killed daemon.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { spawn, type ChildProcess } from 'node:child_process';
import { reconcile, type ScanStats, newScanStats } from './scan.js';
import type { ZoneJournal } from './zone-journal.js';

export interface ZoneWatcherOptions {
  /** Debounce of additions and changes (default 50 ms). */
  debounceMs?: number;
  /** Delay before a removal is looked at (default 250 ms). */
  removalDelayMs?: number;
  /** Longest start() waits for the initial crawl (default 10 s). */
  readyTimeoutMs?: number;
  warn?: (obj: object, msg: string) => void;
}

/** The watcher process: chokidar on argv root, each event sent as { t, event, p }. */
const CHILD_SOURCE = `
const path = require('node:path');
const { root, chokidar, skip } = JSON.parse(process.argv[1]);
const skipSet = new Set(skip);
const send = (m) => { if (process.connected) process.send(m); };
process.on('disconnect', () => process.exit(0));
import(chokidar).then(({ watch }) => {
  const w = watch(root, {
    ignoreInitial: true, followSymlinks: false, persistent: true, atomic: false,
    ignored: (p) => {
      const rel = path.relative(root, p);
      return rel !== '' && skipSet.has(rel.split(path.sep)[0]);
    },
  });
  w.on('all', (event, p) => send({ t: 'ev', event, p }));
  w.on('error', (e) => send({ t: 'error', msg: String(e) }));
  w.on('ready', () => send({ t: 'ready' }));
  process.on('message', (m) => {
    if (m === 'stop') w.close().then(() => { send({ t: 'closed' }); process.exit(0); });
  });
}, (e) => { send({ t: 'error', msg: 'chokidar: ' + String(e) }); process.exit(1); });
`;

interface WatcherMessage {
  t: 'ev' | 'error' | 'ready' | 'closed';
  event?: string;
  p?: string;
  msg?: string;
}

export class ZoneWatcher {
  readonly stats: ScanStats = newScanStats();
  private child: ChildProcess | null = null;
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly root: string;
  private readonly rootBuf: Buffer;
  private stopped = false;

  constructor(private readonly journal: ZoneJournal, root: string, private readonly opts: ZoneWatcherOptions = {}) {
    this.root = path.resolve(root);
    this.rootBuf = Buffer.from(this.root);
  }

  /** Start watching; resolves when the initial crawl finished (or its time ran out). */
  async start(): Promise<void> {
    const chokidar = pathToFileURL(createRequire(import.meta.url).resolve('chokidar')).href;
    const w = spawn(process.execPath, ['-e', CHILD_SOURCE, JSON.stringify({ root: this.root, chokidar, skip: ['.zfs'] })], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    w.unref();
    w.channel?.unref();
    this.child = w;
    let ready: () => void = () => undefined;
    const isReady = new Promise<void>((resolve) => {
      ready = resolve;
    });
    w.on('message', (m: WatcherMessage) => {
      if (m.t === 'ev' && m.p !== undefined) {
        const removal = m.event === 'unlink' || m.event === 'unlinkDir';
        this.schedule(m.p, removal ? (this.opts.removalDelayMs ?? 250) : (this.opts.debounceMs ?? 50));
      } else if (m.t === 'ready') ready();
      else if (m.t === 'error') this.opts.warn?.({ zone: this.journal.zoneName, err: m.msg }, 'zone watcher error');
    });
    w.on('error', (err) => {
      this.opts.warn?.({ zone: this.journal.zoneName, err: String(err) }, 'zone watcher failed');
      ready();
    });
    w.on('exit', () => ready());
    await new Promise<void>((resolve) => {
      // Not unref'd: until the child is ready this timer is what keeps a starting daemon alive.
      const t = setTimeout(resolve, this.opts.readyTimeoutMs ?? 10_000);
      void isReady.then(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  private schedule(p: string, delay: number): void {
    if (this.stopped) return;
    const old = this.timers.get(p);
    if (old) clearTimeout(old);
    const t = setTimeout(() => {
      this.timers.delete(p);
      if (this.stopped) return;
      const rel = Buffer.from(path.relative(this.root, p));
      void this.journal.enqueue('watch', () => {
        const st = fs.lstatSync(p, { bigint: true, throwIfNoEntry: false });
        return reconcile(this.journal, this.rootBuf, rel, st, this.stats);
      });
    }, delay);
    t.unref();
    this.timers.set(p, t);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    const w = this.child;
    this.child = null;
    if (!w || w.exitCode !== null || w.signalCode !== null) return;
    // Let chokidar close its watches and the child exit (bounded), else kill it.
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        w.kill('SIGKILL');
        resolve();
      }, 2000);
      w.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      try {
        w.send('stop');
      } catch {
        w.kill('SIGKILL');
      }
    });
  }
}
