import fs from 'node:fs';

/**
 * An open file of the local backend: a raw descriptor, opened synchronously, with the few
 * asynchronous operations the backend needs (large reads and writes, fsync, truncate, close).
 *
 * Why not fs/promises' FileHandle: `fsp.open` is a libuv threadpool round trip, which added
 * about 100 µs to every READ of a file not yet in the descriptor cache and to every CREATE
 * (small-file read and create rates), while open(2) of a local file is answered in microseconds,
 * like the synchronous lstat calls the backend already makes. Closing is idempotent here, so a
 * descriptor number is never closed twice (it may belong to another file by then).
 */
export class LocalFile {
  private closed = false;

  private constructor(readonly fd: number) {}

  /** open(2) now; throws the node:fs error (with its `code`) like fsp.open rejects. */
  static open(path: Buffer, flags: number, mode?: number): LocalFile {
    return new LocalFile(fs.openSync(path, flags, mode));
  }

  read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    return new Promise((resolve, reject) => {
      fs.read(this.fd, buf, offset, length, position, (err, bytesRead) => (err ? reject(err) : resolve({ bytesRead })));
    });
  }

  write(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    return new Promise((resolve, reject) => {
      fs.write(this.fd, buf, offset, length, position, (err, bytesWritten) => (err ? reject(err) : resolve({ bytesWritten })));
    });
  }

  sync(): Promise<void> {
    return new Promise((resolve, reject) => fs.fsync(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  datasync(): Promise<void> {
    return new Promise((resolve, reject) => fs.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())));
  }

  truncate(length: number): Promise<void> {
    return new Promise((resolve, reject) => fs.ftruncate(this.fd, length, (err) => (err ? reject(err) : resolve())));
  }

  /** Close once; later calls resolve at once. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve, reject) => fs.close(this.fd, (err) => (err ? reject(err) : resolve())));
  }
}
