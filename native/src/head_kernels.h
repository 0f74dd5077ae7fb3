// Fused CPU kernels of the sharded classification head (src/head). Each is one pass over raw rows
// that the head's tile loop would otherwise run as several libtorch operators; GEMMs stay in BLAS.
// None allocates; all run on libtorch's intra-op pool. TypeScript references: src/torch/fused.ts.
#pragma once

#include <cstdint>

namespace plsc {
namespace head {

// How class rows are stored: float32, or 16 bits (bfloat16 / float16) widened to float32 per tile.
enum class Storage { Float32, BFloat16, Float16 };

// Owned target logits of one tile, sorted by (row, col): tile row, batch column, and a value
// (forward: the margin-applied target logit; backward: the margin's slope d psi / d cos).
struct Targets {
  const int64_t* row;
  const int64_t* col;
  const float* value;
  int64_t count;
};

// Forward epilogue over a class-major logits tile [rows, cols] holding W_t (s Xn)^T, in place:
//   x = tile * rowScale[t] (+ rowAdd[t]); maxScaledCosine[b] = max(.., x) (before the margin);
//   targets overwrite their x; colMax[b] = max over the tile of x, both before and after the margin
//   (any upper bound works for the softmax; this one needs no second look at the targets);
//   x = exp(x - colMax[b]); colSum[b] = sum over the tile.
// With maxGiven, colMax is read (the forward's value, for recompute in backward) instead of found.
// rowScale, rowAdd, colSum, maxScaledCosine may be null.
void tileForward(float* tile, int64_t rows, int64_t cols, const float* rowScale, const float* rowAdd, Targets targets,
                 float* colMax, bool maxGiven, float* colSum, float* maxScaledCosine);

// Backward over the tile's exps, in place: g = e * colScale[b] (colScale: exp(tileMax - max) / sum
// times the loss coefficient c); at a target g = (g - c) * slope; then g *= rowScale[t] (if given).
void tileGrad(float* tile, int64_t rows, int64_t cols, const float* colScale, const float* rowScale, Targets targets,
              float coefficient);

// Rows of a class-row store [*, dim] as float32: row i of `out` is store row (index ? index[i] :
// first + i) (out may be null); inverseNorm[i] = 1 / max(|row|, eps) and inverseSquaredNorm[i] its
// square (each may be null).
void loadRows(const void* store, Storage storage, int64_t dim, const int64_t* index, int64_t first, int64_t count,
              float* out, float* inverseNorm, float* inverseSquaredNorm, float eps);

struct SgdStep {
  float lr;
  float momentum;
  float weightDecay;
  // Stochastic rounding of bfloat16 writes: bits are a hash of (key, store row, element, stream).
  uint64_t key;
};

// SGD with momentum on rows of the class store, in place by row index (torch.optim.SGD's order):
//   decay_t = weightDecay - (inverseSquaredNorm ? (grad_t . w_t) * inverseSquaredNorm[t] : 0)
//     (the centre normalization's radial term folded into the decay of w);
//   d = grad_t + decay_t * w_t; m = d + momentum * m; w = w - lr * m.
// grad [count, dim] is float32; weight and momentumStore share `storage`. previousRows (optional,
// float32 [count, dim]) receives each row's weight before the update, widened: the backward GEMM
// that needs the old rows then reads them from there instead of a second gather of the store.
void rowUpdate(void* weight, void* momentumStore, Storage storage, int64_t dim, const int64_t* index, int64_t first,
               int64_t count, const float* grad, const float* inverseSquaredNorm, SgdStep step,
               float* previousRows = nullptr);

// Writes float32 rows [count, dim] into store rows (index ? index[i] : first + i) with the storage's
// rounding: bfloat16 rounds stochastically with bits from (key, store row, element, stream),
// float16 to nearest. Initialization and loading of the store go through it.
// How many threads a kernel's parallel loop over `tasks` units runs on: libtorch's intra-op pool
// when this file is built with OpenMP (as libtorch is); 1 if not, whatever the thread setting.
int64_t kernelThreads(int64_t tasks);

void storeRows(void* store, Storage storage, int64_t dim, const int64_t* index, int64_t first, int64_t count,
               const float* values, uint64_t key, uint32_t stream);

}  // namespace head
}  // namespace plsc
