// Time source for the coordinator core, so tests can move time by hand.
#ifndef DPFLEET_SERVER_CORE_CLOCK_H_
#define DPFLEET_SERVER_CORE_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "absl/time/clock.h"

namespace dpfleet::server {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMs() = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowMs() override { return absl::ToUnixMillis(absl::Now()); }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 1'700'000'000'000) : now_(start_ms) {}
  int64_t NowMs() override { return now_.load(); }
  void AdvanceMs(int64_t ms) { now_ += ms; }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_CORE_CLOCK_H_
