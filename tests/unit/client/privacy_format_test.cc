// How dpctl states privacy numbers (client/privacy_format.h): a
// non-private job's epsilon is "∞ (not private)" or null, never 0; budgets
// and the ledger are per file, with the ledger's mechanism column.
#include "client/privacy_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>

#include "client/coordinator_client.h"

namespace dpfleet::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

v1::Job Job(const std::string& mode) {
  v1::Job j;
  j.set_job_id("job-000001");
  j.set_mode(mode);
  if (mode == "dp") j.set_epsilon(0);  // a queued DP job has spent nothing yet
  v1::EpochMetrics* m = j.add_history();
  m->set_epoch(1);
  if (mode == "dp") m->set_epsilon(0.25);
  return j;
}

TEST(PrivacyFormatTest, ANonPrivateJobHasNoEpsilonAnywhere) {
  const v1::Job plain = Job("none");
  EXPECT_EQ(JobEpsilon(plain), std::nullopt);
  EXPECT_EQ(EpsilonText(JobEpsilon(plain)), "∞ (not private)");
  const nlohmann::json j = nlohmann::json::parse(JobToJson(plain));
  EXPECT_TRUE(j["epsilon"].is_null());
  EXPECT_EQ(j["private"], false);
  EXPECT_EQ(j["mode"], "none");
  EXPECT_TRUE(j["history"][0]["epsilon"].is_null());
  // A private job that has spent nothing yet says 0, and is private.
  const v1::Job dp = Job("dp");
  EXPECT_EQ(EpsilonText(JobEpsilon(dp)), "0.0000");
  const nlohmann::json k = nlohmann::json::parse(JobToJson(dp));
  EXPECT_EQ(k["epsilon"], 0.0);
  EXPECT_EQ(k["private"], true);
  EXPECT_EQ(k["history"][0]["epsilon"], 0.25);
}

TEST(PrivacyFormatTest, PadCountsColumnsNotBytes) {
  EXPECT_EQ(Pad("∞ (not private)", 17), "  ∞ (not private)");
  EXPECT_EQ(Pad("ab", -4), "ab  ");
  EXPECT_EQ(Pad("abcdef", 3), "abcdef");
}

TEST(PrivacyFormatTest, BudgetsArePerFileAndInfinityIsNotANumber) {
  v1::DatasetBudget b;
  b.set_file("sha256:" + std::string(64, 'a'));
  b.add_names("acs");
  b.add_names("/data/a.csv");
  b.set_has_budget(true);
  b.set_epsilon_budget(3);
  b.set_epsilon_spent(1.5);
  b.set_epsilon_committed(2);
  b.set_epsilon_remaining(1);
  b.set_delta(1e-5);
  const nlohmann::json j = BudgetJson(b);
  EXPECT_EQ(j["file"], b.file());
  EXPECT_EQ(j["names"], nlohmann::json({"acs", "/data/a.csv"}));
  EXPECT_EQ(j["private"], true);
  EXPECT_EQ(j["epsilon_spent"], 1.5);
  const std::string table = BudgetTable({b});
  EXPECT_THAT(table, HasSubstr("sha256:aaaaaaaaaaaa…"));
  EXPECT_THAT(table, HasSubstr("acs, /data/a.csv"));
  b.set_epsilon_spent(std::numeric_limits<double>::infinity());
  b.set_epsilon_committed(std::numeric_limits<double>::infinity());
  const nlohmann::json inf = BudgetJson(b);
  EXPECT_TRUE(inf["epsilon_spent"].is_null());
  EXPECT_EQ(inf["private"], false);
  EXPECT_THAT(BudgetTable({b}), HasSubstr("∞ (not private)"));
}

TEST(PrivacyFormatTest, TheLedgerShowsItsMechanismPerFile) {
  v1::GetLedgerResponse ledger;
  v1::FileLedger* f = ledger.add_files();
  f->set_file("sha256:" + std::string(64, 'b'));
  f->add_names("acs");
  f->set_delta(1e-5);
  for (const char* mechanism : {"train", "eval"}) {
    v1::LedgerCharge* c = f->add_charges();
    c->set_job_id("job-000001");
    c->set_epoch(1);
    c->set_mechanism(mechanism);
    c->set_epsilon_total(0.5);
    c->set_epsilon_increment(0.25);
  }
  const std::string text = LedgerText(ledger);
  EXPECT_THAT(text, HasSubstr("MECHANISM"));
  EXPECT_THAT(text, HasSubstr(" train "));
  EXPECT_THAT(text, HasSubstr(" eval "));
  EXPECT_THAT(text, HasSubstr("ledger of file sha256:bbbb"));
  const std::string csv = LedgerCsv(ledger);
  EXPECT_THAT(csv, HasSubstr("file,job_id,owner,attempt,epoch,mechanism,"));
  EXPECT_THAT(csv, HasSubstr(f->file() + ",job-000001,,0,1,eval,"));
  const nlohmann::json j = LedgerJson(ledger);
  ASSERT_EQ(j["files"].size(), 1u);
  EXPECT_EQ(j["files"][0]["charges"][1]["mechanism"], "eval");
  EXPECT_THAT(text, Not(HasSubstr("inf")));
}

}  // namespace
}  // namespace dpfleet::client
