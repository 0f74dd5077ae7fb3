// Process lifelines that do not depend on the JS event loop: dying with the launcher, a stall
// watchdog and a SIGINT flag (lifeline.cc), and the rendezvous store's bind address (store-bind.cc).
// No torch headers here: these work before and without libtorch.
#pragma once

#include <napi.h>

#include <string>

namespace plsc {

void initLifeline(Napi::Env env, Napi::Object exports);

// Set by the c10d bindings: describes the collective this process is blocked in (empty when none),
// for the stall watchdog's message. Called from the watchdog thread.
extern std::string (*describeBlockingCollective)();

// While alive, a passive getaddrinfo() made by libtorch on this thread (the TCPStore server's listen)
// resolves `host` first, so the store listens on that address rather than on every interface.
class StoreBindAddress {
 public:
  explicit StoreBindAddress(const std::string& host);
  ~StoreBindAddress();
  StoreBindAddress(const StoreBindAddress&) = delete;
  StoreBindAddress& operator=(const StoreBindAddress&) = delete;
};

// Points libtorch's getaddrinfo at the wrapper StoreBindAddress relies on. Returns an empty string on
// success, else why it could not (the store then listens on every interface).
std::string installStoreBindHook();

}  // namespace plsc
