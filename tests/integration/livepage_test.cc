// The live page at / on a real coordinator and worker: its headers (a
// strict Content-Security-Policy, nosniff, no caching of API answers), and
// headless Chromium driven through it by tests/integration/livepage_browser.py
// while a job runs: the job's epochs and curves arrive on the page, a wrong
// token shows an error and no data, each role sees what docs/SECURITY.md
// says, and a screenshot goes to build/artifacts/livepage.png (or
// $DPFLEET_ARTIFACTS_DIR/livepage.png) for CI to keep.
//
// The browser check skips, saying so, only where chromium, chromedriver or
// python3 is not installed (./dpfleet setup installs them; CI has them).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fleet/cluster.h"
#include "tests/testing/process.h"
#include "tests/testing/temp_dir.h"

namespace dpfleet {
namespace {

using ::dpfleet::testing::BinPath;
using ::dpfleet::testing::Cluster;
using ::dpfleet::testing::ClusterOptions;
using ::dpfleet::testing::RunCommand;
using ::dpfleet::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::Not;

// A job name that would run script if the page put it into markup.
constexpr char kHostileName[] = "<img src=x onerror=\"window.__livepage_pwned=true\"> & 'quoted'";

// `name` in $PATH, or "".
std::string FindProgram(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string SourceDir() {
  if (const char* s = std::getenv("DPFLEET_SOURCE_DIR")) return s;
  return std::string(__FILE__).substr(0, std::string(__FILE__).rfind("/tests/"));
}

std::string ArtifactsDir() {
  if (const char* s = std::getenv("DPFLEET_ARTIFACTS_DIR")) return s;
  return BinPath("../artifacts");
}

class LivePageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.Join("pums.csv");
    std::string out, err;
    ASSERT_EQ(
        RunCommand({BinPath("dpctl"), "data", "synth", "--rows", "20000", "--seed", "5", "-o", data_}, &out, &err), 0)
        << err;
    // Plaintext on loopback: the browser needs no CA; the page is the same
    // over TLS (same origin, relative URLs).
    ClusterOptions options;
    options.tls = false;
    cluster_ = std::make_unique<Cluster>(dir_.path(), options);
    cluster_->StartServer();
  }

  // The answer to GET `path` with `token` (none when empty), headers included.
  httplib::Result Get(const std::string& path, const std::string& token) {
    httplib::Client c("127.0.0.1", cluster_->http_port());
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    return c.Get(path.c_str(), headers);
  }

  testing::TempDir dir_;
  std::string data_;
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(LivePageTest, ThePageIsStaticPublicAndStrictAndApiAnswersAreNeverCached) {
  // The page and its files: anyone, no data, a policy that allows only
  // the page's own script and style and fetches to this origin.
  for (const std::string path : {"/", "/page/app.js", "/page/app.css", "/page/favicon.svg"}) {
    httplib::Result r = Get(path, "");
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 200) << path;
    const std::string csp = r->get_header_value("Content-Security-Policy");
    EXPECT_THAT(csp, HasSubstr("default-src 'none'")) << path;
    EXPECT_THAT(csp, HasSubstr("script-src 'self'")) << path;
    EXPECT_THAT(csp, HasSubstr("connect-src 'self'")) << path;
    EXPECT_THAT(csp, HasSubstr("frame-ancestors 'none'")) << path;
    EXPECT_THAT(csp, Not(HasSubstr("unsafe"))) << path;
    EXPECT_EQ(r->get_header_value_count("Content-Security-Policy"), 1u) << path;
    EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff") << path;
    EXPECT_EQ(r->get_header_value("Cache-Control"), "no-cache") << path;
    EXPECT_EQ(r->get_header_value_count("Cache-Control"), 1u) << path;
  }
  httplib::Result page = Get("/", "");
  ASSERT_TRUE(page);
  EXPECT_THAT(page->get_header_value("Content-Type"), HasSubstr("text/html"));
  EXPECT_THAT(page->body, HasSubstr("<script src=\"/page/app.js\""));
  EXPECT_THAT(page->body, Not(HasSubstr("<script>"))) << "no inline script";
  EXPECT_THAT(page->body, Not(HasSubstr("http://"))) << "nothing from another origin";
  EXPECT_THAT(page->body, Not(HasSubstr("https://")));
  EXPECT_THAT(Get("/page/app.js", "")->get_header_value("Content-Type"), HasSubstr("text/javascript"));
  EXPECT_THAT(Get("/page/app.js", "")->body, Not(HasSubstr("innerHTML"))) << "user data never becomes markup";
  EXPECT_EQ(Get("/page/nothing.js", "")->status, 404);
  EXPECT_EQ(Get("/page/../v1/jobs", "")->status, 401) << "the page's route reaches no data";

  // API answers, refusals included: never cached, never sniffed, no policy
  // but "nothing".
  const std::string token = cluster_->custodian_token();
  for (const auto& [path, with, status] :
       std::vector<std::tuple<std::string, std::string, int>>{{"/v1/jobs", token, 200},
                                                              {"/v1/budgets", token, 200},
                                                              {"/v1/workers", token, 200},
                                                              {"/metrics", token, 200},
                                                              {"/v1/jobs", "", 401},
                                                              {"/v1/jobs", "dpf_" + std::string(64, '0'), 401},
                                                              {"/v1/jobs/job-999999", token, 404},
                                                              {"/healthz", "", 200}}) {
    httplib::Result r = Get(path, with);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, status) << path << " " << r->body;
    EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store") << path;
    EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff") << path;
    EXPECT_EQ(r->get_header_value("Content-Security-Policy"), "default-src 'none'; frame-ancestors 'none'") << path;
  }
}

TEST_F(LivePageTest, ChromiumShowsTheRunningJobsEpochsAsTheyArriveAndOnlyWhatEachRoleMaySee) {
  const std::string chromium = FindProgram("chromium");
  const std::string chromedriver = FindProgram("chromedriver");
  const std::string python = FindProgram("python3");
  if (chromium.empty() || chromedriver.empty() || python.empty()) {
    GTEST_SKIP() << "the live page's browser test needs chromium, chromedriver and python3 in PATH (Debian "
                    "packages chromium, chromium-driver, python3; ./dpfleet setup installs them); found: chromium '"
                 << chromium << "', chromedriver '" << chromedriver << "', python3 '" << python << "'";
  }
  cluster_->StartWorkers(1);
  std::string out, err;
  ASSERT_EQ(cluster_->Dpctl({"datasets", "add", "synth", "--path", data_, "--shards", "2"}, &out, &err), 0) << err;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto d = cluster_->client().GetDataset("synth");
        return d.ok() && d->state() == "READY";
      },
      absl::Seconds(60)));
  const std::string owner = cluster_->CreateToken("ann", "analyst");
  const std::string other = cluster_->CreateToken("bob", "analyst");
  const std::string viewer = cluster_->CreateToken("vic", "viewer");
  // Far more epochs than the check needs: the job is still running when
  // the browser looks, and is cancelled afterwards.
  const std::string spec = dir_.Join("long.yaml");
  std::ofstream(spec) << "name: '" << absl::StrReplaceAll(kHostileName, {{"'", "''"}}) << "'\n"
                      << "dataset: synth\nmodel: {type: logistic}\n"
                      << "training: {epochs: 20000, batch_size: 256, learning_rate: 0.5}\n"
                      << "privacy: {mode: dp, max_grad_norm: 1.0, noise_multiplier: 1.0, delta: 1.0e-5}\n";
  ASSERT_EQ(cluster_->DpctlAs(owner, {"submit", spec, "-o", "json"}, &out, &err), 0) << err;
  const std::string job = nlohmann::json::parse(out).at("job_id").get<std::string>();

  const std::string screenshot = ArtifactsDir() + "/livepage.png";
  std::remove(screenshot.c_str());
  std::string browser_out, browser_err;
  const int rc = RunCommand({python,
                             SourceDir() + "/tests/integration/livepage_browser.py",
                             "--url",
                             absl::StrCat("http://127.0.0.1:", cluster_->http_port(), "/"),
                             "--job",
                             job,
                             "--job-name",
                             kHostileName,
                             "--dataset",
                             "synth",
                             "--owner-token",
                             owner,
                             "--other-token",
                             other,
                             "--viewer-token",
                             viewer,
                             "--custodian-token",
                             cluster_->custodian_token(),
                             "--screenshot",
                             screenshot,
                             "--chromium",
                             chromium,
                             "--chromedriver",
                             chromedriver},
                            &browser_out, &browser_err, absl::Minutes(5));
  EXPECT_EQ(rc, 0) << browser_out << browser_err << "\n" << cluster_->Logs();
  EXPECT_THAT(browser_out, HasSubstr("all checks held"));
  std::ifstream png(screenshot, std::ios::binary);
  std::string magic(8, '\0');
  png.read(magic.data(), 8);
  EXPECT_EQ(magic, "\x89PNG\r\n\x1a\n") << screenshot << " is not a PNG";

  auto job_now = cluster_->client().Get(job);
  ASSERT_TRUE(job_now.ok());
  EXPECT_EQ(job_now->state(), v1::RUNNING) << "the job ran while the browser watched";
  EXPECT_EQ(cluster_->Dpctl({"cancel", job}, &out, &err), 0) << err;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto j = cluster_->client().Get(job);
        return j.ok() && j->state() == v1::CANCELLED;
      },
      absl::Seconds(60)));
}

}  // namespace
}  // namespace dpfleet
