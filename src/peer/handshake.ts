/**
 * Both halves of the HELLO exchange over a FrameSocket that just finished its TLS handshake.
 * The server answers nothing (not even an error) until the client proved the cluster key; both
 * sides then check the other's certificate pin. Bounded: HELLO_TIMEOUT_MS and HELLO_MAX_BYTES.
 */
import { createHash } from 'node:crypto';
import { GvError } from '../errors.js';
import { FrameType, MAX_FRAME, Op } from './frame.js';
import type { FrameSocket } from './frame-socket.js';
import {
  CLIENT_LABEL, HELLO_MAX_BYTES, HELLO_TIMEOUT_MS, PROTOCOL_VERSION, SERVER_LABEL,
  decodeHello, encodeHello, proofMatches, proofOf, sessionSecret,
} from './hello.js';
import type { PinStore } from './pins.js';
import type { PeerLog } from './log.js';

export interface SelfAuth {
  nodeId: string;
  nodeName: string;
  clusterKey: Buffer;
  /** Raw SHA-256 of this node's certificate DER. */
  fingerprint: Buffer;
  pins: PinStore;
  log: PeerLog;
}

export interface PeerIdentity {
  nodeId: string;
  nodeName: string;
  /** Hex SHA-256 of the peer's certificate. */
  fingerprint: string;
}

/** Fingerprint of the certificate the other side presented, or null when it sent none. */
function peerFingerprint(fs: FrameSocket): Buffer | null {
  const cert = fs.socket.getPeerCertificate();
  if (!cert || !cert.raw || cert.raw.length === 0) return null;
  return createHash('sha256').update(cert.raw).digest();
}

/** Check and record the pin; a reason string when the peer is refused. */
function checkPin(self: SelfAuth, peer: PeerIdentity): string | null {
  if (peer.nodeId === self.nodeId) return 'peer claims this node\'s own id';
  const state = self.pins.check(peer.nodeId, peer.nodeName, peer.fingerprint);
  if (state === 'mismatch') {
    self.log('warn', { peer: peer.nodeName, id: peer.nodeId, fingerprint: peer.fingerprint }, 'peer refused: certificate differs from the pinned one');
    return 'certificate differs from the pinned one';
  }
  if (state === 'new') {
    try {
      self.pins.pin(peer.nodeId, peer.nodeName, peer.fingerprint);
    } catch (err) {
      self.log('warn', { peer: peer.nodeName, id: peer.nodeId, err: (err as Error).message }, 'peer refused: cannot pin its certificate');
      return `cannot pin: ${(err as Error).message}`;
    }
    self.log('info', { peer: peer.nodeName, id: peer.nodeId, fingerprint: peer.fingerprint }, 'peer certificate pinned (first authenticated contact)');
  }
  return null;
}

/** Wait for the first frame under the pre-HELLO bounds. */
function firstFrame(fs: FrameSocket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    fs.decoder.setMaxFrame(HELLO_MAX_BYTES);
    const timer = setTimeout(() => {
      fs.close('no HELLO in time', 'info');
    }, HELLO_TIMEOUT_MS);
    timer.unref();
    const sizeCheck = () => {
      if (fs.bytesIn > HELLO_MAX_BYTES) fs.close(`over ${HELLO_MAX_BYTES} bytes before HELLO`, 'info');
    };
    fs.socket.on('data', sizeCheck);
    fs.onClose((reason) => {
      clearTimeout(timer);
      // The server says nothing when it refuses: wrong cluster key, pin refused, or a lost link.
      reject(new GvError('EACCES', `handshake failed (closed before HELLO: not in this cluster, refused pin, or network): ${reason}`));
    });
    fs.onFrame = (f) => {
      clearTimeout(timer);
      fs.socket.off('data', sizeCheck);
      fs.onFrame = () => fs.close('frame before HELLO completed', 'warn');
      if (f.type !== FrameType.HELLO) {
        fs.close('first frame is not HELLO', 'info');
        return;
      }
      resolve(f.header);
    };
  });
}

/** Server side: returns the authenticated peer, or null after closing the connection silently. */
export async function serverHandshake(fs: FrameSocket, self: SelfAuth): Promise<PeerIdentity | null> {
  let ekm: Buffer;
  const clientFp = peerFingerprint(fs);
  if (!clientFp) {
    fs.close('no client certificate', 'info');
    return null;
  }
  try {
    ekm = sessionSecret(fs.socket);
  } catch (err) {
    fs.close(`no keying material: ${(err as Error).message}`, 'warn');
    return null;
  }
  let header: Buffer;
  try {
    header = await firstFrame(fs);
  } catch {
    return null;
  }
  let hello;
  try {
    hello = decodeHello(header);
  } catch (err) {
    fs.close(`bad HELLO: ${(err as Error).message}`, 'info');
    return null;
  }
  if (!proofMatches(proofOf(self.clusterKey, CLIENT_LABEL, ekm, clientFp), hello.proof)) {
    self.log('warn', { remote: fs.remote }, 'peer refused: cluster key proof failed');
    fs.close('cluster key proof failed', 'info');
    return null;
  }
  const peer = { nodeId: hello.nodeId, nodeName: hello.nodeName, fingerprint: clientFp.toString('hex') };
  const refused = checkPin(self, peer);
  if (refused) {
    fs.close(`peer ${peer.nodeName} (${peer.nodeId}) refused: ${refused}`, 'warn');
    return null;
  }
  const proof = proofOf(self.clusterKey, SERVER_LABEL, ekm, self.fingerprint);
  fs.decoder.setMaxFrame(MAX_FRAME);
  fs.send(FrameType.HELLO, Op.NONE, 0, encodeHello({ version: PROTOCOL_VERSION, nodeId: self.nodeId, nodeName: self.nodeName, proof }));
  return peer;
}

/**
 * Client side: send our HELLO, check the server's. Rejects (EACCES, the connection closed) when
 * the server does not prove the cluster key, is not `expectId` (when given), or fails its pin.
 */
export async function clientHandshake(fs: FrameSocket, self: SelfAuth, expectId: string | null): Promise<PeerIdentity> {
  const serverFp = peerFingerprint(fs);
  const fail = (why: string): never => {
    fs.close(why, 'warn');
    throw new GvError('EACCES', `peer refused: ${why}`);
  };
  if (!serverFp) fail('server sent no certificate');
  const ekm = sessionSecret(fs.socket);
  const answer = firstFrame(fs);
  fs.send(FrameType.HELLO, Op.NONE, 0, encodeHello({
    version: PROTOCOL_VERSION, nodeId: self.nodeId, nodeName: self.nodeName,
    proof: proofOf(self.clusterKey, CLIENT_LABEL, ekm, self.fingerprint),
  }));
  const header = await answer;
  let hello;
  try {
    hello = decodeHello(header);
  } catch (err) {
    return fail(`bad HELLO: ${(err as Error).message}`);
  }
  if (!proofMatches(proofOf(self.clusterKey, SERVER_LABEL, ekm, serverFp!), hello.proof)) return fail('server failed the cluster key proof');
  if (expectId !== null && hello.nodeId !== expectId) return fail(`server is node ${hello.nodeId}, not ${expectId}`);
  const peer = { nodeId: hello.nodeId, nodeName: hello.nodeName, fingerprint: serverFp!.toString('hex') };
  const refused = checkPin(self, peer);
  if (refused) return fail(`peer ${peer.nodeName} (${peer.nodeId}): ${refused}`);
  fs.decoder.setMaxFrame(MAX_FRAME);
  return peer;
}
