// The generic libtorch bridge: tensor handles, a boxed-dispatcher call for any aten:: operator,
// autograd entry points (backward, grads, hooks, custom functions whose backward is JS),
// and process-wide settings (allocator policy, threads, seed).
#include "handle.h"
#include "lifeline.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/version.h>

#include <dlfcn.h>
#include <malloc.h>
#include <sys/mman.h>

#include <atomic>
#include <deque>
#include <cstdlib>
#include <list>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace plsc {

namespace {

std::thread::id g_mainThread;
std::mutex g_releaseMutex;
std::vector<std::function<void()>> g_pendingReleases;
std::atomic<bool> g_hasPendingReleases{false};

// ---------------------------------------------------------------------------------------------
// Allocator policy. glibc returns every free()d block above M_MMAP_THRESHOLD to the OS, so each
// op re-faults its output pages; below it, blocks of varied sizes fragment the heap and resident
// memory creeps up. Blocks of 256 KiB and more therefore come from our own cache of mmap'd
// blocks in size classes (at most 1/8 rounding waste), handed back out on the next request of the
// same class; the cache is bounded (PLSC_CPU_CACHE_MB, default 4096) and evicts largest first.
// Smaller blocks stay with glibc, whose trim threshold we raise.
// ---------------------------------------------------------------------------------------------
class CachingCpuAllocator;
CachingCpuAllocator* g_allocator = nullptr;

class CachingCpuAllocator final : public c10::Allocator {
 public:
  static constexpr size_t kCachedFrom = 256u << 10;

  CachingCpuAllocator(c10::Allocator* small, size_t cacheLimitBytes) : small_(small), cacheLimit_(cacheLimitBytes) {}

  static size_t sizeClass(size_t nbytes) {
    size_t top = size_t(1) << (63 - __builtin_clzll(nbytes));
    size_t granularity = std::max<size_t>(64u << 10, top >> 3);
    return (nbytes + granularity - 1) / granularity * granularity;
  }

  c10::DataPtr allocate(size_t nbytes) const override {
    if (nbytes < kCachedFrom) return small_->allocate(nbytes);
    size_t rounded = sizeClass(nbytes);
    void* data = takeCached(rounded);
    if (data == nullptr) {
      data = mapBlock(rounded);
      if (data == nullptr) {
        emptyCache();
        data = mapBlock(rounded);
        if (data == nullptr) throw std::bad_alloc();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      live_[data] = rounded;
    }
    // data == context, as Allocator::raw_allocate (used by mkldnn) requires.
    return {data, data, &CachingCpuAllocator::deleteBlock, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &CachingCpuAllocator::deleteBlock; }

  size_t cachedBytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

  void emptyCache() const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& entry : free_) munmap(entry.second, entry.first);
    free_.clear();
    cached_ = 0;
  }

 private:
  // Blocks from kHugeFrom up start on a 2 MiB boundary and ask for transparent huge pages (Debian
  // enables them on request only): a head's class rows are read in random order, one TLB miss per
  // 4 KiB page otherwise (a 1M-class shard spans a million pages, a few thousand huge ones).
  static constexpr size_t kHugePage = 2u << 20;
  static constexpr size_t kHugeFrom = 4u << 20;

  static void* mapBlock(size_t size) {
    if (size < kHugeFrom || !hugePagesWanted()) {
      void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      return data == MAP_FAILED ? nullptr : data;
    }
    void* raw = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    uintptr_t aligned = (start + kHugePage - 1) & ~uintptr_t(kHugePage - 1);
    if (aligned > start) munmap(raw, aligned - start);
    uintptr_t end = start + size + kHugePage;
    if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - (aligned + size));
    void* data = reinterpret_cast<void*>(aligned);
    madvise(data, size, MADV_HUGEPAGE);  // advice only: a kernel without THP keeps small pages
    return data;
  }

  // PLSC_HUGE_PAGES=0 keeps every block on small pages.
  static bool hugePagesWanted() {
    static const bool wanted = [] {
      const char* env = std::getenv("PLSC_HUGE_PAGES");
      return env == nullptr || std::string(env) != "0";
    }();
    return wanted;
  }

  static void deleteBlock(void* data) { g_allocator->release(data); }

  void release(void* data) const {
    size_t size = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = live_.find(data);
      if (it != live_.end()) {
        size = it->second;
        live_.erase(it);
      }
    }
    if (size == 0) {
      small_->raw_deleter()(data);  // a small block handed out through raw_allocate
      return;
    }
    giveBack(data, size);
  }

  void* takeCached(size_t size) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(size);
    if (it == free_.end()) return nullptr;
    void* data = it->second;
    free_.erase(it);
    cached_ -= size;
    return data;
  }

  void giveBack(void* data, size_t size) const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (size > cacheLimit_) {
      munmap(data, size);
      return;
    }
    while (cached_ + size > cacheLimit_ && !free_.empty()) {
      // Evict the largest cached blocks first: they are the least likely to fit a new request.
      auto last = std::prev(free_.end());
      cached_ -= last->first;
      munmap(last->second, last->first);
      free_.erase(last);
    }
    free_.emplace(size, data);
    cached_ += size;
  }

  c10::Allocator* small_;
  size_t cacheLimit_;
  mutable std::mutex mutex_;
  mutable std::multimap<size_t, void*> free_;
  mutable std::unordered_map<void*, size_t> live_;
  mutable size_t cached_ = 0;
};

void installAllocatorPolicy() {
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_TOP_PAD, 16 << 20);
  size_t limitMb = 4096;
  if (const char* env = std::getenv("PLSC_CPU_CACHE_MB")) limitMb = std::strtoull(env, nullptr, 10);
  static CachingCpuAllocator allocator(c10::GetDefaultCPUAllocator(), limitMb << 20);
  g_allocator = &allocator;
  c10::SetCPUAllocator(&allocator, /*priority=*/10);
}

// Debian's libtorch runs GEMM inside OpenBLAS, which keeps a thread pool of its own. The BLAS
// library is loaded as a dependency of libtorch (not in the global scope), so look it up by name.
std::string g_blasThreadControl = "none";

void setBlasThreads(int threads) {
  using SetThreads = void (*)(int);
  const char* libraries[] = {"libopenblas.so.0", "libblas.so.3", "libmkl_rt.so", "libmkl_rt.so.2"};
  const char* functions[] = {"openblas_set_num_threads", "goto_set_num_threads", "MKL_Set_Num_Threads"};
  for (const char* library : libraries) {
    void* handle = dlopen(library, RTLD_LAZY | RTLD_NOLOAD);
    if (handle == nullptr) continue;
    for (const char* function : functions) {
      if (auto fn = reinterpret_cast<SetThreads>(dlsym(handle, function))) {
        fn(threads);
        g_blasThreadControl = std::string(library) + ":" + function;
        dlclose(handle);
        return;
      }
    }
    dlclose(handle);
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor handles.
// ---------------------------------------------------------------------------------------------
// V8 is told about tensor memory so that its GC collects forgotten handles, but once per
// storage: views, in-place results and repeated wraps of one tensor share a storage, and counting
// each of them made V8 see hundreds of MB appear and vanish every optimizer step and run a full
// mark-compact each time (20 per SGD step on IR-18).
struct AccountedStorage {
  int64_t handles = 0;
  int64_t bytes = 0;
};
struct StorageKey {
  napi_env env;
  const c10::StorageImpl* storage;
  bool operator==(const StorageKey& other) const { return env == other.env && storage == other.storage; }
};
struct StorageKeyHash {
  size_t operator()(const StorageKey& key) const {
    return std::hash<const void*>()(key.env) * 31 + std::hash<const void*>()(key.storage);
  }
};
std::mutex g_accountingMutex;
std::unordered_map<StorageKey, AccountedStorage, StorageKeyHash> g_accounted;
std::unordered_map<napi_env, int64_t> g_reportedPerEnv;

int64_t reportedBytes(napi_env env) {
  std::lock_guard<std::mutex> lock(g_accountingMutex);
  auto found = g_reportedPerEnv.find(env);
  return found == g_reportedPerEnv.end() ? 0 : found->second;
}

// Registers one more handle on `storage`; returns the bytes to report to V8 (non-zero only for
// the first handle).
int64_t accountStorage(napi_env env, const c10::Storage& storage) {
  std::lock_guard<std::mutex> lock(g_accountingMutex);
  auto& entry = g_accounted[StorageKey{env, storage.unsafeGetStorageImpl()}];
  if (entry.handles++ > 0) return 0;
  entry.bytes = static_cast<int64_t>(storage.nbytes());
  g_reportedPerEnv[env] += entry.bytes;
  return entry.bytes;
}

// Drops one handle from `storage`; returns the bytes to un-report (non-zero for the last handle).
int64_t unaccountStorage(napi_env env, const c10::Storage& storage) {
  std::lock_guard<std::mutex> lock(g_accountingMutex);
  auto found = g_accounted.find(StorageKey{env, storage.unsafeGetStorageImpl()});
  if (found == g_accounted.end()) return 0;
  if (--found->second.handles > 0) return 0;
  int64_t bytes = found->second.bytes;
  g_accounted.erase(found);
  g_reportedPerEnv[env] -= bytes;
  return bytes;
}

const char* dtypeName(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return c10::toString(type);
  }
}

bool parseDtype(const std::string& name, at::ScalarType* out) {
  static const std::unordered_map<std::string, at::ScalarType> names = {
      {"float32", at::kFloat}, {"float", at::kFloat},   {"float64", at::kDouble},
      {"double", at::kDouble}, {"float16", at::kHalf},  {"half", at::kHalf},
      {"bfloat16", at::kBFloat16}, {"int64", at::kLong}, {"long", at::kLong},
      {"int32", at::kInt},     {"int", at::kInt},        {"int16", at::kShort},
      {"int8", at::kChar},     {"uint8", at::kByte},     {"bool", at::kBool}};
  auto it = names.find(name);
  if (it == names.end()) return false;
  *out = it->second;
  return true;
}

// JS holds a tensor as a number: 2^52 + the index of a slot in this table + the slot's generation
// (bumped at each release, so a stale number is refused instead of reaching a newer tensor). The
// 2^52 offset keeps handles apart from the numbers JS passes as ordinary arguments. A
// handle object per tensor (napi_wrap, a reference and a GC finalizer each) cost more than the
// operator itself for small tensors; the JS Tensor frees its slot by dispose(), by its tidy()
// scope, or through a FinalizationRegistry once no scope owns it. Used on the JS thread only.
struct TensorSlot {
  at::Tensor tensor;
  c10::Storage accounted;  // the storage counted in V8's external memory, if any
  uint32_t generation = 0;
};
constexpr uint64_t kSlotIndexBits = 24;
constexpr uint64_t kSlotIndexMask = (uint64_t(1) << kSlotIndexBits) - 1;
constexpr uint32_t kGenerationMask = (uint32_t(1) << 28) - 1;  // index and generation fit in 52 bits
constexpr uint64_t kHandleBase = uint64_t(1) << 52;
// A deque: growing it does not move the tensors callers hold. Never destroyed: at process exit
// its tensors would be freed after the allocator they came from (a static) is gone.
std::deque<TensorSlot>& g_slots = *new std::deque<TensorSlot>();
std::vector<uint32_t>& g_freeSlots = *new std::vector<uint32_t>();

double slotHandle(uint32_t index) {
  return double(kHandleBase | (uint64_t(g_slots[index].generation) << kSlotIndexBits) | index);
}

bool looksLikeHandle(const Napi::Value& value) {
  if (!value.IsNumber()) return false;
  double number = value.As<Napi::Number>().DoubleValue();
  return number >= double(kHandleBase) && number < double(kHandleBase << 1) && number == double(uint64_t(number));
}

// The live slot a JS value names, or null.
TensorSlot* findSlot(const Napi::Value& value) {
  if (!looksLikeHandle(value)) return nullptr;
  uint64_t handle = uint64_t(value.As<Napi::Number>().DoubleValue()) - kHandleBase;
  uint64_t index = handle & kSlotIndexMask;
  if (index >= g_slots.size()) return nullptr;
  TensorSlot& slot = g_slots[index];
  if (uint64_t(slot.generation) != (handle >> kSlotIndexBits) || !slot.tensor.defined()) return nullptr;
  return &slot;
}

void releaseSlot(Napi::Env env, TensorSlot& slot, uint32_t index) {
  slot.tensor.reset();
  slot.generation = (slot.generation + 1) & kGenerationMask;
  if (slot.accounted) {
    int64_t bytes = unaccountStorage(env, slot.accounted);
    slot.accounted = c10::Storage();
    if (bytes > 0) Napi::MemoryManagement::AdjustExternalMemory(env, -bytes);
  }
  g_freeSlots.push_back(index);
}

const at::Tensor& slotTensor(const Napi::CallbackInfo& info, const char* what) {
  TensorSlot* slot = findSlot(info[0]);
  if (slot == nullptr) {
    if (looksLikeHandle(info[0])) throw Napi::Error::New(info.Env(), std::string(what) + ": tensor was already disposed");
    throw Napi::TypeError::New(info.Env(), std::string(what) + ": expected a tensor handle");
  }
  return slot->tensor;
}

// tensorRelease(handle): frees the slot now; a stale or unknown handle is ignored (idempotent).
Napi::Value TensorRelease(const Napi::CallbackInfo& info) {
  TensorSlot* slot = findSlot(info[0]);
  if (slot != nullptr) {
    uint64_t handle = uint64_t(info[0].As<Napi::Number>().DoubleValue()) - kHandleBase;
    releaseSlot(info.Env(), *slot, uint32_t(handle & kSlotIndexMask));
  }
  return info.Env().Undefined();
}

Napi::Value TensorIsLive(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), findSlot(info[0]) != nullptr);
}

// Tells V8 about the memory (once per storage) so that its GC collects forgotten tensors. The
// JS side calls it when no tidy() scope owns the tensor any more: a scoped tensor cannot be
// collected before its scope ends anyway, and reporting the activations of every forward pass
// made V8 run a mark-compact per 64 MB of them.
Napi::Value TensorReportMemory(const Napi::CallbackInfo& info) {
  TensorSlot* slot = findSlot(info[0]);
  if (slot != nullptr && !slot->accounted && slot->tensor.has_storage()) {
    // Held (not just keyed by pointer) so the address cannot be reused while it is counted.
    slot->accounted = slot->tensor.storage();
    int64_t bytes = accountStorage(info.Env(), slot->accounted);
    if (bytes > 0) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), bytes);
  }
  return info.Env().Undefined();
}

// Live slots, for tests of lifetime.
Napi::Value TensorLiveCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(g_slots.size() - g_freeSlots.size()));
}

Napi::Value TensorShape(const Napi::CallbackInfo& info) {
  const auto& t = slotTensor(info, "shape");
  auto sizes = t.sizes();
  auto out = Napi::Array::New(info.Env(), sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) out.Set(i, Napi::Number::New(info.Env(), double(sizes[i])));
  return out;
}
Napi::Value TensorStrides(const Napi::CallbackInfo& info) {
  const auto& t = slotTensor(info, "strides");
  auto strides = t.strides();
  auto out = Napi::Array::New(info.Env(), strides.size());
  for (size_t i = 0; i < strides.size(); ++i) out.Set(i, Napi::Number::New(info.Env(), double(strides[i])));
  return out;
}
Napi::Value TensorDtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtypeName(slotTensor(info, "dtype").scalar_type()));
}
Napi::Value TensorDevice(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), slotTensor(info, "device").device().str());
}
Napi::Value TensorNumel(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(slotTensor(info, "numel").numel()));
}
Napi::Value TensorDim(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(slotTensor(info, "dim").dim()));
}
Napi::Value TensorIsContiguous(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), slotTensor(info, "isContiguous").is_contiguous());
}
Napi::Value TensorStorageId(const Napi::CallbackInfo& info) {
  const auto& t = slotTensor(info, "storageId");
  return Napi::Number::New(info.Env(), double(reinterpret_cast<uintptr_t>(t.storage().unsafeGetStorageImpl())));
}
Napi::Value TensorItem(const Napi::CallbackInfo& info) {
  try {
    const auto& t = slotTensor(info, "item");
    at::Scalar s = t.item();
    if (s.isBoolean()) return Napi::Boolean::New(info.Env(), s.toBool());
    if (s.isIntegral(false)) return Napi::Number::New(info.Env(), double(s.toLong()));
    return Napi::Number::New(info.Env(), s.toDouble());
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    rethrowAsJs(info.Env(), "item");
  }
}
// A fresh JS-owned ArrayBuffer holding a contiguous CPU copy.
Napi::Value TensorCopyToBuffer(const Napi::CallbackInfo& info) {
  try {
    at::Tensor t = slotTensor(info, "copyToBuffer").detach().to(at::kCPU).contiguous();
    size_t nbytes = t.numel() * t.element_size();
    auto buffer = Napi::ArrayBuffer::New(info.Env(), nbytes);
    if (nbytes > 0) std::memcpy(buffer.Data(), t.data_ptr(), nbytes);
    return buffer;
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    rethrowAsJs(info.Env(), "copyToBuffer");
  }
}
// An ArrayBuffer over the tensor's own memory (contiguous CPU tensors only); keeps it alive.
Napi::Value TensorViewBuffer(const Napi::CallbackInfo& info) {
  const auto& t = slotTensor(info, "viewBuffer");
  if (!t.is_cpu() || !t.is_contiguous()) {
    throw Napi::Error::New(info.Env(), "viewBuffer: needs a contiguous CPU tensor");
  }
  size_t nbytes = t.numel() * t.element_size();
  if (nbytes == 0) return Napi::ArrayBuffer::New(info.Env(), 0);
  auto* keep = new at::Tensor(t);
  return Napi::ArrayBuffer::New(info.Env(), t.data_ptr(), nbytes,
                                [](Napi::Env, void*, at::Tensor* kept) { delete kept; }, keep);
}
// Copies bytes from a typed array / ArrayBuffer into this (contiguous CPU) tensor.
Napi::Value TensorCopyFromBuffer(const Napi::CallbackInfo& info) {
  const auto& t = slotTensor(info, "copyFromBuffer");
  if (!t.is_cpu() || !t.is_contiguous()) {
    throw Napi::Error::New(info.Env(), "copyFromBuffer: needs a contiguous CPU tensor");
  }
  const uint8_t* src = nullptr;
  size_t length = 0;
  if (info[1].IsTypedArray()) {
    auto ta = info[1].As<Napi::TypedArray>();
    src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    length = ta.ByteLength();
  } else if (info[1].IsArrayBuffer()) {
    auto ab = info[1].As<Napi::ArrayBuffer>();
    src = static_cast<const uint8_t*>(ab.Data());
    length = ab.ByteLength();
  } else {
    throw Napi::TypeError::New(info.Env(), "copyFromBuffer: expected a typed array or ArrayBuffer");
  }
  size_t nbytes = t.numel() * t.element_size();
  if (length != nbytes) {
    throw Napi::RangeError::New(info.Env(), "copyFromBuffer: got " + std::to_string(length) +
                                                 " bytes for a tensor of " + std::to_string(nbytes));
  }
  if (nbytes > 0) std::memcpy(t.data_ptr(), src, nbytes);
  return info.Env().Undefined();
}
Napi::Value TensorRequiresGrad(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), slotTensor(info, "requiresGrad").requires_grad());
}
Napi::Value TensorSetRequiresGrad(const Napi::CallbackInfo& info) {
  try {
    at::Tensor t = slotTensor(info, "requiresGrad_");
    t.requires_grad_(info[1].ToBoolean().Value());
    return info.Env().Undefined();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    rethrowAsJs(info.Env(), "requiresGrad_");
  }
}
Napi::Value TensorGrad(const Napi::CallbackInfo& info) {
  return wrapTensor(info.Env(), slotTensor(info, "grad").grad());
}
Napi::Value TensorSetGrad(const Napi::CallbackInfo& info) {
  try {
    at::Tensor t = slotTensor(info, "setGrad");
    if (info[1].IsNull() || info[1].IsUndefined()) {
      t.mutable_grad().reset();
    } else {
      t.mutable_grad() = unwrapTensor(info[1], "setGrad");
    }
    return info.Env().Undefined();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    rethrowAsJs(info.Env(), "setGrad");
  }
}
Napi::Value TensorIsLeaf(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), slotTensor(info, "isLeaf").is_leaf());
}
Napi::Value TensorGradFn(const Napi::CallbackInfo& info) {
  const auto& fn = slotTensor(info, "gradFn").grad_fn();
  if (!fn) return info.Env().Null();
  return Napi::String::New(info.Env(), fn->name());
}
Napi::Value TensorRetain(const Napi::CallbackInfo& info) {
  try {
    at::Tensor t = slotTensor(info, "retainGrad");
    t.retain_grad();
    return info.Env().Undefined();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    rethrowAsJs(info.Env(), "retainGrad");
  }
}

// A JS function kept alive by C++ objects that may die on any thread.
struct SharedJsFunction {
  explicit SharedJsFunction(Napi::Function fn) : ref(Napi::Persistent(fn)) {}
  ~SharedJsFunction() = default;
  Napi::FunctionReference ref;
};

std::shared_ptr<SharedJsFunction> makeSharedFunction(Napi::Function fn) {
  return std::shared_ptr<SharedJsFunction>(new SharedJsFunction(fn), [](SharedJsFunction* p) {
    releaseOnMainThread([p]() { delete p; });
  });
}

at::Tensor callJsGradientFunction(SharedJsFunction& fn, const char* what, const at::Tensor& grad) {
  if (!onMainThread()) {
    throw std::runtime_error(std::string(what) + ": a JavaScript hook ran off the main thread");
  }
  Napi::Env env = fn.ref.Env();
  Napi::HandleScope scope(env);
  Napi::Value result;
  try {
    result = fn.ref.Call({wrapTensor(env, grad)});
  } catch (const Napi::Error& e) {
    throw std::runtime_error(std::string(what) + ": " + e.Message());
  }
  if (result.IsUndefined() || result.IsNull()) return at::Tensor();
  return unwrapTensor(result, what);
}

// tensorRegisterHook(handle, fn): calls fn(grad) on the main thread while backward runs; fn may
// return a replacement gradient.
Napi::Value TensorRegisterHook(const Napi::CallbackInfo& info) {
  at::Tensor t = slotTensor(info, "registerHook");
  if (!info[1].IsFunction()) throw Napi::TypeError::New(info.Env(), "registerHook: expected a function");
  auto fn = makeSharedFunction(info[1].As<Napi::Function>());
  try {
    unsigned id = t.register_hook([fn](const at::Tensor& grad) -> at::Tensor {
      return callJsGradientFunction(*fn, "tensor hook", grad);
    });
    return Napi::Number::New(info.Env(), id);
  } catch (...) {
    rethrowAsJs(info.Env(), "registerHook");
  }
}

// ---------------------------------------------------------------------------------------------
// The operator bridge: any registered operator, by schema name and overload, boxed.
// ---------------------------------------------------------------------------------------------
struct OpEntry {
  c10::OperatorHandle handle;
  std::string name;
};
std::vector<OpEntry> g_ops;
std::unordered_map<std::string, size_t> g_opIndex;

[[noreturn]] void argError(Napi::Env env, const OpEntry& op, const c10::Argument& arg, const std::string& msg) {
  throw Napi::TypeError::New(env, op.name + ": argument '" + arg.name() + "' (" + arg.type()->str() + "): " + msg);
}

int64_t toInt64(Napi::Env env, const OpEntry& op, const c10::Argument& arg, const Napi::Value& v) {
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  if (v.IsBigInt()) {
    bool lossless = false;
    return v.As<Napi::BigInt>().Int64Value(&lossless);
  }
  if (!v.IsNumber()) argError(env, op, arg, "expected an integer, got " + v.ToString().Utf8Value());
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d))) {
    argError(env, op, arg, "expected an integer, got " + std::to_string(d));
  }
  return static_cast<int64_t>(d);
}

c10::IValue toIValue(Napi::Env env, const OpEntry& op, const c10::Argument& arg, const c10::TypePtr& type,
                     const Napi::Value& v);

// A tensor argument; the error text is built only when it is not a live handle (this runs for
// every tensor of every operator call).
const at::Tensor& tensorArg(Napi::Env env, const OpEntry& op, const c10::Argument& arg, const Napi::Value& v) {
  TensorSlot* slot = findSlot(v);
  if (slot == nullptr) argError(env, op, arg, looksLikeHandle(v) ? "tensor was already disposed" : "expected a tensor");
  return slot->tensor;
}

c10::IValue toList(Napi::Env env, const OpEntry& op, const c10::Argument& arg, const c10::TypePtr& elem,
                   const Napi::Value& v) {
  std::vector<Napi::Value> items;
  if (v.IsArray()) {
    auto arr = v.As<Napi::Array>();
    items.reserve(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); ++i) items.push_back(arr.Get(i));
  } else if (v.IsNumber() && arg.N()) {
    // int[2] accepts a single value, as in Python.
    for (int i = 0; i < *arg.N(); ++i) items.push_back(v);
  } else if (v.IsNumber()) {
    items.push_back(v);
  } else {
    argError(env, op, arg, "expected an array");
  }
  switch (elem->kind()) {
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType: {
      c10::List<int64_t> list;
      list.reserve(items.size());
      for (auto& item : items) list.push_back(toInt64(env, op, arg, item));
      return list;
    }
    case c10::TypeKind::FloatType: {
      c10::List<double> list;
      for (auto& item : items) {
        if (!item.IsNumber()) argError(env, op, arg, "expected numbers");
        list.push_back(item.As<Napi::Number>().DoubleValue());
      }
      return list;
    }
    case c10::TypeKind::BoolType: {
      c10::List<bool> list;
      for (auto& item : items) list.push_back(item.ToBoolean().Value());
      return list;
    }
    case c10::TypeKind::TensorType: {
      c10::List<at::Tensor> list;
      list.reserve(items.size());
      for (auto& item : items) list.push_back(tensorArg(env, op, arg, item));
      return list;
    }
    case c10::TypeKind::OptionalType: {
      auto inner = elem->expectRef<c10::OptionalType>().getElementType();
      if (inner->kind() == c10::TypeKind::TensorType) {
        c10::List<c10::optional<at::Tensor>> list;
        for (auto& item : items) {
          if (item.IsNull() || item.IsUndefined()) {
            list.push_back(c10::nullopt);
          } else {
            list.push_back(tensorArg(env, op, arg, item));
          }
        }
        return list;
      }
      break;
    }
    default:
      break;
  }
  argError(env, op, arg, "unsupported list element type");
}

c10::IValue toIValue(Napi::Env env, const OpEntry& op, const c10::Argument& arg, const c10::TypePtr& type,
                     const Napi::Value& v) {
  switch (type->kind()) {
    case c10::TypeKind::TensorType:
      return tensorArg(env, op, arg, v);
    case c10::TypeKind::OptionalType:
      if (v.IsNull() || v.IsUndefined()) return c10::IValue();
      return toIValue(env, op, arg, type->expectRef<c10::OptionalType>().getElementType(), v);
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType:
      // Schemas spell ScalarType arguments as int; dtypes may be given by name.
      if (v.IsString()) return toIValue(env, op, arg, c10::ScalarTypeType::get(), v);
      return toInt64(env, op, arg, v);
    case c10::TypeKind::FloatType:
      if (!v.IsNumber()) argError(env, op, arg, "expected a number");
      return v.As<Napi::Number>().DoubleValue();
    case c10::TypeKind::BoolType:
      if (!v.IsBoolean()) argError(env, op, arg, "expected a boolean");
      return v.As<Napi::Boolean>().Value();
    case c10::TypeKind::NumberType: {
      if (v.IsBoolean()) return at::Scalar(v.As<Napi::Boolean>().Value());
      if (!v.IsNumber()) argError(env, op, arg, "expected a number");
      double d = v.As<Napi::Number>().DoubleValue();
      if (std::isfinite(d) && d == static_cast<double>(static_cast<int64_t>(d)) && std::abs(d) < 9.0e15) {
        return at::Scalar(static_cast<int64_t>(d));
      }
      return at::Scalar(d);
    }
    case c10::TypeKind::StringType:
      if (!v.IsString()) argError(env, op, arg, "expected a string");
      return v.As<Napi::String>().Utf8Value();
    case c10::TypeKind::ScalarTypeType: {
      if (v.IsString()) {
        at::ScalarType st;
        if (!parseDtype(v.As<Napi::String>().Utf8Value(), &st)) {
          argError(env, op, arg, "unknown dtype '" + v.As<Napi::String>().Utf8Value() + "'");
        }
        return static_cast<int64_t>(st);
      }
      return toInt64(env, op, arg, v);
    }
    case c10::TypeKind::LayoutType:
    case c10::TypeKind::MemoryFormatType:
      return toInt64(env, op, arg, v);
    case c10::TypeKind::DeviceObjType: {
      if (!v.IsString()) argError(env, op, arg, "expected a device string such as 'cpu' or 'cuda:0'");
      try {
        return c10::Device(v.As<Napi::String>().Utf8Value());
      } catch (...) {
        argError(env, op, arg, "invalid device '" + v.As<Napi::String>().Utf8Value() + "'");
      }
    }
    case c10::TypeKind::ListType:
      return toList(env, op, arg, type->expectRef<c10::ListType>().getElementType(), v);
    default:
      argError(env, op, arg, "this argument type is not supported by the bridge");
  }
}

Napi::Value fromIValue(Napi::Env env, const c10::IValue& value) {
  if (value.isTensor()) return wrapTensor(env, value.toTensor());
  if (value.isNone()) return env.Null();
  if (value.isInt()) return Napi::Number::New(env, double(value.toInt()));
  if (value.isDouble()) return Napi::Number::New(env, value.toDouble());
  if (value.isBool()) return Napi::Boolean::New(env, value.toBool());
  if (value.isString()) return Napi::String::New(env, value.toStringRef());
  if (value.isScalar()) {
    auto s = value.toScalar();
    if (s.isBoolean()) return Napi::Boolean::New(env, s.toBool());
    if (s.isIntegral(false)) return Napi::Number::New(env, double(s.toLong()));
    return Napi::Number::New(env, s.toDouble());
  }
  if (value.isTensorList()) {
    auto list = value.toTensorVector();
    auto out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) out.Set(i, wrapTensor(env, list[i]));
    return out;
  }
  if (value.isTuple()) {
    const auto& elems = value.toTupleRef().elements();
    auto out = Napi::Array::New(env, elems.size());
    for (size_t i = 0; i < elems.size(); ++i) out.Set(i, fromIValue(env, elems[i]));
    return out;
  }
  if (value.isList()) {
    auto list = value.toListRef();
    auto out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) out.Set(i, fromIValue(env, list[i]));
    return out;
  }
  if (value.isIntList()) {
    auto list = value.toIntVector();
    auto out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) out.Set(i, Napi::Number::New(env, double(list[i])));
    return out;
  }
  return Napi::String::New(env, value.tagKind());
}

Napi::Value OpLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "op: expected an operator name such as 'aten::add'");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  std::string overload = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  std::string key = overload.empty() ? name : name + "." + overload;
  auto found = g_opIndex.find(key);
  if (found != g_opIndex.end()) return Napi::Number::New(env, double(found->second));
  auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
  if (!handle) {
    throw Napi::Error::New(env, "unknown operator '" + key + "' (no such schema registered with the dispatcher)");
  }
  g_ops.push_back({*handle, key});
  g_opIndex[key] = g_ops.size() - 1;
  return Napi::Number::New(env, double(g_ops.size() - 1));
}

Napi::Value OpSchema(const Napi::CallbackInfo& info) {
  size_t id = static_cast<size_t>(info[0].As<Napi::Number>().Int64Value());
  if (id >= g_ops.size()) throw Napi::RangeError::New(info.Env(), "opSchema: bad operator id");
  return Napi::String::New(info.Env(), c10::toString(g_ops[id].handle.schema()));
}

Napi::Value OpCall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  drainReleases();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "callOp: expected an operator id");
  size_t id = static_cast<size_t>(info[0].As<Napi::Number>().Int64Value());
  if (id >= g_ops.size()) throw Napi::RangeError::New(env, "callOp: bad operator id");
  const OpEntry& op = g_ops[id];
  const auto& schema = op.handle.schema();
  const auto& args = schema.arguments();
  // The operator's arguments follow the id as arguments of this call: reading info[i] is much
  // cheaper than napi_get_element on an array.
  size_t given = info.Length() - 1;
  if (given > args.size()) {
    throw Napi::TypeError::New(env, op.name + ": takes at most " + std::to_string(args.size()) + " arguments, got " +
                                        std::to_string(given));
  }
  torch::jit::Stack stack;
  stack.reserve(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& arg = args[i];
    Napi::Value v = info[i + 1];
    if (v.IsUndefined()) {
      if (arg.default_value()) {
        stack.push_back(*arg.default_value());
        continue;
      }
      if (arg.type()->kind() == c10::TypeKind::OptionalType) {
        stack.emplace_back();
        continue;
      }
      argError(env, op, arg, "missing required argument");
    }
    stack.push_back(toIValue(env, op, arg, arg.type(), v));
  }
  try {
    op.handle.callBoxed(&stack);
  } catch (...) {
    rethrowAsJs(env, op.name);
  }
  if (stack.size() == 1) return fromIValue(env, stack[0]);
  auto out = Napi::Array::New(env, stack.size());
  for (size_t i = 0; i < stack.size(); ++i) out.Set(i, fromIValue(env, stack[i]));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tensors from JS memory.
// ---------------------------------------------------------------------------------------------
std::vector<int64_t> readShape(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(what) + ": shape must be an array");
  auto arr = v.As<Napi::Array>();
  std::vector<int64_t> shape(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value d = arr.Get(i);
    if (!d.IsNumber() || d.As<Napi::Number>().DoubleValue() < 0 ||
        d.As<Napi::Number>().DoubleValue() != double(d.As<Napi::Number>().Int64Value())) {
      throw Napi::TypeError::New(env, std::string(what) + ": shape entries must be non-negative integers");
    }
    shape[i] = d.As<Napi::Number>().Int64Value();
  }
  return shape;
}

// fromBuffer(typedArrayOrArrayBuffer, shape, dtype, copy): zero-copy unless copy is true.
Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  drainReleases();
  Napi::Object holder;
  uint8_t* data = nullptr;
  size_t length = 0;
  if (info[0].IsTypedArray()) {
    auto ta = info[0].As<Napi::TypedArray>();
    holder = ta.ArrayBuffer();
    data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    length = ta.ByteLength();
  } else if (info[0].IsArrayBuffer()) {
    auto ab = info[0].As<Napi::ArrayBuffer>();
    holder = ab;
    data = static_cast<uint8_t*>(ab.Data());
    length = ab.ByteLength();
  } else {
    throw Napi::TypeError::New(env, "fromBuffer: expected a typed array or ArrayBuffer");
  }
  auto shape = readShape(env, info[1], "fromBuffer");
  at::ScalarType dtype;
  if (!info[2].IsString() || !parseDtype(info[2].As<Napi::String>().Utf8Value(), &dtype)) {
    throw Napi::TypeError::New(env, "fromBuffer: unknown dtype");
  }
  bool copy = info.Length() > 3 && info[3].ToBoolean().Value();
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  size_t nbytes = size_t(numel) * c10::elementSize(dtype);
  if (nbytes != length) {
    throw Napi::RangeError::New(env, "fromBuffer: " + std::to_string(length) + " bytes cannot hold shape [" +
                                         c10::Join(",", shape) + "] of " + dtypeName(dtype) + " (" +
                                         std::to_string(nbytes) + " bytes)");
  }
  auto options = at::TensorOptions().dtype(dtype);
  if (copy || nbytes == 0 || reinterpret_cast<uintptr_t>(data) % c10::elementSize(dtype) != 0) {
    at::Tensor t = at::empty(shape, options);
    if (nbytes > 0) std::memcpy(t.data_ptr(), data, nbytes);
    return wrapTensor(env, t);
  }
  auto* ref = new Napi::ObjectReference(Napi::Persistent(holder));
  at::Tensor t = at::from_blob(
      data, shape, [ref](void*) { releaseOnMainThread([ref]() { delete ref; }); }, options);
  return wrapTensor(env, t);
}

// ---------------------------------------------------------------------------------------------
// Autograd.
// ---------------------------------------------------------------------------------------------
std::vector<at::Tensor> readTensorList(Napi::Env env, const Napi::Value& v, const std::string& what,
                                       bool allowNull) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, what + ": expected an array of tensors");
  auto arr = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value item = arr.Get(i);
    if (allowNull && (item.IsNull() || item.IsUndefined())) {
      out.emplace_back();
    } else {
      out.push_back(unwrapTensor(item, what));
    }
  }
  return out;
}

Napi::Value Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  drainReleases();
  auto tensors = readTensorList(env, info[0], "backward", false);
  auto grads = readTensorList(env, info[1], "backward", true);
  bool retainGraph = info.Length() > 2 && info[2].ToBoolean().Value();
  try {
    torch::autograd::backward(tensors, grads, retainGraph, false);
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    rethrowAsJs(env, "backward");
  }
  return env.Undefined();
}

// A graph node whose backward is a JS function: (gradOutputs) => gradInputs.
class JsFunctionNode : public torch::autograd::Node {
 public:
  JsFunctionNode(std::shared_ptr<SharedJsFunction> fn, std::string name)
      : fn_(std::move(fn)), name_(std::move(name)) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    if (!onMainThread()) throw std::runtime_error(name_ + ": backward ran off the main thread");
    Napi::Env env = fn_->ref.Env();
    Napi::HandleScope scope(env);
    auto jsGrads = Napi::Array::New(env, grads.size());
    for (size_t i = 0; i < grads.size(); ++i) jsGrads.Set(i, wrapTensor(env, grads[i]));
    Napi::Value result;
    try {
      result = fn_->ref.Call({jsGrads});
    } catch (const Napi::Error& e) {
      throw std::runtime_error(name_ + " backward: " + e.Message());
    }
    if (!result.IsArray()) throw std::runtime_error(name_ + " backward: must return an array of gradients");
    auto arr = result.As<Napi::Array>();
    if (arr.Length() != num_outputs()) {
      throw std::runtime_error(name_ + " backward: returned " + std::to_string(arr.Length()) +
                               " gradients for " + std::to_string(num_outputs()) + " inputs");
    }
    torch::autograd::variable_list out(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      Napi::Value g = arr.Get(i);
      if (!g.IsNull() && !g.IsUndefined()) out[i] = unwrapTensor(g, name_ + " backward");
    }
    return out;
  }

  std::string name() const override { return name_; }

  void release_variables() override { fn_.reset(); }

 private:
  std::shared_ptr<SharedJsFunction> fn_;
  std::string name_;
};

// attachFunction(inputs, outputs, backwardFn, name): makes `outputs` (computed without grad) depend on
// `inputs` through a node whose backward is backwardFn.
Napi::Value AttachFunction(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  drainReleases();
  auto inputs = readTensorList(env, info[0], "customFunction inputs", false);
  auto outputs = readTensorList(env, info[1], "customFunction outputs", false);
  if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "customFunction: backward must be a function");
  std::string name = info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "JsFunction";
  bool anyRequiresGrad = false;
  for (auto& t : inputs) anyRequiresGrad = anyRequiresGrad || t.requires_grad();
  if (!anyRequiresGrad || !c10::GradMode::is_enabled()) return env.Undefined();
  try {
    auto node = std::shared_ptr<JsFunctionNode>(
        new JsFunctionNode(makeSharedFunction(info[2].As<Napi::Function>()), name), torch::autograd::deleteNode);
    node->set_next_edges(torch::autograd::collect_next_edges(inputs));
    for (auto& out : outputs) {
      if (out.requires_grad()) {
        throw std::runtime_error("outputs must be computed without grad (they already have a history)");
      }
      if (!at::isFloatingType(out.scalar_type())) continue;
      torch::autograd::set_history(out, node);
    }
  } catch (...) {
    rethrowAsJs(env, name);
  }
  return env.Undefined();
}

Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool previous = c10::GradMode::is_enabled();
  c10::GradMode::set_enabled(info[0].ToBoolean().Value());
  return Napi::Boolean::New(info.Env(), previous);
}

Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), c10::GradMode::is_enabled());
}

// ---------------------------------------------------------------------------------------------
// Process settings.
// ---------------------------------------------------------------------------------------------
Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  at::manual_seed(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()));
  return info.Env().Undefined();
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  int threads = info[0].As<Napi::Number>().Int32Value();
  if (threads < 1) throw Napi::RangeError::New(info.Env(), "setNumThreads: need at least 1 thread");
  at::set_num_threads(threads);
  setBlasThreads(threads);
  return info.Env().Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

Napi::Value AllocatorStats(const Napi::CallbackInfo& info) {
  auto out = Napi::Object::New(info.Env());
  out.Set("cachedBytes", Napi::Number::New(info.Env(), double(g_allocator ? g_allocator->cachedBytes() : 0)));
  out.Set("reportedBytes", Napi::Number::New(info.Env(), double(reportedBytes(info.Env()))));
  return out;
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  if (g_allocator) g_allocator->emptyCache();
  malloc_trim(0);
  return info.Env().Undefined();
}

Napi::Value Config(const Napi::CallbackInfo& info) {
  auto out = Napi::Object::New(info.Env());
  out.Set("torchVersion", Napi::String::New(info.Env(), TORCH_VERSION));
  out.Set("parallelInfo", Napi::String::New(info.Env(), at::get_parallel_info()));
  out.Set("blasThreadControl", Napi::String::New(info.Env(), g_blasThreadControl));
#ifdef USE_C10D_GLOO
  out.Set("gloo", Napi::Boolean::New(info.Env(), true));
#else
  out.Set("gloo", Napi::Boolean::New(info.Env(), false));
#endif
#ifdef PLSC_WITH_CUDA
  out.Set("cuda", Napi::Boolean::New(info.Env(), true));
#else
  out.Set("cuda", Napi::Boolean::New(info.Env(), false));
#endif
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Shared helpers.
// ---------------------------------------------------------------------------------------------
Napi::Value wrapTensor(Napi::Env env, at::Tensor tensor) {
  if (!tensor.defined()) return env.Null();
  uint32_t index;
  if (!g_freeSlots.empty()) {
    index = g_freeSlots.back();
    g_freeSlots.pop_back();
  } else {
    if (g_slots.size() > kSlotIndexMask) throw Napi::Error::New(env, "too many live tensors (2^24)");
    index = uint32_t(g_slots.size());
    g_slots.emplace_back();
  }
  g_slots[index].tensor = std::move(tensor);
  return Napi::Number::New(env, slotHandle(index));
}

bool isTensorHandle(const Napi::Value& value) { return findSlot(value) != nullptr; }

const at::Tensor& unwrapTensor(const Napi::Value& value, const std::string& what) {
  TensorSlot* slot = findSlot(value);
  if (slot == nullptr) {
    if (looksLikeHandle(value)) throw Napi::Error::New(value.Env(), what + ": tensor was already disposed");
    throw Napi::TypeError::New(value.Env(), what + ": expected a tensor");
  }
  return slot->tensor;
}

void rethrowAsJs(Napi::Env env, const std::string& context) {
  try {
    throw;
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, context + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, context + ": " + e.what());
  } catch (...) {
    throw Napi::Error::New(env, context + ": unknown native error");
  }
}

bool onMainThread() { return std::this_thread::get_id() == g_mainThread; }

void releaseOnMainThread(std::function<void()> release) {
  if (onMainThread()) {
    release();
    return;
  }
  std::lock_guard<std::mutex> lock(g_releaseMutex);
  g_pendingReleases.push_back(std::move(release));
  g_hasPendingReleases = true;
}

void drainReleases() {
  if (!g_hasPendingReleases.load(std::memory_order_relaxed)) return;
  std::vector<std::function<void()>> pending;
  {
    std::lock_guard<std::mutex> lock(g_releaseMutex);
    pending.swap(g_pendingReleases);
    g_hasPendingReleases = false;
  }
  for (auto& release : pending) release();
}

}  // namespace plsc

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  plsc::g_mainThread = std::this_thread::get_id();
  plsc::installAllocatorPolicy();
  exports.Set("tensorRelease", Napi::Function::New(env, plsc::TensorRelease));
  exports.Set("tensorIsLive", Napi::Function::New(env, plsc::TensorIsLive));
  exports.Set("tensorReportMemory", Napi::Function::New(env, plsc::TensorReportMemory));
  exports.Set("tensorLiveCount", Napi::Function::New(env, plsc::TensorLiveCount));
  exports.Set("tensorShape", Napi::Function::New(env, plsc::TensorShape));
  exports.Set("tensorStrides", Napi::Function::New(env, plsc::TensorStrides));
  exports.Set("tensorDtype", Napi::Function::New(env, plsc::TensorDtype));
  exports.Set("tensorDevice", Napi::Function::New(env, plsc::TensorDevice));
  exports.Set("tensorNumel", Napi::Function::New(env, plsc::TensorNumel));
  exports.Set("tensorDim", Napi::Function::New(env, plsc::TensorDim));
  exports.Set("tensorIsContiguous", Napi::Function::New(env, plsc::TensorIsContiguous));
  exports.Set("tensorStorageId", Napi::Function::New(env, plsc::TensorStorageId));
  exports.Set("tensorItem", Napi::Function::New(env, plsc::TensorItem));
  exports.Set("tensorCopyToBuffer", Napi::Function::New(env, plsc::TensorCopyToBuffer));
  exports.Set("tensorViewBuffer", Napi::Function::New(env, plsc::TensorViewBuffer));
  exports.Set("tensorCopyFromBuffer", Napi::Function::New(env, plsc::TensorCopyFromBuffer));
  exports.Set("tensorRequiresGrad", Napi::Function::New(env, plsc::TensorRequiresGrad));
  exports.Set("tensorSetRequiresGrad", Napi::Function::New(env, plsc::TensorSetRequiresGrad));
  exports.Set("tensorGrad", Napi::Function::New(env, plsc::TensorGrad));
  exports.Set("tensorSetGrad", Napi::Function::New(env, plsc::TensorSetGrad));
  exports.Set("tensorIsLeaf", Napi::Function::New(env, plsc::TensorIsLeaf));
  exports.Set("tensorGradFn", Napi::Function::New(env, plsc::TensorGradFn));
  exports.Set("tensorRetainGrad", Napi::Function::New(env, plsc::TensorRetain));
  exports.Set("tensorRegisterHook", Napi::Function::New(env, plsc::TensorRegisterHook));
  exports.Set("opLookup", Napi::Function::New(env, plsc::OpLookup));
  exports.Set("opSchema", Napi::Function::New(env, plsc::OpSchema));
  exports.Set("opCall", Napi::Function::New(env, plsc::OpCall));
  exports.Set("fromBuffer", Napi::Function::New(env, plsc::FromBuffer));
  exports.Set("backward", Napi::Function::New(env, plsc::Backward));
  exports.Set("attachFunction", Napi::Function::New(env, plsc::AttachFunction));
  exports.Set("setGradEnabled", Napi::Function::New(env, plsc::SetGradEnabled));
  exports.Set("isGradEnabled", Napi::Function::New(env, plsc::IsGradEnabled));
  exports.Set("manualSeed", Napi::Function::New(env, plsc::ManualSeed));
  exports.Set("setNumThreads", Napi::Function::New(env, plsc::SetNumThreads));
  exports.Set("getNumThreads", Napi::Function::New(env, plsc::GetNumThreads));
  exports.Set("allocatorStats", Napi::Function::New(env, plsc::AllocatorStats));
  exports.Set("emptyCache", Napi::Function::New(env, plsc::EmptyCache));
  exports.Set("config", Napi::Function::New(env, plsc::Config));
  plsc::initC10d(env, exports);
  plsc::initLifeline(env, exports);
  plsc::initHeadKernels(env, exports);
  return exports;
}

NODE_API_MODULE(plsc_native, InitAddon)
