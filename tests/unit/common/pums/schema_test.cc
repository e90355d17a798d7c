#include "common/pums/schema.h"

#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dpfleet::data {
namespace {

using ::testing::HasSubstr;

TEST(PumsSchemaTest, DefaultFeaturesAreTheFolktablesSubset) {
  EXPECT_EQ(DefaultFeatures(),
            (std::vector<std::string>{"AGEP", "SCHL", "MAR", "SEX", "RAC1P", "DIS", "CIT",
                                      "NATIVITY", "MIL", "DREM"}));
  for (const std::string& f : DefaultFeatures()) {
    EXPECT_TRUE(ValidateFeatureName(f).ok()) << f;
  }
}

TEST(PumsSchemaTest, RequiredVariablesArePresent) {
  for (const char* name :
       {"SERIALNO", "SPORDER", "ST", "STATE", "PUMA", "PWGTP", "AGEP", "SEX", "MAR", "SCHL",
        "RAC1P", "HISP", "CIT", "NATIVITY", "MIL", "DIS", "DEAR", "DEYE", "DREM", "ESR", "WKHP",
        "COW", "RELSHIPP"}) {
    EXPECT_NE(FindVariable(name), nullptr) << name;
  }
  EXPECT_EQ(FindVariable("STATE"), FindVariable("ST"));
  EXPECT_EQ(FindVariable(" agep "), FindVariable("AGEP"));
  EXPECT_EQ(FindVariable("NOPE"), nullptr);
}

TEST(PumsSchemaTest, UnknownFeatureIsNotFoundAndListsKnownOnes) {
  const absl::Status s = ValidateFeatureName("XYZ");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("unknown PUMS feature 'XYZ'; known: "));
  EXPECT_THAT(s.message(), HasSubstr("AGEP"));
  // Only usable features are listed as known.
  EXPECT_THAT(s.message(), ::testing::Not(HasSubstr("SERIALNO")));
}

TEST(PumsSchemaTest, NonFeaturesAreRejectedWithAReason) {
  const absl::Status esr = ValidateFeatureName("ESR");
  EXPECT_EQ(esr.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(esr.message(), HasSubstr("label"));
  EXPECT_EQ(ValidateFeatureName("SERIALNO").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateFeatureName("SPORDER").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateFeatureName("PUMA").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateFeatureName("PWGTP").code(), absl::StatusCode::kInvalidArgument);
  const absl::Status cow = ValidateFeatureName("COW");
  EXPECT_EQ(cow.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cow.message(), HasSubstr("leaks"));
  EXPECT_EQ(ValidateFeatureName("WKHP").code(), absl::StatusCode::kInvalidArgument);
}

TEST(PumsSchemaTest, CanonicalNamesResolveAliases) {
  auto st = CanonicalFeatureName("state");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(*st, "ST");
  auto agep = CanonicalFeatureName("agep");
  ASSERT_TRUE(agep.ok());
  EXPECT_EQ(*agep, "AGEP");
}

TEST(PumsSchemaTest, DictionaryCodes) {
  EXPECT_EQ(FindVariable("SCHL")->codes.size(), 24u);
  EXPECT_EQ(FindVariable("MAR")->codes.size(), 5u);
  EXPECT_EQ(FindVariable("RAC1P")->codes.size(), 9u);
  EXPECT_EQ(FindVariable("HISP")->codes.size(), 24u);
  EXPECT_EQ(FindVariable("CIT")->codes.size(), 5u);
  EXPECT_EQ(FindVariable("MIL")->codes.size(), 4u);
  EXPECT_EQ(FindVariable("ESR")->codes, (std::vector<int>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(FindVariable("RELSHIPP")->codes.front(), 20);
  EXPECT_EQ(FindVariable("RELSHIPP")->codes.back(), 38);
  EXPECT_EQ(FindVariable("ST")->codes.size(), 52u);  // 50 states, DC, PR
  const PumsVariable* agep = FindVariable("AGEP");
  EXPECT_EQ(agep->kind, VarKind::kNumeric);
  EXPECT_EQ(agep->min_value, 0);
  EXPECT_EQ(agep->max_value, 99);
  EXPECT_EQ(FindVariable("SCHL")->CodeIndex(16), 15);
  EXPECT_EQ(FindVariable("SCHL")->CodeIndex(25), -1);
  EXPECT_EQ(FindVariable("ST")->CodeIndex(3), -1);  // 03 is not a FIPS state code
}

TEST(PumsSchemaTest, BlanksFollowTheDictionary) {
  for (const char* blankable : {"MIL", "SCHL", "ESR", "DREM", "DPHY", "DDRS", "DOUT", "LANX",
                                "ENG", "FER", "COW", "WKHP"}) {
    EXPECT_TRUE(FindVariable(blankable)->blank_allowed()) << blankable;
  }
  for (const char* never_blank :
       {"AGEP", "SEX", "MAR", "RAC1P", "HISP", "CIT", "NATIVITY", "DIS", "DEAR", "DEYE", "ST"}) {
    EXPECT_FALSE(FindVariable(never_blank)->blank_allowed()) << never_blank;
  }
  EXPECT_THAT(FindVariable("MIL")->blank_meaning, HasSubstr("under 17"));
  EXPECT_THAT(FindVariable("ESR")->blank_meaning, HasSubstr("under 16"));
  EXPECT_THAT(FindVariable("SCHL")->blank_meaning, HasSubstr("under 3"));
  EXPECT_THAT(FindVariable("DREM")->blank_meaning, HasSubstr("under 5"));
}

TEST(PumsSchemaTest, VariablesAreWellFormedAndInFileOrder) {
  std::set<std::string> names;
  for (const PumsVariable& v : PumsVariables()) {
    EXPECT_TRUE(names.insert(v.name).second) << "duplicate " << v.name;
    if (v.kind == VarKind::kCategorical) {
      ASSERT_FALSE(v.codes.empty()) << v.name;
      for (size_t i = 1; i < v.codes.size(); ++i) EXPECT_LT(v.codes[i - 1], v.codes[i]) << v.name;
    } else if (v.kind == VarKind::kNumeric) {
      EXPECT_LT(v.min_value, v.max_value) << v.name;
    } else {
      EXPECT_NE(v.feature_use, FeatureUse::kAllowed) << v.name;
    }
  }
  // The identification block comes first, in the census person-file order.
  const std::vector<std::string> head = {"RT",     "SERIALNO", "DIVISION", "SPORDER", "PUMA",
                                         "REGION", "ST",       "PWGTP",    "AGEP"};
  for (size_t i = 0; i < head.size(); ++i) EXPECT_EQ(PumsVariables()[i].name, head[i]);
}

}  // namespace
}  // namespace dpfleet::data
