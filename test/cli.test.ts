import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProcess } from './harness/run.js';
import { pino } from 'pino';
import { demoConfig } from '../src/cli/demo.js';
import { startDaemon } from '../src/daemon/start.js';
import { MOUNT_PROGRAM, mountstat3 } from '../src/mount/constants.js';
import { PortmapClient } from '../src/portmap/client.js';
import { createPortmapProgram } from '../src/portmap/program.js';
import { RpcServer } from '../src/rpc/server.js';
import { accept_stat } from '../src/rpc/message.js';
import { RpcTcpClient } from '../src/util/rpc-client.js';
import { XdrWriter } from '../src/xdr/writer.js';

const ROOT = path.resolve(__dirname, '..');
const MAIN = path.join(ROOT, 'dist', 'cli', 'main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-cli-'));
const children = new Set<ChildProcess>();

beforeAll(() => {
  // Build once; errors in files being edited elsewhere must not stop the emit of ours.
  try {
    execFileSync('npx', ['tsc', '-p', '.'], { cwd: ROOT, stdio: 'pipe', timeout: 120_000 });
  } catch {
    /* tsc exits non-zero on type errors but still emits */
  }
  expect(fs.existsSync(MAIN)).toBe(true);
}, 130_000);

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function gv(args: string[], timeoutMs = 15_000): Promise<Run> {
  return runProcess(process.execPath, [MAIN, ...args], { cwd: tmp, timeoutMs, track: children });
}

interface Running {
  child: ChildProcess;
  ready: { nfsPort: number; mountPort: number; portmapPort: number | null; msg: string };
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** Start a daemon and wait (bounded) for its "gvd ready" line. */
function startGv(args: string[], timeoutMs = 20_000): Promise<Running> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let err = '';
    const exit = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no ready line within ${timeoutMs} ms; stdout: ${out}; stderr: ${err}`));
    }, timeoutMs);
    child.stderr!.on('data', (d) => (err += d));
    child.stdout!.on('data', (d) => {
      out += d;
      for (const line of out.split('\n')) {
        if (!line.includes('"msg":"gvd ready"')) continue;
        clearTimeout(t);
        resolve({ child, ready: JSON.parse(line), stdout: () => out, stderr: () => err, exit });
        return;
      }
    });
    void exit.then((code) => {
      clearTimeout(t);
      reject(new Error(`gv exited with ${code} before ready; stdout: ${out}; stderr: ${err}`));
    });
  });
}

async function stopGv(r: Running): Promise<number | null> {
  r.child.kill('SIGTERM');
  const t = setTimeout(() => r.child.kill('SIGKILL'), 12_000);
  const code = await r.exit;
  clearTimeout(t);
  return code;
}

describe('gv CLI', () => {
  it('an unknown flag exits 2 with a message', async () => {
    const r = await gv(['daemon', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option '--bogus'");
  });

  it('an unknown command exits 2 with a message', async () => {
    const r = await gv(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
  });

  it('a bad port value exits 2', async () => {
    const r = await gv(['daemon', '--demo', 'x', '--nfs-port', '99999']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--nfs-port.*must be a port number/);
  });

  it('--version and --help exit 0', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const v = await gv(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toBe(pkg.version);
    const h = await gv(['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/Usage: gv/);
    expect(h.stdout).toContain('daemon');
    const dh = await gv(['daemon', '--help']);
    expect(dh.stdout).toContain('--demo [dir]');
  });

  it('daemon without --config or --demo, or with a broken config, exits 2 naming the problem', async () => {
    const none = await gv(['daemon']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('needs --config FILE');
    const bad = path.join(tmp, 'bad.toml');
    fs.writeFileSync(bad, '[nfs]\nport = 70000\n');
    const r = await gv(['daemon', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`gv: ${bad}: nfs.port: port out of range (0-65535)`);
    const nostate = path.join(tmp, 'nostate.toml');
    fs.writeFileSync(nostate, '[zones.a]\npath = "a"\n');
    const r2 = await gv(['daemon', '--config', nostate]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain(`gv: ${nostate}: node.state_dir: missing (set it or pass --state-dir)`);
  });
});

describe('gv daemon --demo', () => {
  const dir = path.join(tmp, 'demo');
  const args = ['daemon', '--demo', dir, '--nfs-port', '0', '--mount-port', '0', '--portmap', 'off'];
  const mnt = (p: string) => new XdrWriter(32).string(p).bytes();

  it('starts, prints the mount commands and the ready line, answers MOUNT, exits 0 on SIGTERM', async () => {
    const d = await startGv(args);
    const { nfsPort, mountPort, portmapPort } = d.ready;
    expect(nfsPort).toBeGreaterThan(0);
    expect(mountPort).toBeGreaterThan(0);
    expect(mountPort).not.toBe(nfsPort);
    expect(portmapPort).toBeNull();
    // stderr is written after the ready line; wait (bounded) for the instructions
    for (let i = 0; i < 50 && !d.stderr().includes('Stop with Ctrl-C'); i++) await new Promise((r) => setTimeout(r, 100));
    expect(d.stderr()).toContain(`mount -t nfs -o vers=3,proto=tcp,port=${nfsPort},mountport=${mountPort},mountproto=tcp,nolock 127.0.0.1:/demo /mnt/demo`);
    expect(d.stderr()).toContain(`nfs://127.0.0.1/demo?version=3&nfsport=${nfsPort}&mountport=${mountPort}`);
    expect(d.stderr()).toContain('mount_nfs -o nfsv3,tcp');
    expect(fs.readFileSync(path.join(dir, 'demo', 'README.txt'), 'utf8')).toContain('GrapeVineFS');

    const c = await RpcTcpClient.connect(mountPort);
    const nul = await c.call(MOUNT_PROGRAM, 3, 0);
    expect(nul.accepted && nul.stat).toBe(accept_stat.SUCCESS);
    const r = await c.call(MOUNT_PROGRAM, 3, 1, mnt('/demo'), { auth: { uid: 0, gid: 0 } });
    expect(r.body.u32()).toBe(mountstat3.MNT3_OK);
    const handle1 = Buffer.from(r.body.opaque(64));
    // MOUNT is also answered on the NFS port
    const c2 = await RpcTcpClient.connect(nfsPort);
    expect((await c2.call(MOUNT_PROGRAM, 3, 0)).stat).toBe(accept_stat.SUCCESS);
    c.close();
    c2.close();
    expect(await stopGv(d)).toBe(0);
    expect(d.stdout()).toContain('"msg":"gvd stopped"');

    // Restart on the same directory: the root handle is unchanged (zone id and fileid persisted).
    const again = await startGv(args);
    const c3 = await RpcTcpClient.connect(again.ready.mountPort);
    const r2 = await c3.call(MOUNT_PROGRAM, 3, 1, mnt('/demo'), { auth: { uid: 0, gid: 0 } });
    expect(r2.body.u32()).toBe(mountstat3.MNT3_OK);
    expect(Buffer.from(r2.body.opaque(64)).toString('hex')).toBe(handle1.toString('hex'));
    c3.close();
    expect(await stopGv(again)).toBe(0);
  }, 60_000);
});

describe('startDaemon portmap modes (in process, portmapper on a test port)', () => {
  const silent = pino({ level: 'silent' });
  const cfg = (name: string, portmap: 'auto' | 'on' | 'off') =>
    demoConfig(path.join(tmp, name), { nfsPort: 0, mountPort: 0, portmap });

  it('"on" fails clearly when the portmapper port is taken, and releases what it opened', async () => {
    const busy = new RpcServer();
    const port = await busy.listen(0, '127.0.0.1');
    try {
      fs.mkdirSync(path.join(tmp, 'on-busy'), { recursive: true });
      await expect(startDaemon(cfg('on-busy', 'on'), { logger: silent, portmapPort: port }))
        .rejects.toThrow(`nfs.portmap = "on" but port ${port} cannot be served`);
      // the database was closed: a second start on the same state dir works
      const d = await startDaemon(cfg('on-busy', 'off'), { logger: silent });
      expect(d.portmapMode).toBe('off');
      await d.stop();
    } finally {
      await busy.close();
    }
  });

  it('"auto" registers with a running portmapper and unregisters on stop', async () => {
    const pmProg = createPortmapProgram();
    const pm = new RpcServer();
    pm.register(pmProg);
    const port = await pm.listen(0, '127.0.0.1');
    try {
      const d = await startDaemon(cfg('auto-reg', 'auto'), { logger: silent, portmapPort: port });
      expect(d.portmapMode).toBe('registered');
      expect(d.portmapPort).toBe(port);
      const c = await PortmapClient.connect('127.0.0.1', port);
      expect(await c.getport(100003, 3, 6)).toBe(d.nfsPort);
      expect(await c.getport(MOUNT_PROGRAM, 3, 6)).toBe(d.mountPort);
      expect(await c.getport(MOUNT_PROGRAM, 3, 17)).toBe(d.mountPort);
      await d.stop();
      expect(await c.dump()).toEqual([]);
      c.close();
    } finally {
      await pm.close();
    }
  });

  it('"on" serves the portmapper itself with our services registered', async () => {
    const free = new RpcServer();
    const port = await free.listen(0, '127.0.0.1');
    await free.close();
    const d = await startDaemon(cfg('on-served', 'on'), { logger: silent, portmapPort: port });
    try {
      expect(d.portmapMode).toBe('served');
      const c = await PortmapClient.connect('127.0.0.1', port);
      const maps = await c.dump();
      expect(maps).toContainEqual({ prog: 100000, vers: 2, prot: 6, port });
      expect(maps).toContainEqual({ prog: 100003, vers: 3, prot: 6, port: d.nfsPort });
      expect(maps).toContainEqual({ prog: MOUNT_PROGRAM, vers: 3, prot: 17, port: d.mountPort });
      c.close();
    } finally {
      await d.stop();
    }
  });
});

describe('Debian clients against gv daemon --demo in a private network namespace (root only)', () => {
  it('rpcinfo -p, showmount -e and nfs-ls (through our portmapper on 111) work; SIGTERM exits 0', async (ctx) => {
    let reason = '';
    if (process.getuid?.() !== 0) reason = 'not root';
    else {
      try {
        execFileSync('unshare', ['-n', 'true'], { stdio: 'pipe', timeout: 10_000 });
      } catch {
        reason = 'cannot create a network namespace (unshare -n)';
      }
    }
    if (reason) {
      console.warn(`skipped: ${reason}`);
      ctx.skip(reason);
    }
    const dir = path.join(tmp, 'netns-demo');
    const out = path.join(tmp, 'netns-demo.out');
    const script = `
      set -u
      ip link set lo up
      node ${JSON.stringify(MAIN)} daemon --demo ${JSON.stringify(dir)} --portmap on > ${JSON.stringify(out)} 2>&1 &
      pid=$!
      trap 'kill -KILL $pid 2>/dev/null' EXIT TERM INT
      for i in $(seq 1 150); do grep -q '"msg":"gvd ready"' ${JSON.stringify(out)} && break; sleep 0.1; done
      echo ===RPCINFO; timeout 10 rpcinfo -p 127.0.0.1
      echo ===SHOWMOUNT; timeout 10 showmount -e 127.0.0.1
      echo ===NFSLS; timeout 10 nfs-ls 'nfs://127.0.0.1/demo?version=3'
      kill -TERM $pid; wait $pid; echo "===EXIT $?"
    `;
    const stdout = execFileSync('unshare', ['-n', 'bash', '-c', script], { encoding: 'utf8', timeout: 60_000 });
    const ready = fs.readFileSync(out, 'utf8').split('\n').find((l) => l.includes('"msg":"gvd ready"'));
    expect(ready).toBeDefined();
    const r = JSON.parse(ready!) as { nfsPort: number; mountPort: number; portmapPort: number };
    expect(r).toMatchObject({ nfsPort: 2049, mountPort: 20048, portmapPort: 111 }); // root + free ports
    expect(stdout).toMatch(/100000\s+2\s+tcp\s+111\s+portmapper/);
    expect(stdout).toMatch(/100003\s+3\s+tcp\s+2049\s+nfs/);
    expect(stdout).toMatch(/100005\s+3\s+udp\s+20048\s+mountd/);
    expect(stdout).toMatch(/Export list for 127\.0\.0\.1:\n\/demo\s+127\.0\.0\.1\/32/);
    expect(stdout).toMatch(/===NFSLS\n.*README\.txt/);
    expect(stdout).toContain('===EXIT 0');
  }, 90_000);
});
