// The trajectory's observations in the form ToProto sends (internal to the library): the full
// form as given, or the compact form built from full-form observations (src/compact.cc).
#pragma once

#include "advantage/client.h"

namespace advantage::detail {

// Writes `in`'s observation and next_observation maps into `out` in `form` (kFull or kCompact;
// resolve kAuto with WireForm first). Throws std::invalid_argument when the compact form cannot
// be built (see CompactObservations).
void FillObservations(const TrajectoryFields& in, Form form, v1::Trajectory* out);

}  // namespace advantage::detail
