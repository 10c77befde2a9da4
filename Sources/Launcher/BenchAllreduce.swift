import ArgumentParser
import CMPI
import Dist
import Foundation
import Model
import Train

/// `parallax bench allreduce`: an osu_allreduce-style sweep that times the Communicator's
/// `allReduce` and a raw `MPI_Allreduce` on the same buffers, alternating, in one run.
///
/// Definitions as nccl-tests (PERFORMANCE.md): latency t is the mean time of one all-reduce
/// (slowest rank), algbw = bytes / t, busbw = algbw · 2(n − 1)/n.
///
/// `--nonblocking` times `MPI_Iallreduce` + wait instead (the Communicator's `iAllReduce` and
/// the raw call), which is what gradient buckets use: Open MPI runs nonblocking collectives
/// in another component (libnbc) with its own algorithms, so the two can differ in cost.
struct BenchAllreduce: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "allreduce",
    abstract: "Sweep all-reduce sizes (4 B … 64 MiB): latency, algbw, busbw; Communicator vs raw MPI.")
  @Option(help: "Smallest message in bytes.") var minBytes: Int = 4
  @Option(help: "Largest message in bytes.") var maxBytes: Int = 64 << 20
  @Option(help: "Rounds per size (each round times both paths; the median round is reported).") var rounds: Int = 5
  @Option(help: "Approximate bytes moved per timed block (sets the iterations per size).") var budgetBytes: Int = 256 << 20
  @Option(help: "Also write the table as CSV to this file (rank 0).") var csv: String?
  @Flag(help: "Time nonblocking all-reduces (MPI_Iallreduce + wait, as gradient buckets) instead of blocking ones.")
  var nonblocking = false
  @Option(help: "Sizes per doubling (1: powers of two; 2 adds the geometric midpoints, multiples of 4 bytes).")
  var perOctave: Int = 1
  @Option(help: "With --nonblocking: all-reduces in flight at once, each of the size (as buckets issued during backward); the time is for all of them.")
  var inFlight: Int = 1

  func validate() throws {
    guard minBytes >= 4, maxBytes >= minBytes, rounds >= 1 else {
      throw ValidationError("need 4 ≤ --min-bytes ≤ --max-bytes and --rounds ≥ 1")
    }
    guard (1...8).contains(perOctave) else { throw ValidationError("--per-octave must be 1…8") }
    guard inFlight >= 1, inFlight == 1 || nonblocking else {
      throw ValidationError("--in-flight must be ≥ 1, and above 1 only with --nonblocking")
    }
  }

  func run() throws {
    try withWorld { comm, console in
      let n = comm.size
      let maxCount = maxBytes / 4
      let buffer = UnsafeMutablePointer<Float>.allocate(capacity: maxCount * inFlight)
      defer { buffer.deallocate() }
      buffer.initialize(repeating: 1, count: maxCount * inFlight)
      var rows = ["bytes,count,iters,comm_us,raw_us,comm_algbw_GBps,raw_algbw_GBps,comm_busbw_GBps,raw_busbw_GBps,comm_over_raw,comm_min_us,raw_min_us,min_ratio"]
      var ratios: [(Int, Double, Double)] = []
      console.say(
        "all-reduce sweep · \(n) rank(s) · float32 sum in place · \(nonblocking ? "nonblocking (MPI_Iallreduce + wait\(inFlight > 1 ? ", \(inFlight) in flight" : ""))" : "blocking") · median of \(rounds) rounds · time = slowest rank")
      func communicator(_ count: Int) throws {
        if nonblocking {
          try comm.withRequests { scope in
            for k in 0..<inFlight { _ = try scope.iAllReduce(buffer + k * count, count: count, op: .sum) }
          }
        } else {
          try comm.allReduce(buffer, count: count, op: .sum)
        }
      }
      func raw(_ count: Int) throws {
        var code: Int32
        if nonblocking {
          var requests = [MPI_Request?](repeating: cmpi_request_null(), count: inFlight)
          code = 0
          for k in 0..<inFlight where code == 0 {
            code = MPI_Iallreduce(
              cmpi_in_place(), buffer + k * count, Int32(count), cmpi_float(), cmpi_op_sum(), cmpi_comm_world(),
              &requests[k])
          }
          for k in 0..<inFlight where code == 0 { code = MPI_Wait(&requests[k], cmpi_status_ignore()) }
        } else {
          code = MPI_Allreduce(cmpi_in_place(), buffer, Int32(count), cmpi_float(), cmpi_op_sum(), cmpi_comm_world())
        }
        if code != 0 { throw ValidationError("MPI all-reduce failed with code \(code)") }
      }
      console.say(
        String(
          format: "%12@ %10@ %7@ %11@ %11@ %9@ %9@ %9@ %9@ %8@ %8@", "bytes", "count", "iters",
          "comm µs", "raw µs", "algbw C", "algbw R", "busbw C", "busbw R", "C/R", "C/R min"))
      // minBytes · 2^(i / perOctave), rounded to whole floats, without repeats.
      var sizes: [Int] = []
      var i = 0
      while true {
        let b = Int((Double(minBytes) * pow(2, Double(i) / Double(perOctave)) / 4).rounded()) * 4
        if b > maxBytes { break }
        if b != sizes.last { sizes.append(b) }
        i += 1
      }
      for bytes in sizes {
        let count = bytes / 4
        let iters = max(1, min(1000, budgetBytes / max(bytes, 1) / 8))
        // Warm-up: both paths, so first-touch and protocol set-up are not timed.
        for _ in 0..<3 {
          try communicator(count)
          try raw(count)
        }
        var tc: [Double] = []
        var tr: [Double] = []
        for round in 0..<rounds {
          // Alternate which path goes first so neither always runs on a warmer cache.
          for path in (round % 2 == 0 ? [0, 1] : [1, 0]) {
            try comm.barrier()
            let t0 = now()
            for _ in 0..<iters {
              if path == 0 { try communicator(count) } else { try raw(count) }
            }
            let slowest = try comm.allReduce((now() - t0) / Double(iters), op: .max)
            if path == 0 { tc.append(slowest) } else { tr.append(slowest) }
          }
        }
        let c = tc.sorted()[tc.count / 2]
        let r = tr.sorted()[tr.count / 2]
        let minRatio = tc.min()! / tr.min()!
        ratios.append((bytes, c / r, minRatio))
        let factor = n > 1 ? 2 * Double(n - 1) / Double(n) : 0
        let algC = Double(bytes) / c / 1e9
        let algR = Double(bytes) / r / 1e9
        console.say(
          String(
            format: "%12d %10d %7d %11.2f %11.2f %9.3f %9.3f %9.3f %9.3f %8.3f %8.3f", bytes, count, iters,
            c * 1e6, r * 1e6, algC, algR, algC * factor, algR * factor, c / r, minRatio))
        rows.append(
          String(
            format: "%d,%d,%d,%.3f,%.3f,%.4f,%.4f,%.4f,%.4f,%.4f,%.3f,%.3f,%.4f", bytes, count, iters, c * 1e6,
            r * 1e6, algC, algR, algC * factor, algR * factor, c / r, tc.min()! * 1e6, tr.min()! * 1e6, minRatio))
      }
      let large = ratios.filter { $0.0 >= 1 << 20 }
      if !large.isEmpty {
        func geomean(_ x: [Double]) -> Double { exp(x.map { log($0) }.reduce(0, +) / Double(x.count)) }
        console.say(
          String(
            format: "≥ 1 MiB, Communicator / raw MPI_Allreduce, geometric mean over %d sizes: median rounds %.3f, fastest rounds %.3f",
            large.count, geomean(large.map(\.1)), geomean(large.map(\.2))))
      }
      if let csv, comm.rank == 0 {
        try AtomicFile.write(Foundation.Data((rows.joined(separator: "\n") + "\n").utf8), to: csv)
      }
    }
  }
}
