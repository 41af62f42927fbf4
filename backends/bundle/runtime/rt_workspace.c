/* Kernel scratch memory served from the caller's arena: the host code hands each kernel the
 * region the memory plan reserved for it, and TVM's AllocWorkspace/FreeWorkspace become pushes
 * and pops on a per-thread stack over that region. No malloc. */
#include "edgecc_runtime.h"

static __thread edgecc_ws_stack *tls_ws;   /* this thread's stack; NULL outside a run */
static edgecc_ws_stack main_ws;            /* the calling thread's (run lock held) */
static size_t main_per_task;

static char *align_up(char *p) {
  return (char *)(((uintptr_t)p + (EDGECC_ALIGN - 1)) & ~(uintptr_t)(EDGECC_ALIGN - 1));
}

static void stack_init(edgecc_ws_stack *s, char *base, char *end) {
  s->base = s->top = base;
  s->end = end;
  s->live = 0;
}

void edgecc_rt_workspace_set(void *base, size_t nbytes, size_t per_task) {
  stack_init(&main_ws, (char *)base, (char *)base + nbytes);
  main_per_task = per_task;
  tls_ws = &main_ws;
}

size_t edgecc_rt_ws_per_task(void) { return main_per_task; }

edgecc_ws_stack *edgecc_rt_ws_current(void) { return tls_ws; }

void edgecc_rt_ws_use(edgecc_ws_stack *stack) { tls_ws = stack; }

void edgecc_rt_ws_split(const edgecc_ws_stack *from, int parts, edgecc_ws_stack *out) {
  int p;
  size_t span = from && from->top ? (size_t)(from->end - from->top) : 0;
  size_t slice = (span / (size_t)parts) & ~(size_t)(EDGECC_ALIGN - 1);
  for (p = 0; p < parts; ++p) {
    if (slice == 0) {
      stack_init(&out[p], NULL, NULL);
    } else {
      char *start = from->top + (size_t)p * slice;
      stack_init(&out[p], start, start + slice);
    }
  }
}

static void *ws_alloc(int device_type, int device_id, uint64_t nbytes, int code, int bits) {
  edgecc_ws_stack *s = tls_ws;
  char *p;
  (void)device_type; (void)device_id; (void)code; (void)bits;
  if (s == NULL) {
    edgecc_rt_set_error("workspace of %llu bytes requested outside a run",
                        (unsigned long long)nbytes);
    return NULL;
  }
  p = align_up(s->top);
  /* blocks take whole 64-byte units, as the plan counts them: top stays aligned, so the
   * slices a parallel launch carves from it are aligned too */
  nbytes = (nbytes + (EDGECC_ALIGN - 1)) & ~(uint64_t)(EDGECC_ALIGN - 1);
  if (s->live == EDGECC_WS_MAX_LIVE || nbytes > (uint64_t)(s->end - p)) {
    edgecc_rt_set_error("kernel needs more workspace than planned: %llu bytes requested, "
                        "%llu of this thread's %llu bytes free (%d blocks live)",
                        (unsigned long long)nbytes,
                        (unsigned long long)(s->end > p ? s->end - p : 0),
                        (unsigned long long)(s->end - s->base), s->live);
    return NULL;
  }
  s->starts[s->live] = s->top;   /* pop restores top exactly */
  s->freed[s->live] = 0;
  s->live++;
  s->top = p + nbytes;
  return p;
}

static int ws_free(int device_type, int device_id, void *ptr) {
  edgecc_ws_stack *s = tls_ws;
  int i;
  (void)device_type; (void)device_id;
  if (s == NULL) return -1;
  for (i = s->live - 1; i >= 0; --i)
    if (align_up(s->starts[i]) == (char *)ptr) break;
  if (i < 0) {
    edgecc_rt_set_error("workspace free of a pointer that is not live");
    return -1;
  }
  s->freed[i] = 1;
  while (s->live > 0 && s->freed[s->live - 1]) s->top = s->starts[--s->live];
  return 0;
}

void *(*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int) = ws_alloc;
int (*__TVMBackendFreeWorkspace)(int, int, void *) = ws_free;
