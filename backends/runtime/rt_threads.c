/* Parallel launch for TVM's parallel loops on a pthread pool, and the per-run lock.
 *
 * The pool is created once, outside the hot path: by <id>_set_num_threads(n) or by the first
 * run. A launch wakes the workers (participant p runs tasks p, p + n, ...; the caller is
 * participant 0) and waits for them; nothing is allocated per launch. Each participant gets
 * its own slice of the kernel's workspace region. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "edgecc_runtime.h"

#define SPIN_ROUNDS 20000   /* busy-wait this long before sleeping (short kernels are common) */

typedef struct {
  FTVMParallelLambda fn;
  void *cdata;
  TVMParallelGroupEnv env;
  int active;                       /* participants, caller included */
} job_t;

static pthread_mutex_t run_mu = PTHREAD_MUTEX_INITIALIZER;   /* one run at a time */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static pthread_t workers[EDGECC_MAX_THREADS];
static unsigned long start_gen[EDGECC_MAX_THREADS];
static int n_workers;                /* created so far (never shrinks) */
static unsigned long generation;     /* bumped per launch, under pool_mu */
static job_t job;
static int pending;                  /* workers still in the current job (atomic) */
static int failed;                   /* a task returned non-zero (atomic) */
static edgecc_ws_stack slices[EDGECC_MAX_THREADS];
static __thread int in_task;         /* nested launches run serially */

static int explicit_threads;         /* set_num_threads, 0 = default */
static int default_threads;          /* --threads baked into the bundle, 0 = online CPUs */
static int env_threads = -1;         /* EDGECC_NUM_THREADS, read on first use; 0 = unset */

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
  return clamp_threads(sysconf(_SC_NPROCESSORS_ONLN));
}

static void run_tasks(int participant) {
  int t, ok = 1;
  edgecc_ws_stack *saved = edgecc_rt_ws_current();
  edgecc_rt_ws_use(&slices[participant]);
  in_task = 1;
  for (t = participant; t < job.env.num_task; t += job.active)
    if (job.fn(t, &job.env, job.cdata) != 0) ok = 0;
  in_task = 0;
  edgecc_rt_ws_use(saved);
  if (!ok) __atomic_store_n(&failed, 1, __ATOMIC_SEQ_CST);
}

static void *worker_main(void *arg) {
  int id = (int)(intptr_t)arg;
  unsigned long seen;
  pthread_mutex_lock(&pool_mu);
  seen = start_gen[id];
  pthread_mutex_unlock(&pool_mu);
  for (;;) {
    int active, spins;
    for (spins = 0; spins < SPIN_ROUNDS &&
         __atomic_load_n(&generation, __ATOMIC_ACQUIRE) == seen; ++spins) {
    }
    pthread_mutex_lock(&pool_mu);
    while (generation == seen) pthread_cond_wait(&start_cv, &pool_mu);
    seen = generation;
    active = job.active;
    pthread_mutex_unlock(&pool_mu);
    if (id >= active) continue;
    run_tasks(id);
    if (__atomic_sub_fetch(&pending, 1, __ATOMIC_ACQ_REL) == 0) {
      pthread_mutex_lock(&pool_mu);
      pthread_cond_signal(&done_cv);
      pthread_mutex_unlock(&pool_mu);
    }
  }
  return NULL;
}

/* A forked child has only the forking thread: forget the workers (they are not there). */
static void after_fork_in_child(void) {
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t fresh_cv = PTHREAD_COND_INITIALIZER;
  n_workers = 0;
  pending = 0;
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
  ensure_workers(edgecc_rt_num_threads());
}

void edgecc_rt_run_end(void) {
  edgecc_rt_ws_use(NULL);
  pthread_mutex_unlock(&run_mu);
}

static int launch(FTVMParallelLambda fn, void *cdata, int num_task) {
  int active = edgecc_rt_num_threads(), t, spins;
  edgecc_ws_stack *ws = edgecc_rt_ws_current();
  size_t per_task = edgecc_rt_ws_per_task();
  if (active > n_workers + 1) active = n_workers + 1;
  if (per_task > 0 && ws != NULL) {          /* no more participants than scratch slices */
    size_t fit = (size_t)(ws->end - ws->top) / per_task;
    if ((size_t)active > fit) active = fit > 0 ? (int)fit : 1;
  }
  if (num_task > 0 && num_task < active) active = num_task;
  if (num_task <= 0) num_task = active;      /* ours to choose: one task per participant */
  if (active <= 1 || in_task) {      /* serial: same task split, one thread */
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
  job.active = active;
  bar_count = 0;
  bar_sense = 0;
  __atomic_store_n(&failed, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n(&pending, active - 1, __ATOMIC_SEQ_CST);
  pthread_mutex_lock(&pool_mu);
  __atomic_store_n(&generation, generation + 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&start_cv);
  pthread_mutex_unlock(&pool_mu);

  run_tasks(0);

  for (spins = 0; spins < SPIN_ROUNDS && __atomic_load_n(&pending, __ATOMIC_ACQUIRE); ++spins) {
  }
  pthread_mutex_lock(&pool_mu);
  while (__atomic_load_n(&pending, __ATOMIC_ACQUIRE) != 0) pthread_cond_wait(&done_cv, &pool_mu);
  pthread_mutex_unlock(&pool_mu);
  return __atomic_load_n(&failed, __ATOMIC_SEQ_CST) ? -1 : 0;
}

/* All tasks of the launch wait here until every one arrived (tasks run concurrently, one
 * per participant, when TVM uses a barrier: it only does so with num_task = 0). */
static int barrier(int task_id, TVMParallelGroupEnv *penv) {
  int sense = __atomic_load_n(&bar_sense, __ATOMIC_ACQUIRE);
  (void)task_id;
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
