// JS entry points of the head's fused kernels (head_kernels.h): argument checks, then raw pointers.
#include "handle.h"
#include "head_kernels.h"

#include <algorithm>
#include <string>
#include <vector>

namespace plsc {

namespace {

using head::Storage;
using head::Targets;

[[noreturn]] void fail(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }

// dtype names as the TypeScript side spells them.
std::string dtypeName(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    default: return c10::toString(dtype);
  }
}

const at::Tensor* optionalTensor(const Napi::Value& value, const std::string& what) {
  if (value.IsNull() || value.IsUndefined()) return nullptr;
  return &unwrapTensor(value, what);
}

// A contiguous CPU tensor of `dtype` with `numel` elements (numel < 0: any).
void expect(Napi::Env env, const at::Tensor& t, at::ScalarType dtype, int64_t numel, const std::string& what) {
  if (!t.device().is_cpu()) fail(env, what + ": expected a CPU tensor");
  if (t.scalar_type() != dtype) fail(env, what + ": expected " + dtypeName(dtype) + ", got " + dtypeName(t.scalar_type()));
  if (!t.is_contiguous()) fail(env, what + ": expected a contiguous tensor");
  if (numel >= 0 && t.numel() != numel) fail(env, what + ": expected " + std::to_string(numel) + " elements, got " + std::to_string(t.numel()));
}

float* floats(Napi::Env env, const Napi::Value& value, int64_t numel, const std::string& what) {
  const at::Tensor* t = optionalTensor(value, what);
  if (t == nullptr) return nullptr;
  expect(env, *t, at::kFloat, numel, what);
  return t->data_ptr<float>();
}

Storage storageOf(Napi::Env env, const at::Tensor& store, const std::string& what) {
  if (!store.device().is_cpu() || !store.is_contiguous() || store.dim() != 2) fail(env, what + ": expected a contiguous 2-d CPU tensor");
  switch (store.scalar_type()) {
    case at::kFloat: return Storage::Float32;
    case at::kBFloat16: return Storage::BFloat16;
    case at::kHalf: return Storage::Float16;
    default: fail(env, what + ": class rows are stored as float32, bfloat16 or float16, got " + dtypeName(store.scalar_type()));
  }
}

// Rows named by an int64 index tensor (each in [0, storeRows)) or, for null, `first + i`.
struct RowSelection {
  const int64_t* index;
  int64_t first;
  int64_t count;
};

// `distinct`: the kernel writes the rows from several threads at once, so a row named twice would be
// written concurrently (a race, not two updates): refused.
RowSelection rowSelection(Napi::Env env, const Napi::Value& indexValue, const Napi::Value& firstValue,
                          const Napi::Value& countValue, int64_t storeRows, const std::string& what,
                          bool distinct = false) {
  const at::Tensor* index = optionalTensor(indexValue, what + " index");
  int64_t first = firstValue.As<Napi::Number>().Int64Value();
  int64_t count = countValue.As<Napi::Number>().Int64Value();
  if (count < 0) fail(env, what + ": negative row count");
  if (index == nullptr) {
    if (first < 0 || first + count > storeRows) fail(env, what + ": rows [" + std::to_string(first) + ", " + std::to_string(first + count) + ") outside the " + std::to_string(storeRows) + " stored rows");
    return {nullptr, first, count};
  }
  expect(env, *index, at::kLong, count, what + " index");
  const int64_t* rows = index->data_ptr<int64_t>();
  bool increasing = true;
  for (int64_t i = 0; i < count; i++) {
    if (rows[i] < 0 || rows[i] >= storeRows) fail(env, what + ": row index " + std::to_string(rows[i]) + " outside the " + std::to_string(storeRows) + " stored rows");
    if (i > 0 && rows[i] <= rows[i - 1]) increasing = false;
  }
  if (distinct && !increasing) {
    std::vector<int64_t> sorted(rows, rows + count);
    std::sort(sorted.begin(), sorted.end());
    auto repeated = std::adjacent_find(sorted.begin(), sorted.end());
    if (repeated != sorted.end()) fail(env, what + ": row index " + std::to_string(*repeated) + " appears more than once (the rows are written in parallel: each at most once per call)");
  }
  return {rows, 0, count};
}

Targets targetsOf(Napi::Env env, const Napi::CallbackInfo& info, size_t at, int64_t rows, int64_t cols, const std::string& what) {
  const at::Tensor* row = optionalTensor(info[at], what + " target rows");
  if (row == nullptr) return {nullptr, nullptr, nullptr, 0};
  const int64_t count = row->numel();
  expect(env, *row, at::kLong, count, what + " target rows");
  const at::Tensor& col = unwrapTensor(info[at + 1], what + " target columns");
  expect(env, col, at::kLong, count, what + " target columns");
  const at::Tensor& value = unwrapTensor(info[at + 2], what + " target values");
  expect(env, value, at::kFloat, count, what + " target values");
  const int64_t* r = row->data_ptr<int64_t>();
  const int64_t* c = col.data_ptr<int64_t>();
  for (int64_t i = 0; i < count; i++) {
    if (r[i] < 0 || r[i] >= rows || c[i] < 0 || c[i] >= cols) fail(env, what + ": target (" + std::to_string(r[i]) + ", " + std::to_string(c[i]) + ") outside the tile");
    if (i > 0 && (r[i] < r[i - 1] || (r[i] == r[i - 1] && c[i] <= c[i - 1]))) fail(env, what + ": targets must be sorted by (row, column) without repeats");
  }
  return {r, c, value.data_ptr<float>(), count};
}

// The tile [rows, cols] (float32, contiguous) of argument 0.
at::Tensor tileOf(Napi::Env env, const Napi::Value& value, const std::string& what) {
  const at::Tensor& tile = unwrapTensor(value, what + " tile");
  if (tile.dim() != 2) fail(env, what + ": the tile must be 2-d");
  expect(env, tile, at::kFloat, -1, what + " tile");
  return tile;
}

// headTileForward(tile, rowScale?, rowAdd?, targetRows?, targetCols?, targetValues?, colMax, maxGiven, colSum?, maxScaledCosine?)
Napi::Value TileForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  drainReleases();
  try {
    at::Tensor tile = tileOf(env, info[0], "headTileForward");
    const int64_t rows = tile.size(0), cols = tile.size(1);
    const float* rowScale = floats(env, info[1], rows, "headTileForward rowScale");
    const float* rowAdd = floats(env, info[2], rows, "headTileForward rowAdd");
    Targets targets = targetsOf(env, info, 3, rows, cols, "headTileForward");
    float* colMax = floats(env, info[6], cols, "headTileForward colMax");
    if (colMax == nullptr) fail(env, "headTileForward: colMax is required");
    const bool maxGiven = info[7].As<Napi::Boolean>().Value();
    float* colSum = floats(env, info[8], cols, "headTileForward colSum");
    float* maxScaledCosine = floats(env, info[9], cols, "headTileForward maxScaledCosine");
    head::tileForward(tile.data_ptr<float>(), rows, cols, rowScale, rowAdd, targets, colMax, maxGiven, colSum, maxScaledCosine);
  } catch (...) {
    rethrowAsJs(env, "headTileForward");
  }
  return env.Undefined();
}

// headTileGrad(tile, colScale, rowScale?, targetRows?, targetCols?, targetSlopes?, coefficient)
Napi::Value TileGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  drainReleases();
  try {
    at::Tensor tile = tileOf(env, info[0], "headTileGrad");
    const int64_t rows = tile.size(0), cols = tile.size(1);
    const float* colScale = floats(env, info[1], cols, "headTileGrad colScale");
    if (colScale == nullptr) fail(env, "headTileGrad: colScale is required");
    const float* rowScale = floats(env, info[2], rows, "headTileGrad rowScale");
    Targets targets = targetsOf(env, info, 3, rows, cols, "headTileGrad");
    const float coefficient = static_cast<float>(info[6].As<Napi::Number>().DoubleValue());
    head::tileGrad(tile.data_ptr<float>(), rows, cols, colScale, rowScale, targets, coefficient);
  } catch (...) {
    rethrowAsJs(env, "headTileGrad");
  }
  return env.Undefined();
}

// headLoadRows(store, index?, first, count, out?, inverseNorm?, inverseSquaredNorm?, eps)
Napi::Value LoadRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  drainReleases();
  try {
    const at::Tensor& store = unwrapTensor(info[0], "headLoadRows store");
    const Storage storage = storageOf(env, store, "headLoadRows store");
    const int64_t dim = store.size(1);
    RowSelection rows = rowSelection(env, info[1], info[2], info[3], store.size(0), "headLoadRows");
    float* out = floats(env, info[4], rows.count * dim, "headLoadRows out");
    float* inverseNorm = floats(env, info[5], rows.count, "headLoadRows inverseNorm");
    float* inverseSquaredNorm = floats(env, info[6], rows.count, "headLoadRows inverseSquaredNorm");
    const float eps = static_cast<float>(info[7].As<Napi::Number>().DoubleValue());
    head::loadRows(store.data_ptr(), storage, dim, rows.index, rows.first, rows.count, out, inverseNorm, inverseSquaredNorm, eps);
  } catch (...) {
    rethrowAsJs(env, "headLoadRows");
  }
  return env.Undefined();
}

uint64_t keyOf(const Napi::Value& value) {
  // [seed, step, rank, ...]: each a non-negative integer below 2^53.
  uint64_t key = 0x5eed5eed5eed5eedull;
  Napi::Array parts = value.As<Napi::Array>();
  for (uint32_t i = 0; i < parts.Length(); i++) {
    const uint64_t part = static_cast<uint64_t>(parts.Get(i).As<Napi::Number>().Int64Value());
    key = (key ^ part) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
    key ^= key >> 29;
  }
  return key;
}

// headRowUpdate(weight, momentum, index?, first, count, grad, inverseSquaredNorm?, lr, momentumFactor, weightDecay, key[], previousRows?)
Napi::Value RowUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  drainReleases();
  try {
    const at::Tensor& weight = unwrapTensor(info[0], "headRowUpdate weight");
    const at::Tensor& momentum = unwrapTensor(info[1], "headRowUpdate momentum");
    const Storage storage = storageOf(env, weight, "headRowUpdate weight");
    if (momentum.scalar_type() != weight.scalar_type() || !momentum.sizes().equals(weight.sizes()) || !momentum.is_contiguous()) {
      fail(env, "headRowUpdate: the momentum must be a contiguous tensor of the weight's dtype and shape");
    }
    if (momentum.data_ptr() == weight.data_ptr()) fail(env, "headRowUpdate: weight and momentum are the same tensor");
    const int64_t dim = weight.size(1);
    RowSelection rows = rowSelection(env, info[2], info[3], info[4], weight.size(0), "headRowUpdate", true);
    const float* grad = floats(env, info[5], rows.count * dim, "headRowUpdate grad");
    if (grad == nullptr) fail(env, "headRowUpdate: grad is required");
    const float* inverseSquaredNorm = floats(env, info[6], rows.count, "headRowUpdate inverseSquaredNorm");
    head::SgdStep step{static_cast<float>(info[7].As<Napi::Number>().DoubleValue()),
                       static_cast<float>(info[8].As<Napi::Number>().DoubleValue()),
                       static_cast<float>(info[9].As<Napi::Number>().DoubleValue()), keyOf(info[10])};
    float* previousRows = info.Length() > 11 ? floats(env, info[11], rows.count * dim, "headRowUpdate previousRows") : nullptr;
    head::rowUpdate(weight.data_ptr(), momentum.data_ptr(), storage, dim, rows.index, rows.first, rows.count, grad, inverseSquaredNorm, step,
                    previousRows);
  } catch (...) {
    rethrowAsJs(env, "headRowUpdate");
  }
  return env.Undefined();
}

// headStoreRows(store, index?, first, count, values, key[], stream)
Napi::Value StoreRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  drainReleases();
  try {
    const at::Tensor& store = unwrapTensor(info[0], "headStoreRows store");
    const Storage storage = storageOf(env, store, "headStoreRows store");
    const int64_t dim = store.size(1);
    RowSelection rows = rowSelection(env, info[1], info[2], info[3], store.size(0), "headStoreRows", true);
    const float* values = floats(env, info[4], rows.count * dim, "headStoreRows values");
    if (values == nullptr) fail(env, "headStoreRows: values are required");
    const uint32_t stream = static_cast<uint32_t>(info[6].As<Napi::Number>().Uint32Value());
    head::storeRows(store.data_ptr(), storage, dim, rows.index, rows.first, rows.count, values, keyOf(info[5]), stream);
  } catch (...) {
    rethrowAsJs(env, "headStoreRows");
  }
  return env.Undefined();
}

// headKernelThreads(tasks): the threads a kernel's parallel loop over `tasks` units used.
Napi::Value KernelThreads(const Napi::CallbackInfo& info) {
  const int64_t tasks = info[0].As<Napi::Number>().Int64Value();
  return Napi::Number::New(info.Env(), static_cast<double>(head::kernelThreads(tasks)));
}

}  // namespace

void initHeadKernels(Napi::Env env, Napi::Object exports) {
  exports.Set("headTileForward", Napi::Function::New(env, TileForward));
  exports.Set("headTileGrad", Napi::Function::New(env, TileGrad));
  exports.Set("headLoadRows", Napi::Function::New(env, LoadRows));
  exports.Set("headRowUpdate", Napi::Function::New(env, RowUpdate));
  exports.Set("headStoreRows", Napi::Function::New(env, StoreRows));
  exports.Set("headKernelThreads", Napi::Function::New(env, KernelThreads));
}

}  // namespace plsc
