import fs from 'node:fs';

/** Files up to this size are closed synchronously when they still have a name (closeSoon). */
const QUICK_CLOSE_MAX = 1 << 20;

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

  /**
   * Close without waiting for it. When the file still has a name and is small, close(2) only drops
   * a reference and returns in a microsecond or two: done synchronously, which spares a threadpool
   * round trip (two thread wake-ups) per evicted descriptor. Otherwise (the last close of a removed
   * file frees its blocks; a large file may start writeback) it runs on the threadpool.
   */
  closeSoon(): void {
    if (this.closed) return;
    let quick = false;
    try {
      const st = fs.fstatSync(this.fd);
      quick = st.nlink > 0 && st.size <= QUICK_CLOSE_MAX;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EBADF') {
        // Not open (closed elsewhere): its number may be another file's by now; never close it.
        this.closed = true;
        return;
      }
    }
    if (!quick) {
      void this.close().catch(() => undefined);
      return;
    }
    this.closed = true;
    try {
      fs.closeSync(this.fd);
    } catch {
      // EIO from a delayed write error is reported here and nowhere else; the data path (COMMIT's
      // fsync) is where a client learns of it.
    }
  }

  /** Close once; later calls resolve at once. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve, reject) => fs.close(this.fd, (err) => (err ? reject(err) : resolve())));
  }
}
