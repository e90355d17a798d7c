#include "common/log/logging.h"

#include <unistd.h>

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace dpfleet::log {
namespace {

spdlog::level::level_enum ToSpd(Level level) {
  switch (level) {
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

// Before Init (tests, tools): spdlog's default logger (stdout) would mix
// with a command's output, so lines go to stderr from the start.
std::shared_ptr<spdlog::logger> Logger() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = std::make_shared<spdlog::logger>("dpfleet", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
    l->flush_on(spdlog::level::trace);
    return l;
  }();
  return logger;
}

}  // namespace

absl::Status ParseLevel(absl::string_view text, Level* out) {
  const std::string t = absl::AsciiStrToLower(text);
  if (t == "debug") {
    *out = Level::kDebug;
  } else if (t == "info") {
    *out = Level::kInfo;
  } else if (t == "warn" || t == "warning") {
    *out = Level::kWarn;
  } else if (t == "error") {
    *out = Level::kError;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--log-level: '", text, "' is not a level; use debug, info, warn or error"));
  }
  return absl::OkStatus();
}

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

void Init(const std::string& daemon, Level level) {
  auto l = Logger();
  l->set_pattern(absl::StrCat("%Y-%m-%dT%H:%M:%S.%eZ %l [", daemon, " ", getpid(), "] %v"),
                 spdlog::pattern_time_type::utc);
  l->set_level(ToSpd(level));
}

void Debug(absl::string_view message) { Logger()->debug("{}", std::string_view(message.data(), message.size())); }
void Info(absl::string_view message) { Logger()->info("{}", std::string_view(message.data(), message.size())); }
void Warn(absl::string_view message) { Logger()->warn("{}", std::string_view(message.data(), message.size())); }
void Error(absl::string_view message) { Logger()->error("{}", std::string_view(message.data(), message.size())); }

}  // namespace dpfleet::log
