// Fused CPU kernels of the sharded classification head; see head_kernels.h for what each computes.
// Inner loops are branch-free over contiguous floats so the compiler vectorizes them; the hot
// row functions are also built for x86-64-v3 (AVX2, F16C; picked at load time by the CPU's
// features) next to the baseline build. No fused multiply-add contraction: both builds, and the
// references, round every product, so results do not depend on the CPU (exact resume anywhere).
// no-trapping-math lets the selects of exp's clamping become vector blends (values are unchanged):
// without it the exp loop stays scalar, 8x slower.
#pragma GCC optimize("O3", "fp-contract=off", "no-trapping-math")

#include "head_kernels.h"

#include <ATen/Parallel.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <c10/util/Half.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

namespace plsc {
namespace head {

namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PLSC_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define PLSC_VECTOR_CLONES
#endif
#define PLSC_INLINE inline __attribute__((always_inline))

constexpr int64_t kLanes = 16;

PLSC_INLINE uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
PLSC_INLINE float bitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// exp(x) in float32 (Cephes' range reduction and polynomial, ~1 ulp), branch-free so that loops
// over it vectorize; 0 below the smallest normal result (libm gives a denormal there).
PLSC_INLINE float expApprox(float x) {
  const float hi = 88.3762626647949f;
  const float lo = -87.3365447504019f;
  const float roundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float clamped = std::min(std::max(x, lo), hi);
  float shifted = clamped * 1.44269504088896341f + roundMagic;
  float n = shifted - roundMagic;
  int32_t exponent = static_cast<int32_t>(floatBits(shifted) - floatBits(roundMagic));
  float r = clamped - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * (r * r) + r + 1.0f;
  y = y * bitsFloat(static_cast<uint32_t>(exponent + 127) << 23);
  return x < lo ? 0.0f : y;
}

// 32-bit integer hash (lowbias32); vectorizes (32-bit multiplies only).
PLSC_INLINE uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline uint32_t rowSeed(uint64_t key, int64_t row, uint32_t stream) {
  return static_cast<uint32_t>(mix64(key ^ mix64(static_cast<uint64_t>(row) * 4 + stream)));
}

// One element of a row store: widened to float32 on load, rounded on store.
struct F32Row {
  using T = float;
  static PLSC_INLINE float load(const T* p, int64_t i) { return p[i]; }
  static PLSC_INLINE void store(T* p, int64_t i, float v, uint32_t) { p[i] = v; }
};
struct BF16Row {
  using T = uint16_t;
  static PLSC_INLINE float load(const T* p, int64_t i) { return bitsFloat(static_cast<uint32_t>(p[i]) << 16); }
  // Stochastic rounding: add 16 random bits below the kept ones, truncate. Inf/NaN pass through.
  static PLSC_INLINE void store(T* p, int64_t i, float v, uint32_t seed) {
    uint32_t u = floatBits(v);
    uint32_t noise = hash32(seed + static_cast<uint32_t>(i) * 0x9e3779b9u) & 0xffffu;
    bool special = (u & 0x7f800000u) == 0x7f800000u;
    uint32_t kept = special ? ((u >> 16) | ((u & 0xffffu) != 0 ? 0x40u : 0u)) : ((u + noise) >> 16);
    p[i] = static_cast<uint16_t>(kept);
  }
};
// Round to nearest even, by c10's branch-free bit arithmetic (integer ops and selects, which the
// loops vectorize). GCC 12's _Float16 casts compile to one scalar vcvtps2ph per element (or a
// libgcc call in the baseline build): 4.6x slower for the row update.
struct F16Row {
  using T = uint16_t;
  static PLSC_INLINE float load(const T* p, int64_t i) { return c10::detail::fp16_ieee_to_fp32_value(p[i]); }
  static PLSC_INLINE void store(T* p, int64_t i, float v, uint32_t) { p[i] = c10::detail::fp16_ieee_from_fp32_value(v); }
};

template <typename Row>
PLSC_INLINE float dotRow(const typename Row::T* w, const float* g, int64_t dim) {
  float acc[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= dim; i += kLanes) {
    for (int64_t j = 0; j < kLanes; j++) acc[j] += g[i + j] * Row::load(w, i + j);
  }
  float total = 0;
  for (int64_t j = 0; j < kLanes; j++) total += acc[j];
  for (; i < dim; i++) total += g[i] * Row::load(w, i);
  return total;
}

template <typename Row>
PLSC_INLINE float squaredNorm(const typename Row::T* w, int64_t dim) {
  float acc[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= dim; i += kLanes) {
    for (int64_t j = 0; j < kLanes; j++) {
      float v = Row::load(w, i + j);
      acc[j] += v * v;
    }
  }
  float total = 0;
  for (int64_t j = 0; j < kLanes; j++) total += acc[j];
  for (; i < dim; i++) {
    float v = Row::load(w, i);
    total += v * v;
  }
  return total;
}

// Rows are gathered in a random order, 2 KiB or so each: every row starts with a TLB miss (in a VM
// a walk of two page tables) and a cold hardware prefetcher. Touching the start of the row
// kPrefetchRows ahead starts both early; the prefetcher streams the rest of the row by itself
// (prefetching whole rows measured slower: it crowds out the demand loads).
constexpr int64_t kPrefetchRows = 8;
template <int ReadWrite, typename T>
PLSC_INLINE void prefetchRowStart(const T* row) {
  __builtin_prefetch(row, ReadWrite, 3);
}

template <typename Row>
PLSC_INLINE void loadRowsRange(const void* store, int64_t dim, const int64_t* index, int64_t first, int64_t begin,
                               int64_t end, float* out, float* inverseNorm, float* inverseSquaredNorm, float eps) {
  const auto* base = static_cast<const typename Row::T*>(store);
  for (int64_t r = begin; r < end; r++) {
    if (index != nullptr && r + kPrefetchRows < end) prefetchRowStart<0>(base + index[r + kPrefetchRows] * dim);
    const typename Row::T* src = base + (index != nullptr ? index[r] : first + r) * dim;
    if (out != nullptr) {
      float* dst = out + r * dim;
      for (int64_t i = 0; i < dim; i++) dst[i] = Row::load(src, i);
    }
    if (inverseNorm != nullptr || inverseSquaredNorm != nullptr) {
      float inverse = 1.0f / std::max(std::sqrt(squaredNorm<Row>(src, dim)), eps);
      if (inverseNorm != nullptr) inverseNorm[r] = inverse;
      if (inverseSquaredNorm != nullptr) inverseSquaredNorm[r] = inverse * inverse;
    }
  }
}

template <typename Row>
PLSC_INLINE void rowUpdateRange(void* weight, void* momentumStore, int64_t dim, const int64_t* index, int64_t first,
                                int64_t begin, int64_t end, const float* grad, const float* inverseSquaredNorm,
                                const SgdStep& step, float* previousRows) {
  auto* w = static_cast<typename Row::T*>(weight);
  auto* m = static_cast<typename Row::T*>(momentumStore);
  const float lr = step.lr;
  const float mu = step.momentum;
  for (int64_t r = begin; r < end; r++) {
    if (index != nullptr && r + kPrefetchRows < end) {
      prefetchRowStart<1>(w + index[r + kPrefetchRows] * dim);
      prefetchRowStart<1>(m + index[r + kPrefetchRows] * dim);
    }
    int64_t row = index != nullptr ? index[r] : first + r;
    typename Row::T* wr = w + row * dim;
    typename Row::T* mr = m + row * dim;
    const float* g = grad + r * dim;
    float decay = step.weightDecay;
    if (inverseSquaredNorm != nullptr) decay = decay - dotRow<Row>(wr, g, dim) * inverseSquaredNorm[r];
    uint32_t weightSeed = rowSeed(step.key, row, 0);
    uint32_t momentumSeed = rowSeed(step.key, row, 1);
    if (previousRows != nullptr) {
      float* previous = previousRows + r * dim;
      for (int64_t i = 0; i < dim; i++) previous[i] = Row::load(wr, i);
    }
    for (int64_t i = 0; i < dim; i++) {
      float wv = Row::load(wr, i);
      float d = g[i] + wv * decay;
      float mv = d + mu * Row::load(mr, i);
      Row::store(mr, i, mv, momentumSeed);
      Row::store(wr, i, wv - lr * mv, weightSeed);
    }
  }
}

template <typename Row>
PLSC_INLINE void storeRowsRange(void* store, int64_t dim, const int64_t* index, int64_t first, int64_t begin,
                                int64_t end, const float* values, uint64_t key, uint32_t stream) {
  auto* base = static_cast<typename Row::T*>(store);
  for (int64_t r = begin; r < end; r++) {
    int64_t row = index != nullptr ? index[r] : first + r;
    typename Row::T* dst = base + row * dim;
    const float* src = values + r * dim;
    uint32_t seed = rowSeed(key, row, stream);
    for (int64_t i = 0; i < dim; i++) Row::store(dst, i, src[i], seed);
  }
}

// The per-storage entry points the pool's workers call, each built for AVX2 and the baseline.
#define PLSC_BY_STORAGE(NAME, ROW)                                                                                    \
  PLSC_VECTOR_CLONES void loadRows##NAME(const void* store, int64_t dim, const int64_t* index, int64_t first,         \
                                         int64_t begin, int64_t end, float* out, float* inverseNorm,                  \
                                         float* inverseSquaredNorm, float eps) {                                      \
    loadRowsRange<ROW>(store, dim, index, first, begin, end, out, inverseNorm, inverseSquaredNorm, eps);              \
  }                                                                                                                   \
  PLSC_VECTOR_CLONES void rowUpdate##NAME(void* weight, void* momentumStore, int64_t dim, const int64_t* index,       \
                                          int64_t first, int64_t begin, int64_t end, const float* grad,               \
                                          const float* inverseSquaredNorm, const SgdStep& step,                       \
                                          float* previousRows) {                                                      \
    rowUpdateRange<ROW>(weight, momentumStore, dim, index, first, begin, end, grad, inverseSquaredNorm, step,          \
                        previousRows);                                                                                \
  }                                                                                                                   \
  PLSC_VECTOR_CLONES void storeRows##NAME(void* store, int64_t dim, const int64_t* index, int64_t first,              \
                                          int64_t begin, int64_t end, const float* values, uint64_t key,              \
                                          uint32_t stream) {                                                          \
    storeRowsRange<ROW>(store, dim, index, first, begin, end, values, key, stream);                                   \
  }

PLSC_BY_STORAGE(F32, F32Row)
PLSC_BY_STORAGE(BF16, BF16Row)
PLSC_BY_STORAGE(F16, F16Row)
#undef PLSC_BY_STORAGE

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// float16 rows on CPUs with F16C: each row is widened into an L1 scratch row with vcvtph2ps, run
// through the float32 math, and narrowed with vcvtps2ph (round to nearest even, as F16Row::store):
// the same operations in the same order as the F16Row path, so the results are bit-identical, at a
// fraction of the bit arithmetic's cost. Rows wider than the scratch take the F16Row path.
#define PLSC_HAS_F16C_PATH 1
constexpr int64_t kF16ScratchFloats = 2048;
#define PLSC_F16C __attribute__((target("arch=x86-64-v3")))

PLSC_F16C PLSC_INLINE void widenHalfRow(const uint16_t* src, float* dst, int64_t dim) {
  int64_t i = 0;
  for (; i + 8 <= dim; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < dim; i++) dst[i] = F16Row::load(src, i);
}

PLSC_F16C PLSC_INLINE void narrowHalfRow(const float* src, uint16_t* dst, int64_t dim) {
  int64_t i = 0;
  for (; i + 8 <= dim; i += 8) {
    const __m128i half = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), half);
  }
  for (; i < dim; i++) F16Row::store(dst, i, src[i], 0);
}

PLSC_F16C void loadRowsF16C(const void* store, int64_t dim, const int64_t* index, int64_t first, int64_t begin,
                            int64_t end, float* out, float* inverseNorm, float* inverseSquaredNorm, float eps) {
  const auto* base = static_cast<const uint16_t*>(store);
  float scratch[kF16ScratchFloats];
  for (int64_t r = begin; r < end; r++) {
    if (index != nullptr && r + kPrefetchRows < end) prefetchRowStart<0>(base + index[r + kPrefetchRows] * dim);
    const uint16_t* src = base + (index != nullptr ? index[r] : first + r) * dim;
    float* wide = out != nullptr ? out + r * dim : scratch;
    widenHalfRow(src, wide, dim);
    if (inverseNorm != nullptr || inverseSquaredNorm != nullptr) {
      float inverse = 1.0f / std::max(std::sqrt(squaredNorm<F32Row>(wide, dim)), eps);
      if (inverseNorm != nullptr) inverseNorm[r] = inverse;
      if (inverseSquaredNorm != nullptr) inverseSquaredNorm[r] = inverse * inverse;
    }
  }
}

PLSC_F16C void rowUpdateF16C(void* weight, void* momentumStore, int64_t dim, const int64_t* index, int64_t first,
                             int64_t begin, int64_t end, const float* grad, const float* inverseSquaredNorm,
                             const SgdStep& step, float* previousRows) {
  auto* w = static_cast<uint16_t*>(weight);
  auto* m = static_cast<uint16_t*>(momentumStore);
  float weightRow[kF16ScratchFloats];
  float momentumRow[kF16ScratchFloats];
  for (int64_t r = begin; r < end; r++) {
    if (index != nullptr && r + kPrefetchRows < end) {
      prefetchRowStart<1>(w + index[r + kPrefetchRows] * dim);
      prefetchRowStart<1>(m + index[r + kPrefetchRows] * dim);
    }
    const int64_t row = index != nullptr ? index[r] : first + r;
    widenHalfRow(w + row * dim, weightRow, dim);
    widenHalfRow(m + row * dim, momentumRow, dim);
    rowUpdateRange<F32Row>(weightRow, momentumRow, dim, nullptr, 0, 0, 1, grad + r * dim,
                           inverseSquaredNorm != nullptr ? inverseSquaredNorm + r : nullptr, step,
                           previousRows != nullptr ? previousRows + r * dim : nullptr);
    narrowHalfRow(momentumRow, m + row * dim, dim);
    narrowHalfRow(weightRow, w + row * dim, dim);
  }
}

PLSC_F16C void storeRowsF16C(void* store, int64_t dim, const int64_t* index, int64_t first, int64_t begin, int64_t end,
                             const float* values) {
  auto* base = static_cast<uint16_t*>(store);
  for (int64_t r = begin; r < end; r++) {
    const int64_t row = index != nullptr ? index[r] : first + r;
    narrowHalfRow(values + r * dim, base + row * dim, dim);
  }
}

// PLSC_F16C=0 keeps float16 rows on the F16Row path (the test that both paths agree bit for bit).
bool useF16C(int64_t dim) {
  static const bool supported = [] {
    const char* setting = std::getenv("PLSC_F16C");
    const bool disabled = setting != nullptr && std::string(setting) == "0";
    return !disabled && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  }();
  return supported && dim <= kF16ScratchFloats;
}
#endif

// Rows of work per task: enough that a task is worth its scheduling.
int64_t rowGrain(int64_t dim) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(dim, 1)); }

// Columns [b0, b1) of the forward epilogue (see tileForward). The loops over b run on restrict
// pointers: the compiler cannot otherwise tell the tile row from the column vectors, and keeps them scalar.
PLSC_VECTOR_CLONES void tileForwardColumns(float* tile, int64_t rows, int64_t cols, int64_t b0, int64_t b1,
                                           const float* rowScale, const float* rowAdd, Targets targets, float* colMax,
                                           bool maxGiven, float* colSum, float* maxScaledCosine) {
  const int64_t width = b1 - b0;
  float* __restrict__ maxima = colMax + b0;
  float* __restrict__ sums = colSum != nullptr ? colSum + b0 : nullptr;
  float* __restrict__ cosines = maxScaledCosine != nullptr ? maxScaledCosine + b0 : nullptr;
  if (!maxGiven) std::fill(maxima, maxima + width, -std::numeric_limits<float>::infinity());
  int64_t k = 0;
  for (int64_t t = 0; t < rows; t++) {
    float* __restrict__ x = tile + t * cols + b0;
    if (rowScale != nullptr) {
      const float scale = rowScale[t];
      for (int64_t b = 0; b < width; b++) x[b] = x[b] * scale;
    }
    if (rowAdd != nullptr) {
      const float add = rowAdd[t];
      for (int64_t b = 0; b < width; b++) x[b] = x[b] + add;
    }
    if (cosines != nullptr) {
      for (int64_t b = 0; b < width; b++) cosines[b] = std::max(cosines[b], x[b]);
    }
    if (!maxGiven) {
      for (int64_t b = 0; b < width; b++) maxima[b] = std::max(maxima[b], x[b]);
    }
    for (; k < targets.count && targets.row[k] == t; k++) {
      const int64_t b = targets.col[k] - b0;
      if (b < 0 || b >= width) continue;
      x[b] = targets.value[k];
      if (!maxGiven) maxima[b] = std::max(maxima[b], x[b]);
    }
  }
  if (sums != nullptr) std::fill(sums, sums + width, 0.0f);
  for (int64_t t = 0; t < rows; t++) {
    float* __restrict__ x = tile + t * cols + b0;
    if (sums != nullptr) {
      for (int64_t b = 0; b < width; b++) {
        const float e = expApprox(x[b] - maxima[b]);
        x[b] = e;
        sums[b] += e;
      }
    } else {
      for (int64_t b = 0; b < width; b++) x[b] = expApprox(x[b] - maxima[b]);
    }
  }
}

// Columns [b0, b1) of the gradient pass (see tileGrad). A target's column is left out of the
// vector loop of its row and done on its own: each column has at most one target.
PLSC_VECTOR_CLONES void tileGradColumns(float* tile, int64_t rows, int64_t cols, int64_t b0, int64_t b1,
                                        const float* colScale, const float* rowScale, Targets targets,
                                        float coefficient) {
  int64_t k = 0;
  for (int64_t t = 0; t < rows; t++) {
    float* x = tile + t * cols;
    int64_t from = b0;
    auto scaleUpTo = [&](int64_t to) {
      if (rowScale != nullptr) {
        const float scale = rowScale[t];
        for (int64_t b = from; b < to; b++) x[b] = x[b] * colScale[b] * scale;
      } else {
        for (int64_t b = from; b < to; b++) x[b] = x[b] * colScale[b];
      }
    };
    for (; k < targets.count && targets.row[k] == t; k++) {
      const int64_t b = targets.col[k];
      if (b < b0 || b >= b1) continue;
      scaleUpTo(b);
      float g = (x[b] * colScale[b] - coefficient) * targets.value[k];
      x[b] = rowScale != nullptr ? g * rowScale[t] : g;
      from = b + 1;
    }
    scaleUpTo(b1);
  }
}

// Columns per task: tiles are class-major, so a task walks every row over its columns.
int64_t columnGrain(int64_t cols) { return std::max<int64_t>(8, cols / std::max(1, at::get_num_threads())); }

}  // namespace

void tileForward(float* tile, int64_t rows, int64_t cols, const float* rowScale, const float* rowAdd, Targets targets,
                 float* colMax, bool maxGiven, float* colSum, float* maxScaledCosine) {
  at::parallel_for(0, cols, columnGrain(cols), [&](int64_t b0, int64_t b1) {
    tileForwardColumns(tile, rows, cols, b0, b1, rowScale, rowAdd, targets, colMax, maxGiven, colSum, maxScaledCosine);
  });
}

void tileGrad(float* tile, int64_t rows, int64_t cols, const float* colScale, const float* rowScale, Targets targets,
              float coefficient) {
  at::parallel_for(0, cols, columnGrain(cols), [&](int64_t b0, int64_t b1) {
    tileGradColumns(tile, rows, cols, b0, b1, colScale, rowScale, targets, coefficient);
  });
}

void loadRows(const void* store, Storage storage, int64_t dim, const int64_t* index, int64_t first, int64_t count,
              float* out, float* inverseNorm, float* inverseSquaredNorm, float eps) {
  at::parallel_for(0, count, rowGrain(dim), [&](int64_t begin, int64_t end) {
    switch (storage) {
      case Storage::Float32: return loadRowsF32(store, dim, index, first, begin, end, out, inverseNorm, inverseSquaredNorm, eps);
      case Storage::BFloat16: return loadRowsBF16(store, dim, index, first, begin, end, out, inverseNorm, inverseSquaredNorm, eps);
      case Storage::Float16:
#ifdef PLSC_HAS_F16C_PATH
        if (useF16C(dim)) return loadRowsF16C(store, dim, index, first, begin, end, out, inverseNorm, inverseSquaredNorm, eps);
#endif
        return loadRowsF16(store, dim, index, first, begin, end, out, inverseNorm, inverseSquaredNorm, eps);
    }
  });
}

void rowUpdate(void* weight, void* momentumStore, Storage storage, int64_t dim, const int64_t* index, int64_t first,
               int64_t count, const float* grad, const float* inverseSquaredNorm, SgdStep step, float* previousRows) {
  at::parallel_for(0, count, rowGrain(dim), [&](int64_t begin, int64_t end) {
    switch (storage) {
      case Storage::Float32: return rowUpdateF32(weight, momentumStore, dim, index, first, begin, end, grad, inverseSquaredNorm, step, previousRows);
      case Storage::BFloat16: return rowUpdateBF16(weight, momentumStore, dim, index, first, begin, end, grad, inverseSquaredNorm, step, previousRows);
      case Storage::Float16:
#ifdef PLSC_HAS_F16C_PATH
        if (useF16C(dim)) return rowUpdateF16C(weight, momentumStore, dim, index, first, begin, end, grad, inverseSquaredNorm, step, previousRows);
#endif
        return rowUpdateF16(weight, momentumStore, dim, index, first, begin, end, grad, inverseSquaredNorm, step, previousRows);
    }
  });
}

void storeRows(void* store, Storage storage, int64_t dim, const int64_t* index, int64_t first, int64_t count,
               const float* values, uint64_t key, uint32_t stream) {
  at::parallel_for(0, count, rowGrain(dim), [&](int64_t begin, int64_t end) {
    switch (storage) {
      case Storage::Float32: return storeRowsF32(store, dim, index, first, begin, end, values, key, stream);
      case Storage::BFloat16: return storeRowsBF16(store, dim, index, first, begin, end, values, key, stream);
      case Storage::Float16:
#ifdef PLSC_HAS_F16C_PATH
        if (useF16C(dim)) return storeRowsF16C(store, dim, index, first, begin, end, values);
#endif
        return storeRowsF16(store, dim, index, first, begin, end, values, key, stream);
    }
  });
}

int64_t kernelThreads(int64_t tasks) {
  std::atomic<uint64_t> seen{0};
  at::parallel_for(0, tasks, 1, [&](int64_t, int64_t) { seen.fetch_or(uint64_t{1} << (at::get_thread_num() & 63)); });
  return __builtin_popcountll(seen.load());
}

}  // namespace head
}  // namespace plsc
