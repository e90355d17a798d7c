// dpctl's custodian verbs over the Admin API:
//
//   dpctl admin token create NAME --role custodian|analyst|viewer [-o json]
//   dpctl admin token list [-o json]
//   dpctl admin token revoke NAME
//   dpctl admin audit [--after ID] [--limit N] [-o json]
//   dpctl ledger DATASET [-o json|csv]
//
// `token create` prints the new token alone on stdout (so that
// TOKEN=$(dpctl admin token create ...) works); it exists nowhere else.
// Only a thin shell over CoordinatorClient: no logic of its own.
#ifndef DPFLEET_CLIENT_ADMIN_CLI_H_
#define DPFLEET_CLIENT_ADMIN_CLI_H_

#include <ostream>

#include "client/args.h"
#include "client/coordinator_client.h"

namespace dpfleet::client {

// The flags these verbs take beyond -o and the connection flags.
void AddAdminFlags(ArgSpec* spec);

// `p.positional` starts after "admin" (token ..., audit).
int AdminVerb(CoordinatorClient& client, const Args& p, std::ostream& out, std::ostream& err);
// `p.positional` is {DATASET}.
int LedgerVerb(CoordinatorClient& client, const Args& p, std::ostream& out, std::ostream& err);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_ADMIN_CLI_H_
