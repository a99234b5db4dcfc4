// Fused depthwise convolution for XLA CPU inference, called through the XLA FFI.
//
//   out    = act_out(depthwise(pad(act_in(x + in_bias)), w, stride) + out_bias)
//   pooled = mean over the output's H, W of out              (the Squeeze-Excitation input)
//
// x (N, H, W, C) is the raw output of the 1x1 expand conv (or, with in_act = NONE, the block
// input as it is), w (KH, KW, C), float32, NHWC. The zero padding applies to the activated input,
// as in the graph it replaces.
//
// With expand weights it also runs the expand conv: x is then the block input (N, H, W, C_in)
// and each input row is `x_row @ w_expand` (C_in, C, as panels) before its bias and activation,
// computed with common.h's register tiles straight into the ring: the expanded map, the block's
// widest, is never written to memory, and XLA's expand dot (and its hand-off between threads) is
// gone.
//
// Why (efficientnet_jax/kernels/__init__.py has the figures): XLA CPU writes the expand conv's
// activation into a padded copy, reads it again for the k*k taps and a third time for the SE mean.
// Here each input row is activated once into a small ring of k rows, the taps read it from cache,
// and the SE sum is taken while the output is written: one read of x, one write of out.
//
// Work is split over (image, output-row band, channel group) items that the calling thread and
// XLA's intra-op pool take from an atomic counter; a helper that starts after the last item is
// claimed finds nothing to do, so nobody waits on a task that has not started.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace efficientnet_jax_kernels;  // NOLINT: this file's vocabulary

struct Problem {
  const float* x;
  const float* we;  // expand weights (C_in, C) as panels (common.h); nullptr: x is already expanded
  const v8* wvec;   // weights packed once per call: (C / 8 vectors) x (kh * kw taps), vector-major
  const v8* obvec;  // out and in biases, C / 8 vectors
  const v8* ibvec;
  float* out;
  float* partial;  // (row bands, N, C) sums of out, reduced by the caller
  int64_t n, h, w_in, c, kh, kw, stride, pad_top, pad_left, ho, wo;
  int64_t cin;  // x's channels (== c without expand)
  int64_t in_act, out_act;
  int64_t mr;  // the expand's row-tile height (TileRows of the input columns a row's taps reach)
  int64_t bands, band_rows, groups, group_ch;
};

// An item's working set, in "vector-major" layout: for each group of 8 channels, a row's pixels
// lie 8 floats apart, so every tap of the inner loop is a constant offset from one pointer.
// The last vector of a group whose width is not a multiple of 8 is padded with zero channels.
struct Tile {
  int64_t nvec, wp;           // vectors of 8 channels; padded input row width the taps read
  std::vector<v8> ring;       // kh rows x nvec x wp: activated input rows (ring by row mod kh)
  const v8 *w, *ob, *ib;      // this group's packed weights (nvec x kh*kw), out and in biases
  std::vector<float> pad;     // a row tail's input pixels for the expand GEMM
  std::vector<v8> sums;       // the item's SE sums, one vector per 8 channels
};

// The expand conv of input row `iy`, channels [c0, c0 + group), activated into `dst` (ring slot
// layout): MR pixels x the group's vectors at a time, the in bias as the start value. The group
// starts at a panel boundary (Run rounds groups to whole panels).
template <int64_t ACT, int MR>
void ExpandRow(const Problem& p, Tile& t, int64_t img, int64_t iy, int64_t c0, int64_t last, v8* dst) {
  const float* src = p.x + ((img * p.h + iy) * p.w_in) * p.cin;
  auto init = [&t](int64_t v) { return t.ib[v]; };
  for (int64_t ix = 0; ix < last; ix += MR) {
    const int64_t rows = std::min<int64_t>(MR, last - ix);
    const float* a = src + ix * p.cin;
    if (rows < MR) a = PadRows(a, p.cin, rows, p.cin, MR, t.pad);
    v8* d = dst + p.pad_left + ix;
    for (int64_t v = 0; v < t.nvec; v += kGemmVecs) {
      GemmPanel<MR>(a, p.cin, PanelAt(p.we, p.cin, c0 / 8 + v), p.cin, v, std::min<int64_t>(t.nvec, v + kGemmVecs),
                    init, [d, rows, &t](int r, int64_t vec, v8 acc) {
                      if (r < rows) d[vec * t.wp + r] = act8<ACT>(acc);
                    });
    }
  }
}

// Activate input row `iy` of image `img`, channels [c0, c0 + cw), into ring slot `dst`. Pixel by
// pixel (x is read in order; the slot, a few KB per vector, stays in cache for the scattered writes).
template <int64_t ACT>
void FillRow(const Problem& p, Tile& t, int64_t img, int64_t iy, int64_t c0, int64_t cw, v8* dst) {
  const int64_t last = std::min(p.w_in, t.wp - p.pad_left);  // input columns the taps reach
  for (int64_t v = 0; v < t.nvec; ++v) {
    for (int64_t ix = 0; ix < p.pad_left; ++ix) dst[v * t.wp + ix] = splat(0.0f);
    for (int64_t ix = p.pad_left + last; ix < t.wp; ++ix) dst[v * t.wp + ix] = splat(0.0f);
  }
  if (p.we) {
    if (p.mr == kGemmRows) return ExpandRow<ACT, kGemmRows>(p, t, img, iy, c0, last, dst);
    return ExpandRow<ACT, kGemmRowsAlt>(p, t, img, iy, c0, last, dst);
  }
  const float* src = p.x + ((img * p.h + iy) * p.w_in) * p.c + c0;
  const int64_t full = cw / 8, tail = cw % 8;
  // Zero-padded lanes have bias 0, and act(0) == 0 for every Act here: they stay zero.
  for (int64_t ix = 0; ix < last; ++ix) {
    const float* sp = src + ix * p.c;
    v8* d = dst + p.pad_left + ix;
    for (int64_t v = 0; v < full; ++v) {
      const v8 z = load8(sp + 8 * v);
      d[v * t.wp] = ACT == kNone ? z : act8<ACT>(z + t.ib[v]);
    }
    if (tail) {
      const v8 z = load_part(sp + 8 * full, tail);
      d[full * t.wp] = ACT == kNone ? z : act8<ACT>(z + t.ib[full]);
    }
  }
}

// OX output pixels from `ox` for one vector of 8 channels: each weight vector is loaded once per
// OX pixels and, at stride 1, each input vector once per OX + KW - 1 taps. `rows[dy]` point at
// this vector's activated input rows (nullptr: a padding row).
template <int OX, int KW, int S, int64_t ACT>
inline void Pixels(const Problem& p, const v8* const* rows, const v8* w, v8 bias, v8& sum, float* orow,
                   int64_t n, int64_t ox) {
  const int64_t kw = KW > 0 ? KW : p.kw;
  const int64_t s = S > 0 ? S : p.stride;
  v8 acc[OX];
  for (int j = 0; j < OX; ++j) acc[j] = bias;
  for (int64_t dy = 0; dy < p.kh; ++dy) {
    if (rows[dy] == nullptr) continue;
    const v8* ip = rows[dy] + ox * s;
    const v8* wq = w + dy * kw;
    for (int64_t dx = 0; dx < kw; ++dx) {
      const v8 wv = wq[dx];
      for (int j = 0; j < OX; ++j) acc[j] += ip[j * s + dx] * wv;
    }
  }
  for (int j = 0; j < OX; ++j) {
    const v8 y = act8<ACT>(acc[j]);
    store_part(orow + (ox + j) * p.c, y, n);
    sum += y;
  }
}

// One output row for one vector of 8 channels. A tile's OX accumulators are OX independent FMA
// chains: 8 (AVX-512VL's 32 registers hold them) keep both FMA pipes busy through the FMA
// latency, where 4 left them half idle. So a row's tail is one tile of all its remaining pixels
// (4 + 2 + 1 tiles for a 7-pixel tail ran 1, 2 and 4 pixels latency-bound), and rows of 7, 14 or
// 28 pixels (EfficientNet's maps at 224) take 7-pixel tiles: no short tile at all.
constexpr int kDwPixels = kGemmRows == 8 ? 8 : 4;

template <int KW, int S, int64_t ACT>
inline void RowVec(const Problem& p, const v8* const* rows, const v8* w, v8 bias, v8& sum, float* orow,
                   int64_t n) {
  if (kDwPixels == 8 && p.wo % 8 != 0 && p.wo % 7 == 0) {
    for (int64_t ox = 0; ox < p.wo; ox += 7) Pixels<7, KW, S, ACT>(p, rows, w, bias, sum, orow, n, ox);
    return;
  }
  int64_t ox = 0;
  for (; ox + kDwPixels <= p.wo; ox += kDwPixels) Pixels<kDwPixels, KW, S, ACT>(p, rows, w, bias, sum, orow, n, ox);
  switch (p.wo - ox) {
    case 7: if constexpr (kDwPixels > 7) Pixels<7, KW, S, ACT>(p, rows, w, bias, sum, orow, n, ox); break;
    case 6: if constexpr (kDwPixels > 6) Pixels<6, KW, S, ACT>(p, rows, w, bias, sum, orow, n, ox); break;
    case 5: if constexpr (kDwPixels > 5) Pixels<5, KW, S, ACT>(p, rows, w, bias, sum, orow, n, ox); break;
    case 4: if constexpr (kDwPixels > 4) Pixels<4, KW, S, ACT>(p, rows, w, bias, sum, orow, n, ox); break;
    case 3: Pixels<3, KW, S, ACT>(p, rows, w, bias, sum, orow, n, ox); break;
    case 2: Pixels<2, KW, S, ACT>(p, rows, w, bias, sum, orow, n, ox); break;
    case 1: Pixels<1, KW, S, ACT>(p, rows, w, bias, sum, orow, n, ox); break;
    default: break;
  }
}

template <int KW, int S, int64_t ACT>
void Row(const Problem& p, const Tile& t, const v8* const* slots, int64_t cw, v8* sums, float* orow) {
  const v8* rows[16];
  for (int64_t v = 0; v < t.nvec; ++v) {
    for (int64_t dy = 0; dy < p.kh; ++dy) rows[dy] = slots[dy] ? slots[dy] + v * t.wp : nullptr;
    v8 sum = sums[v];
    // A zero-padded channel computes act(0 + 0): silu and relu keep it 0, and store_part and the
    // caller's pooled copy only take the valid lanes.
    RowVec<KW, S, ACT>(p, rows, t.w + v * p.kh * p.kw, t.ob[v], sum, orow + 8 * v,
                  std::min<int64_t>(8, cw - 8 * v));
    sums[v] = sum;
  }
}

// Specialised for the family's 3x3 / 5x5 kernels at stride 1 / 2; any other shape runs generic.
template <int64_t ACT>
void RowAnyShape(const Problem& p, const Tile& t, const v8* const* slots, int64_t cw, v8* sums, float* orow) {
  if (p.kw == 3 && p.stride == 1) Row<3, 1, ACT>(p, t, slots, cw, sums, orow);
  else if (p.kw == 3 && p.stride == 2) Row<3, 2, ACT>(p, t, slots, cw, sums, orow);
  else if (p.kw == 5 && p.stride == 1) Row<5, 1, ACT>(p, t, slots, cw, sums, orow);
  else if (p.kw == 5 && p.stride == 2) Row<5, 2, ACT>(p, t, slots, cw, sums, orow);
  else Row<0, 0, ACT>(p, t, slots, cw, sums, orow);
}

void RunItem(const Problem& p, int64_t item, Tile& t) {
  const int64_t group = item % p.groups;
  const int64_t band = (item / p.groups) % p.bands;
  const int64_t img = item / (p.groups * p.bands);
  const int64_t c0 = group * p.group_ch;
  const int64_t cw = std::min(p.group_ch, p.c - c0);
  if (cw <= 0) return;
  const int64_t oy0 = band * p.band_rows;
  const int64_t oy1 = std::min(p.ho, oy0 + p.band_rows);
  const int64_t taps = p.kh * p.kw;
  t.nvec = (cw + 7) / 8;
  t.wp = (p.wo - 1) * p.stride + p.kw;
  t.ring.resize(static_cast<size_t>(p.kh * t.nvec * t.wp));
  const int64_t v0 = c0 / 8;  // groups start at multiples of 8 channels
  t.w = p.wvec + v0 * taps, t.ob = p.obvec + v0, t.ib = p.ibvec + v0;
  t.sums.assign(static_cast<size_t>(t.nvec), splat(0.0f));  // no allocation once warm
  int64_t slot_row[16];
  std::fill(slot_row, slot_row + 16, INT64_MIN);  // which input row each ring slot holds
  const v8* slots[16];

  for (int64_t oy = oy0; oy < oy1; ++oy) {
    for (int64_t dy = 0; dy < p.kh; ++dy) {
      const int64_t iy = oy * p.stride + dy - p.pad_top;
      if (iy < 0 || iy >= p.h) {
        slots[dy] = nullptr;  // a padding row: its taps add zero
        continue;
      }
      const int64_t s = iy % p.kh;  // the kh rows of a window are distinct mod kh
      v8* buf = t.ring.data() + s * t.nvec * t.wp;
      if (slot_row[s] != iy) {
        switch (p.in_act) {
          case kSilu: FillRow<kSilu>(p, t, img, iy, c0, cw, buf); break;
          case kRelu: FillRow<kRelu>(p, t, img, iy, c0, cw, buf); break;
          case kRelu6: FillRow<kRelu6>(p, t, img, iy, c0, cw, buf); break;
          default: FillRow<kNone>(p, t, img, iy, c0, cw, buf); break;
        }
        slot_row[s] = iy;
      }
      slots[dy] = buf;
    }
    float* orow = p.out + ((img * p.ho + oy) * p.wo) * p.c + c0;
    switch (p.out_act) {
      case kSilu: RowAnyShape<kSilu>(p, t, slots, cw, t.sums.data(), orow); break;
      case kRelu: RowAnyShape<kRelu>(p, t, slots, cw, t.sums.data(), orow); break;
      case kRelu6: RowAnyShape<kRelu6>(p, t, slots, cw, t.sums.data(), orow); break;
      default: RowAnyShape<kNone>(p, t, slots, cw, t.sums.data(), orow); break;
    }
  }
  float* psum = p.partial + (band * p.n + img) * p.c + c0;
  for (int64_t v = 0; v < t.nvec; ++v) store_part(psum + 8 * v, t.sums[v], std::min<int64_t>(8, cw - 8 * v));
}

// `we` the (C_in, C) expand weights as panels, or nullptr (x is the expand output, C channels).
ffi::Error Run(ffi::ThreadPool& pool, ffi::Buffer<ffi::F32>& x, const float* we,
               ffi::Buffer<ffi::F32>& in_bias, ffi::Buffer<ffi::F32>& w, ffi::Buffer<ffi::F32>& out_bias,
               ffi::ResultBuffer<ffi::F32>& out, ffi::ResultBuffer<ffi::F32>& pooled, int64_t stride,
               int64_t pad_top, int64_t pad_left, int64_t in_act, int64_t out_act) {
  auto xd = x.dimensions(), wd = w.dimensions(), od = out->dimensions();
  if (xd.size() != 4 || wd.size() != 3 || od.size() != 4) {
    return ffi::Error::InvalidArgument("fused_depthwise: x and out must be NHWC, w (KH, KW, C)");
  }
  Problem p{};
  p.n = xd[0], p.h = xd[1], p.w_in = xd[2], p.cin = xd[3], p.c = wd[2];
  p.kh = wd[0], p.kw = wd[1], p.ho = od[1], p.wo = od[2];
  if (p.kh > 16 || p.kw > 16) {
    return ffi::Error::InvalidArgument("fused_depthwise: kernels up to 16x16");
  }
  if ((!we && p.cin != p.c) || od[0] != p.n || od[3] != p.c || in_bias.element_count() != p.c ||
      out_bias.element_count() != p.c || pooled->element_count() != p.n * p.c || stride < 1) {
    return ffi::Error::InvalidArgument("fused_depthwise: inconsistent shapes");
  }
  p.x = x.typed_data(), p.out = out->typed_data();
  p.stride = stride, p.pad_top = pad_top, p.pad_left = pad_left, p.in_act = in_act, p.out_act = out_act;
  if (p.n == 0 || p.ho == 0 || p.wo == 0 || p.c == 0) return ffi::Error::Success();

  // Items: channel groups first, then row bands of >= k rows where that leaves fewer than 4 items
  // per thread. With the expand, groups of whole GEMM panels (it reads its group's panels), up to
  // 8 per thread (smaller items even out the threads' shares): a band expands the k - stride rows
  // its neighbour also expands, 57 % more expand work for 7-row bands of 5x5. Without it, groups
  // of >= 64 channels: a band only re-activates its halo, and narrow groups read x piecemeal.
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t unit = we ? kPanelWidth : 8;
  const int64_t max_groups = we ? (p.c + unit - 1) / unit : (p.c + 63) / 64;
  p.groups = std::clamp<int64_t>(((we ? 8 : 4) * threads + p.n - 1) / p.n, 1, max_groups);
  p.group_ch = ((p.c + p.groups - 1) / p.groups + unit - 1) / unit * unit;
  p.groups = (p.c + p.group_ch - 1) / p.group_ch;
  const int64_t want = 4 * threads;
  const int64_t per_image = std::max<int64_t>(1, (want + p.n * p.groups - 1) / (p.n * p.groups));
  p.band_rows = std::max<int64_t>(std::max<int64_t>(p.kh, 4), (p.ho + per_image - 1) / per_image);
  p.bands = (p.ho + p.band_rows - 1) / p.band_rows;

  const std::vector<v8> wvec = PackVectors(w.typed_data(), p.kh * p.kw, p.c, /*vec_major=*/true);
  p.we = we;
  p.mr = TileRows(std::min(p.w_in, (p.wo - 1) * p.stride + p.kw - p.pad_left));
  const std::vector<v8> obvec = PackVectors(out_bias.typed_data(), 1, p.c, false);
  const std::vector<v8> ibvec = PackVectors(in_bias.typed_data(), 1, p.c, false);
  p.wvec = wvec.data(), p.obvec = obvec.data(), p.ibvec = ibvec.data();
  std::vector<float> partial(static_cast<size_t>(p.bands * p.n * p.c));
  p.partial = partial.data();
  ParallelFor(pool, p.n * p.bands * p.groups, [&p](int64_t item) {
    thread_local Tile tile;  // kept across calls: no allocation per call once warm
    RunItem(p, item, tile);
  });

  // The SE mean: the bands' sums over the output rows, per image and channel.
  SumPartials(partial.data(), p.bands, p.n, p.c, p.c, 1.0f / static_cast<float>(p.ho * p.wo),
              pooled->typed_data());
  return ffi::Error::Success();
}

// `we` empty: x is the expand output (or the block input as it is); else the (C_in, C) expand
// weights as panels. One handler for both: kernels/__init__.py registers it under two target
// names so a profile tells the calls apart.
ffi::Error FusedDepthwiseImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> we,
                              ffi::Buffer<ffi::F32> in_bias, ffi::Buffer<ffi::F32> w,
                              ffi::Buffer<ffi::F32> out_bias, ffi::ResultBuffer<ffi::F32> out,
                              ffi::ResultBuffer<ffi::F32> pooled, int64_t stride, int64_t pad_top,
                              int64_t pad_left, int64_t in_act, int64_t out_act) {
  const bool expand = we.element_count() > 0;
  if (expand && (x.dimensions().size() != 4 || w.dimensions().size() != 3 ||
                 !ArePanels(we.dimensions(), x.dimensions()[3], w.dimensions()[2]))) {
    return ffi::Error::InvalidArgument("fused_depthwise: the expand weights must be (C_in, C) as panels");
  }
  return Run(pool, x, expand ? we.typed_data() : nullptr, in_bias, w, out_bias, out, pooled, stride, pad_top,
             pad_left, in_act, out_act);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(EfficientNetJaxFusedDepthwise, FusedDepthwiseImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("in_act")
                                  .Attr<int64_t>("out_act"));
