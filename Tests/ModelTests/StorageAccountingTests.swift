import Dispatch
import Model
import XCTest

/// `Storage.trackedBytes` is one process-wide counter that loaders and other threads change
/// at once: it must stay exact (an unsynchronised `+=` loses updates).
final class StorageAccountingTests: XCTestCase {
  func testTrackedBytesStayExactUnderManyThreads() {
    let before = Storage.trackedBytes
    let threads = 8, rounds = 1_000_000
    DispatchQueue.concurrentPerform(iterations: threads) { t in
      for r in 0..<rounds {
        Storage.track(bytes: 4 * (t + 1))
        if r % 1000 == 0 {
          let s = Storage(16 + t)
          s.ensure(64 + t)
        }
        Storage.track(bytes: -4 * (t + 1))
      }
      Storage.track(bytes: t + 1)
    }
    // Every Storage made above is gone; what is left is the final +1…+threads.
    XCTAssertEqual(Storage.trackedBytes - before, threads * (threads + 1) / 2)
    Storage.track(bytes: -(threads * (threads + 1) / 2))
    XCTAssertEqual(Storage.trackedBytes, before)
  }

  func testStorageCountsItsCapacity() {
    let before = Storage.trackedBytes
    do {
      let s = Storage(100)
      XCTAssertEqual(Storage.trackedBytes - before, 400)
      s.ensure(250)
      XCTAssertEqual(Storage.trackedBytes - before, 1000)
    }
    XCTAssertEqual(Storage.trackedBytes, before)
  }
}
