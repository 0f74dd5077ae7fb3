// c10d bindings: a TCPStore rendezvous and a ProcessGroupGloo (or ProcessGroupNCCL when libtorch was
// built with CUDA), exposed as NativeProcessGroup with collectives that return NativeWork handles.
//
// Notes on libtorch 1.13's gloo backend, which this file works around:
// - bfloat16 is not a gloo type: reductions run on a float32 copy, pure data movement (broadcast,
//   allGather) runs on a float16 view of the same bits.
// - there is no AVG reduce op: avg is sum, then a division when the work is waited on.
// - reduce_scatter is not implemented: reduceScatter is an allreduce of the whole input, of which
//   each rank keeps its own slice (twice reduce_scatter's traffic; the result is the same).
// - collectives are matched across ranks by issue order, so every rank must issue the same sequence.
#include "handle.h"
#include "lifeline.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <c10/core/GradMode.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace plsc {

namespace {

using std::chrono::milliseconds;

// Everything one process group owns. Shared by the JS group object and every work handle it issued,
// so a handle outlives a group object the GC collected.
struct GroupState {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  std::string backend;
  int rank = 0;
  int size = 1;
  int64_t timeoutMs = 0;
  std::string endpoint;  // MASTER_ADDR:MASTER_PORT, for messages
  std::mutex mutex;
  std::vector<c10::intrusive_ptr<c10d::Work>> inFlight;
  // Check-ins: before each collective a rank stores its sequence number under its rank in the
  // rendezvous store, so a rank whose collective times out can name the ranks that never arrived.
  c10::intrusive_ptr<c10d::Store> progress;
  int64_t seq = 0;
  // The address each rank's gloo binds to ("" where unknown), so that an error naming a peer's
  // address ("Connection closed by peer [10.0.0.2]:41176") can say which rank that is.
  std::vector<std::string> peerAddresses;

  // Check-ins and heartbeats reach the store from a thread of their own (startReporter): the main
  // thread only hands over its sequence number, so a store that stops answering (its host's link
  // went down) never blocks it in front of a collective, which the group timeout bounds. Besides
  // the check-ins, the thread bumps "beat/<rank>" every kBeatMs, so that a rank whose collective
  // timed out although every rank arrived can tell which peer fell silent. The thread is detached
  // and owns its store reference: a store op blocked on a dead link holds up neither shutdown nor exit.
  static constexpr int64_t kBeatMs = 500;
  struct Reporter {
    std::mutex mutex;
    std::condition_variable wake;
    int64_t seq = 0;
    bool stop = false;
  };
  std::shared_ptr<Reporter> reporter;

  void startReporter() {
    if (!progress || size <= 1) return;
    reporter = std::make_shared<Reporter>();
    std::thread([report = reporter, store = progress, key = std::to_string(rank)]() {
      const std::string beatKey = "beat/" + key;
      int64_t written = 0;
      auto nextBeat = std::chrono::steady_clock::now();
      std::unique_lock<std::mutex> lock(report->mutex);
      while (!report->stop) {
        report->wake.wait_until(lock, nextBeat, [&] { return report->stop || report->seq != written; });
        if (report->stop) return;
        const int64_t seqNow = report->seq;
        const bool beat = std::chrono::steady_clock::now() >= nextBeat;
        lock.unlock();
        try {
          if (seqNow != written) {
            std::string value = std::to_string(seqNow);
            store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
            written = seqNow;
          }
          if (beat) {
            store->add(beatKey, 1);
            nextBeat = std::chrono::steady_clock::now() + milliseconds(kBeatMs);
          }
        } catch (...) {
          return;  // the store is gone (rank 0 died): the collectives report that
        }
        lock.lock();
      }
    }).detach();
  }
  void stopReporter() {
    if (!reporter) return;
    {
      std::lock_guard<std::mutex> lock(reporter->mutex);
      reporter->stop = true;
    }
    reporter->wake.notify_one();
  }

  // Main thread, before issuing a collective.
  void checkIn() {
    ++seq;
    if (!reporter) return;
    {
      std::lock_guard<std::mutex> lock(reporter->mutex);
      reporter->seq = seq;
    }
    reporter->wake.notify_one();
  }

  bool isGloo() const { return backend == "gloo"; }

  void track(const c10::intrusive_ptr<c10d::Work>& work) {
    std::lock_guard<std::mutex> lock(mutex);
    inFlight.erase(std::remove_if(inFlight.begin(), inFlight.end(),
                                  [](const c10::intrusive_ptr<c10d::Work>& w) { return w->isCompleted(); }),
                   inFlight.end());
    inFlight.push_back(work);
  }

  size_t pending() {
    std::lock_guard<std::mutex> lock(mutex);
    size_t n = 0;
    for (auto& w : inFlight) n += w->isCompleted() ? 0 : 1;
    return n;
  }

  // Waits for outstanding work (each bounded by the group timeout), then closes the group.
  void shutdown() {
    stopReporter();
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    {
      std::lock_guard<std::mutex> lock(mutex);
      works.swap(inFlight);
    }
    for (auto& w : works) {
      try {
        w->wait();
      } catch (...) {
        // The failure was (or will be) reported by the handle's wait(); shutdown only drains.
      }
    }
    pg.reset();
    progress.reset();
    store.reset();
  }

  ~GroupState() {
    stopReporter();
    // ProcessGroupGloo's destructor joins its worker threads, which blocks until every queued
    // collective has run (up to the timeout each). A group dropped with work outstanding, typically
    // at process exit after a failure, is leaked instead so that exit does not hang.
    if (pg && pending() > 0) {
      pg.release();
      progress.release();
      store.release();
    }
  }
};

std::string describeException(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown native error";
  }
}

std::string firstLines(const std::string& text, size_t maxLines) {
  std::istringstream in(text);
  std::string line, out;
  for (size_t i = 0; i < maxLines && std::getline(in, line); ++i) {
    if (!out.empty()) out += " ";
    out += line;
  }
  return out;
}

// Which ranks had not issued collective number `seq` (asked of the rendezvous store on a helper thread,
// because a store host that is frozen would block the asking thread until the store timeout):
// "; rank 1 never arrived at allReduce(sum) #57 (it last issued #56)", or "" when all did or no
// answer could be had. A store host (rank 0) that does not answer is named as not responding.
std::string missingRanks(const GroupState& g, const std::string& name, int64_t seq) {
  constexpr int64_t kAnswerMs = 3000;
  auto store = g.progress;
  if (!store || g.size <= 1) return "";
  // How long a peer's heartbeat must stand still to call it silent (several beats).
  static constexpr int64_t kSilentMs = 3 * GroupState::kBeatMs;
  struct Answer {
    std::mutex mutex;
    std::condition_variable ready;
    bool done = false;
    bool failed = false;
    std::vector<int64_t> issued;
    std::vector<int> silent;
  };
  auto answer = std::make_shared<Answer>();
  const int size = g.size;
  const int self = g.rank;
  std::thread([answer, store, size, self, seq]() {
    std::vector<int64_t> issued(size, 0);
    std::vector<int> silent;
    bool failed = false;
    try {
      for (int r = 0; r < size; ++r) {
        const std::string key = std::to_string(r);
        if (!store->check({key})) continue;
        auto bytes = store->get(key);
        issued[r] = std::stoll(std::string(bytes.begin(), bytes.end()));
      }
      bool allArrived = true;
      for (int r = 0; r < size; ++r) allArrived = allArrived && (r == self || issued[r] >= seq);
      if (allArrived) {
        // Every rank got here, yet the collective timed out: which peers stopped beating?
        std::vector<int64_t> before(size, 0);
        for (int r = 0; r < size; ++r) before[r] = r == self ? 0 : store->add("beat/" + std::to_string(r), 0);
        std::this_thread::sleep_for(milliseconds(kSilentMs));
        for (int r = 0; r < size; ++r) {
          if (r != self && store->add("beat/" + std::to_string(r), 0) == before[r]) silent.push_back(r);
        }
      }
    } catch (...) {
      failed = true;
    }
    std::lock_guard<std::mutex> lock(answer->mutex);
    answer->issued = std::move(issued);
    answer->silent = std::move(silent);
    answer->failed = failed;
    answer->done = true;
    answer->ready.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(answer->mutex);
  if (!answer->ready.wait_for(lock, milliseconds(kAnswerMs), [&] { return answer->done; }) || answer->failed) {
    if (g.rank == 0) return "";
    return "; rank 0 is not responding (the rendezvous store it hosts did not answer within " +
           std::to_string(kAnswerMs / 1000) + " s)";
  }
  std::vector<int> missing;
  int64_t lastIssued = -1;
  for (int r = 0; r < size; ++r) {
    if (r == g.rank || answer->issued[r] >= seq) continue;
    missing.push_back(r);
    lastIssued = answer->issued[r];
  }
  if (missing.empty() && !answer->silent.empty()) {
    const std::vector<int>& silent = answer->silent;
    std::string ranks;
    for (size_t i = 0; i < silent.size(); ++i) ranks += (i ? ", " : "") + std::to_string(silent[i]);
    return std::string("; rank") + (silent.size() > 1 ? "s " : " ") + ranks + (silent.size() > 1 ? " are" : " is") +
           " unreachable (every rank arrived at " + name + " #" + std::to_string(seq) + ", but " +
           (silent.size() > 1 ? "their heartbeats" : "its heartbeat") + " in the rendezvous store stopped for " +
           std::to_string(kSilentMs) + " ms)";
  }
  if (missing.empty()) return "";
  std::string ranks;
  for (size_t i = 0; i < missing.size(); ++i) ranks += (i ? ", " : "") + std::to_string(missing[i]);
  std::string message = std::string("; rank") + (missing.size() > 1 ? "s " : " ") + ranks + " never arrived at " +
                        name + " #" + std::to_string(seq);
  if (missing.size() == 1) message += " (it last issued #" + std::to_string(lastIssued) + ")";
  return message;
}

// "; the peer at 10.0.0.2 is rank 1" for the first bracketed address in `cause` that belongs to other
// ranks, or "" (none named, unknown, or this rank's own address: peers on the same machine).
std::string peerRanks(const GroupState& g, const std::string& cause) {
  static const std::regex bracketed("\\[([^\\]]+)\\]:\\d+");
  std::smatch match;
  if (!std::regex_search(cause, match, bracketed)) return "";
  const std::string address = match[1].str();
  if (g.rank < static_cast<int>(g.peerAddresses.size()) && g.peerAddresses[g.rank] == address) return "";
  std::vector<int> ranks;
  for (int r = 0; r < static_cast<int>(g.peerAddresses.size()); ++r) {
    if (r != g.rank && g.peerAddresses[r] == address) ranks.push_back(r);
  }
  if (ranks.empty()) return "";
  std::string list;
  for (size_t i = 0; i < ranks.size(); ++i) list += (i ? ", " : "") + std::to_string(ranks[i]);
  return "; the peer at " + address + " is rank" + (ranks.size() > 1 ? "s " : " ") + list;
}

std::string collectiveFailure(const GroupState& g, const std::string& name, const std::string& cause, int64_t seq) {
  std::string message = name + " failed on rank " + std::to_string(g.rank) + " of " + std::to_string(g.size) +
                        ": " + firstLines(cause, 3);
  static const std::regex peerTrouble("timed out|timeout|connection|closed|reset|broken pipe|peer|EOF",
                                      std::regex::icase);
  if (std::regex_search(cause, peerTrouble)) {
    message += " (a peer process probably died or stopped issuing the same collectives; group timeout " +
               std::to_string(g.timeoutMs) + " ms)";
  }
  static const std::regex timedOut("timed out|timeout", std::regex::icase);
  message += peerRanks(g, cause);
  if (std::regex_search(cause, timedOut)) message += missingRanks(g, name, seq);
  return message;
}

// What the main thread is blocked waiting for, for the stall watchdog (lifeline.cc).
struct BlockingWait {
  std::mutex mutex;
  std::shared_ptr<GroupState> group;
  std::string name;
  int64_t seq = 0;
};

BlockingWait& blockingWait() {
  static BlockingWait* wait = new BlockingWait();  // read by a thread that may outlive static teardown
  return *wait;
}

class BlockedIn {
 public:
  BlockedIn(std::shared_ptr<GroupState> group, const std::string& name, int64_t seq) {
    BlockingWait& w = blockingWait();
    std::lock_guard<std::mutex> lock(w.mutex);
    w.group = std::move(group);
    w.name = name;
    w.seq = seq;
  }
  ~BlockedIn() {
    BlockingWait& w = blockingWait();
    std::lock_guard<std::mutex> lock(w.mutex);
    w.group.reset();
  }
};

std::string describeBlocking() {
  std::shared_ptr<GroupState> group;
  std::string name;
  int64_t seq = 0;
  {
    BlockingWait& w = blockingWait();
    std::lock_guard<std::mutex> lock(w.mutex);
    if (!w.group) return "";
    group = w.group;
    name = w.name;
    seq = w.seq;
  }
  std::string missing = missingRanks(*group, name, seq);
  return "blocked in " + name + " #" + std::to_string(seq) + missing;
}

// ---------------------------------------------------------------------------------------------
// NativeWork: one issued collective. wait() blocks until it completes (bounded by the group
// timeout), runs the finishing step on the main thread and returns the result tensor (or null for
// in-place collectives).
// ---------------------------------------------------------------------------------------------
struct WorkState {
  std::shared_ptr<GroupState> group;
  c10::intrusive_ptr<c10d::Work> work;  // null when nothing had to be communicated
  std::string name;
  std::function<at::Tensor()> finish;
  std::vector<int64_t> splitSizes;
  int64_t seq = 0;  // this collective's check-in number
  bool done = false;
  bool failed = false;
  std::string error;
  at::Tensor result;

  // Main thread only. `cause` is the exception from c10d's wait, if any.
  void complete(std::exception_ptr cause) {
    if (done) return;
    done = true;
    if (cause) {
      failed = true;
      error = collectiveFailure(*group, name, describeException(cause), seq);
      finish = nullptr;
      return;
    }
    try {
      c10::AutoGradMode noGrad(false);
      if (finish) result = finish();
    } catch (...) {
      failed = true;
      error = name + " failed on rank " + std::to_string(group->rank) + ": " +
              describeException(std::current_exception());
    }
    finish = nullptr;
  }

  Napi::Value outcome(Napi::Env env) {
    if (failed) throw Napi::Error::New(env, error);
    return wrapTensor(env, result);
  }
};

class WorkHandle : public Napi::ObjectWrap<WorkHandle> {
 public:
  static Napi::FunctionReference constructor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "NativeWork",
                                     {
                                         InstanceMethod<&WorkHandle::Wait>("wait"),
                                         InstanceMethod<&WorkHandle::WaitAsync>("waitAsync"),
                                         InstanceMethod<&WorkHandle::IsCompleted>("isCompleted"),
                                         InstanceMethod<&WorkHandle::SplitSizes>("splitSizes"),
                                         InstanceAccessor<&WorkHandle::Name>("name"),
                                     });
    constructor = Napi::Persistent(cls);
    constructor.SuppressDestruct();
    exports.Set("NativeWork", cls);
  }

  static Napi::Value New(Napi::Env env, std::shared_ptr<WorkState> state) {
    return constructor.New({Napi::External<std::shared_ptr<WorkState>>::New(env, &state)});
  }

  explicit WorkHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WorkHandle>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "NativeWork cannot be constructed from JavaScript");
    }
    state_ = *info[0].As<Napi::External<std::shared_ptr<WorkState>>>().Data();
  }

 private:
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    drainReleases();
    if (!state_->done) {
      std::exception_ptr cause;
      if (state_->work) {
        BlockedIn blocked(state_->group, state_->name, state_->seq);
        try {
          state_->work->wait();
        } catch (...) {
          cause = std::current_exception();
        }
      }
      state_->complete(cause);
    }
    return state_->outcome(info.Env());
  }

  // Waits on a libuv pool thread, so the event loop keeps running; resolves like wait() returns.
  class AsyncWait : public Napi::AsyncWorker {
   public:
    AsyncWait(Napi::Env env, std::shared_ptr<WorkState> state)
        : Napi::AsyncWorker(env, "plsc.c10d.wait"), state_(std::move(state)), deferred_(env) {}
    Napi::Promise promise() { return deferred_.Promise(); }

    void Execute() override {
      if (!state_->work) return;
      try {
        state_->work->wait();
      } catch (...) {
        cause_ = std::current_exception();
      }
    }

    void OnOK() override {
      Napi::Env env = Env();
      Napi::HandleScope scope(env);
      state_->complete(cause_);
      if (state_->failed) {
        deferred_.Reject(Napi::Error::New(env, state_->error).Value());
      } else {
        deferred_.Resolve(wrapTensor(env, state_->result));
      }
    }

   private:
    std::shared_ptr<WorkState> state_;
    Napi::Promise::Deferred deferred_;
    std::exception_ptr cause_;
  };

  Napi::Value WaitAsync(const Napi::CallbackInfo& info) {
    auto* worker = new AsyncWait(info.Env(), state_);
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
  }

  Napi::Value IsCompleted(const Napi::CallbackInfo& info) {
    bool completed = state_->done || !state_->work || state_->work->isCompleted();
    return Napi::Boolean::New(info.Env(), completed);
  }

  Napi::Value SplitSizes(const Napi::CallbackInfo& info) {
    auto out = Napi::Array::New(info.Env(), state_->splitSizes.size());
    for (size_t i = 0; i < state_->splitSizes.size(); ++i) {
      out.Set(i, Napi::Number::New(info.Env(), double(state_->splitSizes[i])));
    }
    return out;
  }

  Napi::Value Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), state_->name); }

  std::shared_ptr<WorkState> state_;
};

Napi::FunctionReference WorkHandle::constructor;

// ---------------------------------------------------------------------------------------------
// Tensor preparation for the backend.
// ---------------------------------------------------------------------------------------------
bool glooSupports(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
    case at::kDouble:
    case at::kHalf:
    case at::kChar:
    case at::kByte:
    case at::kInt:
    case at::kLong:
      return true;
    default:
      return false;
  }
}

// The tensor to communicate in place of `t` for data movement: t itself when usable, else a
// contiguous copy; bfloat16 travels as float16 bits under gloo.
at::Tensor movementBuffer(const GroupState& g, const at::Tensor& t) {
  at::Tensor buf = t.is_contiguous() ? t : t.contiguous();
  if (g.isGloo() && buf.scalar_type() == at::kBFloat16) buf = buf.view(at::kHalf);
  return buf;
}

// The tensor to reduce in place of `t`: bfloat16 is reduced as float32 under gloo.
at::Tensor reductionBuffer(const GroupState& g, const at::Tensor& t) {
  if (g.isGloo() && t.scalar_type() == at::kBFloat16) return t.to(at::kFloat).contiguous();
  return t.is_contiguous() ? t : t.contiguous();
}

std::string shapeString(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// ---------------------------------------------------------------------------------------------
// NativeProcessGroup.
// ---------------------------------------------------------------------------------------------
class GroupHandle : public Napi::ObjectWrap<GroupHandle> {
 public:
  static Napi::FunctionReference constructor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "NativeProcessGroup",
                                     {
                                         InstanceAccessor<&GroupHandle::Rank>("rank"),
                                         InstanceAccessor<&GroupHandle::Size>("size"),
                                         InstanceAccessor<&GroupHandle::Backend>("backend"),
                                         InstanceAccessor<&GroupHandle::TimeoutMs>("timeoutMs"),
                                         InstanceMethod<&GroupHandle::AllReduce>("allReduce"),
                                         InstanceMethod<&GroupHandle::AllGather>("allGather"),
                                         InstanceMethod<&GroupHandle::ReduceScatter>("reduceScatter"),
                                         InstanceMethod<&GroupHandle::Broadcast>("broadcast"),
                                         InstanceMethod<&GroupHandle::Barrier>("barrier"),
                                         InstanceMethod<&GroupHandle::Pending>("pending"),
                                         InstanceMethod<&GroupHandle::Shutdown>("shutdown"),
                                         InstanceAccessor<&GroupHandle::IsShutDown>("isShutDown"),
                                     });
    constructor = Napi::Persistent(cls);
    constructor.SuppressDestruct();
    exports.Set("NativeProcessGroup", cls);
  }

  static Napi::Value New(Napi::Env env, std::shared_ptr<GroupState> state) {
    return constructor.New({Napi::External<std::shared_ptr<GroupState>>::New(env, &state)});
  }

  explicit GroupHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GroupHandle>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throw Napi::TypeError::New(info.Env(), "NativeProcessGroup cannot be constructed from JavaScript");
    }
    state_ = *info[0].As<Napi::External<std::shared_ptr<GroupState>>>().Data();
  }

 private:
  Napi::Value Rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), state_->rank); }
  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), state_->size); }
  Napi::Value Backend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), state_->backend); }
  Napi::Value TimeoutMs(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(state_->timeoutMs));
  }
  Napi::Value IsShutDown(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !state_->pg); }
  Napi::Value Pending(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(state_->pending()));
  }

  Napi::Value Shutdown(const Napi::CallbackInfo& info) {
    try {
      state_->shutdown();
    } catch (...) {
      rethrowAsJs(info.Env(), "shutdown");
    }
    return info.Env().Undefined();
  }

  // The tensor argument, checked against the backend; `what` names the collective for messages.
  at::Tensor input(const Napi::CallbackInfo& info, size_t index, const std::string& what) {
    Napi::Env env = info.Env();
    if (!state_->pg) throw Napi::Error::New(env, what + ": the process group was shut down");
    at::Tensor t = unwrapTensor(info[index], what).detach();
    if (t.layout() != at::kStrided) throw Napi::TypeError::New(env, what + ": sparse tensors are not supported");
    if (state_->isGloo()) {
      if (!t.device().is_cpu()) {
        throw Napi::TypeError::New(env, what + ": the gloo backend needs CPU tensors, got one on " + t.device().str());
      }
      if (!glooSupports(t.scalar_type()) && t.scalar_type() != at::kBFloat16) {
        throw Napi::TypeError::New(env, what + ": dtype " + std::string(c10::toString(t.scalar_type())) +
                                            " is not supported by the gloo backend (use float32, float16, "
                                            "bfloat16, float64, int64, int32, int8 or uint8)");
      }
    }
    return t;
  }

  Napi::Value issue(Napi::Env env, std::shared_ptr<WorkState> work) {
    work->group = state_;
    work->seq = state_->seq;
    if (work->work) state_->track(work->work);
    return WorkHandle::New(env, std::move(work));
  }

  static c10d::ReduceOp parseReduceOp(Napi::Env env, const Napi::Value& v, const std::string& what, bool* average) {
    std::string op = v.IsString() ? v.As<Napi::String>().Utf8Value() : "sum";
    *average = false;
    if (op == "sum") return c10d::ReduceOp::SUM;
    if (op == "avg") {
      *average = true;
      return c10d::ReduceOp::SUM;
    }
    if (op == "max") return c10d::ReduceOp::MAX;
    if (op == "min") return c10d::ReduceOp::MIN;
    if (op == "product") return c10d::ReduceOp::PRODUCT;
    throw Napi::TypeError::New(env, what + ": unknown reduce op '" + op + "' (expected sum, avg, max, min or product)");
  }

  // allReduce(tensor, op): reduces in place; the tensor holds the result once the work is waited on.
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    drainReleases();
    bool average = false;
    c10d::ReduceOp op = parseReduceOp(env, info[1], "allReduce", &average);
    std::string name = "allReduce(" + (info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "sum") + ")";
    at::Tensor target = input(info, 0, name);
    if (average && !at::isFloatingType(target.scalar_type())) {
      throw Napi::TypeError::New(env, name + ": avg needs a floating-point tensor, got " +
                                          std::string(c10::toString(target.scalar_type())) + " (use sum)");
    }
    auto work = std::make_shared<WorkState>();
    work->name = name;
    if (target.numel() == 0) return issue(env, work);
    try {
      at::Tensor buf = reductionBuffer(*state_, target);
      std::vector<at::Tensor> tensors{buf};
      c10d::AllreduceOptions opts;
      opts.reduceOp = op;
      state_->checkIn();
      work->work = state_->pg->allreduce(tensors, opts);
      int size = state_->size;
      work->finish = [target, buf, average, size]() mutable {
        if (average) buf.div_(size);
        if (!buf.is_same(target)) target.copy_(buf);
        return at::Tensor();
      };
    } catch (...) {
      rethrowAsJs(env, name);
    }
    return issue(env, work);
  }

  // broadcast(tensor, src): in place; every rank's tensor holds src's values once waited on.
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    drainReleases();
    int64_t src = info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
    std::string name = "broadcast(src=" + std::to_string(src) + ")";
    at::Tensor target = input(info, 0, name);
    if (src < 0 || src >= state_->size) {
      throw Napi::RangeError::New(env, name + ": source rank must be in [0, " + std::to_string(state_->size) + ")");
    }
    auto work = std::make_shared<WorkState>();
    work->name = name;
    if (target.numel() == 0) return issue(env, work);
    try {
      at::Tensor buf = movementBuffer(*state_, target);
      std::vector<at::Tensor> tensors{buf};
      c10d::BroadcastOptions opts;
      opts.rootRank = src;
      state_->checkIn();
      work->work = state_->pg->broadcast(tensors, opts);
      bool shares = buf.data_ptr() == target.data_ptr() && target.is_contiguous();
      work->finish = [target, buf, shares]() mutable {
        if (!shares) target.copy_(buf.view(target.scalar_type()));
        return at::Tensor();
      };
    } catch (...) {
      rethrowAsJs(env, name);
    }
    return issue(env, work);
  }

  // Exchanges every rank's shape (and dtype) synchronously; used by the uneven allGather.
  std::vector<std::vector<int64_t>> exchangeShapes(Napi::Env env, const at::Tensor& t, const std::string& name) {
    constexpr int64_t kMaxDims = 16;
    if (t.dim() > kMaxDims) throw Napi::RangeError::New(env, name + ": at most 16 dimensions are supported");
    const int64_t width = 2 + kMaxDims;
    at::Tensor mine = at::zeros({width}, at::kLong);
    auto* m = mine.data_ptr<int64_t>();
    m[0] = t.dim();
    m[1] = static_cast<int64_t>(t.scalar_type());
    for (int64_t d = 0; d < t.dim(); ++d) m[2 + d] = t.size(d);
    // NCCL communicates device tensors only; gloo CPU ones.
    const auto where = at::TensorOptions().dtype(at::kLong).device(t.device());
    at::Tensor all = at::empty({state_->size * width}, where);
    mine = mine.to(t.device());
    std::vector<at::Tensor> outputs;
    for (int r = 0; r < state_->size; ++r) outputs.push_back(all.narrow(0, r * width, width));
    std::vector<std::vector<at::Tensor>> outputLists{outputs};
    std::vector<at::Tensor> inputs{mine};
    try {
      state_->checkIn();
      auto work = state_->pg->allgather(outputLists, inputs);
      state_->track(work);
      BlockedIn blocked(state_, name + " (exchanging shapes)", state_->seq);
      work->wait();
    } catch (...) {
      throw Napi::Error::New(env, collectiveFailure(*state_, name + " (exchanging shapes)",
                                                    describeException(std::current_exception()), state_->seq));
    }
    std::vector<std::vector<int64_t>> shapes;
    all = all.cpu();
    const int64_t* a = all.data_ptr<int64_t>();
    for (int r = 0; r < state_->size; ++r) {
      const int64_t* row = a + r * width;
      if (row[0] != t.dim() || row[1] != static_cast<int64_t>(t.scalar_type())) {
        throw Napi::Error::New(env, name + ": rank " + std::to_string(r) + " sent a " + std::to_string(row[0]) +
                                        "-d " + c10::toString(static_cast<at::ScalarType>(row[1])) +
                                        " tensor, rank " + std::to_string(state_->rank) + " a " +
                                        std::to_string(t.dim()) + "-d " + c10::toString(t.scalar_type()) +
                                        " one (all ranks need the same dtype and number of dimensions)");
      }
      shapes.emplace_back(row + 2, row + 2 + row[0]);
      for (int64_t d = 1; d < t.dim(); ++d) {
        if (row[2 + d] != t.size(d)) {
          throw Napi::Error::New(env, name + ": rank " + std::to_string(r) + " has shape " +
                                          shapeString(shapes.back()) + ", rank " + std::to_string(state_->rank) +
                                          " has " + shapeString(t.sizes()) +
                                          " (only the first dimension may differ)");
        }
      }
    }
    return shapes;
  }

  // allGather(tensor, uneven): every rank's tensor concatenated along dim 0 in rank order (a 0-d
  // tensor counts as shape [1]). With uneven, first dimensions may differ: shapes are exchanged
  // first, inputs are padded to the largest and the padding is cut out of the result.
  Napi::Value AllGather(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    drainReleases();
    bool uneven = info.Length() > 1 && info[1].ToBoolean().Value();
    std::string name = uneven ? "allGather(uneven)" : "allGather";
    at::Tensor t = input(info, 0, name);
    if (t.dim() == 0) t = t.reshape({1});
    const int n = state_->size;
    const int64_t mine = t.size(0);
    std::vector<int64_t> sizes(n, mine);
    if (uneven) {
      auto shapes = exchangeShapes(env, t, name);
      for (int r = 0; r < n; ++r) sizes[r] = shapes[r][0];
    }
    const int64_t longest = *std::max_element(sizes.begin(), sizes.end());
    auto work = std::make_shared<WorkState>();
    work->name = name;
    work->splitSizes = sizes;
    std::vector<int64_t> rowShape(t.sizes().begin() + 1, t.sizes().end());
    try {
      std::vector<int64_t> outShape{0};
      outShape.insert(outShape.end(), rowShape.begin(), rowShape.end());
      int64_t rowNumel = 1;
      for (auto d : rowShape) rowNumel *= d;
      if (longest == 0 || rowNumel == 0) {
        // Nothing to move: every rank is empty (or rows have no elements).
        int64_t total = 0;
        for (auto s : sizes) total += s;
        outShape[0] = total;
        at::Tensor empty = at::empty(outShape, t.options());
        work->finish = [empty]() { return empty; };
        return issue(env, work);
      }
      at::Tensor buf = movementBuffer(*state_, t);
      if (mine < longest) {
        std::vector<int64_t> padShape{longest};
        padShape.insert(padShape.end(), rowShape.begin(), rowShape.end());
        at::Tensor padded = at::zeros(padShape, buf.options());
        if (mine > 0) padded.narrow(0, 0, mine).copy_(buf);
        buf = padded;
      }
      outShape[0] = longest * n;
      at::Tensor flat = at::empty(outShape, buf.options());
      std::vector<at::Tensor> outputs;
      for (int r = 0; r < n; ++r) outputs.push_back(flat.narrow(0, r * longest, longest));
      std::vector<std::vector<at::Tensor>> outputLists{outputs};
      std::vector<at::Tensor> inputs{buf};
      state_->checkIn();
      work->work = state_->pg->allgather(outputLists, inputs);
      at::ScalarType dtype = t.scalar_type();
      work->finish = [flat, sizes, longest, dtype]() {
        bool padded = std::any_of(sizes.begin(), sizes.end(), [&](int64_t s) { return s != longest; });
        at::Tensor result = flat;
        if (padded) {
          std::vector<at::Tensor> parts;
          for (size_t r = 0; r < sizes.size(); ++r) parts.push_back(flat.narrow(0, int64_t(r) * longest, sizes[r]));
          result = at::cat(parts, 0);
        }
        return result.scalar_type() == dtype ? result : result.view(dtype);
      };
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(env, name);
    }
    return issue(env, work);
  }

  // reduceScatter(tensor, op): the input's first dimension splits into size equal chunks; rank r
  // receives the reduction of every rank's chunk r. See the note at the top for how gloo does it.
  Napi::Value ReduceScatter(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    drainReleases();
    bool average = false;
    c10d::ReduceOp op = parseReduceOp(env, info[1], "reduceScatter", &average);
    std::string name = "reduceScatter(" + (info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "sum") + ")";
    at::Tensor t = input(info, 0, name);
    const int n = state_->size;
    if (t.dim() == 0 || t.size(0) % n != 0) {
      throw Napi::RangeError::New(env, name + ": the first dimension of the input (shape " + shapeString(t.sizes()) +
                                           ") must be divisible by the world size " + std::to_string(n));
    }
    if (average && !at::isFloatingType(t.scalar_type())) {
      throw Napi::TypeError::New(env, name + ": avg needs a floating-point tensor, got " +
                                          std::string(c10::toString(t.scalar_type())) + " (use sum)");
    }
    auto work = std::make_shared<WorkState>();
    work->name = name;
    const int64_t chunk = t.size(0) / n;
    const int64_t rank = state_->rank;
    try {
      at::ScalarType dtype = t.scalar_type();
      if (t.numel() == 0) {
        at::Tensor out = t.narrow(0, rank * chunk, chunk).clone();
        work->finish = [out]() { return out; };
        return issue(env, work);
      }
      at::Tensor buf = reductionBuffer(*state_, t);
      if (buf.is_same(t) || buf.data_ptr() == t.data_ptr()) buf = t.clone(at::MemoryFormat::Contiguous);
      std::vector<at::Tensor> tensors{buf};
      c10d::AllreduceOptions opts;
      opts.reduceOp = op;
      state_->checkIn();
      work->work = state_->pg->allreduce(tensors, opts);
      work->finish = [buf, chunk, rank, average, n, dtype]() {
        at::Tensor out = buf.narrow(0, rank * chunk, chunk).clone();
        if (average) out.div_(n);
        return out.scalar_type() == dtype ? out : out.to(dtype);
      };
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(env, name);
    }
    return issue(env, work);
  }

  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    drainReleases();
    if (!state_->pg) throw Napi::Error::New(env, "barrier: the process group was shut down");
    auto work = std::make_shared<WorkState>();
    work->name = "barrier";
    try {
      state_->checkIn();
      work->work = state_->pg->barrier();
    } catch (...) {
      rethrowAsJs(env, "barrier");
    }
    return issue(env, work);
  }

  std::shared_ptr<GroupState> state_;
};

Napi::FunctionReference GroupHandle::constructor;

// ---------------------------------------------------------------------------------------------
// Rendezvous: c10dInit(options) -> Promise<NativeProcessGroup>, run on a libuv pool thread.
// ---------------------------------------------------------------------------------------------
struct RendezvousConfig {
  int rank = 0;
  int size = 1;
  std::string masterAddr = "127.0.0.1";
  int masterPort = 29500;
  int64_t timeoutMs = 60000;
  int64_t rendezvousTimeoutMs = 60000;
  std::string backend = "gloo";
  std::string glooInterface;
  std::string glooHostname;
  // The address gloo binds to, published to the other ranks for messages ("" when unknown).
  std::string hostAddress;
  // Whether this process hosts the store (rank 0 by default; no one under torchrun's agent store).
  bool storeServer = true;
  // Namespace of this job's keys in the store (a torchrun restart gets a fresh one).
  std::string storePrefix = "plsc";
};

bool isLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

class Rendezvous : public Napi::AsyncWorker {
 public:
  Rendezvous(Napi::Env env, RendezvousConfig config)
      : Napi::AsyncWorker(env, "plsc.c10d.rendezvous"), config_(std::move(config)), deferred_(env) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    const RendezvousConfig& c = config_;
    const std::string endpoint = c.masterAddr + ":" + std::to_string(c.masterPort);
    const std::string who = "rank " + std::to_string(c.rank) + " of " + std::to_string(c.size);
    const std::string waited = std::to_string(c.rendezvousTimeoutMs) + " ms";
    std::string stage;
    try {
      auto state = std::make_shared<GroupState>();
      state->rank = c.rank;
      state->size = c.size;
      state->backend = c.backend;
      state->timeoutMs = c.timeoutMs;
      state->endpoint = endpoint;

      c10d::TCPStoreOptions storeOptions;
      storeOptions.port = static_cast<uint16_t>(c.masterPort);
      storeOptions.isServer = c.storeServer;
      storeOptions.numWorkers = static_cast<size_t>(c.size);
      storeOptions.waitWorkers = false;
      storeOptions.timeout = milliseconds(c.rendezvousTimeoutMs);
      stage = c.storeServer ? "starting the rendezvous store on " + endpoint
                          : "connecting to the rendezvous store on " + endpoint + " (timeout " + waited + ")";
      if (c.storeServer) {
        // Listen on MASTER_ADDR only (loopback for a single-node job), not on every interface.
        installStoreBindHook();
        StoreBindAddress bindTo(c.masterAddr);
        state->store = c10::make_intrusive<c10d::TCPStore>(c.masterAddr, storeOptions);
      } else {
        state->store = c10::make_intrusive<c10d::TCPStore>(c.masterAddr, storeOptions);
      }
      auto scoped = c10::make_intrusive<c10d::PrefixStore>(c.storePrefix, state->store);
      state->progress = c10::make_intrusive<c10d::PrefixStore>("arrived", scoped);

      // Every process must agree on the world size and hold a distinct rank, and all must arrive
      // within the timeout: checked here with clear messages rather than left to surface later as a
      // collective timeout. (TCPStore's own wait for workers does not time out in this libtorch.)
      stage = "checking the world size with rank 0 (timeout " + waited + ")";
      if (c.rank == 0) {
        std::string mine = std::to_string(c.size);
        scoped->set("world_size", std::vector<uint8_t>(mine.begin(), mine.end()));
      }
      auto theirs = scoped->get("world_size");
      std::string rootSize(theirs.begin(), theirs.end());
      if (rootSize != std::to_string(c.size)) {
        throw std::runtime_error("world size mismatch: this process has WORLD_SIZE=" + std::to_string(c.size) +
                                 " but rank 0 has WORLD_SIZE=" + rootSize);
      }
      stage = "claiming rank " + std::to_string(c.rank);
      if (scoped->add("rank/" + std::to_string(c.rank), 1) > 1) {
        throw std::runtime_error("rank " + std::to_string(c.rank) +
                                 " was claimed by two processes (check RANK / --node-rank)");
      }
      stage = "waiting for all " + std::to_string(c.size) + " processes to join (timeout " + waited + ")";
      int64_t joined = scoped->add("joined", 1);
      const auto start = std::chrono::steady_clock::now();
      while (joined < c.size) {
        if (std::chrono::steady_clock::now() - start > milliseconds(c.rendezvousTimeoutMs)) {
          throw std::runtime_error("timed out: only " + std::to_string(joined) + " of " + std::to_string(c.size) +
                                   " processes joined");
        }
        std::this_thread::sleep_for(milliseconds(20));
        joined = scoped->add("joined", 0);
      }

      auto prefixed = c10::make_intrusive<c10d::PrefixStore>("pg/" + c.backend, scoped);
      if (c.backend == "gloo") {
#ifdef USE_C10D_GLOO
        stage = "creating the gloo transport";
        auto options = c10d::ProcessGroupGloo::Options::create(milliseconds(c.timeoutMs));
        if (!c.glooInterface.empty()) {
          options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(c.glooInterface));
        } else if (!c.glooHostname.empty()) {
          options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(c.glooHostname));
        } else if (isLoopback(c.masterAddr)) {
          options->devices.push_back(
              c10d::ProcessGroupGloo::createDeviceForHostname(c.masterAddr == "::1" ? "::1" : "127.0.0.1"));
        } else {
          options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        }
        if (!c.hostAddress.empty()) {
          scoped->set("address/" + std::to_string(c.rank), std::vector<uint8_t>(c.hostAddress.begin(), c.hostAddress.end()));
        }
        stage = "connecting gloo to every other process (timeout " + std::to_string(c.timeoutMs) + " ms)";
        state->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, c.rank, c.size, options);
        // Every rank published its address before joining gloo, so all are there once gloo is connected.
        state->peerAddresses.assign(c.size, "");
        for (int r = 0; r < c.size; ++r) {
          const std::string key = "address/" + std::to_string(r);
          if (!scoped->check({key})) continue;
          auto bytes = scoped->get(key);
          state->peerAddresses[r] = std::string(bytes.begin(), bytes.end());
        }
#else
        throw std::runtime_error("this build of the plsc addon has no gloo (rebuild with libgloo-dev installed)");
#endif
      } else if (c.backend == "nccl") {
#ifdef USE_C10D_NCCL
        stage = "creating the NCCL process group";
        auto options = c10d::ProcessGroupNCCL::Options::create();
        options->timeout = milliseconds(c.timeoutMs);
        state->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, c.rank, c.size, options);
#else
        throw std::runtime_error("this build of the plsc addon has no NCCL (libtorch without CUDA)");
#endif
      } else {
        throw std::runtime_error("unknown backend '" + c.backend + "' (expected gloo or nccl)");
      }
      state->startReporter();
      state_ = state;
    } catch (...) {
      std::string cause = firstLines(describeException(std::current_exception()), 4);
      std::string hint;
      if (cause.find("Address already in use") != std::string::npos || cause.find("errno: 98") != std::string::npos) {
        hint = " (port " + std::to_string(c.masterPort) +
               " is already in use on the master: choose another MASTER_PORT / --master-port)";
      } else if (cause.find("only ") != std::string::npos && cause.find("joined") != std::string::npos) {
        hint = " (a worker did not start or crashed before joining, or WORLD_SIZE is larger than the number of "
               "processes launched)";
      } else if (c.rank != 0 && stage.rfind("connecting", 0) != 0 &&
                 std::regex_search(cause, std::regex("broken pipe|reset|closed|eof", std::regex::icase))) {
        hint = " (the rendezvous store on rank 0 went away: rank 0 failed or gave up waiting)";
      } else if (c.rank != 0 && (cause.find("imed out") != std::string::npos || cause.find("imeout") != std::string::npos ||
                                 cause.find("onnect") != std::string::npos)) {
        hint = " (is " + endpoint + " reachable, and is rank 0 running there?)";
      }
      SetError("rendezvous failed for " + who + " at " + endpoint + " while " + stage + ": " + cause + hint);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    deferred_.Resolve(GroupHandle::New(env, state_));
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  RendezvousConfig config_;
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<GroupState> state_;
};

int64_t readInt(Napi::Env env, Napi::Object o, const char* key, int64_t fallback, int64_t lo, int64_t hi) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("c10dInit: ") + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < lo || d > hi) {
    throw Napi::RangeError::New(env, std::string("c10dInit: ") + key + " must be an integer in [" +
                                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int64_t>(d);
}

std::string readString(Napi::Env env, Napi::Object o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) throw Napi::TypeError::New(env, std::string("c10dInit: ") + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Value C10dInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "c10dInit: expected an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  RendezvousConfig c;
  c.size = static_cast<int>(readInt(env, o, "worldSize", 1, 1, 1 << 20));
  c.rank = static_cast<int>(readInt(env, o, "rank", 0, 0, c.size - 1));
  c.masterAddr = readString(env, o, "masterAddr", c.masterAddr);
  c.masterPort = static_cast<int>(readInt(env, o, "masterPort", c.masterPort, 1, 65535));
  c.timeoutMs = readInt(env, o, "timeoutMs", c.timeoutMs, 1, int64_t(1) << 40);
  c.rendezvousTimeoutMs = readInt(env, o, "rendezvousTimeoutMs", c.rendezvousTimeoutMs, 1, int64_t(1) << 40);
  c.backend = readString(env, o, "backend", c.backend);
  c.glooInterface = readString(env, o, "glooInterface", "");
  c.glooHostname = readString(env, o, "glooHostname", "");
  c.hostAddress = readString(env, o, "hostAddress", "");
  Napi::Value server = o.Get("storeServer");
  c.storeServer = server.IsBoolean() ? server.As<Napi::Boolean>().Value() : c.rank == 0;
  c.storePrefix = readString(env, o, "storePrefix", c.storePrefix);
  auto* worker = new Rendezvous(env, std::move(c));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

Napi::Value C10dBackends(const Napi::CallbackInfo& info) {
  auto out = Napi::Array::New(info.Env());
  uint32_t i = 0;
#ifdef USE_C10D_GLOO
  out.Set(i++, Napi::String::New(info.Env(), "gloo"));
#endif
#ifdef USE_C10D_NCCL
  out.Set(i++, Napi::String::New(info.Env(), "nccl"));
#endif
  return out;
}

}  // namespace

// The launchers' store (store.cc).
void initStore(Napi::Env env, Napi::Object exports);

void initC10d(Napi::Env env, Napi::Object exports) {
  WorkHandle::Init(env, exports);
  GroupHandle::Init(env, exports);
  exports.Set("c10dInit", Napi::Function::New(env, C10dInit));
  exports.Set("c10dBackends", Napi::Function::New(env, C10dBackends));
  initStore(env, exports);
  describeBlockingCollective = describeBlocking;
}

}  // namespace plsc
