// Test helper: every RPC the dpfleet protos declare (Coordinator, Admin,
// WorkerService) as full gRPC paths, read from the generated descriptors —
// so tests of the role table notice a method added to a proto.
#ifndef DPFLEET_TESTS_TESTING_FLEET_RPC_METHODS_H_
#define DPFLEET_TESTS_TESTING_FLEET_RPC_METHODS_H_

#include <set>
#include <string>

namespace dpfleet::testing {

// "/dpfleet.v1.Coordinator/SubmitJob", ...; empty if a service is missing.
std::set<std::string> DeclaredRpcMethods();

}  // namespace dpfleet::testing

#endif  // DPFLEET_TESTS_TESTING_FLEET_RPC_METHODS_H_
