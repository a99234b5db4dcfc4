// The stem of every EfficientNet at inference with BN folded: a k x k stride-s convolution over a
// few input channels (3x3 over RGB, 27 terms) + bias + activation, as a direct convolution.
//
//   out = act(conv(pad(x), w, stride) + bias)      x (N, H, W, Cin), w (KH, KW, Cin, Cout)
//
// Why: XLA CPU has no good lowering for a convolution this narrow. The model's im2col form
// (pointwise.py) pads the image, writes a (N*Ho*Wo, 27) patch map and runs a K=27 dot: at batch 32
// the pad, the patch map and the activation took ~30 ms of a ~340 ms B0 forward. Here each output
// pixel's 27 inputs are read from a padded copy of the k rows it needs (a few KB, in cache) and
// multiplied into Cout accumulators held in registers, several output pixels at a time so each
// weight vector is loaded once per tile of pixels.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace efficientnet_jax_kernels;  // NOLINT: this file's vocabulary

struct Stem {
  const float* x;
  float* out;
  int64_t n, h, w, cin, cout, kh, kw, stride, pad_top, pad_left, ho, wo, act;
  int64_t bands, band_rows;
  int64_t nvec;          // output vectors of 8 channels (the last zero-padded)
  std::vector<v8> wvec;  // (kh * kw * cin) x nvec weight vectors, zero-padded channels
  std::vector<v8> bvec;  // nvec bias vectors
};

// Output pixels [ox, ox + OX) of one row, output vectors [v0, v0 + NV): `rows[dy]` is the padded
// input row the tap row dy reads (nullptr: a padding row).
template <int NV, int OX, int64_t ACT>
inline void Pixels(const Stem& s, const float* const* rows, int64_t ox, int64_t v0, float* orow) {
  v8 acc[OX][NV];
  for (int j = 0; j < OX; ++j)
    for (int v = 0; v < NV; ++v) acc[j][v] = s.bvec[v0 + v];
  const int64_t taps_per_row = s.kw * s.cin;
  for (int64_t dy = 0; dy < s.kh; ++dy) {
    if (rows[dy] == nullptr) continue;
    const float* r = rows[dy] + ox * s.stride * s.cin;
    const v8* wrow = s.wvec.data() + dy * taps_per_row * s.nvec + v0;
    for (int64_t t = 0; t < taps_per_row; ++t) {  // (dx, ci) in HWIO order: input offset dx*cin+ci == t
      v8 wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = wrow[t * s.nvec + v];
      for (int j = 0; j < OX; ++j) {
        const v8 xin = splat(r[j * s.stride * s.cin + t]);
        for (int v = 0; v < NV; ++v) acc[j][v] += xin * wv[v];
      }
    }
  }
  for (int j = 0; j < OX; ++j) {
    float* o = orow + (ox + j) * s.cout + 8 * v0;
    for (int v = 0; v < NV; ++v) {
      const int64_t valid = std::min<int64_t>(8, s.cout - 8 * (v0 + v));
      store_part(o + 8 * v, act8<ACT>(acc[j][v]), valid);
    }
  }
}

// Output pixels per register tile: with AVX-512VL's 32 vector registers 6 x 4 accumulators
// (4 weight loads per 24 FMAs); AVX2's 16 hold 2 x 4.
constexpr int kStemPixels = kGemmRows == 8 ? 6 : 2;

template <int NV, int64_t ACT>
void RowTile(const Stem& s, const float* const* rows, int64_t v0, float* orow) {
  int64_t ox = 0;
  for (; ox + kStemPixels <= s.wo; ox += kStemPixels) Pixels<NV, kStemPixels, ACT>(s, rows, ox, v0, orow);
  for (; ox < s.wo; ++ox) Pixels<NV, 1, ACT>(s, rows, ox, v0, orow);
}

template <int64_t ACT>
void Row(const Stem& s, const float* const* rows, float* orow) {
  int64_t v0 = 0;
  for (; v0 + 4 <= s.nvec; v0 += 4) RowTile<4, ACT>(s, rows, v0, orow);  // 32 channels a pass
  switch (s.nvec - v0) {
    case 3: RowTile<3, ACT>(s, rows, v0, orow); break;
    case 2: RowTile<2, ACT>(s, rows, v0, orow); break;
    case 1: RowTile<1, ACT>(s, rows, v0, orow); break;
    default: break;
  }
}

void RunBand(const Stem& s, int64_t item, std::vector<float>& buf) {
  const int64_t img = item / s.bands, band = item % s.bands;
  const int64_t oy0 = band * s.band_rows, oy1 = std::min(s.ho, oy0 + s.band_rows);
  const int64_t wp = (s.wo - 1) * s.stride + s.kw;  // padded row width the taps read
  buf.assign(static_cast<size_t>(s.kh * wp * s.cin), 0.0f);
  const float* rows[16];
  const int64_t last = std::min(s.w, wp - s.pad_left);
  for (int64_t oy = oy0; oy < oy1; ++oy) {
    for (int64_t dy = 0; dy < s.kh; ++dy) {
      const int64_t iy = oy * s.stride + dy - s.pad_top;
      if (iy < 0 || iy >= s.h) {
        rows[dy] = nullptr;
        continue;
      }
      float* dst = buf.data() + dy * wp * s.cin;  // zero borders stay zero; the middle is copied
      std::memcpy(dst + s.pad_left * s.cin, s.x + ((img * s.h + iy) * s.w) * s.cin,
                  sizeof(float) * last * s.cin);
      rows[dy] = dst;
    }
    float* orow = s.out + ((img * s.ho + oy) * s.wo) * s.cout;
    switch (s.act) {
      case kSilu: Row<kSilu>(s, rows, orow); break;
      case kRelu: Row<kRelu>(s, rows, orow); break;
      case kRelu6: Row<kRelu6>(s, rows, orow); break;
      default: Row<kNone>(s, rows, orow); break;
    }
  }
}

ffi::Error FusedStemImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                         ffi::Buffer<ffi::F32> bias, ffi::ResultBuffer<ffi::F32> out, int64_t stride,
                         int64_t pad_top, int64_t pad_left, int64_t act) {
  auto xd = x.dimensions(), wd = w.dimensions(), od = out->dimensions();
  if (xd.size() != 4 || wd.size() != 4 || od.size() != 4) {
    return ffi::Error::InvalidArgument("fused_stem: x and out must be NHWC, w HWIO");
  }
  Stem s{};
  s.n = xd[0], s.h = xd[1], s.w = xd[2], s.cin = xd[3];
  s.kh = wd[0], s.kw = wd[1], s.cout = wd[3], s.ho = od[1], s.wo = od[2];
  if (wd[2] != s.cin || od[0] != s.n || od[3] != s.cout || bias.element_count() != s.cout || stride < 1 ||
      s.kh > 16) {
    return ffi::Error::InvalidArgument("fused_stem: inconsistent shapes");
  }
  s.x = x.typed_data(), s.out = out->typed_data();
  s.stride = stride, s.pad_top = pad_top, s.pad_left = pad_left, s.act = act;
  if (s.n == 0 || s.ho == 0 || s.wo == 0 || s.cout == 0) return ffi::Error::Success();
  s.nvec = (s.cout + 7) / 8;
  s.wvec = PackVectors(w.typed_data(), s.kh * s.kw * s.cin, s.cout, /*vec_major=*/false);
  s.bvec = PackVectors(bias.typed_data(), 1, s.cout, false);
  // About 4 items per thread: images, then bands of rows within an image.
  const int64_t want = 4 * std::max<int64_t>(1, pool.num_threads());
  const int64_t per_image = std::max<int64_t>(1, (want + s.n - 1) / s.n);
  s.band_rows = std::max<int64_t>(1, (s.ho + per_image - 1) / per_image);
  s.bands = (s.ho + s.band_rows - 1) / s.band_rows;
  ParallelFor(pool, s.n * s.bands, [&s](int64_t item) {
    thread_local std::vector<float> buf;
    RunBand(s, item, buf);
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(EfficientNetJaxFusedStem, FusedStemImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("stride")
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("act"));
