#include "tests/testing/fleet/rpc_methods.h"

#include "absl/strings/str_cat.h"
#include "dpfleet/v1/admin.pb.h"
#include "dpfleet/v1/coordinator.pb.h"
#include "dpfleet/v1/worker.pb.h"
#include "google/protobuf/descriptor.h"

namespace dpfleet::testing {

std::set<std::string> DeclaredRpcMethods() {
  std::set<std::string> methods;
  // Through a message of each file: linking it is what registers the file.
  for (const google::protobuf::ServiceDescriptor* d :
       {v1::SubmitJobRequest::descriptor()->file()->FindServiceByName("Coordinator"),
        v1::CreateTokenRequest::descriptor()->file()->FindServiceByName("Admin"),
        v1::RegisterRequest::descriptor()->file()->FindServiceByName("WorkerService")}) {
    if (d == nullptr) return {};
    for (int i = 0; i < d->method_count(); ++i) methods.insert(absl::StrCat("/", d->full_name(), "/", d->method(i)->name()));
  }
  return methods;
}

}  // namespace dpfleet::testing
