// A c10d TCPStore as a JS object (NativeStore), for the launchers' elastic rendezvous: hosting it or
// connecting to it, and key/value operations that run on the libuv thread pool (a store that went
// away or blocks never blocks the launcher's event loop). Every operation resolves with a string.
#include "handle.h"
#include "lifeline.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace plsc {

namespace {

using std::chrono::milliseconds;

std::string asString(const std::vector<uint8_t>& bytes) { return std::string(bytes.begin(), bytes.end()); }
std::vector<uint8_t> asBytes(const std::string& text) { return std::vector<uint8_t>(text.begin(), text.end()); }

std::string errorText(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

struct StoreState {
  c10::intrusive_ptr<c10d::TCPStore> store;
  std::string endpoint;
};

// Runs `op` off the main thread and settles a promise with its string result or its error.
class StoreOp : public Napi::AsyncWorker {
 public:
  StoreOp(Napi::Env env, std::string what, std::function<std::string()> op)
      : Napi::AsyncWorker(env, "plsc.store"), what_(std::move(what)), op_(std::move(op)), deferred_(env) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      result_ = op_();
    } catch (...) {
      SetError(what_ + ": " + errorText(std::current_exception()));
    }
  }

  void OnOK() override { deferred_.Resolve(Napi::String::New(Env(), result_)); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  std::string what_;
  std::function<std::string()> op_;
  std::string result_;
  Napi::Promise::Deferred deferred_;
};

Napi::Promise queue(Napi::Env env, std::string what, std::function<std::string()> op) {
  auto* worker = new StoreOp(env, std::move(what), std::move(op));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

class StoreHandle : public Napi::ObjectWrap<StoreHandle> {
 public:
  static Napi::FunctionReference constructor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function cls = DefineClass(env, "NativeStore",
                                     {
                                         InstanceMethod<&StoreHandle::Set>("set"),
                                         InstanceMethod<&StoreHandle::Get>("get"),
                                         InstanceMethod<&StoreHandle::Add>("add"),
                                         InstanceMethod<&StoreHandle::CompareSet>("compareSet"),
                                         InstanceMethod<&StoreHandle::Close>("close"),
                                     });
    constructor = Napi::Persistent(cls);
    constructor.SuppressDestruct();
    exports.Set("NativeStore", cls);
  }

  static Napi::Value New(Napi::Env env, std::shared_ptr<StoreState> state) {
    return constructor.New({Napi::External<std::shared_ptr<StoreState>>::New(env, &state)});
  }

  explicit StoreHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StoreHandle>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      Napi::TypeError::New(info.Env(), "NativeStore is created by storeOpen()").ThrowAsJavaScriptException();
      return;
    }
    state_ = *info[0].As<Napi::External<std::shared_ptr<StoreState>>>().Data();
  }

 private:
  std::shared_ptr<StoreState> state_;

  c10::intrusive_ptr<c10d::TCPStore> store(Napi::Env env) {
    if (!state_ || !state_->store) {
      Napi::Error::New(env, "the store is closed").ThrowAsJavaScriptException();
      return {};
    }
    return state_->store;
  }

  std::string key(const Napi::CallbackInfo& info, size_t index) {
    if (info.Length() <= index || !info[index].IsString()) {
      Napi::TypeError::New(info.Env(), "store: expected a string argument").ThrowAsJavaScriptException();
      return "";
    }
    return info[index].As<Napi::String>().Utf8Value();
  }

  Napi::Value Set(const Napi::CallbackInfo& info) {
    auto s = store(info.Env());
    if (!s) return info.Env().Undefined();
    std::string k = key(info, 0), v = key(info, 1);
    return queue(info.Env(), "store set " + k + " at " + state_->endpoint, [s, k, v] {
      s->set(k, asBytes(v));
      return std::string();
    });
  }

  // Waits (up to the store's timeout) for the key to exist.
  Napi::Value Get(const Napi::CallbackInfo& info) {
    auto s = store(info.Env());
    if (!s) return info.Env().Undefined();
    std::string k = key(info, 0);
    return queue(info.Env(), "store get " + k + " at " + state_->endpoint, [s, k] { return asString(s->get(k)); });
  }

  Napi::Value Add(const Napi::CallbackInfo& info) {
    auto s = store(info.Env());
    if (!s) return info.Env().Undefined();
    std::string k = key(info, 0);
    int64_t delta = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
    return queue(info.Env(), "store add " + k + " at " + state_->endpoint, [s, k, delta] { return std::to_string(s->add(k, delta)); });
  }

  // Sets the key to `desired` when it holds `expected` ("" matches a missing key); resolves with the value it holds after.
  Napi::Value CompareSet(const Napi::CallbackInfo& info) {
    auto s = store(info.Env());
    if (!s) return info.Env().Undefined();
    std::string k = key(info, 0), expected = key(info, 1), desired = key(info, 2);
    return queue(info.Env(), "store compareSet " + k + " at " + state_->endpoint,
                 [s, k, expected, desired] { return asString(s->compareSet(k, asBytes(expected), asBytes(desired))); });
  }

  // Drops this handle's reference (a hosted store stops once no operation holds it).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (state_) state_->store.reset();
    return info.Env().Undefined();
  }
};

Napi::FunctionReference StoreHandle::constructor;

class StoreOpen : public Napi::AsyncWorker {
 public:
  StoreOpen(Napi::Env env, std::string host, int port, bool isServer, int64_t timeoutMs)
      : Napi::AsyncWorker(env, "plsc.store.open"), host_(std::move(host)), port_(port), isServer_(isServer), timeoutMs_(timeoutMs), deferred_(env) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    const std::string endpoint = host_ + ":" + std::to_string(port_);
    try {
      c10d::TCPStoreOptions options;
      options.port = static_cast<uint16_t>(port_);
      options.isServer = isServer_;
      options.waitWorkers = false;
      options.timeout = milliseconds(timeoutMs_);
      auto state = std::make_shared<StoreState>();
      state->endpoint = endpoint;
      if (isServer_) {
        installStoreBindHook();
        StoreBindAddress bindTo(host_);
        state->store = c10::make_intrusive<c10d::TCPStore>(host_, options);
      } else {
        state->store = c10::make_intrusive<c10d::TCPStore>(host_, options);
      }
      state_ = state;
    } catch (...) {
      SetError(std::string(isServer_ ? "hosting" : "connecting to") + " the store at " + endpoint + ": " + errorText(std::current_exception()));
    }
  }

  void OnOK() override { deferred_.Resolve(StoreHandle::New(Env(), state_)); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  std::string host_;
  int port_;
  bool isServer_;
  int64_t timeoutMs_;
  std::shared_ptr<StoreState> state_;
  Napi::Promise::Deferred deferred_;
};

// storeOpen({ host, port, isServer, timeoutMs }) -> Promise<NativeStore>
Napi::Value StoreOpenFn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "storeOpen({ host, port, isServer, timeoutMs })").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  std::string host = o.Get("host").IsString() ? o.Get("host").As<Napi::String>().Utf8Value() : "";
  int port = o.Get("port").IsNumber() ? o.Get("port").As<Napi::Number>().Int32Value() : 0;
  bool isServer = o.Get("isServer").IsBoolean() && o.Get("isServer").As<Napi::Boolean>().Value();
  int64_t timeoutMs = o.Get("timeoutMs").IsNumber() ? o.Get("timeoutMs").As<Napi::Number>().Int64Value() : 30000;
  if (host.empty() || port < 1 || port > 65535 || timeoutMs < 1) {
    Napi::RangeError::New(env, "storeOpen: needs a host, a port in [1, 65535] and a positive timeoutMs").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new StoreOpen(env, host, port, isServer, timeoutMs);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace

void initStore(Napi::Env env, Napi::Object exports) {
  StoreHandle::Init(env, exports);
  exports.Set("storeOpen", Napi::Function::New(env, StoreOpenFn));
}

}  // namespace plsc
