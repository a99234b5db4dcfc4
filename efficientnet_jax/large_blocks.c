/* A cache for a process's large heap blocks, loaded with LD_PRELOAD (host_memory.py's
 * `cache_large`).
 *
 * XLA CPU allocates each executable's temporary buffer (gigabytes for a training step) with
 * posix_memalign and frees it after the run. glibc serves such sizes from a fresh mmap and unmaps
 * them on free, so every step page-faults the whole buffer again. This library takes every
 * allocation of at least EJ_THRESHOLD bytes out of glibc: its own mmapped blocks, which a free
 * keeps (resident) for the next request of about the same size. Everything smaller goes to glibc
 * untouched, so compiles and small allocations keep glibc's per-thread arenas.
 *
 * Free blocks are kept up to EFFICIENTNET_JAX_LARGE_BLOCK_CACHE_MB in total (default: half the
 * machine's memory); beyond that a freed block is unmapped. A request takes the smallest free
 * block at least as large and at most twice as large as itself; when none is free but one is in
 * use, it waits up to 0.25 s for that one (see take(); at most 4 such waits time out per process).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

#define EJ_THRESHOLD ((size_t)64 << 20)
#define EJ_GRANULE ((size_t)2 << 20)
#define EJ_SLOTS 256
#define EJ_WAIT_NS 250000000L /* 0.25 s */
#define EJ_WAITS 4

typedef struct {
  char *base;
  size_t size;
  int in_use;
} Block;

static Block blocks[EJ_SLOTS];
static int n_blocks;
static size_t free_bytes;           /* bytes of cached blocks not in use */
static size_t free_limit;           /* 0 until first use */
static int waits_left = EJ_WAITS;   /* waits for a block in use that may still time out */
static uintptr_t lo = UINTPTR_MAX;  /* [lo, hi): every block ever handed out lies inside */
static uintptr_t hi;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t freed = PTHREAD_COND_INITIALIZER;

/* Counters for the tests and the benchmarks (read with ctypes). */
size_t efficientnet_jax_large_blocks_mapped;  /* mmap calls */
size_t efficientnet_jax_large_blocks_reused;  /* requests served from the cache */
size_t efficientnet_jax_large_blocks_waits_timed_out;  /* waits for a block in use that ended in a new block */

/* fork() while another thread holds the lock would leave the child's copy locked forever. */
static void before_fork(void) { pthread_mutex_lock(&lock); }
static void after_fork(void) { pthread_mutex_unlock(&lock); }
__attribute__((constructor)) static void init(void) { pthread_atfork(before_fork, after_fork, after_fork); }

static size_t limit_bytes(void) {
  const char *env = getenv("EFFICIENTNET_JAX_LARGE_BLOCK_CACHE_MB");
  if (env && *env) return (size_t)strtoull(env, NULL, 10) << 20;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? (size_t)pages * (size_t)page / 2 : (size_t)8 << 30;
}

/* The smallest free block that can serve `want` (at most twice as large), or -1. Lock held. */
static int best_free(size_t want) {
  int best = -1;
  for (int i = 0; i < n_blocks; ++i) {
    Block *b = &blocks[i];
    if (!b->in_use && b->size >= want && b->size / 2 <= want && (best < 0 || b->size < blocks[best].size)) best = i;
  }
  return best;
}

/* Is a block that could serve `want` in use (so may come back soon)? Lock held. */
static int fits_in_use(size_t want) {
  for (int i = 0; i < n_blocks; ++i)
    if (blocks[i].in_use && blocks[i].size >= want && blocks[i].size / 2 <= want) return 1;
  return 0;
}

static void *take(size_t size) {
  size_t want = (size + EJ_GRANULE - 1) / EJ_GRANULE * EJ_GRANULE;
  pthread_mutex_lock(&lock);
  if (!free_limit) free_limit = limit_bytes();
  int best = best_free(want);
  if (best < 0 && waits_left > 0 && fits_in_use(want)) {
    /* XLA frees a step's temporary a moment after the next step has asked for its own: wait a
     * little for it instead of faulting in a second block of the same size (seconds and
     * gigabytes). Bounded twice over: 0.25 s a wait, and after EJ_WAITS waits that ended without
     * a block (a program that really keeps several such blocks, e.g. large arrays it allocates
     * and holds) it never waits again. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += EJ_WAIT_NS;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec += 1;
      until.tv_nsec -= 1000000000L;
    }
    while (best < 0 && pthread_cond_timedwait(&freed, &lock, &until) == 0) best = best_free(want);
    if (best < 0) {
      --waits_left;
      ++efficientnet_jax_large_blocks_waits_timed_out;
    }
  }
  if (best >= 0) {
    blocks[best].in_use = 1;
    free_bytes -= blocks[best].size;
    ++efficientnet_jax_large_blocks_reused;
    void *p = blocks[best].base;
    pthread_mutex_unlock(&lock);
    return p;
  }
  pthread_mutex_unlock(&lock);
  void *p = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  pthread_mutex_lock(&lock);
  int slot = n_blocks < EJ_SLOTS ? n_blocks++ : -1;
  for (int i = 0; slot < 0 && i < n_blocks; ++i) {  /* table full: evict a free block */
    if (!blocks[i].in_use) {
      munmap(blocks[i].base, blocks[i].size);
      free_bytes -= blocks[i].size;
      slot = i;
    }
  }
  if (slot < 0) {  /* every slot in use: hand this one to glibc's care instead */
    pthread_mutex_unlock(&lock);
    munmap(p, want);
    return NULL;
  }
  blocks[slot] = (Block){(char *)p, want, 1};
  if ((uintptr_t)p < lo) lo = (uintptr_t)p;
  if ((uintptr_t)p + want > hi) hi = (uintptr_t)p + want;
  ++efficientnet_jax_large_blocks_mapped;
  pthread_mutex_unlock(&lock);
  return p;
}

/* The block that starts at p (in use), or -1. Caller holds the lock. */
static int find(const void *p) {
  for (int i = 0; i < n_blocks; ++i)
    if (blocks[i].base == (const char *)p && blocks[i].in_use) return i;
  return -1;
}

/* Give p back to the cache; 0 if p is not one of ours. */
static int give(void *p) {
  if ((uintptr_t)p < __atomic_load_n(&lo, __ATOMIC_RELAXED) || (uintptr_t)p >= __atomic_load_n(&hi, __ATOMIC_RELAXED))
    return 0;
  pthread_mutex_lock(&lock);
  int i = find(p);
  if (i < 0) {
    pthread_mutex_unlock(&lock);
    return 0;
  }
  if (free_bytes + blocks[i].size > free_limit) {  /* over the cache's limit: unmap */
    munmap(blocks[i].base, blocks[i].size);
    blocks[i] = blocks[--n_blocks];
  } else {
    blocks[i].in_use = 0;
    free_bytes += blocks[i].size;
    pthread_cond_broadcast(&freed);
  }
  pthread_mutex_unlock(&lock);
  return 1;
}

static size_t size_of(void *p) {
  if ((uintptr_t)p < lo || (uintptr_t)p >= hi) return 0;
  pthread_mutex_lock(&lock);
  int i = find(p);
  size_t n = i < 0 ? 0 : blocks[i].size;
  pthread_mutex_unlock(&lock);
  return n;
}

void *malloc(size_t size) {
  if (size >= EJ_THRESHOLD) {
    void *p = take(size);
    if (p) return p;
  }
  return __libc_malloc(size);
}

void free(void *p) {
  if (p && give(p)) return;
  __libc_free(p);
}

/* calloc stays glibc's: a fresh mmap is zero already, a reused block would need clearing. */
void *calloc(size_t n, size_t size) { return __libc_calloc(n, size); }

void *realloc(void *p, size_t size) {
  size_t old = p ? size_of(p) : 0;
  if (!old) return __libc_realloc(p, size);
  if (size <= old) return p;
  void *q = malloc(size);
  if (!q) return NULL;
  memcpy(q, p, old);
  free(p);
  return q;
}

static void *aligned(size_t alignment, size_t size) {
  if (size >= EJ_THRESHOLD && alignment <= (size_t)sysconf(_SC_PAGESIZE)) {
    void *p = take(size);  /* page-aligned */
    if (p) return p;
  }
  return __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
  if (alignment < sizeof(void *) || (alignment & (alignment - 1))) return EINVAL;
  void *p = aligned(alignment, size);
  if (!p && size) return ENOMEM;
  *out = p;
  return 0;
}

void *aligned_alloc(size_t alignment, size_t size) { return aligned(alignment, size); }

void *memalign(size_t alignment, size_t size) { return aligned(alignment, size); }

size_t malloc_usable_size(void *p) {
  size_t n = p ? size_of(p) : 0;
  if (n) return n;
  static size_t (*next)(void *);
  if (!next) next = (size_t(*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
  return next ? next(p) : 0;
}
