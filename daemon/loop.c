/* ktlsxd's event loop: io_uring through liburing where it can be set up,
 * else epoll (one log line says why).
 *
 * Both give the same level-triggered "call w->fn when the fd is ready"
 * contract.  On io_uring each watch has at most one one-shot POLL_ADD in
 * flight; after its completion has been handed to w->fn the poll is armed
 * again with the watch's current events, while the watch is active.  A
 * changed interest or a DEL cancels the poll in flight (POLL_REMOVE); the
 * watch's memory must stay until that poll's completion has come back
 * (kd_watch_idle), which is why door connections are freed only then. */
#include "ktlsxd.h"

#include <errno.h>
#include <liburing.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RING_ENTRIES 4096
/* user_data of POLL_REMOVE requests: their completions carry nothing we need. */
#define CANCEL_TAG 1ULL

/* One loop per thread: each worker and the main thread (signals, control) run their own. */
static _Thread_local struct {
    bool uring;
    struct io_uring ring;
    int ep;
} loop = { .ep = -1 };

int64_t kd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Debian 12's liburing 2.3 declares io_uring_register_restrictions and
 * io_uring_enable_rings but its shared library does not export them: the
 * system call itself, which is all they wrap. */
static int ring_register(int fd, unsigned op, void *arg, unsigned nr)
{
    return syscall(__NR_io_uring_register, fd, op, arg, nr) < 0 ? -errno : 0;
}

int kd_loop_init(bool allow_uring, bool say)
{
    if (allow_uring) {
        /* The ring may only poll: io_uring runs its operations past seccomp, so a
         * ring that could open, read or connect would be a way around the
         * allow-list.  The restrictions can only be registered on a ring that
         * starts disabled (Linux 5.10). */
        struct io_uring_restriction only_poll[] = {
            { .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_POLL_ADD },
            { .opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = IORING_OP_POLL_REMOVE },
        };
        int rc = io_uring_queue_init(RING_ENTRIES, &loop.ring, IORING_SETUP_R_DISABLED);
        if (rc == 0) {
            rc = ring_register(loop.ring.ring_fd, IORING_REGISTER_RESTRICTIONS, only_poll, 2);
            if (rc == 0) rc = ring_register(loop.ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
            if (rc < 0) io_uring_queue_exit(&loop.ring);
        }
        if (rc == 0) {
            loop.uring = true;
            if (say) kd_log(KTLSX_LOG_INFO, "event loop: io_uring (%d entries, restricted to POLL_ADD/POLL_REMOVE)",
                            RING_ENTRIES);
            return 0;
        }
        if (say) kd_log(KTLSX_LOG_WARNING, "event loop: io_uring cannot be set up (%s%s), using epoll", strerror(-rc),
               rc == -EPERM ? ": kernel.io_uring_disabled or a seccomp filter" : "");
    } else if (say) {
        kd_log(KTLSX_LOG_INFO, "event loop: epoll (event_loop = epoll)");
    }
    loop.ep = epoll_create1(EPOLL_CLOEXEC);
    return loop.ep < 0 ? -1 : 0;
}

void kd_loop_close(void)
{
    if (loop.uring) io_uring_queue_exit(&loop.ring);
    if (loop.ep >= 0) close(loop.ep);
}

static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&loop.ring);
    if (!sqe) { /* the submission queue is full: hand it to the kernel and take a fresh slot */
        (void)io_uring_submit(&loop.ring);
        sqe = io_uring_get_sqe(&loop.ring);
    }
    return sqe;
}

static int arm(struct kd_watch *w)
{
    struct io_uring_sqe *sqe = get_sqe();
    if (!sqe) return errno = EBUSY, -1;
    io_uring_prep_poll_add(sqe, w->fd, w->events);
    io_uring_sqe_set_data(sqe, w);
    w->inflight++;
    w->armed_events = w->events;
    return 0;
}

static void cancel(struct kd_watch *w)
{
    struct io_uring_sqe *sqe = get_sqe();
    if (!sqe) return; /* the poll completes on its own at the fd's next event, or at the exit */
    io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)w);
    io_uring_sqe_set_data64(sqe, CANCEL_TAG);
}

int kd_watch_fd(int fd, int op, uint32_t events, struct kd_watch *w)
{
    if (!loop.uring) {
        if (op == EPOLL_CTL_DEL) {
            if (!w->active) return 0;
            w->active = false;
            return epoll_ctl(loop.ep, EPOLL_CTL_DEL, fd, NULL);
        }
        if (op == EPOLL_CTL_MOD && w->active && w->fd == fd && w->events == events) return 0;
        struct epoll_event ev = { .events = events, .data.ptr = w };
        if (epoll_ctl(loop.ep, w->active ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) < 0) return -1;
        w->fd = fd, w->events = events, w->active = true;
        return 0;
    }
    if (op == EPOLL_CTL_DEL) {
        w->active = false;
        if (w->inflight > 0) cancel(w);
        return 0;
    }
    bool changed = !w->active || w->fd != fd || w->events != events;
    w->fd = fd, w->events = events, w->active = true;
    if (w->inflight == 0) return arm(w);
    if (changed && w->armed_events != events) cancel(w); /* re-armed with the new interest at its completion */
    return 0;
}

bool kd_watch_idle(const struct kd_watch *w) { return w->inflight == 0; }

int kd_loop_wait(int timeout_ms)
{
    if (!loop.uring) {
        struct epoll_event evs[128];
        int n = epoll_wait(loop.ep, evs, 128, timeout_ms);
        if (n < 0) return errno == EINTR ? 0 : -1;
        for (int i = 0; i < n; i++) {
            struct kd_watch *w = evs[i].data.ptr;
            if (w->active) w->fn(w, evs[i].events);
        }
        return 0;
    }
    struct io_uring_cqe *cqe = NULL;
    struct __kernel_timespec ts = { .tv_sec = timeout_ms / 1000, .tv_nsec = (long long)(timeout_ms % 1000) * 1000000 };
    int rc = io_uring_submit_and_wait_timeout(&loop.ring, &cqe, 1, timeout_ms >= 0 ? &ts : NULL, NULL);
    if (rc < 0 && rc != -ETIME && rc != -EINTR) return errno = -rc, -1;
    /* Take the batch off the ring first: the handlers queue new requests meanwhile. */
    struct { uint64_t data; int res; } batch[256];
    unsigned head, n = 0;
    io_uring_for_each_cqe(&loop.ring, head, cqe)
    {
        if (n == 256) break;
        batch[n].data = cqe->user_data;
        batch[n].res = cqe->res;
        n++;
    }
    io_uring_cq_advance(&loop.ring, n);
    for (unsigned i = 0; i < n; i++) {
        if (batch[i].data == CANCEL_TAG) continue;
        struct kd_watch *w = (struct kd_watch *)(uintptr_t)batch[i].data;
        w->inflight--;
        if (batch[i].res > 0 && w->active && ((uint32_t)batch[i].res & (w->events | EPOLLHUP | EPOLLERR)))
            w->fn(w, (uint32_t)batch[i].res);
        if (w->active && w->inflight == 0 && arm(w) < 0)
            kd_log(KTLSX_LOG_ERROR, "io_uring: cannot re-arm a poll: %s", strerror(errno));
    }
    return 0;
}
