import Model

extension Options {
  public var barlowLambda: ConfigOption<Float> { ConfigOption(
    "barlowLambda", default: 5e-3,
    help: "Barlow Twins: weight λ of the off-diagonal (redundancy-reduction) terms of the cross-correlation loss.",
    check: finiteNonNegative) }
  public var barlowDim: ConfigOption<Int> { ConfigOption(
    "barlowDim", default: 512, resume: .mustMatch,
    help:
      "Barlow Twins: width of each of the projector's 3 layers. The paper's 8192 is for ResNet-50 on ImageNet; the default 512 is scaled down for Fashion-MNIST (conv4's 64-d features).",
    check: positive) }
}

/// Barlow Twins (Zbontar et al. 2021): encoder → 3-layer projector (`Linear → BN → ReLU`
/// twice, then `Linear`) → the cross-correlation loss of the two views' batch-standardised
/// projections over the **global** batch (`BarlowTwinsLoss`: per-dimension moments and the
/// D×D products all-reduced). Names `encoder.*`, `projector.0` … `projector.6`.
public final class BarlowTwinsMethod: SingleBranchMethod, SSLMethod {
  public static var options: [any AnyConfigOption] { [Options().barlowLambda, Options().barlowDim] }

  public required init(config: PretrainConfig, collective: Collective) throws {
    try super.init(config: config, collective: collective) { arena, d in
      BarlowTwinsBranch(arena: arena, inFeatures: d, config: config, collective: collective)
    }
  }
}

/// The Barlow Twins projector and loss on shared features `h` [2B, d] (views 1 then 2).
final class BarlowTwinsBranch: MethodBranch {
  let projector: MLPHead
  let loss: BarlowTwinsLoss
  /// [2B, D] ∂L/∂z, views 1 then 2.
  private let dz = Storage()
  private var zShape = Shape(0, 0)

  init(arena: ParameterArena, inFeatures d: Int, config: PretrainConfig, collective: Collective) {
    let w = config.barlowDim
    projector = MLPHead(
      arena: arena, prefix: "projector", inFeatures: d,
      specs: [.init(w, norm: true, relu: true), .init(w, norm: true, relu: true), .init(w, norm: false, relu: false)],
      makeNorm: SimCLRNetwork.norm(arena, config.syncBN ? collective : nil))
    loss = BarlowTwinsLoss(lambda: config.barlowLambda, collective: collective)
  }

  var reporters: [ProgressHooks] { [projector] }
  var lossName: String { "barlow_twins" }

  func forward(_ h: Tensor, labels: UnsafePointer<Float>?) throws -> Float {
    let z = try projector.forward(h, training: true)
    zShape = z.shape
    let s = Shape(z.shape.n / 2, z.shape.perSample)
    return try loss.forward(z1: Tensor(z.data, s), z2: Tensor(z.data + s.count, s))
  }

  func backward(scale: Float) throws -> Tensor {
    let (d1, d2) = try loss.backward()
    let g = dz.tensor(zShape)
    g.data.update(from: d1.data, count: d1.count)
    (g.data + d1.count).update(from: d2.data, count: d2.count)
    scaleInPlace(g, scale)
    return try projector.backward(g)
  }

  func forwardFLOPs(_ h: Shape) -> Int { projector.forwardFLOPs(h).flops }
}
