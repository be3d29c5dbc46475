/* A barrier for the threads of an OpenMP team.
 *
 * bp_barrier is an orphaned "omp barrier": it binds to the team of the parallel region it
 * runs in, so Cython code inside a prange/parallel block can call it as a function (Cython
 * has no barrier of its own). A team of one, or no enclosing region, makes it a no-op;
 * compiled without OpenMP it is empty.
 */
#ifndef BACKPROP_PARALLEL_H
#define BACKPROP_PARALLEL_H

static inline void bp_barrier(void) {
#ifdef _OPENMP
  _Pragma("omp barrier")
#endif
}

#endif /* BACKPROP_PARALLEL_H */
