// Tests for client/export_cli.h: the model card says what the job released
// and nothing custodian-only.
#include "client/export_cli.h"

#include <gtest/gtest.h>

#include <string>

namespace dpfleet::client {
namespace {

v1::Job DpJob() {
  v1::Job job;
  job.set_job_id("job-7");
  job.set_name("emp");
  job.set_mode("dp");
  job.set_spec_yaml(
      "name: emp\ndata:\n  path: /secret/place/pums.csv\ntask: employment\nfeatures: [AGEP, SEX]\n"
      "model:\n  type: mlp\n  hidden: [8]\ntraining:\n  epochs: 2\n  batch_size: 64\n"
      "privacy:\n  target_epsilon: 2\n  delta: 1e-5\n");
  job.set_epsilon(1.93);
  job.set_delta(1e-5);
  job.set_accountant("rdp");
  job.set_noise_multiplier(1.1);
  job.set_sample_rate(0.01);
  job.set_train_rows(6400);
  job.set_epochs_done(2);
  job.add_input_files("sha256:abcdef");
  v1::EpochMetrics* m = job.add_history();
  m->set_epoch(2);
  m->set_steps(200);
  return job;
}

TEST(ModelCardTest, CarriesTheReleasedPrivacyAndTheSchemaEncoding) {
  absl::StatusOr<nlohmann::ordered_json> card = ModelCard(DpJob(), "0.1.0");
  ASSERT_TRUE(card.ok()) << card.status();
  const auto& c = *card;
  EXPECT_EQ(c["job_id"], "job-7");
  EXPECT_EQ(c["task"], "employment");
  ASSERT_EQ(c["features"].size(), 2u);
  EXPECT_EQ(c["features"][0]["name"], "AGEP");
  EXPECT_EQ(c["features"][0]["kind"], "numeric");
  EXPECT_EQ(c["features"][1]["name"], "SEX");
  EXPECT_EQ(c["features"][1]["codes"], (std::vector<int>{1, 2}));
  EXPECT_EQ(c["columns"], (std::vector<std::string>{"AGEP", "SEX=1", "SEX=2"}));
  EXPECT_EQ(c["model"]["widths"], (std::vector<int64_t>{3, 8, 1}));
  EXPECT_EQ(c["privacy"]["private"], true);
  EXPECT_DOUBLE_EQ(c["privacy"]["epsilon"].get<double>(), 1.93);
  EXPECT_DOUBLE_EQ(c["privacy"]["delta"].get<double>(), 1e-5);
  EXPECT_EQ(c["privacy"]["accountant"], "rdp");
  EXPECT_DOUBLE_EQ(c["privacy"]["noise_multiplier"].get<double>(), 1.1);
  EXPECT_DOUBLE_EQ(c["privacy"]["sample_rate"].get<double>(), 0.01);
  EXPECT_EQ(c["privacy"]["steps"], 200);
  EXPECT_EQ(c["privacy"]["train_rows"], 6400);
  EXPECT_EQ(c["dpfleet_version"], "0.1.0");
  // Paths and content keys are custodian-only.
  const std::string text = c.dump();
  EXPECT_EQ(text.find("/secret/place"), std::string::npos);
  EXPECT_EQ(text.find("sha256:"), std::string::npos);
}

TEST(ModelCardTest, NonPrivateJobHasNoEpsilonNotZero) {
  v1::Job job = DpJob();
  job.set_mode("none");
  job.clear_epsilon();
  absl::StatusOr<nlohmann::ordered_json> card = ModelCard(job, "0.1.0");
  ASSERT_TRUE(card.ok()) << card.status();
  EXPECT_EQ((*card)["privacy"]["private"], false);
  EXPECT_TRUE((*card)["privacy"]["epsilon"].is_null());
  EXPECT_TRUE((*card)["privacy"]["delta"].is_null());
}

TEST(ModelCardTest, UnparsableSpecIsAnError) {
  v1::Job job = DpJob();
  job.set_spec_yaml("model: [");
  absl::StatusOr<nlohmann::ordered_json> card = ModelCard(job, "0.1.0");
  ASSERT_FALSE(card.ok());
  EXPECT_NE(card.status().message().find("job-7"), std::string::npos);
}

}  // namespace
}  // namespace dpfleet::client
