// Fused 1x1 convolution for XLA CPU inference, called through the XLA FFI.
//
//   out = act((x * gate) @ w + bias) + residual
//
// x (N, H, W, K) NHWC float32, w (K, C) as panels, bias (C); gate (N, K) scales x's channels per
// image (the Squeeze-Excitation gate; empty: none) and residual (N, H, W, C) is added last (empty:
// none). Instead of the gate, the SE's own inputs may come (pooled (N, K), its two 1x1 convs
// w1 (K, S), b1 (S), w2 (S, K), b2 (K)): gate = sigmoid(act_se(pooled @ w1 + b1) @ w2 + b2),
// computed here first, which spares XLA's five small ops per block.
// An MBConv's project conv with its folded BN, SE gate and skip connection (also a Fused-MBConv's),
// the head conv with its activation, or the classifier, in one pass.
//
// Why: at batch 1 XLA CPU runs these as a gate multiply, a dot and an add, each handed between
// threads (B0 @224: ~65 dots of ~20 us to 0.4 ms), and its dot reaches 50-110 GFLOP/s on two cores
// at M = 49-784 rows; the register tiles here (common.h) run at the core's FMA peak.
//
// w arrives as panels (common.h; kernels/__init__.py packs them). Work: (image, block of row
// tiles, block of panels) items, drained by the caller and XLA's intra-op pool (ParallelFor).

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace efficientnet_jax_kernels;  // NOLINT: this file's vocabulary

// The SE inputs, when the kernel computes the gates: the first item of an image computes its
// gate (the others wait for it), so the gates are spread over the threads at large batches and,
// at batch 1, computed while the pool's thread wakes up.
struct SqueezeExcite {
  const float *pooled, *w1, *b1, *w2, *b2;
  int64_t channels, act;
  float *gates, *hidden;                    // (N, K), (N, S)
  std::unique_ptr<std::atomic<int>[]> state;  // per image: 0 to do, 1 being computed, 2 done
};

struct Problem {
  const float *x, *gate, *w, *bias, *residual;  // gate, residual: nullptr when absent; w: panels
  SqueezeExcite* se;                            // nullptr: `gate` as given
  float* out;
  int64_t n, m, k, c;                           // m = H * W rows per image
  int64_t mr;                                   // row-tile height (TileRows)
  int64_t m_blocks, m_tiles_per_block, v_blocks, panels_per_block, chunk_tiles;
};

// gate = sigmoid(act(in @ w1 + b1) @ w2 + b2) for one image's pooled `in` (k): both products as
// rows of the weights times broadcast values into vector accumulators (w1 (k, s), w2 (s, k),
// row-major), 8 vectors of the output at a time.
template <int64_t ACT>
void SqueezeExciteGate(const float* in, const float* w1, const float* b1, const float* w2, const float* b2,
                       int64_t k, int64_t s, float* hidden, float* gate) {
  static constexpr int64_t kChunk = 64;  // outputs per pass: 8 accumulators
  auto matvec = [](const float* v, const float* w, const float* b, int64_t rows, int64_t cols, float* out) {
    for (int64_t c0 = 0; c0 < cols; c0 += kChunk) {
      const int64_t nv = (std::min(kChunk, cols - c0) + 7) / 8;
      v8 acc[kChunk / 8];
      for (int64_t j = 0; j < nv; ++j) acc[j] = load_part(b + c0 + 8 * j, std::min<int64_t>(8, cols - c0 - 8 * j));
      for (int64_t r = 0; r < rows; ++r) {
        const v8 x = splat(v[r]);
        const float* wr = w + r * cols + c0;
        for (int64_t j = 0; j < nv; ++j) acc[j] += x * load_part(wr + 8 * j, std::min<int64_t>(8, cols - c0 - 8 * j));
      }
      for (int64_t j = 0; j < nv; ++j) store_part(out + c0 + 8 * j, acc[j], std::min<int64_t>(8, cols - c0 - 8 * j));
    }
  };
  matvec(in, w1, b1, k, s, hidden);
  for (int64_t j = 0; j < s; j += 8) {
    const int64_t valid = std::min<int64_t>(8, s - j);
    store_part(hidden + j, act8<ACT>(load_part(hidden + j, valid)), valid);
  }
  matvec(hidden, w2, b2, s, k, gate);
  for (int64_t i = 0; i < k; i += 8) {  // sigmoid(z) = 1 / (1 + 2^(-z log2 e))
    const int64_t valid = std::min<int64_t>(8, k - i);
    const v8 z = load_part(gate + i, valid);
    store_part(gate + i, recip8(splat(1.0f) + exp2_8(z * splat(-1.4426950408889634f))), valid);
  }
}

// Image `img`'s gate, computed by the first caller.
const float* GateOf(const Problem& p, int64_t img) {
  SqueezeExcite& se = *p.se;
  float* gate = se.gates + img * p.k;
  int expected = 0;
  if (se.state[img].compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
    float* hidden = se.hidden + img * se.channels;
    const float* in = se.pooled + img * p.k;
    switch (se.act) {
      case kSilu: SqueezeExciteGate<kSilu>(in, se.w1, se.b1, se.w2, se.b2, p.k, se.channels, hidden, gate); break;
      case kRelu: SqueezeExciteGate<kRelu>(in, se.w1, se.b1, se.w2, se.b2, p.k, se.channels, hidden, gate); break;
      case kRelu6: SqueezeExciteGate<kRelu6>(in, se.w1, se.b1, se.w2, se.b2, p.k, se.channels, hidden, gate); break;
      default: SqueezeExciteGate<kNone>(in, se.w1, se.b1, se.w2, se.b2, p.k, se.channels, hidden, gate); break;
    }
    se.state[img].store(2, std::memory_order_release);
  } else {
    while (se.state[img].load(std::memory_order_acquire) != 2) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
  }
  return gate;
}

// Scratch kept by each thread across calls (no allocation per call once warm).
struct Scratch {
  std::vector<float> pad;    // a partial row tile
  std::vector<v8> scaled;    // a panel times the SE gate
};

template <int64_t ACT, int MR>
void RunItem(const Problem& p, int64_t item, Scratch& scratch) {
  const int64_t vb = item % p.v_blocks;
  const int64_t mb = (item / p.v_blocks) % p.m_blocks;
  const int64_t img = item / (p.v_blocks * p.m_blocks);
  const int64_t nvec = (p.c + 7) / 8;
  const int64_t v_begin = vb * p.panels_per_block * kGemmVecs;
  const int64_t v_end = std::min(nvec, v_begin + p.panels_per_block * kGemmVecs);
  const int64_t r_begin = mb * p.m_tiles_per_block * MR;
  const int64_t r_end = std::min(p.m, r_begin + p.m_tiles_per_block * MR);
  if (v_begin >= v_end || r_begin >= r_end) return;
  const float* x = p.x + img * p.m * p.k;
  const float* gate = p.se ? GateOf(p, img) : p.gate ? p.gate + img * p.k : nullptr;
  const float* res = p.residual ? p.residual + img * p.m * p.c : nullptr;
  float* out = p.out + img * p.m * p.c;
  auto init = [&p](int64_t v) { return load_part(p.bias + 8 * v, std::min<int64_t>(8, p.c - 8 * v)); };

  // Chunks of rows small enough to stay in cache while every panel of the item passes over them;
  // each panel is read once per chunk (at batch 1 and 7x7 maps: once).
  for (int64_t c0 = r_begin; c0 < r_end; c0 += p.chunk_tiles * MR) {
    const int64_t c1 = std::min(r_end, c0 + p.chunk_tiles * MR);
    for (int64_t v = v_begin; v < v_end; v += kGemmVecs) {
      const int64_t v1 = std::min(v_end, v + kGemmVecs);
      const float* panel = PanelAt(p.w, p.k, v);
      if (gate) panel = ScalePanel(panel, p.k, gate, scratch.scaled);
      for (int64_t r0 = c0; r0 < c1; r0 += MR) {
        const int64_t rows = std::min<int64_t>(MR, c1 - r0);
        const float* a = rows < MR ? PadRows(x + r0 * p.k, p.k, rows, p.k, MR, scratch.pad) : x + r0 * p.k;
        GemmPanel<MR>(a, p.k, panel, p.k, v, v1, init, [&](int r, int64_t vec, v8 acc) {
          if (r >= rows) return;
          const int64_t valid = std::min<int64_t>(8, p.c - 8 * vec);
          const int64_t at = (r0 + r) * p.c + 8 * vec;
          v8 y = act8<ACT>(acc);
          if (res) y += load_part(res + at, valid);
          store_part(out + at, y, valid);
        });
      }
    }
  }
}

template <int MR>
void RunItemAct(const Problem& p, int64_t act, int64_t item, Scratch& scratch) {
  switch (act) {
    case kSilu: return RunItem<kSilu, MR>(p, item, scratch);
    case kRelu: return RunItem<kRelu, MR>(p, item, scratch);
    case kRelu6: return RunItem<kRelu6, MR>(p, item, scratch);
    default: return RunItem<kNone, MR>(p, item, scratch);
  }
}

ffi::Error FusedPointwiseImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> gate,
                              ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> residual,
                              ffi::Buffer<ffi::F32> pooled, ffi::Buffer<ffi::F32> w1, ffi::Buffer<ffi::F32> b1,
                              ffi::Buffer<ffi::F32> w2, ffi::Buffer<ffi::F32> b2, ffi::ResultBuffer<ffi::F32> out,
                              int64_t act, int64_t se_act) {
  auto xd = x.dimensions(), od = out->dimensions();
  if (xd.size() != 4 || od.size() != 4) return ffi::Error::InvalidArgument("fused_pointwise: x and out must be NHWC");
  Problem p{};
  p.n = xd[0], p.m = xd[1] * xd[2], p.k = xd[3], p.c = od[3];
  const bool has_gate = gate.element_count() > 0, has_residual = residual.element_count() > 0;
  const bool has_se = pooled.element_count() > 0;
  const int64_t se_ch = has_se ? b1.element_count() : 0;
  if (!ArePanels(w.dimensions(), p.k, p.c)) {
    return ffi::Error::InvalidArgument("fused_pointwise: w must be the (K, C) weights as panels");
  }
  if (od[0] != p.n || od[1] * od[2] != p.m || bias.element_count() != p.c ||
      (has_gate && gate.element_count() != p.n * p.k) ||
      (has_residual && residual.element_count() != p.n * p.m * p.c) ||
      (has_se && (has_gate || pooled.element_count() != p.n * p.k || w1.element_count() != p.k * se_ch ||
                  w2.element_count() != se_ch * p.k || b2.element_count() != p.k))) {
    return ffi::Error::InvalidArgument("fused_pointwise: inconsistent shapes");
  }
  if (p.n == 0 || p.m == 0 || p.c == 0) return ffi::Error::Success();
  p.x = x.typed_data(), p.w = w.typed_data(), p.bias = bias.typed_data(), p.out = out->typed_data();
  p.gate = has_gate ? gate.typed_data() : nullptr;
  p.residual = has_residual ? residual.typed_data() : nullptr;
  std::vector<float> gates;
  SqueezeExcite se{};
  if (has_se) {
    gates.resize(static_cast<size_t>(p.n * (p.k + se_ch)));
    se = {pooled.typed_data(), w1.typed_data(), b1.typed_data(), w2.typed_data(), b2.typed_data(), se_ch, se_act,
          gates.data(), gates.data() + p.n * p.k, std::make_unique<std::atomic<int>[]>(static_cast<size_t>(p.n))};
    for (int64_t i = 0; i < p.n; ++i) se.state[i].store(0, std::memory_order_relaxed);
    p.se = &se;
  }

  // About 4 items per thread: panels split first (each thread streams its own weights, which at
  // batch 1 come from memory once per image), then row tiles.
  const int64_t want = 4 * std::max<int64_t>(1, pool.num_threads());
  p.mr = TileRows(p.m);
  const int64_t m_tiles = (p.m + p.mr - 1) / p.mr;
  const int64_t panels = (p.c + kPanelWidth - 1) / kPanelWidth;
  p.v_blocks = std::clamp<int64_t>((want + p.n - 1) / p.n, 1, panels);
  p.panels_per_block = (panels + p.v_blocks - 1) / p.v_blocks;
  p.v_blocks = (panels + p.panels_per_block - 1) / p.panels_per_block;
  p.m_blocks = std::clamp<int64_t>((want + p.n * p.v_blocks - 1) / (p.n * p.v_blocks), 1, m_tiles);
  p.m_tiles_per_block = (m_tiles + p.m_blocks - 1) / p.m_blocks;
  p.m_blocks = (m_tiles + p.m_tiles_per_block - 1) / p.m_tiles_per_block;
  p.chunk_tiles = std::max<int64_t>(1, (256 << 10) / (p.k * 4 * p.mr));  // ~256 KB of x rows

  ParallelFor(pool, p.n * p.m_blocks * p.v_blocks, [&p, act](int64_t item) {
    thread_local Scratch scratch;
    if (p.mr == kGemmRows) RunItemAct<kGemmRows>(p, act, item, scratch);
    else RunItemAct<kGemmRowsAlt>(p, act, item, scratch);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(EfficientNetJaxFusedPointwise, FusedPointwiseImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("act")
                                  .Attr<int64_t>("se_act"));

// The register tile's width in vectors of 8 floats, for the Python side's panel packing.
extern "C" int64_t EfficientNetJaxGemmVecs() { return kGemmVecs; }
