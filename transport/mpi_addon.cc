// The thin MPI transport: init, spawn, get-parent, split, the collectives the
// protocol uses, send/recv, disconnect, finalize, abort, and a watchdog.
//
// TS validates and names things first (src/mpi/addon.ts); every function here checks
// its arguments again and throws TypeError/RangeError, never crashes. Every MPI
// return code goes through Check(), which throws the MpiError class registered
// by TS. Buffers are TypedArray views, used in place for the duration of the
// call after checking count * size fits their byteLength.
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <mpi.h>
#include <napi.h>

#include "args.h"
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

Napi::FunctionReference g_error_class;
std::vector<MPI_Comm> g_comms;  // handle -> comm; MPI_COMM_NULL once disconnected

// ---- argument checks ------------------------------------------------------------

[[noreturn]] void ThrowType(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
[[noreturn]] void ThrowRange(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

using commloop::IntArg;

std::string StrArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) ThrowType(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

void Check(Napi::Env env, int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0, cls = 0;
  MPI_Error_string(rc, msg, &len);
  MPI_Error_class(rc, &cls);
  std::string text = std::string(what) + ": " + std::string(msg, len);
  if (g_error_class.IsEmpty()) throw Napi::Error::New(env, text);
  throw Napi::Error(env, g_error_class.New({Napi::String::New(env, text), Napi::Number::New(env, rc),
                                            Napi::Number::New(env, cls)}));
}

void RequireInit(Napi::Env env) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (!init || fin) throw Napi::Error::New(env, fin ? "MPI is finalized" : "MPI is not initialized: call init() first");
}

MPI_Comm CommArg(const Napi::CallbackInfo& info, size_t i) {
  RequireInit(info.Env());
  int32_t h = IntArg(info, i, "comm", 0, 2147483647);
  if (static_cast<size_t>(h) >= g_comms.size()) ThrowRange(info.Env(), "comm " + std::to_string(h) + " is not a communicator handle");
  if (g_comms[h] == MPI_COMM_NULL) throw Napi::Error::New(info.Env(), "comm " + std::to_string(h) + " is disconnected");
  return g_comms[h];
}

int32_t AddComm(MPI_Comm c) {
  MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
  g_comms.push_back(c);
  return static_cast<int32_t>(g_comms.size() - 1);
}

struct Buf {
  void* data = nullptr;
  size_t bytes = 0;
  MPI_Datatype type = MPI_DATATYPE_NULL;
  size_t elem = 0;
};

// A Float64Array, Int32Array or Uint8Array view (over an ArrayBuffer or SharedArrayBuffer);
// null allowed when `optional`. Uint8Array is MPI_BYTE: a stage's saved state (PROTOCOL.md section 5).
Buf BufArg(const Napi::CallbackInfo& info, size_t i, const char* name, bool optional) {
  Buf b;
  if (info.Length() > i && (info[i].IsNull() || info[i].IsUndefined()) && optional) return b;
  if (info.Length() <= i || !info[i].IsTypedArray()) {
    ThrowType(info.Env(), std::string(name) + (optional ? " must be a Float64Array, an Int32Array, a Uint8Array or null" : " must be a Float64Array, an Int32Array or a Uint8Array"));
  }
  // napi_get_typedarray_info gives the data pointer for views over a
  // SharedArrayBuffer too; napi_get_arraybuffer_info would refuse those.
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(info.Env(), info[i], &type, &length, &data, nullptr, nullptr) != napi_ok) {
    ThrowType(info.Env(), std::string(name) + " must be a Float64Array, an Int32Array or a Uint8Array");
  }
  if (type == napi_float64_array) {
    b.type = MPI_DOUBLE;
    b.elem = 8;
  } else if (type == napi_int32_array) {
    b.type = MPI_INT;
    b.elem = 4;
  } else if (type == napi_uint8_array) {
    b.type = MPI_BYTE;
    b.elem = 1;
  } else {
    ThrowType(info.Env(), std::string(name) + " must be a Float64Array, an Int32Array or a Uint8Array");
  }
  b.data = data;
  b.bytes = length * b.elem;
  return b;
}

void NeedFits(Napi::Env env, const Buf& b, const char* name, int64_t count, int64_t ranks) {
  uint64_t need = static_cast<uint64_t>(count) * static_cast<uint64_t>(ranks) * b.elem;
  if (need > b.bytes) {
    ThrowRange(env, std::string(name) + " holds " + std::to_string(b.bytes) + " bytes; count " + std::to_string(count) +
                        " x " + std::to_string(ranks) + " ranks needs " + std::to_string(need));
  }
}

// Root semantics: on an intercomm the master passes ROOT (MPI_ROOT) and the remote
// side passes the root's rank; on an intracomm every rank passes the root's rank.
struct Role {
  bool inter = false;
  bool sends_all = false;  // this process is the root that holds count*ranks elements
  bool takes_part = true;  // false on a non-root member of the root's own group (MPI_PROC_NULL)
  int ranks = 0;           // ranks whose data the root's buffer holds
};

Role RoleOf(Napi::Env env, MPI_Comm comm, int root) {
  Role r;
  int inter = 0, rank = 0;
  MPI_Comm_test_inter(comm, &inter);
  r.inter = inter != 0;
  if (r.inter) {
    MPI_Comm_remote_size(comm, &r.ranks);
    if (root == MPI_ROOT) r.sends_all = true;
    else if (root == MPI_PROC_NULL) r.takes_part = false;
    else if (root < 0 || root >= r.ranks) ThrowRange(env, "root must be ROOT, PROC_NULL or a remote rank below " + std::to_string(r.ranks));
  } else {
    MPI_Comm_size(comm, &r.ranks);
    MPI_Comm_rank(comm, &rank);
    if (root < 0 || root >= r.ranks) ThrowRange(env, "root must be a rank below " + std::to_string(r.ranks));
    r.sends_all = rank == root;
  }
  return r;
}

// ---- the watchdog ------------------------------------------------------------------
// A singleton master spins forever in a collective when a spawned child dies, even
// with MPI_ERRORS_RETURN. This thread notices a dead rank (on this host) or a call
// past its deadline, says which stage, kills the run's processes and exits.

struct Watched {
  std::string stage;
  std::vector<pid_t> pids;  // 0 where the rank runs on another host
};

std::mutex g_watch_mu;
std::vector<Watched> g_watched;  // by comm handle
// A pidfd (Linux 5.3+) per watched pid: the watchdog wakes the moment one of them exits,
// not at its next 5 ms look. MPICH's launcher SIGKILLs the whole job (the hub too) about
// 10 ms after a rank dies; woken at once, the hub names the rank first. Where pidfd_open is
// missing the watchdog still looks every 5 ms.
struct PidFd {
  pid_t pid;
  int fd;
};
std::vector<PidFd> g_pidfds;  // under g_watch_mu

void OpenPidFd(pid_t pid) {
#ifdef SYS_pidfd_open
  for (const PidFd& p : g_pidfds)
    if (p.pid == pid) return;
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd >= 0) g_pidfds.push_back({pid, fd});
#else
  (void)pid;
#endif
}

// Closes the pidfds of pids no comm watches any more (their ranks now exit on purpose).
void ClosePidFds() {
  std::vector<PidFd> kept;
  for (const PidFd& p : g_pidfds) {
    bool watched = false;
    for (const Watched& w : g_watched)
      for (pid_t q : w.pids) watched = watched || q == p.pid;
    if (watched) kept.push_back(p);
    else close(p.fd);
  }
  g_pidfds.swap(kept);
}
std::atomic<int> g_inflight_comm{-1};
std::atomic<const char*> g_inflight_op{""};
std::atomic<int64_t> g_inflight_since{0};
std::atomic<int64_t> g_timeout_ms{60000};
std::atomic<bool> g_watch_started{false};
std::string g_spawn_label;  // the stage being spawned, for the watchdog's message (under g_watch_mu)
constexpr int kSpawning = -2;  // g_inflight_comm while MPI_Comm_spawn runs

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Reads /proc/<pid>/<file> into buf (NUL-terminated); false when the process is gone.
bool ReadProc(pid_t pid, const char* file, char* buf, size_t size, size_t* got = nullptr) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
  FILE* f = fopen(path, "r");
  if (!f) return false;
  size_t n = fread(buf, 1, size - 1, f);
  fclose(f);
  buf[n] = 0;
  if (got) *got = n;  // a file of NUL-separated strings (cmdline) needs its length
  return true;
}

// Direct children of `parent`, from /proc (the singleton's orted is one of ours).
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    pid_t pid = static_cast<pid_t>(atoi(e->d_name));
    char buf[512];
    if (pid <= 0 || !ReadProc(pid, "stat", buf, sizeof buf)) continue;
    const char* rp = strrchr(buf, ')');  // the command name may hold spaces
    int ppid = 0;
    if (rp && sscanf(rp + 2, "%*c %d", &ppid) == 1 && ppid == parent) out.push_back(pid);
  }
  closedir(d);
  return out;
}

void KillDescendants(pid_t parent) {
  for (pid_t pid : ChildrenOf(parent)) {
    KillDescendants(pid);
    kill(pid, SIGKILL);
  }
}

bool IsOrted(pid_t pid) {
  char comm[64];
  return ReadProc(pid, "comm", comm, sizeof comm) && strncmp(comm, "orted", 5) == 0;
}

// True when `pid` descends from this process: the only processes this addon signals.
bool IsOurs(pid_t pid) {
  for (int depth = 0; pid > 1 && depth < 64; depth++) {
    char buf[512];
    if (!ReadProc(pid, "stat", buf, sizeof buf)) return false;
    const char* rp = strrchr(buf, ')');
    int ppid = 0;
    if (!rp || sscanf(rp + 2, "%*c %d", &ppid) != 1) return false;
    if (ppid == getpid()) return true;
    pid = ppid;
  }
  return false;
}

// Our end of the pipe the singleton's orted watches (`--singleton-died-pipe FD` on its
// command line): the fd of this process open on the same pipe, or -1.
int SingletonPipe(pid_t orted) {
  char cmd[4096];
  size_t n = 0;
  if (!ReadProc(orted, "cmdline", cmd, sizeof cmd, &n)) return -1;
  int theirs = -1;
  for (size_t i = 0; i < n; i += strlen(cmd + i) + 1) {
    size_t next = i + strlen(cmd + i) + 1;
    if (strcmp(cmd + i, "--singleton-died-pipe") == 0 && next < n) {
      theirs = atoi(cmd + next);
      break;
    }
  }
  if (theirs < 0) return -1;
  char path[64];
  char pipe[128], mine[128];
  snprintf(path, sizeof path, "/proc/%d/fd/%d", orted, theirs);
  ssize_t len = readlink(path, pipe, sizeof pipe - 1);
  if (len <= 0) return -1;
  pipe[len] = 0;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  while (dirent* e = readdir(d)) {
    int fd = atoi(e->d_name);
    if (fd <= 2 || fd == dirfd(d)) continue;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t m = readlink(path, mine, sizeof mine - 1);
    if (m == len && memcmp(mine, pipe, static_cast<size_t>(len)) == 0) {
      found = fd;
      break;
    }
  }
  closedir(d);
  return found;
}

// The singleton's orted outlives MPI_Finalize until our process exits, and then
// lingers as a zombie where init does not reap (containers). So end it ourselves, as our
// exit would: close our end of the pipe it watches, on which it removes its session
// directory (/tmp/ompi.HOST.UID/...) and exits; reap it; SIGTERM, then SIGKILL, only if it
// has not gone within timeout_ms each. (SIGTERM alone is ignored there: every spawn-mode run
// waited out the whole second, then SIGKILL left its session directory behind.) Other
// children belong to Node (libuv reaps those).
void EndOrted(int timeout_ms) {
  for (pid_t k : ChildrenOf(getpid())) {
    if (!IsOrted(k)) continue;
    // Let it reap the ranks it started first, or they become init's zombies.
    int64_t until = NowMs() + timeout_ms;
    while (!ChildrenOf(k).empty() && NowMs() < until) usleep(2000);
    int fd = SingletonPipe(k);
    if (fd >= 0) {
      close(fd);
      until = NowMs() + timeout_ms;
      while (waitpid(k, nullptr, WNOHANG) == 0 && NowMs() < until) usleep(1000);
      if (kill(k, 0) != 0) continue;  // gone and reaped
    }
    kill(k, SIGTERM);
    until = NowMs() + timeout_ms;
    while (waitpid(k, nullptr, WNOHANG) == 0) {
      if (NowMs() > until) {
        kill(k, SIGKILL);
        waitpid(k, nullptr, 0);
        break;
      }
      usleep(1000);
    }
  }
}

// The singleton's orted (a child of this process), found when the first stage is watched:
// from then on its death is looked for before the ranks'.
std::atomic<pid_t> g_orted{0};

// The run's Open MPI job family (jobid >> 16, shared by every job of one singleton hub or
// one mpirun), read from a watched rank's environment; -1 until known.
std::atomic<int64_t> g_family{-1};

void LearnFamily(pid_t pid) {
  if (g_family.load() >= 0 || pid <= 0) return;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/environ", pid);
  FILE* f = fopen(path, "r");
  if (!f) return;
  std::string env;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) env.append(buf, n);
  fclose(f);
  const std::string key = std::string("OMPI_MCA_ess_base_jobid=");
  size_t at = env.find(key);
  if (at != std::string::npos && (at == 0 || env[at - 1] == '\0')) g_family.store(strtoll(env.c_str() + at + key.size(), nullptr, 10) >> 16);
}

// Open MPI's shared-memory segments of this run on this host (vader_segment.HOST.UID.JOBID.RANK
// in /dev/shm): its daemon unlinks them when a job ends, but not when it was killed with the
// job. Called after the run's processes are killed; the supervisor sweeps again at its end.
void RemoveSegments() {
  int64_t family = g_family.load();
  if (family < 0) return;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::string prefix = std::string("vader_segment.") + host + "." + std::to_string(geteuid()) + ".";
  DIR* d = opendir("/dev/shm");
  if (!d) return;
  while (dirent* e = readdir(d)) {
    if (strncmp(e->d_name, prefix.c_str(), prefix.size()) != 0) continue;
    unsigned long jobid = strtoul(e->d_name + prefix.size(), nullptr, 16);
    if (static_cast<int64_t>(jobid >> 16) == family) unlinkat(dirfd(d), e->d_name, 0);
  }
  closedir(d);
}

void KillWatched() {
  std::vector<pid_t> ranks;
  for (const Watched& w : g_watched)
    for (pid_t p : w.pids)
      if (p > 0 && IsOurs(p)) ranks.push_back(p);
  for (pid_t p : ranks) kill(p, SIGKILL);
  // Give their parent (the orted) a moment to reap them: killed with it, they would
  // be left as zombies for init, which in a container may never reap them.
  int64_t until = NowMs() + 1000;
  for (size_t i = 0; i < ranks.size() && NowMs() < until;) {
    char path[32];
    snprintf(path, sizeof path, "/proc/%d", ranks[i]);
    if (access(path, F_OK) == 0) usleep(2000);
    else i++;
  }
  // The singleton's orted and whatever it started; no other child of this process.
  for (pid_t k : ChildrenOf(getpid())) {
    if (!IsOrted(k)) continue;
    KillDescendants(k);
    kill(k, SIGKILL);
  }
  EndOrted(500);
  RemoveSegments();
}

// Where failures go: -1 for the CLI's own line on stderr, else (a hub process run by a
// supervisor, src/mpi/hub.ts) a JSON line on this fd, which the supervisor turns into
// its one message. Stage names are [A-Za-z0-9_.-], details are ours: no escaping needed.
std::atomic<int> g_report_fd{-1};
std::atomic<pid_t> g_lifeline{0};

// Every line on the report fd goes through here, whole, under one mutex: the hub's own
// messages (report(), from JS), the watchdog's failures and its pulse never interleave,
// however long a line is (a pipe splits writes past PIPE_BUF).
std::mutex g_report_mu;

void WriteReport(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_report_mu);
  int fd = g_report_fd.load();
  if (fd < 0) fd = 2;
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = write(fd, line.data() + done, line.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 100);
    } else if (!(n < 0 && errno == EINTR)) {
      return;  // the reader is gone: nobody to tell
    }
  }
}

// How often the watchdog tells the supervisor that this process and its host are still
// there: a hub on a host cut off by the network falls silent, whatever its calls do.
constexpr int64_t kPulseMs = 500;
// After a step's deadline, how long a stage's own report of a stuck rank may take to come.
constexpr int64_t kStageReportGraceMs = 400;

struct Failure {
  std::string stage;  // empty: no stage to blame
  int rank = -1;
  const char* reason = "exited";
  std::string detail;
  std::string host;  // set when known: a rank watched by pid runs on this host
};

[[noreturn]] void Fail(const Failure& f) {
  std::string line;
  int fd = g_report_fd.load();
  if (fd >= 0) {
    line = "@@commloop {\"t\":\"fail\",\"reason\":\"" + std::string(f.reason) + "\",\"detail\":\"" + f.detail + "\"";
    if (!f.stage.empty()) line += ",\"stage\":\"" + f.stage + "\"";
    if (f.rank >= 0) line += ",\"rank\":" + std::to_string(f.rank);
    if (!f.host.empty()) line += ",\"host\":\"" + f.host + "\"";
    line += "}\n";
  } else {
    line = "commloop: ";
    if (!f.stage.empty()) line += "stage \"" + f.stage + "\"" + (f.rank >= 0 ? " rank " + std::to_string(f.rank) : "") + ": ";
    line += f.detail + "\n";
  }
  WriteReport(line);
  KillWatched();
  _exit(1);
}

// How a watched rank ended: gone (reaped by its orted), or a zombie whose exit status
// /proc still holds (field 52 of stat, Linux >= 3.5). Returns false while it runs.
bool Ended(pid_t pid, std::string* how, const char** reason) {
  char buf[1024];
  if (!ReadProc(pid, "stat", buf, sizeof buf)) {
    if (kill(pid, 0) == 0 || errno != ESRCH) return false;
    *how = "died";  // reaped already: how it ended is its orted's to know
    *reason = "exited";
    return true;
  }
  const char* rp = strrchr(buf, ')');
  if (!rp || rp[2] != 'Z') return false;
  // After ") Z": fields 4..52; the exit status is the last one.
  const char* last = strrchr(buf, ' ');
  int status = last ? atoi(last + 1) : 0;
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    *how = std::string("was killed by ") + (sig == SIGKILL ? "SIGKILL" : sig == SIGTERM ? "SIGTERM" : sig == SIGSEGV ? "SIGSEGV" : sig == SIGABRT ? "SIGABRT" : "signal " + std::to_string(sig));
    *reason = "killed";
  } else {
    *how = "exited with code " + std::to_string(WEXITSTATUS(status));
    *reason = "exited";
  }
  return true;
}

void WatchLoop() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  const std::string pulse = std::string("@@commloop {\"t\":\"pulse\",\"host\":\"") + host + "\"}\n";
  int64_t pulsed = 0;
  for (;;) {
    // Often enough that the rank that died first is still the only one gone: Open MPI
    // takes the rest of the job down soon after, and the message should name the cause.
    // With pidfds, at once when a watched rank exits.
    std::vector<struct pollfd> fds;
    {
      std::lock_guard<std::mutex> lock(g_watch_mu);
      for (const PidFd& p : g_pidfds) fds.push_back({p.fd, POLLIN, 0});
    }
    if (fds.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    else poll(fds.data(), fds.size(), 5);
    // Outside the watch lock: a slow reader must not hold up watch() and friends.
    if (g_report_fd.load() >= 0 && NowMs() - pulsed >= kPulseMs) {
      pulsed = NowMs();
      WriteReport(pulse);
    }
    std::lock_guard<std::mutex> lock(g_watch_mu);
    pid_t lifeline = g_lifeline.load();
    if (lifeline > 0 && getppid() != lifeline) {
      Failure f;
      f.reason = "exited";
      f.detail = "the process that started the run is gone";
      Fail(f);
    }
    // The singleton's daemon first: its ranks exit (code 195) when they lose it, and the
    // daemon, not they, is what failed. Found when the first stage is watched (Watch).
    bool watching = false;
    for (const Watched& w : g_watched) watching = watching || !w.pids.empty();
    pid_t orted = g_orted.load();
    std::string how;
    const char* reason = "exited";
    if (watching && orted > 0 && Ended(orted, &how, &reason)) {
      Failure f;
      f.reason = reason;
      f.detail = std::string("Open MPI's daemon on ") + host + " (orted, pid " + std::to_string(orted) + ") " + how;
      f.host = host;
      Fail(f);
    }
    // The first rank found ended is the cause; Open MPI takes the rest down after it.
    for (const Watched& w : g_watched) {
      for (size_t r = 0; r < w.pids.size(); r++) {
        std::string how;
        const char* reason = "exited";
        if (w.pids[r] > 0 && Ended(w.pids[r], &how, &reason)) {
          Failure f;
          f.stage = w.stage;
          f.rank = static_cast<int>(r);
          f.reason = reason;
          f.detail = how + " (pid " + std::to_string(w.pids[r]) + ")";
          char host[256] = {0};
          gethostname(host, sizeof host - 1);
          f.host = host;
          Fail(f);
        }
      }
    }
    int c = g_inflight_comm.load();
    int64_t since = g_inflight_since.load();
    // A step's deadline has a grace: a stage rank whose own compute watch finds it stuck
    // (watchCompute) names its rank, which a collective that never returns cannot.
    int64_t grace = c >= 0 ? kStageReportGraceMs : 0;
    if ((c >= 0 || c == kSpawning) && since > 0 && NowMs() - since > g_timeout_ms.load() + grace) {
      Failure f;
      f.stage = c == kSpawning ? g_spawn_label
                : static_cast<size_t>(c) < g_watched.size() ? g_watched[c].stage
                                                            : std::string();
      f.reason = c == kSpawning ? "start" : "timeout";
      f.detail = std::string("did not answer ") + g_inflight_op.load() + " within " + std::to_string(g_timeout_ms.load()) + " ms";
      Fail(f);
    }
  }
}

// Only the master needs the thread; stage processes never start it.
void EnsureWatchdog() {
  if (!g_watch_started.exchange(true)) std::thread(WatchLoop).detach();
}

// Marks a blocking call for the watchdog for its duration.
struct InFlight {
  InFlight(int32_t comm, const char* op) {
    g_inflight_op.store(op);
    g_inflight_since.store(NowMs());
    g_inflight_comm.store(comm);
  }
  ~InFlight() {
    g_inflight_comm.store(-1);
    g_inflight_since.store(0);
  }
};

int32_t Handle(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }

// ---- the API -------------------------------------------------------------------------

Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction()) ThrowType(info.Env(), "errorClass must be a function");
  g_error_class = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (fin) throw Napi::Error::New(env, "MPI is finalized: MPI cannot start again in this process");
  if (!init) {
    // Node marks fds 0-2 close-on-exec; the singleton's orted would start without
    // them and the first line a spawned child prints would take the job down.
    for (int fd = 0; fd <= 2; fd++) {
      int fl = fcntl(fd, F_GETFD);
      if (fl >= 0) fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
    }
#ifdef OPEN_MPI
    // Open MPI's plugins resolve symbols from libmpi; load it globally before they load.
    // Only in Open MPI's build of this file: in MPICH's, its symbols would take the place
    // of libmpich's (MPI_Comm_set_errhandler crashed there).
    dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL);
#endif
    int provided = 0;
    Check(env, MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);  // spawn reports its errors here
    g_comms.clear();
    g_comms.push_back(MPI_COMM_WORLD);  // handle 0
  }
  int provided = 0, rank = 0, size = 0, len = 0;
  MPI_Query_thread(&provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  char version[MPI_MAX_LIBRARY_VERSION_STRING];
  MPI_Get_library_version(version, &len);
  std::string v(version, len);
  size_t nl = v.find_first_of("\n,");
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", v.substr(0, nl));
  o.Set("threadLevel", provided);
  o.Set("world", 0);
  o.Set("rank", rank);
  o.Set("size", size);
  return o;
}

Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RequireInit(env);
  std::string command = StrArg(info, 0, "command");
  if (info.Length() < 2 || !info[1].IsArray()) ThrowType(env, "args must be an array of strings");
  Napi::Array arr = info[1].As<Napi::Array>();
  std::vector<std::string> args;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value a = arr.Get(i);
    if (!a.IsString()) ThrowType(env, "args must be an array of strings");
    args.push_back(a.As<Napi::String>().Utf8Value());
  }
  int32_t maxprocs = IntArg(info, 2, "maxprocs", 1, 65536);
  MPI_Info mpiInfo = MPI_INFO_NULL;
  if (info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsNull()) {
    if (!info[3].IsObject()) ThrowType(env, "info must be an object of strings");
    Napi::Object o = info[3].As<Napi::Object>();
    Napi::Array keys = o.GetPropertyNames();
    MPI_Info_create(&mpiInfo);
    for (uint32_t i = 0; i < keys.Length(); i++) {
      Napi::Value k = keys.Get(i), v = o.Get(k);
      if (!v.IsString()) {
        MPI_Info_free(&mpiInfo);
        ThrowType(env, "info must be an object of strings");
      }
      MPI_Info_set(mpiInfo, k.ToString().Utf8Value().c_str(), v.As<Napi::String>().Utf8Value().c_str());
    }
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(&a[0]);
  argv.push_back(nullptr);
  std::string label = info.Length() > 4 && info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : command;
  {
    std::lock_guard<std::mutex> lock(g_watch_mu);
    g_spawn_label = label;
  }
  std::vector<int> errcodes(maxprocs, MPI_SUCCESS);
  MPI_Comm inter = MPI_COMM_NULL;
  // A missing or non-MPI executable makes a singleton's spawn hang: bound it too.
  EnsureWatchdog();
  InFlight f(kSpawning, "its spawn");
  int rc = MPI_Comm_spawn(command.c_str(), argv.data(), maxprocs, mpiInfo, 0, MPI_COMM_SELF, &inter, errcodes.data());
  if (mpiInfo != MPI_INFO_NULL) MPI_Info_free(&mpiInfo);
  Check(env, rc, "MPI_Comm_spawn");
  for (int e : errcodes) Check(env, e, "MPI_Comm_spawn (a child)");
  return Napi::Number::New(env, AddComm(inter));
}

Napi::Value GetParent(const Napi::CallbackInfo& info) {
  RequireInit(info.Env());
  MPI_Comm parent = MPI_COMM_NULL;
  Check(info.Env(), MPI_Comm_get_parent(&parent), "MPI_Comm_get_parent");
  if (parent == MPI_COMM_NULL) return info.Env().Null();
  for (size_t i = 0; i < g_comms.size(); i++)
    if (g_comms[i] == parent) return Napi::Number::New(info.Env(), static_cast<double>(i));
  return Napi::Number::New(info.Env(), AddComm(parent));
}

Napi::Value Split(const Napi::CallbackInfo& info) {
  MPI_Comm comm = CommArg(info, 0);
  int32_t color = IntArg(info, 1, "color", -1, 2147483647);
  int32_t key = IntArg(info, 2, "key", -2147483647, 2147483647);
  MPI_Comm out = MPI_COMM_NULL;
  Check(info.Env(), MPI_Comm_split(comm, color < 0 ? MPI_UNDEFINED : color, key, &out), "MPI_Comm_split");
  if (out == MPI_COMM_NULL) return info.Env().Null();
  return Napi::Number::New(info.Env(), AddComm(out));
}

// intercommCreate(local, localLeader, peer, remoteLeader, tag): MPMD mode's way to a
// master<->stage intercommunicator (docs/PROTOCOL.md).
Napi::Value IntercommCreate(const Napi::CallbackInfo& info) {
  MPI_Comm local = CommArg(info, 0);
  int32_t localLeader = IntArg(info, 1, "localLeader", 0, 2147483647);
  MPI_Comm peer = CommArg(info, 2);
  int32_t remoteLeader = IntArg(info, 3, "remoteLeader", 0, 2147483647);
  int32_t tag = IntArg(info, 4, "tag", 0, 32767);
  MPI_Comm inter = MPI_COMM_NULL;
  InFlight f(Handle(info, 0), "an intercomm create");
  Check(info.Env(), MPI_Intercomm_create(local, localLeader, peer, remoteLeader, tag, &inter), "MPI_Intercomm_create");
  return Napi::Number::New(info.Env(), AddComm(inter));
}

// merge(inter, high): MPI_Intercomm_merge; the group that passes high = false comes first.
Napi::Value Merge(const Napi::CallbackInfo& info) {
  MPI_Comm inter = CommArg(info, 0);
  if (info.Length() <= 1 || !info[1].IsBoolean()) ThrowType(info.Env(), "high must be a boolean");
  int flag = 0;
  MPI_Comm_test_inter(inter, &flag);
  if (!flag) ThrowType(info.Env(), "merge needs an intercommunicator");
  MPI_Comm out = MPI_COMM_NULL;
  InFlight f(Handle(info, 0), "an intercomm merge");
  Check(info.Env(), MPI_Intercomm_merge(inter, info[1].As<Napi::Boolean>().Value() ? 1 : 0, &out), "MPI_Intercomm_merge");
  return Napi::Number::New(info.Env(), AddComm(out));
}

// appnum(): MPI_APPNUM of this process (its app context under an MPMD mpirun), or null.
Napi::Value AppNum(const Napi::CallbackInfo& info) {
  RequireInit(info.Env());
  int* v = nullptr;
  int flag = 0;
  MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_APPNUM, &v, &flag);
  if (!flag || v == nullptr) return info.Env().Null();
  return Napi::Number::New(info.Env(), *v);
}

// free(comm): MPI_Comm_free for communicators that are not connected to other jobs.
Napi::Value Free(const Napi::CallbackInfo& info) {
  MPI_Comm comm = CommArg(info, 0);
  int32_t h = Handle(info, 0);
  if (comm == MPI_COMM_WORLD) ThrowRange(info.Env(), "comm 0 is MPI_COMM_WORLD and cannot be freed");
  Check(info.Env(), MPI_Comm_free(&comm), "MPI_Comm_free");
  g_comms[h] = MPI_COMM_NULL;
  return info.Env().Undefined();
}

Napi::Value Describe(const Napi::CallbackInfo& info) {
  MPI_Comm comm = CommArg(info, 0);
  int inter = 0, rank = 0, size = 0, remote = 0;
  MPI_Comm_test_inter(comm, &inter);
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (inter) MPI_Comm_remote_size(comm, &remote);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("inter", inter != 0);
  o.Set("rank", rank);
  o.Set("size", size);
  o.Set("remoteSize", remote);
  return o;
}

Napi::Value Bcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MPI_Comm comm = CommArg(info, 0);
  Buf b = BufArg(info, 1, "buffer", false);
  int32_t root = IntArg(info, 2, "root", MPI_ROOT < MPI_PROC_NULL ? MPI_ROOT : MPI_PROC_NULL, 2147483647);
  RoleOf(env, comm, root);
  int count = static_cast<int>(b.bytes / b.elem);
  InFlight f(Handle(info, 0), "a broadcast");
  Check(env, MPI_Bcast(b.data, count, b.type, root, comm), "MPI_Bcast");
  return env.Undefined();
}

// scatter(comm, send, recv, count, root) and gather(comm, send, recv, count, root):
// count is per rank; the root's buffer holds count * ranks elements.
// scatterOthers/gatherOthers: the same on an intracommunicator whose root moves nothing of
// its own (a hub merged with a stage, docs/PROTOCOL.md): its buffer holds count elements of
// every other rank, in rank order, and it goes through MPI_Scatterv/MPI_Gatherv with 0 for itself.
Napi::Value Collective(const Napi::CallbackInfo& info, bool scatter, bool others = false) {
  Napi::Env env = info.Env();
  MPI_Comm comm = CommArg(info, 0);
  Buf send = BufArg(info, 1, "send", true);
  Buf recv = BufArg(info, 2, "recv", true);
  int32_t count = IntArg(info, 3, "count", 0, 2147483647);
  int32_t root = IntArg(info, 4, "root", MPI_ROOT < MPI_PROC_NULL ? MPI_ROOT : MPI_PROC_NULL, 2147483647);
  Role role = RoleOf(env, comm, root);
  if (others && role.inter) ThrowType(env, std::string(scatter ? "scatterOthers" : "gatherOthers") + " needs an intracommunicator");
  if (others) role.ranks -= 1;  // the root's own share is not in its buffer
  Buf& all = scatter ? send : recv;    // the root's whole array
  Buf& part = scatter ? recv : send;   // one rank's chunk
  const char* allName = scatter ? "send" : "recv";
  const char* partName = scatter ? "recv" : "send";
  bool needAll = role.sends_all;
  bool needPart = role.takes_part && !(role.inter && role.sends_all) && !(others && role.sends_all);
  if (needAll) {
    if (!all.data) ThrowType(env, std::string(allName) + " must be a Float64Array, an Int32Array or a Uint8Array at the root");
    NeedFits(env, all, allName, count, role.ranks);
  }
  if (needPart) {
    if (!part.data) ThrowType(env, std::string(partName) + " must be a Float64Array, an Int32Array or a Uint8Array on a non-root rank");
    NeedFits(env, part, partName, count, 1);
  }
  if (needAll && needPart && all.type != part.type) ThrowType(env, "send and recv must have the same element type");
  MPI_Datatype type = needAll ? all.type : needPart ? part.type : MPI_DOUBLE;
  void* allPtr = needAll ? all.data : nullptr;
  void* partPtr = needPart ? part.data : nullptr;
  InFlight f(Handle(info, 0), scatter ? "a scatter" : "a gather");
  int rc;
  if (others) {
    // Counts and offsets of every rank; the root's count is 0 and it passes MPI_IN_PLACE.
    static thread_local std::vector<int> counts, displs;
    if (role.sends_all && static_cast<int64_t>(count) * role.ranks > 2147483647) {
      // MPI_Scatterv/MPI_Gatherv place each rank's part by an int displacement, in elements.
      ThrowRange(env, "count " + std::to_string(count) + " x " + std::to_string(role.ranks) +
                          " ranks is past MPI's int displacements (2147483647 elements)");
    }
    if (role.sends_all) {
      counts.assign(role.ranks + 1, count);
      displs.resize(role.ranks + 1);
      counts[root] = 0;
      for (int r = 0, at = 0; r <= role.ranks; r++) {
        displs[r] = at;
        at += counts[r];
      }
    }
    int* c = role.sends_all ? counts.data() : nullptr;
    int* d = role.sends_all ? displs.data() : nullptr;
    if (scatter) rc = MPI_Scatterv(allPtr, c, d, type, role.sends_all ? MPI_IN_PLACE : partPtr, count, type, root, comm);
    else rc = MPI_Gatherv(role.sends_all ? MPI_IN_PLACE : partPtr, count, type, allPtr, c, d, type, root, comm);
    Check(env, rc, scatter ? "MPI_Scatterv" : "MPI_Gatherv");
    return env.Undefined();
  }
  if (scatter) rc = MPI_Scatter(allPtr, count, type, partPtr, count, type, root, comm);
  else rc = MPI_Gather(partPtr, count, type, allPtr, count, type, root, comm);
  Check(env, rc, scatter ? "MPI_Scatter" : "MPI_Gather");
  return env.Undefined();
}

Napi::Value Scatter(const Napi::CallbackInfo& info) { return Collective(info, true); }
Napi::Value Gather(const Napi::CallbackInfo& info) { return Collective(info, false); }
Napi::Value ScatterOthers(const Napi::CallbackInfo& info) { return Collective(info, true, true); }
Napi::Value GatherOthers(const Napi::CallbackInfo& info) { return Collective(info, false, true); }

Napi::Value Send(const Napi::CallbackInfo& info) {
  MPI_Comm comm = CommArg(info, 0);
  Buf b = BufArg(info, 1, "buffer", false);
  int32_t dest = IntArg(info, 2, "dest", 0, 2147483647);
  int32_t tag = IntArg(info, 3, "tag", 0, 32767);
  InFlight f(Handle(info, 0), "a send");
  Check(info.Env(), MPI_Send(b.data, static_cast<int>(b.bytes / b.elem), b.type, dest, tag, comm), "MPI_Send");
  return info.Env().Undefined();
}

Napi::Value Recv(const Napi::CallbackInfo& info) {
  MPI_Comm comm = CommArg(info, 0);
  Buf b = BufArg(info, 1, "buffer", false);
  int32_t source = IntArg(info, 2, "source", 0, 2147483647);
  int32_t tag = IntArg(info, 3, "tag", 0, 32767);
  MPI_Status st;
  InFlight f(Handle(info, 0), "a receive");
  Check(info.Env(), MPI_Recv(b.data, static_cast<int>(b.bytes / b.elem), b.type, source, tag, comm, &st), "MPI_Recv");
  int n = 0;
  MPI_Get_count(&st, b.type, &n);
  return Napi::Number::New(info.Env(), n);
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  MPI_Comm comm = CommArg(info, 0);
  InFlight f(Handle(info, 0), "a barrier");
  Check(info.Env(), MPI_Barrier(comm), "MPI_Barrier");
  return info.Env().Undefined();
}

Napi::Value Disconnect(const Napi::CallbackInfo& info) {
  MPI_Comm comm = CommArg(info, 0);
  int32_t h = Handle(info, 0);
  if (comm == MPI_COMM_WORLD) ThrowRange(info.Env(), "comm 0 is MPI_COMM_WORLD and cannot be disconnected");
  {
    std::lock_guard<std::mutex> lock(g_watch_mu);
    if (static_cast<size_t>(h) < g_watched.size()) g_watched[h].pids.clear();
  }
  InFlight f(h, "a disconnect");
  Check(info.Env(), MPI_Comm_disconnect(&comm), "MPI_Comm_disconnect");
  g_comms[h] = MPI_COMM_NULL;
  return info.Env().Undefined();
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) {
    Check(info.Env(), MPI_Finalize(), "MPI_Finalize");
    EndOrted(1000);
  }
  return info.Env().Undefined();
}

Napi::Value Abort(const Napi::CallbackInfo& info) {
  MPI_Comm comm = CommArg(info, 0);
  int32_t code = IntArg(info, 1, "code", 0, 255);
  // The stage's failure report is in the stderr pipe (Node writes pipes synchronously): let the
  // launcher's forwarding take it before the abort tears the job down (MPICH's Hydra may not
  // forward it after; include/commloop_stage.h commloop_stderr_drain says more). Up to 500 ms.
  for (int waited = 0; waited < 500; waited++) {
    int pending = 0;
    if (ioctl(2, FIONREAD, &pending) != 0 || pending <= 0) break;
    usleep(1000);
  }
  MPI_Abort(comm, code);
  return info.Env().Undefined();
}

// watch(comm, stage, pids: Int32Array, timeoutMs): from now on a dead pid of this
// comm, or any call past timeoutMs, ends the process. unwatch(comm) forgets it.
Napi::Value Watch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CommArg(info, 0);
  int32_t h = Handle(info, 0);
  std::string stage = StrArg(info, 1, "stage");
  if (info.Length() <= 2 || !info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    ThrowType(env, "pids must be an Int32Array");
  }
  Napi::Int32Array pids = info[2].As<Napi::Int32Array>();
  int32_t timeout = IntArg(info, 3, "timeoutMs", 1, 2147483647);
  {
    std::lock_guard<std::mutex> lock(g_watch_mu);
    if (g_watched.size() <= static_cast<size_t>(h)) g_watched.resize(h + 1);
    Watched w;
    w.stage = stage;
    for (size_t i = 0; i < pids.ElementLength(); i++) w.pids.push_back(static_cast<pid_t>(pids[i]));
    g_watched[h] = w;
    for (pid_t p : w.pids)
      if (p > 0) OpenPidFd(p);
  }
  for (size_t i = 0; i < pids.ElementLength() && g_family.load() < 0; i++) LearnFamily(static_cast<pid_t>(pids[i]));
  if (g_orted.load() == 0)
    for (pid_t k : ChildrenOf(getpid()))
      if (IsOrted(k)) g_orted.store(k);
  g_timeout_ms.store(timeout);
  EnsureWatchdog();
  return env.Undefined();
}

// setTimeout(ms): the deadline of every blocking call from now on (spawn included).
Napi::Value SetTimeoutMs(const Napi::CallbackInfo& info) {
  g_timeout_ms.store(IntArg(info, 0, "timeoutMs", 1, 2147483647));
  EnsureWatchdog();
  return info.Env().Undefined();
}

// label(comm, stage): names the stage behind a comm for the watchdog before its pids are
// known (a stage that never sends Ready is named, not "comm 2").
Napi::Value Label(const Napi::CallbackInfo& info) {
  CommArg(info, 0);
  int32_t h = Handle(info, 0);
  std::string stage = StrArg(info, 1, "stage");
  std::lock_guard<std::mutex> lock(g_watch_mu);
  if (g_watched.size() <= static_cast<size_t>(h)) g_watched.resize(h + 1);
  g_watched[h].stage = stage;
  return info.Env().Undefined();
}

// reportTo(fd, lifelinePid): the watchdog reports failures as JSON lines on fd and ends
// the run when this process's parent is no longer lifelinePid (0: no lifeline).
Napi::Value ReportTo(const Napi::CallbackInfo& info) {
  int32_t fd = IntArg(info, 0, "fd", 1, 1023);
  int32_t lifeline = IntArg(info, 1, "lifelinePid", 0, 2147483647);
  g_report_fd.store(fd);
  g_lifeline.store(lifeline);
  EnsureWatchdog();
  return info.Env().Undefined();
}

// ---- a stage's own compute watch ------------------------------------------------------
// In a stage process: a transform that never returns would be found only by the hub's
// deadline, which cannot say which rank (a collective does not tell). So the stage
// watches its own compute: JS writes iteration + 1 into state[0] before the transform and
// 0 after (two plain stores, no call), and this thread, which user code cannot block,
// reports a compute that has lasted timeoutMs as the stage's failure and ends the rank.
// The hub's deadline has a grace beyond it (src/mpi/transport.ts), so this line comes first.
struct ComputeWatch {
  std::atomic<int32_t>* state = nullptr;
  int64_t timeout_ms = 0;
  std::string prefix;  // "commloop-fail: S R "
  std::string what;    // "its transform"
};

void ComputeWatchLoop(ComputeWatch* w) {
  int32_t seen = 0;
  int64_t since = 0;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    int32_t now = w->state[0].load(std::memory_order_relaxed);
    int32_t gen = w->state[1].load(std::memory_order_relaxed);
    // state[1] counts computes: the same iteration twice in a row (a size cycle of one) is two.
    int32_t key = now == 0 ? 0 : (now ^ (gen << 16));
    if (key != seen) {
      seen = key;
      since = NowMs();
      continue;
    }
    if (now != 0 && NowMs() - since >= w->timeout_ms) {
      std::string line = w->prefix + "did not return from " + w->what + " within " + std::to_string(w->timeout_ms) +
                         " ms (iteration " + std::to_string(now - 1) + ")\n";
      ssize_t ignored = write(2, line.data(), line.size());
      (void)ignored;
      _exit(1);
    }
  }
}

// watchCompute(state: Int32Array(2) on a SharedArrayBuffer, timeoutMs, prefix, what)
Napi::Value WatchCompute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    ThrowType(env, "state must be an Int32Array");
  }
  Napi::Int32Array state = info[0].As<Napi::Int32Array>();
  if (state.ElementLength() < 2) ThrowRange(env, "state must hold 2 elements");
  if (!state.Get("buffer").As<Napi::Object>().InstanceOf(env.Global().Get("SharedArrayBuffer").As<Napi::Function>())) {
    ThrowType(env, "state must be a view of a SharedArrayBuffer (its memory must not move)");
  }
  int32_t timeout = IntArg(info, 1, "timeoutMs", 1, 2147483647);
  auto* w = new ComputeWatch();  // lives as long as the process: so does the thread
  w->state = reinterpret_cast<std::atomic<int32_t>*>(state.Data());
  w->timeout_ms = timeout;
  w->prefix = StrArg(info, 2, "prefix");
  w->what = StrArg(info, 3, "what");
  // The view's memory must outlive this thread: keep a reference for the life of the process.
  static std::vector<Napi::Reference<Napi::Int32Array>> kept;
  kept.push_back(Napi::Persistent(state));
  std::thread(ComputeWatchLoop, w).detach();
  return env.Undefined();
}

// report(line): writes one whole line (ending in \n) on the report fd, never interleaved
// with the watchdog's own lines. Before reportTo, on stderr.
Napi::Value Report(const Napi::CallbackInfo& info) {
  std::string line = StrArg(info, 0, "line");
  if (line.empty() || line.back() != '\n') ThrowRange(info.Env(), "line must end with a newline");
  WriteReport(line);
  return info.Env().Undefined();
}

Napi::Value Unwatch(const Napi::CallbackInfo& info) {
  int32_t h = IntArg(info, 0, "comm", 0, 2147483647);
  std::lock_guard<std::mutex> lock(g_watch_mu);
  if (static_cast<size_t>(h) < g_watched.size()) g_watched[h].pids.clear();
  ClosePidFds();
  return info.Env().Undefined();
}

// killAll(): when the protocol is out of step (a call failed mid-step), nothing can
// be stopped politely; kill every watched rank and the singleton's daemon.
Napi::Value KillAll(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(g_watch_mu);
  KillWatched();
  for (Watched& w : g_watched) w.pids.clear();
  ClosePidFds();
  return info.Env().Undefined();
}

Napi::Object Module(Napi::Env env, Napi::Object exports) {
  exports.Set("ROOT", MPI_ROOT);
  exports.Set("PROC_NULL", MPI_PROC_NULL);
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("spawn", Napi::Function::New(env, Spawn, "spawn"));
  exports.Set("getParent", Napi::Function::New(env, GetParent, "getParent"));
  exports.Set("split", Napi::Function::New(env, Split, "split"));
  exports.Set("intercommCreate", Napi::Function::New(env, IntercommCreate, "intercommCreate"));
  exports.Set("appnum", Napi::Function::New(env, AppNum, "appnum"));
  exports.Set("free", Napi::Function::New(env, Free, "free"));
  exports.Set("describe", Napi::Function::New(env, Describe, "describe"));
  exports.Set("bcast", Napi::Function::New(env, Bcast, "bcast"));
  exports.Set("scatter", Napi::Function::New(env, Scatter, "scatter"));
  exports.Set("gather", Napi::Function::New(env, Gather, "gather"));
  exports.Set("scatterOthers", Napi::Function::New(env, ScatterOthers, "scatterOthers"));
  exports.Set("gatherOthers", Napi::Function::New(env, GatherOthers, "gatherOthers"));
  exports.Set("merge", Napi::Function::New(env, Merge, "merge"));
  exports.Set("send", Napi::Function::New(env, Send, "send"));
  exports.Set("recv", Napi::Function::New(env, Recv, "recv"));
  exports.Set("barrier", Napi::Function::New(env, Barrier, "barrier"));
  exports.Set("disconnect", Napi::Function::New(env, Disconnect, "disconnect"));
  exports.Set("finalize", Napi::Function::New(env, Finalize, "finalize"));
  exports.Set("abort", Napi::Function::New(env, Abort, "abort"));
  exports.Set("watch", Napi::Function::New(env, Watch, "watch"));
  exports.Set("unwatch", Napi::Function::New(env, Unwatch, "unwatch"));
  exports.Set("setTimeout", Napi::Function::New(env, SetTimeoutMs, "setTimeout"));
  exports.Set("killAll", Napi::Function::New(env, KillAll, "killAll"));
  exports.Set("label", Napi::Function::New(env, Label, "label"));
  exports.Set("reportTo", Napi::Function::New(env, ReportTo, "reportTo"));
  exports.Set("report", Napi::Function::New(env, Report, "report"));
  exports.Set("watchCompute", Napi::Function::New(env, WatchCompute, "watchCompute"));
  return exports;
}

}  // namespace

NODE_API_MODULE(commloop_mpi, Module)
