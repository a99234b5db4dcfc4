// a^T b over a long shared axis, for XLA CPU training, called through the XLA FFI.
//
//   out[p, q] = sum over m of a[m, p] * b[m, q]        a (M, P), b (M, Q), out (P, Q), float32
//
// The 1x1 convs' weight gradient x^T g and conv_bn.py's x^T x and x^T g, with M = N*H*W positions.
//
// Why (measured in a B0 batch-32 training step, jaxlib 0.10.2, 2 cores): XLA hands these dots
// with few channels and M = 401408 to Eigen, which ran them at 10-35 GFLOP/s (the stem's 27 x 32
// weight gradient 36 ms, 16 x 96 and 32 x 16 20 ms each: ~150 ms of the step in all). Here a
// register tile of kGemmRows values of p x kGemmVecs vectors of q (common.h) runs down m: per
// row of a and b, kGemmRows broadcasts and kGemmVecs loads feed kGemmRows * kGemmVecs FMAs.
//
// Work: M is cut into chunks that stay in cache while every tile of (P, Q) passes over them;
// items are (range of chunks, block of p tiles); each range sums into its own (P, Q) partial and
// the caller adds the partials.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace efficientnet_jax_kernels;  // NOLINT: this file's vocabulary

struct Problem {
  const float* a;
  const float* b;
  float* partial;  // ranges x P x qpad
  int64_t m, p, q, qpad, nvec, chunk, ranges, rows_per_range, blocks, tiles_per_block;
};

// R rows of p from p0 x V vectors of q from vector v0, over rows [m0, m1): accumulated into the
// range's partial. The last vector of q may be partial (`tail` valid lanes, 0 = full).
template <int R, int V, bool TAIL>
inline void Tile(const Problem& p, int64_t m0, int64_t m1, int64_t p0, int64_t v0, int64_t tail, float* part) {
  v8 acc[R][V];  // this chunk's sums, added to the partial at the end: two-level summation
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < V; ++j) acc[r][j] = splat(0.0f);
  const float* a = p.a + m0 * p.p + p0;
  const float* b = p.b + m0 * p.q + 8 * v0;
  for (int64_t m = m0; m < m1; ++m, a += p.p, b += p.q) {
    v8 bv[V];
    for (int j = 0; j < V; ++j) bv[j] = (TAIL && j == V - 1) ? load_part(b + 8 * j, tail) : load8(b + 8 * j);
    for (int r = 0; r < R; ++r) {
      const v8 av = splat(a[r]);
      for (int j = 0; j < V; ++j) acc[r][j] += av * bv[j];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < V; ++j) {
      float* d = part + (p0 + r) * p.qpad + 8 * (v0 + j);
      store8(d, load8(d) + acc[r][j]);
    }
}

template <int R>
inline void RowTiles(const Problem& p, int64_t m0, int64_t m1, int64_t p0, float* part) {
  const int64_t tail = p.q % 8;
  for (int64_t v = 0; v < p.nvec; v += kGemmVecs) {
    const int64_t nv = std::min<int64_t>(kGemmVecs, p.nvec - v);
    const int64_t t = (v + nv == p.nvec) ? tail : 0;
    if (t) {
      if (nv == kGemmVecs) Tile<R, kGemmVecs, true>(p, m0, m1, p0, v, t, part);
      else if (nv == 1) Tile<R, 1, true>(p, m0, m1, p0, v, t, part);
      else if (nv == 2) Tile<R, 2, true>(p, m0, m1, p0, v, t, part);
    } else {
      if (nv == kGemmVecs) Tile<R, kGemmVecs, false>(p, m0, m1, p0, v, t, part);
      else if (nv == 1) Tile<R, 1, false>(p, m0, m1, p0, v, t, part);
      else if (nv == 2) Tile<R, 2, false>(p, m0, m1, p0, v, t, part);
    }
  }
}

// Rows [p0, p0 + rows) of p, rows < kGemmRows: one tile height per case.
inline void ShortTiles(const Problem& p, int64_t m0, int64_t m1, int64_t p0, int64_t rows, float* part) {
  switch (rows) {
    case 1: return RowTiles<1>(p, m0, m1, p0, part);
    case 2: return RowTiles<2>(p, m0, m1, p0, part);
    case 3: return RowTiles<3>(p, m0, m1, p0, part);
    case 4: return RowTiles<4>(p, m0, m1, p0, part);
    case 5: return RowTiles<5>(p, m0, m1, p0, part);
    case 6: return RowTiles<6>(p, m0, m1, p0, part);
    case 7: return RowTiles<7>(p, m0, m1, p0, part);
    default: return;
  }
}

void RunItem(const Problem& p, int64_t item) {
  const int64_t range = item / p.blocks, block = item % p.blocks;
  const int64_t r0 = range * p.rows_per_range, r1 = std::min(p.m, r0 + p.rows_per_range);
  const int64_t p0 = block * p.tiles_per_block * kGemmRows;
  const int64_t p1 = std::min(p.p, p0 + p.tiles_per_block * kGemmRows);
  if (p0 >= p1) return;
  float* part = p.partial + range * p.p * p.qpad;
  for (int64_t r = p0; r < p1; ++r) std::fill(part + r * p.qpad, part + (r + 1) * p.qpad, 0.0f);
  for (int64_t m0 = r0; m0 < r1; m0 += p.chunk) {
    const int64_t m1 = std::min(r1, m0 + p.chunk);
    int64_t row = p0;
    for (; row + kGemmRows <= p1; row += kGemmRows) RowTiles<kGemmRows>(p, m0, m1, row, part);
    if (row < p1) ShortTiles(p, m0, m1, row, p1 - row, part);
  }
}

ffi::Error GemmTnImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                      ffi::ResultBuffer<ffi::F32> out) {
  auto ad = a.dimensions(), bd = b.dimensions(), od = out->dimensions();
  if (ad.size() != 2 || bd.size() != 2 || od.size() != 2 || ad[0] != bd[0] || od[0] != ad[1] || od[1] != bd[1]) {
    return ffi::Error::InvalidArgument("gemm_tn: a (M, P), b (M, Q) and out (P, Q) expected");
  }
  Problem p{};
  p.m = ad[0], p.p = ad[1], p.q = bd[1], p.nvec = (p.q + 7) / 8, p.qpad = p.nvec * 8;
  float* o = out->typed_data();
  if (p.p == 0 || p.q == 0) return ffi::Error::Success();
  p.a = a.typed_data(), p.b = b.typed_data();
  // Ranges of M first (each needs a P x Q partial), at least 8 chunks each; then blocks of p tiles
  // until there are ~4 items per thread.
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t want = 4 * threads;
  // A chunk of a's and b's rows: ~128 KB, so it stays in L2 while every tile passes over it.
  p.chunk = std::clamp<int64_t>(32768 / (p.p + p.q), 16, 1024);
  const int64_t chunks = std::max<int64_t>(1, (p.m + p.chunk - 1) / p.chunk);
  p.ranges = std::clamp<int64_t>(chunks / 8, 1, want);
  p.rows_per_range = (chunks + p.ranges - 1) / p.ranges * p.chunk;
  p.ranges = std::max<int64_t>(1, (p.m + p.rows_per_range - 1) / p.rows_per_range);
  const int64_t tiles = (p.p + kGemmRows - 1) / kGemmRows;
  p.blocks = std::clamp<int64_t>((want + p.ranges - 1) / p.ranges, 1, tiles);
  p.tiles_per_block = (tiles + p.blocks - 1) / p.blocks;
  p.blocks = (tiles + p.tiles_per_block - 1) / p.tiles_per_block;
  std::vector<float> partial(static_cast<size_t>(p.ranges * p.p * p.qpad), 0.0f);
  p.partial = partial.data();
  ParallelFor(pool, p.ranges * p.blocks, [&p](int64_t item) { RunItem(p, item); });
  SumPartials(partial.data(), p.ranges, p.p, p.qpad, p.q, 1.0f, o);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(EfficientNetJaxGemmTn, GemmTnImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
