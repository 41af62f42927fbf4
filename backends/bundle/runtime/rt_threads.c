/* Parallel launch for TVM's parallel loops on a pthread pool, and the per-run lock.
 *
 * The pool is created once, outside the hot path: by <id>_set_num_threads(n) or by the first
 * run. Workers sleep between runs; a run wakes them and they spin between its launches. A
 * launch publishes the job (and wakes workers still asleep); the caller (participant 0) and the
 * workers claim task indices from one atomic ticket, so when a worker is slow to wake (an
 * oversubscribed CPU) the others take its share instead of waiting for it. The caller returns
 * when every task has finished. Nothing is allocated per launch. Each participant owns a
 * slice of the kernel's workspace region for the tasks it runs.
 *
 * The ticket packs generation (32 bits) | participants (8) | tasks (12) | next task (12): a
 * claim is one compare-and-swap that also proves the job is still the current one. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "edgecc_runtime.h"

#define SPIN_ROUNDS 20000   /* busy-wait this long before sleeping (short kernels are common) */

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif
#define MAX_TASKS 4095      /* tasks per launch the ticket can count */
/* A launch that leaves the task count to us is split into this many tasks per participant,
 * claimed as they finish: a participant slowed by other load hands work to the others
 * (measured at 2 threads, interleaved: squeezenet 1.24 -> 1.15, resnet50 1.13 -> 1.09 of
 * onnxruntime's time; 4 per thread was worse on squeezenet's small kernels). */
#define TASKS_PER_THREAD 2

#define T_GEN(t) ((uint32_t)((t) >> 32))
#define T_ACTIVE(t) ((int)(((t) >> 24) & 0xFF))
#define T_NTASK(t) ((int)(((t) >> 12) & 0xFFF))
#define T_NEXT(t) ((int)((t) & 0xFFF))

typedef struct {
  FTVMParallelLambda fn;
  void *cdata;
  TVMParallelGroupEnv env;
} job_t;

static pthread_mutex_t run_mu = PTHREAD_MUTEX_INITIALIZER;   /* one run at a time */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static pthread_t workers[EDGECC_MAX_THREADS];
static uint32_t start_gen[EDGECC_MAX_THREADS];
static int n_workers;                /* created so far (never shrinks) */
static uint32_t generation;          /* of the latest launch; workers wait for it to change */
static job_t job;                    /* stable while its tasks are unfinished */
static uint64_t ticket;              /* atomic, see above */
static int done_tasks;               /* tasks of the current launch finished (atomic) */
static int failed;                   /* a task returned non-zero (atomic) */
static int run_active;               /* a run is in progress: workers spin, not sleep (atomic) */
static edgecc_ws_stack slices[EDGECC_MAX_THREADS];
static __thread int in_task;         /* nested launches run serially */

static int explicit_threads;         /* set_num_threads, 0 = default */
static int default_threads;          /* --threads baked into the bundle, 0 = online CPUs */
static int env_threads = -1;         /* EDGECC_NUM_THREADS, read on first use; 0 = unset */
static int online_cpus;              /* sysconf, read on first use */

/* barrier state (sense-reversing), reset per launch */
static int bar_count;
static int bar_sense;

static int clamp_threads(long n) {
  if (n < 1) return 1;
  return n > EDGECC_MAX_THREADS ? EDGECC_MAX_THREADS : (int)n;
}

int edgecc_rt_num_threads(void) {
  if (explicit_threads > 0) return explicit_threads;
  if (env_threads < 0) {
    const char *s = getenv("EDGECC_NUM_THREADS");
    char *end = NULL;
    long v = s ? strtol(s, &end, 10) : 0;
    env_threads = (s && end != s && *end == '\0' && v > 0) ? clamp_threads(v) : 0;
  }
  if (env_threads > 0) return env_threads;
  if (default_threads > 0) return clamp_threads(default_threads);
  if (online_cpus == 0) online_cpus = clamp_threads(sysconf(_SC_NPROCESSORS_ONLN));
  return online_cpus;   /* cached: sysconf reads /sys, not for every launch */
}

/* Claims the next task of launch `gen` for `participant`: its index, or -1 when none is left
 * (or the launch is over, or the participant is not part of it). */
static int claim(uint32_t gen, int participant, int *ntask) {
  uint64_t t = __atomic_load_n(&ticket, __ATOMIC_ACQUIRE);
  for (;;) {
    if (T_GEN(t) != gen || participant >= T_ACTIVE(t) || T_NEXT(t) >= T_NTASK(t)) return -1;
    if (__atomic_compare_exchange_n(&ticket, &t, t + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      *ntask = T_NTASK(t);
      return T_NEXT(t);
    }
  }
}

/* Runs tasks of launch `gen` until none is left to claim. */
static void work(uint32_t gen, int participant) {
  int t, ntask = 0;
  edgecc_ws_stack *saved = edgecc_rt_ws_current();
  edgecc_rt_ws_use(&slices[participant]);
  in_task = 1;
  while ((t = claim(gen, participant, &ntask)) >= 0) {
    /* the job cannot change before this task is counted done */
    if (job.fn(t, &job.env, job.cdata) != 0) __atomic_store_n(&failed, 1, __ATOMIC_SEQ_CST);
    if (__atomic_add_fetch(&done_tasks, 1, __ATOMIC_ACQ_REL) == ntask) {
      pthread_mutex_lock(&pool_mu);
      pthread_cond_signal(&done_cv);
      pthread_mutex_unlock(&pool_mu);
    }
  }
  in_task = 0;
  edgecc_rt_ws_use(saved);
}

static void *worker_main(void *arg) {
  int id = (int)(intptr_t)arg;
  uint32_t seen;
  pthread_mutex_lock(&pool_mu);
  seen = start_gen[id];
  pthread_mutex_unlock(&pool_mu);
  for (;;) {
    int spins, idle;
    /* during a run, wait for the next launch spinning: waking from a condition variable
     * costs tens of microseconds per kernel (measured 1.4x on squeezenet at 2 threads) */
    for (spins = 0; __atomic_load_n(&generation, __ATOMIC_ACQUIRE) == seen &&
         (spins < SPIN_ROUNDS || __atomic_load_n(&run_active, __ATOMIC_ACQUIRE)); ++spins)
      CPU_RELAX();
    pthread_mutex_lock(&pool_mu);
    while (__atomic_load_n(&generation, __ATOMIC_ACQUIRE) == seen &&
           !__atomic_load_n(&run_active, __ATOMIC_ACQUIRE))
      pthread_cond_wait(&start_cv, &pool_mu);
    idle = __atomic_load_n(&generation, __ATOMIC_ACQUIRE) == seen;  /* woken for a run */
    seen = generation;
    pthread_mutex_unlock(&pool_mu);
    if (!idle) work(seen, id);
  }
  return NULL;
}

/* A forked child has only the forking thread: forget the workers (they are not there). */
static void after_fork_in_child(void) {
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t fresh_cv = PTHREAD_COND_INITIALIZER;
  n_workers = 0;
  run_active = 0;
  pool_mu = fresh;
  run_mu = fresh;
  start_cv = fresh_cv;
  done_cv = fresh_cv;
}

/* Make sure participants 1..n-1 exist; returns how many threads can take part. */
static int ensure_workers(int n) {
  static int atfork_registered;
  pthread_mutex_lock(&pool_mu);
  if (!atfork_registered && n > 1) {
    pthread_atfork(NULL, NULL, after_fork_in_child);
    atfork_registered = 1;
  }
  while (n_workers + 1 < n) {
    int id = n_workers + 1;
    start_gen[id] = generation;
    if (pthread_create(&workers[id], NULL, worker_main, (void *)(intptr_t)id) != 0) break;
    n_workers++;
  }
  pthread_mutex_unlock(&pool_mu);
  return n_workers + 1 < n ? n_workers + 1 : n;
}

void edgecc_rt_set_num_threads(int n) {
  explicit_threads = n > 0 ? clamp_threads(n) : 0;
  ensure_workers(edgecc_rt_num_threads());
}

void edgecc_rt_set_default_threads(int n) { default_threads = n; }

void edgecc_rt_run_begin(void) {
  pthread_mutex_lock(&run_mu);
  edgecc_rt_clear_error();
  if (ensure_workers(edgecc_rt_num_threads()) > 1) {
    pthread_mutex_lock(&pool_mu);     /* wake sleeping workers while the first kernel starts */
    __atomic_store_n(&run_active, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&start_cv);
    pthread_mutex_unlock(&pool_mu);
  }
}

void edgecc_rt_run_end(void) {
  __atomic_store_n(&run_active, 0, __ATOMIC_RELEASE);
  edgecc_rt_ws_use(NULL);
  pthread_mutex_unlock(&run_mu);
}

static int launch(FTVMParallelLambda fn, void *cdata, int num_task) {
  int active = edgecc_rt_num_threads(), t, spins;
  uint32_t gen;
  edgecc_ws_stack *ws = edgecc_rt_ws_current();
  size_t per_task = edgecc_rt_ws_per_task();
  if (active > n_workers + 1) active = n_workers + 1;
  if (per_task > 0 && ws != NULL) {          /* no more participants than scratch slices */
    size_t fit = (size_t)(ws->end - ws->top) / per_task;
    if ((size_t)active > fit) active = fit > 0 ? (int)fit : 1;
  }
  if (num_task > 0 && num_task < active) active = num_task;
  if (num_task <= 0) num_task = active > 1 ? active * TASKS_PER_THREAD : active;
  if (active <= 1 || in_task || num_task > MAX_TASKS) {   /* serial: same split, one thread */
    TVMParallelGroupEnv env;
    env.sync_handle = NULL;
    env.num_task = num_task;
    for (t = 0; t < num_task; ++t)
      if (fn(t, &env, cdata) != 0) return -1;
    return 0;
  }
  edgecc_rt_ws_split(ws, active, slices);
  job.fn = fn;
  job.cdata = cdata;
  job.env.sync_handle = NULL;
  job.env.num_task = num_task;
  bar_count = 0;
  bar_sense = 0;
  __atomic_store_n(&failed, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n(&done_tasks, 0, __ATOMIC_SEQ_CST);
  gen = generation + 1;
  __atomic_store_n(&ticket, ((uint64_t)gen << 32) | ((uint64_t)active << 24) |
                   ((uint64_t)num_task << 12), __ATOMIC_RELEASE);
  pthread_mutex_lock(&pool_mu);
  __atomic_store_n(&generation, gen, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&start_cv);
  pthread_mutex_unlock(&pool_mu);

  work(gen, 0);

  for (spins = 0; spins < SPIN_ROUNDS &&
       __atomic_load_n(&done_tasks, __ATOMIC_ACQUIRE) < num_task; ++spins)
    CPU_RELAX();
  pthread_mutex_lock(&pool_mu);
  while (__atomic_load_n(&done_tasks, __ATOMIC_ACQUIRE) < num_task)
    pthread_cond_wait(&done_cv, &pool_mu);
  pthread_mutex_unlock(&pool_mu);
  return __atomic_load_n(&failed, __ATOMIC_SEQ_CST) ? -1 : 0;
}

/* All tasks of the launch wait here until every one arrived. It needs every task on its own
 * participant, which a launch split TASKS_PER_THREAD ways does not give: such a launch fails
 * with an error instead of waiting forever (edgecc's schedules never emit barriers). */
static int barrier(int task_id, TVMParallelGroupEnv *penv) {
  int sense = __atomic_load_n(&bar_sense, __ATOMIC_ACQUIRE);
  (void)task_id;
  if (penv->num_task > T_ACTIVE(__atomic_load_n(&ticket, __ATOMIC_ACQUIRE))) {
    edgecc_rt_set_error("edgecc runtime: a kernel used TVM's parallel barrier in a launch "
                        "split into more tasks than threads");
    return -1;
  }
  if (__atomic_add_fetch(&bar_count, 1, __ATOMIC_ACQ_REL) == penv->num_task) {
    __atomic_store_n(&bar_count, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&bar_sense, !sense, __ATOMIC_RELEASE);
  } else {
    while (__atomic_load_n(&bar_sense, __ATOMIC_ACQUIRE) == sense) {
    }
  }
  return 0;
}

int (*__TVMBackendParallelLaunch)(FTVMParallelLambda, void *, int) = launch;
int (*__TVMBackendParallelBarrier)(int, TVMParallelGroupEnv *) = barrier;
