import Model
import XCTest

/// BatchNorm's per-plane C kernels (AVX-512 where the CPU has it, else their portable C twins,
/// the default on every CPU: `Gemm.cKernels`) against its Swift Double loops.
final class BatchNormFastTests: XCTestCase {
  func testFastMatchesReference() throws {
    for (si, s) in [Shape(4, 3, 5, 7), Shape(2, 5, 16, 16), Shape(3, 2, 28, 28)].enumerated() {
      var outs: [[[Float]]] = []
      for fast in [true, false] {
        let arena = ParameterArena()
        let bn = BatchNorm(arena: arena, name: "bn", channels: s.c)
        bn.usesFastKernels = fast
        arena.allocate(seed: 1)
        arena.set(arena.parameter(named: "bn.weight")!, TestData.uniform(s.c, seed: 2, 0.5, 1.5))
        arena.set(arena.parameter(named: "bn.bias")!, TestData.uniform(s.c, seed: 3))
        // An offset mean checks the Σx² − μ² cancellation too.
        let x = TestData.tensor(s, TestData.uniform(s.count, seed: UInt64(10 + si), 2, 4))
        let y = try bn.forward(x, training: true).toArray()
        let dx = try bn.backward(TestData.tensor(s, TestData.uniform(s.count, seed: 99))).toArray()
        outs.append([
          y, dx, arena.gradient(of: arena.parameter(named: "bn.weight")!),
          arena.gradient(of: arena.parameter(named: "bn.bias")!),
          arena.values(of: arena.buffer(named: "bn.running_var")!),
        ])
      }
      for (k, what) in ["y", "dx", "dweight", "dbias", "running_var"].enumerated() {
        assertClose(outs[0][k], outs[1][k], tolerance: 1e-5, "\(s) \(what)")
      }
    }
  }
}
