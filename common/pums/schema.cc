#include "common/pums/schema.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace dpfleet::data {
namespace {

std::vector<int> Range(int lo, int hi) {
  std::vector<int> v(hi - lo + 1);
  std::iota(v.begin(), v.end(), lo);
  return v;
}

PumsVariable Categorical(std::string name, std::string description, std::vector<int> codes,
                         std::string blank_meaning = "",
                         FeatureUse use = FeatureUse::kAllowed) {
  PumsVariable v;
  v.name = std::move(name);
  v.description = std::move(description);
  v.kind = VarKind::kCategorical;
  v.codes = std::move(codes);
  std::sort(v.codes.begin(), v.codes.end());
  v.blank_meaning = std::move(blank_meaning);
  v.feature_use = use;
  return v;
}

PumsVariable Numeric(std::string name, std::string description, int64_t lo, int64_t hi,
                     std::string blank_meaning = "", FeatureUse use = FeatureUse::kAllowed) {
  PumsVariable v;
  v.name = std::move(name);
  v.description = std::move(description);
  v.kind = VarKind::kNumeric;
  v.min_value = lo;
  v.max_value = hi;
  v.blank_meaning = std::move(blank_meaning);
  v.feature_use = use;
  return v;
}

PumsVariable Text(std::string name, std::string description) {
  PumsVariable v;
  v.name = std::move(name);
  v.description = std::move(description);
  v.kind = VarKind::kText;
  v.feature_use = FeatureUse::kIdentifier;
  return v;
}

// Yes/No items: 1 = yes, 2 = no.
std::vector<int> YesNo() { return {1, 2}; }

std::vector<PumsVariable> BuildVariables() {
  std::vector<PumsVariable> v;
  // Identification and geography, in person-file order (RT, SERIALNO,
  // DIVISION, SPORDER, PUMA, REGION, ST, ADJINC, PWGTP, AGEP).
  v.push_back(Text("RT", "record type (P = person)"));
  v.push_back(Text("SERIALNO", "housing unit / group quarters serial number"));
  v.push_back(Categorical("DIVISION", "census division (0 = Puerto Rico)", Range(0, 9)));
  v.push_back(Numeric("SPORDER", "person number within the household", 1, 20, "",
                      FeatureUse::kIdentifier));
  v.push_back(Text("PUMA", "public use microdata area code (2020 definitions)"));
  v.push_back(Categorical("REGION", "census region (9 = Puerto Rico)", {1, 2, 3, 4, 9}));
  {
    // State FIPS codes: 50 states, DC (11) and Puerto Rico (72). The column is
    // ST up to the 2022 files and STATE from 2023 on.
    PumsVariable st = Categorical(
        "ST", "state FIPS code",
        {1,  2,  4,  5,  6,  8,  9,  10, 11, 12, 13, 15, 16, 17, 18, 19, 20, 21,
         22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39,
         40, 41, 42, 44, 45, 46, 47, 48, 49, 50, 51, 53, 54, 55, 56, 72});
    st.aliases = {"STATE"};
    v.push_back(std::move(st));
  }
  v.push_back(Numeric("PWGTP", "person weight", 1, 9999, "", FeatureUse::kWeight));
  v.push_back(Numeric("AGEP", "age (0 = under 1 year; top-coded per state)", 0, 99));
  // Person variables (alphabetical in the file).
  v.push_back(Categorical("CIT", "citizenship status", Range(1, 5)));
  v.push_back(Categorical(
      "COW", "class of worker", Range(1, 9),
      "not applicable: under 16, or not in labor force and last worked over 5 years ago or never",
      FeatureUse::kLeaksLabel));
  v.push_back(Categorical("DDRS", "self-care difficulty", YesNo(), "not applicable: under 5"));
  v.push_back(Categorical("DEAR", "hearing difficulty", YesNo()));
  v.push_back(Categorical("DEYE", "vision difficulty", YesNo()));
  v.push_back(
      Categorical("DOUT", "independent living difficulty", YesNo(), "not applicable: under 15"));
  v.push_back(Categorical("DPHY", "ambulatory difficulty", YesNo(), "not applicable: under 5"));
  v.push_back(Categorical("DREM", "cognitive difficulty", YesNo(), "not applicable: under 5"));
  v.push_back(Categorical("ENG", "ability to speak English", Range(1, 4),
                          "not applicable: under 5 or speaks only English"));
  v.push_back(Categorical("FER", "gave birth to a child within the past 12 months", YesNo(),
                          "not applicable: male, under 15 or over 50"));
  v.push_back(Categorical("LANX", "language other than English spoken at home", YesNo(),
                          "not applicable: under 5"));
  v.push_back(Categorical("MAR", "marital status (5 = never married or under 15)", Range(1, 5)));
  v.push_back(Categorical("MIL", "military service", Range(1, 4), "not applicable: under 17"));
  v.push_back(Categorical("RELSHIPP", "relationship to reference person (2019+)", Range(20, 38)));
  v.push_back(Categorical("SCHL", "educational attainment", Range(1, 24), "not applicable: under 3"));
  v.push_back(Categorical("SEX", "sex", {1, 2}));
  v.push_back(Numeric("WKHP", "usual hours worked per week past 12 months (99 = 99+)", 1, 99,
                      "not applicable: under 16 or did not work during the past 12 months",
                      FeatureUse::kLeaksLabel));
  // Recoded person variables.
  v.push_back(Categorical("DIS", "disability recode", YesNo()));
  v.push_back(Categorical(
      "ESR", "employment status recode (1/2 civilian employed, 3 unemployed, 4/5 armed forces, 6 "
             "not in labor force)",
      Range(1, 6), "not applicable: under 16", FeatureUse::kLabel));
  v.push_back(Categorical("HICOV", "health insurance coverage recode", YesNo()));
  v.push_back(Categorical("HISP", "recoded detailed Hispanic origin (1 = not Hispanic)",
                          Range(1, 24)));
  v.push_back(Categorical("NATIVITY", "nativity (1 native, 2 foreign born)", YesNo()));
  v.push_back(Categorical("PRIVCOV", "private health insurance coverage recode", YesNo()));
  v.push_back(Categorical("PUBCOV", "public health coverage recode", YesNo()));
  v.push_back(Categorical("RAC1P", "recoded detailed race code", Range(1, 9)));
  return v;
}

}  // namespace

int PumsVariable::CodeIndex(int64_t code) const {
  auto it = std::lower_bound(codes.begin(), codes.end(), code);
  if (it == codes.end() || *it != code) return -1;
  return static_cast<int>(it - codes.begin());
}

const std::vector<PumsVariable>& PumsVariables() {
  static const auto* const kVariables = new std::vector<PumsVariable>(BuildVariables());
  return *kVariables;
}

const PumsVariable* FindVariable(absl::string_view name) {
  const std::string upper = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(name));
  for (const PumsVariable& v : PumsVariables()) {
    if (v.name == upper) return &v;
    for (const std::string& alias : v.aliases) {
      if (alias == upper) return &v;
    }
  }
  return nullptr;
}

const std::vector<std::string>& DefaultFeatures() {
  static const auto* const kDefault = new std::vector<std::string>{
      "AGEP", "SCHL", "MAR", "SEX", "RAC1P", "DIS", "CIT", "NATIVITY", "MIL", "DREM"};
  return *kDefault;
}

absl::string_view FeatureUseReason(FeatureUse use) {
  switch (use) {
    case FeatureUse::kAllowed:
      return "allowed";
    case FeatureUse::kIdentifier:
      return "it is a record identifier or geography code";
    case FeatureUse::kWeight:
      return "it is a survey weight";
    case FeatureUse::kLabel:
      return "it is the label of the employment tasks";
    case FeatureUse::kLeaksLabel:
      return "it is only filled in for people who worked, so it leaks the employment label";
  }
  return "unknown";
}

absl::StatusOr<std::string> CanonicalFeatureName(absl::string_view name) {
  const PumsVariable* var = FindVariable(name);
  if (var == nullptr) {
    std::vector<std::string> known;
    for (const PumsVariable& v : PumsVariables()) {
      if (v.feature_use == FeatureUse::kAllowed) known.push_back(v.name);
    }
    return absl::NotFoundError(absl::StrCat("unknown PUMS feature '", name,
                                            "'; known: ", absl::StrJoin(known, ", ")));
  }
  if (var->feature_use != FeatureUse::kAllowed) {
    return absl::InvalidArgumentError(absl::StrCat("PUMS variable '", var->name,
                                                   "' cannot be a feature: ",
                                                   FeatureUseReason(var->feature_use)));
  }
  return var->name;
}

absl::Status ValidateFeatureName(absl::string_view name) {
  return CanonicalFeatureName(name).status();
}

}  // namespace dpfleet::data
