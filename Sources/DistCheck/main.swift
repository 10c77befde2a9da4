// DistCheck: run under `mpirun -np N DistCheck` (or alone as a world of one). Exercises
// every collective of `Dist.Communicator` with rank-dependent data, compares with the
// analytically expected values, prints one line per check per rank
//   rank R/N PASS name            or            rank R/N FAIL name: detail
// and exits 0 only if every check passed on this rank (mpirun then exits non-zero if any
// rank failed). Tests/DistTests runs it and expects the check names listed there.

import CMPI
import Dist
import Foundation
import Model

setvbuf(stdout, nil, _IOLBF, 0)

let world: Communicator
do {
  world = try Communicator.world()
} catch {
  print("FAIL world: \(error)")
  exit(2)
}
let r = world.rank
let n = world.size

// `DistCheck abort-rank R`: rank R calls `abort(code: 7)` while the others wait in a
// barrier; mpirun must end every rank and exit non-zero instead of hanging.
let arguments = CommandLine.arguments.dropFirst()
if arguments.first == "abort-rank", let victim = arguments.dropFirst().first.flatMap({ Int($0) }) {
  if r == victim {
    print("rank \(r)/\(n) aborting")
    world.abort(code: 7)
  }
  try? world.barrier()
  print("rank \(r)/\(n) passed a barrier that rank \(victim) never entered")
  exit(0)
}
var failures: [String] = []

/// Runs one check; `body` returns nil when it passed, or what went wrong.
func check(_ name: String, _ body: () throws -> String?) {
  let problem: String?
  do { problem = try body() } catch { problem = "threw \(error)" }
  if let problem {
    failures.append(name)
    print("rank \(r)/\(n) FAIL \(name): \(problem)")
  } else {
    print("rank \(r)/\(n) PASS \(name)")
  }
}

/// The first index where `got` differs from `expected(i)`, described; nil if none.
func mismatch<T: Equatable>(_ got: [T], _ expected: (Int) -> T) -> String? {
  for i in got.indices where got[i] != expected(i) {
    return "index \(i): got \(got[i]), expected \(expected(i))"
  }
  return nil
}

let triangle = n * (n - 1) / 2  // Σ rank
let otherRoot = n > 1 ? 1 : 0

check("identity") {
  if !(0..<n).contains(r) { return "rank \(r) outside 0..<\(n)" }
  let env = ProcessInfo.processInfo.environment
  if let s = env["OMPI_COMM_WORLD_SIZE"], Int(s) != n { return "size \(n), launcher says \(s)" }
  if let s = env["OMPI_COMM_WORLD_RANK"], Int(s) != r { return "rank \(r), launcher says \(s)" }
  return nil
}

check("local-rank") {
  let env = ProcessInfo.processInfo.environment
  if let s = env["OMPI_COMM_WORLD_LOCAL_RANK"], Int(s) != world.localRank {
    return "localRank \(world.localRank), launcher says \(s)"
  }
  if let s = env["OMPI_COMM_WORLD_LOCAL_SIZE"], Int(s) != world.localSize {
    return "localSize \(world.localSize), launcher says \(s)"
  }
  if !(0..<world.localSize).contains(world.localRank) { return "localRank outside localSize" }
  return nil
}

check("node-count") {
  // Count distinct processor names at rank 0 and share the count.
  let names = try world.gatherVariable(bytes: Array(world.processorName.utf8), root: 0)
  var distinct = Int64(names.map { Set($0).count } ?? 0)
  distinct = try world.allReduce(distinct, op: .max)
  if world.processorName.isEmpty { return "empty processor name" }
  if Int(distinct) != world.nodeCount {
    return "nodeCount \(world.nodeCount), \(distinct) host names"
  }
  if world.nodeCount == 1 && world.localSize != n {
    return "one node but localSize \(world.localSize)"
  }
  return nil
}

check("allreduce-sum-float") {
  var x = (0..<1000).map { Float(r + $0) }
  try world.allReduce(&x, count: x.count, op: .sum)
  return mismatch(x) { Float(triangle + n * $0) }
}

check("allreduce-average-float") {
  var x = (0..<1000).map { Float(2 * r + $0) }
  try world.allReduce(&x, count: x.count, op: .average)
  return mismatch(x) { Float(n - 1 + $0) }  // mean of 2r is n − 1
}

check("allreduce-max-min-float") {
  var hi = (0..<100).map { Float(r - $0) }
  var lo = hi
  try world.allReduce(&hi, count: hi.count, op: .max)
  try world.allReduce(&lo, count: lo.count, op: .min)
  return mismatch(hi) { Float(n - 1 - $0) } ?? mismatch(lo) { Float(-$0) }
}

check("allreduce-sum-max-double") {
  var x = (0..<100).map { Double(r) * 0.5 + Double($0) }
  var m = x
  try world.allReduce(&x, count: x.count, op: .sum)
  try world.allReduce(&m, count: m.count, op: .max)
  return mismatch(x) { Double(triangle) * 0.5 + Double(n * $0) }
    ?? mismatch(m) { Double(n - 1) * 0.5 + Double($0) }
}

check("allreduce-sum-max-int64") {
  let big = Int64(1) << 40
  var x = (0..<100).map { Int64(r) * big + Int64($0) }
  var m = x
  try world.allReduce(&x, count: x.count, op: .sum)
  try world.allReduce(&m, count: m.count, op: .max)
  return mismatch(x) { Int64(triangle) * big + Int64(n * $0) }
    ?? mismatch(m) { Int64(n - 1) * big + Int64($0) }
}

check("allreduce-large-float") {
  // 12 MB: large enough for the shared-memory transport's single-copy path.
  let count = 3_000_000
  var x = (0..<count).map { Float(r + $0 % 7) }
  try world.allReduce(&x, count: count, op: .sum)
  return mismatch(x) { Float(triangle + n * ($0 % 7)) }
}

check("collective-protocol") {
  let c: Collective = world
  var f: [Float] = [Float(r), 1]
  var d: [Double] = [Double(r), 1]
  try c.allReduceSum(&f, count: 2)
  try c.allReduceSum(&d, count: 2)
  var gathered = [Float](repeating: -1, count: n)
  let mine = [Float(r)]
  try c.allGather(mine, count: 1, into: &gathered)
  return mismatch(f) { $0 == 0 ? Float(triangle) : Float(n) }
    ?? mismatch(d) { $0 == 0 ? Double(triangle) : Double(n) }
    ?? mismatch(gathered) { Float($0) }
}

check("allgather") {
  let count = 5
  let send = (0..<count).map { Float(r * 100 + $0) }
  var recv = [Float](repeating: -1, count: n * count)
  try world.allGather(send, count: count, into: &recv)
  return mismatch(recv) { Float(($0 / count) * 100 + $0 % count) }
}

check("allgather-in-place") {
  let count = 3
  var recv = [Float](repeating: -1, count: n * count)
  for j in 0..<count { recv[r * count + j] = Float(r * 10 + j) }
  try recv.withUnsafeMutableBufferPointer { buffer in
    let base = buffer.baseAddress!
    try world.allGather(base + r * count, count: count, into: base)
  }
  return mismatch(recv) { Float(($0 / count) * 10 + $0 % count) }
}

check("broadcast-float") {
  var x = [Float](repeating: -1, count: 50)
  if r == otherRoot { x = (0..<50).map { Float($0) * 0.5 + 7 } }
  try world.broadcast(&x, count: x.count, from: otherRoot)
  return mismatch(x) { Float($0) * 0.5 + 7 }
}

check("broadcast-bytes") {
  var x = [UInt8](repeating: 0, count: 300)
  if r == otherRoot { x = (0..<300).map { UInt8($0 % 251) } }
  try world.broadcast(&x, count: x.count, from: otherRoot)
  let empty = try world.broadcast(bytes: [], from: otherRoot)
  return mismatch(x) { UInt8($0 % 251) }
    ?? (empty.isEmpty ? nil : "empty broadcast gave \(empty.count) bytes")
}

check("broadcast-string") {
  let sent = "config from rank \(otherRoot): lr=0.3 ✓ ünïcode"
  let got = try world.broadcast(string: r == otherRoot ? sent : "ignored", from: otherRoot)
  return got == sent ? nil : "got \"\(got)\""
}

check("gather") {
  let root = n - 1
  let count = 4
  let send = (0..<count).map { Float(r * 10 + $0) }
  var recv = [Float](repeating: -1, count: r == root ? n * count : 0)
  if r == root {
    try world.gather(send, count: count, into: &recv, root: root)
    return mismatch(recv) { Float(($0 / count) * 10 + $0 % count) }
  }
  try world.gather(send, count: count, into: nil, root: root)
  return nil
}

check("gather-variable") {
  // Rank q sends 3q bytes of value q: rank 0 sends nothing.
  let got = try world.gatherVariable(bytes: [UInt8](repeating: UInt8(r), count: 3 * r), root: 0)
  if r != 0 { return got == nil ? nil : "non-root received \(got!.count) parts" }
  guard let got else { return "root received nil" }
  if got.count != n { return "\(got.count) parts for \(n) ranks" }
  for q in 0..<n where got[q] != [UInt8](repeating: UInt8(q), count: 3 * q) {
    return "rank \(q)'s part is \(got[q])"
  }
  return nil
}

check("iallreduce") {
  var x = (0..<10_000).map { Float(r + $0 % 13) }
  let polls = try world.withIAllReduce(&x, count: x.count, op: .sum) { request -> Int in
    var polls = 0
    while try !request.test() { polls += 1 }
    return polls
  }
  _ = polls
  return mismatch(x) { Float(triangle + n * ($0 % 13)) }
}

check("iallreduce-buckets") {
  // Three buckets of one flat buffer, issued in index order, averaged at scope exit.
  let count = 9_000
  var grads = (0..<count).map { Float(2 * r + $0 % 5) }
  try grads.withUnsafeMutableBufferPointer { buffer in
    let base = buffer.baseAddress!
    try world.withRequests { scope in
      for bucket in 0..<3 {
        _ = try scope.iAllReduce(base + bucket * 3_000, count: 3_000, op: .average)
      }
    }
  }
  return mismatch(grads) { Float(n - 1 + $0 % 5) }
}

check("barrier") {
  try world.barrier()
  return nil
}

check("invalid-root-throws") {
  var x: Float = 0
  do {
    try world.broadcast(&x, count: 1, from: n)
    return "broadcast from root \(n) did not throw"
  } catch let error as MPIError {
    if error.call != "MPI_Bcast" { return "error names \(error.call)" }
    if error.errorClass != cmpi_err_root() { return "error class \(error.errorClass): \(error)" }
    if error.message.isEmpty || !"\(error)".contains(error.message) {
      return "description lacks MPI's string: \(error)"
    }
    print("rank \(r)/\(n) note: \(error)")
    return nil
  }
}

check("usable-after-error") {
  var x: [Float] = [Float(r)]
  try world.allReduce(&x, count: 1, op: .sum)
  return x[0] == Float(triangle) ? nil : "got \(x[0])"
}

do {
  try world.finalize()
} catch {
  print("rank \(r)/\(n) FAIL finalize: \(error)")
  exit(1)
}
if failures.isEmpty {
  print("rank \(r)/\(n) DONE all checks passed")
  exit(0)
}
print("rank \(r)/\(n) DONE failed: \(failures.joined(separator: ", "))")
exit(1)
