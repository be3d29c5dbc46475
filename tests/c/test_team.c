/* The two-core paths' team (src/backprop/_kernels/team.h) on its own.
 *
 * - Every part of every run is run exactly once, with 2 to 5 parts, by either thread,
 *   over many runs back to back (the worker hot) and after pauses (the worker asleep).
 * - A run asked for one thread runs every part on the caller.
 * - A worker held up in its part (as if descheduled): the caller waits for it, then runs
 *   alone for a while (every part on the caller), then shares the parts again.
 * - A forked child, after the parent's runs and during another thread's runs, runs
 *   with two threads again (its own worker) and exits.
 *
 * Prints each failure; exit status 0 when there are none.
 */
/* solo times long enough that a run started right after a held-up worker falls within
   one even when a busy machine deschedules this thread for a few time slices */
#define BP_TEAM_SOLO_MIN_NS 40000000
#define BP_TEAM_SOLO_MAX_NS 80000000
#include "team.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MAX_PARTS = 5 };

static long failures, checks;

struct run {
  _Atomic int count[MAX_PARTS];
  _Atomic int on_caller;
  pthread_t caller;
  long spin;     /* busy work per part */
  long stall_ms; /* a part on the worker sleeps this long first */
};

static void pause_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

static void part(void *ctx, int p) {
  struct run *r = ctx;
  int on_caller = pthread_equal(pthread_self(), r->caller);
  if (!on_caller && r->stall_ms) pause_ms(r->stall_ms);
  for (volatile long i = 0; i < r->spin * (p + 1); i++) {
  }
  atomic_fetch_add(&r->count[p], 1);
  if (on_caller) atomic_fetch_add(&r->on_caller, 1);
}

/* Runs n parts on `threads` threads (a part on the worker first sleeps stall_ms); checks
   each ran once; returns the parts that ran on the caller. */
static int check_stalled_run(int n, int threads, long spin, long stall_ms) {
  struct run r = {.caller = pthread_self(), .spin = spin, .stall_ms = stall_ms};
  bp_team_run(n, part, &r, threads);
  for (int p = 0; p < n; p++) {
    checks++;
    if (atomic_load(&r.count[p]) != 1) {
      printf("FAIL: %d parts, %d threads: part %d ran %d times\n", n, threads, p,
             atomic_load(&r.count[p]));
      failures++;
    }
  }
  return atomic_load(&r.on_caller);
}

static int check_run(int n, int threads, long spin) {
  return check_stalled_run(n, threads, spin, 0);
}

/* A worker held up in its part: afterwards the caller runs alone, then not. Whether the
   next run starts within the solo time depends on the scheduler (a busy machine may
   deschedule this thread past it, or keep the caller's own part as slow as the worker's,
   so that no solo time starts): only a run that starts within one is conclusive, and the
   check is repeated until one is, at most 50 times. */
static void check_solo(void) {
  int conclusive = 0, shared = 0;
  for (int attempt = 0; attempt < 50 && !conclusive; attempt++) {
    pause_ms(BP_TEAM_SOLO_MAX_NS / 1000000 + 1); /* past the solo time of a run before */
    /* runs whose worker part is held up, back to back (the worker awake at each start),
       until one of them makes the caller wait long enough to start a solo time */
    int64_t until = 0;
    for (int i = 0; i < 200 && until == 0; i++) {
      check_stalled_run(2, 2, 200000, 5);
      until = bp_team.solo_until;
    }
    if (until == 0) continue;
    int64_t started = bp_team_now_ns();
    int on_caller = check_run(2, 2, 200000);
    if (started >= until) continue; /* not within the solo time */
    conclusive = 1;
    checks++;
    if (on_caller != 2) {
      printf("FAIL: within the solo time after a held-up worker, a part ran on the worker\n");
      failures++;
    }
  }
  if (!conclusive) /* a machine so busy that no wait was long enough: nothing to check */
    printf("solo time: inconclusive (no run started within one)\n");
  pause_ms(BP_TEAM_SOLO_MAX_NS / 1000000 + 1); /* past any solo time */
  for (int i = 0; i < 2000 && !shared; i++) shared = check_run(2, 2, 200000) < 2;
  checks++;
  if (!shared) {
    printf("FAIL: after the solo time, the worker never took a part again\n");
    failures++;
  }
}

static void *other_runs(void *stop) {
  while (!atomic_load((_Atomic int *)stop)) check_run(2, 2, 1000);
  return NULL;
}

/* In a child: two-thread runs work (within the alarm) and the worker is running. */
static int child_runs(void) {
  int on_caller = 0;
  alarm(20);
  for (int i = 0; i < 2000; i++) on_caller += check_run(2, 2, 20000);
  if (failures) return 1;
  if (bp_team_state() != BP_TEAM_READY) return 2;
  printf("child: %d of 4000 parts on the caller\n", on_caller);
  fflush(stdout);
  return 0;
}

static void check_fork(const char *when) {
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) _exit(child_runs());
  int status = 0;
  checks++;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    printf("FAIL: fork %s: child status %d\n", when, status);
    failures++;
  }
}

int main(void) {
  int on_caller = 0, total = 0;
  for (int i = 0; i < 100000; i++) {
    int n = 2 + i % (MAX_PARTS - 1);
    on_caller += check_run(n, 2, i % 7 == 0 ? 3000 : 0);
    total += n;
  }
  printf("back to back: %d of %d parts on the caller\n", on_caller, total);
  checks++;
  if (bp_team_state() != BP_TEAM_READY) {
    printf("FAIL: the worker is not running\n");
    failures++;
  }
  for (int i = 0; i < 20; i++) {
    pause_ms(1); /* past the spin: the worker sleeps */
    check_run(2, 2, 100000);
  }
  check_solo();
  for (int i = 0; i < 1000; i++) {
    checks++;
    if (check_run(3, 1, 0) != 3) {
      printf("FAIL: one thread: a part ran on the worker\n");
      failures++;
      break;
    }
  }
  check_fork("after runs");

  _Atomic int stop = 0;
  pthread_t other;
  pthread_create(&other, NULL, other_runs, &stop);
  pause_ms(5);
  check_fork("during another thread's runs");
  atomic_store(&stop, 1);
  pthread_join(other, NULL);

  printf("%ld checks, %ld failures\n", checks, failures);
  return failures != 0;
}
