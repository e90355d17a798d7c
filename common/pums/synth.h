// Synthetic ACS PUMS person files for tests, benchmarks and demos.
//
// Writes a CSV that looks like a 2024 ACS 1-year PUMS person file: a subset of
// the real columns in the real column order, real codes, blanks exactly where
// the Census leaves a variable blank (ESR under 16, MIL under 17, SCHL under 3,
// DREM/DPHY/DDRS/LANX under 5, DOUT under 15, ...), households that share a
// SERIALNO with SPORDER 1..k, and joint distributions (age pyramid, schooling
// by age, marital status by age, employment by age/education/disability)
// shaped after published ACS figures so that a model has something to learn.
//
// The generator never reads real records: its parameters are fixed constants
// in synth.cc. Output is a pure function of SynthOptions (identical bytes for
// the same options on every platform), so it must never use std::random
// distributions, time, thread scheduling or locale-dependent formatting.
#ifndef DPFLEET_COMMON_PUMS_SYNTH_H_
#define DPFLEET_COMMON_PUMS_SYNTH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace dpfleet::data {

struct SynthOptions {
  int64_t rows = 0;    // person rows to write (the last household may be cut short)
  uint64_t seed = 1;
  int state_fips = 0;  // 0 = mix of the 50 states + DC by population
  // Name of the state column: "STATE" as in 2023+ files, or "ST" as in the
  // 2022 and earlier files.
  std::string state_column = "STATE";
  // Extra columns appended after the modelled ones, shaped like the tail of a
  // real person file (allocation flags "FX001P".. with 0/1 values, then up to
  // 80 replicate weights PWGTP1..PWGTP80 near the person weight), so that
  // benchmarks parse rows as wide as the real 286-column files. 0 = none; the
  // other columns' bytes do not depend on it.
  int filler_columns = 0;
};

// Writes the synthetic person file to `path` (gzip-compressed when the path
// ends in ".gz"). InvalidArgument for negative rows or filler_columns, an
// unknown state FIPS code or a bad state_column; Internal/NotFound when the file cannot be written.
absl::Status WriteSyntheticPums(const SynthOptions& options, const std::string& path);

// The header columns WriteSyntheticPums writes, in order (with the state
// column named as in `options`).
std::vector<std::string> SyntheticPumsColumns(const SynthOptions& options);

}  // namespace dpfleet::data

#endif  // DPFLEET_COMMON_PUMS_SYNTH_H_
