/*
 * nfsprobe: drive the libnfs (4.0) high-level synchronous API from a script on stdin, one command
 * per line, and print one result line per command, for tests to assert on.
 *
 *   nfsprobe 'nfs://127.0.0.1/zone?version=3&nfsport=N&mountport=M' < script
 *
 * Result lines: "OK <cmd> [key=value ...]" or "ERR <cmd> <ERRNAME> <libnfs message>".
 * `ls` prints one "E <name> type=<t> mode=<octal> size=<n> ino=<n>" line per entry first.
 * Commands (paths are relative to the export):
 *   mkdir P MODE | rmdir P | unlink P | rename OLD NEW | link OLD NEW | symlink TARGET P
 *   readlink P | chmod P MODE | chown P UID GID | truncate P LEN | utimes P ATIME MTIME
 *   stat P | lstat P | statvfs P | access P MASK(rwx letters or -) | creat_excl P MODE
 *   mkfiles DIR N | ls DIR | info
 *   open P FLAGS(r|w|rw|rwc|wct) | pwrite OFF TEXT... | pread OFF LEN | write TEXT... | read LEN
 *   lseek OFF set|cur|end | fsync | ftruncate LEN | fstat | close
 *   fill OFF LEN BYTE   (pwrite LEN bytes of value BYTE, in 256 KiB pieces)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>
#include <nfsc/libnfs.h>

static struct nfs_context *nfs;
static struct nfsfh *cur;

static const char *errname(int e)
{
	switch (e) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EIO: return "EIO";
	case ENXIO: return "ENXIO";
	case EBADF: return "EBADF";
	case EACCES: return "EACCES";
	case EEXIST: return "EEXIST";
	case EXDEV: return "EXDEV";
	case ENODEV: return "ENODEV";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case EROFS: return "EROFS";
	case EMLINK: return "EMLINK";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOTEMPTY: return "ENOTEMPTY";
	case EDQUOT: return "EDQUOT";
	case ESTALE: return "ESTALE";
	case ELOOP: return "ELOOP";
	case ENOTSUP: return "ENOTSUP";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EFAULT: return "EFAULT";
	default: return "EUNKNOWN";
	}
}

/* Print the result of a call returning 0 / -errno. Returns 1 on success. */
static int result(const char *cmd, int rc)
{
	if (rc >= 0)
		return 1;
	const char *msg = nfs_get_error(nfs);
	printf("ERR %s %s %s\n", cmd, errname(-rc), msg ? msg : "");
	return 0;
}

static void print_stat(const char *cmd, const struct nfs_stat_64 *st)
{
	printf("OK %s mode=%" PRIo64 " size=%" PRIu64 " nlink=%" PRIu64 " uid=%" PRIu64 " gid=%" PRIu64
	       " ino=%" PRIu64 " atime=%" PRIu64 " mtime=%" PRIu64 " ctime=%" PRIu64 " used=%" PRIu64 "\n",
	       cmd, st->nfs_mode, st->nfs_size, st->nfs_nlink, st->nfs_uid, st->nfs_gid, st->nfs_ino,
	       st->nfs_atime, st->nfs_mtime, st->nfs_ctime, st->nfs_used);
}

static int parse_flags(const char *s)
{
	if (!strcmp(s, "r")) return O_RDONLY;
	if (!strcmp(s, "w")) return O_WRONLY;
	if (!strcmp(s, "rw")) return O_RDWR;
	if (!strcmp(s, "wct")) return O_WRONLY | O_CREAT | O_TRUNC;
	if (!strcmp(s, "rwc")) return O_RDWR | O_CREAT;
	return -1;
}

static void print_text(const char *cmd, const char *buf, int n)
{
	printf("OK %s n=%d data=", cmd, n);
	for (int i = 0; i < n; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c >= 0x21 && c < 0x7f && c != '%')
			putchar(c);
		else
			printf("%%%02x", c);
	}
	putchar('\n');
}

static void do_ls(const char *path)
{
	struct nfsdir *dir;
	if (!result("ls", nfs_opendir(nfs, path, &dir)))
		return;
	long n = 0;
	struct nfsdirent *e;
	while ((e = nfs_readdir(nfs, dir)) != NULL && n < 10000000) {
		printf("E %s type=%u mode=%o size=%" PRIu64 " ino=%" PRIu64 "\n", e->name, e->type, e->mode,
		       e->size, e->inode);
		n++;
	}
	nfs_closedir(nfs, dir);
	printf("OK ls count=%ld\n", n);
}

static void command(char *line)
{
	char *argv[8] = { 0 };
	int argc = 0;
	char *rest = NULL; /* the rest of the line, verbatim, for write/pwrite */
	char *p = line;
	while (*p && argc < 8) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		if ((argc == 1 && !strcmp(argv[0], "write")) || (argc == 2 && !strcmp(argv[0], "pwrite"))) {
			rest = p;
			argv[argc++] = p;
			break;
		}
		argv[argc++] = p;
		while (*p && *p != ' ')
			p++;
		if (*p)
			*p++ = 0;
	}
	if (argc == 0)
		return;
	const char *cmd = argv[0];
#define NEED(n)                                                     \
	do {                                                            \
		if (argc < (n) + 1) {                                       \
			printf("ERR %s USAGE need %d arguments\n", cmd, (n));   \
			return;                                                 \
		}                                                           \
	} while (0)

	if (!strcmp(cmd, "mkdir")) {
		NEED(2);
		if (result(cmd, nfs_mkdir2(nfs, argv[1], (int)strtol(argv[2], NULL, 8))))
			printf("OK mkdir\n");
	} else if (!strcmp(cmd, "rmdir")) {
		NEED(1);
		if (result(cmd, nfs_rmdir(nfs, argv[1])))
			printf("OK rmdir\n");
	} else if (!strcmp(cmd, "unlink")) {
		NEED(1);
		if (result(cmd, nfs_unlink(nfs, argv[1])))
			printf("OK unlink\n");
	} else if (!strcmp(cmd, "rename")) {
		NEED(2);
		if (result(cmd, nfs_rename(nfs, argv[1], argv[2])))
			printf("OK rename\n");
	} else if (!strcmp(cmd, "link")) {
		NEED(2);
		if (result(cmd, nfs_link(nfs, argv[1], argv[2])))
			printf("OK link\n");
	} else if (!strcmp(cmd, "symlink")) {
		NEED(2);
		if (result(cmd, nfs_symlink(nfs, argv[1], argv[2])))
			printf("OK symlink\n");
	} else if (!strcmp(cmd, "readlink")) {
		NEED(1);
		char buf[4097];
		memset(buf, 0, sizeof buf);
		if (result(cmd, nfs_readlink(nfs, argv[1], buf, sizeof buf - 1)))
			printf("OK readlink target=%s\n", buf);
	} else if (!strcmp(cmd, "chmod")) {
		NEED(2);
		if (result(cmd, nfs_chmod(nfs, argv[1], (int)strtol(argv[2], NULL, 8))))
			printf("OK chmod\n");
	} else if (!strcmp(cmd, "chown")) {
		NEED(3);
		if (result(cmd, nfs_chown(nfs, argv[1], atoi(argv[2]), atoi(argv[3]))))
			printf("OK chown\n");
	} else if (!strcmp(cmd, "truncate")) {
		NEED(2);
		if (result(cmd, nfs_truncate(nfs, argv[1], strtoull(argv[2], NULL, 10))))
			printf("OK truncate\n");
	} else if (!strcmp(cmd, "utimes")) {
		NEED(3);
		struct timeval tv[2] = { { atol(argv[2]), 0 }, { atol(argv[3]), 0 } };
		if (result(cmd, nfs_utimes(nfs, argv[1], tv)))
			printf("OK utimes\n");
	} else if (!strcmp(cmd, "stat") || !strcmp(cmd, "lstat")) {
		NEED(1);
		struct nfs_stat_64 st;
		int rc = !strcmp(cmd, "stat") ? nfs_stat64(nfs, argv[1], &st) : nfs_lstat64(nfs, argv[1], &st);
		if (result(cmd, rc))
			print_stat(cmd, &st);
	} else if (!strcmp(cmd, "statvfs")) {
		NEED(1);
		struct nfs_statvfs_64 sv;
		if (result(cmd, nfs_statvfs64(nfs, argv[1], &sv)))
			printf("OK statvfs bsize=%" PRIu64 " frsize=%" PRIu64 " blocks=%" PRIu64 " bfree=%" PRIu64
			       " bavail=%" PRIu64 " files=%" PRIu64 " ffree=%" PRIu64 " namemax=%" PRIu64 "\n",
			       sv.f_bsize, sv.f_frsize, sv.f_blocks, sv.f_bfree, sv.f_bavail, sv.f_files, sv.f_ffree,
			       sv.f_namemax);
	} else if (!strcmp(cmd, "access")) {
		NEED(2);
		int mode = 0;
		for (const char *m = argv[2]; *m; m++)
			mode |= *m == 'r' ? R_OK : *m == 'w' ? W_OK : *m == 'x' ? X_OK : 0;
		if (result(cmd, nfs_access(nfs, argv[1], mode)))
			printf("OK access\n");
	} else if (!strcmp(cmd, "creat_excl")) {
		NEED(2);
		struct nfsfh *fh;
		if (result(cmd, nfs_create(nfs, argv[1], O_EXCL, (int)strtol(argv[2], NULL, 8), &fh))) {
			nfs_close(nfs, fh);
			printf("OK creat_excl\n");
		}
	} else if (!strcmp(cmd, "mkfiles")) {
		NEED(2);
		long n = atol(argv[2]);
		char path[4096];
		for (long i = 0; i < n; i++) {
			struct nfsfh *fh;
			snprintf(path, sizeof path, "%s/f%06ld", argv[1], i);
			if (!result(cmd, nfs_creat(nfs, path, 0644, &fh)))
				return;
			nfs_close(nfs, fh);
		}
		printf("OK mkfiles n=%ld\n", n);
	} else if (!strcmp(cmd, "ls")) {
		NEED(1);
		do_ls(argv[1]);
	} else if (!strcmp(cmd, "info")) {
		printf("OK info readmax=%" PRIu64 " writemax=%" PRIu64 "\n", nfs_get_readmax(nfs), nfs_get_writemax(nfs));
	} else if (!strcmp(cmd, "open")) {
		NEED(2);
		int flags = parse_flags(argv[2]);
		if (flags < 0) {
			printf("ERR open USAGE bad flags\n");
			return;
		}
		if (cur) {
			nfs_close(nfs, cur);
			cur = NULL;
		}
		int rc = (flags & O_CREAT) ? nfs_open2(nfs, argv[1], flags, 0644, &cur) : nfs_open(nfs, argv[1], flags, &cur);
		if (result(cmd, rc))
			printf("OK open\n");
		else
			cur = NULL;
	} else if (!cur && (!strcmp(cmd, "pwrite") || !strcmp(cmd, "pread") || !strcmp(cmd, "write") ||
			    !strcmp(cmd, "read") || !strcmp(cmd, "lseek") || !strcmp(cmd, "fsync") ||
			    !strcmp(cmd, "ftruncate") || !strcmp(cmd, "fstat") || !strcmp(cmd, "close") ||
			    !strcmp(cmd, "fill"))) {
		printf("ERR %s USAGE no open file\n", cmd);
	} else if (!strcmp(cmd, "pwrite")) {
		NEED(2);
		int n = (int)strlen(rest);
		int rc = nfs_pwrite(nfs, cur, strtoull(argv[1], NULL, 10), n, rest);
		if (result(cmd, rc))
			printf("OK pwrite n=%d\n", rc);
	} else if (!strcmp(cmd, "write")) {
		NEED(1);
		int n = (int)strlen(rest);
		int rc = nfs_write(nfs, cur, n, rest);
		if (result(cmd, rc))
			printf("OK write n=%d\n", rc);
	} else if (!strcmp(cmd, "fill")) {
		NEED(3);
		uint64_t off = strtoull(argv[1], NULL, 10), len = strtoull(argv[2], NULL, 10);
		static char piece[256 * 1024];
		memset(piece, atoi(argv[3]), sizeof piece);
		uint64_t done = 0;
		while (done < len) {
			uint64_t n = len - done < sizeof piece ? len - done : sizeof piece;
			int rc = nfs_pwrite(nfs, cur, off + done, n, piece);
			if (!result(cmd, rc))
				return;
			if (rc == 0) {
				printf("ERR fill EIO short write\n");
				return;
			}
			done += (uint64_t)rc;
		}
		printf("OK fill n=%" PRIu64 "\n", done);
	} else if (!strcmp(cmd, "pread") || !strcmp(cmd, "read")) {
		int isp = !strcmp(cmd, "pread");
		NEED(isp ? 2 : 1);
		long len = atol(argv[isp ? 2 : 1]);
		if (len < 0 || len > 16 * 1024 * 1024) {
			printf("ERR %s USAGE bad length\n", cmd);
			return;
		}
		char *buf = malloc(len + 1);
		int rc = isp ? nfs_pread(nfs, cur, strtoull(argv[1], NULL, 10), len, buf) : nfs_read(nfs, cur, len, buf);
		if (result(cmd, rc))
			print_text(cmd, buf, rc);
		free(buf);
	} else if (!strcmp(cmd, "lseek")) {
		NEED(2);
		int whence = !strcmp(argv[2], "cur") ? SEEK_CUR : !strcmp(argv[2], "end") ? SEEK_END : SEEK_SET;
		uint64_t pos = 0;
		if (result(cmd, nfs_lseek(nfs, cur, strtoll(argv[1], NULL, 10), whence, &pos)))
			printf("OK lseek pos=%" PRIu64 "\n", pos);
	} else if (!strcmp(cmd, "fsync")) {
		if (result(cmd, nfs_fsync(nfs, cur)))
			printf("OK fsync\n");
	} else if (!strcmp(cmd, "ftruncate")) {
		NEED(1);
		if (result(cmd, nfs_ftruncate(nfs, cur, strtoull(argv[1], NULL, 10))))
			printf("OK ftruncate\n");
	} else if (!strcmp(cmd, "fstat")) {
		struct nfs_stat_64 st;
		if (result(cmd, nfs_fstat64(nfs, cur, &st)))
			print_stat(cmd, &st);
	} else if (!strcmp(cmd, "close")) {
		int rc = nfs_close(nfs, cur);
		cur = NULL;
		if (result(cmd, rc))
			printf("OK close\n");
	} else {
		printf("ERR %s USAGE unknown command\n", cmd);
	}
#undef NEED
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s nfs://server/export?version=3&nfsport=N&mountport=M < script\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	nfs = nfs_init_context();
	if (!nfs) {
		fprintf(stderr, "nfs_init_context failed\n");
		return 1;
	}
	struct nfs_url *url = nfs_parse_url_dir(nfs, argv[1]);
	if (!url) {
		fprintf(stderr, "bad URL: %s\n", nfs_get_error(nfs));
		return 1;
	}
	nfs_set_dircache(nfs, 0);
	nfs_set_autoreconnect(nfs, 0);
	if (nfs_mount(nfs, url->server, url->path) != 0) {
		printf("ERR mount %s\n", nfs_get_error(nfs));
		nfs_destroy_url(url);
		nfs_destroy_context(nfs);
		return 1;
	}
	printf("OK mount\n");
	char line[8192];
	long lines = 0;
	while (fgets(line, sizeof line, stdin) && lines++ < 1000000) {
		size_t n = strlen(line);
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		if (n == 0 || line[0] == '#')
			continue;
		command(line);
	}
	if (cur)
		nfs_close(nfs, cur);
	nfs_destroy_url(url);
	nfs_destroy_context(nfs);
	printf("OK done\n");
	return 0;
}
