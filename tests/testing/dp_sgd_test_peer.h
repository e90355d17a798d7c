// Test-only access to the DP engine's stream keys.
//
// In the product every sampling and noise key (DpSgdTrainer) and every eval
// noise key (EvalReleaser) comes from getrandom(2), and nothing in a job
// spec, an RPC or TrainConfig can change that. Tests that compare two runs
// bit for bit (a GPU rank against a CPU rank, a resumed trainer against the
// original) need the same streams in both; this peer, a friend of both
// classes that only test targets can include, installs keys derived from a
// seed with DeriveSeededKey. Header-only, so the testing library needs no
// LibTorch.
#ifndef DPFLEET_TESTS_TESTING_DP_SGD_TEST_PEER_H_
#define DPFLEET_TESTS_TESTING_DP_SGD_TEST_PEER_H_

#include <cstdint>

#include "worker/train/dp_eval.h"
#include "worker/train/dp_sgd.h"
#include "worker/train/rng.h"

namespace dpfleet::testing {

class DpSgdTrainerTestPeer {
 public:
  // Replaces `trainer`'s getrandom keys with the seeded keys of
  // (seed, attempt, its rank): reproducible in every trainer given the same
  // three, distinct across ranks and attempts.
  static void UseSeededStreams(train::DpSgdTrainer& trainer, uint64_t seed, int32_t attempt = 0) {
    const int32_t rank = trainer.comm_->rank();
    trainer.sample_key_ = train::DeriveSeededKey(seed, attempt, rank, train::StreamPurpose::kSample);
    trainer.noise_key_ = train::DeriveSeededKey(seed, attempt, rank, train::StreamPurpose::kNoise);
  }
  static train::ChaChaKey SampleKey(const train::DpSgdTrainer& trainer) { return trainer.sample_key_; }
  static train::ChaChaKey NoiseKey(const train::DpSgdTrainer& trainer) { return trainer.noise_key_; }

  // The same for an eval releaser (its releases keep counting from where
  // they are).
  static void UseSeededStream(train::EvalReleaser& releaser, uint64_t seed) {
    releaser.key_ = train::DeriveSeededKey(seed, 0, 0, train::StreamPurpose::kNoise);
  }
  static train::ChaChaKey Key(const train::EvalReleaser& releaser) { return releaser.key_; }
};

}  // namespace dpfleet::testing

#endif  // DPFLEET_TESTS_TESTING_DP_SGD_TEST_PEER_H_
