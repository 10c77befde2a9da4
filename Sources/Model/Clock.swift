import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Monotonic seconds (`CLOCK_MONOTONIC`): the one clock of step timings, timelines and
/// watchdogs, in every target.
@inline(__always) public func now() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
