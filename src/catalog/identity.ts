import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { GvError } from '../errors.js';

/** This node's identity: a random 128-bit id and an Ed25519 key pair (private key 0600). */
export interface NodeIdentity {
  name: string;
  /** 32 hex digits. */
  id: string;
  /** SPKI PEM. */
  publicKey: string;
  createdMs: number;
}

export const IDENTITY_FILE = 'node.json';
export const PRIVATE_KEY_FILE = 'node.key';

/** Write a new identity into `stateDir`; EEXIST when one is there already (never overwritten). */
export function createIdentity(stateDir: string, name: string): NodeIdentity {
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const idFile = path.join(stateDir, IDENTITY_FILE);
  const keyFile = path.join(stateDir, PRIVATE_KEY_FILE);
  for (const f of [idFile, keyFile]) {
    if (fs.existsSync(f)) {
      throw new GvError('EEXIST', `${f} exists: this state directory already has a node identity (use another --state-dir, or keep this one)`, { file: f });
    }
  }
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const identity: NodeIdentity = {
    name,
    id: randomBytes(16).toString('hex'),
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    createdMs: Date.now(),
  };
  writeExclusive(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
  writeExclusive(idFile, JSON.stringify(identity, null, 2) + '\n', 0o644);
  return identity;
}

/** The identity in `stateDir`, or null when `gv init` has not made one. */
export function readIdentity(stateDir: string): NodeIdentity | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(stateDir, IDENTITY_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const j = JSON.parse(text) as Partial<NodeIdentity>;
  if (typeof j.id !== 'string' || typeof j.name !== 'string' || typeof j.publicKey !== 'string') {
    throw new GvError('CONFIG', `${path.join(stateDir, IDENTITY_FILE)}: not a node identity (restore it from a backup)`);
  }
  return { name: j.name, id: j.id, publicKey: j.publicKey, createdMs: Number(j.createdMs ?? 0) };
}

/** Create `file` (failing if it exists) with `mode`, write, fsync. */
export function writeExclusive(file: string, text: string, mode: number): void {
  const fd = fs.openSync(file, 'wx', mode);
  try {
    fs.fchmodSync(fd, mode);
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
