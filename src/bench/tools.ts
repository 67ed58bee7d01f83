import { access, mkdir, stat } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GvError, toGvError } from '../errors.js';
import { runCommand } from './processes.js';

/** Repository root, from dist/bench/*.js (or src/bench/*.ts under a TS runner). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const benchDir = path.join(repoRoot, 'bench');

/** First executable called `name` on $PATH (plus the sbin directories), or null. */
export async function findExecutable(name: string): Promise<string | null> {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/local/sbin']);
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      await access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      /* try the next one */
    }
  }
  return null;
}

export interface Helpers {
  nfsio: string;
  smallfiles: string;
  nfsCp: string;
}

/** Compile bench/c/*.c against libnfs into `outDir` and locate nfs-cp. */
export async function buildHelpers(outDir: string): Promise<Helpers> {
  const gcc = await findExecutable('gcc');
  if (!gcc) throw new GvError('CONFIG', 'gcc not found: apt-get install -y gcc libnfs-dev');
  try {
    await stat('/usr/include/nfsc/libnfs.h');
  } catch {
    throw new GvError('CONFIG', 'libnfs headers not found: apt-get install -y libnfs-dev');
  }
  const nfsCp = await findExecutable('nfs-cp');
  if (!nfsCp) throw new GvError('CONFIG', 'nfs-cp not found: apt-get install -y libnfs-utils');
  await mkdir(outDir, { recursive: true }).catch((e: unknown) => { throw toGvError(e); });
  const out: Partial<Helpers> = { nfsCp };
  for (const name of ['nfsio', 'smallfiles'] as const) {
    const bin = path.join(outDir, name);
    await runCommand([gcc, '-O2', '-Wall', '-o', bin, path.join(benchDir, 'c', `${name}.c`), '-lnfs'], { timeoutMs: 120_000 });
    out[name] = bin;
  }
  return out as Helpers;
}
