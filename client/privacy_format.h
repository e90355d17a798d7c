// How dpctl states privacy numbers, in one place for every verb (and for
// whatever parses dpctl's arguments): a job's ε — which a non-private job
// does not have: "∞ (not private)" in text, null with "private": false in
// JSON, never 0 —, the per-file budget views and the per-file ledger.
//
// Formatting only: no calls to the coordinator, no decisions.
#ifndef DPFLEET_CLIENT_PRIVACY_FORMAT_H_
#define DPFLEET_CLIENT_PRIVACY_FORMAT_H_

#include <optional>
#include <string>
#include <vector>

#include "dpfleet/v1/admin.pb.h"
#include "dpfleet/v1/coordinator.pb.h"
#include "dpfleet/v1/types.pb.h"
#include "nlohmann/json.hpp"

namespace dpfleet::client {

// What a non-private ε reads as in text.
inline constexpr char kNotPrivateText[] = "∞ (not private)";

// A job's ε: none for a non-private job (privacy.mode none).
std::optional<double> JobEpsilon(const v1::Job& job);
bool IsPrivate(const v1::Job& job);
// An epoch's ε: none when the job is not private.
std::optional<double> EpochEpsilon(const v1::EpochMetrics& m);

// "%.<precision>f" of ε, or kNotPrivateText.
std::string EpsilonText(std::optional<double> epsilon, int precision = 4);
// ε as JSON: the number, or null (also for an infinite one: JSON has none).
nlohmann::json EpsilonJson(std::optional<double> epsilon);
// `text` right-aligned (`width` > 0) or left-aligned (< 0) in |width|
// terminal columns, counting a UTF-8 character as one column.
std::string Pad(const std::string& text, int width);

// One file's budget as `dpctl budget -o json` and GET /v1/budgets give it.
nlohmann::json BudgetJson(const v1::DatasetBudget& b);
// The `dpctl budget` table.
std::string BudgetTable(const std::vector<v1::DatasetBudget>& budgets);

// `dpctl ledger` in its three forms: one block (text), object (JSON) or
// set of rows (CSV, with the file as the first column) per file.
nlohmann::json LedgerJson(const v1::GetLedgerResponse& ledger);
std::string LedgerText(const v1::GetLedgerResponse& ledger);
std::string LedgerCsv(const v1::GetLedgerResponse& ledger);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_PRIVACY_FORMAT_H_
