/* The team that runs the two-core paths: the calling thread and one worker thread.
 *
 *     bp_team_run(n_parts, fn, ctx, threads)
 *
 * calls fn(ctx, p) once for every part p = 0 .. n_parts - 1 and returns when all have
 * returned. The parts are claimed, not assigned: the caller starts on part 0 at once,
 * and the worker, woken, claims whatever part is still unclaimed. A worker that is late
 * (descheduled because the machine is busy, asleep, never started) therefore costs
 * nothing but its parts, which the caller runs itself; the caller waits only for a part
 * the worker has already begun. Which thread runs a part never changes what it computes,
 * so results do not depend on the number of threads.
 *
 * Waiting never spins for long. Between runs the worker spins for BP_TEAM_SPIN_NS, then
 * sleeps on a condition variable; the caller, waiting for the worker's part, spins as
 * long, then sleeps. So on a busy machine a waiting thread gives its core back within
 * microseconds, and after a fit the worker costs no CPU at all.
 *
 * A worker descheduled in the middle of its part (another process shares its core) makes
 * the caller wait for that core's next turn, milliseconds later. So when the caller has
 * to sleep for a part of a worker that was awake, longer than its own parts took (parts
 * are about equal), the team runs on the caller alone for
 * a while: BP_TEAM_SOLO_MIN_NS, doubled on each such wait that follows the last one
 * within BP_TEAM_SOLO_MEMORY_NS, up to BP_TEAM_SOLO_MAX_NS. On a busy machine the team
 * thus pays at most one such wait per BP_TEAM_SOLO_MAX_NS; on a quiet one it never
 * waits that long.
 *
 *  - threads < 2, a run already in progress (another caller), or a worker that could not
 *    be started: the caller runs every part itself.
 *  - The worker is started by the first run that asks for two threads, with every signal
 *    blocked (signals go to the caller's threads). If it cannot be started (a limit on
 *    threads or address space), the team stays at one thread until bp_team_reset().
 *  - After fork() the child has no worker: a pthread_atfork handler resets the team, and
 *    the child's first two-thread run starts a new one.
 *
 * Compiled where POSIX threads exist; elsewhere every run is the caller's alone.
 */
#ifndef BACKPROP_TEAM_H
#define BACKPROP_TEAM_H

#include <stdint.h>

typedef void (*bp_part_fn)(void *ctx, int part);

#if defined(__unix__) || defined(__APPLE__)
#define BP_TEAM_THREADS 1
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#else
#define BP_TEAM_THREADS 0
#endif

/* how long a waiting thread spins before it sleeps */
#define BP_TEAM_SPIN_NS 50000
/* how long the caller runs alone after waiting for a descheduled worker (a test may set
   longer times, to observe them on a busy machine) */
#ifndef BP_TEAM_SOLO_MIN_NS
#define BP_TEAM_SOLO_MIN_NS 1000000
#define BP_TEAM_SOLO_MAX_NS 128000000
#endif
#define BP_TEAM_SOLO_MEMORY_NS 50000000

enum { BP_TEAM_NONE = 0, BP_TEAM_READY = 1, BP_TEAM_FAILED = 2 };

#if BP_TEAM_THREADS

static struct {
  /* the run: published by the caller before it bumps `generation` */
  bp_part_fn fn;
  void *ctx;
  /* (n_parts << 8) | next unclaimed part; a part is claimed by a compare-and-swap */
  _Atomic uint32_t claim;
  _Atomic unsigned done; /* parts finished */
  _Atomic unsigned generation; /* bumped by every run: the worker's signal */
  _Atomic int worker_sleeping, caller_sleeping;
  _Atomic int busy; /* a run is in progress */
  int state; /* BP_TEAM_NONE, READY, FAILED; changed only by a caller holding busy */
  /* the caller runs alone until solo_until (ns), after a wait of solo_ns at last_wait */
  int64_t solo_until, solo_ns, last_wait;
  int atfork_registered;
  pthread_mutex_t lock;
  pthread_cond_t wake, joined;
} bp_team = {.lock = PTHREAD_MUTEX_INITIALIZER,
             .wake = PTHREAD_COND_INITIALIZER,
             .joined = PTHREAD_COND_INITIALIZER};

static inline void bp_team_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static inline int64_t bp_team_now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Spins while (*word == value) == equal, for BP_TEAM_SPIN_NS at most; returns whether
   that stopped being so. */
static inline int bp_team_spin(_Atomic unsigned *word, unsigned value, int equal) {
  int64_t deadline = 0;
  for (int i = 1;; i++) {
    if ((atomic_load_explicit(word, memory_order_acquire) == value) != equal) return 1;
    bp_team_relax();
    if (i % 64 == 0) {
      int64_t now = bp_team_now_ns();
      if (deadline == 0)
        deadline = now + BP_TEAM_SPIN_NS;
      else if (now >= deadline)
        return 0;
    }
  }
}

/* Claims and runs unclaimed parts of the current run until none is left. */
static void bp_team_work(void) {
  uint32_t c = atomic_load_explicit(&bp_team.claim, memory_order_acquire);
  while ((c & 0xff) < (c >> 8)) {
    if (atomic_compare_exchange_weak_explicit(&bp_team.claim, &c, c + 1, memory_order_acq_rel,
                                              memory_order_acquire)) {
      /* the run cannot end before this part is done: fn and ctx are still its own */
      bp_team.fn(bp_team.ctx, (int)(c & 0xff));
      atomic_fetch_add(&bp_team.done, 1);
      if (atomic_load(&bp_team.caller_sleeping)) {
        pthread_mutex_lock(&bp_team.lock);
        pthread_cond_signal(&bp_team.joined);
        pthread_mutex_unlock(&bp_team.lock);
      }
      c = atomic_load_explicit(&bp_team.claim, memory_order_acquire);
    }
  }
}

static void *bp_team_worker(void *unused) {
  (void)unused;
  unsigned seen = atomic_load(&bp_team.generation);
  for (;;) {
    if (!bp_team_spin(&bp_team.generation, seen, 1)) { /* until a new run */
      pthread_mutex_lock(&bp_team.lock);
      atomic_store(&bp_team.worker_sleeping, 1);
      while (atomic_load(&bp_team.generation) == seen)
        pthread_cond_wait(&bp_team.wake, &bp_team.lock);
      atomic_store(&bp_team.worker_sleeping, 0);
      pthread_mutex_unlock(&bp_team.lock);
    }
    seen = atomic_load(&bp_team.generation);
    bp_team_work();
  }
  return NULL;
}

/* In a forked child: no worker, no run in progress, fresh locks. */
static void bp_team_after_fork(void) {
  pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
  bp_team.lock = lock;
  bp_team.wake = cond;
  bp_team.joined = cond;
  atomic_store(&bp_team.claim, 0);
  atomic_store(&bp_team.done, 0);
  atomic_store(&bp_team.worker_sleeping, 0);
  atomic_store(&bp_team.caller_sleeping, 0);
  atomic_store(&bp_team.busy, 0);
  bp_team.state = BP_TEAM_NONE;
  bp_team.solo_until = bp_team.solo_ns = bp_team.last_wait = 0;
}

/* Starts the worker (the caller holds busy); returns whether it runs. */
static int bp_team_start(void) {
  pthread_t thread;
  pthread_attr_t attr;
  sigset_t all, previous;
  int failed;
  if (!bp_team.atfork_registered) {
    if (pthread_atfork(NULL, NULL, bp_team_after_fork) != 0) return 0;
    bp_team.atfork_registered = 1;
  }
  if (pthread_attr_init(&attr) != 0) return 0;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous); /* the worker inherits the mask */
  failed = pthread_create(&thread, &attr, bp_team_worker, NULL);
  pthread_sigmask(SIG_SETMASK, &previous, NULL);
  pthread_attr_destroy(&attr);
  return failed == 0;
}

/* Takes the team for a run: 1 when the worker is to join it (the run then holds `busy`),
   0 when the caller runs every part alone: one thread asked for, fewer than two parts,
   another caller's run in progress, no worker (it could not be started), or the time
   alone after a descheduled worker not over. */
static inline int bp_team_take(int n_parts, int threads) {
  int expected = 0;
  if (threads < 2 || n_parts < 2 || bp_team.state == BP_TEAM_FAILED ||
      !atomic_compare_exchange_strong(&bp_team.busy, &expected, 1))
    return 0;
  if (bp_team.state == BP_TEAM_NONE)
    bp_team.state = bp_team_start() ? BP_TEAM_READY : BP_TEAM_FAILED;
  int solo = bp_team.solo_until != 0 && bp_team_now_ns() < bp_team.solo_until;
  if (!solo) bp_team.solo_until = 0;
  if (bp_team.state == BP_TEAM_READY && !solo) return 1;
  atomic_store(&bp_team.busy, 0);
  return 0;
}

static inline void bp_team_run(int n_parts, bp_part_fn fn, void *ctx, int threads) {
  if (!bp_team_take(n_parts, threads)) {
    for (int p = 0; p < n_parts; p++) fn(ctx, p);
    return;
  }
  bp_team.fn = fn;
  bp_team.ctx = ctx;
  atomic_store(&bp_team.done, 0);
  atomic_store_explicit(&bp_team.claim, (uint32_t)n_parts << 8, memory_order_release);
  atomic_fetch_add(&bp_team.generation, 1);
  int asleep = atomic_load(&bp_team.worker_sleeping);
  if (asleep) {
    pthread_mutex_lock(&bp_team.lock);
    pthread_cond_signal(&bp_team.wake);
    pthread_mutex_unlock(&bp_team.lock);
  }
  int64_t started = bp_team_now_ns();
  bp_team_work();
  /* wait for the parts the worker claimed */
  if (!bp_team_spin(&bp_team.done, (unsigned)n_parts, 0)) { /* until all are done */
    int64_t waiting = bp_team_now_ns();
    pthread_mutex_lock(&bp_team.lock);
    atomic_store(&bp_team.caller_sleeping, 1);
    while (atomic_load(&bp_team.done) != (unsigned)n_parts)
      pthread_cond_wait(&bp_team.joined, &bp_team.lock);
    atomic_store(&bp_team.caller_sleeping, 0);
    pthread_mutex_unlock(&bp_team.lock);
    int64_t now = bp_team_now_ns();
    /* a worker that was awake, and kept the caller waiting longer than the caller's own
       parts took: descheduled in its part */
    if (!asleep && now - waiting > waiting - started) {
      int again = bp_team.last_wait != 0 &&
                  now - bp_team.last_wait < bp_team.solo_ns + BP_TEAM_SOLO_MEMORY_NS;
      bp_team.solo_ns = again ? 2 * bp_team.solo_ns : BP_TEAM_SOLO_MIN_NS;
      if (bp_team.solo_ns > BP_TEAM_SOLO_MAX_NS) bp_team.solo_ns = BP_TEAM_SOLO_MAX_NS;
      bp_team.last_wait = now;
      bp_team.solo_until = now + bp_team.solo_ns;
    }
  }
  atomic_store(&bp_team.busy, 0);
}

/* The team's state: BP_TEAM_NONE (no worker yet), READY or FAILED. */
static inline int bp_team_state(void) { return bp_team.state; }

/* Forgets a failure to start the worker, so that the next two-thread run tries again.
   Returns 0, or -1 while a run is in progress. */
static inline int bp_team_reset(void) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&bp_team.busy, &expected, 1)) return -1;
  if (bp_team.state == BP_TEAM_FAILED) bp_team.state = BP_TEAM_NONE;
  atomic_store(&bp_team.busy, 0);
  return 0;
}

#else /* no threads: every run is the caller's */

static inline void bp_team_run(int n_parts, bp_part_fn fn, void *ctx, int threads) {
  (void)threads;
  for (int p = 0; p < n_parts; p++) fn(ctx, p);
}
static inline int bp_team_state(void) { return BP_TEAM_FAILED; }
static inline int bp_team_reset(void) { return 0; }

#endif /* BP_TEAM_THREADS */

#endif /* BACKPROP_TEAM_H */
