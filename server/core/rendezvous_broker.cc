#include "server/core/rendezvous_broker.h"

#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace dpfleet::server {
namespace {

absl::Status Closed(const std::string& job_id, int32_t attempt) {
  return absl::AbortedError(absl::StrCat("rendezvous of job '", job_id, "' attempt ", attempt, " is closed"));
}

}  // namespace

void RendezvousBroker::OpenAttempt(const std::string& job_id, int32_t attempt) {
  absl::MutexLock lock(&mu_);
  values_.try_emplace({job_id, attempt});
}

void RendezvousBroker::DropJob(const std::string& job_id, const absl::Status& why) {
  std::vector<std::pair<AttemptKey, std::map<int64_t, Waiter>>> dropped;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = values_.lower_bound({job_id, std::numeric_limits<int32_t>::min()});
         it != values_.end() && it->first.first == job_id;) {
      dropped.emplace_back(it->first, TakeWaitersLocked(it->first, nullptr));
      it = values_.erase(it);
    }
  }
  // Answered outside the lock, as everywhere here: a callback may take
  // locks of its own.
  for (auto& [attempt, waiting] : dropped) {
    for (auto& [id, w] : waiting) w.done(why.ok() ? Closed(attempt.first, attempt.second) : why);
  }
}

absl::Status RendezvousBroker::Set(const std::string& job_id, int32_t attempt, const std::string& key,
                                   const std::string& value) {
  std::map<int64_t, Waiter> waiting;
  {
    absl::MutexLock lock(&mu_);
    auto it = values_.find({job_id, attempt});
    if (it == values_.end()) return Closed(job_id, attempt);
    it->second[key] = value;
    waiting = TakeWaitersLocked(it->first, &key);
  }
  for (auto& [id, w] : waiting) w.done(value);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> RendezvousBroker::Add(const std::string& job_id, int32_t attempt, const std::string& key,
                                              int64_t delta) {
  std::map<int64_t, Waiter> waiting;
  std::string published;
  int64_t current = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = values_.find({job_id, attempt});
    if (it == values_.end()) return Closed(job_id, attempt);
    std::string& v = it->second[key];
    if (!v.empty() && !absl::SimpleAtoi(v, &current)) {
      return absl::FailedPreconditionError(absl::StrCat("rendezvous key '", key, "' is not a counter"));
    }
    current += delta;
    v = absl::StrCat(current);
    published = v;
    waiting = TakeWaitersLocked(it->first, &key);
  }
  for (auto& [id, w] : waiting) w.done(published);
  return current;
}

int64_t RendezvousBroker::GetAsync(const std::string& job_id, int32_t attempt, const std::string& key,
                                   GetCallback done) {
  absl::StatusOr<std::string> now;
  {
    absl::MutexLock lock(&mu_);
    auto it = values_.find({job_id, attempt});
    if (it == values_.end()) {
      now = Closed(job_id, attempt);
    } else if (auto v = it->second.find(key); v != it->second.end()) {
      now = v->second;
    } else if (shutdown_) {
      now = absl::UnavailableError("coordinator is shutting down");
    } else {
      const int64_t id = ++next_waiter_;
      waiters_.emplace(id, Waiter{it->first, key, std::move(done)});
      return id;
    }
  }
  done(std::move(now));
  return 0;
}

bool RendezvousBroker::CancelWait(int64_t waiter_id) {
  absl::MutexLock lock(&mu_);
  return waiters_.erase(waiter_id) > 0;
}

absl::StatusOr<std::string> RendezvousBroker::Get(const std::string& job_id, int32_t attempt, const std::string& key,
                                                  absl::Time deadline) {
  // Shared with the callback, which may outlive this frame by the moment it
  // takes to notify after CancelWait lost the race.
  struct Result {
    absl::Notification done;
    absl::StatusOr<std::string> value;
  };
  auto result = std::make_shared<Result>();
  const int64_t id = GetAsync(job_id, attempt, key, [result](absl::StatusOr<std::string> v) {
    result->value = std::move(v);
    result->done.Notify();
  });
  if (id != 0 && !result->done.WaitForNotificationWithDeadline(deadline)) {
    if (CancelWait(id)) {
      return absl::DeadlineExceededError(absl::StrCat("rendezvous key '", key, "' of job '", job_id, "' attempt ",
                                                      attempt, " was not published in time"));
    }
    result->done.WaitForNotification();  // answered just as the deadline passed
  }
  return result->value;
}

void RendezvousBroker::Shutdown() {
  std::map<int64_t, Waiter> waiting;
  {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
    waiting.swap(waiters_);
  }
  for (auto& [id, w] : waiting) w.done(absl::UnavailableError("coordinator is shutting down"));
}

void RendezvousBroker::AwaitWaiters(const std::string& job_id, int32_t attempt, const std::string& key, int n) {
  const AttemptKey attempt_key{job_id, attempt};
  auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return CountWaitersLocked(attempt_key, key) >= n; };
  absl::MutexLock lock(&mu_, absl::Condition(&enough));
}

std::map<int64_t, RendezvousBroker::Waiter> RendezvousBroker::TakeWaitersLocked(const AttemptKey& attempt,
                                                                                const std::string* key) {
  std::map<int64_t, Waiter> taken;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->second.attempt == attempt && (key == nullptr || it->second.key == *key)) {
      taken.insert(waiters_.extract(it++));
    } else {
      ++it;
    }
  }
  return taken;
}

int RendezvousBroker::CountWaitersLocked(const AttemptKey& attempt, const std::string& key) const {
  int n = 0;
  for (const auto& [id, w] : waiters_) n += w.attempt == attempt && w.key == key;
  return n;
}

}  // namespace dpfleet::server
