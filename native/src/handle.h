// Shared pieces of the addon: the JS handle that owns an at::Tensor, error conversion,
// and deferred release of JS references from threads other than the main one.
#pragma once

#include <napi.h>
#include <ATen/ATen.h>

#include <functional>
#include <string>

namespace plsc {

// Wraps a tensor in a new JS handle object (null for an undefined tensor).
Napi::Value wrapTensor(Napi::Env env, at::Tensor tensor);

// The tensor held by a JS handle; throws a JS TypeError naming `what` when it is not a live handle.
const at::Tensor& unwrapTensor(const Napi::Value& value, const std::string& what);

bool isTensorHandle(const Napi::Value& value);

// Rethrows the active C++ exception as a JS Error prefixed with `context`.
[[noreturn]] void rethrowAsJs(Napi::Env env, const std::string& context);

bool onMainThread();

// Runs `release` on the main thread: now when called there, else at the next call into the addon.
void releaseOnMainThread(std::function<void()> release);

// Runs the releases queued by other threads; every entry point calls this.
void drainReleases();

void initC10d(Napi::Env env, Napi::Object exports);

void initHeadKernels(Napi::Env env, Napi::Object exports);

}  // namespace plsc
