import Foundation
import Model
import XCTest

/// Recon's branched conv4 (`MultiTaskEncoder.branchedConv4`): task t's part of the output and
/// its parameters' gradients are a plain `Conv4` holding task t's values — its copies where
/// the layer is task-specific, the shared values elsewhere — and a shared parameter's
/// gradient is the sum over the tasks.
final class BranchedConv4Tests: XCTestCase {
  func norm(_ arena: ParameterArena) -> NormFactory {
    { name, c in BatchNorm(arena: arena, name: name, channels: c) }
  }

  /// A branched name without its `.task{t}` component, and t.
  func base(_ name: String, tasks: Int) -> (String, Int?) {
    for t in 0..<tasks where name.contains(".task\(t).") {
      return (name.replacingOccurrences(of: ".task\(t).", with: "."), t)
    }
    return (name, nil)
  }

  func check(taskSpecific: Set<String>, tasks: Int = 2, file: StaticString = #filePath, line: UInt = #line) throws {
    let n = 4
    let width = 3
    let x = TestData.tensor(Shape(n, 1, 16, 16), TestData.uniform(n * 256, seed: 31))
    let arena = ParameterArena()
    let enc = try MultiTaskEncoder.branchedConv4(
      arena: arena, prefix: "encoder", width: width, inputSize: 16, tasks: tasks, taskSpecific: taskSpecific,
      makeNorm: norm(arena))
    arena.allocate(seed: 7)
    // Every name is a conv4 name, with `.task{t}` exactly on the task-specific layers and on
    // the norms after the first of them.
    let names = MultiTaskEncoder.conv4LayerNames(prefix: "encoder")
    let split = names.firstIndex(where: taskSpecific.contains)!
    for r in arena.parameterRanges {
      let (b, t) = base(r.name, tasks: tasks)
      let layer = b.split(separator: ".").dropLast().joined(separator: ".")
      let i = try XCTUnwrap(names.firstIndex(of: layer), r.name, file: file, line: line)
      let expectSplit = taskSpecific.contains(layer) || (i % 2 == 1 && i >= split)
      XCTAssertEqual(t != nil, expectSplit, "\(r.name) (task-specific \(taskSpecific.sorted()))", file: file, line: line)
    }
    // Task copies are initialised independently: make them differ for sure.
    for r in arena.parameterRanges where base(r.name, tasks: tasks).1 == 1 {
      arena.set(r, arena.values(of: r).map { $0 * 1.5 + 0.05 })
    }
    XCTAssertEqual(enc.featureDim, tasks * width)
    let y = try enc.forward(x, training: true)
    XCTAssertEqual(y.shape.n, n, file: file, line: line)
    XCTAssertEqual(y.shape.perSample, tasks * width, file: file, line: line)
    let yv = y.toArray()
    let dys = (0..<tasks).map { TestData.uniform(n * width, seed: 40 + UInt64($0)) }
    var dy = [Float]()
    for i in 0..<n { for t in 0..<tasks { dy += dys[t][(i * width)..<((i + 1) * width)] } }
    arena.zeroGrads()
    let dx = try enc.backward(TestData.tensor(y.shape, dy)).toArray()

    var refGrads: [[String: [Float]]] = []
    var refDx = [Float](repeating: 0, count: x.count)
    for t in 0..<tasks {
      let ra = ParameterArena()
      let ref = try Conv4(arena: ra, prefix: "encoder", width: width, inputSize: 16, makeNorm: norm(ra))
      ra.allocate(seed: 1)
      for r in ra.parameterRanges {
        let own = r.name.split(separator: ".").dropLast().joined(separator: ".") + ".task\(t)." + r.name.split(separator: ".").last!
        let src = try XCTUnwrap(arena.parameter(named: own) ?? arena.parameter(named: r.name), r.name, file: file, line: line)
        ra.set(r, arena.values(of: src))
      }
      let yt = try ref.forward(x, training: true).toArray()
      var mine: [Float] = []
      for i in 0..<n {
        let start = (i * tasks + t) * width
        mine += yv[start..<(start + width)]
      }
      assertClose(mine, yt, tolerance: 1e-5, "task \(t)'s output", file: file, line: line)
      ra.zeroGrads()
      let d = try ref.backward(TestData.tensor(Shape(n, width, 1, 1), dys[t])).toArray()
      for i in refDx.indices { refDx[i] += d[i] }
      refGrads.append(Dictionary(uniqueKeysWithValues: ra.parameterRanges.map { ($0.name, ra.gradient(of: $0)) }))
    }
    assertClose(dx, refDx, tolerance: 1e-4, floor: 1e-3, "dx", file: file, line: line)
    for r in arena.parameterRanges {
      let (b, t) = base(r.name, tasks: tasks)
      var expected: [Float]
      if let t {
        expected = refGrads[t][b]!
      } else {
        expected = refGrads[0][b]!
        for g in refGrads.dropFirst() { expected = zip(expected, g[b]!).map { $0 + $1 } }
      }
      // A convolution's bias feeds a BatchNorm, which removes any per-channel shift: its true
      // gradient is 0 and both sides hold rounding noise.
      let parts = b.split(separator: ".")
      if parts.last == "bias", let i = Int(parts[1]), i % 4 == 0 {
        XCTAssertLessThan(arena.gradient(of: r).map(abs).max() ?? 0, 1e-3, r.name, file: file, line: line)
        continue
      }
      assertClose(arena.gradient(of: r), expected, tolerance: 1e-4, floor: 1e-2, r.name, file: file, line: line)
    }
  }

  func testSplitAtALaterConvolution() throws {
    try check(taskSpecific: ["encoder.8"])
  }

  func testSplitAtTheFirstConvolutionWithThreeTasks() throws {
    try check(taskSpecific: ["encoder.0", "encoder.12"], tasks: 3)
  }

  /// Branching at a norm: the convolution before it stays shared (runs once on N rows).
  func testSplitAtANorm() throws {
    try check(taskSpecific: ["encoder.5", "encoder.13"])
  }

  func testBadLayersAreNamed() {
    let arena = ParameterArena()
    XCTAssertThrowsError(
      try MultiTaskEncoder.branchedConv4(
        arena: arena, prefix: "encoder", inputSize: 16, tasks: 2, taskSpecific: [], makeNorm: norm(arena))
    ) { XCTAssertTrue("\($0)".contains("no task-specific layer"), "\($0)") }
    XCTAssertThrowsError(
      try MultiTaskEncoder.branchedConv4(
        arena: arena, prefix: "encoder", inputSize: 16, tasks: 2, taskSpecific: ["encoder.4", "encoder.7"],
        makeNorm: norm(arena))
    ) { XCTAssertTrue("\($0)".contains("'encoder.7' is not a conv4 layer"), "\($0)") }
  }
}
