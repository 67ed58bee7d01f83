/**
 * A watcher on a zone's directory while the daemon runs: every path it reports is, after a short
 * debounce, reconciled with the index on the journal's queue (scan.ts). The daemon's own changes
 * are in the index (or pending in the coalescer) by then, so they compare equal and are not
 * journaled twice; while one of them is still under way (ZoneJournal.hold: from before its system
 * call until its journal task ran) the look is put off. Removals wait a little longer than
 * additions, so that a rename (unlink + add) is seen from its new name first and journaled as a
 * rename.
 *
 * The watcher runs in a child process (plain per-directory fs.watch where the platform names the
 * changed entry, chokidar elsewhere). chokidar re-reads a directory (readdir + stat of every entry) on
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
import { reconcile, type ScanStats, newScanStats, SKIP_AT_ROOT, unchanged } from './scan.js';
import type { ZoneJournal } from './zone-journal.js';

/** Looks put off while the daemon's own mutation holds a path (at the debounce interval: ~20 s). */
const MAX_DEFERRALS = 400;
/** Objects in a newly found directory reconciled in the task that found it (the rest: own looks). */
const LOOK_INLINE = 256;
const SLASH = Buffer.from('/');

export interface ZoneWatcherOptions {
  /** Debounce of additions and changes (default 50 ms). */
  debounceMs?: number;
  /** Delay before a removal is looked at (default 250 ms). */
  removalDelayMs?: number;
  /** Longest start() waits for the initial crawl (default 10 s). */
  readyTimeoutMs?: number;
  /** The watcher process: per-directory fs.watch, or chokidar (default: 'dirs' where fs.watch names entries). */
  engine?: 'dirs' | 'chokidar';
  warn?: (obj: object, msg: string) => void;
}

/**
 * The watcher process on platforms whose fs.watch names the entry that changed (inotify on Linux,
 * FSEvents on macOS, Windows): one plain fs.watch per directory, no stat or listing per event.
 * chokidar re-lists the whole directory (readdir + stat of every entry) on every event in it, which
 * for a directory of n files makes creating n files O(n^2): measured with the small-file bench, its
 * process used 5.9-7 s of CPU per 1000 files created and removed (more than the daemon itself, on
 * the same cores).
 *
 * Most of this process's CPU is waking up, not handling an event: woken for every event (a CREATE
 * and a WRITE through NFS are two), it used ~150 µs of CPU per small file created. So once woken
 * it naps (HOLD_MS, a blocking wait that uses no CPU) and lets events queue in the kernel; libuv
 * then reads them all in one go and the batch goes out at the end of that loop turn (setImmediate),
 * one IPC message. In a batch a path is listed once: 'c' when only its content or attributes
 * changed, else (an entry was made, removed or moved: 'rename') 'a' or 'u' from one lstat at send
 * time; a new directory found so is watched, then listed (its entries announced as 'a'), so
 * nothing created in it meanwhile is missed. A batch is { t: 'evs', s }: per path its kind letter,
 * its path relative to the root, and a NUL (no file name holds one).
 */
const HOLD_MS = 25;
const DIRS_CHILD_SOURCE = `
const fs = require('node:fs');
const path = require('node:path');
const { root, skip } = JSON.parse(process.argv[1]);
const skipSet = new Set(skip);
const rootPre = root.endsWith(path.sep) ? root : root + path.sep;
const join = (d, n) => (d.endsWith(path.sep) ? d + n : d + path.sep + n);
const send = (m) => { if (process.connected) process.send(m); };
process.on('disconnect', () => process.exit(0));
const watchers = new Map();
/** This batch's paths: true once an entry was made, removed or moved there, else false. */
let batch = new Map();
let armed = false;
const nap = new Int32Array(new SharedArrayBuffer(4));
const rel = (p) => (p === root ? '' : p.slice(rootPre.length));
/** Woken by an event: nap so that what follows queues up, then send everything read this turn. */
function arm() {
  if (armed) return;
  armed = true;
  Atomics.wait(nap, 0, 0, ${HOLD_MS});
  setImmediate(flush);
}
function flush() {
  armed = false;
  const b = batch;
  batch = new Map();
  let s = '';
  for (const [p, renamed] of b) {
    if (!renamed) { s += 'c' + rel(p) + '\\0'; continue; }
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (!st) {
      if (watchers.has(p)) unwatchUnder(p);
      s += 'u' + rel(p) + '\\0';
      continue;
    }
    s += 'a' + rel(p) + '\\0';
    if (st.isDirectory()) s += watchDir(p, true);
  }
  if (s !== '') send({ t: 'evs', s });
}
function unwatchUnder(dir) {
  const pre = dir + path.sep;
  for (const [d, w] of watchers) if (d === dir || d.startsWith(pre)) { w.close(); watchers.delete(d); }
}
/** Watch \`dir\` and what is below it; answers its entries as 'a' lines when \`announce\`. */
function watchDir(dir, announce) {
  if (dir.startsWith(rootPre) && skipSet.has(dir.slice(rootPre.length).split(path.sep)[0])) return '';
  const old = watchers.get(dir);
  if (old) {
    // Still the directory watched? One removed and made again before its events were read
    // leaves a watch on the removed one: watch the new one afresh.
    const st = fs.lstatSync(dir, { throwIfNoEntry: false });
    if (!st || st.ino === old.ino) return '';
    unwatchUnder(dir);
  }
  const st0 = fs.lstatSync(dir, { throwIfNoEntry: false });
  if (!st0 || !st0.isDirectory()) return '';
  let w;
  try {
    w = fs.watch(dir, { persistent: true }, (ev, name) => onEvent(dir, ev, name));
  } catch (e) {
    if (e.code !== 'ENOENT' && e.code !== 'ENOTDIR') send({ t: 'error', msg: 'watch ' + dir + ': ' + String(e) });
    return '';
  }
  w.on('error', (e) => { unwatchUnder(dir); if (e.code !== 'ENOENT' && e.code !== 'EPERM') send({ t: 'error', msg: String(e) }); });
  w.ino = st0.ino;
  watchers.set(dir, w);
  let ents;
  try { ents = fs.readdirSync(dir, { withFileTypes: true }); } catch { return ''; }
  let s = '';
  for (const e of ents) {
    const p = join(dir, e.name);
    if (announce) s += 'a' + rel(p) + '\\0';
    if (e.isDirectory()) s += watchDir(p, announce);
  }
  return s;
}
function onEvent(dir, ev, name) {
  if (name === null || name === undefined) {
    if (!batch.has(dir)) batch.set(dir, false);
  } else {
    // Only the root holds skipped names.
    if (dir === root && skipSet.has(String(name))) return;
    const p = join(dir, String(name));
    if (ev !== 'change') batch.set(p, true);
    else if (!batch.has(p)) batch.set(p, false);
  }
  arm();
}
watchDir(root, false);
send({ t: 'ready' });
process.on('message', (m) => {
  if (m === 'stop') { for (const w of watchers.values()) w.close(); watchers.clear(); send({ t: 'closed' }); process.exit(0); }
});
`;

/** Where fs.watch names what changed in a directory; elsewhere (kqueue: BSDs) chokidar is used. */
const NAMED_EVENTS = process.platform === 'linux' || process.platform === 'darwin' || process.platform === 'win32';

/** The watcher process: chokidar on argv root, each event sent as { t, event, p }. */
const CHOKIDAR_CHILD_SOURCE = `
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
  t: 'ev' | 'evs' | 'error' | 'ready' | 'closed';
  event?: string;
  p?: string;
  /** A batch: per path its kind ('a' added, 'c' changed, 'u' gone), path relative to the root, NUL. */
  s?: string;
  msg?: string;
}

interface Due {
  rel: string;
  at: number;
  gen: number;
}

interface Look {
  relPath: string;
  rel: Buffer;
  attempt: number;
}

export class ZoneWatcher {
  readonly stats: ScanStats = newScanStats();
  private child: ChildProcess | null = null;
  /** Per path (relative) its latest look asked for: its ask number and how often it was put off. */
  private readonly pending = new Map<string, { gen: number; attempt: number }>();
  /** Looks asked for, in due order: after the debounce (0), after the removal delay (1). */
  private readonly queues: [Due[], Due[]] = [[], []];
  private readonly heads = [0, 0];
  private gen = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private readonly root: string;
  private readonly rootBuf: Buffer;
  private stopped = false;

  constructor(private readonly journal: ZoneJournal, root: string, private readonly opts: ZoneWatcherOptions = {}) {
    this.root = path.resolve(root);
    this.rootBuf = Buffer.from(this.root);
  }

  /** Start watching; resolves when the initial crawl finished (or its time ran out). */
  async start(): Promise<void> {
    const engine = this.opts.engine ?? (NAMED_EVENTS ? 'dirs' : 'chokidar');
    const chokidar = engine === 'chokidar' ? pathToFileURL(createRequire(import.meta.url).resolve('chokidar')).href : '';
    const source = engine === 'chokidar' ? CHOKIDAR_CHILD_SOURCE : DIRS_CHILD_SOURCE;
    const w = spawn(process.execPath, ['-e', source, JSON.stringify({ root: this.root, chokidar, skip: [...SKIP_AT_ROOT] })], {
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
      if (m.t === 'evs' && m.s !== undefined) {
        const s = m.s;
        for (let i = 0, end = s.indexOf('\0'); end > i; i = end + 1, end = s.indexOf('\0', i)) {
          this.noticeRel(s.slice(i + 1, end), s.charCodeAt(i) === 0x75 /* u */);
        }
      } else if (m.t === 'ev' && m.p !== undefined) this.notice(m.p, m.event === 'unlink' || m.event === 'unlinkDir');
      else if (m.t === 'ready') ready();
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

  /** Something happened at absolute path `p` (what the watcher process reports): look at it soon. */
  notice(p: string, removal: boolean): void {
    this.noticeRel(path.relative(this.root, p), removal);
  }

  /** Something happened at `rel` (relative to the zone root): look at it soon. */
  private noticeRel(rel: string, removal: boolean): void {
    this.schedule(rel, removal ? 1 : 0, 0);
  }

  /**
   * Look at `rel` after the debounce (queue 0) or the removal delay (queue 1). While a mutation the
   * daemon brokers holds the path or the object found there (from before its system call until its
   * journal task ran), what is there is the daemon's own change: looking now would journal it a
   * second time, or journal a rename's old name as removed before the rename's own entry. Then it
   * looks again later (bounded).
   *
   * No timer per path: each queue has one delay, so its looks fall due in the order they were
   * asked for; a newer ask for a path supersedes the older one (its entry is skipped when due).
   * One timer for the earliest, and one journal task for all that fell due together.
   */
  private schedule(rel: string, queue: 0 | 1, attempt: number): void {
    if (this.stopped) return;
    const gen = ++this.gen;
    this.pending.set(rel, { gen, attempt });
    const at = performance.now() + (queue === 1 ? (this.opts.removalDelayMs ?? 250) : (this.opts.debounceMs ?? 50));
    this.queues[queue].push({ rel, at, gen });
    this.arm(at);
  }

  private arm(at: number): void {
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - performance.now()));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = null;
    this.timerAt = Infinity;
    if (this.stopped) return;
    const now = performance.now();
    const due: Look[] = [];
    let next = Infinity;
    for (let q = 0; q < 2; q++) {
      const queue = this.queues[q]!;
      let h = this.heads[q]!;
      for (; h < queue.length && queue[h]!.at <= now; h++) {
        const e = queue[h]!;
        const p = this.pending.get(e.rel);
        if (!p || p.gen !== e.gen) continue; // superseded
        this.pending.delete(e.rel);
        const rel = Buffer.from(e.rel);
        if (!this.putOff(e.rel, rel, p.attempt)) due.push({ relPath: e.rel, rel, attempt: p.attempt });
      }
      if (h > 1024 && h * 2 > queue.length) {
        queue.splice(0, h);
        h = 0;
      }
      this.heads[q] = h;
      if (h < queue.length) next = Math.min(next, queue[h]!.at);
    }
    if (next !== Infinity) this.arm(next);
    if (due.length > 0) void this.journal.enqueue('watch', () => this.lookAll(due, 0));
  }

  /** True when this look is put off (held: asked again later) or superseded by a newer ask. */
  private putOff(relPath: string, rel: Buffer, attempt: number, ino?: bigint): boolean {
    if (this.pending.has(relPath) || this.stopped) return true;
    if (!this.journal.busy(rel, ino) || attempt >= MAX_DEFERRALS) return false;
    this.stats.deferred++;
    this.schedule(relPath, 0, attempt + 1);
    return true;
  }

  /** On the journal's queue: the looks from `i` on, synchronously as long as they need no I/O. */
  private lookAll(looks: Look[], i: number): Promise<void> | undefined {
    for (; i < looks.length; i++) {
      const done = this.look(looks[i]!);
      if (done) {
        const from = i + 1;
        return done.then(() => this.lookAll(looks, from));
      }
    }
    return undefined;
  }

  /** Reconcile one path (on the journal's queue); undefined when that took no I/O but its lstat. */
  private look({ relPath, rel, attempt }: Look): Promise<void> | undefined {
    if (this.putOff(relPath, rel, attempt)) return undefined;
    const abs = relPath === '' ? this.root : this.root + path.sep + relPath;
    const st = fs.lstatSync(abs, { bigint: true, throwIfNoEntry: false });
    if (st && this.putOff(relPath, rel, attempt, st.ino)) return undefined;
    if (st && unchanged(this.journal, rel, st)) {
      // Most often the daemon's own change, journaled with these very attributes.
      this.stats.entries++;
      this.stats.quick++;
      return undefined;
    }
    const newDir = rel.length > 0 && !!st && st.isDirectory() && !this.journal.index.get(st.ino);
    const done = reconcile(this.journal, this.rootBuf, rel, st, this.stats);
    // A directory new to the journal: what was made in it before the watcher process watched
    // it (chokidar lists a new directory before it watches it) is looked at here, parents first.
    return newDir ? done.then(() => this.lookInside(rel, { left: LOOK_INLINE })) : done;
  }

  /**
   * Reconcile what in directory `dir` the journal does not know yet (on the journal's queue, in
   * the task that found `dir`), new directories' contents too. What a mutation the daemon brokers
   * holds is left to its own entry; known objects to their own events. Bounded by `budget`.
   */
  private async lookInside(dir: Buffer, budget: { left: number }): Promise<void> {
    if (this.stopped) return;
    const abs = Buffer.concat([this.rootBuf, SLASH, dir]);
    let names: Buffer[];
    try {
      names = fs.readdirSync(abs, { encoding: 'buffer' });
    } catch {
      return;
    }
    for (const name of names) {
      const rel = Buffer.concat([dir, SLASH, name]);
      const st = fs.lstatSync(Buffer.concat([this.rootBuf, SLASH, rel]), { bigint: true, throwIfNoEntry: false });
      if (!st || this.journal.index.get(st.ino) || this.journal.busy(rel, st.ino) || this.journal.coalescer.has(st.ino)) continue;
      if (budget.left-- <= 0) {
        // A large tree: the rest in looks of their own (their parent is journaled already).
        this.noticeRel(rel.toString(), false);
        continue;
      }
      await reconcile(this.journal, this.rootBuf, rel, st, this.stats);
      if (st.isDirectory()) await this.lookInside(rel, budget);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending.clear();
    this.queues[0].length = 0;
    this.queues[1].length = 0;
    this.heads[0] = this.heads[1] = 0;
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
