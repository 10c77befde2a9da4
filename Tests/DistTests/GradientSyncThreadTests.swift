import Dist
import Foundation
import XCTest

/// `GradientSync` with its communication thread, in this process (a world of one rank):
/// `timings` is read from another thread while the communication thread starts and completes
/// buckets. Every field both threads touch is under one lock, so this is race-free (run it
/// under `-sanitize=thread` to check); here the snapshots must also be consistent.
final class GradientSyncThreadTests: XCTestCase {
  func testTimingsReadWhileTheThreadRuns() throws {
    // The world is created once per process; if an earlier test made it without
    // MPI_THREAD_MULTIPLE, run just this test again in a fresh process of the test bundle.
    guard let world = try? Communicator.world(threadLevel: .multiple) else {
      let p = Process()
      p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
      p.arguments = ["DistTests.GradientSyncThreadTests/testTimingsReadWhileTheThreadRuns"]
      let out = Pipe()
      p.standardOutput = out
      p.standardError = out
      try p.run()
      let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      p.waitUntilExit()
      XCTAssertEqual(p.terminationStatus, 0, text)
      XCTAssertTrue(text.contains("Executed 1 test, with 0 failures"), text)
      return
    }
    let ranges = (0..<48).map { (offset: $0 * 500, count: 500) }
    let total = 48 * 500
    let grads = UnsafeMutablePointer<Float>.allocate(capacity: total)
    defer { grads.deallocate() }
    for i in 0..<total { grads[i] = Float(i % 97) }
    let sync = try GradientSync(
      communicator: world, grads: grads, ranges: ranges, capBytes: 2000 * 4, progress: .thread,
      pollInterval: 1e-6)
    defer { sync.close() }
    XCTAssertGreaterThan(sync.buckets.count, 4)

    let stop = DispatchSemaphore(value: 0)
    let readerDone = DispatchSemaphore(value: 0)
    final class Box: @unchecked Sendable { var reads = 0, bad: [String] = [] }
    let box = Box()
    let reader = Thread {
      while stop.wait(timeout: .now()) == .timedOut {
        let t = sync.timings
        box.reads += 1
        if t.count != sync.buckets.count { box.bad.append("count \(t.count)") }
        for x in t where x.end != 0 && x.start == 0 { box.bad.append("bucket \(x.index) ended before it started") }
      }
      readerDone.signal()
    }
    reader.start()
    // At least 30 rounds, and more until the reader has run at least once: on a loaded
    // machine the reader thread may not be scheduled during the first 30 (bounded: 20 s).
    let deadline = Date().addingTimeInterval(20)
    var rounds = 0
    while rounds < 30 || (box.reads == 0 && Date() < deadline) {
      rounds += 1
      sync.begin()
      for b in sync.buckets { try sync.gradientsReady(from: b.offset) }
      try sync.finish()
      for x in sync.timings {
        XCTAssertGreaterThan(x.start, 0)
        XCTAssertGreaterThanOrEqual(x.end, x.start)
      }
    }
    stop.signal()
    readerDone.wait()
    XCTAssertGreaterThan(box.reads, 0)
    XCTAssertEqual(box.bad, [])
    // One rank: the sum is the identity.
    for i in stride(from: 0, to: total, by: 37) { XCTAssertEqual(grads[i], Float(i % 97)) }
  }
}
