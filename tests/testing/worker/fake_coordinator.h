// FakeCoordinator: the coordinator's side of the worker protocol, scripted
// by a test. It records every call a worker makes, in order, and answers
// from what the test queued: assignments and stop orders for heartbeats,
// refusals for registrations and charges, a stop in a progress ack, a
// checkpoint to resume from. It runs as a real gRPC server inside the test
// process, reached over an in-process channel (channel()) or, for code that
// dials an address, on a loopback port the OS picks (address()).
//
// It keeps no job state of its own and checks nothing: the test asserts on
// what it recorded. Thread-safe.
#ifndef DPFLEET_TESTS_TESTING_WORKER_FAKE_COORDINATOR_H_
#define DPFLEET_TESTS_TESTING_WORKER_FAKE_COORDINATOR_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "dpfleet/v1/worker.grpc.pb.h"

namespace dpfleet::testing {

class FakeCoordinator final : public v1::WorkerService::Service {
 public:
  FakeCoordinator();
  ~FakeCoordinator() override;

  std::string address() const { return address_; }
  std::shared_ptr<grpc::Channel> channel() { return server_->InProcessChannel(grpc::ChannelArguments()); }

  // --- The script ---
  void RefuseRegistration(const grpc::Status& status);
  // Handed out with the next heartbeat.
  void QueueAssignment(const v1::Assignment& a);
  void QueueCancel(const std::string& job_id);
  // The next heartbeat answers "register again".
  void AskToReregister();
  // The next `times` charges of `epoch` for `mechanism` answer `status`.
  void FailCharge(int32_t epoch, const grpc::Status& status, int times = 1,
                  v1::Mechanism mechanism = v1::MECHANISM_TRAIN);
  // Charges wait until ReleaseCharges (the run is then known to be inside
  // its charge call).
  void HoldCharges();
  void ReleaseCharges();
  // The ack of epoch `epoch`'s report says stop.
  void StopAtEpoch(int32_t epoch, const std::string& reason);
  // What FetchCheckpoint serves (the state after `epoch`).
  void SetCheckpoint(int32_t epoch, const std::string& bytes);

  // --- What the worker did ---
  // "register", "charge E", "charge eval E", "progress E", "upload", "done ok" / "done <error>"
  // (heartbeats are only counted: there are many).
  std::vector<std::string> calls() const;
  int heartbeats() const;
  std::vector<v1::RegisterRequest> registrations() const;
  std::vector<v1::ChargeBudgetRequest> charges() const;
  std::vector<v1::ProgressReport> reports() const;
  std::vector<v1::DoneReport> dones() const;
  // Every log line the worker shipped (ShipLogs), in order.
  std::vector<v1::JobLogLine> log_lines() const;
  std::string model() const;
  // Block (without polling) until at least `n` calls that start with
  // `prefix` were made, or heartbeats, or charges are held.
  void AwaitCalls(const std::string& prefix, int n) const;
  void AwaitHeartbeats(int n) const;
  void AwaitHeldCharge() const;

  grpc::Status Register(grpc::ServerContext*, const v1::RegisterRequest*, v1::RegisterResponse*) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest*, v1::HeartbeatResponse*) override;
  grpc::Status ChargeBudget(grpc::ServerContext*, const v1::ChargeBudgetRequest*, v1::ChargeBudgetResponse*) override;
  grpc::Status ReportProgress(grpc::ServerContext*, const v1::ProgressReport*, v1::ProgressAck*) override;
  grpc::Status ReportDone(grpc::ServerContext*, const v1::DoneReport*, v1::DoneAck*) override;
  grpc::Status FetchCheckpoint(grpc::ServerContext*, const v1::FetchCheckpointRequest*,
                               v1::FetchCheckpointResponse*) override;
  grpc::Status UploadModel(grpc::ServerContext*, const v1::UploadModelRequest*, v1::UploadModelResponse*) override;
  grpc::Status ShipLogs(grpc::ServerContext*, const v1::ShipLogsRequest*, v1::ShipLogsResponse*) override;
  // A plain key-value store per (job, attempt); a get waits (on its server
  // thread: this is a test) until the key is set or its timeout passes.
  grpc::Status RendezvousSet(grpc::ServerContext*, const v1::RendezvousSetRequest*,
                             v1::RendezvousSetResponse*) override;
  grpc::Status RendezvousGet(grpc::ServerContext*, const v1::RendezvousGetRequest*,
                             v1::RendezvousGetResponse*) override;
  grpc::Status RendezvousAdd(grpc::ServerContext*, const v1::RendezvousAddRequest*,
                             v1::RendezvousAddResponse*) override;

 private:
  int CountLocked(const std::string& prefix) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  mutable absl::Mutex mu_;
  grpc::Status refuse_registration_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::Assignment> assignments_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> cancels_ ABSL_GUARDED_BY(mu_);
  bool reregister_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::pair<int32_t, int>, std::deque<grpc::Status>> charge_failures_ ABSL_GUARDED_BY(mu_);
  bool hold_charges_ ABSL_GUARDED_BY(mu_) = false;
  int held_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int32_t, std::string> stops_ ABSL_GUARDED_BY(mu_);
  int32_t checkpoint_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  std::string checkpoint_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
  int heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::RegisterRequest> registrations_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ChargeBudgetRequest> charges_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ProgressReport> reports_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::DoneReport> dones_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::JobLogLine> log_lines_ ABSL_GUARDED_BY(mu_);
  std::string model_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> keys_ ABSL_GUARDED_BY(mu_);  // "job/attempt/key"
};

}  // namespace dpfleet::testing

#endif  // DPFLEET_TESTS_TESTING_WORKER_FAKE_COORDINATOR_H_
