// The native build of the C kernels, callable from JS without MPI: used by the
// threads transport with --c-backend native and by the kernel unit tests.
// Thin on purpose: TS validates first; this checks again so a wrong call throws
// instead of crashing.
#include <dlfcn.h>
#include <napi.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "../wasm/commloop_kernel.h"
#include "args.h"

namespace {

// Kernels from user libraries (a pipeline's C stage, built by src/pipeline/compile.ts); the
// handle is the slot. Libraries stay loaded for the life of the process. Every worker
// thread opens its own handle at start while others may already run: a fixed table
// with an atomic count needs no lock on the hot path.
constexpr size_t kMaxOpened = 1024;
commloop_kernel_fn* g_opened[kMaxOpened];
std::atomic<size_t> g_opened_count{0};
std::mutex g_open_mu;

Napi::Float64Array F64Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Float64Array");
  }
  return info[i].As<Napi::Float64Array>();
}

using commloop::IntArg;

// ---- a C stage that crashes or never returns ------------------------------------
// Under the threads transport a user kernel runs inside the caller's process. A fatal
// signal on a thread running a kernel (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT from
// abort()) jumps back out of the kernel to run(), which throws "crashed (SIGNAME)": the
// run fails naming the stage and rank, and the caller's process lives on (its memory is
// as the kernel left it: a kernel that wrote out of bounds may have damaged it). A kernel
// that never returns is jumped out of the same way by interrupt(), which the threads
// transport calls when the run has failed and its threads must go. Kernels are pure
// functions (no locks, no allocation): leaving one in the middle leaves nothing held.
// Outside a kernel the previous handler runs unchanged (V8 uses SIGSEGV for WebAssembly
// bounds checks).
struct InKernel {
  sigjmp_buf jump;
  volatile sig_atomic_t signal;
};
thread_local InKernel* t_in_kernel = nullptr;
constexpr int kFatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
constexpr size_t kFatalCount = sizeof kFatal / sizeof kFatal[0];
struct sigaction g_previous[kFatalCount];
// interrupt()'s signal: a real-time one, which neither Node, V8 nor Open MPI use.
int InterruptSignal() { return SIGRTMAX - 2; }

// The threads running a kernel now, for interrupt(): a slot per thread, taken on its first run.
constexpr size_t kMaxThreads = 1024;
std::atomic<pthread_t> g_thread_of[kMaxThreads];
// The run whose kernel the thread is in (run()'s run argument), 0 when in none: interrupt(run)
// reaches only that run's threads, not another run's in the same process.
std::atomic<int32_t> g_in_kernel[kMaxThreads];
std::atomic<size_t> g_threads{0};
thread_local size_t t_slot = kMaxThreads;

const char* SignalName(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGABRT: return "SIGABRT";
    default: return "SIGILL";
  }
}

void OnSignal(int sig, siginfo_t* si, void* ctx) {
  InKernel* in = t_in_kernel;
  if (in != nullptr) {
    // Async-signal-safe: a store and a jump. sigsetjmp(…, 0) saved no mask, and none needs
    // restoring: SA_NODEFER leaves this signal unblocked while the handler runs.
    t_in_kernel = nullptr;
    in->signal = sig;
    siglongjmp(in->jump, 1);
  }
  if (sig == InterruptSignal()) return;  // it returned just before the signal came
  size_t k = 0;
  while (k < kFatalCount && kFatal[k] != sig) k++;
  // Not ours: hand it on exactly as if we had never been installed.
  const struct sigaction& prev = g_previous[k];
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) return prev.sa_sigaction(sig, si, ctx);
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
    return prev.sa_handler(sig);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void InstallHandlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = OnSignal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t k = 0; k < kFatalCount; k++) sigaction(kFatal[k], &sa, &g_previous[k]);
    sigaction(InterruptSignal(), &sa, nullptr);
  });
}

// This thread's slot in the table interrupt() reads; kMaxThreads when the table is full
// (that thread's kernels then cannot be interrupted, only ended with the process).
size_t ThreadSlot() {
  if (t_slot == kMaxThreads) {
    size_t slot = g_threads.fetch_add(1);
    if (slot >= kMaxThreads) return kMaxThreads;
    g_thread_of[slot].store(pthread_self());
    t_slot = slot;
  }
  return t_slot;
}

// run(fn, input, output, rank, nranks, iteration[, stage])
Napi::Value Run(const Napi::CallbackInfo& info) {
  commloop_kernel_fn* kernel = nullptr;
  if (info.Length() >= 1 && info[0].IsNumber()) {
    double h = info[0].As<Napi::Number>().DoubleValue();
    if (!(h >= 0 && h < static_cast<double>(g_opened_count.load())) || h != static_cast<double>(static_cast<size_t>(h))) {
      throw Napi::RangeError::New(info.Env(), "fn handle " + std::to_string(h) + " was not returned by open()");
    }
    kernel = g_opened[static_cast<size_t>(h)];
  } else {
    if (info.Length() < 1 || !info[0].IsString()) {
      throw Napi::TypeError::New(info.Env(), "fn must be a string or a handle from open()");
    }
    std::string fn = info[0].As<Napi::String>().Utf8Value();
    if (fn == "halfmean") kernel = commloop_halfmean;
    if (fn == "halffirst") kernel = commloop_halffirst;
    if (kernel == nullptr) {
      throw Napi::RangeError::New(info.Env(), "fn must be one of halfmean, halffirst (got \"" + fn + "\")");
    }
  }
  Napi::Float64Array in = F64Arg(info, 1, "input");
  Napi::Float64Array out = F64Arg(info, 2, "output");
  int32_t rank = IntArg(info, 3, "rank", 0, 2147483647);
  int32_t nranks = IntArg(info, 4, "nranks", 1, 2147483647);
  int32_t iteration = IntArg(info, 5, "iteration", 0, 2147483647);
  if (rank >= nranks) throw Napi::RangeError::New(info.Env(), "rank must be below nranks");
  // Both kernels read at least in[0]; an empty input would read past the view.
  if (in.ElementLength() < 1) throw Napi::RangeError::New(info.Env(), "input must hold at least 1 element");
  bool guarded = info.Length() > 6;
  if (guarded && !info[6].IsString()) throw Napi::TypeError::New(info.Env(), "stage must be a string");
  int32_t run = guarded ? IntArg(info, 7, "run", 1, 2147483647) : 0;
  if (!guarded) {
    kernel(in.Data(), in.ElementLength(), out.Data(), out.ElementLength(), rank, nranks, iteration);
    return info.Env().Undefined();
  }
  InstallHandlers();
  size_t slot = ThreadSlot();
  InKernel here;
  here.signal = 0;
  if (sigsetjmp(here.jump, 0) == 0) {
    if (slot < kMaxThreads) g_in_kernel[slot].store(run);
    t_in_kernel = &here;
    kernel(in.Data(), in.ElementLength(), out.Data(), out.ElementLength(), rank, nranks, iteration);
    t_in_kernel = nullptr;
  }
  if (slot < kMaxThreads) g_in_kernel[slot].store(0);
  if (here.signal == InterruptSignal()) {
    throw Napi::Error::New(info.Env(), "was interrupted: the run had failed and its kernel had not returned");
  }
  if (here.signal != 0) throw Napi::Error::New(info.Env(), std::string("crashed (") + SignalName(here.signal) + ")");
  return info.Env().Undefined();
}

// open(lib, symbol): dlopens a user kernel library; returns a handle for run().
Napi::Value Open(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    throw Napi::TypeError::New(info.Env(), "open(lib, symbol) takes two strings");
  }
  std::string lib = info[0].As<Napi::String>().Utf8Value();
  std::string sym = info[1].As<Napi::String>().Utf8Value();
  void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) throw Napi::Error::New(info.Env(), std::string("cannot load ") + lib + ": " + dlerror());
  void* f = dlsym(h, sym.c_str());
  if (!f) throw Napi::Error::New(info.Env(), "no symbol " + sym + " in " + lib);
  std::lock_guard<std::mutex> lock(g_open_mu);
  size_t slot = g_opened_count.load();
  if (slot >= kMaxOpened) throw Napi::RangeError::New(info.Env(), "too many opened kernels");
  g_opened[slot] = reinterpret_cast<commloop_kernel_fn*>(f);
  g_opened_count.store(slot + 1);  // publish after the slot is written
  return Napi::Number::New(info.Env(), static_cast<double>(slot));
}

// interrupt(run): every thread of this process running a kernel under run(..., stage, run)
// now jumps out of it, and its run() throws. Returns how many were signalled.
Napi::Value Interrupt(const Napi::CallbackInfo& info) {
  int32_t run = IntArg(info, 0, "run", 1, 2147483647);
  size_t n = std::min(g_threads.load(), kMaxThreads), signalled = 0;
  for (size_t i = 0; i < n; i++) {
    if (g_in_kernel[i].load() == run && pthread_kill(g_thread_of[i].load(), InterruptSignal()) == 0) signalled++;
  }
  return Napi::Number::New(info.Env(), static_cast<double>(signalled));
}

Napi::Value Sum(const Napi::CallbackInfo& info) {
  Napi::Float64Array x = F64Arg(info, 0, "x");
  return Napi::Number::New(info.Env(), commloop_sum(x.Data(), x.ElementLength()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("run", Napi::Function::New(env, Run, "run"));
  exports.Set("sum", Napi::Function::New(env, Sum, "sum"));
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("interrupt", Napi::Function::New(env, Interrupt, "interrupt"));
  return exports;
}

}  // namespace

NODE_API_MODULE(commloop_kernel, Init)
