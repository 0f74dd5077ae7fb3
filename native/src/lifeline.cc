// Lifelines of a worker process that hold whatever the JS event loop is doing (a synchronous data
// loader or a blocking collective keeps JS timers and signal listeners from ever running):
// - watchParent(pid): PR_SET_PDEATHSIG when pid is the parent, plus a thread that waits on a pidfd
//   of pid (also when pid is a grandparent), so the worker dies with its launcher;
// - a stall watchdog thread: the process exits when no progress was reported for a while;
// - a SIGINT flag: the first SIGINT only sets it (training stops after the step), the second exits.
#include "lifeline.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace plsc {

// Set by c10d.cc: what this process is blocked on in a collective, if anything (empty otherwise).
std::string (*describeBlockingCollective)() = nullptr;

namespace {

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void writeStderr(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(2, text.data() + done, text.size() - done);
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// Ends this process and, when it leads its own process group (as plsc launch starts workers),
// whatever it started.
[[noreturn]] void exitWithGroup(int code) {
  if (::getpgrp() == ::getpid()) ::kill(-::getpid(), SIGKILL);
  ::_exit(code);
}

// ---------------------------------------------------------------------------------------------
// Dying with the launcher.
// ---------------------------------------------------------------------------------------------
std::atomic<bool> parentWatched{false};

bool processGone(int pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

void watchParentThread(int pid, bool directChild) {
  const std::string message = "plsc: the launcher (pid " + std::to_string(pid) + ") is gone; exiting\n";
  long pidfd = ::syscall(SYS_pidfd_open, pid, 0);
  if (pidfd >= 0) {
    struct pollfd fd = {static_cast<int>(pidfd), POLLIN, 0};
    for (;;) {
      int ready = ::poll(&fd, 1, -1);
      if (ready > 0) break;
      if (ready < 0 && errno != EINTR) break;
    }
  } else {
    // Kernels before 5.3: poll. A zombie still answers kill(0), hence the parent check too.
    while (!processGone(pid) && !(directChild && ::getppid() != pid)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }
  writeStderr(message);
  exitWithGroup(1);
}

Napi::Value WatchParent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "watchParent: expected a pid");
  int pid = info[0].As<Napi::Number>().Int32Value();
  if (pid <= 1) throw Napi::RangeError::New(env, "watchParent: pid must be > 1");
  if (parentWatched.exchange(true)) return Napi::Boolean::New(env, false);
  bool directChild = ::getppid() == pid;
  if (directChild) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // The parent may have died before the prctl: then nothing would ever send the signal.
    if (::getppid() != pid) {
      writeStderr("plsc: the launcher (pid " + std::to_string(pid) + ") is gone; exiting\n");
      exitWithGroup(1);
    }
  } else if (processGone(pid)) {
    writeStderr("plsc: the launcher (pid " + std::to_string(pid) + ") is gone; exiting\n");
    exitWithGroup(1);
  }
  std::thread(watchParentThread, pid, directChild).detach();
  return Napi::Boolean::New(env, true);
}

// ---------------------------------------------------------------------------------------------
// Stall watchdog.
// ---------------------------------------------------------------------------------------------
struct StallWatch {
  std::mutex mutex;
  std::condition_variable wake;
  bool threadStarted = false;
  int64_t timeoutMs = 0;  // 0: off
  int64_t lastBeatMs = 0;
  int64_t lastStep = 0;
  int exitCode = 1;
  std::string label;
};

StallWatch& stallWatch() {
  static StallWatch* watch = new StallWatch();  // never destroyed: its thread may outlive static teardown
  return *watch;
}

void stallThread() {
  StallWatch& w = stallWatch();
  std::unique_lock<std::mutex> lock(w.mutex);
  for (;;) {
    if (w.timeoutMs <= 0) {
      w.wake.wait(lock);
      continue;
    }
    const int64_t due = w.lastBeatMs + w.timeoutMs;
    const int64_t now = nowMs();
    if (now < due) {
      w.wake.wait_for(lock, std::chrono::milliseconds(std::min<int64_t>(due - now, 1000)));
      continue;
    }
    std::string waiting = describeBlockingCollective ? describeBlockingCollective() : "";
    const std::string seconds = std::to_string((now - w.lastBeatMs) / 1000);
    writeStderr("plsc: " + w.label + ": stalled: no progress for " + seconds + " s after step " +
                std::to_string(w.lastStep) + (waiting.empty() ? "" : " (" + waiting + ")") + " (stallTimeout " +
                std::to_string(w.timeoutMs / 1000) + " s); stopping\n");
    // Not the whole process group: a launcher tells a failure by the exit code, then cleans up.
    ::_exit(w.exitCode);
  }
}

// stallWatch(timeoutMs, label, exitCode): (re)arms the watchdog; timeoutMs 0 turns it off.
Napi::Value StallWatchStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsString()) throw Napi::TypeError::New(env, "stallWatch(timeoutMs, label, exitCode)");
  StallWatch& w = stallWatch();
  {
    std::lock_guard<std::mutex> lock(w.mutex);
    w.timeoutMs = info[0].As<Napi::Number>().Int64Value();
    w.label = info[1].As<Napi::String>().Utf8Value();
    w.exitCode = info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 1;
    w.lastBeatMs = nowMs();
    if (!w.threadStarted && w.timeoutMs > 0) {
      w.threadStarted = true;
      std::thread(stallThread).detach();
    }
  }
  w.wake.notify_all();
  return env.Undefined();
}

// stallBeat(step): progress was made; the step is named if the watchdog fires later.
Napi::Value StallBeat(const Napi::CallbackInfo& info) {
  StallWatch& w = stallWatch();
  std::lock_guard<std::mutex> lock(w.mutex);
  w.lastBeatMs = nowMs();
  if (info[0].IsNumber()) w.lastStep = info[0].As<Napi::Number>().Int64Value();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// SIGINT: the first sets a flag, the second exits with 130.
// ---------------------------------------------------------------------------------------------
std::atomic<int> interrupts{0};
struct sigaction previousInterrupt;
bool interruptCaught = false;

void onInterrupt(int) {
  if (interrupts.fetch_add(1) >= 1) {
    static const char message[] = "plsc: second interrupt; exiting now\n";
    ssize_t ignored = ::write(2, message, sizeof(message) - 1);
    (void)ignored;
    ::_exit(130);
  }
}

Napi::Value InterruptCatch(const Napi::CallbackInfo& info) {
  if (!interruptCaught) {
    struct sigaction action = {};
    action.sa_handler = onInterrupt;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, &previousInterrupt);
    interruptCaught = true;
  }
  interrupts = 0;
  return info.Env().Undefined();
}

Napi::Value InterruptRelease(const Napi::CallbackInfo& info) {
  if (interruptCaught) {
    ::sigaction(SIGINT, &previousInterrupt, nullptr);
    interruptCaught = false;
  }
  return info.Env().Undefined();
}

Napi::Value InterruptCount(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), interrupts.load()); }

}  // namespace

void initLifeline(Napi::Env env, Napi::Object exports) {
  exports.Set("watchParent", Napi::Function::New(env, WatchParent));
  exports.Set("stallWatch", Napi::Function::New(env, StallWatchStart));
  exports.Set("stallBeat", Napi::Function::New(env, StallBeat));
  exports.Set("interruptCatch", Napi::Function::New(env, InterruptCatch));
  exports.Set("interruptRelease", Napi::Function::New(env, InterruptRelease));
  exports.Set("interruptCount", Napi::Function::New(env, InterruptCount));
}

}  // namespace plsc
