#include "tests/testing/worker/fake_coordinator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace dpfleet::testing {

FakeCoordinator::FakeCoordinator() {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  address_ = absl::StrCat("127.0.0.1:", port);
}

FakeCoordinator::~FakeCoordinator() {
  ReleaseCharges();
  server_->Shutdown();
}

void FakeCoordinator::RefuseRegistration(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  refuse_registration_ = status;
}

void FakeCoordinator::QueueAssignment(const v1::Assignment& a) {
  absl::MutexLock lock(&mu_);
  assignments_.push_back(a);
}

void FakeCoordinator::QueueCancel(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  cancels_.push_back(job_id);
}

void FakeCoordinator::AskToReregister() {
  absl::MutexLock lock(&mu_);
  reregister_ = true;
}

void FakeCoordinator::FailCharge(int32_t epoch, const grpc::Status& status, int times, v1::Mechanism mechanism) {
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < times; ++i) charge_failures_[{epoch, mechanism}].push_back(status);
}

void FakeCoordinator::HoldCharges() {
  absl::MutexLock lock(&mu_);
  hold_charges_ = true;
}

void FakeCoordinator::ReleaseCharges() {
  absl::MutexLock lock(&mu_);
  hold_charges_ = false;
}

void FakeCoordinator::StopAtEpoch(int32_t epoch, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  stops_[epoch] = reason;
}

void FakeCoordinator::SetCheckpoint(int32_t epoch, const std::string& bytes) {
  absl::MutexLock lock(&mu_);
  checkpoint_epoch_ = epoch;
  checkpoint_ = bytes;
}

std::vector<std::string> FakeCoordinator::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

int FakeCoordinator::heartbeats() const {
  absl::MutexLock lock(&mu_);
  return heartbeats_;
}

std::vector<v1::RegisterRequest> FakeCoordinator::registrations() const {
  absl::MutexLock lock(&mu_);
  return registrations_;
}

std::vector<v1::ChargeBudgetRequest> FakeCoordinator::charges() const {
  absl::MutexLock lock(&mu_);
  return charges_;
}

std::vector<v1::ProgressReport> FakeCoordinator::reports() const {
  absl::MutexLock lock(&mu_);
  return reports_;
}

std::vector<v1::DoneReport> FakeCoordinator::dones() const {
  absl::MutexLock lock(&mu_);
  return dones_;
}

std::string FakeCoordinator::model() const {
  absl::MutexLock lock(&mu_);
  return model_;
}

int FakeCoordinator::CountLocked(const std::string& prefix) const {
  return static_cast<int>(
      std::count_if(calls_.begin(), calls_.end(), [&](const std::string& c) { return c.rfind(prefix, 0) == 0; }));
}

void FakeCoordinator::AwaitCalls(const std::string& prefix, int n) const {
  absl::MutexLock lock(&mu_);
  auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return CountLocked(prefix) >= n; };
  mu_.Await(absl::Condition(&enough));
}

void FakeCoordinator::AwaitHeartbeats(int n) const {
  absl::MutexLock lock(&mu_);
  auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return heartbeats_ >= n; };
  mu_.Await(absl::Condition(&enough));
}

void FakeCoordinator::AwaitHeldCharge() const {
  absl::MutexLock lock(&mu_);
  auto held = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return held_ > 0; };
  mu_.Await(absl::Condition(&held));
}

grpc::Status FakeCoordinator::Register(grpc::ServerContext*, const v1::RegisterRequest* req,
                                       v1::RegisterResponse* resp) {
  absl::MutexLock lock(&mu_);
  calls_.push_back("register");
  registrations_.push_back(*req);
  if (!refuse_registration_.ok()) return refuse_registration_;
  resp->set_worker_id(req->previous_worker_id().empty() ? "w-fake" : req->previous_worker_id());
  resp->set_lease_ttl_ms(10'000);
  resp->set_heartbeat_interval_ms(20);
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest*,
                                        v1::HeartbeatResponse* resp) {
  absl::MutexLock lock(&mu_);
  ++heartbeats_;
  if (reregister_) {
    reregister_ = false;
    resp->set_reregister(true);
    return grpc::Status::OK;
  }
  while (!assignments_.empty()) {
    *resp->add_assignments() = assignments_.front();
    assignments_.pop_front();
  }
  for (const std::string& id : cancels_) resp->add_cancel_job_ids(id);
  cancels_.clear();
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::ChargeBudget(grpc::ServerContext*, const v1::ChargeBudgetRequest* req,
                                           v1::ChargeBudgetResponse* resp) {
  absl::MutexLock lock(&mu_);
  if (hold_charges_) {
    ++held_;
    auto released = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !hold_charges_; };
    mu_.Await(absl::Condition(&released));
    --held_;
  }
  calls_.push_back(absl::StrCat(req->mechanism() == v1::MECHANISM_EVAL ? "charge eval " : "charge ", req->epoch()));
  charges_.push_back(*req);
  auto failures = charge_failures_.find({req->epoch(), req->mechanism()});
  if (failures != charge_failures_.end() && !failures->second.empty()) {
    grpc::Status s = failures->second.front();
    failures->second.pop_front();
    return s;
  }
  resp->set_epsilon_after(0.1 * req->epoch());
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::ReportProgress(grpc::ServerContext*, const v1::ProgressReport* req,
                                             v1::ProgressAck* ack) {
  absl::MutexLock lock(&mu_);
  calls_.push_back(absl::StrCat("progress ", req->metrics().epoch()));
  reports_.push_back(*req);
  if (auto stop = stops_.find(req->metrics().epoch()); stop != stops_.end()) {
    ack->set_stop(true);
    ack->set_reason(stop->second);
  }
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::ReportDone(grpc::ServerContext*, const v1::DoneReport* req, v1::DoneAck*) {
  absl::MutexLock lock(&mu_);
  calls_.push_back(req->success() ? "done ok" : absl::StrCat("done ", req->error()));
  dones_.push_back(*req);
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::FetchCheckpoint(grpc::ServerContext*, const v1::FetchCheckpointRequest* req,
                                              v1::FetchCheckpointResponse* resp) {
  absl::MutexLock lock(&mu_);
  calls_.push_back("fetch checkpoint");
  if (checkpoint_.empty()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no checkpoint");
  const int64_t offset = std::min<int64_t>(req->offset(), checkpoint_.size());
  resp->set_data(checkpoint_.substr(offset, std::max<int64_t>(1, req->max_bytes())));
  resp->set_total_bytes(static_cast<int64_t>(checkpoint_.size()));
  resp->set_epoch(checkpoint_epoch_);
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::UploadModel(grpc::ServerContext*, const v1::UploadModelRequest* req,
                                          v1::UploadModelResponse*) {
  absl::MutexLock lock(&mu_);
  calls_.push_back("upload");
  model_ = req->model();
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::ShipLogs(grpc::ServerContext*, const v1::ShipLogsRequest* req,
                                       v1::ShipLogsResponse* resp) {
  absl::MutexLock lock(&mu_);
  for (v1::JobLogLine l : req->lines()) {
    l.set_attempt(req->attempt());
    l.set_rank(req->rank());
    log_lines_.push_back(std::move(l));
  }
  resp->set_stored(req->lines_size());
  return grpc::Status::OK;
}

std::vector<v1::JobLogLine> FakeCoordinator::log_lines() const {
  absl::MutexLock lock(&mu_);
  return log_lines_;
}

namespace {
std::string KeyOf(const std::string& job, int32_t attempt, const std::string& key) {
  return absl::StrCat(job, "/", attempt, "/", key);
}
}  // namespace

grpc::Status FakeCoordinator::RendezvousSet(grpc::ServerContext*, const v1::RendezvousSetRequest* req,
                                            v1::RendezvousSetResponse*) {
  absl::MutexLock lock(&mu_);
  keys_[KeyOf(req->job_id(), req->attempt(), req->key())] = req->value();
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::RendezvousGet(grpc::ServerContext*, const v1::RendezvousGetRequest* req,
                                            v1::RendezvousGetResponse* resp) {
  const std::string k = KeyOf(req->job_id(), req->attempt(), req->key());
  absl::MutexLock lock(&mu_);
  auto set = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return keys_.count(k) > 0; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&set), absl::Milliseconds(req->timeout_ms()))) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, absl::StrCat("key '", req->key(), "' not published"));
  }
  resp->set_value(keys_[k]);
  return grpc::Status::OK;
}

grpc::Status FakeCoordinator::RendezvousAdd(grpc::ServerContext*, const v1::RendezvousAddRequest* req,
                                            v1::RendezvousAddResponse* resp) {
  absl::MutexLock lock(&mu_);
  std::string& v = keys_[KeyOf(req->job_id(), req->attempt(), req->key())];
  const int64_t sum = (v.empty() ? 0 : std::stoll(v)) + req->delta();
  v = absl::StrCat(sum);
  resp->set_value(sum);
  return grpc::Status::OK;
}

}  // namespace dpfleet::testing
