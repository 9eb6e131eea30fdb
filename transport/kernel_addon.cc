// The native build of the C kernels, callable from JS without MPI: used by the
// threads transport with --c-backend native and by the kernel unit tests.
// Thin on purpose: TS validates first; this checks again so a wrong call throws
// instead of crashing.
#include <dlfcn.h>
#include <napi.h>
#include <signal.h>
#include <unistd.h>

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

// ---- a C stage that crashes ------------------------------------------------------
// Under the threads transport a user kernel runs inside the caller's process, so a
// segfault there ends the process. It cannot be survived, but it can be named: while
// a kernel runs, its thread records which stage and rank it is; a fatal signal on that
// thread prints one line saying so and ends the process with exit 1. Outside a kernel
// the previous handler runs unchanged (V8 uses SIGSEGV for WebAssembly bounds checks).
struct InKernel {
  char stage[128];
  int rank;
};
thread_local InKernel* t_in_kernel = nullptr;
constexpr int kFatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
struct sigaction g_previous[sizeof kFatal / sizeof kFatal[0]];

const char* SignalName(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    default: return "SIGILL";
  }
}

void OnFatal(int sig, siginfo_t* si, void* ctx) {
  size_t k = 0;
  while (kFatal[k] != sig) k++;
  InKernel* in = t_in_kernel;
  if (in == nullptr) {
    // Not ours: hand it on exactly as if we had never been installed.
    const struct sigaction& prev = g_previous[k];
    if (prev.sa_flags & SA_SIGINFO) {
      if (prev.sa_sigaction) return prev.sa_sigaction(sig, si, ctx);
    } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
      return prev.sa_handler(sig);
    }
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  // Async-signal-safe only: build the line by hand, one write(2).
  char line[256];
  size_t n = 0;
  auto put = [&](const char* s) {
    while (*s && n < sizeof line - 1) line[n++] = *s++;
  };
  char digits[16];
  int r = in->rank, d = 0;
  do digits[d++] = static_cast<char>('0' + r % 10); while ((r /= 10) > 0 && d < 15);
  put("commloop: C stage \"");
  put(in->stage);
  put("\" crashed (");
  put(SignalName(sig));
  put(") on rank ");
  while (d > 0 && n < sizeof line - 1) line[n++] = digits[--d];
  line[n++] = '\n';
  ssize_t ignored = write(2, line, n);
  (void)ignored;
  // A failed run exits 1 (README's exit table), whatever the failure was.
  _exit(1);
}

void InstallCrashHandlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (size_t k = 0; k < sizeof kFatal / sizeof kFatal[0]; k++) {
      struct sigaction sa;
      memset(&sa, 0, sizeof sa);
      sa.sa_sigaction = OnFatal;
      sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
      sigemptyset(&sa.sa_mask);
      sigaction(kFatal[k], &sa, &g_previous[k]);
    }
  });
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
  InKernel here;
  here.stage[0] = 0;
  here.rank = rank;
  if (info.Length() > 6) {
    if (!info[6].IsString()) throw Napi::TypeError::New(info.Env(), "stage must be a string");
    std::string stage = info[6].As<Napi::String>().Utf8Value();
    snprintf(here.stage, sizeof here.stage, "%s", stage.c_str());
    InstallCrashHandlers();
    t_in_kernel = &here;
  }
  kernel(in.Data(), in.ElementLength(), out.Data(), out.ElementLength(), rank, nranks, iteration);
  t_in_kernel = nullptr;
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

Napi::Value Sum(const Napi::CallbackInfo& info) {
  Napi::Float64Array x = F64Arg(info, 0, "x");
  return Napi::Number::New(info.Env(), commloop_sum(x.Data(), x.ElementLength()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("run", Napi::Function::New(env, Run, "run"));
  exports.Set("sum", Napi::Function::New(env, Sum, "sum"));
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  return exports;
}

}  // namespace

NODE_API_MODULE(commloop_kernel, Init)
