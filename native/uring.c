/*
 * io_uring for the ublk server, with raw syscalls (no liburing): rings of 128-byte SQEs
 * (IORING_SETUP_SQE128, which ublk requires) carrying IORING_OP_URING_CMD. The protocol —
 * which command, which fields, what a result means — lives in TypeScript
 * (src/export/ublk/); this file only moves opaque command bytes and completions.
 *
 *   ublkControl(cmdOp, cmd: Buffer(32), data: Buffer | null) -> Promise<number>
 *       One control command on /dev/ublk-control, on libuv's thread pool. When `data` is
 *       given, the command's `addr` and `len` fields are set to it (the kernel reads or
 *       writes it: dev info, params, features). Resolves with the CQE's res (>= 0), rejects
 *       with an errno Error (syscall "ublk control 0x..") for a negative res.
 *       One ring and one open of /dev/ublk-control per call: control commands are rare (a
 *       handful per device lifetime) and some block for long — START_DEV waits until every
 *       queue has fetched every tag, DEL_DEV until /dev/ublkcN is released — so a shared ring
 *       would need a lock and would queue a quick GET_DEV_INFO behind a blocked DEL_DEV.
 *
 *   queueOpen(charFd, qid, depth, descBytes, onCompletions
 *             [, copyBuffer, bytesPerTag, copyBase, copyStride, copyInOps]) -> handle
 *       A ring for one ublk queue and a thread that owns it. descBytes > 0 maps that many
 *       bytes of the queue's io descriptor array (read-only, from charFd at
 *       qid * UBLK_MAX_DESC_AREA); 0 maps nothing (tests on a plain file).
 *       With copyBuffer (depth x bytesPerTag bytes, tag t's buffer at t * bytesPerTag) the
 *       thread moves request data itself (UBLK_F_USER_COPY, on charFd at copyBase +
 *       tag * copyStride): for a fetched request whose op bit is set in copyInOps and whose
 *       data fits, it preads the data into the tag's buffer before handing the request over
 *       (entry flags COPIED_IN, or COPY_FAILED); a command with copy_len > 0 first pwrites
 *       that many bytes of the tag's buffer (a failure turns the result into -EIO). That
 *       saves a trip through libuv's thread pool per request. Which ops, offsets and lengths:
 *       decided in TypeScript.
 *   queueSubmit(handle, cmds: Buffer)   n x QUEUE_CMD_BYTES: { u32 cmd_op, u16 tag, u16 pad,
 *                                        s32 result, u32 copy_len, u64 addr } -> ublksrv_io_cmd
 *   queueStop(handle)                    wakes the thread, joins it, unmaps, closes the ring
 *   onCompletions(batch: Buffer)         n x QUEUE_CQE_BYTES: { u16 tag, u16 flags, s32 res,
 *                                        u32 op_flags, u32 nr_sectors, u64 start_sector,
 *                                        u64 addr } — the descriptor of `tag` copied when
 *                                        res == 0 (a request is ready), zeroes otherwise.
 *                                        tag 0xffff, flags 1: the thread failed (res = -errno)
 *                                        and stopped. flags 2: the request's data is in the
 *                                        tag's copy buffer; 4: copying it in failed.
 *
 * Why a thread owns the whole ring: ublk binds a queue to the task that issued its first
 * FETCH_REQ (every later command of that queue from another task fails), and the kernel
 * delivers requests as task work to that task. io_uring_enter() submits in the calling task,
 * so the queue thread must do every submission. Invariant: the SQ and the CQ are touched by
 * the queue thread only. JavaScript hands it commands through a mutex-protected list and an
 * eventfd; the thread keeps an IORING_OP_READ of that eventfd in the ring, so one
 * io_uring_enter(GETEVENTS) sleeps until either a request arrives or JavaScript has work.
 * The descriptor is copied by the thread into the batch, so JavaScript never holds a view of
 * the mapping (a view would keep /dev/ublkcN open past queueStop and block DEL_DEV, or fault
 * after munmap).
 */
#define NAPI_VERSION 8
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define _FILE_OFFSET_BITS 64

#include <node_api.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __linux__
#include <fcntl.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* From tsblk.c. */
const char *errno_name(int err);
napi_value make_errno_error(napi_env env, int err, const char *syscall);
void throw_errno(napi_env env, int err, const char *syscall);
int get_count(napi_env env, napi_value value, const char *fn, const char *what, int64_t *out);
int get_fd(napi_env env, napi_value value, const char *fn, int *out);
int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *fn);
int set_function(napi_env env, napi_value exports, const char *name, napi_callback cb);
int set_int(napi_env env, napi_value exports, const char *name, int32_t v);

#define CTRL_CMD_BYTES 32
#define QUEUE_CMD_BYTES 24
#define QUEUE_CQE_BYTES 32
#define MAX_DEPTH 4096
/* ublk maps queue q's descriptors at q * round_up(UBLK_MAX_QUEUE_DEPTH * 24, page). */
#define UBLK_MAX_DESC_AREA (((size_t)MAX_DEPTH * 24 + 4095) & ~(size_t)4095)
#define WAKE_USER_DATA (1ULL << 32)
#define TAG_THREAD_FAILED 0xffff
#define ENTRY_COPIED_IN 2
#define ENTRY_COPY_FAILED 4

#ifdef __linux__

/* ---- a ring ---- */

struct ring {
  int fd;
  unsigned sq_entries, cq_entries;
  unsigned to_submit; /* SQEs written but not yet consumed by io_uring_enter */
  void *sq_map, *cq_map;
  size_t sq_map_len, cq_map_len;
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
  unsigned *cq_head, *cq_tail, *cq_mask;
  struct io_uring_cqe *cqes;
  uint8_t *sqes; /* 128-byte entries */
  size_t sqes_len;
};

static int sys_setup(unsigned entries, struct io_uring_params *p) {
  return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
  return (int)syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
}

static void ring_free(struct ring *r) {
  if (r->sqes != NULL && r->sqes != MAP_FAILED) munmap(r->sqes, r->sqes_len);
  if (r->cq_map != NULL && r->cq_map != MAP_FAILED && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_map_len);
  if (r->sq_map != NULL && r->sq_map != MAP_FAILED) munmap(r->sq_map, r->sq_map_len);
  if (r->fd >= 0) close(r->fd);
  memset(r, 0, sizeof *r);
  r->fd = -1;
}

/* Returns 0 or an errno. */
static int ring_init(struct ring *r, unsigned entries) {
  struct io_uring_params p;
  memset(r, 0, sizeof *r);
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_SQE128;
  r->fd = sys_setup(entries, &p);
  if (r->fd < 0) {
    int err = errno;
    r->fd = -1;
    return err;
  }
  r->sq_entries = p.sq_entries;
  r->cq_entries = p.cq_entries;
  r->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  r->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  if (p.features & IORING_FEAT_SINGLE_MMAP) {
    if (r->cq_map_len > r->sq_map_len) r->sq_map_len = r->cq_map_len;
    r->cq_map_len = r->sq_map_len;
  }
  r->sq_map = mmap(NULL, r->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
  if (r->sq_map == MAP_FAILED) goto fail;
  if (p.features & IORING_FEAT_SINGLE_MMAP) {
    r->cq_map = r->sq_map;
  } else {
    r->cq_map = mmap(NULL, r->cq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
    if (r->cq_map == MAP_FAILED) goto fail;
  }
  r->sqes_len = (size_t)p.sq_entries * 128;
  r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
  if (r->sqes == MAP_FAILED) goto fail;
  uint8_t *sq = r->sq_map, *cq = r->cq_map;
  r->sq_head = (unsigned *)(sq + p.sq_off.head);
  r->sq_tail = (unsigned *)(sq + p.sq_off.tail);
  r->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
  r->sq_array = (unsigned *)(sq + p.sq_off.array);
  r->cq_head = (unsigned *)(cq + p.cq_off.head);
  r->cq_tail = (unsigned *)(cq + p.cq_off.tail);
  r->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
  r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
  return 0;
fail: {
  int err = errno;
  ring_free(r);
  return err;
}
}

/* A zeroed 128-byte SQE at the tail, or NULL when the SQ is full. ring_commit() publishes it. */
static struct io_uring_sqe *ring_sqe(struct ring *r) {
  unsigned tail = *r->sq_tail;
  unsigned head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
  if (tail - head >= r->sq_entries) return NULL;
  unsigned idx = tail & *r->sq_mask;
  r->sq_array[idx] = idx;
  struct io_uring_sqe *sqe = (struct io_uring_sqe *)(r->sqes + (size_t)idx * 128);
  memset(sqe, 0, 128);
  return sqe;
}

static void ring_commit(struct ring *r) {
  __atomic_store_n(r->sq_tail, *r->sq_tail + 1, __ATOMIC_RELEASE);
  r->to_submit++;
}

static void prep_uring_cmd(struct io_uring_sqe *sqe, int fd, uint32_t cmd_op, uint64_t user_data) {
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = fd;
  sqe->cmd_op = cmd_op;
  sqe->user_data = user_data;
}

/* ---- control commands ---- */

struct ctrl_work {
  uint32_t cmd_op;
  uint8_t cmd[CTRL_CMD_BYTES];
  void *data;
  size_t data_len;
  napi_ref data_ref;
  int32_t res;
  int err;              /* errno of a failed syscall (not of the command) */
  const char *syscall;  /* which one */
  napi_deferred deferred;
  napi_async_work async;
};

static void ctrl_execute(napi_env env, void *arg) {
  (void)env;
  struct ctrl_work *w = arg;
  struct ring r;
  int cfd = open("/dev/ublk-control", O_RDWR | O_CLOEXEC);
  if (cfd < 0) {
    w->err = errno;
    w->syscall = "open /dev/ublk-control";
    return;
  }
  int err = ring_init(&r, 2);
  if (err != 0) {
    close(cfd);
    w->err = err;
    w->syscall = "io_uring_setup";
    return;
  }
  struct io_uring_sqe *sqe = ring_sqe(&r);
  prep_uring_cmd(sqe, cfd, w->cmd_op, 1);
  if (w->data != NULL) {
    uint64_t addr = (uint64_t)(uintptr_t)w->data;
    uint16_t len = (uint16_t)w->data_len;
    memcpy(w->cmd + 6, &len, 2);   /* ublksrv_ctrl_cmd.len */
    memcpy(w->cmd + 8, &addr, 8);  /* ublksrv_ctrl_cmd.addr */
  }
  memcpy(sqe->cmd, w->cmd, CTRL_CMD_BYTES);
  ring_commit(&r);
  for (;;) {
    int n = sys_enter(r.fd, r.to_submit, 1, IORING_ENTER_GETEVENTS);
    if (n < 0) {
      if (errno == EINTR) continue;
      w->err = errno;
      w->syscall = "io_uring_enter";
      break;
    }
    r.to_submit -= (unsigned)n;
    unsigned head = *r.cq_head;
    if (head != __atomic_load_n(r.cq_tail, __ATOMIC_ACQUIRE)) {
      w->res = r.cqes[head & *r.cq_mask].res;
      __atomic_store_n(r.cq_head, head + 1, __ATOMIC_RELEASE);
      break;
    }
  }
  ring_free(&r);
  close(cfd);
}

static void ctrl_complete(napi_env env, napi_status status, void *arg) {
  struct ctrl_work *w = arg;
  napi_value result = NULL;
  char name[48];
  if (status == napi_cancelled && w->err == 0) {
    w->err = ECANCELED;
    w->syscall = "ublk control";
  }
  if (w->err == 0 && w->res < 0) {
    w->err = -w->res;
    snprintf(name, sizeof name, "ublk control 0x%08x", w->cmd_op);
    w->syscall = name;
  }
  if (w->err != 0) {
    result = make_errno_error(env, w->err, w->syscall);
    if (result != NULL) napi_reject_deferred(env, w->deferred, result);
  } else if (napi_create_int32(env, w->res, &result) == napi_ok) {
    napi_resolve_deferred(env, w->deferred, result);
  }
  if (w->data_ref != NULL) napi_delete_reference(env, w->data_ref);
  napi_delete_async_work(env, w->async);
  free(w);
}

static int get_u32(napi_env env, napi_value v, const char *fn, const char *what, uint32_t *out) {
  double d;
  char msg[128];
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 4294967295.0) || d != (double)(uint32_t)d) {
    snprintf(msg, sizeof msg, "%s: %s must be a u32", fn, what);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return 0;
  }
  *out = (uint32_t)d;
  return 1;
}

/* Buffer (or any TypedArray) data; exactly `want` bytes unless want is 0. */
static int get_bytes(napi_env env, napi_value v, const char *fn, const char *what, size_t want, void **data,
                     size_t *len) {
  bool is_buf = false, is_ta = false;
  char msg[128];
  napi_is_buffer(env, v, &is_buf);
  if (is_buf) {
    if (napi_get_buffer_info(env, v, data, len) != napi_ok) return 0;
  } else if (napi_is_typedarray(env, v, &is_ta) == napi_ok && is_ta) {
    napi_typedarray_type type;
    size_t n, off;
    napi_value ab;
    if (napi_get_typedarray_info(env, v, &type, &n, data, &ab, &off) != napi_ok) return 0;
    if (type != napi_uint8_array) goto bad;
    *len = n;
  } else {
    goto bad;
  }
  if (want != 0 && *len != want) {
    snprintf(msg, sizeof msg, "%s: %s must be %zu bytes, got %zu", fn, what, want, *len);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return 0;
  }
  return 1;
bad:
  snprintf(msg, sizeof msg, "%s: %s must be a Buffer or Uint8Array", fn, what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return 0;
}

static napi_value ublk_control_js(napi_env env, napi_callback_info info) {
  static const char fn[] = "ublkControl";
  napi_value argv[3], promise, resource;
  napi_valuetype t;
  void *cmd;
  size_t cmd_len;
  if (!get_args(env, info, 3, argv, fn)) return NULL;
  struct ctrl_work *w = calloc(1, sizeof *w);
  if (w == NULL) {
    throw_errno(env, ENOMEM, fn);
    return NULL;
  }
  if (!get_u32(env, argv[0], fn, "cmdOp", &w->cmd_op) ||
      !get_bytes(env, argv[1], fn, "cmd", CTRL_CMD_BYTES, &cmd, &cmd_len))
    goto fail;
  memcpy(w->cmd, cmd, CTRL_CMD_BYTES);
  if (napi_typeof(env, argv[2], &t) != napi_ok) goto fail;
  if (t != napi_null && t != napi_undefined) {
    if (!get_bytes(env, argv[2], fn, "data", 0, &w->data, &w->data_len)) goto fail;
    if (w->data_len == 0 || w->data_len > 0xffff) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "ublkControl: data must be 1..65535 bytes");
      goto fail;
    }
    /* Keeps the buffer alive (the kernel writes into it) until the command completes. */
    if (napi_create_reference(env, argv[2], 1, &w->data_ref) != napi_ok) goto fail;
  }
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "tsblk:ublkControl", NAPI_AUTO_LENGTH, &resource) != napi_ok ||
      napi_create_async_work(env, NULL, resource, ctrl_execute, ctrl_complete, w, &w->async) != napi_ok)
    goto fail_napi;
  if (napi_queue_async_work(env, w->async) != napi_ok) {
    napi_delete_async_work(env, w->async);
    goto fail_napi;
  }
  return promise;
fail_napi:
  napi_throw_error(env, "ENAPI", "tsblk_native: could not queue ublkControl");
fail:
  if (w->data_ref != NULL) napi_delete_reference(env, w->data_ref);
  free(w);
  return NULL;
}

/* ---- per-queue rings ---- */

struct qcmd {
  uint32_t cmd_op;
  uint16_t tag;
  int32_t result;
  uint32_t copy_len;
  uint64_t addr;
};

struct batch {
  size_t n;
  uint8_t bytes[]; /* n * QUEUE_CQE_BYTES */
};

struct uqueue {
  struct ring r;
  int char_fd, qid, depth;
  void *desc;
  size_t desc_len;
  int efd;
  uint64_t efd_value; /* the eventfd READ's buffer: owned by the ring while armed */
  pthread_t thread;
  int thread_started, stopped;
  pthread_mutex_t lock; /* guards pending */
  struct qcmd *pending;
  size_t npending, cap;
  struct qcmd *work; /* the thread's copy of pending, handled outside the lock */
  size_t work_cap;
  /* Data moved by the thread (queueOpen's copy arguments); copy == NULL: not used. */
  uint8_t *copy;
  size_t bytes_per_tag;
  uint64_t copy_base, copy_stride;
  uint32_t copy_in_ops;
  napi_ref copy_ref;
  atomic_int stop;
  napi_threadsafe_function tsfn;
};

static int arm_wake(struct uqueue *q) {
  struct io_uring_sqe *sqe = ring_sqe(&q->r);
  if (sqe == NULL) return 0;
  sqe->opcode = IORING_OP_READ;
  sqe->fd = q->efd;
  sqe->addr = (uint64_t)(uintptr_t)&q->efd_value;
  sqe->len = sizeof q->efd_value;
  sqe->off = (uint64_t)-1; /* current position: an eventfd has none */
  sqe->user_data = WAKE_USER_DATA;
  ring_commit(&q->r);
  return 1;
}

/* Moves len bytes between the tag's copy buffer and its user-copy offset on charFd. */
static int copy_data(struct uqueue *q, uint16_t tag, size_t len, int out) {
  uint8_t *buf = q->copy + (size_t)tag * q->bytes_per_tag;
  off_t pos = (off_t)(q->copy_base + (uint64_t)tag * q->copy_stride);
  size_t done = 0;
  while (done < len) {
    ssize_t n = out ? pwrite(q->char_fd, buf + done, len - done, pos + (off_t)done)
                    : pread(q->char_fd, buf + done, len - done, pos + (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    done += (size_t)n;
  }
  return 1;
}

/*
 * Moves JavaScript's commands into SQEs. They are taken out of the list under the lock and
 * handled outside it (a READ's data is written to the kernel first), so queueSubmit never
 * waits behind a copy. Every tag has at most one command in the ring and the ring has a slot
 * per tag, so they fit; if one ever does not, it goes back to the front of the list.
 */
static void take_pending(struct uqueue *q) {
  pthread_mutex_lock(&q->lock);
  size_t n = q->npending;
  if (n > q->work_cap) {
    struct qcmd *grown = realloc(q->work, n * sizeof *grown);
    if (grown == NULL) n = q->work_cap; /* the rest waits for the next round */
    else {
      q->work = grown;
      q->work_cap = n;
    }
  }
  memcpy(q->work, q->pending, n * sizeof *q->work);
  memmove(q->pending, q->pending + n, (q->npending - n) * sizeof *q->pending);
  q->npending -= n;
  pthread_mutex_unlock(&q->lock);
  size_t i = 0;
  for (; i < n; i++) {
    struct qcmd *c = &q->work[i];
    struct io_uring_sqe *sqe = ring_sqe(&q->r);
    if (sqe == NULL) break;
    if (c->copy_len > 0) {
      if (q->copy == NULL || c->copy_len > q->bytes_per_tag || !copy_data(q, c->tag, c->copy_len, 1))
        c->result = -EIO;
      c->copy_len = 0; /* copied once, even if the command has to wait */
    }
    prep_uring_cmd(sqe, q->char_fd, c->cmd_op, c->tag);
    /* struct ublksrv_io_cmd { u16 q_id; u16 tag; s32 result; u64 addr; } */
    uint16_t qid = (uint16_t)q->qid;
    memcpy(sqe->cmd + 0, &qid, 2);
    memcpy(sqe->cmd + 2, &c->tag, 2);
    memcpy(sqe->cmd + 4, &c->result, 4);
    memcpy(sqe->cmd + 8, &c->addr, 8);
    ring_commit(&q->r);
  }
  if (i < n) {
    size_t rest = n - i;
    pthread_mutex_lock(&q->lock);
    if (q->npending + rest <= q->cap) {
      memmove(q->pending + rest, q->pending, q->npending * sizeof *q->pending);
      memcpy(q->pending, q->work + i, rest * sizeof *q->pending);
      q->npending += rest;
    }
    pthread_mutex_unlock(&q->lock);
  }
}

/* For a fetched request: its data into the tag's buffer when JavaScript asked for its op. */
static uint16_t copy_in(struct uqueue *q, uint16_t tag, const uint8_t *desc) {
  if (q->copy == NULL || desc == NULL) return 0;
  uint32_t op_flags, nr_sectors;
  memcpy(&op_flags, desc + 0, 4);
  memcpy(&nr_sectors, desc + 4, 4);
  uint32_t op = op_flags & 0xff;
  if (op >= 32 || !(q->copy_in_ops & (1u << op))) return 0;
  size_t len = (size_t)nr_sectors * 512;
  if (len == 0 || len > q->bytes_per_tag) return 0;
  return copy_data(q, tag, len, 0) ? ENTRY_COPIED_IN : ENTRY_COPY_FAILED;
}

static void put_entry(uint8_t *e, uint16_t tag, uint16_t flags, int32_t res, const uint8_t *desc) {
  memcpy(e + 0, &tag, 2);
  memcpy(e + 2, &flags, 2);
  memcpy(e + 4, &res, 4);
  if (desc != NULL)
    memcpy(e + 8, desc, 24);
  else
    memset(e + 8, 0, 24);
}

static void deliver(struct uqueue *q, struct batch *b) {
  if (b == NULL) return;
  if (b->n == 0 || napi_call_threadsafe_function(q->tsfn, b, napi_tsfn_nonblocking) != napi_ok) free(b);
}

static void *queue_thread(void *arg) {
  struct uqueue *q = arg;
  int failed = 0;
  if (!arm_wake(q)) failed = EOVERFLOW;
  while (!failed) {
    take_pending(q);
    if (atomic_load(&q->stop)) break;
    int n = sys_enter(q->r.fd, q->r.to_submit, 1, IORING_ENTER_GETEVENTS);
    if (n < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e != EAGAIN && e != EBUSY) {
        failed = e;
        break;
      }
      n = 0; /* CQ full or out of memory for a moment: reap below, then submit again */
    }
    q->r.to_submit -= (unsigned)n;
    unsigned head = *q->r.cq_head;
    unsigned tail = __atomic_load_n(q->r.cq_tail, __ATOMIC_ACQUIRE);
    if (head == tail) continue;
    struct batch *b = malloc(sizeof *b + (size_t)(tail - head) * QUEUE_CQE_BYTES);
    if (b != NULL) b->n = 0;
    for (; head != tail; head++) {
      struct io_uring_cqe *cqe = &q->r.cqes[head & *q->r.cq_mask];
      if (cqe->user_data == WAKE_USER_DATA) {
        if (!atomic_load(&q->stop) && !arm_wake(q)) failed = EOVERFLOW;
        continue;
      }
      if (b == NULL) continue; /* out of memory: the tag is lost; JS sees the queue stall */
      uint16_t tag = (uint16_t)cqe->user_data;
      const uint8_t *desc = NULL;
      if (cqe->res == 0 && q->desc != NULL && tag < q->depth) desc = (const uint8_t *)q->desc + (size_t)tag * 24;
      put_entry(b->bytes + b->n * QUEUE_CQE_BYTES, tag, copy_in(q, tag, desc), cqe->res, desc);
      b->n++;
    }
    __atomic_store_n(q->r.cq_head, head, __ATOMIC_RELEASE);
    deliver(q, b);
  }
  if (failed) {
    struct batch *b = malloc(sizeof *b + QUEUE_CQE_BYTES);
    if (b != NULL) {
      b->n = 1;
      put_entry(b->bytes, TAG_THREAD_FAILED, 1, -failed, NULL);
      deliver(q, b);
    }
  }
  return NULL;
}

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)context;
  struct batch *b = data;
  if (env != NULL && js_cb != NULL) {
    napi_value buf, undefined;
    void *copy;
    if (napi_create_buffer_copy(env, b->n * QUEUE_CQE_BYTES, b->bytes, &copy, &buf) == napi_ok &&
        napi_get_undefined(env, &undefined) == napi_ok)
      napi_call_function(env, undefined, js_cb, 1, &buf, NULL);
  }
  free(b);
}

/* Stops the thread and frees everything but the struct itself. Idempotent. */
static void queue_shutdown(struct uqueue *q, int release_tsfn) {
  if (q->stopped) return;
  q->stopped = 1;
  if (q->thread_started) {
    atomic_store(&q->stop, 1);
    uint64_t one = 1;
    while (write(q->efd, &one, sizeof one) < 0 && errno == EINTR) {
    }
    pthread_join(q->thread, NULL);
    q->thread_started = 0;
  }
  /* Closing the ring cancels the commands still in it (the kernel aborts the queue's fetches). */
  ring_free(&q->r);
  if (q->desc != NULL) munmap(q->desc, q->desc_len);
  q->desc = NULL;
  if (q->efd >= 0) close(q->efd);
  q->efd = -1;
  free(q->pending);
  q->pending = NULL;
  q->npending = q->cap = 0;
  free(q->work);
  q->work = NULL;
  q->work_cap = 0;
  pthread_mutex_destroy(&q->lock);
  if (release_tsfn && q->tsfn != NULL) napi_release_threadsafe_function(q->tsfn, napi_tsfn_release);
  q->tsfn = NULL;
  q->copy = NULL; /* the buffer itself is JavaScript's; copy_ref goes in the finalizer */
}

static void queue_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct uqueue *q = data;
  queue_shutdown(q, 1);
  if (q->copy_ref != NULL) napi_delete_reference(env, q->copy_ref);
  free(q);
}

static struct uqueue *get_queue(napi_env env, napi_value v, const char *fn) {
  struct uqueue *q = NULL;
  char msg[96];
  if (napi_get_value_external(env, v, (void **)&q) != napi_ok || q == NULL) {
    snprintf(msg, sizeof msg, "%s: not a queue handle", fn);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return NULL;
  }
  if (q->stopped) {
    snprintf(msg, sizeof msg, "%s: the queue is stopped", fn);
    napi_throw_error(env, "ERR_INVALID_STATE", msg);
    return NULL;
  }
  return q;
}

static napi_value queue_open_js(napi_env env, napi_callback_info info) {
  static const char fn[] = "queueOpen";
  napi_value argv[10], handle, resource;
  napi_valuetype t;
  int fd;
  int64_t qid, depth, desc_bytes;
  size_t argc = 10;
  for (size_t i = 0; i < 10; i++) argv[i] = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (!get_args(env, info, 5, argv, fn) || !get_fd(env, argv[0], fn, &fd) ||
      !get_count(env, argv[1], fn, "qid", &qid) || !get_count(env, argv[2], fn, "depth", &depth) ||
      !get_count(env, argv[3], fn, "descBytes", &desc_bytes))
    return NULL;
  if (qid > 4095 || depth < 1 || depth > MAX_DEPTH || desc_bytes > (int64_t)UBLK_MAX_DESC_AREA) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "queueOpen: qid 0..4095, depth 1..4096, descBytes <= 98304");
    return NULL;
  }
  if (napi_typeof(env, argv[4], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "queueOpen: onCompletions must be a function");
    return NULL;
  }
  /* The optional copy buffer and where its data goes. */
  void *copy = NULL;
  size_t copy_len = 0;
  int64_t bytes_per_tag = 0;
  double copy_base = 0, copy_stride = 0;
  uint32_t copy_in_ops = 0;
  if (argc > 5 && napi_typeof(env, argv[5], &t) == napi_ok && t != napi_undefined && t != napi_null) {
    if (argc < 10) {
      napi_throw_type_error(env, "ERR_MISSING_ARGS",
                            "queueOpen: copyBuffer needs bytesPerTag, copyBase, copyStride and copyInOps");
      return NULL;
    }
    if (!get_bytes(env, argv[5], fn, "copyBuffer", 0, &copy, &copy_len) ||
        !get_count(env, argv[6], fn, "bytesPerTag", &bytes_per_tag) ||
        napi_get_value_double(env, argv[7], &copy_base) != napi_ok ||
        napi_get_value_double(env, argv[8], &copy_stride) != napi_ok ||
        !get_u32(env, argv[9], fn, "copyInOps", &copy_in_ops))
      return NULL;
    if (bytes_per_tag < 512 || (uint64_t)bytes_per_tag * (uint64_t)depth > copy_len || copy_base < 0 ||
        copy_stride < (double)bytes_per_tag || copy_base + copy_stride * (double)depth > 9007199254740992.0) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                             "queueOpen: copyBuffer must hold depth x bytesPerTag (>= 512) bytes, with "
                             "copyBase >= 0 and copyStride >= bytesPerTag, offsets below 2^53");
      return NULL;
    }
  }
  struct uqueue *q = calloc(1, sizeof *q);
  if (q == NULL) {
    throw_errno(env, ENOMEM, fn);
    return NULL;
  }
  q->char_fd = fd;
  q->qid = (int)qid;
  q->depth = (int)depth;
  if (copy != NULL) {
    /* Keeps the Buffer (and so its memory) alive as long as the handle. */
    if (napi_create_reference(env, argv[5], 1, &q->copy_ref) != napi_ok) {
      free(q);
      napi_throw_error(env, "ENAPI", "queueOpen: could not keep copyBuffer");
      return NULL;
    }
    q->copy = copy;
    q->bytes_per_tag = (size_t)bytes_per_tag;
    q->copy_base = (uint64_t)copy_base;
    q->copy_stride = (uint64_t)copy_stride;
    q->copy_in_ops = copy_in_ops;
  }
  q->efd = -1;
  q->r.fd = -1;
  pthread_mutex_init(&q->lock, NULL);
  atomic_init(&q->stop, 0);
  q->cap = (size_t)depth * 2;
  q->pending = malloc(q->cap * sizeof *q->pending);
  if (q->pending == NULL) {
    queue_shutdown(q, 0);
    if (q->copy_ref != NULL) napi_delete_reference(env, q->copy_ref);
    free(q);
    throw_errno(env, ENOMEM, fn);
    return NULL;
  }
  /* Every tag has at most one command in the ring, plus the eventfd read. */
  int err = ring_init(&q->r, (unsigned)depth + 1);
  const char *what = "io_uring_setup";
  if (err == 0 && desc_bytes > 0) {
    q->desc_len = (size_t)desc_bytes;
    q->desc = mmap(NULL, q->desc_len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t)((size_t)qid * UBLK_MAX_DESC_AREA));
    if (q->desc == MAP_FAILED) {
      q->desc = NULL;
      err = errno;
      what = "mmap io descriptors";
    }
  }
  if (err == 0) {
    q->efd = eventfd(0, EFD_CLOEXEC);
    if (q->efd < 0) {
      err = errno;
      what = "eventfd";
    }
  }
  if (err == 0 &&
      (napi_create_string_utf8(env, "tsblk:ublkQueue", NAPI_AUTO_LENGTH, &resource) != napi_ok ||
       napi_create_threadsafe_function(env, argv[4], NULL, resource, 0, 1, NULL, NULL, NULL, call_js, &q->tsfn) !=
           napi_ok)) {
    err = ENOMEM;
    what = "napi_create_threadsafe_function";
  }
  if (err == 0) {
    err = pthread_create(&q->thread, NULL, queue_thread, q);
    what = "pthread_create";
    if (err == 0) q->thread_started = 1;
  }
  if (err != 0) {
    queue_shutdown(q, 1);
    if (q->copy_ref != NULL) napi_delete_reference(env, q->copy_ref);
    free(q);
    throw_errno(env, err, what);
    return NULL;
  }
  if (napi_create_external(env, q, queue_finalize, NULL, &handle) != napi_ok) {
    queue_shutdown(q, 1);
    if (q->copy_ref != NULL) napi_delete_reference(env, q->copy_ref);
    free(q);
    napi_throw_error(env, "ENAPI", "queueOpen: could not create the handle");
    return NULL;
  }
  return handle;
}

static napi_value queue_submit_js(napi_env env, napi_callback_info info) {
  static const char fn[] = "queueSubmit";
  napi_value argv[2], result;
  void *data;
  size_t len;
  if (!get_args(env, info, 2, argv, fn)) return NULL;
  struct uqueue *q = get_queue(env, argv[0], fn);
  if (q == NULL || !get_bytes(env, argv[1], fn, "cmds", 0, &data, &len)) return NULL;
  if (len % QUEUE_CMD_BYTES != 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "queueSubmit: cmds must be a multiple of 24 bytes");
    return NULL;
  }
  size_t n = len / QUEUE_CMD_BYTES;
  const uint8_t *p = data;
  for (size_t i = 0; i < n; i++) {
    uint16_t tag;
    memcpy(&tag, p + i * QUEUE_CMD_BYTES + 4, 2);
    if (tag >= q->depth) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "queueSubmit: a tag is not below the queue depth");
      return NULL;
    }
  }
  pthread_mutex_lock(&q->lock);
  if (q->npending + n > q->cap) {
    size_t cap = q->cap;
    while (cap < q->npending + n) cap *= 2;
    struct qcmd *grown = realloc(q->pending, cap * sizeof *grown);
    if (grown == NULL) {
      pthread_mutex_unlock(&q->lock);
      throw_errno(env, ENOMEM, fn);
      return NULL;
    }
    q->pending = grown;
    q->cap = cap;
  }
  for (size_t i = 0; i < n; i++) {
    const uint8_t *e = p + i * QUEUE_CMD_BYTES;
    struct qcmd *c = &q->pending[q->npending++];
    memcpy(&c->cmd_op, e + 0, 4);
    memcpy(&c->tag, e + 4, 2);
    memcpy(&c->result, e + 8, 4);
    memcpy(&c->copy_len, e + 12, 4);
    memcpy(&c->addr, e + 16, 8);
  }
  pthread_mutex_unlock(&q->lock);
  uint64_t one = 1;
  while (write(q->efd, &one, sizeof one) < 0) {
    if (errno != EINTR) {
      throw_errno(env, errno, "write eventfd");
      return NULL;
    }
  }
  napi_get_undefined(env, &result);
  return result;
}

static napi_value queue_stop_js(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  struct uqueue *q = NULL;
  if (!get_args(env, info, 1, argv, "queueStop")) return NULL;
  if (napi_get_value_external(env, argv[0], (void **)&q) != napi_ok || q == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "queueStop: not a queue handle");
    return NULL;
  }
  queue_shutdown(q, 1); /* a second stop is a no-op */
  napi_get_undefined(env, &result);
  return result;
}

int tsblk_uring_init(napi_env env, napi_value exports) {
  return set_function(env, exports, "ublkControl", ublk_control_js) &&
         set_function(env, exports, "queueOpen", queue_open_js) &&
         set_function(env, exports, "queueSubmit", queue_submit_js) &&
         set_function(env, exports, "queueStop", queue_stop_js) &&
         set_int(env, exports, "QUEUE_CMD_BYTES", QUEUE_CMD_BYTES) &&
         set_int(env, exports, "QUEUE_CQE_BYTES", QUEUE_CQE_BYTES) &&
         set_int(env, exports, "UBLK_MAX_DESC_AREA", (int32_t)UBLK_MAX_DESC_AREA) &&
         /* queueOpen takes copyBuffer (an addon without this ignores it: test before use) */
         set_int(env, exports, "QUEUE_COPY", 1);
}

#else /* !__linux__: no io_uring; the TypeScript layer reports the functions as absent. */

int tsblk_uring_init(napi_env env, napi_value exports) {
  (void)env;
  (void)exports;
  return 1;
}

#endif
