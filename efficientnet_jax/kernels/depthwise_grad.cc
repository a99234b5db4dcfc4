// The depthwise convolution's kernel gradient for XLA CPU training, called through the XLA FFI.
//
//   dk[dy, dx, c] = sum over n, oy, ox of xp[n, oy * s + dy, ox * s + dx, c] * g[n, oy, ox, c]
//
// xp (N, Hp, Wp, C) is the padded input the forward kept, g (N, Ho, Wo, C) the output's
// gradient, dk (KH, KW, C); float32, NHWC.
//
// Why (measured in a B0 batch-32 training step, jaxlib 0.10.2, 2 cores): XLA runs
// depthwise.py's variadic reduce well at 112x112 but slowly where the map is small and wide
// (7x7x1152, 5x5 taps: 15-29 ms for 1.8 M input floats, 14x14x672: 17-39 ms); its 16 multiply-
// reduce fusions were 16 % of the step. Here every tap is an FMA into a register while the row
// is in cache: one read of xp and g.
//
// Work: the (image, output row) pairs are split into a few contiguous ranges, one item each;
// an item sums its rows into its own (KH * KW, C) partial and the caller adds the partials.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace efficientnet_jax_kernels;  // NOLINT: this file's vocabulary

struct Problem {
  const float* xp;
  const float* g;
  float* partial;  // items x (kh * kw) x cpad
  int64_t n, hp, wp, c, ho, wo, kh, kw, stride, cpad, rows_per_item;
};

// One padded-input row `xrow` against gradient row `grow`, tap row dy: for each channel vector
// pair, KW accumulators per vector over the whole row (2 x KW independent FMA chains), added to
// the item's partial at the end of the row. `V` vectors of 8 channels from channel `c0`; the last
// vector may be partial (`tail` valid lanes, 0 = full).
template <int KW, int S, int V>
inline void TapRow(const Problem& p, const float* xrow, const float* grow, int64_t c0, int64_t tail, float* part) {
  const int64_t kw = KW > 0 ? KW : p.kw;
  const int64_t s = S > 0 ? S : p.stride;
  v8 acc[V][KW > 0 ? KW : 16];
  for (int u = 0; u < V; ++u)
    for (int64_t dx = 0; dx < kw; ++dx) acc[u][dx] = splat(0.0f);
  for (int64_t ox = 0; ox < p.wo; ++ox) {
    const float* gp = grow + ox * p.c + c0;
    const float* xq = xrow + ox * s * p.c + c0;
    for (int u = 0; u < V; ++u) {
      const bool part_vec = tail && u == V - 1;
      const v8 gv = part_vec ? load_part(gp + 8 * u, tail) : load8(gp + 8 * u);
      for (int64_t dx = 0; dx < kw; ++dx) {
        const float* xs = xq + dx * p.c + 8 * u;
        acc[u][dx] += (part_vec ? load_part(xs, tail) : load8(xs)) * gv;
      }
    }
  }
  for (int u = 0; u < V; ++u)
    for (int64_t dx = 0; dx < kw; ++dx) {
      float* d = part + dx * p.cpad + c0 + 8 * u;
      store8(d, load8(d) + acc[u][dx]);
    }
}

template <int KW, int S>
void Rows(const Problem& p, int64_t r0, int64_t r1, float* part) {
  const int64_t full = p.c / 8, tail = p.c % 8;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t img = r / p.ho, oy = r % p.ho;
    const float* grow = p.g + (img * p.ho + oy) * p.wo * p.c;
    for (int64_t dy = 0; dy < p.kh; ++dy) {
      const float* xrow = p.xp + (img * p.hp + oy * p.stride + dy) * p.wp * p.c;
      float* tap_part = part + dy * p.kw * p.cpad;
      int64_t v = 0;
      for (; v + 2 <= full; v += 2) TapRow<KW, S, 2>(p, xrow, grow, 8 * v, 0, tap_part);
      if (v < full) TapRow<KW, S, 1>(p, xrow, grow, 8 * v, 0, tap_part), ++v;
      if (tail) TapRow<KW, S, 1>(p, xrow, grow, 8 * v, tail, tap_part);
    }
  }
}

void RunItem(const Problem& p, int64_t item) {
  const int64_t r0 = item * p.rows_per_item, r1 = std::min(p.n * p.ho, r0 + p.rows_per_item);
  float* part = p.partial + item * p.kh * p.kw * p.cpad;
  std::fill(part, part + p.kh * p.kw * p.cpad, 0.0f);
  // Specialised for the family's 3x3 / 5x5 kernels at stride 1 / 2; any other shape runs generic.
  if (p.kw == 3 && p.stride == 1) Rows<3, 1>(p, r0, r1, part);
  else if (p.kw == 3 && p.stride == 2) Rows<3, 2>(p, r0, r1, part);
  else if (p.kw == 5 && p.stride == 1) Rows<5, 1>(p, r0, r1, part);
  else if (p.kw == 5 && p.stride == 2) Rows<5, 2>(p, r0, r1, part);
  else Rows<0, 0>(p, r0, r1, part);
}

ffi::Error DepthwiseKernelGradImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> xp, ffi::Buffer<ffi::F32> g,
                                   ffi::ResultBuffer<ffi::F32> dk, int64_t stride) {
  auto xd = xp.dimensions(), gd = g.dimensions(), kd = dk->dimensions();
  if (xd.size() != 4 || gd.size() != 4 || kd.size() != 3) {
    return ffi::Error::InvalidArgument("depthwise_kernel_grad: xp and g must be NHWC, dk (KH, KW, C)");
  }
  Problem p{};
  p.n = xd[0], p.hp = xd[1], p.wp = xd[2], p.c = xd[3], p.ho = gd[1], p.wo = gd[2];
  p.kh = kd[0], p.kw = kd[1], p.stride = stride;
  if (p.kw > 16 || stride < 1 || gd[0] != p.n || gd[3] != p.c || kd[2] != p.c ||
      (p.ho > 0 && (p.ho - 1) * stride + p.kh > p.hp) || (p.wo > 0 && (p.wo - 1) * stride + p.kw > p.wp)) {
    return ffi::Error::InvalidArgument("depthwise_kernel_grad: inconsistent shapes (or a kernel wider than 16)");
  }
  float* out = dk->typed_data();
  if (p.c == 0 || p.kh == 0 || p.kw == 0) return ffi::Error::Success();
  p.xp = xp.typed_data(), p.g = g.typed_data(), p.cpad = (p.c + 7) / 8 * 8;
  const int64_t rows = p.n * p.ho;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t items = std::max<int64_t>(1, std::min<int64_t>(rows, 4 * threads));
  p.rows_per_item = std::max<int64_t>(1, (rows + items - 1) / items);
  const int64_t used = rows == 0 ? 1 : (rows + p.rows_per_item - 1) / p.rows_per_item;
  const int64_t taps = p.kh * p.kw;
  std::vector<float> partial(static_cast<size_t>(used * taps * p.cpad), 0.0f);
  p.partial = partial.data();
  if (rows > 0) ParallelFor(pool, used, [&p](int64_t item) { RunItem(p, item); });
  SumPartials(partial.data(), used, taps, p.cpad, p.c, 1.0f, out);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(EfficientNetJaxDepthwiseKernelGrad, DepthwiseKernelGradImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride"));
