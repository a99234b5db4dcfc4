// Shared by the CPU kernels: 8-wide float vectors (GCC vector extensions; -march=native picks
// the instructions), the activations, and a parallel loop over XLA's intra-op thread pool.
#ifndef EFFICIENTNET_JAX_KERNELS_COMMON_H_
#define EFFICIENTNET_JAX_KERNELS_COMMON_H_

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace efficientnet_jax_kernels {

typedef float v8 __attribute__((vector_size(32)));

// The per-vector helpers below run in the kernels' innermost loops: always inlined. Left to
// itself GCC kept the AVX-512 SiLU out of line, and in a -fPIC library called it through the PLT
// (~10 % of batch-1 inference time in a perf profile).
#define EJ_INLINE inline __attribute__((always_inline))
typedef int32_t v8i __attribute__((vector_size(32)));

enum Act : int64_t { kNone = 0, kSilu = 1, kRelu = 2, kRelu6 = 3 };

EJ_INLINE v8 splat(float v) { return v8{v, v, v, v, v, v, v, v}; }

EJ_INLINE v8 load8(const float* p) {
  v8 r;
  std::memcpy(&r, p, sizeof(r));
  return r;
}

EJ_INLINE void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof(v)); }

EJ_INLINE v8 min8(v8 a, v8 b) {
#if defined(__AVX__)
  return __builtin_ia32_minps256(a, b);
#else
  return a < b ? a : b;
#endif
}

EJ_INLINE v8 max8(v8 a, v8 b) {
#if defined(__AVX__)
  return __builtin_ia32_maxps256(a, b);
#else
  return a > b ? a : b;
#endif
}

EJ_INLINE v8 round8(v8 x) {
#if defined(__AVX__)
  return __builtin_ia32_roundps256(x, 0x08);  // to nearest, no exceptions
#else
  const v8 magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  return (x + magic) - magic;
#endif
}

// 2^t for t <= 126 (clamped): 2^round(t) times a degree-5 polynomial for 2^f, |f| <= 1/2
// (fitted here for relative error, 2.4e-7 in float32). The SiLU of every expand and depthwise
// output is most of these kernels' non-FMA arithmetic, so its instruction count matters:
// AVX-512VL does the split into n and f with one VREDUCEPS and the scaling by 2^n with one
// VSCALEFPS (which also takes t < -126 to a tiny value or 0 without a clamp), 9 instructions; the
// portable version builds 2^n from exponent bits (clamped at -126 too), 13.
EJ_INLINE v8 exp2_poly(v8 f) {
  v8 p = splat(0.001327646430581808f);
  p = p * f + splat(0.009675540961325169f);
  p = p * f + splat(0.05550713464617729f);
  p = p * f + splat(0.24022120237350464f);
  p = p * f + splat(0.6931469440460205f);
  return p * f + splat(1.0f);
}

#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
EJ_INLINE v8 exp2_8(v8 t) {
  t = min8(t, splat(126.0f));  // 2^127 and up would reach inf, and recip8's Newton step NaN
  const v8 f = (v8)_mm256_reduce_ps((__m256)t, 0x08);  // t - round(t), exact
  return (v8)_mm256_scalef_ps((__m256)exp2_poly(f), (__m256)(t - f));
}
#else
EJ_INLINE v8 exp2_8(v8 t) {
  t = max8(min8(t, splat(126.0f)), splat(-126.0f));
  const v8 n = round8(t);
  const v8i e = (__builtin_convertvector(n, v8i) + 127) << 23;
  v8 scale;
  std::memcpy(&scale, &e, sizeof(scale));
  return exp2_poly(t - n) * scale;
}
#endif

// 1 / d: the hardware estimate (14 bits with AVX-512VL, 12 with AVX) and one Newton step (~23
// bits or better) where AVX has it; a division costs several times more and SiLU needs one per
// element.
EJ_INLINE v8 recip8(v8 d) {
#if defined(__AVX512F__) && defined(__AVX512VL__)
  const v8 r = (v8)_mm256_rcp14_ps((__m256)d);
  return r * (splat(2.0f) - d * r);
#elif defined(__AVX__)
  const v8 r = __builtin_ia32_rcpps256(d);
  return r * (splat(2.0f) - d * r);
#else
  return splat(1.0f) / d;
#endif
}

template <int64_t ACT>
EJ_INLINE v8 act8(v8 x) {
  if constexpr (ACT == kSilu) {
    return x * recip8(splat(1.0f) + exp2_8(x * splat(-1.4426950408889634f)));  // x / (1 + e^-x)
  } else if constexpr (ACT == kRelu) {
    return x > splat(0.0f) ? x : splat(0.0f);
  } else if constexpr (ACT == kRelu6) {
    const v8 y = x > splat(0.0f) ? x : splat(0.0f);
    return y < splat(6.0f) ? y : splat(6.0f);
  } else {
    return x;
  }
}


// 8 channels from `src` (only `n` < 8 of them valid at a group's tail; the rest read as zero).
EJ_INLINE v8 load_part(const float* src, int64_t n) {
  if (n >= 8) return load8(src);
  float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::memcpy(tmp, src, sizeof(float) * n);
  return load8(tmp);
}

EJ_INLINE void store_part(float* dst, v8 v, int64_t n) {
  if (n >= 8) return store8(dst, v);
  float tmp[8];
  store8(tmp, v);
  std::memcpy(dst, tmp, sizeof(float) * n);
}

// A row-major (rows, cols) float matrix as vectors of 8 along cols, the last zero-padded:
// out[r * nvec + v], or out[v * rows + r] with `vec_major` (each vector's rows contiguous).
inline std::vector<v8> PackVectors(const float* src, int64_t rows, int64_t cols, bool vec_major) {
  const int64_t nvec = (cols + 7) / 8;
  std::vector<v8> out(static_cast<size_t>(rows * nvec));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t v = 0; v < nvec; ++v) {
      out[vec_major ? v * rows + r : r * nvec + v] = load_part(src + r * cols + 8 * v, std::min<int64_t>(8, cols - 8 * v));
    }
  }
  return out;
}

// ---- GEMM register tiles (the 1x1 convs) ------------------------------------------------------
// C[MR x 8*NV] += A[MR x k] * W[k x 8*NV]: each step broadcasts MR values of A (rows `lda` floats
// apart) and loads NV vectors of W for MR * NV FMAs. AVX-512VL gives 32 vector registers, room for
// 8 x 3 accumulators; AVX2's 16 fit 6 x 2.
//
// W comes in "panels" (kernels/__init__.py packs them once, at trace time, from the constant
// weights): the (K, C) matrix as ceil(C / (8 * NV)) blocks of (K, 8 * NV) floats, each contiguous
// and zero-padded past C. A tile then streams one contiguous panel: single-threaded, with weights
// cold in cache as at batch 1 (every weight read once per image), 48x1152 @ 1152x192 ran at 98
// GFLOP/s from panels and 55 GFLOP/s from the row-major matrix (the core's peak is ~112).
#if defined(__AVX512VL__)
constexpr int kGemmRows = 8, kGemmVecs = 3;
#else
constexpr int kGemmRows = 6, kGemmVecs = 2;
#endif
constexpr int64_t kPanelWidth = 8 * kGemmVecs;  // floats per panel row

// Row-tile heights: kGemmRows, or one less where that pads fewer rows. EfficientNet's maps at
// 224 are 7 * 2^j pixels wide: rows of 7, 14 or 28 pixels and maps of 49 or 196 fill 7-row tiles
// exactly and leave 8-row ones 1/8 empty (B0 at batch 1: the expand of every stage from 28x28 on,
// the project of the 7x7 and 14x14 stages). A 7 x 3 tile is as FMA-bound as 8 x 3.
constexpr int kGemmRowsAlt = kGemmRows - 1;

inline int TileRows(int64_t m) {
  const int64_t full = (m + kGemmRows - 1) / kGemmRows * kGemmRows;
  const int64_t alt = (m + kGemmRowsAlt - 1) / kGemmRowsAlt * kGemmRowsAlt;
  return alt < full ? kGemmRowsAlt : kGemmRows;
}

template <int MR, int NV>
inline void GemmTile(const float* a, int64_t lda, const float* w, int64_t k, v8 (&acc)[MR][NV]) {
  for (int64_t kk = 0; kk < k; ++kk) {
    v8 wv[NV];
    for (int j = 0; j < NV; ++j) wv[j] = load8(w + kk * kPanelWidth + 8 * j);
    for (int r = 0; r < MR; ++r) {
      const v8 av = splat(a[r * lda + kk]);
      for (int j = 0; j < NV; ++j) acc[r][j] += av * wv[j];
    }
  }
}

template <int MR, int NV, typename Init, typename Out>
inline void GemmBlock(const float* a, int64_t lda, const float* w, int64_t k, int64_t v0, const Init& init,
                      const Out& out) {
  v8 acc[MR][NV];
  for (int j = 0; j < NV; ++j) {
    const v8 b = init(v0 + j);
    for (int r = 0; r < MR; ++r) acc[r][j] = b;
  }
  GemmTile<MR, NV>(a, lda, w, k, acc);
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < NV; ++j) out(r, v0 + j, acc[r][j]);
  }
}

// The panel holding vector `v0` (a multiple of kGemmVecs) of a (k, c) matrix's panels.
inline const float* PanelAt(const float* panels, int64_t k, int64_t v0) {
  return panels + (v0 / kGemmVecs) * k * kPanelWidth;
}

// MR rows of A times `panel` (PanelAt(W, k, v0)), vectors [v0, v1) of W (v1 - v0 <= kGemmVecs):
// out(row, vector, init(vector) + A W) for each. A always has MR rows: a caller with fewer pads
// them (PadRows) and drops the rest in `out`.
template <int MR, typename Init, typename Out>
inline void GemmPanel(const float* a, int64_t lda, const float* panel, int64_t k, int64_t v0, int64_t v1,
                      const Init& init, const Out& out) {
  const int64_t nv = v1 - v0;
  if (nv == kGemmVecs) return GemmBlock<MR, kGemmVecs>(a, lda, panel, k, v0, init, out);
  if (nv == 1) return GemmBlock<MR, 1>(a, lda, panel, k, v0, init, out);
  if (nv == 2) return GemmBlock<MR, 2>(a, lda, panel, k, v0, init, out);
}

// `panel` (k x kPanelWidth) with row kk multiplied by scale[kk], into `dst`: a per-image
// Squeeze-Excitation gate on A's columns, applied once per panel and row chunk instead of to the
// loaded W vectors of every tile (which cost a multiply per FMA row, ~1/8 more work).
inline const float* ScalePanel(const float* panel, int64_t k, const float* scale, std::vector<v8>& dst) {
  constexpr int64_t kVecs = kPanelWidth / 8;
  if (dst.size() < static_cast<size_t>(k * kVecs)) dst.resize(static_cast<size_t>(k * kVecs));
  for (int64_t kk = 0; kk < k; ++kk) {
    const v8 sk = splat(scale[kk]);
    for (int64_t j = 0; j < kVecs; ++j) dst[kk * kVecs + j] = load8(panel + kk * kPanelWidth + 8 * j) * sk;
  }
  return reinterpret_cast<const float*>(dst.data());
}

// `rows` (< mr) rows of A copied into `pad` (mr x k). Returns pad's data (its rows are k floats
// apart). The rows below hold zeros or earlier rows (finite values): their results are dropped,
// so they are not cleared every time.
inline const float* PadRows(const float* a, int64_t lda, int64_t rows, int64_t k, int64_t mr,
                            std::vector<float>& pad) {
  if (pad.size() < static_cast<size_t>(mr * k)) pad.resize(static_cast<size_t>(mr * k), 0.0f);
  for (int64_t r = 0; r < rows; ++r) std::memcpy(pad.data() + r * k, a + r * lda, sizeof(float) * k);
  return pad.data();
}

// Are `dims` the panels of a (k, c) matrix: (ceil(c / kPanelWidth), k, kPanelWidth)?
template <typename Dims>
inline bool ArePanels(const Dims& dims, int64_t k, int64_t c) {
  return dims.size() == 3 && dims[0] == (c + kPanelWidth - 1) / kPanelWidth && dims[1] == k && dims[2] == kPanelWidth;
}

// out[r * cols + c] = scale * sum over k < parts of partial[(k * rows + r) * ld + c]: the work
// items' partial sums (each a (rows, ld) block, ld >= cols), added in item order by the caller.
inline void SumPartials(const float* partial, int64_t parts, int64_t rows, int64_t ld, int64_t cols, float scale,
                        float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      float sum = 0.0f;
      for (int64_t k = 0; k < parts; ++k) sum += partial[(k * rows + r) * ld + c];
      out[r * cols + c] = sum * scale;
    }
  }
}

// Run fn(item) for item in [0, items) on the calling thread and up to threads - 1 tasks of XLA's
// pool. Participant t first takes the items of its own contiguous range [t * items / T,
// (t + 1) * items / T) from that range's atomic counter, then helps with the others' ranges.
// Contiguous ranges matter: items are adjacent channel groups or panels, and two threads writing
// the two sides of a group boundary share the output's cache lines at every pixel; with items
// handed out one by one from a single counter every boundary was such a one. The caller returns
// once every item has run; a task that starts after the last item was claimed finds none and
// never touches `fn`.
template <typename F>
void ParallelFor(xla::ffi::ThreadPool& pool, int64_t items, const F& fn) {
  if (items <= 0) return;
  const int64_t threads = std::min<int64_t>(std::max<int64_t>(1, pool.num_threads()), items);
  if (threads == 1) {
    for (int64_t i = 0; i < items; ++i) fn(i);
    return;
  }
  struct State {
    explicit State(int64_t ranges) : next(new std::atomic<int64_t>[ranges]), end(ranges) {}
    std::unique_ptr<std::atomic<int64_t>[]> next;  // per range: the next item to claim
    std::vector<int64_t> end;
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>(threads);
  for (int64_t t = 0; t < threads; ++t) {
    state->next[t].store(t * items / threads, std::memory_order_relaxed);
    state->end[t] = (t + 1) * items / threads;
  }
  auto drain = [state, threads, f = &fn](int64_t self) {
    for (int64_t k = 0; k < threads; ++k) {
      const int64_t r = (self + k) % threads;
      for (int64_t i = state->next[r].fetch_add(1); i < state->end[r]; i = state->next[r].fetch_add(1)) {
        (*f)(i);
        state->done.fetch_add(1, std::memory_order_release);
      }
    }
  };
  for (int64_t t = 1; t < threads; ++t) pool.Schedule([drain, t] { drain(t); });
  drain(0);
  while (state->done.load(std::memory_order_acquire) < items) std::this_thread::yield();
}

}  // namespace efficientnet_jax_kernels

#endif  // EFFICIENTNET_JAX_KERNELS_COMMON_H_
