// A gRPC server interceptor that counts every handled call by method and
// status code and times it (dpfleet_rpc_requests_total,
// dpfleet_rpc_duration_seconds in server/core/metrics.h). It sees calls that
// reached a handler: a call the Gate refuses in its auth processor
// (unauthenticated, role table, rate limit) is counted by the Gate as a
// refusal instead (dpfleet_rpc_refusals_total). It reads no message.
#ifndef DPFLEET_SERVER_RPC_RPC_METRICS_H_
#define DPFLEET_SERVER_RPC_RPC_METRICS_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "server/core/metrics.h"

namespace dpfleet::server {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> RpcMetricsInterceptorFactory(
    ServerMetrics* metrics);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_RPC_RPC_METRICS_H_
