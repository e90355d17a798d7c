// Conversions between the core's plain records and the API's proto
// messages, and the one place where absl::Status becomes grpc::Status.
#ifndef DPFLEET_SERVER_RPC_CONVERT_H_
#define DPFLEET_SERVER_RPC_CONVERT_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "dpfleet/v1/coordinator.pb.h"
#include "dpfleet/v1/types.pb.h"
#include "dpfleet/v1/worker.pb.h"
#include "server/core/job_manager.h"
#include "server/core/types.h"

namespace dpfleet::server {

grpc::Status ToGrpc(const absl::Status& s);
void ToProto(const JobRecord& r, v1::Job* out);
// An epoch of a job; `dp` is the job's mode (a non-private epoch has no
// epsilon to state).
void ToProto(const EpochRecord& e, bool dp, v1::EpochMetrics* out);
void ToProto(const WorkerRecord& w, v1::WorkerInfo* out);
v1::JobState ToProto(JobState s);
EpochRecord FromProto(const v1::EpochMetrics& m);
void ToProto(const BudgetView& b, v1::DatasetBudget* out);
void ToProto(const AuditOrder& a, v1::AuditOrder* out);
// The stored form of an audit report (JobCommit::audit_report): the API
// message as JSON, field names as in the proto.
std::string AuditReportJson(const v1::AuditReport& report);
absl::Status AuditReportFromJson(const std::string& json, v1::AuditReport* out);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_RPC_CONVERT_H_
