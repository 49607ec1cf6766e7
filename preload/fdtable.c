/* Per-fd TLS state, indexed by fd.
 *
 * The table is one array of atomic pointers, as long as the process may have
 * fds (RLIMIT_NOFILE, at most 1<<20), mapped at start; untouched pages cost
 * nothing.  A lookup is one atomic load, so a socket that matches no rule
 * pays one load per call.  Changes (attach, dup, detach) take the table lock;
 * the state itself has its own mutex, held by the shim while it is in the
 * library for that connection.
 *
 * dup/dup2/dup3/F_DUPFD: the new fd points at the same state (refs + 1).
 * close: the fd's pointer is cleared; only the last fd of a state finishes
 * the TLS connection (close_notify) and frees it.  The library works on the
 * shim's own dup (priv_fd), so closing the fd the connection was accepted on
 * while a dup lives does not pull the socket away from the TLS state.
 * fork: the child has a copy of the table and the states (memory is copied);
 * the parent's states are marked "forked", so the parent closing its copy
 * (a fork-per-connection server) sends no close_notify: the child carries on.
 * exec: the table is gone with the address space; the fds survive as plain
 * sockets carrying TLS records the new program cannot read (priv_fd is
 * close-on-exec).  docs/preload.md says so. */
#include "preload.h"

#include <stdatomic.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PL_FD_MAX (1 << 20)

static _Atomic(struct pl_tls *) *table;
static int table_len;
static int high_water; /* one past the highest fd ever given a state: what a fork scans */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

int pl_fd_init(void)
{
    struct rlimit rl;
    long n = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY && (long)rl.rlim_max > n)
        n = (long)rl.rlim_max;
    if (n > PL_FD_MAX) n = PL_FD_MAX;
    void *p = mmap(NULL, (size_t)n * sizeof *table, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -1;
    table = p;
    table_len = (int)n;
    return 0;
}

struct pl_tls *pl_fd_get(int fd)
{
    if (fd < 0 || fd >= table_len) return NULL;
    return atomic_load_explicit(&table[fd], memory_order_acquire);
}

static struct pl_tls *detach_locked(int fd);

int pl_fd_attach(int fd, struct pl_tls *t)
{
    if (fd < 0 || fd >= table_len) return -1;
    pthread_mutex_lock(&table_lock);
    /* A state still here belongs to an fd number the program closed behind the shim's back
     * (fclose of an fdopen'd socket, close_range, a raw syscall): drop it. */
    struct pl_tls *stale = detach_locked(fd);
    t->refs = 1;
    atomic_store_explicit(&table[fd], t, memory_order_release);
    if (fd >= high_water) high_water = fd + 1;
    pthread_mutex_unlock(&table_lock);
    pl_tls_free(stale);
    return 0;
}

void pl_fd_forget(int fd)
{
    if (pl_fd_get(fd) == NULL) return;
    pthread_mutex_lock(&table_lock);
    struct pl_tls *stale = detach_locked(fd);
    pthread_mutex_unlock(&table_lock);
    pl_tls_free(stale);
}

void pl_tls_free(struct pl_tls *t)
{
    if (t == NULL) return;
    if (t->lst != NULL) pl_listener_release(t->lst);
    ktlsx_socket_free(t->sock);
    /* The shim's own fd, closed by the system call: never through the interposed close(). */
    if (t->priv_fd >= 0) syscall(SYS_close, t->priv_fd);
    if (t->wake_fd >= 0) syscall(SYS_close, t->wake_fd);
    free(t->peek);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static struct pl_tls *detach_locked(int fd)
{
    struct pl_tls *t = atomic_exchange_explicit(&table[fd], NULL, memory_order_acq_rel);
    if (t == NULL) return NULL;
    return --t->refs == 0 ? t : NULL;
}

void pl_fd_dup(int oldfd, int newfd)
{
    if (oldfd < 0 || oldfd >= table_len || newfd < 0 || newfd >= table_len || oldfd == newfd) return;
    struct pl_tls *gone = NULL;
    pthread_mutex_lock(&table_lock);
    struct pl_tls *t = atomic_load_explicit(&table[oldfd], memory_order_acquire);
    if (atomic_load_explicit(&table[newfd], memory_order_acquire) != NULL) gone = detach_locked(newfd);
    if (t != NULL) {
        t->refs++;
        atomic_store_explicit(&table[newfd], t, memory_order_release);
        if (newfd >= high_water) high_water = newfd + 1;
    }
    pthread_mutex_unlock(&table_lock);
    /* dup2 onto a TLS fd closed that connection's fd: same as close() of it. */
    pl_tls_free(gone);
}

struct pl_tls *pl_fd_detach(int fd)
{
    if (fd < 0 || fd >= table_len) return NULL;
    if (atomic_load_explicit(&table[fd], memory_order_acquire) == NULL) return NULL;
    pthread_mutex_lock(&table_lock);
    struct pl_tls *t = detach_locked(fd);
    pthread_mutex_unlock(&table_lock);
    return t;
}

void pl_fd_mark_forked(void)
{
    pthread_mutex_lock(&table_lock);
    for (int fd = 0; fd < high_water; fd++) {
        struct pl_tls *t = atomic_load_explicit(&table[fd], memory_order_relaxed);
        if (t != NULL) t->forked = 1;
    }
    pthread_mutex_unlock(&table_lock);
}

void pl_fd_each_listener(void (*fn)(struct pl_listener *))
{
    for (int fd = 0; fd < high_water; fd++) {
        struct pl_tls *t = atomic_load_explicit(&table[fd], memory_order_relaxed);
        if (t != NULL && t->lst != NULL) fn(t->lst);
    }
}

void pl_fd_after_fork_child(void)
{
    /* Another thread may have held a lock at the fork: the child's copy would stay locked forever. */
    pthread_mutex_init(&table_lock, NULL);
    for (int fd = 0; fd < high_water; fd++) {
        struct pl_tls *t = atomic_load_explicit(&table[fd], memory_order_relaxed);
        if (t == NULL) continue;
        pthread_mutex_init(&t->lock, NULL);
        if (t->connecting) { /* its handshake thread stayed in the parent: the child's copy failed */
            t->connecting = 0;
            t->conn_err = ECONNABORTED;
            t->failed = 1;
        }
    }
}
