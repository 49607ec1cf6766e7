/* ktlsx-fileserver: a worker's loop on its own io_uring.
 *
 * One multishot ACCEPT on the worker's SO_REUSEPORT listener; per waiting
 * connection one one-shot POLL_ADD (user_data = the connection), whose
 * completion runs fs_conn_drive; a changed interest cancels the poll in
 * flight (POLL_REMOVE) and the connection is driven again at its
 * completion.  A closed connection is freed only when its poll is back.
 * Deadlines: a scan of the worker's list every SCAN_MS (no connection waits
 * for another; 10,000 connections cost a few microseconds per scan).
 * The same one-poll-per-watch pattern as daemon/loop.c (kd_watch_fd); a
 * shared helper for both is a candidate, not done here. */
#include "fileserver.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#define TAG_ACCEPT 1ULL
#define TAG_CANCEL 2ULL
#define SCAN_MS 100
#define BATCH 256

static __thread struct fs_worker *cur;
static __thread struct fs_conn graveyard; /* closed, poll still in flight */

static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&cur->ring);
    if (!sqe) { /* the submission queue is full: hand it to the kernel, take a fresh slot */
        (void)io_uring_submit(&cur->ring);
        sqe = io_uring_get_sqe(&cur->ring);
    }
    return sqe;
}

static void arm_accept(void)
{
    struct io_uring_sqe *sqe = get_sqe();
    if (!sqe) return;
    io_uring_prep_multishot_accept(sqe, cur->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, TAG_ACCEPT);
}

void fs_conn_wait(struct fs_conn *c, uint32_t events)
{
    if (c->inflight) {
        if (c->armed == events) return;
        struct io_uring_sqe *sqe = get_sqe(); /* driven again at the cancelled poll's completion */
        if (sqe) {
            io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)c);
            io_uring_sqe_set_data64(sqe, TAG_CANCEL);
        }
        return;
    }
    struct io_uring_sqe *sqe = get_sqe();
    if (!sqe) { /* cannot happen after a submit; do not lose the connection silently */
        fs_log("io_uring: no submission slot: closing a connection");
        c->deadline = fs_now_ms(); /* expired at the next scan */
        return;
    }
    io_uring_prep_poll_add(sqe, c->door ? ktlsx_daemon_handshake_fd(c->door) : c->fd, events);
    io_uring_sqe_set_data(sqe, c);
    c->inflight = 1;
    c->armed = events;
}

int fs_splice_submit(struct fs_conn *c, size_t in_len, size_t out_len)
{
    /* both SQEs in one go: a link must not straddle a submit that get_sqe makes */
    if (io_uring_sq_space_left(&cur->ring) < 2) (void)io_uring_submit(&cur->ring);
    if (io_uring_sq_space_left(&cur->ring) < 2) return -1;
    struct io_uring_sqe *sqe;
    if (in_len) {
        sqe = io_uring_get_sqe(&cur->ring);
        io_uring_prep_splice(sqe, c->file_fd, c->body_off, c->pipe_fd[1], -1, (unsigned)in_len, 0);
        /* a short splice into the pipe fails the link: the second one is cancelled
         * and the bytes that did arrive go out with the next submission */
        sqe->flags |= IOSQE_IO_LINK;
        io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | FS_TAG_SPLICE_IN);
        c->splicing++;
    }
    sqe = io_uring_get_sqe(&cur->ring);
    io_uring_prep_splice(sqe, c->pipe_fd[0], -1, c->fd, -1, (unsigned)out_len, SPLICE_F_NONBLOCK);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | FS_TAG_SPLICE_OUT);
    c->splicing++;
    /* The guard: a POLLERR / POLLHUP poll on the socket for as long as the body is
     * spliced (one-shot, it stays armed across chunks until it fires or is removed).
     * Without it nothing watches the socket while splices are in flight: a reset
     * peer is seen only by the next splice, which may not come back for long. */
    if (!c->guarded) {
        sqe = get_sqe();
        if (sqe) {
            io_uring_prep_poll_add(sqe, c->fd, POLLERR | POLLHUP);
            io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | FS_TAG_GUARD);
            c->guarded = 1;
        }
    }
    return 0;
}

void fs_splice_cancel(struct fs_conn *c)
{
    if (!c->splicing) return;
    /* each in-flight splice by its user_data; one not in flight any more answers -ENOENT
     * (the CQEs carry TAG_CANCEL and are dropped); one running in an io-wq worker is
     * signalled and comes back -EINTR / -ECANCELED */
    for (uint64_t tag = FS_TAG_SPLICE_IN; tag <= FS_TAG_SPLICE_OUT; tag++) {
        struct io_uring_sqe *sqe = get_sqe();
        if (!sqe) return;
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c | tag, 0);
        io_uring_sqe_set_data64(sqe, TAG_CANCEL);
    }
    c->cancelled++;
}

void fs_splice_unguard(struct fs_conn *c)
{
    if (!c->guarded || c->unguarding) return;
    struct io_uring_sqe *sqe = get_sqe();
    if (!sqe) return;
    io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)c | FS_TAG_GUARD);
    io_uring_sqe_set_data64(sqe, TAG_CANCEL);
    c->unguarding = 1;
}

void fs_conn_release(struct fs_conn *c)
{
    if (!c->inflight && !c->splicing && !c->guarded) {
        fs_conn_free(c);
        return;
    }
    fs_splice_cancel(c); /* closed at a deadline (--send-timeout) or by the guard: end them now */
    fs_splice_unguard(c);
    struct io_uring_sqe *sqe = c->inflight ? get_sqe() : NULL;
    if (sqe) {
        io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)c);
        io_uring_sqe_set_data64(sqe, TAG_CANCEL);
    }
    c->next = graveyard.next, c->prev = &graveyard;
    graveyard.next->prev = c, graveyard.next = c;
}

static void on_accept(int res, uint32_t flags)
{
    static __thread int64_t last_complaint;
    if (!(flags & IORING_CQE_F_MORE)) arm_accept();
    if (res < 0) {
        if (fs_now_ms() - last_complaint > 1000) fs_log("accept: %s", strerror(-res)), last_complaint = fs_now_ms();
        return;
    }
    if (__atomic_load_n(&fs_conn_count, __ATOMIC_RELAXED) >= fs.opt.max_conns || fs_stop) {
        if (fs_now_ms() - last_complaint > 1000)
            fs_log("connection limit (--max-conns %d) reached: refusing", fs.opt.max_conns), last_complaint = fs_now_ms();
        close(res);
        return;
    }
    struct sockaddr_in peer = { 0 };
    socklen_t len = sizeof peer;
    (void)getpeername(res, (struct sockaddr *)&peer, &len);
    /* A response is a head and a body sent apart: with Nagle the body would wait for
     * the client's delayed ACK of the head (~40 ms per keep-alive request). */
    int one = 1;
    (void)setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct fs_conn *c = fs_conn_new(cur, res, &peer);
    if (!c) {
        close(res);
        return;
    }
    fs_conn_drive(c);
}

static void scan_deadlines(int64_t now)
{
    for (struct fs_conn *c = cur->list.next, *next; c != &cur->list; c = next) {
        next = c->next;
        if (c->deadline && now >= c->deadline) {
            c->deadline = 0;
            fs_conn_expire(c); /* closes c, or answers 408 (c stays in the list) */
        }
    }
}

void *fs_worker_run(void *arg)
{
    struct fs_worker *w = arg;
    cur = w;
    graveyard.next = graveyard.prev = &graveyard;
    w->list.next = w->list.prev = &w->list;
    arm_accept();
    struct { uint64_t data; int res; uint32_t flags; } batch[BATCH];
    while (!fs_stop) {
        struct io_uring_cqe *cqe = NULL;
        struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = SCAN_MS * 1000000LL };
        int rc = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            fs_log("worker %d: io_uring: %s", w->id, strerror(-rc));
            break;
        }
        unsigned head, n = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe)
        {
            if (n == BATCH) break;
            batch[n].data = cqe->user_data, batch[n].res = cqe->res, batch[n].flags = cqe->flags;
            n++;
        }
        io_uring_cq_advance(&w->ring, n);
        for (unsigned i = 0; i < n; i++) {
            if (batch[i].data == TAG_CANCEL) continue;
            if (batch[i].data == TAG_ACCEPT) {
                on_accept(batch[i].res, batch[i].flags);
                continue;
            }
            unsigned tag = (unsigned)(batch[i].data & FS_TAG_MASK);
            struct fs_conn *c = (struct fs_conn *)(uintptr_t)(batch[i].data & ~(uint64_t)FS_TAG_MASK);
            if (tag == FS_TAG_GUARD) { /* the guard poll of a spliced body */
                c->guarded = 0, c->unguarding = 0;
                if (!c->dead) {
                    fs_conn_guard_done(c, batch[i].res);
                    continue;
                }
            } else if (tag) { /* a splice (--body splice) */
                c->splicing--;
                if (!c->dead) {
                    fs_conn_splice_done(c, tag, batch[i].res);
                    if (!c->splicing) fs_conn_drive(c);
                    continue;
                }
            } else {
                c->inflight = 0;
                c->revents = batch[i].res > 0 ? (uint32_t)batch[i].res : 0;
            }
            if (c->dead) { /* in the graveyard */
                if (c->inflight || c->splicing || c->guarded) continue;
                c->prev->next = c->next, c->next->prev = c->prev;
                fs_conn_free(c);
                continue;
            }
            fs_conn_drive(c);
        }
        int64_t now = fs_now_ms();
        if (now >= w->next_scan) {
            scan_deadlines(now);
            w->next_scan = now + SCAN_MS;
        }
    }
    /* Stop: close every connection, then the ring (which ends the polls), then free. */
    while (w->list.next != &w->list) {
        struct fs_conn *c = w->list.next;
        c->inflight = 0; /* the ring goes away below: nothing will complete */
        c->prev->next = c->next, c->next->prev = c->prev;
        ktlsx_socket_free(c->sock);
        ktlsx_daemon_handshake_free(c->door);
        close(c->fd);
        __atomic_sub_fetch(&fs_conn_count, 1, __ATOMIC_RELAXED);
        fs_conn_free(c);
    }
    io_uring_queue_exit(&w->ring);
    while (graveyard.next != &graveyard) {
        struct fs_conn *c = graveyard.next;
        c->prev->next = c->next, c->next->prev = c->prev;
        fs_conn_free(c);
    }
    close(w->lfd);
    return NULL;
}
