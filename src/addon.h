// Per-environment state shared by the addon's parts. Each JS environment (the main thread and every worker) loads
// the addon once and gets its own State through napi instance data; nothing here is a mutable static.
#pragma once

#include <napi.h>

#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace pidfd {

class Watcher;
struct Poller;
struct Helper;
struct Sampler;

struct State {
  // Every fd this environment handed out and has not closed yet. close() only closes numbers found here, so a
  // stale number (closed once already, maybe reused by another file since) never reaches close(2); the environment
  // cleanup hook closes whatever is left when a worker ends.
  std::unordered_set<int> owned;
  Watcher* watcher = nullptr;
  // Per-fd polls (pollfd.cc), by id. A libuv poll closes itself at teardown through its own cleanup hook; a poll
  // on the helper thread is closed by the environment's cleanup hook.
  std::unordered_map<int32_t, Poller*> pollers;
  int32_t nextPoller = 1;
  // The helper thread (thread.cc), where libuv polls are not available, and where samplers sample; null until
  // first needed.
  Helper* helper = nullptr;
  // Threshold samplers (sampler.cc), by id. The helper thread samples them: this mutex guards the table, every
  // sampler's fields and the read buffer.
  std::mutex samplerMu;
  std::unordered_map<int32_t, Sampler*> samplers;
  int32_t nextSampler = 1;
  std::vector<char> sampleBuf;
  bool asyncDestroyInCleanup = true;  // see Init (addon.cc)
};

inline State* GetState(Napi::Env env) { return env.GetInstanceData<State>(); }

// Result convention of every call: a non-negative result, or -errno. TypeScript turns -errno into a Node-shaped
// system error, so no policy about which errors matter lives here.
inline Napi::Number Result(Napi::Env env, double r) { return Napi::Number::New(env, r); }

int32_t Int32Arg(const Napi::CallbackInfo& info, size_t i);

// A JS function that native code calls when an fd is ready: the reference, an async context, and the call itself
// through napi_make_callback (async context kept; microtasks, i.e. the awaiting code, run before it returns). An
// exception it throws is reported as uncaught, as Node does for an event listener's.
struct JsCallback {
  napi_ref fn = nullptr;
  napi_async_context context = nullptr;
  bool Init(napi_env env, napi_value f, const char* name);  // false: nothing is left allocated
  bool Call(napi_env env, size_t argc, const int32_t* argv);  // false: JS could not be called
  bool Call(napi_env env, size_t argc, const double* argv);
  // Idempotent. destroyContext false: leave the async context to the ending environment (Deno, see Init).
  void Destroy(napi_env env, bool destroyContext = true);
};

// The helper thread's side of a wake-up source (thread.cc): key kWatcherKey is the watcher's epoll set, a poll's
// id names its fd, kSamplerKeyBit | id a sampler's timerfd. Registrations are one-shot unless asked otherwise;
// Rearm enables one again after JS has handled it.
constexpr uint64_t kWatcherKey = 0;
constexpr uint64_t kSamplerKeyBit = 1ULL << 32;
int HelperAdd(napi_env env, State* st, int fd, uint32_t events, uint64_t key, bool oneshot = true);  // 0 | -errno
void HelperRearm(State* st, int fd, uint32_t events, uint64_t key);
void HelperDel(State* st, int fd, uint64_t key);
void HelperRef(napi_env env, State* st, uint64_t key, bool ref);  // whether `key` keeps the event loop alive
void StopHelper(State* st);  // joins the thread; JS is not called again

// Called on the JS thread for what the helper thread saw.
void WatcherFired(State* st);
void PollerFired(State* st, uint64_t key, uint32_t epollEvents);
// On the helper thread: a sampler's timer expired; it samples. → true if JS must hear of it (SamplerFired).
bool SamplerTick(State* st, uint64_t key);
void SamplerFired(State* st, uint64_t key);
// Teardown of what lives on the helper thread (after StopHelper): close the fds, free the state.
void CloseThreadWatcher(State* st);
void CloseThreadPollers(State* st);
void CloseThreadSamplers(State* st);

void InitCalls(Napi::Env env, Napi::Object exports);
void InitWatcher(Napi::Env env, Napi::Object exports);
void InitPoll(Napi::Env env, Napi::Object exports);
void InitMlock(Napi::Env env, Napi::Object exports);
void InitSampler(Napi::Env env, Napi::Object exports);

}  // namespace pidfd
