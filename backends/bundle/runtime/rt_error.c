/* Error reporting: TVM kernels call TVMFFIErrorSetRaisedFromCStrParts before returning
 * non-zero; the host code reads the message back through <id>_last_error(). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "edgecc_runtime.h"

#define ERR_CAP 1024

static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;  /* workers may fail concurrently */
static char err_msg[ERR_CAP];
static int err_set;

void edgecc_rt_clear_error(void) {
  pthread_mutex_lock(&err_mu);
  err_msg[0] = '\0';
  err_set = 0;
  pthread_mutex_unlock(&err_mu);
}

void edgecc_rt_set_error(const char *fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&err_mu);
  if (!err_set) {
    va_start(ap, fmt);
    vsnprintf(err_msg, ERR_CAP, fmt, ap);
    va_end(ap);
    err_set = 1;
  }
  pthread_mutex_unlock(&err_mu);
}

/* Appends src to dst (holding `used` bytes) without overflowing ERR_CAP; returns the new length. */
static size_t append(char *dst, size_t used, const char *src) {
  size_t n = src ? strlen(src) : 0;
  if (n > ERR_CAP - 1 - used) n = ERR_CAP - 1 - used;
  memcpy(dst + used, src, n);
  dst[used + n] = '\0';
  return used + n;
}

void edgecc_rt_error_context(const char *where) {
  char tmp[ERR_CAP];
  size_t used;
  pthread_mutex_lock(&err_mu);
  used = append(tmp, 0, where);
  used = append(tmp, used, ": ");
  append(tmp, used, err_set ? err_msg : "failed without a message");
  memcpy(err_msg, tmp, strlen(tmp) + 1);
  err_set = 1;
  pthread_mutex_unlock(&err_mu);
}

const char *edgecc_rt_last_error(void) { return err_msg; }

void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **message_parts,
                                       int32_t num_parts) {
  char msg[ERR_CAP];
  size_t used = 0;
  int32_t i;
  msg[0] = '\0';
  for (i = 0; i < num_parts; ++i) used = append(msg, used, message_parts[i]);
  edgecc_rt_set_error("%s: %s", kind ? kind : "Error", msg);
}
