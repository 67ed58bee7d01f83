/**
 * The peer protocol as the daemon runs it: identity and certificate from the state directory
 * (peer.crt made on first use), the server on `listen:port`, the pool for outgoing connections,
 * pins in the catalog's node table. The daemon (daemon/start.ts) wires it.
 */
import { createIdentity, readIdentity, type NodeIdentity } from '../catalog/identity.js';
import { GvError } from '../errors.js';
import type { GvDatabase } from '../journal/db.js';
import type { LocalReplicaSource } from '../replication/source.js';
import { loadOrCreateCertificate } from './certificate.js';
import { silentLog, type PeerLog } from './log.js';
import { SqlitePinStore, type PinStore } from './pins.js';
import { PeerPool } from './pool.js';
import { PeerServer } from './server.js';

/** The default TCP port of the peer protocol. */
export const DEFAULT_PEER_PORT = 5387;

export interface PeerServiceOptions {
  stateDir: string;
  /** Used when the state directory has no identity yet (one is created, as ELP does). */
  nodeName: string;
  clusterKey: Buffer;
  /** Pins live in this database's catalog_nodes (or give `pins`). */
  db?: GvDatabase;
  pins?: PinStore;
  source: LocalReplicaSource;
  listen: string;
  /** 0 picks a free port. */
  port: number;
  addressesOf: (peerId: string) => string[];
  log?: PeerLog;
  requestTimeoutMs?: number;
}

export interface PeerService {
  port: number;
  pool: PeerPool;
  server: PeerServer;
  /** SHA-256 of this node's peer certificate, hex. */
  fingerprint: string;
  identity: NodeIdentity;
  close(): Promise<void>;
}

export async function startPeerService(o: PeerServiceOptions): Promise<PeerService> {
  const log = o.log ?? silentLog;
  let identity = readIdentity(o.stateDir);
  if (!identity) {
    identity = createIdentity(o.stateDir, o.nodeName);
    log('info', { id: identity.id }, 'node identity created (no gv init ran for this state directory)');
  }
  const cert = loadOrCreateCertificate(o.stateDir);
  const pins = o.pins ?? (o.db ? new SqlitePinStore(o.db) : null);
  if (!pins) throw new GvError('EINVAL', 'startPeerService needs db or pins');
  const pool = new PeerPool({
    identity, keyPem: cert.keyPem, certPem: cert.pem, clusterKey: o.clusterKey, pins, addressesOf: o.addressesOf, log,
    requestTimeoutMs: o.requestTimeoutMs,
  });
  const server = new PeerServer({
    identity, keyPem: cert.keyPem, certPem: cert.pem, clusterKey: o.clusterKey, pins, source: o.source, log,
  });
  let port: number;
  try {
    port = await server.listen(o.port, o.listen);
  } catch (err) {
    pool.close();
    throw err;
  }
  log('info', { listen: o.listen, port, fingerprint: cert.fingerprint }, 'peer protocol listening');
  return {
    port, pool, server, fingerprint: cert.fingerprint, identity,
    close: async () => {
      pool.close();
      await server.close();
    },
  };
}
