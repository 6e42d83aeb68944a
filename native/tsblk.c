/*
 * tsblk_native: the few Linux syscalls Node.js lacks, for the file device.
 *
 *   copyFileRange(fdIn, offIn, fdOut, offOut, len) -> Promise<number>   (bytes copied)
 *   fallocate(fd, mode, offset, len)               -> Promise<undefined>
 *   blockDeviceSize(fd)                            -> number  (ioctl BLKGETSIZE64)
 *   blockDeviceLogicalBlockSize(fd)                -> number  (ioctl BLKSSZGET)
 *   lseekData(fd, offset, whence)                  -> Promise<number>  (lseek SEEK_DATA /
 *                                                     SEEK_HOLE; -1 for ENXIO)
 *   FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, SEEK_DATA, SEEK_HOLE
 *
 * The io_uring parts for the ublk server live in uring.c (registered by tsblk_uring_init).
 *
 * The data-path calls run on libuv's thread pool (napi_create_async_work) so a large copy or
 * a hole punch never blocks the JavaScript thread. lseekData goes there too: SEEK_DATA /
 * SEEK_HOLE is cheap on a local filesystem with its extent map cached, but it may read the
 * extent map from disk (XFS, ext4 with a cold cache) or ask a server (NFS 4.2, FUSE), and an
 * export serving many connections must not stall on that. ENXIO ("no data at or after
 * offset", or offset past the end) is an answer, not a failure: it resolves with -1.
 * Failures are Errors shaped like Node's fs errors: `code` is the errno name ('EXDEV'),
 * `errno` the negated errno number, `syscall` the call's name; copyFileRange errors also
 * carry `bytesCopied`, the bytes done before the failure (always a prefix of the range).
 *
 * The caller keeps the file descriptors open until the promise settles: the addon does not
 * own them.
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
#include <unistd.h>

#ifdef __linux__
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#else
#define FALLOC_FL_KEEP_SIZE 0x01
#define FALLOC_FL_PUNCH_HOLE 0x02
#define FALLOC_FL_ZERO_RANGE 0x10
#endif
#ifndef SEEK_DATA
#define SEEK_DATA 3
#define SEEK_HOLE 4
#endif

/* uring.c: adds the io_uring functions (ublk) to exports; returns 0 on failure. It uses the
 * helpers below that are not static (no header: package.json ships only the .c files). */
int tsblk_uring_init(napi_env env, napi_value exports);

/* The largest exact integer a JavaScript number holds (2^53 - 1). */
#define MAX_SAFE_INTEGER 9007199254740991.0
/* One copy_file_range call moves at most this much; the kernel caps a call near 2 GiB anyway. */
#define CFR_STEP ((size_t)1 << 30)

#define CHECK(env, call)                                                                       \
  do {                                                                                         \
    if ((call) != napi_ok) {                                                                   \
      napi_throw_error((env), "ENAPI", "tsblk_native: N-API call failed: " #call);             \
      return NULL;                                                                             \
    }                                                                                          \
  } while (0)

const char *errno_name(int err) {
  switch (err) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(EBADF) E(EAGAIN) E(ENOMEM)
    E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(EXDEV) E(ENODEV) E(ENOTDIR) E(EISDIR)
    E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(ETXTBSY) E(EFBIG) E(ENOSPC) E(ESPIPE)
    E(EROFS) E(ERANGE) E(ENOSYS) E(EOPNOTSUPP) E(EOVERFLOW) E(ECANCELED) E(EDQUOT)
#undef E
    default: return "EUNKNOWN";
  }
}

/* An Error like Node's fs errors: message "CODE: strerror, syscall", plus code/errno/syscall. */
napi_value make_errno_error(napi_env env, int err, const char *syscall) {
  char msg[256];
  const char *name = errno_name(err);
  snprintf(msg, sizeof msg, "%s: %s, %s", name, strerror(err), syscall);
  napi_value code, message, error, errno_value, syscall_value;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok) return NULL;
  if (napi_create_error(env, code, message, &error) != napi_ok) return NULL;
  if (napi_create_int32(env, -err, &errno_value) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value) != napi_ok) return NULL;
  napi_set_named_property(env, error, "errno", errno_value);
  napi_set_named_property(env, error, "syscall", syscall_value);
  return error;
}

void throw_errno(napi_env env, int err, const char *syscall) {
  napi_value error = make_errno_error(env, err, syscall);
  if (error != NULL) napi_throw(env, error);
}

/* Reads argument i as a non-negative safe integer; throws a RangeError/TypeError otherwise. */
int get_count(napi_env env, napi_value value, const char *fn, const char *what, int64_t *out) {
  double d;
  char msg[160];
  if (napi_get_value_double(env, value, &d) != napi_ok) {
    snprintf(msg, sizeof msg, "%s: %s must be a number", fn, what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return 0;
  }
  if (!(d >= 0 && d <= MAX_SAFE_INTEGER) || d != (double)(int64_t)d) {
    snprintf(msg, sizeof msg, "%s: %s must be a non-negative safe integer, got %g", fn, what, d);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return 0;
  }
  *out = (int64_t)d;
  return 1;
}

int get_fd(napi_env env, napi_value value, const char *fn, int *out) {
  int64_t v;
  if (!get_count(env, value, fn, "fd", &v)) return 0;
  if (v > INT32_MAX) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "fd is out of range");
    return 0;
  }
  *out = (int)v;
  return 1;
}

int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *fn) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (argc < want) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s: expected %zu arguments, got %zu", fn, want, argc);
    napi_throw_type_error(env, "ERR_MISSING_ARGS", msg);
    return 0;
  }
  return 1;
}

/* ---- async work: one struct for every data-path call ---- */

enum op { OP_COPY_FILE_RANGE, OP_FALLOCATE, OP_LSEEK };

struct work {
  enum op op;
  int fd_in, fd_out, mode; /* mode: fallocate flags, or lseek whence */
  int64_t off_in, off_out, len;
  int64_t done; /* bytes copied (copy_file_range), or the resulting offset (lseek) */
  int err;      /* errno, 0 on success */
  napi_deferred deferred;
  napi_async_work async;
};

static void execute(napi_env env, void *data) {
  (void)env;
  struct work *w = data;
#ifdef __linux__
  if (w->op == OP_LSEEK) {
    off_t r = lseek(w->fd_in, (off_t)w->off_in, w->mode);
    if (r < 0)
      w->err = errno;
    else
      w->done = (int64_t)r;
    return;
  }
  if (w->op == OP_FALLOCATE) {
    while (fallocate(w->fd_out, w->mode, (off_t)w->off_out, (off_t)w->len) != 0) {
      if (errno != EINTR) {
        w->err = errno;
        return;
      }
    }
    return;
  }
  loff_t in = w->off_in, out = w->off_out;
  while (w->done < w->len) {
    size_t step = (size_t)(w->len - w->done);
    if (step > CFR_STEP) step = CFR_STEP;
    ssize_t n = copy_file_range(w->fd_in, &in, w->fd_out, &out, step, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      w->err = errno;
      return;
    }
    if (n == 0) return; /* end of the source file: the caller sees a short count */
    w->done += n;
  }
#else
  w->err = ENOSYS;
#endif
}

static void complete(napi_env env, napi_status status, void *data) {
  struct work *w = data;
  napi_value result = NULL;
  const char *syscall = w->op == OP_FALLOCATE ? "fallocate"
                        : w->op == OP_LSEEK   ? "lseek"
                                              : "copy_file_range";
  if (status == napi_cancelled) w->err = ECANCELED;
  if (w->op == OP_LSEEK && w->err == ENXIO) {
    /* No data at or after the offset (SEEK_DATA), or the offset is past the end: an answer. */
    w->err = 0;
    w->done = -1;
  }
  if (w->err != 0) {
    result = make_errno_error(env, w->err, syscall);
    if (result != NULL && w->op == OP_COPY_FILE_RANGE) {
      napi_value done;
      if (napi_create_double(env, (double)w->done, &done) == napi_ok)
        napi_set_named_property(env, result, "bytesCopied", done);
    }
    if (result != NULL) napi_reject_deferred(env, w->deferred, result);
  } else {
    if (w->op == OP_FALLOCATE)
      napi_get_undefined(env, &result);
    else
      napi_create_double(env, (double)w->done, &result);
    if (result != NULL) napi_resolve_deferred(env, w->deferred, result);
  }
  napi_delete_async_work(env, w->async);
  free(w);
}

static napi_value queue(napi_env env, struct work *w, const char *name) {
  napi_value promise, resource_name;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_create_async_work(env, NULL, resource_name, execute, complete, w, &w->async) != napi_ok) {
    free(w);
    napi_throw_error(env, "ENAPI", "tsblk_native: could not create async work");
    return NULL;
  }
  if (napi_queue_async_work(env, w->async) != napi_ok) {
    napi_delete_async_work(env, w->async);
    free(w);
    napi_throw_error(env, "ENAPI", "tsblk_native: could not queue async work");
    return NULL;
  }
  return promise;
}

static napi_value copy_file_range_js(napi_env env, napi_callback_info info) {
  static const char fn[] = "copyFileRange";
  napi_value argv[5];
  if (!get_args(env, info, 5, argv, fn)) return NULL;
  struct work *w = calloc(1, sizeof *w);
  if (w == NULL) {
    throw_errno(env, ENOMEM, "copy_file_range");
    return NULL;
  }
  w->op = OP_COPY_FILE_RANGE;
  if (!get_fd(env, argv[0], fn, &w->fd_in) || !get_count(env, argv[1], fn, "offIn", &w->off_in) ||
      !get_fd(env, argv[2], fn, &w->fd_out) || !get_count(env, argv[3], fn, "offOut", &w->off_out) ||
      !get_count(env, argv[4], fn, "len", &w->len)) {
    free(w);
    return NULL;
  }
  return queue(env, w, "tsblk:copyFileRange");
}

static napi_value fallocate_js(napi_env env, napi_callback_info info) {
  static const char fn[] = "fallocate";
  napi_value argv[4];
  int64_t mode;
  if (!get_args(env, info, 4, argv, fn)) return NULL;
  struct work *w = calloc(1, sizeof *w);
  if (w == NULL) {
    throw_errno(env, ENOMEM, "fallocate");
    return NULL;
  }
  w->op = OP_FALLOCATE;
  if (!get_fd(env, argv[0], fn, &w->fd_out) || !get_count(env, argv[1], fn, "mode", &mode) ||
      !get_count(env, argv[2], fn, "offset", &w->off_out) || !get_count(env, argv[3], fn, "len", &w->len)) {
    free(w);
    return NULL;
  }
  if (mode > INT32_MAX) {
    free(w);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "fallocate: mode is out of range");
    return NULL;
  }
  w->mode = (int)mode;
  return queue(env, w, "tsblk:fallocate");
}

static napi_value lseek_data_js(napi_env env, napi_callback_info info) {
  static const char fn[] = "lseekData";
  napi_value argv[3];
  int64_t whence;
  if (!get_args(env, info, 3, argv, fn)) return NULL;
  struct work *w = calloc(1, sizeof *w);
  if (w == NULL) {
    throw_errno(env, ENOMEM, "lseek");
    return NULL;
  }
  w->op = OP_LSEEK;
  if (!get_fd(env, argv[0], fn, &w->fd_in) || !get_count(env, argv[1], fn, "offset", &w->off_in) ||
      !get_count(env, argv[2], fn, "whence", &whence)) {
    free(w);
    return NULL;
  }
  if (whence != SEEK_DATA && whence != SEEK_HOLE) {
    free(w);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "lseekData: whence must be SEEK_DATA or SEEK_HOLE");
    return NULL;
  }
  w->mode = (int)whence;
  return queue(env, w, "tsblk:lseekData");
}

/* ---- block-device ioctls: quick, so synchronous ---- */

static napi_value block_device_size_js(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int fd;
  if (!get_args(env, info, 1, argv, "blockDeviceSize") || !get_fd(env, argv[0], "blockDeviceSize", &fd)) return NULL;
#ifdef __linux__
  uint64_t bytes = 0;
  if (ioctl(fd, BLKGETSIZE64, &bytes) != 0) {
    throw_errno(env, errno, "ioctl(BLKGETSIZE64)");
    return NULL;
  }
  CHECK(env, napi_create_double(env, (double)bytes, &result));
  return result;
#else
  throw_errno(env, ENOSYS, "ioctl(BLKGETSIZE64)");
  return NULL;
#endif
}

static napi_value block_device_logical_block_size_js(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int fd;
  if (!get_args(env, info, 1, argv, "blockDeviceLogicalBlockSize") ||
      !get_fd(env, argv[0], "blockDeviceLogicalBlockSize", &fd))
    return NULL;
#ifdef __linux__
  int bytes = 0;
  if (ioctl(fd, BLKSSZGET, &bytes) != 0) {
    throw_errno(env, errno, "ioctl(BLKSSZGET)");
    return NULL;
  }
  CHECK(env, napi_create_int32(env, bytes, &result));
  return result;
#else
  throw_errno(env, ENOSYS, "ioctl(BLKSSZGET)");
  return NULL;
#endif
}

int set_function(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) == napi_ok &&
         napi_set_named_property(env, exports, name, fn) == napi_ok;
}

int set_int(napi_env env, napi_value exports, const char *name, int32_t v) {
  napi_value value;
  return napi_create_int32(env, v, &value) == napi_ok && napi_set_named_property(env, exports, name, value) == napi_ok;
}

NAPI_MODULE_INIT() {
  if (!set_function(env, exports, "copyFileRange", copy_file_range_js) ||
      !set_function(env, exports, "fallocate", fallocate_js) ||
      !set_function(env, exports, "blockDeviceSize", block_device_size_js) ||
      !set_function(env, exports, "blockDeviceLogicalBlockSize", block_device_logical_block_size_js) ||
      !set_function(env, exports, "lseekData", lseek_data_js) ||
      !set_int(env, exports, "FALLOC_FL_KEEP_SIZE", FALLOC_FL_KEEP_SIZE) ||
      !set_int(env, exports, "FALLOC_FL_PUNCH_HOLE", FALLOC_FL_PUNCH_HOLE) ||
      !set_int(env, exports, "FALLOC_FL_ZERO_RANGE", FALLOC_FL_ZERO_RANGE) ||
      !set_int(env, exports, "SEEK_DATA", SEEK_DATA) || !set_int(env, exports, "SEEK_HOLE", SEEK_HOLE) ||
      !tsblk_uring_init(env, exports)) {
    napi_throw_error(env, "ENAPI", "tsblk_native: could not set up exports");
    return NULL;
  }
  return exports;
}
