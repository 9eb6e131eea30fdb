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
#include <cctype>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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

// Calls kernel() (a lambda that calls a C kernel) as run() and runFields() do: unguarded
// without a stage, else with the fatal signals and interrupt(run) jumping back here, where
// it throws "crashed (SIGNAME)" or "was interrupted".
template <class Call>
void CallKernel(const Napi::CallbackInfo& info, size_t stage_arg, Call kernel) {
  bool guarded = info.Length() > stage_arg;
  if (guarded && !info[stage_arg].IsString()) throw Napi::TypeError::New(info.Env(), "stage must be a string");
  int32_t run = guarded ? IntArg(info, stage_arg + 1, "run", 1, 2147483647) : 0;
  if (!guarded) {
    kernel();
    return;
  }
  InstallHandlers();
  size_t slot = ThreadSlot();
  InKernel here;
  here.signal = 0;
  if (sigsetjmp(here.jump, 0) == 0) {
    if (slot < kMaxThreads) g_in_kernel[slot].store(run);
    t_in_kernel = &here;
    kernel();
    t_in_kernel = nullptr;
  }
  if (slot < kMaxThreads) g_in_kernel[slot].store(0);
  if (here.signal == InterruptSignal()) {
    throw Napi::Error::New(info.Env(), "was interrupted: the run had failed and its kernel had not returned");
  }
  if (here.signal != 0) throw Napi::Error::New(info.Env(), std::string("crashed (") + SignalName(here.signal) + ")");
}

// A handle from open() at argument 0, or nullptr when argument 0 is not a number. What the
// symbol is (a classic or a fields kernel) the caller knows: open() only finds it.
commloop_kernel_fn* OpenedArg(const Napi::CallbackInfo& info, const char* name) {
  if (info.Length() < 1 || !info[0].IsNumber()) return nullptr;
  double h = info[0].As<Napi::Number>().DoubleValue();
  if (!(h >= 0 && h < static_cast<double>(g_opened_count.load())) || h != static_cast<double>(static_cast<size_t>(h))) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " handle " + info[0].ToString().Utf8Value() + " was not returned by open()");
  }
  return g_opened[static_cast<size_t>(h)];
}

// run(fn, input, output, rank, nranks, iteration[, stage, run])
Napi::Value Run(const Napi::CallbackInfo& info) {
  commloop_kernel_fn* kernel = OpenedArg(info, "fn");
  if (kernel == nullptr) {
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
  CallKernel(info, 6, [&] { kernel(in.Data(), in.ElementLength(), out.Data(), out.ElementLength(), rank, nranks, iteration); });
  return info.Env().Undefined();
}

// ---- fields kernels (issue 27) -----------------------------------------------------
// prepareFields checks a stage's field table once and keeps it; runFields then only
// places it over the arena. Tables stay for the life of the process, as opened libraries
// do: each worker thread prepares its own at start while others may run, so a fixed table
// with an atomic count, no lock on the hot path.
constexpr int kMaxFields = 256;  // per side; a stage's fields are written by hand
constexpr int kMaxDtype = COMMLOOP_COMPLEX64;
constexpr size_t kDtypeBytes[kMaxDtype + 1] = {0, 8, 4, 8, 4, 2, 1, 8, 4, 2, 1, 16, 8};

struct FieldSide {
  std::vector<std::string> names;
  std::vector<commloop_field> fields;  // data holds the field's byte offset in the block
  std::vector<uint64_t> end;           // each field's end in the block, in bytes (unpadded)
  uint64_t bytes = 0;                  // the packed block's bytes
};
struct PreparedFields {
  commloop_fields_fn* kernel;
  FieldSide in, out;
};
constexpr size_t kMaxPrepared = 65536;
PreparedFields* g_prepared[kMaxPrepared];
std::atomic<size_t> g_prepared_count{0};
std::mutex g_prepare_mu;

// v as an integer in [min, max]; `what` names it in the message.
int64_t IntValue(Napi::Env env, Napi::Value v, const std::string& what, int64_t min, int64_t max) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, what + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max)) || d != static_cast<double>(static_cast<int64_t>(d))) {
    throw Napi::RangeError::New(env, what + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                                         " (got " + v.ToString().Utf8Value() + ")");
  }
  return static_cast<int64_t>(d);
}

int64_t IntProp(Napi::Env env, Napi::Object o, const char* key, const std::string& what, int64_t min, int64_t max) {
  return IntValue(env, o.Get(key), what + "." + key, min, max);
}

bool IsIdentifier(const std::string& s) {
  if (s.empty() || !(isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

// table.in or table.out, checked field by field; the first bad item is named.
void ReadSide(Napi::Env env, Napi::Object table, const char* key, FieldSide& side) {
  Napi::Value list = table.Get(key);
  std::string where = std::string("table.") + key;
  if (!list.IsArray()) throw Napi::TypeError::New(env, where + " must be an array of fields");
  Napi::Array a = list.As<Napi::Array>();
  if (a.Length() < 1 || a.Length() > static_cast<uint32_t>(kMaxFields)) {
    throw Napi::RangeError::New(env, where + " must hold 1 to " + std::to_string(kMaxFields) + " fields (got " + std::to_string(a.Length()) + ")");
  }
  side.names.reserve(a.Length());  // the descriptors point into these strings: no reallocation
  for (uint32_t i = 0; i < a.Length(); i++) {
    std::string at = where + "[" + std::to_string(i) + "]";
    Napi::Value fv = a.Get(i);
    if (!fv.IsObject() || fv.IsArray()) throw Napi::TypeError::New(env, at + " must be an object { name, dtype, count, shape, offset }");
    Napi::Object f = fv.As<Napi::Object>();
    Napi::Value nv = f.Get("name");
    if (!nv.IsString()) throw Napi::TypeError::New(env, at + ".name must be a string");
    std::string name = nv.As<Napi::String>().Utf8Value();
    if (!IsIdentifier(name)) throw Napi::RangeError::New(env, at + ".name must be an identifier ([A-Za-z_][A-Za-z0-9_]*; got \"" + name + "\")");
    for (uint32_t j = 0; j < i; j++) {
      if (side.names[j] == name) throw Napi::RangeError::New(env, at + ".name \"" + name + "\" is also " + where + "[" + std::to_string(j) + "]'s");
    }
    at += " (\"" + name + "\")";
    commloop_field d;
    memset(&d, 0, sizeof d);
    d.dtype = static_cast<int>(IntProp(env, f, "dtype", at, 1, kMaxDtype));
    d.count = static_cast<size_t>(IntProp(env, f, "count", at, 1, 2147483647));
    Napi::Value sv = f.Get("shape");
    if (!sv.IsArray() || sv.As<Napi::Array>().Length() < 1 || sv.As<Napi::Array>().Length() > 4) {
      throw Napi::TypeError::New(env, at + ".shape must be an array of 1 to 4 integers");
    }
    Napi::Array shape = sv.As<Napi::Array>();
    d.ndim = static_cast<int>(shape.Length());
    uint64_t product = 1;
    for (int k = 0; k < d.ndim; k++) {
      d.shape[k] = static_cast<int>(IntValue(env, shape.Get(static_cast<uint32_t>(k)), at + ".shape[" + std::to_string(k) + "]", 1, 2147483647));
      product = std::min<uint64_t>(product * static_cast<uint64_t>(d.shape[k]), uint64_t{1} << 40);  // no overflow
    }
    if (product != d.count) {
      throw Napi::RangeError::New(env, at + ".count must be the product of its shape, " + std::to_string(product) + " (got " + std::to_string(d.count) + ")");
    }
    // The packed rule (src/pipeline/fields.ts packedLayout): in table order, each field's bytes
    // padded to 8. Any other offset means the two sides disagree on the layout.
    uint64_t offset = static_cast<uint64_t>(IntProp(env, f, "offset", at, 0, int64_t{1} << 53));
    if (offset != side.bytes) {
      throw Napi::RangeError::New(env, at + ".offset must be " + std::to_string(side.bytes) +
                                           ", where the packed block puts it (8-byte aligned, right after the field before it; got " +
                                           std::to_string(offset) + ")");
    }
    uint64_t bytes = d.count * kDtypeBytes[d.dtype];
    side.names.push_back(name);
    d.data = reinterpret_cast<void*>(static_cast<uintptr_t>(offset));
    side.fields.push_back(d);
    side.end.push_back(offset + bytes);
    side.bytes = offset + (bytes + 7) / 8 * 8;
  }
  for (size_t i = 0; i < side.fields.size(); i++) side.fields[i].name = side.names[i].c_str();
}

// prepareFields(kernel, table): checks a fields kernel's table; returns a handle for runFields().
Napi::Value PrepareFields(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // open() found a symbol and typed it as a classic kernel; here it is a fields one (through
  // void (*)(), the generic function pointer type, as dlsym's result is untyped anyway).
  commloop_fields_fn* kernel = reinterpret_cast<commloop_fields_fn*>(reinterpret_cast<void (*)()>(OpenedArg(info, "kernel")));
  if (kernel == nullptr) {
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "kernel must be a string or a handle from open()");
    std::string fn = info[0].As<Napi::String>().Utf8Value();
    if (fn == "fields_demo") kernel = commloop_fields_demo;
    if (kernel == nullptr) throw Napi::RangeError::New(env, "kernel must be fields_demo or a handle from open() (got \"" + fn + "\")");
  }
  if (info.Length() < 2 || !info[1].IsObject() || info[1].IsArray()) throw Napi::TypeError::New(env, "table must be an object { in, out }");
  std::unique_ptr<PreparedFields> p(new PreparedFields());
  p->kernel = kernel;
  ReadSide(env, info[1].As<Napi::Object>(), "in", p->in);
  ReadSide(env, info[1].As<Napi::Object>(), "out", p->out);
  std::lock_guard<std::mutex> lock(g_prepare_mu);
  size_t slot = g_prepared_count.load();
  if (slot >= kMaxPrepared) throw Napi::RangeError::New(env, "too many prepared field tables");
  g_prepared[slot] = p.release();
  g_prepared_count.store(slot + 1);  // publish after the slot is written
  return Napi::Number::New(env, static_cast<double>(slot));
}

// A block's descriptors over the arena, each field checked to lie inside it: a wrong offset
// from JS must throw, not let the kernel write past the shared memory.
void PlaceSide(Napi::Env env, const FieldSide& side, const char* which, unsigned char* base, uint64_t at, uint64_t arena_bytes,
               commloop_field* dst) {
  for (size_t i = 0; i < side.fields.size(); i++) {
    const commloop_field& f = side.fields[i];
    uint64_t start = at + static_cast<uint64_t>(reinterpret_cast<uintptr_t>(f.data));
    uint64_t end = at + side.end[i];
    if (end > arena_bytes) {
      throw Napi::RangeError::New(env, std::string("field ") + which + "[" + std::to_string(i) + "] (\"" + f.name + "\") at bytes " +
                                           std::to_string(start) + " to " + std::to_string(end) + " lies past the arena's end (" +
                                           std::to_string(arena_bytes) + " bytes)");
    }
    dst[i] = f;
    dst[i].data = base + start;
  }
}

// runFields(handle, arena, inByte, outByte, rank, nranks, iteration[, stage, run])
Napi::Value RunFields(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "handle must be a number from prepareFields()");
  double h = info[0].As<Napi::Number>().DoubleValue();
  if (!(h >= 0 && h < static_cast<double>(g_prepared_count.load())) || h != static_cast<double>(static_cast<size_t>(h))) {
    throw Napi::RangeError::New(env, "handle " + info[0].ToString().Utf8Value() + " was not returned by prepareFields()");
  }
  const PreparedFields* p = g_prepared[static_cast<size_t>(h)];
  Napi::Float64Array arena = F64Arg(info, 1, "arena");
  uint64_t arena_bytes = arena.ByteLength();
  // Multiples of 8: the arena's start is 8-byte aligned, and so must every field be.
  int64_t at[2];
  const char* names[2] = {"inByte", "outByte"};
  for (int k = 0; k < 2; k++) {
    at[k] = IntValue(env, info.Length() > 2u + k ? info[2 + k] : env.Undefined(), names[k], 0, int64_t{1} << 53);
    if (at[k] % 8 != 0) throw Napi::RangeError::New(env, std::string(names[k]) + " must be a multiple of 8 (got " + std::to_string(at[k]) + ")");
  }
  int32_t rank = IntArg(info, 4, "rank", 0, 2147483647);
  int32_t nranks = IntArg(info, 5, "nranks", 1, 2147483647);
  int32_t iteration = IntArg(info, 6, "iteration", 0, 2147483647);
  if (rank >= nranks) throw Napi::RangeError::New(env, "rank must be below nranks");
  // The kernel reads one block while it writes the other: overlapping, it would read its own output.
  uint64_t in_end = static_cast<uint64_t>(at[0]) + p->in.bytes, out_end = static_cast<uint64_t>(at[1]) + p->out.bytes;
  if (static_cast<uint64_t>(at[0]) < out_end && static_cast<uint64_t>(at[1]) < in_end) {
    throw Napi::RangeError::New(env, "the input block (bytes " + std::to_string(at[0]) + " to " + std::to_string(in_end) +
                                         ") and the output block (bytes " + std::to_string(at[1]) + " to " + std::to_string(out_end) + ") overlap");
  }
  // Per call and per thread: descriptors hold this call's pointers, and threads run at once.
  thread_local std::vector<commloop_field> fields;
  size_t n_in = p->in.fields.size(), n_out = p->out.fields.size();
  fields.resize(n_in + n_out);
  unsigned char* base = reinterpret_cast<unsigned char*>(arena.Data());
  PlaceSide(env, p->in, "in", base, static_cast<uint64_t>(at[0]), arena_bytes, fields.data());
  PlaceSide(env, p->out, "out", base, static_cast<uint64_t>(at[1]), arena_bytes, fields.data() + n_in);
  commloop_field* d = fields.data();
  CallKernel(info, 7, [&] { p->kernel(d, static_cast<int>(n_in), d + n_in, static_cast<int>(n_out), rank, nranks, iteration); });
  return env.Undefined();
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
  exports.Set("prepareFields", Napi::Function::New(env, PrepareFields, "prepareFields"));
  exports.Set("runFields", Napi::Function::New(env, RunFields, "runFields"));
  return exports;
}

}  // namespace

NODE_API_MODULE(commloop_kernel, Init)
