// PUMS person-record schema: the public data dictionary, in code.
//
// This unit describes ACS PUMS person variables (codes, ranges, what a blank
// field means, whether a variable may be a model feature) so that every other
// part of dpfleet can validate and encode records without looking at data.
// Sources: Census Bureau "PUMS Data Dictionary" 2023 CSV edition and the 2016
// text edition (codes unchanged between them for the variables listed here),
// plus the ACS PUMS User Guide for the blank = "not in universe" convention;
// see /work/shared/data/pums/PUMS_FACTS.md.
//
// It must never be built from, or adjusted by, statistics of a private file:
// the privacy rule of the data path (DESIGN.md) requires every vocabulary and
// every normalisation range that shapes features to be data-independent.
#ifndef DPFLEET_COMMON_PUMS_SCHEMA_H_
#define DPFLEET_COMMON_PUMS_SCHEMA_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dpfleet::data {

enum class VarKind {
  kCategorical,  // integer codes from a closed list (`codes`)
  kNumeric,      // integer in [min_value, max_value]
  kText,         // identifier kept as text (SERIALNO, PUMA); never a feature
};

// Why a variable may not be used as a model feature.
enum class FeatureUse {
  kAllowed,
  kIdentifier,  // record key or geography code (SERIALNO, SPORDER, PUMA, RT)
  kWeight,      // survey weight: describes sampling, not the person
  kLabel,       // ESR: the prediction target of the built-in tasks
  kLeaksLabel,  // only filled in for people who worked (COW, WKHP, ...)
};

struct PumsVariable {
  std::string name;                  // canonical name, upper case
  std::vector<std::string> aliases;  // other header spellings (ST <-> STATE)
  std::string description;
  VarKind kind = VarKind::kCategorical;
  std::vector<int> codes;            // kCategorical: valid codes, ascending
  int64_t min_value = 0;             // kNumeric: inclusive range
  int64_t max_value = 0;
  // Empty when the dictionary never leaves the field blank; otherwise what a
  // blank means ("not applicable: under 17"). A blank in a variable whose
  // dictionary defines no blank is a missing required value.
  std::string blank_meaning;
  FeatureUse feature_use = FeatureUse::kAllowed;

  bool blank_allowed() const { return !blank_meaning.empty(); }
  // Index of `code` in `codes`, or -1 when the dictionary does not list it.
  int CodeIndex(int64_t code) const;
};

// Every variable the schema knows, in ACS person-file column order.
const std::vector<PumsVariable>& PumsVariables();

// Looks a variable up by canonical name or alias, case-insensitively.
// Returns nullptr when unknown.
const PumsVariable* FindVariable(absl::string_view name);

// The default feature set for the employment tasks: the folktables
// ACSEmployment features that exist in 2024 state files and do not leak ESR.
const std::vector<std::string>& DefaultFeatures();

// OK when `name` is a known variable that may be a feature. NotFound for an
// unknown name (the message lists the known features); InvalidArgument for a
// known variable that is an identifier, weight, the label or leaks the label.
absl::Status ValidateFeatureName(absl::string_view name);

// Canonical name for `name` (e.g. "state" -> "ST"), or the ValidateFeatureName
// error.
absl::StatusOr<std::string> CanonicalFeatureName(absl::string_view name);

// Human-readable reason a FeatureUse forbids use as a feature.
absl::string_view FeatureUseReason(FeatureUse use);

// ESR: employment status recode (label of the built-in tasks).
inline constexpr char kLabelVariable[] = "ESR";

}  // namespace dpfleet::data

#endif  // DPFLEET_COMMON_PUMS_SCHEMA_H_
