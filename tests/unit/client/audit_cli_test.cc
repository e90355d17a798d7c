// dpctl audit's output (client/audit_cli.h): the table and the JSON.
#include "client/audit_cli.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace dpfleet::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

v1::GetAuditResponse Audit(bool is_private) {
  v1::GetAuditResponse a;
  a.mutable_run()->set_job_id("job-000002");
  a.mutable_run()->set_kind("audit");
  a.mutable_run()->set_audit_of("job-000001");
  a.mutable_run()->set_state(v1::SUCCEEDED);
  v1::AuditReport* r = a.mutable_report();
  r->set_job_id("job-000001");
  if (is_private) r->set_reported_epsilon(1.5);
  r->set_delta(1e-5);
  r->set_confidence(0.95);
  r->set_shadow_models(4);
  r->mutable_target()->set_model("target");
  v1::MembershipAttackResult* m = r->mutable_target()->add_membership();
  m->set_attack("lira_offline");
  m->set_auc(0.5125);
  m->set_tpr_at_fpr_0_1pct(0.002);
  m->set_tpr_at_fpr_1pct(0.0125);
  m->set_epsilon_lower_bound(0.25);
  m->set_members(500);
  m->set_non_members(500);
  r->mutable_target()->set_epsilon_lower_bound(0.25);
  v1::InversionAttackResult* inv = r->mutable_target()->add_inversion();
  inv->set_feature("DIS");
  inv->set_records(900);
  inv->set_accuracy(0.861);
  inv->set_base_rate(0.86);
  return a;
}

TEST(AuditCliTest, TheTableShowsEachAttackAndTheBoundNextToTheReportedEpsilon) {
  const std::string text = AuditReportText(Audit(true).report());
  EXPECT_THAT(text, HasSubstr("reported epsilon: 1.5 (delta 1e-05)"));
  EXPECT_THAT(text, HasSubstr("lira_offline"));
  EXPECT_THAT(text, HasSubstr("0.5125"));
  EXPECT_THAT(text, HasSubstr("0.20%"));
  EXPECT_THAT(text, HasSubstr("1.25%"));
  EXPECT_THAT(text, HasSubstr("DIS"));
  EXPECT_THAT(text, HasSubstr("86.10%"));
  EXPECT_THAT(text, HasSubstr("empirical epsilon lower bound: 0.250 for the job's model (reported 1.5)"));
  EXPECT_THAT(text, Not(HasSubstr("baseline"))) << "no baseline was trained";
}

TEST(AuditCliTest, JsonSaysNotPrivateAsNullNeverZero) {
  const nlohmann::json dp = AuditJson(Audit(true));
  EXPECT_EQ(dp["audit_id"], "job-000002");
  EXPECT_EQ(dp["audit_of"], "job-000001");
  EXPECT_EQ(dp["run"]["kind"], "audit");
  EXPECT_DOUBLE_EQ(dp["report"]["reported_epsilon"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(dp["report"]["target"]["membership"][0]["epsilon_lower_bound"].get<double>(), 0.25);
  EXPECT_EQ(dp["report"]["target"]["membership"][0]["members"], 500) << "a number, not proto3's int64 string";
  EXPECT_EQ(dp["report"]["target"]["inversion"][0]["records"], 900);
  EXPECT_TRUE(dp["report"]["baseline"].is_null());
  const nlohmann::json none = AuditJson(Audit(false));
  EXPECT_TRUE(none["report"]["reported_epsilon"].is_null());
  EXPECT_THAT(AuditReportText(Audit(false).report()), HasSubstr("none (the job is not private)"));
  v1::GetAuditResponse running = Audit(true);
  running.clear_report();
  running.mutable_run()->set_state(v1::RUNNING);
  EXPECT_TRUE(AuditJson(running)["report"].is_null());
}

TEST(AuditCliTest, TheOneRunAuditHasItsOwnRowsAndNumbers) {
  v1::GetAuditResponse a = Audit(true);
  EXPECT_THAT(AuditReportText(a.report()), Not(HasSubstr("one-run")));
  EXPECT_TRUE(AuditJson(a)["report"]["target"]["one_run"].is_null()) << "absent, not zeros";
  v1::OneRunAuditResult* o = a.mutable_report()->mutable_target()->mutable_one_run();
  o->set_canaries(1000);
  o->set_included(497);
  o->set_guesses(200);
  o->set_correct(113);
  o->set_epsilon_lower_bound(0.0);
  v1::ModelAuditResult* base = a.mutable_report()->mutable_baseline();
  base->set_model("non_private_baseline");
  base->mutable_one_run()->set_canaries(1000);
  base->mutable_one_run()->set_correct(481);
  base->mutable_one_run()->set_guesses(500);
  base->mutable_one_run()->set_epsilon_lower_bound(2.125);
  base->set_epsilon_lower_bound(2.125);
  const std::string text = AuditReportText(a.report());
  EXPECT_THAT(text, HasSubstr("one-run audit"));
  EXPECT_THAT(text, HasSubstr("CANARIES"));
  EXPECT_THAT(text, ::testing::ContainsRegex("target +1000 +497 +200 +113 +0.000"));
  EXPECT_THAT(text, ::testing::ContainsRegex("non_private_baseline +1000 +0 +500 +481 +2.125"));
  EXPECT_THAT(text, HasSubstr("2.125 for the non-private baseline"));
  const nlohmann::json j = AuditJson(a);
  EXPECT_EQ(j["report"]["target"]["one_run"]["canaries"], 1000) << "a number, not proto3's int64 string";
  EXPECT_EQ(j["report"]["target"]["one_run"]["correct"], 113);
  EXPECT_EQ(j["report"]["baseline"]["one_run"]["guesses"], 500);
}

}  // namespace
}  // namespace dpfleet::client
