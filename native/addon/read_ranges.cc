// Positional reads of many file ranges into ArrayBuffers, on native threads: the loader's tensor
// bytes. Policy (which ranges, what a short read means) stays in TypeScript; this only copies
// bytes and says how far it got.
//
// Why native threads and not libuv's pool: one read per 2 MiB chunk through fs.read costs a round
// trip through the main thread per chunk, and while the main thread is busy (the scan, the VM's
// graph) the reads stall. Here a handful of threads pull chunks from a shared counter and never
// wait on JavaScript.
#include "read_ranges.h"

#include "common.h"

#include <errno.h>
#include <unistd.h>

#include <atomic>
#include <system_error>
#include <thread>
#include <vector>

namespace mg {

namespace {

// A chunk is the unit of work one thread takes: large enough that a read is one long copy out of
// the page cache, small enough that threads share a big tensor.
constexpr uint64_t kChunkBytes = uint64_t{4} << 20;
constexpr uint32_t kMaxThreads = 16;

struct Chunk {
  uint8_t *dest;
  uint64_t file_offset;
  uint64_t length;
};

class ReadWorker : public Napi::AsyncWorker {
 public:
  ReadWorker(Napi::Env env, int fd, std::vector<Chunk> chunks, uint32_t threads, int32_t *cancel)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), chunks_(std::move(chunks)), threads_(threads), cancel_(cancel) {}

  Napi::Promise Promise() { return deferred_.Promise(); }
  // The buffers (and the cancel cell) stay alive until the reads are over.
  void Keep(Napi::Value v) { keep_.push_back(Napi::Persistent(v)); }

 protected:
  void Execute() override {
    uint32_t n = threads_;
    if (n > chunks_.size()) n = static_cast<uint32_t>(chunks_.size());
    std::vector<std::thread> extra;
    try {
      for (uint32_t i = 1; i < n; i++) extra.emplace_back([this] { Run(); });
    } catch (const std::system_error &) {
      // No thread to be had (RLIMIT_NPROC, memory): the ones started and this one do the work.
    }
    Run();
    for (auto &t : extra) t.join();
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("bytes", Napi::Number::New(env, static_cast<double>(done_.load())));
    uint64_t eof = eof_at_.load();
    r.Set("eofAt", Napi::Number::New(env, eof == UINT64_MAX ? -1.0 : static_cast<double>(eof)));
    r.Set("errno", Napi::Number::New(env, err_.load()));
    r.Set("cancelled", Napi::Boolean::New(env, cancelled_.load()));
    keep_.clear();
    deferred_.Resolve(r);
  }

  void OnError(const Napi::Error &e) override {
    keep_.clear();
    deferred_.Reject(e.Value());
  }

 private:
  bool Stopped() {
    if (failed_.load(std::memory_order_relaxed)) return true;
    if (cancel_ != nullptr && __atomic_load_n(cancel_, __ATOMIC_RELAXED) != 0) {
      cancelled_.store(true);
      return true;
    }
    return false;
  }

  void Run() {
    for (;;) {
      size_t i = next_.fetch_add(1);
      if (i >= chunks_.size() || Stopped()) return;
      const Chunk &c = chunks_[i];
      uint64_t got = 0;
      while (got < c.length) {
        ssize_t r = pread(fd_, c.dest + got, c.length - got, static_cast<off_t>(c.file_offset + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
          int expected = 0;
          err_.compare_exchange_strong(expected, errno);
          failed_.store(true);
          return;
        }
        if (r == 0) {  // the file ended early: the caller decides what that means
          uint64_t at = c.file_offset + got;
          uint64_t prev = eof_at_.load();
          while (at < prev && !eof_at_.compare_exchange_weak(prev, at)) {
          }
          failed_.store(true);
          return;
        }
        got += static_cast<uint64_t>(r);
        done_.fetch_add(static_cast<uint64_t>(r), std::memory_order_relaxed);
      }
    }
  }

  Napi::Promise::Deferred deferred_;
  int fd_;
  std::vector<Chunk> chunks_;
  uint32_t threads_;
  int32_t *cancel_;
  std::vector<Napi::Reference<Napi::Value>> keep_;
  std::atomic<size_t> next_{0};
  std::atomic<uint64_t> done_{0};
  std::atomic<uint64_t> eof_at_{UINT64_MAX};
  std::atomic<int> err_{0};
  std::atomic<bool> failed_{false};
  std::atomic<bool> cancelled_{false};
};

bool WholeNumber(double v) { return v >= 0 && v <= 9007199254740991.0 && v == static_cast<double>(static_cast<uint64_t>(v)); }

}  // namespace

// readRanges(fd, dests: ArrayBuffer[], plan: Float64Array of [dest index, dest offset, file
// offset, length] rows, threads, cancel: Int32Array | null) → Promise<{ bytes, eofAt, errno,
// cancelled }>. Every row is checked against its buffer here, before any thread starts.
Napi::Value ReadRanges(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const char *fn = "readRanges";
  if (info.Length() < 5) ThrowUsage(env, fn, "expects (fd, dests, plan, threads, cancel)");
  if (!info[0].IsNumber()) ThrowUsage(env, fn, "`fd` must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd < 0) ThrowUsage(env, fn, "`fd` must be a file descriptor");
  if (!info[1].IsArray()) ThrowUsage(env, fn, "`dests` must be an array of ArrayBuffers");
  Napi::Array dests = info[1].As<Napi::Array>();
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    ThrowUsage(env, fn, "`plan` must be a Float64Array");
  Napi::Float64Array plan = info[2].As<Napi::Float64Array>();
  if (plan.ElementLength() % 4 != 0) ThrowUsage(env, fn, "`plan` holds rows of 4 numbers");
  if (!info[3].IsNumber()) ThrowUsage(env, fn, "`threads` must be a number");
  double threads_d = info[3].As<Napi::Number>().DoubleValue();
  if (!(threads_d >= 1)) ThrowUsage(env, fn, "`threads` must be at least 1");
  uint32_t threads = threads_d > kMaxThreads ? kMaxThreads : static_cast<uint32_t>(threads_d);
  int32_t *cancel = nullptr;
  if (!info[4].IsNull() && !info[4].IsUndefined()) {
    if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || info[4].As<Napi::Int32Array>().ElementLength() < 1)
      ThrowUsage(env, fn, "`cancel` must be an Int32Array of at least one element");
    cancel = info[4].As<Napi::Int32Array>().Data();
  }

  std::vector<uint8_t *> base(dests.Length());
  std::vector<uint64_t> size(dests.Length());
  for (uint32_t i = 0; i < dests.Length(); i++) {
    Napi::Value v = dests[i];
    if (!v.IsArrayBuffer()) ThrowUsage(env, fn, "`dests` must be an array of ArrayBuffers");
    Napi::ArrayBuffer b = v.As<Napi::ArrayBuffer>();
    base[i] = static_cast<uint8_t *>(b.Data());
    size[i] = b.ByteLength();
  }
  std::vector<Chunk> chunks;
  const double *row = plan.Data();
  for (size_t r = 0; r < plan.ElementLength(); r += 4) {
    for (int k = 0; k < 4; k++)
      if (!WholeNumber(row[r + k])) ThrowUsage(env, fn, "plan row " + std::to_string(r / 4) + " holds a value that is not a whole byte count");
    uint64_t di = static_cast<uint64_t>(row[r]), doff = static_cast<uint64_t>(row[r + 1]);
    uint64_t foff = static_cast<uint64_t>(row[r + 2]), len = static_cast<uint64_t>(row[r + 3]);
    if (di >= base.size()) ThrowUsage(env, fn, "plan row " + std::to_string(r / 4) + " names no buffer");
    if (doff > size[di] || len > size[di] - doff) ThrowUsage(env, fn, "plan row " + std::to_string(r / 4) + " runs past its buffer");
    for (uint64_t at = 0; at < len; at += kChunkBytes)
      chunks.push_back({base[di] + doff + at, foff + at, len - at < kChunkBytes ? len - at : kChunkBytes});
  }
  auto *w = new ReadWorker(env, fd, std::move(chunks), threads, cancel);
  for (uint32_t i = 0; i < dests.Length(); i++) w->Keep(dests[i]);
  if (cancel != nullptr) w->Keep(info[4]);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace mg
