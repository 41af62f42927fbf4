/* edgecc bundle runtime: the few symbols TVM-compiled kernels call back, plus what the
 * generated host code (model.c) needs. Plain C99 + pthreads; no heap use while running.
 *
 * Internal to a bundle: lib<id>.a / lib<id>.so export only the <id>_* API of model.h.
 * Layouts below match dlpack.h (v1) and tvm/ffi/c_api.h so the bundle needs no TVM headers.
 */
#ifndef EDGECC_RUNTIME_H
#define EDGECC_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#define EDGECC_ALIGN 64          /* arena, tensor and workspace alignment (TVM assumes it) */
#define EDGECC_MAX_THREADS 64
#define EDGECC_WS_MAX_LIVE 32    /* workspace blocks live at once per thread */

/* ---- DLPack / TVM-FFI data layouts -------------------------------------------------------- */
typedef struct { int32_t device_type; int32_t device_id; } DLDevice;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
typedef struct {
  void *data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} DLTensor;

typedef struct {
  int32_t type_index;            /* EDGECC_FFI_DLTENSOR_PTR for every kernel argument */
  uint32_t zero_padding;
  union { int64_t v_int64; double v_float64; void *v_ptr; } v;
} TVMFFIAny;

#define EDGECC_FFI_NONE 0
#define EDGECC_FFI_DLTENSOR_PTR 7
#define EDGECC_DL_CPU 1

typedef int32_t (*edgecc_kernel_fn)(void *self, const TVMFFIAny *args, int32_t num_args,
                                    TVMFFIAny *result);

/* ---- TVM backend API (tvm/runtime/c_backend_api.h) ----------------------------------------- */
typedef struct { void *sync_handle; int32_t num_task; } TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv *penv, void *cdata);

void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **message_parts,
                                       int32_t num_parts);
extern void *(*__TVMBackendAllocWorkspace)(int device_type, int device_id, uint64_t nbytes,
                                           int dtype_code_hint, int dtype_bits_hint);
extern int (*__TVMBackendFreeWorkspace)(int device_type, int device_id, void *ptr);
extern int (*__TVMBackendParallelLaunch)(FTVMParallelLambda flambda, void *cdata, int num_task);
extern int (*__TVMBackendParallelBarrier)(int task_id, TVMParallelGroupEnv *penv);

/* ---- errors (rt_error.c) ------------------------------------------------------------------- */
void edgecc_rt_clear_error(void);
/* Records a message unless one is already recorded (the first error is the cause). */
void edgecc_rt_set_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Prefixes the recorded message with where it happened ("kernel 3 'conv1' (Conv)"). */
void edgecc_rt_error_context(const char *where);
const char *edgecc_rt_last_error(void);

/* ---- workspace (rt_workspace.c): a stack allocator over a region of the caller's arena ------ */
typedef struct {
  char *base, *top, *end;
  int live;
  char *starts[EDGECC_WS_MAX_LIVE];
  unsigned char freed[EDGECC_WS_MAX_LIVE];
} edgecc_ws_stack;

/* The region the next kernel may use for scratch (nbytes may be 0); per_task = the bytes each
 * task of its parallel loops allocates (a launch uses no more threads than slices that fit). */
void edgecc_rt_workspace_set(void *base, size_t nbytes, size_t per_task);
size_t edgecc_rt_ws_per_task(void);
/* Used by the thread pool: the calling thread's stack (NULL outside a run) and switching it. */
edgecc_ws_stack *edgecc_rt_ws_current(void);
void edgecc_rt_ws_use(edgecc_ws_stack *stack);
/* Splits the free part of `from` into `parts` equal stacks (one per parallel participant). */
void edgecc_rt_ws_split(const edgecc_ws_stack *from, int parts, edgecc_ws_stack *out);

/* ---- threads (rt_threads.c) ---------------------------------------------------------------- */
/* n >= 1 fixes the thread count (and starts the workers now); n <= 0 returns to the default:
 * EDGECC_NUM_THREADS if set, else the bundle's --threads, else the online CPUs. */
void edgecc_rt_set_num_threads(int n);
int edgecc_rt_num_threads(void);
/* The bundle's --threads (0 = online CPUs); the host code sets it before any other call. */
void edgecc_rt_set_default_threads(int n);

/* ---- a run (rt_threads.c): one run of the model at a time ----------------------------------- */
/* Takes the model's run lock, clears the error, resolves the thread count and starts the worker
 * threads on the first run. */
void edgecc_rt_run_begin(void);
void edgecc_rt_run_end(void);

#endif /* EDGECC_RUNTIME_H */
