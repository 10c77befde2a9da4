import CKernels
import Model
import XCTest

/// The fused and specialised fast paths against their naive twins: BatchNorm + ReLU in one
/// layer vs BatchNorm then ReLU, 2×2 MaxPool vs the general loop, and the AVX-512 stride-1
/// im2col/col2im vs the portable loops (through whole Conv2d forward/backward passes).
final class FusedKernelTests: XCTestCase {
  func testBatchNormReLUMatchesBatchNormThenReLU() throws {
    for s in [Shape(4, 3, 5, 7), Shape(2, 5, 16, 16), Shape(3, 2, 28, 28)] {
      for training in [true, false] {
        var outs: [[[Float]]] = []
        // 0: unfused BN → ReLU (portable); 1: fused portable; 2: fused fast (if available).
        for variant in 0..<(Gemm.builtinAvailable ? 3 : 2) {
          let arena = ParameterArena()
          let bn = BatchNorm(arena: arena, name: "bn", channels: s.c)
          bn.usesFastKernels = variant == 2
          if variant > 0 { bn.fuseReLU() }
          arena.allocate(seed: 1)
          arena.set(arena.parameter(named: "bn.weight")!, TestData.uniform(s.c, seed: 2, 0.5, 1.5))
          arena.set(arena.parameter(named: "bn.bias")!, TestData.uniform(s.c, seed: 3))
          let relu = ReLU()
          let x = TestData.tensor(s, TestData.uniform(s.count, seed: 10, -2, 3))
          var y = try bn.forward(x, training: training)
          if variant == 0 { y = try relu.forward(y, training: training) }
          let yv = y.toArray()
          var g = TestData.tensor(s, TestData.uniform(s.count, seed: 99))
          if variant == 0 { g = try relu.backward(g) }
          let dx = try bn.backward(g).toArray()
          outs.append([
            yv, dx, arena.gradient(of: arena.parameter(named: "bn.weight")!),
            arena.gradient(of: arena.parameter(named: "bn.bias")!),
          ])
        }
        for v in 1..<outs.count {
          for (k, what) in ["y", "dx", "dweight", "dbias"].enumerated() {
            assertClose(
              outs[v][k], outs[0][k], tolerance: 1e-5,
              "\(s) training \(training) variant \(v) \(what)")
          }
        }
      }
    }
  }

  /// BatchNorm with the fused ReLU and pool (`fusePool`) against BatchNorm-ReLU then
  /// MaxPool2d: in training on the portable and the AVX-512 kernels (the fused passes) and
  /// without the C kernels, and in evaluation (both run the plain layers then the pool).
  /// Odd planes, rows over 16 and 32 values, and a plane under 16 values (the fallback).
  func testBatchNormReLUPoolMatchesThreeLayers() throws {
    let shapes = [
      Shape(4, 3, 5, 7), Shape(2, 5, 16, 16), Shape(3, 2, 28, 28), Shape(2, 3, 7, 7),
      Shape(2, 2, 6, 67), Shape(3, 2, 3, 3),
    ]
    for s in shapes {
      for training in [true, false] {
        var outs: [[[Float]]] = []
        // 0: BN-ReLU → pool, C kernels; 1: fused, portable C; 2: fused, AVX-512 (if available);
        // 3: fused, Swift loops.
        for variant in 0..<4 where variant != 2 || Gemm.builtinAvailable {
          let old = px_path_force(Int32(variant == 1 ? PX_PATH_PORTABLE : PX_PATH_AVX512))
          defer { px_path_force(old) }
          let arena = ParameterArena()
          let bn = BatchNorm(arena: arena, name: "bn", channels: s.c)
          bn.usesFastKernels = variant != 3
          bn.fuseReLU()
          if variant > 0 { bn.fusePool() }
          arena.allocate(seed: 1)
          arena.set(arena.parameter(named: "bn.weight")!, TestData.uniform(s.c, seed: 2, 0.5, 1.5))
          arena.set(arena.parameter(named: "bn.bias")!, TestData.uniform(s.c, seed: 3))
          let pool = MaxPool2d(kernel: 2, stride: 2)
          // A coarse grid: windows of equal values (ties) besides the ReLU's zeros.
          let x = TestData.tensor(s, TestData.uniform(s.count, seed: 10, -2, 3).map { ($0 * 2).rounded() })
          var y = try bn.forward(x, training: training)
          if variant == 0 { y = try pool.forward(y, training: training) }
          XCTAssertEqual(y.shape, Shape(s.n, s.c, s.h / 2, s.w / 2), "\(s) variant \(variant) shape")
          let yv = y.toArray()
          var g = TestData.tensor(y.shape, TestData.uniform(y.count, seed: 99))
          if variant == 0 { g = try pool.backward(g) }
          let dx = try bn.backward(g)
          XCTAssertEqual(dx.shape, s, "\(s) variant \(variant) dx shape")
          outs.append([
            yv, dx.toArray(), arena.gradient(of: arena.parameter(named: "bn.weight")!),
            arena.gradient(of: arena.parameter(named: "bn.bias")!),
          ])
        }
        for v in 1..<outs.count {
          // On the reference's kernels (AVX-512) the pooled values are the same operations,
          // bit for bit; the portable C and Swift loops round without FMA.
          if v == 2 { XCTAssertEqual(outs[v][0], outs[0][0], "\(s) training \(training) variant 2 y") }
          for (k, what) in ["y", "dx", "dweight", "dbias"].enumerated() {
            assertClose(
              outs[v][k], outs[0][k], tolerance: 1e-5,
              "\(s) training \(training) variant \(v) \(what)")
          }
        }
      }
    }
  }

  func testMaxPool2x2FastMatchesGeneral() throws {
    for s in [Shape(2, 3, 28, 28), Shape(3, 2, 7, 7), Shape(1, 2, 3, 5), Shape(2, 2, 70, 69)] {
      var x = TestData.uniform(s.count, seed: 5)
      // Ties and NaN: first in scan order wins ties, NaN wins.
      x[0] = 1
      x[1] = 1
      x[s.w] = 1
      x[s.w + 1] = 1
      x[2] = .nan
      x[s.w + 3] = .nan
      var outs: [[Float]] = []
      // (fast path, AVX-512 kernels): 0 AVX-512, 1 Swift 2×2 loops, 2 general loop.
      for (fast, kernels) in [(true, true), (true, false), (false, false)] {
        let pool = MaxPool2d(kernel: 2, stride: 2)
        pool.usesFastPath = fast
        pool.usesFastKernels = kernels && Gemm.builtinAvailable
        let y = try pool.forward(TestData.tensor(s, x), training: true).toArray()
        let ys = pool.outputShape(s)
        let dx = try pool.backward(TestData.tensor(ys, TestData.uniform(ys.count, seed: 6)))
          .toArray()
        outs.append(y.map { $0.isNaN ? 1e30 : $0 })
        outs.append(dx)
      }
      for v in 1..<3 {
        XCTAssertEqual(outs[2 * v - 2], outs[4], "\(s) y variant \(v - 1)")
        XCTAssertEqual(outs[2 * v - 1], outs[5], "\(s) dx variant \(v - 1)")
      }
    }
  }

  /// The C im2col/col2im (AVX-512, or the portable C twins on other CPUs) against the Swift loops.
  func testConvFastIm2colMatchesPortable() throws {
    // (input shape, out channels, kernel, padding, column budget forcing chunks of 1 or 3,
    // stride): odd and even planes, rows longer than one 16-lane step, 1×1 projections.
    let cases = [
      (Shape(5, 3, 7, 7), 4, 3, 1, 1 << 21, 1), (Shape(5, 3, 7, 7), 4, 3, 1, 27 * 49 * 3, 1),
      (Shape(2, 2, 28, 28), 8, 3, 1, 1, 1), (Shape(3, 4, 4, 4), 6, 1, 0, 1 << 21, 1),
      (Shape(2, 2, 20, 19), 3, 5, 2, 1 << 21, 1), (Shape(4, 2, 3, 3), 5, 3, 1, 18 * 9 * 3, 1),
      (Shape(3, 3, 28, 28), 4, 3, 1, 1 << 21, 2), (Shape(2, 3, 7, 7), 5, 3, 1, 1, 2),
      (Shape(2, 2, 40, 37), 3, 3, 1, 1 << 21, 2), (Shape(3, 4, 14, 14), 6, 1, 0, 1 << 21, 2),
      (Shape(2, 2, 9, 8), 3, 5, 2, 1 << 21, 2), (Shape(2, 3, 4, 4), 2, 3, 0, 1 << 21, 2),
    ]
    for (s, o, k, pad, budget, stride) in cases {
      var outs: [[Float]] = []
      for fast in [true, false] {
        let arena = ParameterArena()
        let conv = Conv2d(
          arena: arena, name: "c", inChannels: s.c, outChannels: o, kernel: k, stride: stride,
          padding: pad, bias: true)
        conv.usesFastKernels = fast
        conv.columnBudget = budget
        arena.allocate(seed: 3)
        let y = try conv.forward(
          TestData.tensor(s, TestData.uniform(s.count, seed: 7)), training: true)
        let dy = TestData.tensor(y.shape, TestData.uniform(y.count, seed: 8))
        let yv = y.toArray()
        let dx = try conv.backward(dy).toArray()
        outs.append(yv)
        outs.append(dx)
        outs.append(arena.gradient(of: arena.parameter(named: "c.weight")!))
        outs.append(arena.gradient(of: arena.parameter(named: "c.bias")!))
      }
      for (i, what) in ["y", "dx", "dweight", "dbias"].enumerated() {
        assertClose(
          outs[i], outs[i + 4], tolerance: 1e-5,
          "\(s) k \(k) pad \(pad) stride \(stride) budget \(budget) \(what)")
      }
    }
  }

  /// The implicit GEMM (B packed straight from x; dX as the convolution of dY with the flipped
  /// weights) against im2col + GEMM + col2im, serial and split over threads, on planes smaller
  /// than, straddling and larger than the 16-lane halves of a packed strip.
  func testConvImplicitGemmMatchesIm2col() throws {
    try XCTSkipUnless(Gemm.builtinAvailable, "no AVX-512 on this CPU: only the portable path runs")
    // (input, out channels, kernel, padding, stride): "same" stride-1 shapes read runs of x
    // (one or two per 16 lanes, more on planes under 16 positions); strided and not-"same"
    // ones (ResNet's downsampling 3×3 and 1×1) gather.
    let cases = [
      (Shape(3, 5, 7, 7), 9, 3, 1, 1), (Shape(2, 3, 4, 4), 4, 3, 1, 1), (Shape(3, 4, 3, 5), 6, 3, 1, 1),
      (Shape(2, 16, 28, 28), 20, 3, 1, 1), (Shape(2, 2, 9, 11), 3, 5, 2, 1),
      (Shape(4, 6, 2, 2), 7, 1, 0, 1), (Shape(1, 1, 1, 1), 3, 3, 1, 1),
      (Shape(3, 5, 28, 28), 6, 3, 1, 2), (Shape(3, 5, 7, 7), 6, 3, 1, 2),
      (Shape(2, 4, 14, 14), 8, 1, 0, 2), (Shape(2, 3, 9, 11), 4, 3, 0, 1),
      (Shape(2, 2, 13, 10), 3, 5, 2, 3), (Shape(5, 3, 4, 4), 2, 3, 1, 2),
      // more than 128 rows of C (forward, then dX): B packed as whole panels, not per strip
      (Shape(3, 3, 6, 7), 136, 3, 1, 1), (Shape(2, 130, 5, 5), 3, 3, 1, 1),
      // channels a multiple of 32: the weight gradient from x in NHWC
      (Shape(2, 32, 6, 7), 5, 3, 1, 1), (Shape(3, 64, 4, 4), 9, 3, 1, 1),
      (Shape(2, 32, 9, 8), 4, 5, 2, 1), (Shape(1, 96, 3, 3), 7, 1, 0, 1),
    ]
    for threads in [1, 2] {
      Gemm.threads = threads
      defer { Gemm.threads = 1 }
      for (s, o, k, pad, stride) in cases {
        var outs: [[Float]] = []
        for implicit in [true, false] {
          let arena = ParameterArena()
          let conv = Conv2d(
            arena: arena, name: "c", inChannels: s.c, outChannels: o, kernel: k, stride: stride,
            padding: pad, bias: true)
          conv.usesImplicitGemm = implicit
          conv.usesImplicitInputGradient = implicit
          arena.allocate(seed: 5)
          let y = try conv.forward(
            TestData.tensor(s, TestData.uniform(s.count, seed: 9)), training: true)
          let dy = TestData.tensor(y.shape, TestData.uniform(y.count, seed: 10))
          outs.append(y.toArray())
          outs.append(try conv.backward(dy).toArray())
          outs.append(arena.gradient(of: arena.parameter(named: "c.weight")!))
        }
        for (i, what) in ["y", "dx", "dweight"].enumerated() {
          assertClose(
            outs[i], outs[i + 3], tolerance: 1e-5,
            "\(s) o \(o) k \(k) pad \(pad) stride \(stride) threads \(threads) \(what)")
        }
      }
    }
  }

  /// Conv → BN+ReLU → MaxPool with the memory-bound loops split over 2 threads equals the
  /// serial run exactly (disjoint ranges, same per-channel reductions).
  func testThreadedLoopsMatchSerial() throws {
    let s = Shape(16, 8, 28, 28)
    var runs: [[[Float]]] = []
    for threads in [1, 2] {
      Gemm.threads = threads
      defer { Gemm.threads = 1 }
      let arena = ParameterArena()
      let conv = Conv2d(
        arena: arena, name: "c", inChannels: s.c, outChannels: 8, kernel: 3, stride: 1,
        padding: 1, bias: true)
      let bn = BatchNorm(arena: arena, name: "bn", channels: 8)
      bn.fuseReLU()
      let pool = MaxPool2d(kernel: 2, stride: 2)
      arena.allocate(seed: 4)
      let x = TestData.tensor(s, TestData.uniform(s.count, seed: 11))
      let y = try pool.forward(
        try bn.forward(try conv.forward(x, training: true), training: true), training: true)
      let yv = y.toArray()
      let dy = TestData.tensor(y.shape, TestData.uniform(y.count, seed: 12))
      let dx = try conv.backward(try bn.backward(try pool.backward(dy))).toArray()
      runs.append([yv, dx, arena.gradient(of: arena.parameter(named: "c.weight")!)])
    }
    for (k, what) in ["y", "dx", "dweight"].enumerated() {
      XCTAssertEqual(runs[0][k], runs[1][k], what)
    }
  }

  /// BasicBlock's add + ReLU tail and its backward (`px_add_relu`, `px_relu_backward`, conv1
  /// adding its dX into the shortcut's) against the Swift loops, with identity and projection
  /// shortcuts and a count that is not a multiple of 16: the forward exactly, the gradients
  /// to rounding (the branches are summed in another order).
  func testBasicBlockFastTailMatchesPortable() throws {
    for (cin, cout, stride, size) in [(4, 4, 1, 5), (3, 6, 2, 7)] {
      var runs: [[[Float]]] = []
      for fast in [true, false] {
        let arena = ParameterArena()
        let block = BasicBlock(
          arena: arena, prefix: "b", inChannels: cin, outChannels: cout, stride: stride,
          makeNorm: { name, c in BatchNorm(arena: arena, name: name, channels: c) })
        block.usesFastKernels = fast
        arena.allocate(seed: 21)
        let s = Shape(3, cin, size, size)
        let y = try block.forward(
          TestData.tensor(s, TestData.uniform(s.count, seed: 22)), training: true)
        let yv = y.toArray()
        XCTAssertTrue(yv.contains(0) && yv.contains { $0 > 0 }, "both ReLU branches taken")
        let dy = TestData.tensor(y.shape, TestData.uniform(y.count, seed: 23))
        let dx = try block.backward(dy).toArray()
        runs.append([yv, dx, Array(UnsafeBufferPointer(start: arena.grads, count: arena.parameterCount))])
      }
      XCTAssertEqual(runs[0][0], runs[1][0], "\(cin)→\(cout) stride \(stride) y")
      for (k, what) in ["dx", "grads"].enumerated() {
        assertClose(
          runs[0][k + 1], runs[1][k + 1], tolerance: 1e-6, "\(cin)→\(cout) stride \(stride) \(what)")
      }
    }
  }
}
