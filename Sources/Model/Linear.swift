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
    // y [N, out] = x [N, in] · Wᵀ
    cblas_sgemm(
      CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(outFeatures), Int32(inFeatures),
      1, x.data, Int32(inFeatures), arena.params + weightOffset, Int32(inFeatures),
      0, y.data, Int32(outFeatures))
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
    cblas_sgemm(
      CblasRowMajor, CblasTrans, CblasNoTrans, Int32(outFeatures), Int32(inFeatures), Int32(n),
      1, dy.data, Int32(outFeatures), x.data, Int32(inFeatures),
      1, arena.grads + weightOffset, Int32(inFeatures))
    if let bo = biasOffset {
      let db = arena.grads + bo
      for i in 0..<n {
        let row = dy.data + i * outFeatures
        for j in 0..<outFeatures { db[j] += row[j] }
      }
    }
    // dx [N, in] = dy [N, out] · W [out, in]
    let dx = dInput.tensor(x.shape)
    cblas_sgemm(
      CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(inFeatures), Int32(outFeatures),
      1, dy.data, Int32(outFeatures), arena.params + weightOffset, Int32(inFeatures),
      0, dx.data, Int32(inFeatures))
    return dx
  }
}
