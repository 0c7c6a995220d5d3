// Threshold samplers: the helper thread (thread.cc) reads one number from a file on a timer and wakes JS only when
// that number crosses a bound, so a fast sampling rate costs a pread and two syscalls per sample, not a JS turn.
//
// Each sampler owns the file, opened once (seq_file and cgroupfs files answer a pread from offset 0 with fresh
// contents, and keep their buffer between reads, so a sample allocates nothing), and a timerfd in the thread's epoll
// set (level-triggered: timerfd_settime clears its readiness, so each sample re-arms it with no epoll_ctl). At each
// expiry the thread parses the number after `key` and either fires (one-shot: it disarms and JS hears
// (0, value)), reports a read error (JS hears (-errno, 0), disarmed too), or sleeps for
// clamp(|value - bound| / rate, minMs, maxMs). JS re-arms with samplerUpdate, which also samples at once.
//
// The thread samples under State::samplerMu and JS changes or frees samplers under it, so a sampler is never freed
// under the thread; the result waits in the sampler (`pending`) until the JS thread delivers it.
#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <utility>

#include "addon.h"

namespace pidfd {

namespace {
// Larger files are parsed from their first kBufSize bytes; a key not found there reports EFBIG.
constexpr size_t kBufSize = 64 * 1024;
}

// bound in the file's units; rate in those units per ms (0: always maxMs).
struct Params {
  double bound = 0, minMs = 0, maxMs = 0, rate = 0;
};

struct Sampler {
  napi_env env = nullptr;
  int32_t id = 0;
  int fd = -1;
  int timer = -1;
  std::string key;
  bool above = false;
  Params params;
  bool armed = false;
  // The thread's verdict, for the JS thread to deliver; an update drops one not delivered yet.
  bool pending = false;
  int32_t status = 0;
  double value = 0;
  JsCallback callback;
};

namespace {

uint64_t KeyOf(int32_t id) { return kSamplerKeyBit | static_cast<uint32_t>(id); }

bool Blank(char c) { return c == ' ' || c == '\t'; }
bool Digit(char c) { return c >= '0' && c <= '9'; }
bool WordChar(char c) { return Digit(c) || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

double Number(const char* q, const char* end, bool negative) {
  double v = 0;
  for (; q < end && Digit(*q); q++) v = v * 10 + (*q - '0');
  return negative ? -v : v;
}

// The integer after `key` at the start of a line (blanks between them allowed; a key ending in a letter, digit or
// '_' must be followed by a blank, so "file" does not match "file_mapped"), or with key "" the first integer in the
// text. -ENODATA: no such line, or no number there ("max" in memory.max).
int Parse(const char* p, size_t n, const std::string& key, double* out) {
  const char* end = p + n;
  if (key.empty()) {
    for (const char* q = p; q < end; q++) {
      if (Digit(*q)) {
        *out = Number(q, end, q > p && q[-1] == '-');
        return 0;
      }
    }
    return -ENODATA;
  }
  bool word = WordChar(key.back());
  for (const char* line = p; line < end;) {
    const char* nl = static_cast<const char*>(memchr(line, '\n', static_cast<size_t>(end - line)));
    const char* le = nl ? nl : end;
    if (static_cast<size_t>(le - line) >= key.size() && memcmp(line, key.data(), key.size()) == 0) {
      const char* q = line + key.size();
      if (!word || (q < le && Blank(*q))) {
        while (q < le && Blank(*q)) q++;
        bool negative = q < le && *q == '-';
        if (negative) q++;
        if (q < le && Digit(*q)) {
          *out = Number(q, le, negative);
          return 0;
        }
      }
    }
    if (!nl) break;
    line = nl + 1;
  }
  return -ENODATA;
}

// One sample, under samplerMu (the buffer is shared). 0 and *value | -errno.
int Read(State* st, Sampler* s, double* value) {
  if (st->sampleBuf.empty()) st->sampleBuf.resize(kBufSize);
  ssize_t n = pread(s->fd, st->sampleBuf.data(), kBufSize, 0);
  if (n < 0) return -errno;
  int r = Parse(st->sampleBuf.data(), static_cast<size_t>(n), s->key, value);
  if (r == -ENODATA && static_cast<size_t>(n) == kBufSize) return -EFBIG;
  return r;
}

// Arms the sampler's timer to expire once after `ms` (0: disarm). Also clears its readiness.
void SetTimer(Sampler* s, double ms) {
  struct itimerspec it = {};
  if (ms > 0) {
    // No llround/fabs from libm: the prebuild links only libc and the C++ runtime.
    long long ns = static_cast<long long>(ms * 1e6 + 0.5);
    if (ns < 1) ns = 1;
    it.it_value.tv_sec = static_cast<time_t>(ns / 1000000000LL);
    it.it_value.tv_nsec = static_cast<long>(ns % 1000000000LL);
  }
  timerfd_settime(s->timer, 0, &it, nullptr);
}

double Period(const Params& p, double value) {
  double distance = value > p.bound ? value - p.bound : p.bound - value;
  double ms = p.rate > 0 ? distance / p.rate : p.maxMs;
  return ms < p.minMs ? p.minMs : ms > p.maxMs ? p.maxMs : ms;
}

Sampler* Find(State* st, int32_t id) {
  auto it = st->samplers.find(id);
  return it == st->samplers.end() ? nullptr : it->second;
}

double DoubleArg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "pidfd native: argument must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

Params ParamsArg(const Napi::CallbackInfo& info, size_t first) {
  return {DoubleArg(info, first), DoubleArg(info, first + 1), DoubleArg(info, first + 2), DoubleArg(info, first + 3)};
}

void Free(Sampler* s, bool destroyContext) {
  if (s->timer >= 0) close(s->timer);
  if (s->fd >= 0) close(s->fd);
  s->callback.Destroy(s->env, destroyContext);
  delete s;
}

// (path, key, above, bound, minMs, maxMs, rate, onEvent(status, value)) → id (> 0) | -errno. Opens path (errors
// are its open's), reads it once (-ENODATA: no number after key), then samples on the helper thread at once and on
// every period. -ENOTSUP: the runtime cannot run the helper thread. The sampler keeps the loop alive until
// samplerRef(id, false).
Napi::Value Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsString()) {
    throw Napi::TypeError::New(env, "pidfd native: path and key must be strings");
  }
  if (!info[7].IsFunction()) throw Napi::TypeError::New(env, "pidfd native: callback must be a function");
  State* st = GetState(env);
  // Everything that can throw first, so nothing is allocated yet if it does.
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string key = info[1].As<Napi::String>().Utf8Value();
  Params params = ParamsArg(info, 3);
  Sampler* s = new Sampler();
  s->env = env;
  s->key = std::move(key);
  s->above = info[2].ToBoolean();
  s->params = params;
  if (!s->callback.Init(env, info[7], "pidfd:sampler")) {
    delete s;
    throw Napi::Error::New(env, "pidfd native: could not start the sampler");
  }
  int r = 0;
  s->fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (s->fd < 0) r = -errno;
  if (r == 0) {
    std::lock_guard<std::mutex> lock(st->samplerMu);
    double v;
    r = Read(st, s, &v);
  }
  if (r == 0) {
    s->timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (s->timer < 0) r = -errno;
  }
  int32_t id = st->nextSampler;
  if (r == 0) r = HelperAdd(env, st, s->timer, EPOLLIN, KeyOf(id), false);
  if (r < 0) {
    Free(s, true);
    return Result(env, r);
  }
  st->nextSampler = st->nextSampler == 0x7fffffff ? 1 : st->nextSampler + 1;
  s->id = id;
  HelperRef(env, st, KeyOf(id), true);
  std::lock_guard<std::mutex> lock(st->samplerMu);
  st->samplers[id] = s;
  s->armed = true;
  SetTimer(s, 1e-6);
  return Result(env, id);
}

// (id, bound, minMs, maxMs, rate) → 0 | -EBADF (unknown id). Arms it with these parameters and samples at once;
// a crossing seen before and not delivered yet is dropped (this sample sees it again if it still holds).
Napi::Value Update(const Napi::CallbackInfo& info) {
  State* st = GetState(info.Env());
  int32_t id = Int32Arg(info, 0);
  Params params = ParamsArg(info, 1);
  std::lock_guard<std::mutex> lock(st->samplerMu);
  Sampler* s = Find(st, id);
  if (!s) return Result(info.Env(), -static_cast<double>(EBADF));
  s->params = params;
  s->armed = true;
  s->pending = false;
  SetTimer(s, 1e-6);
  return Result(info.Env(), 0);
}

// (id) → 0 | -EBADF. Stops it and closes its fds; no callback runs after this returns.
Napi::Value Stop(const Napi::CallbackInfo& info) {
  State* st = GetState(info.Env());
  int32_t id = Int32Arg(info, 0);
  Sampler* s;
  {
    std::lock_guard<std::mutex> lock(st->samplerMu);
    s = Find(st, id);
    if (!s) return Result(info.Env(), -static_cast<double>(EBADF));
  }
  // Out of the epoll set first, so the thread cannot be handed its timer again; then out of the table under the
  // lock, so a sample the thread is taking right now finishes before the sampler is freed.
  HelperDel(st, s->timer, KeyOf(id));
  {
    std::lock_guard<std::mutex> lock(st->samplerMu);
    st->samplers.erase(id);
  }
  Free(s, true);
  return Result(info.Env(), 0);
}

// (id, bool) → 0 | -EBADF: whether the sampler keeps the event loop alive.
Napi::Value Ref(const Napi::CallbackInfo& info) {
  State* st = GetState(info.Env());
  int32_t id = Int32Arg(info, 0);
  bool found;
  {
    std::lock_guard<std::mutex> lock(st->samplerMu);
    found = Find(st, id) != nullptr;
  }
  if (!found) return Result(info.Env(), -static_cast<double>(EBADF));
  HelperRef(info.Env(), st, KeyOf(id), info[1].ToBoolean());
  return Result(info.Env(), 0);
}

}  // namespace

bool SamplerTick(State* st, uint64_t key) {
  std::lock_guard<std::mutex> lock(st->samplerMu);
  Sampler* s = Find(st, static_cast<int32_t>(key & 0xffffffffu));
  if (!s) return false;  // stopped; its timer has left the set
  if (!s->armed) {
    SetTimer(s, 0);
    return false;
  }
  double v = 0;
  int r = Read(st, s, &v);
  if (r == 0 && !(s->above ? v > s->params.bound : v < s->params.bound)) {
    SetTimer(s, Period(s->params, v));
    return false;
  }
  SetTimer(s, 0);
  s->armed = false;
  s->pending = true;
  s->status = r;
  s->value = r < 0 ? 0 : v;
  return true;
}

void SamplerFired(State* st, uint64_t key) {
  Sampler* s;
  double argv[2];
  {
    std::lock_guard<std::mutex> lock(st->samplerMu);
    s = Find(st, static_cast<int32_t>(key & 0xffffffffu));
    if (!s || !s->pending) return;
    s->pending = false;
    argv[0] = s->status;
    argv[1] = s->value;
  }
  // Only this (the JS) thread frees samplers, and not before the callback returns; s is not used after it.
  s->callback.Call(s->env, 2, argv);
}

void CloseThreadSamplers(State* st) {
  std::lock_guard<std::mutex> lock(st->samplerMu);
  for (auto& [id, s] : st->samplers) Free(s, st->asyncDestroyInCleanup);
  st->samplers.clear();
}

void InitSampler(Napi::Env env, Napi::Object exports) {
  exports.Set("samplerStart", Napi::Function::New(env, Start, "samplerStart"));
  exports.Set("samplerUpdate", Napi::Function::New(env, Update, "samplerUpdate"));
  exports.Set("samplerStop", Napi::Function::New(env, Stop, "samplerStop"));
  exports.Set("samplerRef", Napi::Function::New(env, Ref, "samplerRef"));
}

}  // namespace pidfd
