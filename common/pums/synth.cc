#include "common/pums/synth.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace dpfleet::data {
namespace {

// ---------------------------------------------------------------------------
// Randomness. xoshiro256** seeded through splitmix64: fast, and unlike the
// std:: distributions its output is specified exactly, so the bytes written
// for a seed are the same with every standard library.
uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    uint64_t sm = seed;
    for (uint64_t& s : s_) s = SplitMix64(sm);
  }
  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  bool Bernoulli(double p) { return Uniform() < p; }
  // Uniform integer in [lo, hi] (inclusive); lo <= hi. Multiply-shift keeps
  // the result exact and portable (the bias is < 2^-32 for our small ranges).
  int Int(int lo, int hi) {
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int>(((Next() >> 32) * span) >> 32);
  }
  // Approximate standard normal (Irwin-Hall with 4 uniforms): portable, no
  // libm, and good enough for jitter.
  double Normalish() {
    return (Uniform() + Uniform() + Uniform() + Uniform() - 2.0) * 1.7320508075688772;
  }
  // Index drawn from unnormalised weights.
  template <size_t N>
  int Pick(const double (&weights)[N]) {
    double total = 0;
    for (double w : weights) total += w;
    double u = Uniform() * total;
    for (size_t i = 0; i < N; ++i) {
      if (u < weights[i]) return static_cast<int>(i);
      u -= weights[i];
    }
    return static_cast<int>(N - 1);
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

double Logistic(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Piecewise-linear interpolation through (x, y) knots, clamped at the ends.
template <size_t N>
double Interp(const double (&xs)[N], const double (&ys)[N], double x) {
  if (x <= xs[0]) return ys[0];
  for (size_t i = 1; i < N; ++i) {
    if (x <= xs[i]) {
      const double t = (x - xs[i - 1]) / (xs[i] - xs[i - 1]);
      return ys[i - 1] + t * (ys[i] - ys[i - 1]);
    }
  }
  return ys[N - 1];
}

// ---------------------------------------------------------------------------
// Geography: FIPS, census region and division (Census Bureau regions and
// divisions of the United States), and 2020 census population in millions
// (used as mixing weights and to size the number of PUMAs, ~1 per 100k).
struct StateInfo {
  int fips;
  int region;
  int division;
  double population_m;
};

constexpr StateInfo kStates[] = {
    {1, 3, 6, 5.02},   {2, 4, 9, 0.73},   {4, 4, 8, 7.15},   {5, 3, 7, 3.01},
    {6, 4, 9, 39.54},  {8, 4, 8, 5.77},   {9, 1, 1, 3.61},   {10, 3, 5, 0.99},
    {11, 3, 5, 0.69},  {12, 3, 5, 21.54}, {13, 3, 5, 10.71}, {15, 4, 9, 1.46},
    {16, 4, 8, 1.84},  {17, 2, 3, 12.81}, {18, 2, 3, 6.79},  {19, 2, 4, 3.19},
    {20, 2, 4, 2.94},  {21, 3, 6, 4.51},  {22, 3, 7, 4.66},  {23, 1, 1, 1.36},
    {24, 3, 5, 6.18},  {25, 1, 1, 7.03},  {26, 2, 3, 10.08}, {27, 2, 4, 5.71},
    {28, 3, 6, 2.96},  {29, 2, 4, 6.15},  {30, 4, 8, 1.08},  {31, 2, 4, 1.96},
    {32, 4, 8, 3.10},  {33, 1, 1, 1.38},  {34, 1, 2, 9.29},  {35, 4, 8, 2.12},
    {36, 1, 2, 20.20}, {37, 3, 5, 10.44}, {38, 2, 4, 0.78},  {39, 2, 3, 11.80},
    {40, 3, 7, 3.96},  {41, 4, 9, 4.24},  {42, 1, 2, 13.00}, {44, 1, 1, 1.10},
    {45, 3, 5, 5.12},  {46, 2, 4, 0.89},  {47, 3, 6, 6.91},  {48, 3, 7, 29.15},
    {49, 4, 8, 3.27},  {50, 1, 1, 0.64},  {51, 3, 5, 8.63},  {53, 4, 9, 7.71},
    {54, 3, 5, 1.79},  {55, 2, 3, 5.89},  {56, 4, 8, 0.58},
    // Puerto Rico: only when asked for explicitly (the national files leave it out).
    {72, 9, 0, 3.29},
};
constexpr int kNumMixStates = 51;  // the entries before Puerto Rico

const StateInfo* FindState(int fips) {
  for (const StateInfo& s : kStates) {
    if (s.fips == fips) return &s;
  }
  return nullptr;
}

int NumPumas(const StateInfo& s) {
  return std::max(1, static_cast<int>(std::lround(s.population_m * 10)));
}

// ---------------------------------------------------------------------------
// Output: a byte buffer flushed to a FILE* or gzFile. Integers are formatted by
// hand: snprintf per field would dominate the run time.
class Output {
 public:
  ~Output() { Close().IgnoreError(); }

  absl::Status Open(const std::string& path) {
    path_ = path;
    if (absl::EndsWith(path, ".gz")) {
      gz_ = gzopen(path.c_str(), "wb6");
      if (gz_ == nullptr) return absl::NotFoundError(absl::StrCat("cannot create '", path, "'"));
      gzbuffer(gz_, 1 << 18);
    } else {
      file_ = std::fopen(path.c_str(), "wb");
      if (file_ == nullptr) {
        return absl::NotFoundError(
            absl::StrCat("cannot create '", path, "': ", std::strerror(errno)));
      }
    }
    buf_.reserve(kFlushAt + 4096);
    return absl::OkStatus();
  }

  void Char(char c) { buf_.push_back(c); }
  void Str(const char* s) { buf_.append(s); }
  void Str(const std::string& s) { buf_.append(s); }
  void Comma() { buf_.push_back(','); }
  // Non-negative integer, zero-padded to at least `width` digits.
  void Int(int64_t v, int width = 1) {
    char tmp[24];
    int n = 0;
    uint64_t u = static_cast<uint64_t>(v);
    do {
      tmp[n++] = static_cast<char>('0' + u % 10);
      u /= 10;
    } while (u != 0);
    while (n < width) tmp[n++] = '0';
    while (n > 0) buf_.push_back(tmp[--n]);
  }
  // Field value, or an empty field when `v` < 0 (the census blank).
  void IntOrBlank(int v, int width = 1) {
    if (v >= 0) Int(v, width);
  }

  absl::Status MaybeFlush() {
    if (buf_.size() >= kFlushAt) return Flush();
    return absl::OkStatus();
  }

  absl::Status Flush() {
    if (buf_.empty()) return absl::OkStatus();
    bool ok;
    if (gz_ != nullptr) {
      ok = gzwrite(gz_, buf_.data(), static_cast<unsigned>(buf_.size())) ==
           static_cast<int>(buf_.size());
    } else {
      ok = std::fwrite(buf_.data(), 1, buf_.size(), file_) == buf_.size();
    }
    buf_.clear();
    if (!ok) return absl::InternalError(absl::StrCat("write to '", path_, "' failed"));
    return absl::OkStatus();
  }

  absl::Status Close() {
    absl::Status status = absl::OkStatus();
    if (gz_ != nullptr || file_ != nullptr) status = Flush();
    if (gz_ != nullptr) {
      if (gzclose(gz_) != Z_OK && status.ok()) {
        status = absl::InternalError(absl::StrCat("closing '", path_, "' failed"));
      }
      gz_ = nullptr;
    }
    if (file_ != nullptr) {
      if (std::fclose(file_) != 0 && status.ok()) {
        status = absl::InternalError(absl::StrCat("closing '", path_, "' failed"));
      }
      file_ = nullptr;
    }
    return status;
  }

 private:
  static constexpr size_t kFlushAt = 1 << 20;
  std::string path_;
  std::string buf_;
  FILE* file_ = nullptr;
  gzFile gz_ = nullptr;
};

// ---------------------------------------------------------------------------
// The person model. Every constant below is a rounded, published-style ACS
// aggregate (shares of persons by age, household size, schooling, marital
// status, disability, employment); none is fitted to a private file.

constexpr int kBlank = -1;

enum class GroupQuarters { kNone, kCollege, kMilitary, kCorrectional, kNursing };

struct Person {
  int age = 0;
  int sex = 1;
  int relshipp = 20;
  int mar = 5;
  GroupQuarters gq = GroupQuarters::kNone;
};

// Household-level ethnicity: members share race and Hispanic origin, and an
// immigrant household has mostly foreign-born adults.
struct Ethnicity {
  int rac1p = 1;
  int hisp = 1;
  bool immigrant_household = false;
};

Ethnicity DrawEthnicity(Rng& rng) {
  // RAC1P 1..9 shares of persons.
  static constexpr double kRace[] = {68.0, 9.6, 1.4, 0.01, 0.16, 5.1, 0.08, 5.1, 10.4};
  Ethnicity e;
  e.rac1p = 1 + rng.Pick(kRace);
  // Probability of Hispanic origin given race: most "some other race alone"
  // respondents are Hispanic.
  static constexpr double kHispGivenRace[] = {0.07, 0.03, 0.15, 0.05, 0.1, 0.01, 0.05, 0.85, 0.27};
  if (rng.Bernoulli(kHispGivenRace[e.rac1p - 1])) {
    // HISP 2..24 (Mexican, Puerto Rican, Cuban, Dominican, Central and South
    // American groups, Spaniard, all other).
    static constexpr double kOrigin[] = {
        59.0, 9.5, 3.9, 3.8, 0.4, 2.4, 0.9, 0.5, 0.5, 1.9, 0.05,  // 2..12
        0.2,  0.2, 0.4, 2.1, 0.9, 0.05, 1.3, 0.2, 0.8, 0.1,       // 13..22
        2.2,  6.2};                                               // 23, 24
    e.hisp = 2 + rng.Pick(kOrigin);
  }
  double immigrant = 0.06;
  if (e.rac1p == 6) immigrant = 0.6;
  if (e.rac1p == 2) immigrant = 0.11;
  if (e.hisp > 1) immigrant = (e.hisp == 3) ? 0.05 : 0.36;
  e.immigrant_household = rng.Bernoulli(immigrant);
  return e;
}

// Marital status by age (MAR 1 married, 2 widowed, 3 divorced, 4 separated,
// 5 never married); `allow_married` = false conditions on not married.
int DrawMar(Rng& rng, int age, bool allow_married) {
  if (age < 15) return 5;
  static constexpr int kAgeLo[] = {15, 20, 25, 35, 45, 55, 65, 75};
  static constexpr double kTable[][5] = {
      {0.010, 0.000, 0.001, 0.001, 0.988}, {0.074, 0.001, 0.003, 0.002, 0.920},
      {0.383, 0.002, 0.032, 0.011, 0.572}, {0.622, 0.005, 0.087, 0.017, 0.269},
      {0.663, 0.015, 0.144, 0.021, 0.157}, {0.655, 0.041, 0.172, 0.019, 0.113},
      {0.636, 0.105, 0.163, 0.011, 0.085}, {0.502, 0.310, 0.129, 0.007, 0.052}};
  int bin = 0;
  for (int i = 0; i < 8; ++i) {
    if (age >= kAgeLo[i]) bin = i;
  }
  double w[5];
  for (int i = 0; i < 5; ++i) w[i] = kTable[bin][i];
  if (!allow_married) w[0] = 0;
  return 1 + rng.Pick(w);
}

// Final educational attainment of an adult (SCHL 1..24), older cohorts a
// little less schooled.
int DrawAdultSchooling(Rng& rng, int age) {
  static constexpr double kSchl[] = {
      1.7, 0.03, 0.03, 0.03, 0.04, 0.08, 0.07, 0.11, 0.42, 0.15, 0.53, 0.76,  // 1..12
      0.92, 1.08, 1.8, 17.8, 4.3, 6.3, 11.3, 8.5, 26.0, 13.1, 2.7, 2.25};     // 13..24
  int schl = 1 + rng.Pick(kSchl);
  // Older cohorts: move some people one step down (graduate/bachelor -> high
  // school, high school -> 9-11th grade).
  if (age >= 65 && rng.Bernoulli(age >= 80 ? 0.3 : 0.15)) {
    if (schl >= 21) {
      schl = rng.Bernoulli(0.5) ? 16 : 19;
    } else if (schl >= 16) {
      schl = rng.Bernoulli(0.6) ? 16 : 13;
    }
  }
  return schl;
}

// SCHL for a person of `age`: blank under 3, grade progression for children,
// attainment in progress for young adults.
int DrawSchooling(Rng& rng, int age) {
  if (age < 3) return kBlank;
  if (age <= 4) return rng.Bernoulli(0.6) ? 1 : 2;  // no schooling / nursery
  if (age == 5) {
    static constexpr double kW[] = {0.27, 0.55, 0.18};
    return 1 + rng.Pick(kW);
  }
  if (age <= 16) {
    // Modal grade at age a is SCHL a-3 (age 7 -> grade 1 = SCHL 4).
    static constexpr double kShift[] = {0.22, 0.62, 0.16};
    return std::clamp(age - 3 + rng.Pick(kShift) - 1, 1, 14);
  }
  const int final_schl = DrawAdultSchooling(rng, age);
  if (age == 17) {
    static constexpr double kW[] = {0.05, 0.23, 0.6, 0.07, 0.05};  // 12..16
    return std::min(final_schl, 12 + rng.Pick(kW));
  }
  if (age >= 25) return final_schl;
  // 18..24: people headed for a degree are still in college.
  int schl = final_schl;
  if (schl >= 20) {
    const int ba_age = 22 + (schl >= 22 ? 2 : 0);
    if (schl == 20 && age < 20) schl = 19;
    if (schl >= 21 && age < ba_age - (schl >= 22 ? 2 : 0)) {
      schl = age <= 18 ? (rng.Bernoulli(0.5) ? 16 : 18) : 19;
    } else if (schl >= 22 && age < 24) {
      schl = 21;
    }
  } else if (schl >= 18 && age == 18) {
    schl = rng.Bernoulli(0.5) ? 16 : 18;
  } else if (schl >= 16 && age == 18 && rng.Bernoulli(0.3)) {
    schl = 14;
  }
  return schl;
}

struct Disability {
  int dear = 2, deye = 2, drem = 2, dphy = 2, ddrs = 2, dout = 2, dis = 2;
};

// Difficulty items by age. DIS is drawn first and the items are drawn given
// DIS (P(item | DIS) = P(item) / P(DIS)), so DIS = 1 exactly when at least one
// item is 1, as in the recode.
Disability DrawDisability(Rng& rng, int age) {
  static constexpr double kAges[] = {0, 5, 18, 35, 50, 65, 75, 85, 95};
  static constexpr double kDis[] = {0.01, 0.06, 0.095, 0.09, 0.13, 0.2, 0.33, 0.6, 0.75};
  static constexpr double kDear[] = {0.004, 0.005, 0.008, 0.014, 0.031, 0.081, 0.172, 0.323, 0.4};
  static constexpr double kDeye[] = {0.005, 0.008, 0.015, 0.015, 0.027, 0.04, 0.065, 0.147, 0.2};
  static constexpr double kDrem[] = {0.0, 0.05, 0.071, 0.056, 0.054, 0.054, 0.101, 0.249, 0.32};
  static constexpr double kDphy[] = {0.0, 0.005, 0.012, 0.028, 0.074, 0.14, 0.241, 0.486, 0.55};
  static constexpr double kDdrs[] = {0.0, 0.012, 0.01, 0.012, 0.025, 0.04, 0.07, 0.2, 0.3};
  static constexpr double kDout[] = {0.0, 0.02, 0.04, 0.035, 0.05, 0.07, 0.13, 0.35, 0.45};
  Disability d;
  d.drem = d.dphy = d.ddrs = age < 5 ? kBlank : 2;
  d.dout = age < 15 ? kBlank : 2;
  const double p_dis = Interp(kAges, kDis, age);
  if (!rng.Bernoulli(p_dis)) return d;
  d.dis = 1;
  bool any = false;
  auto item = [&](int& field, const double(&p)[9]) {
    if (field == kBlank) return;
    if (rng.Bernoulli(std::min(1.0, Interp(kAges, p, age) / p_dis))) {
      field = 1;
      any = true;
    }
  };
  item(d.dear, kDear);
  item(d.deye, kDeye);
  item(d.drem, kDrem);
  item(d.dphy, kDphy);
  item(d.ddrs, kDdrs);
  item(d.dout, kDout);
  if (!any) {
    // The recode says at least one difficulty: the most common one for the age.
    if (age < 5) {
      d.deye = 1;
    } else if (age < 50) {
      d.drem = 1;
    } else {
      d.dphy = 1;
    }
  }
  return d;
}

int DrawMil(Rng& rng, const Person& p) {
  if (p.age < 17) return kBlank;
  if (p.gq == GroupQuarters::kMilitary) return 1;
  const bool male = p.sex == 1;
  if (p.age <= 40 && rng.Bernoulli(male ? 0.009 : 0.002)) return 1;
  static constexpr double kAges[] = {17, 25, 45, 55, 65, 75, 85};
  static constexpr double kVet[] = {0.003, 0.03, 0.07, 0.10, 0.18, 0.30, 0.35};
  const double vet = Interp(kAges, kVet, p.age) * (male ? 1.0 : 0.12);
  if (rng.Bernoulli(vet)) return 2;
  if (rng.Bernoulli(p.age < 65 ? 0.008 : 0.004)) return 3;
  return 4;
}

// ESR 1..6 for age >= 16. Employment odds follow age (inverted U with
// retirement), education, disability and sex; unemployment is a share of the
// non-employed that is highest for the young and the less schooled.
int DrawEsr(Rng& rng, const Person& p, int schl, int dis, int mil) {
  if (p.age < 16) return kBlank;
  if (mil == 1) return rng.Bernoulli(0.98) ? 4 : 5;
  if (p.gq == GroupQuarters::kCorrectional || p.gq == GroupQuarters::kNursing) {
    return rng.Bernoulli(0.02) ? 1 : 6;
  }
  static constexpr double kAges[] = {16,  18,   20,   23,   27,   35,   50,   55,
                                     60,  62,   65,   67,   70,   75,   80,   90};
  static constexpr double kBase[] = {-1.1, -0.25, 0.6, 1.1, 1.4, 1.45, 1.5, 1.35,
                                     0.9,  0.45, -0.35, -0.75, -1.3, -1.9, -2.6, -3.6};
  double logit = Interp(kAges, kBase, p.age);
  if (schl <= 15) {
    logit -= p.age < 19 ? 0.1 : 0.55;
  } else if (schl <= 17) {
    logit += 0.0;
  } else if (schl <= 19) {
    logit += 0.35;
  } else if (schl == 20) {
    logit += 0.6;
  } else if (schl == 21) {
    logit += 0.95;
  } else {
    logit += 1.3;
  }
  if (dis == 1) logit -= (p.age < 25 || p.age >= 65) ? 1.2 : 1.6;
  if (p.sex == 2) logit -= p.age < 65 ? 0.4 : 0.3;
  if (p.gq == GroupQuarters::kCollege) logit -= 0.6;
  if (rng.Bernoulli(Logistic(logit))) return rng.Bernoulli(0.018) ? 2 : 1;
  static constexpr double kUAges[] = {16, 20, 25, 35, 55, 62, 65, 70};
  static constexpr double kUnemp[] = {0.07, 0.17, 0.24, 0.2, 0.1, 0.045, 0.015, 0.01};
  double u = Interp(kUAges, kUnemp, p.age);
  if (schl <= 15) u *= 1.1;
  if (schl >= 21) u *= 0.9;
  if (dis == 1) u *= 0.45;
  return rng.Bernoulli(u) ? 3 : 6;
}

// ---------------------------------------------------------------------------
// Households.

int DrawReferenceAge(Rng& rng) {
  // Householders by age: 18-24, 25-34, 35-44, 45-54, 55-64, 65-74, 75-84, 85-94.
  static constexpr double kW[] = {3.5, 11.0, 15.5, 16.5, 19.5, 20.5, 11.0, 3.5};
  const int bin = rng.Pick(kW);
  if (bin == 0) return rng.Int(18, 24);
  return rng.Int(15 + 10 * bin, 24 + 10 * bin);
}

int DrawHouseholdSize(Rng& rng, int ref_age) {
  // Persons per housing unit (1..8), by age of the householder.
  static constexpr double kYoung[] = {34, 36, 15, 9, 4, 1.3, 0.5, 0.2};
  static constexpr double kPrime[] = {24, 28, 18, 17, 8, 3.2, 1.2, 0.6};
  static constexpr double kMiddle[] = {29, 44, 14, 7.5, 3, 1.3, 0.6, 0.6};
  static constexpr double kOld[] = {42, 51, 4.5, 1.5, 0.6, 0.2, 0.1, 0.1};
  int size;
  if (ref_age < 25) {
    size = 1 + rng.Pick(kYoung);
  } else if (ref_age < 55) {
    size = 1 + rng.Pick(kPrime);
  } else if (ref_age < 65) {
    size = 1 + rng.Pick(kMiddle);
  } else {
    size = 1 + rng.Pick(kOld);
  }
  // A thin, geometric tail of very large households (up to the dictionary's 20).
  if (size == 8) {
    while (size < 20 && rng.Bernoulli(0.45)) ++size;
  }
  return size;
}

void DrawHousehold(Rng& rng, std::vector<Person>& members) {
  members.clear();
  if (rng.Bernoulli(0.12)) {
    // Group quarters: one person per SERIALNO. 12% of SERIALNOs gives ~5.4% of
    // persons, since housing units hold ~2.5 persons on average.
    Person p;
    static constexpr double kGq[] = {0.35, 0.08, 0.25, 0.32};
    switch (rng.Pick(kGq)) {
      case 0:
        p.gq = GroupQuarters::kCollege;
        p.age = rng.Int(18, 23);
        p.relshipp = 38;
        break;
      case 1:
        p.gq = GroupQuarters::kMilitary;
        p.age = rng.Int(18, 35);
        p.relshipp = 38;
        break;
      case 2:
        p.gq = GroupQuarters::kCorrectional;
        p.age = rng.Int(19, 64);
        p.relshipp = 37;
        break;
      default:
        p.gq = GroupQuarters::kNursing;
        p.age = rng.Int(65, 95);
        p.relshipp = 37;
        break;
    }
    const double male = p.gq == GroupQuarters::kCorrectional ? 0.9
                        : p.gq == GroupQuarters::kMilitary   ? 0.8
                        : p.gq == GroupQuarters::kNursing    ? 0.35
                                                             : 0.45;
    p.sex = rng.Bernoulli(male) ? 1 : 2;
    p.mar = DrawMar(rng, p.age, p.gq == GroupQuarters::kNursing);
    members.push_back(p);
    return;
  }
  Person ref;
  ref.age = DrawReferenceAge(rng);
  ref.sex = rng.Bernoulli(0.5) ? 1 : 2;
  ref.relshipp = 20;
  const int size = DrawHouseholdSize(rng, ref.age);
  static constexpr double kCoupleAges[] = {18, 25, 35, 65, 80};
  static constexpr double kCouple[] = {0.1, 0.45, 0.72, 0.78, 0.6};
  const bool couple = size >= 2 && rng.Bernoulli(Interp(kCoupleAges, kCouple, ref.age));
  ref.mar = couple ? 1 : DrawMar(rng, ref.age, /*allow_married=*/size == 1 && ref.age >= 25 &&
                                                   rng.Bernoulli(0.08));
  members.push_back(ref);
  if (couple) {
    Person spouse;
    spouse.age = std::clamp(ref.age + static_cast<int>(std::lround(3.0 * rng.Normalish())), 18, 95);
    const bool same_sex = rng.Bernoulli(0.015);
    spouse.sex = same_sex ? ref.sex : 3 - ref.sex;
    spouse.relshipp = same_sex ? 23 : 21;
    spouse.mar = 1;
    members.push_back(spouse);
  } else if (size >= 2 && ref.age < 65 && rng.Bernoulli(0.3)) {
    Person partner;
    partner.age = std::clamp(ref.age + static_cast<int>(std::lround(4.0 * rng.Normalish())), 18, 95);
    const bool same_sex = rng.Bernoulli(0.05);
    partner.sex = same_sex ? ref.sex : 3 - ref.sex;
    partner.relshipp = same_sex ? 24 : 22;
    partner.mar = DrawMar(rng, partner.age, false);
    members.push_back(partner);
  }
  while (static_cast<int>(members.size()) < size) {
    Person p;
    p.sex = rng.Bernoulli(0.51) ? 1 : 2;
    const double u = rng.Uniform();
    if (ref.age >= 45 && u < 0.12) {
      p.relshipp = 30;  // grandchild
      p.age = rng.Int(0, 17);
    } else if (u < 0.2 && ref.age < 70) {
      static constexpr double kOther[] = {0.25, 0.2, 0.25, 0.2, 0.1};  // 28 29 33 34 36
      static constexpr int kRel[] = {28, 29, 33, 34, 36};
      p.relshipp = kRel[rng.Pick(kOther)];
      if (p.relshipp == 29) {
        p.age = std::min(95, ref.age + rng.Int(20, 35));
      } else if (p.relshipp == 28) {
        p.age = std::clamp(ref.age + rng.Int(-8, 8), 0, 95);
      } else {
        p.age = rng.Int(p.relshipp == 33 ? 0 : 18, 60);
      }
    } else {
      static constexpr double kChild[] = {0.88, 0.03, 0.09};  // 25 26 27
      p.relshipp = 25 + rng.Pick(kChild);
      // Children are born when the householder is 20..42; older children of
      // older householders are adults living at home.
      const int gap = 20 + rng.Int(0, 10) + rng.Int(0, 10);
      p.age = ref.age - gap;
      if (p.age < 0) p.age = rng.Int(0, std::max(0, ref.age - 20));
      if (p.age > 40) p.age = rng.Int(18, 40);
    }
    p.mar = DrawMar(rng, p.age, p.relshipp != 25 && p.relshipp != 26 && p.relshipp != 27 &&
                                    p.relshipp != 30);
    members.push_back(p);
  }
}

}  // namespace

std::vector<std::string> SyntheticPumsColumns(const SynthOptions& options) {
  // A subset of the ACS person-file columns, in the person-file order:
  // identification/geography, then person variables alphabetically, then the
  // recodes alphabetically (ADJINC and the items dpfleet does not model are
  // left out), then the filler tail (allocation flags, replicate weights).
  std::vector<std::string> columns = {"RT",   "SERIALNO", "DIVISION", "SPORDER", "PUMA", "REGION", options.state_column,
          "PWGTP", "AGEP",    "CIT",      "COW",     "DDRS", "DEAR",   "DEYE",
          "DOUT", "DPHY",     "DREM",     "ENG",     "FER",  "LANX",   "MAR",
          "MIL",  "RELSHIPP", "SCHL",     "SEX",     "WKHP", "DIS",    "ESR",
          "HICOV", "HISP",    "NATIVITY", "PRIVCOV", "PUBCOV", "RAC1P"};
  const int fillers = std::max(0, options.filler_columns);
  const int weights = std::min(fillers, 80);
  for (int i = 1; i <= fillers - weights; ++i) {
    char name[16];
    std::snprintf(name, sizeof(name), "FX%03dP", i);
    columns.push_back(name);
  }
  for (int i = 1; i <= weights; ++i) columns.push_back(absl::StrCat("PWGTP", i));
  return columns;
}

absl::Status WriteSyntheticPums(const SynthOptions& options, const std::string& path) {
  if (options.rows < 0) {
    return absl::InvalidArgumentError(absl::StrCat("synthetic rows must be >= 0, got ", options.rows));
  }
  if (options.filler_columns < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("filler_columns must be >= 0, got ", options.filler_columns));
  }
  if (options.state_column != "STATE" && options.state_column != "ST") {
    return absl::InvalidArgumentError(absl::StrCat("state_column must be 'STATE' or 'ST', got '",
                                                   options.state_column, "'"));
  }
  const StateInfo* fixed_state = nullptr;
  if (options.state_fips != 0) {
    fixed_state = FindState(options.state_fips);
    if (fixed_state == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown state FIPS code ", options.state_fips,
                       " (50 states, DC = 11, PR = 72; 0 = mix)"));
    }
  }
  double mix_weights[kNumMixStates];
  for (int i = 0; i < kNumMixStates; ++i) mix_weights[i] = kStates[i].population_m;

  Output out;
  RETURN_IF_ERROR(out.Open(path));
  out.Str(absl::StrJoin(SyntheticPumsColumns(options), ","));
  out.Char('\n');

  Rng rng(options.seed);
  // Filler values come from their own stream so that the modelled columns
  // are the same bytes with or without fillers.
  Rng filler_rng(options.seed ^ 0x5bd1e9955bd1e995ULL);
  const int filler_weights = std::min(options.filler_columns, 80);
  const int filler_flags = options.filler_columns - filler_weights;
  std::vector<Person> members;
  members.reserve(32);
  int64_t written = 0;
  int64_t hu_serial = 0;
  int64_t gq_serial = 0;
  while (written < options.rows) {
    DrawHousehold(rng, members);
    const bool gq = members.front().gq != GroupQuarters::kNone;
    int64_t& serial = gq ? gq_serial : hu_serial;
    serial += rng.Int(1, 3);  // gaps, as in real files
    const StateInfo& state = fixed_state != nullptr ? *fixed_state : kStates[rng.Pick(mix_weights)];
    const int puma = 100 * rng.Int(1, NumPumas(state));
    const Ethnicity eth = DrawEthnicity(rng);
    // Person weights cluster around the household's weight (~1% sample).
    const double household_weight = std::exp(std::log(90.0) + 0.55 * rng.Normalish());

    for (size_t k = 0; k < members.size() && written < options.rows; ++k, ++written) {
      const Person& p = members[k];
      const int pwgtp = std::clamp(
          static_cast<int>(std::lround(household_weight * std::exp(0.2 * rng.Normalish()))), 1,
          9999);
      // Nativity and citizenship.
      bool foreign;
      if (eth.immigrant_household) {
        foreign = rng.Bernoulli(p.age >= 18 ? 0.88 : 0.25);
      } else {
        foreign = rng.Bernoulli(p.age >= 18 ? 0.02 : 0.01);
      }
      int cit;
      if (foreign) {
        const double naturalized = std::min(0.8, 0.15 + 0.009 * p.age);
        cit = rng.Bernoulli(naturalized) ? 4 : 5;
      } else if (eth.hisp == 3 && p.age >= 18 && rng.Bernoulli(0.45)) {
        cit = 2;  // born in Puerto Rico
      } else {
        static constexpr double kNative[] = {0.978, 0.004, 0.018};
        cit = 1 + rng.Pick(kNative);
      }
      // Language.
      int lanx = kBlank, eng = kBlank;
      if (p.age >= 5) {
        double other_language = 0.05;
        if (foreign) {
          other_language = 0.85;
        } else if (eth.hisp > 1) {
          other_language = 0.5;
        } else if (eth.rac1p == 6) {
          other_language = 0.3;
        }
        lanx = rng.Bernoulli(other_language) ? 1 : 2;
        if (lanx == 1) {
          static constexpr double kForeign[] = {0.45, 0.25, 0.2, 0.1};
          static constexpr double kNativeEng[] = {0.85, 0.11, 0.03, 0.01};
          eng = 1 + (foreign ? rng.Pick(kForeign) : rng.Pick(kNativeEng));
        }
      }
      const int schl = DrawSchooling(rng, p.age);
      const Disability d = DrawDisability(rng, p.age);
      const int mil = DrawMil(rng, p);
      const int esr = DrawEsr(rng, p, schl, d.dis, mil);
      // Fertility: women 15..50.
      int fer = kBlank;
      if (p.sex == 2 && p.age >= 15 && p.age <= 50) {
        static constexpr double kAges[] = {15, 20, 25, 30, 35, 40, 45, 50};
        static constexpr double kBirth[] = {0.01, 0.05, 0.085, 0.1, 0.06, 0.02, 0.004, 0.001};
        fer = rng.Bernoulli(Interp(kAges, kBirth, p.age) * (p.mar == 1 ? 1.4 : 0.7)) ? 1 : 2;
      }
      // Work items (leak ESR; only in the file for realism).
      int cow = kBlank, wkhp = kBlank;
      if (esr != kBlank) {
        const bool employed = esr == 1 || esr == 2 || esr == 4 || esr == 5;
        const bool worked_past_year = employed || (esr == 3 && rng.Bernoulli(0.6)) ||
                                      (esr == 6 && rng.Bernoulli(p.age < 65 ? 0.18 : 0.05));
        const bool has_class = worked_past_year || (esr == 3 && rng.Bernoulli(0.5)) ||
                               (esr == 6 && rng.Bernoulli(0.2));
        if (esr == 4 || esr == 5) {
          cow = 5;  // federal government
        } else if (has_class) {
          static constexpr double kCow[] = {66, 8.5, 6.5, 4.2, 2.8, 6.2, 4, 0.3};
          cow = 1 + rng.Pick(kCow);
        } else if (esr == 3) {
          cow = 9;  // unemployed, no work in the last 5 years
        }
        if (worked_past_year) {
          if (employed && rng.Bernoulli(0.55)) {
            wkhp = 40;
          } else {
            wkhp = std::clamp(static_cast<int>(std::lround(35 + 12 * rng.Normalish())), 1, 99);
          }
        }
      }
      // Health coverage.
      const bool employed = esr == 1 || esr == 2 || esr == 4 || esr == 5;
      double pub = 0.15;
      if (p.age >= 65) {
        pub = 0.97;
      } else if (p.age < 19) {
        pub = 0.38;
      } else if (d.dis == 1) {
        pub = 0.5;
      } else if (schl != kBlank && schl <= 15) {
        pub = 0.35;
      }
      const int pubcov = rng.Bernoulli(pub) ? 1 : 2;
      const int privcov = rng.Bernoulli(employed ? 0.8 : (p.age >= 65 ? 0.6 : 0.5)) ? 1 : 2;
      const int hicov = (pubcov == 1 || privcov == 1) ? 1 : 2;

      out.Char('P');
      out.Comma();
      out.Str("2024");
      out.Str(gq ? "GQ" : "HU");
      out.Int(serial, 7);
      out.Comma();
      out.Int(state.division);
      out.Comma();
      out.Int(static_cast<int64_t>(k) + 1);
      out.Comma();
      out.Int(puma, 5);
      out.Comma();
      out.Int(state.region);
      out.Comma();
      out.Int(state.fips, 2);
      out.Comma();
      out.Int(pwgtp);
      out.Comma();
      out.Int(p.age);
      out.Comma();
      out.Int(cit);
      out.Comma();
      out.IntOrBlank(cow);
      out.Comma();
      out.IntOrBlank(d.ddrs);
      out.Comma();
      out.Int(d.dear);
      out.Comma();
      out.Int(d.deye);
      out.Comma();
      out.IntOrBlank(d.dout);
      out.Comma();
      out.IntOrBlank(d.dphy);
      out.Comma();
      out.IntOrBlank(d.drem);
      out.Comma();
      out.IntOrBlank(eng);
      out.Comma();
      out.IntOrBlank(fer);
      out.Comma();
      out.IntOrBlank(lanx);
      out.Comma();
      out.Int(p.mar);
      out.Comma();
      out.IntOrBlank(mil);
      out.Comma();
      out.Int(p.relshipp);
      out.Comma();
      out.IntOrBlank(schl, 2);  // SCHL is a 2-character code in census files
      out.Comma();
      out.Int(p.sex);
      out.Comma();
      out.IntOrBlank(wkhp);
      out.Comma();
      out.Int(d.dis);
      out.Comma();
      out.IntOrBlank(esr);
      out.Comma();
      out.Int(hicov);
      out.Comma();
      out.Int(eth.hisp, 2);  // HISP is a 2-character code too
      out.Comma();
      out.Int(foreign ? 2 : 1);
      out.Comma();
      out.Int(privcov);
      out.Comma();
      out.Int(pubcov);
      out.Comma();
      out.Int(eth.rac1p);
      for (int f = 0; f < filler_flags; ++f) {
        out.Comma();
        out.Int(filler_rng.Bernoulli(0.05) ? 1 : 0);
      }
      for (int f = 0; f < filler_weights; ++f) {
        out.Comma();
        out.Int(static_cast<int64_t>(pwgtp * (0.5 + filler_rng.Uniform())));
      }
      out.Char('\n');
      RETURN_IF_ERROR(out.MaybeFlush());
    }
  }
  return out.Close();
}

}  // namespace dpfleet::data
