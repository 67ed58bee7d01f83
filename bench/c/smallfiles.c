/*
 * smallfiles - small-file / metadata rates for the GrapeVineFS benchmark.
 *
 *   smallfiles TARGET [COUNT=2000] [SIZE=4096]
 *
 * TARGET is an NFSv3 export URL for libnfs
 * (nfs://HOST/EXPORT?version=3&nfsport=N&mountport=M) or a local directory
 * (the "local disk" baseline, same work through POSIX calls).
 *
 * In a fresh directory "sf-<pid>-<n>" under the target it times five phases
 * over COUNT files:
 *   create  create + write SIZE bytes + close   (NFS: close sends COMMIT;
 *           local: fsync before close, the same durability)
 *   stat    stat each file by path, checks the size
 *   list    read the directory once (READDIRPLUS over NFS), checks the count
 *   read    open + read + close each file, checks the content
 *   unlink  remove each file
 * then removes the directory. libnfs' directory cache is off so every path
 * lookup is a real round trip, as it is for a first access by a client.
 *
 * Prints one JSON object: {"count":..,"size":..,"create":ops/s,"stat":..,
 * "list":entries/s,"read":..,"unlink":..}. Exit 1 on any error (stderr says
 * which phase, which file, and the error), 2 on usage errors.
 *
 * Build: gcc -O2 -Wall -o smallfiles smallfiles.c -lnfs
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <nfsc/libnfs.h>

static struct nfs_context *ctx;   /* NULL in local mode */

static double mono_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(const char *phase, const char *what, int err) {
    const char *detail = ctx ? nfs_get_error(ctx) : strerror(err < 0 ? -err : err);
    fprintf(stderr, "smallfiles: %s %s failed: %s (errno %d)\n", phase, what, detail ? detail : "?", err);
    exit(1);
}

static int sf_mkdir(const char *p) {
    if (ctx) return nfs_mkdir(ctx, p);
    return mkdir(p, 0755) != 0 ? -errno : 0;
}
static int sf_rmdir(const char *p) {
    if (ctx) return nfs_rmdir(ctx, p);
    return rmdir(p) != 0 ? -errno : 0;
}
static int sf_unlink(const char *p) {
    if (ctx) return nfs_unlink(ctx, p);
    return unlink(p) != 0 ? -errno : 0;
}
static int sf_size(const char *p, long long *size) {
    if (ctx) {
        struct nfs_stat_64 st;
        int r = nfs_stat64(ctx, p, &st);
        *size = (long long)st.nfs_size;
        return r;
    }
    struct stat st;
    if (stat(p, &st) != 0) return -errno;
    *size = (long long)st.st_size;
    return 0;
}

static int create_one(const char *p, const char *buf, long size) {
    if (ctx) {
        struct nfsfh *fh;
        int r = nfs_creat(ctx, p, 0644, &fh);
        if (r != 0) return r;
        if (size > 0) {
            r = nfs_write(ctx, fh, (uint64_t)size, buf);
            if (r != size) { nfs_close(ctx, fh); return r < 0 ? r : -EIO; }
        }
        return nfs_close(ctx, fh);
    }
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) return -errno;
    if (size > 0 && write(fd, buf, (size_t)size) != size) { int e = -errno; close(fd); return e ? e : -EIO; }
    if (fsync(fd) != 0) { int e = -errno; close(fd); return e; }
    return close(fd) != 0 ? -errno : 0;
}

static int read_one(const char *p, char *buf, long size, long *got) {
    *got = 0;
    if (ctx) {
        struct nfsfh *fh;
        int r = nfs_open(ctx, p, O_RDONLY, &fh);
        if (r != 0) return r;
        while (*got < size) {
            r = nfs_read(ctx, fh, (uint64_t)(size - *got), buf + *got);
            if (r < 0) { nfs_close(ctx, fh); return r; }
            if (r == 0) break;
            *got += r;
        }
        return nfs_close(ctx, fh);
    }
    int fd = open(p, O_RDONLY);
    if (fd < 0) return -errno;
    while (*got < size) {
        ssize_t r = read(fd, buf + *got, (size_t)(size - *got));
        if (r < 0) { int e = -errno; close(fd); return e; }
        if (r == 0) break;
        *got += r;
    }
    return close(fd) != 0 ? -errno : 0;
}

/* Count the entries other than "." and ".." */
static int list_dir(const char *p, long *entries) {
    *entries = 0;
    if (ctx) {
        struct nfsdir *d;
        int r = nfs_opendir(ctx, p, &d);
        if (r != 0) return r;
        struct nfsdirent *e;
        while ((e = nfs_readdir(ctx, d)) != NULL)
            if (strcmp(e->name, ".") != 0 && strcmp(e->name, "..") != 0) (*entries)++;
        nfs_closedir(ctx, d);
        return 0;
    }
    DIR *d = opendir(p);
    if (!d) return -errno;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) (*entries)++;
    closedir(d);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: smallfiles TARGET [COUNT=2000] [SIZE=4096]\n");
        return 2;
    }
    const char *target = argv[1];
    long count = argc > 2 ? atol(argv[2]) : 2000;
    long size = argc > 3 ? atol(argv[3]) : 4096;
    if (count <= 0 || size < 0 || size > (64L << 20)) {
        fprintf(stderr, "smallfiles: COUNT must be > 0 and SIZE in 0..64MiB\n");
        return 2;
    }

    struct nfs_url *url = NULL;
    char base[4096];
    if (strncmp(target, "nfs://", 6) == 0) {
        ctx = nfs_init_context();
        if (!ctx) { fprintf(stderr, "smallfiles: nfs_init_context failed\n"); return 1; }
        nfs_set_timeout(ctx, 60000);
        url = nfs_parse_url_dir(ctx, target);
        if (!url) fail("setup", "parse url", -EINVAL);
        nfs_set_dircache(ctx, 0);
        int r = nfs_mount(ctx, url->server, url->path);
        if (r != 0) fail("setup", "mount", r);
        base[0] = '\0';                       /* paths are relative to the export root */
    } else {
        snprintf(base, sizeof base, "%s", target);
    }

    char dir[4352], path[4608];
    snprintf(dir, sizeof dir, "%s/sf-%d-%ld", base, (int)getpid(), (long)time(NULL));
    int r = sf_mkdir(dir);
    if (r != 0) fail("setup", dir, r);

    char *wbuf = malloc((size_t)size + 1), *rbuf = malloc((size_t)size + 1);
    if (!wbuf || !rbuf) fail("setup", "malloc", -ENOMEM);
    for (long i = 0; i < size; i++) wbuf[i] = (char)('A' + (i * 7 + i / 13) % 53);
    double rate[5];
    double t0;

    t0 = mono_seconds();
    for (long i = 0; i < count; i++) {
        snprintf(path, sizeof path, "%s/file-%06ld", dir, i);
        r = create_one(path, wbuf, size);
        if (r != 0) fail("create", path, r);
    }
    rate[0] = count / (mono_seconds() - t0);

    t0 = mono_seconds();
    for (long i = 0; i < count; i++) {
        long long sz = -1;
        snprintf(path, sizeof path, "%s/file-%06ld", dir, i);
        r = sf_size(path, &sz);
        if (r != 0) fail("stat", path, r);
        if (sz != size) {
            fprintf(stderr, "smallfiles: stat %s: size %lld, expected %ld\n", path, sz, size);
            return 1;
        }
    }
    rate[1] = count / (mono_seconds() - t0);

    t0 = mono_seconds();
    long entries = 0;
    r = list_dir(dir, &entries);
    if (r != 0) fail("list", dir, r);
    double tl = mono_seconds() - t0;
    if (entries != count) {
        fprintf(stderr, "smallfiles: list %s: %ld entries, expected %ld\n", dir, entries, count);
        return 1;
    }
    rate[2] = entries / tl;

    t0 = mono_seconds();
    for (long i = 0; i < count; i++) {
        long got = 0;
        snprintf(path, sizeof path, "%s/file-%06ld", dir, i);
        r = read_one(path, rbuf, size, &got);
        if (r != 0) fail("read", path, r);
        if (got != size || memcmp(wbuf, rbuf, (size_t)size) != 0) {
            fprintf(stderr, "smallfiles: read %s: content differs (%ld of %ld bytes)\n", path, got, size);
            return 1;
        }
    }
    rate[3] = count / (mono_seconds() - t0);

    t0 = mono_seconds();
    for (long i = 0; i < count; i++) {
        snprintf(path, sizeof path, "%s/file-%06ld", dir, i);
        r = sf_unlink(path);
        if (r != 0) fail("unlink", path, r);
    }
    rate[4] = count / (mono_seconds() - t0);

    r = sf_rmdir(dir);
    if (r != 0) fail("cleanup", dir, r);

    printf("{\"count\":%ld,\"size\":%ld,\"create\":%.1f,\"stat\":%.1f,\"list\":%.1f,\"read\":%.1f,\"unlink\":%.1f}\n",
           count, size, rate[0], rate[1], rate[2], rate[3], rate[4]);
    if (ctx) {
        nfs_umount(ctx);
        nfs_destroy_url(url);
        nfs_destroy_context(ctx);
    }
    free(wbuf);
    free(rbuf);
    return 0;
}
