/*
 * nfsio - sequential large-file I/O for the GrapeVineFS benchmark.
 *
 * The target is either an NFSv3 file URL understood by libnfs
 * (nfs://HOST/EXPORT/FILE?version=3&nfsport=N&mountport=M) or a plain local
 * path; the local mode is the "local disk" baseline and does the same work with
 * POSIX calls (fsync at the end stands in for the NFS COMMIT).
 *
 *   nfsio write  TARGET BYTES    create/truncate, pwrite 1 MiB blocks, close
 *                                (libnfs sends COMMIT on close; local: fsync)
 *   nfsio read   TARGET          pread 1 MiB blocks to EOF, discard
 *   nfsio verify TARGET BYTES    read everything and check the write pattern
 *   nfsio rm     TARGET          remove the file (absent is fine)
 *   nfsio info   TARGET          mount only; print the server's rtmax/wtmax
 *
 * Env: NFSIO_BLOCK (bytes per pwrite/pread, default 1048576),
 *      NFSIO_TIMEOUT_MS (per-RPC timeout, default 60000).
 * Prints one JSON object on stdout; exit status 0 on success, 1 on error
 * (message on stderr), 2 on usage errors. The measured interval runs from
 * open to the end of close, so it includes the COMMIT / fsync.
 *
 * Build: gcc -O2 -Wall -o nfsio nfsio.c -lnfs
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <nfsc/libnfs.h>

static struct nfs_context *ctx;   /* NULL in local mode */
static struct nfs_url *url;

static double mono_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(const char *step, const char *what, int err) {
    const char *detail = ctx ? nfs_get_error(ctx) : strerror(err < 0 ? -err : err);
    fprintf(stderr, "nfsio: %s %s failed: %s (errno %d)\n", step, what, detail ? detail : "?", err);
    exit(1);
}

/* Block contents: a fixed pseudo-random body; the first 8 bytes of every block
 * carry its index so each block differs and a misplaced block is detected. */
static void fill_body(unsigned char *buf, size_t n) {
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        buf[i] = (unsigned char)(x >> 24);
    }
}
static void stamp_block(unsigned char *buf, size_t n, uint64_t index) {
    size_t k = n < 8 ? n : 8;
    for (size_t i = 0; i < k; i++) buf[i] = (unsigned char)(index >> (8 * i));
}

/* ---- a tiny file abstraction over libnfs or POSIX ---------------------- */
typedef struct { struct nfsfh *fh; int fd; } handle_t;

static int h_open(const char *path, int flags, handle_t *h) {
    h->fh = NULL; h->fd = -1;
    if (ctx) return nfs_open2(ctx, path, flags, 0644, &h->fh);
    h->fd = open(path, flags, 0644);
    return h->fd < 0 ? -errno : 0;
}
static int64_t h_pwrite(handle_t *h, uint64_t off, size_t n, const void *buf) {
    if (ctx) return nfs_pwrite(ctx, h->fh, off, n, buf);
    ssize_t r = pwrite(h->fd, buf, n, (off_t)off);
    return r < 0 ? -errno : r;
}
static int64_t h_pread(handle_t *h, uint64_t off, size_t n, void *buf) {
    if (ctx) return nfs_pread(ctx, h->fh, off, n, buf);
    ssize_t r = pread(h->fd, buf, n, (off_t)off);
    return r < 0 ? -errno : r;
}
/* NFS: close() of a written file sends COMMIT. Local: fsync first when asked. */
static int h_close(handle_t *h, int durable) {
    if (ctx) return nfs_close(ctx, h->fh);
    if (durable && fsync(h->fd) != 0) { int e = -errno; close(h->fd); return e; }
    return close(h->fd) != 0 ? -errno : 0;
}
static int h_unlink(const char *path) {
    if (ctx) return nfs_unlink(ctx, path);
    return unlink(path) != 0 ? -errno : 0;
}

static size_t env_size(const char *name, size_t dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    long long n = atoll(v);
    return n > 0 ? (size_t)n : dflt;
}

static void print_result(const char *op, uint64_t bytes, double secs) {
    double mibps = secs > 0 ? (double)bytes / 1048576.0 / secs : 0;
    printf("{\"op\":\"%s\",\"bytes\":%llu,\"seconds\":%.6f,\"mibps\":%.2f}\n",
           op, (unsigned long long)bytes, secs, mibps);
}

static int do_write(const char *path, uint64_t total, size_t block) {
    unsigned char *buf = malloc(block);
    if (!buf) fail("malloc", "", ENOMEM);
    fill_body(buf, block);
    handle_t h;
    double t0 = mono_seconds();
    int r = h_open(path, O_WRONLY | O_CREAT | O_TRUNC, &h);
    if (r != 0) fail("open", path, r);
    uint64_t off = 0, index = 0;
    while (off < total) {
        size_t n = total - off < block ? (size_t)(total - off) : block;
        stamp_block(buf, n, index++);
        int64_t w = h_pwrite(&h, off, n, buf);
        if (w <= 0) fail("pwrite", path, (int)w);
        off += (uint64_t)w;
    }
    r = h_close(&h, 1);
    if (r != 0) fail("close", path, r);
    print_result("write", off, mono_seconds() - t0);
    free(buf);
    return 0;
}

static int do_read(const char *path, uint64_t expect, size_t block, int verify) {
    unsigned char *buf = malloc(block), *ref = NULL;
    if (!buf) fail("malloc", "", ENOMEM);
    if (verify) {
        ref = malloc(block);
        if (!ref) fail("malloc", "", ENOMEM);
        fill_body(ref, block);
    }
    handle_t h;
    double t0 = mono_seconds();
    int r = h_open(path, O_RDONLY, &h);
    if (r != 0) fail("open", path, r);
    uint64_t off = 0, index = 0;
    for (;;) {
        int64_t got = h_pread(&h, off, block, buf);
        if (got < 0) fail("pread", path, (int)got);
        if (got == 0) break;
        if (verify) {
            /* the writer used whole blocks except possibly the last one */
            if ((uint64_t)got != block && off + (uint64_t)got != expect) {
                fprintf(stderr, "nfsio: short read of %lld bytes at offset %llu\n",
                        (long long)got, (unsigned long long)off);
                exit(1);
            }
            stamp_block(ref, (size_t)got, index);
            if (memcmp(ref, buf, (size_t)got) != 0) {
                fprintf(stderr, "nfsio: content mismatch in block %llu (offset %llu)\n",
                        (unsigned long long)index, (unsigned long long)off);
                exit(1);
            }
        }
        off += (uint64_t)got;
        index++;
    }
    r = h_close(&h, 0);
    if (r != 0) fail("close", path, r);
    double secs = mono_seconds() - t0;
    if (verify && off != expect) {
        fprintf(stderr, "nfsio: read %llu bytes, expected %llu\n",
                (unsigned long long)off, (unsigned long long)expect);
        exit(1);
    }
    print_result(verify ? "verify" : "read", off, secs);
    free(buf);
    free(ref);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: nfsio write|read|verify|rm|info TARGET [BYTES]\n");
        return 2;
    }
    const char *op = argv[1], *target = argv[2];
    size_t block = env_size("NFSIO_BLOCK", 1 << 20);
    const char *path = target;

    if (strncmp(target, "nfs://", 6) == 0) {
        ctx = nfs_init_context();
        if (!ctx) { fprintf(stderr, "nfsio: nfs_init_context failed\n"); return 1; }
        nfs_set_timeout(ctx, (int)env_size("NFSIO_TIMEOUT_MS", 60000));
        url = nfs_parse_url_full(ctx, target);
        if (!url) fail("parse url", target, EINVAL);
        int r = nfs_mount(ctx, url->server, url->path);
        if (r != 0) fail("mount", url->path, r);
        path = url->file;
    }

    int rc = 2;
    if (strcmp(op, "write") == 0 && argc >= 4) {
        rc = do_write(path, strtoull(argv[3], NULL, 10), block);
    } else if (strcmp(op, "read") == 0) {
        rc = do_read(path, 0, block, 0);
    } else if (strcmp(op, "verify") == 0 && argc >= 4) {
        rc = do_read(path, strtoull(argv[3], NULL, 10), block, 1);
    } else if (strcmp(op, "rm") == 0) {
        int r = h_unlink(path);
        if (r != 0 && r != -ENOENT) fail("unlink", path, r);
        printf("{\"op\":\"rm\",\"existed\":%s}\n", r == 0 ? "true" : "false");
        rc = 0;
    } else if (strcmp(op, "info") == 0) {
        if (ctx)
            printf("{\"op\":\"info\",\"readmax\":%llu,\"writemax\":%llu}\n",
                   (unsigned long long)nfs_get_readmax(ctx), (unsigned long long)nfs_get_writemax(ctx));
        else
            printf("{\"op\":\"info\",\"local\":true}\n");
        rc = 0;
    } else {
        fprintf(stderr, "nfsio: bad arguments for '%s'\n", op);
    }

    if (ctx) {
        nfs_umount(ctx);
        nfs_destroy_url(url);
        nfs_destroy_context(ctx);
    }
    return rc;
}
