import CBLAS

/// Fully connected layer, as PyTorch's `nn.Linear`: `y = x · Wᵀ + b`.
///
/// The input may have any shape with `N` rows whose `perSample` equals `inFeatures` (a
/// flattened feature map is fine); the output is `[N, outFeatures, 1, 1]` and `backward`
/// returns `dx` in the input's shape.
public final class Linear: Layer {
  public let inFeatures: Int
  public let outFeatures: Int
  public let name: String

  private let arena: ParameterArena
  /// Offset of weight [outFeatures, inFeatures].
  public let weightOffset: Int
  /// Offset of bias [outFeatures], if any.
  public let biasOffset: Int?

  /// [N, outFeatures, 1, 1]
  private let out = Storage()
  /// dx in the input's shape (`perSample` = inFeatures).
  private let dInput = Storage()
  /// The forward input, read again by backward (owned by the previous layer).
  private var input: Tensor?

  /// - Parameters:
  ///   - name: the state-dict prefix; registers `"\(name).weight"` and, with `bias`,
  ///     `"\(name).bias"`, both U(±1/√inFeatures) as PyTorch initialises them.
  public init(
    arena: ParameterArena, name: String, inFeatures: Int, outFeatures: Int, bias: Bool = true
  ) {
    precondition(inFeatures > 0 && outFeatures > 0)
    self.arena = arena
    self.name = name
    self.inFeatures = inFeatures
    self.outFeatures = outFeatures
    weightOffset = arena.register(
      "\(name).weight", shape: [outFeatures, inFeatures], kind: .weight,
      initializer: .uniformFanIn(inFeatures))
    biasOffset =
      bias
      ? arena.register(
        "\(name).bias", shape: [outFeatures], kind: .biasOrNorm,
        initializer: .uniformFanIn(inFeatures))
      : nil
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    precondition(
      x.shape.perSample == inFeatures, "\(name): input \(x.shape), expected \(inFeatures) features")
    input = x
    let n = x.shape.n
    let y = out.tensor(Shape(n, outFeatures))
    // y [N, out] = x [N, in] · Wᵀ; a call per row where the GEMM's rounding depends on the
    // call's height, so that a row's output does not depend on the per-rank batch
    // (`Gemm.dependsOnCallShape`).
    let m = Gemm.dependsOnCallShape(arena.gemmPrecision) ? 1 : max(n, 1)
    for r0 in stride(from: 0, to: n, by: m) {
      Gemm.sgemm(
        transA: false, transB: true, m: m, n: outFeatures, k: inFeatures, alpha: 1,
        a: x.data + r0 * inFeatures, lda: inFeatures, b: arena.params + weightOffset, ldb: inFeatures, beta: 0,
        c: y.data + r0 * outFeatures, ldc: outFeatures, precision: arena.gemmPrecision)
    }
    if let bo = biasOffset {
      let b = arena.params + bo
      for i in 0..<n {
        let row = y.data + i * outFeatures
        for j in 0..<outFeatures { row[j] += b[j] }
      }
    }
    return y
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    guard let x = input else { preconditionFailure("\(name): backward before forward") }
    let n = x.shape.n
    precondition(dy.shape.n == n && dy.shape.perSample == outFeatures, "\(name): dy \(dy.shape)")
    // dW [out, in] += dyᵀ [out, N] · x [N, in]
    Gemm.sgemm(
      transA: true, transB: false, m: outFeatures, n: inFeatures, k: n, alpha: 1,
      a: dy.data, lda: outFeatures, b: x.data, ldb: inFeatures, beta: 1,
      c: arena.grads + weightOffset, ldc: inFeatures, precision: arena.gemmPrecision)
    if let bo = biasOffset {
      let db = arena.grads + bo
      for i in 0..<n {
        let row = dy.data + i * outFeatures
        for j in 0..<outFeatures { db[j] += row[j] }
      }
    }
    // dx [N, in] = dy [N, out] · W [out, in]
    let dx = dInput.tensor(x.shape)
    Gemm.sgemm(
      transA: false, transB: false, m: n, n: inFeatures, k: outFeatures, alpha: 1,
      a: dy.data, lda: outFeatures, b: arena.params + weightOffset, ldb: inFeatures, beta: 0,
      c: dx.data, ldc: inFeatures, precision: arena.gemmPrecision)
    return dx
  }
}
