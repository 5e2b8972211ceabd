/* lock.c: one writer per output. A writer holds an exclusive flock(2) on
 * "<output>.lock" (which records its pid) from before it touches the output
 * or its .partial until it exits; a second writer of the same output is
 * refused with one line naming the holder. The kernel releases the lock when
 * the holder dies however it dies, so a lock file left by a killed writer is
 * taken over, never obeyed. The lock file is removed on exit and by die(); a
 * writer that finds the file it locked already unlinked (a racing exit)
 * locks the new one instead. */
#include "cleanup.h"
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LOCKS 16
static struct {
    char *path;
    int fd;
} locks[MAX_LOCKS];

/* only unlink, so a signal handler may call it; the kernel drops the locks
 * at exit, and a lock file removed while still locked has nobody waiting */
void olmoe_unlink_locks(void) {
    for (int i = 0; i < MAX_LOCKS; i++)
        if (locks[i].path) unlink(locks[i].path);
}

static long holder_pid(int fd) {
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    long pid = 0;
    char *line = n > 0 ? strtok(buf, "\n") : NULL;
    if (!line || olmoe_parse_long(line, 1, 1L << 30, &pid) != 0) pid = 0;
    return pid;
}

int olmoe_lock_output(const char *output) {
    size_t n = strlen(output);
    char *path = xmalloc(n + sizeof ".lock");
    memcpy(path, output, n);
    memcpy(path + n, ".lock", sizeof ".lock");
    for (int i = 0; i < MAX_LOCKS; i++)
        if (locks[i].path && strcmp(locks[i].path, path) == 0) { /* ours already */
            free(path);
            return 0;
        }
    for (int tries = 0; tries < 100; tries++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            int e = errno;
            char *dcopy = xstrdup(output);
            olmoe_errorf("%s: cannot write in '%s': %s", output, dirname(dcopy), strerror(e));
            free(dcopy);
            free(path);
            return -1;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            long pid = e == EWOULDBLOCK ? holder_pid(fd) : 0;
            close(fd);
            free(path);
            if (e != EWOULDBLOCK)
                return olmoe_errorf("%s: cannot lock %s.lock: %s", output, output, strerror(e));
            if (pid > 0)
                return olmoe_errorf("%s: being written by process %ld (it holds %s.lock); wait for "
                                    "it or stop it", output, pid, output);
            return olmoe_errorf("%s: being written by another process (it holds %s.lock)", output,
                                output);
        }
        struct stat a, b; /* the file we locked is still the one at path */
        if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino ||
            a.st_dev != b.st_dev) {
            close(fd);
            continue;
        }
        char buf[32];
        int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
            int e = errno;
            close(fd);
            free(path);
            return olmoe_errorf("%s: cannot write %s.lock: %s", output, output, strerror(e));
        }
        for (int i = 0; i < MAX_LOCKS; i++)
            if (!locks[i].path) {
                static int registered;
                if (!registered && atexit(olmoe_unlink_locks) == 0) registered = 1;
                locks[i].path = path;
                locks[i].fd = fd;
                return 0;
            }
        close(fd);
        free(path);
        return olmoe_errorf("%s: too many outputs locked", output);
    }
    free(path);
    return olmoe_errorf("%s: cannot lock %s.lock: it keeps being replaced", output, output);
}

void olmoe_unlock_output(const char *output) {
    size_t n = strlen(output);
    for (int i = 0; i < MAX_LOCKS; i++) {
        if (!locks[i].path || strncmp(locks[i].path, output, n) != 0 ||
            strcmp(locks[i].path + n, ".lock") != 0)
            continue;
        unlink(locks[i].path);
        close(locks[i].fd);
        free(locks[i].path);
        locks[i].path = NULL;
    }
}
