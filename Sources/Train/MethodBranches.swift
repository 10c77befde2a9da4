import Data
import Model

#if canImport(Glibc)
  import Glibc
#endif

extension PretrainConfig {
  /// The image augmentation sampling `augmentSampling` resolves to: `auto` is MT-SLVR's
  /// (k ~ U{1…n} per sample, shared by both views) for the methods that predict the
  /// augmentations, the invariance-vector draws of `amortised`, SimCLR's otherwise.
  public var resolvedAugmentSampling: AugmentSampling {
    if self.method == .amortised { return self.invarianceDraw == .corners ? .amortisedCorners : .amortisedUniform }
    switch self.augmentSampling {
    case .mtslvr: return .mtslvr
    case .simclr: return .simclr
    case .auto: return self.method == .transformPred || self.method == .mtslvr ? .mtslvr : .simclr
    }
  }

  /// Columns of the augmentation labels the configured data reports: the image
  /// augmentations for image data, the wave transforms for audio.
  public var transformLabelCount: Int {
    isAudio ? AudioContrastiveLoader.transformCount : ImageAugmentationSet.columns(channels: sampleShape.c)
  }
}

/// One objective on top of shared features `h` [2B, d] (views 1 then 2): a head and its loss.
/// Methods compose branches: SimCLR, SimSiam and transformation prediction are one branch on
/// an encoder; MT-SLVR is two.
protocol MethodBranch: AnyObject {
  /// The task's loss name in logs (`ntxent`, `negative_cosine`, `bce`).
  var lossName: String { get }
  /// Modules that report backward progress.
  var reporters: [ProgressHooks] { get }
  /// Forward through the head and the loss (over the global batch).
  /// - Parameter labels: [2B, K] augmentation labels (branches that need them throw on nil).
  func forward(_ h: Tensor, labels: UnsafePointer<Float>?) throws -> Float
  /// Backward of `scale`·loss through the head; returns ∂(scale·L)/∂h [2B, d], owned by the
  /// branch.
  func backward(scale: Float) throws -> Tensor
  func forwardFLOPs(_ h: Shape) -> Int
}

/// Scales a branch-owned gradient in place.
func scaleInPlace(_ t: Tensor, _ s: Float) {
  if s != 1 { for i in 0..<t.count { t.data[i] *= s } }
}

/// SimCLR: projection head → NT-Xent over the global batch. Head named `head` (as
/// `SimCLRNetwork`).
final class SimCLRBranch: MethodBranch {
  let head: ProjectionHead
  let loss: NTXentLoss

  init(arena: ParameterArena, prefix: String = "head", inFeatures d: Int, config: PretrainConfig, collective: Collective) {
    head = ProjectionHead(
      arena: arena, prefix: prefix, inFeatures: d, hidden: d, outFeatures: config.projectionDim,
      makeNorm: SimCLRNetwork.norm(arena, config.syncBN ? collective : nil))
    loss = NTXentLoss(temperature: config.temperature, collective: collective)
  }

  var reporters: [ProgressHooks] { [head] }
  var lossName: String { "ntxent" }

  func forward(_ h: Tensor, labels: UnsafePointer<Float>?) throws -> Float {
    try loss.forward(try head.forward(h, training: true))
  }

  func backward(scale: Float) throws -> Tensor {
    let dz = try loss.backward()
    scaleInPlace(dz, scale)
    return try head.backward(dz)
  }

  func forwardFLOPs(_ h: Shape) -> Int { head.forwardFLOPs(h).flops }
}

/// SimSiam (Chen & He 2021): 3-layer projector → bottleneck predictor, symmetric negative
/// cosine between each view's prediction and the other view's (stop-gradient) projection,
/// averaged over the global batch. Names `projector.*`, `predictor.*`.
final class SimSiamBranch: MethodBranch {
  let projector: MLPHead
  let predictor: MLPHead
  let loss: SimSiamLoss
  /// [2B, D] ∂L/∂p, views 1 then 2.
  private let dp = Storage()
  private var pShape = Shape(0, 0)

  init(arena: ParameterArena, inFeatures d: Int, config: PretrainConfig, collective: Collective) {
    let norm = SimCLRNetwork.norm(arena, config.syncBN ? collective : nil)
    let dim = config.projectionDim
    projector = MLPHead.simSiamProjector(arena: arena, prefix: "projector", inFeatures: d, dim: dim, makeNorm: norm)
    predictor = MLPHead.simSiamPredictor(
      arena: arena, prefix: "predictor", dim: dim,
      hidden: config.predictorDim > 0 ? config.predictorDim : max(1, dim / 4), makeNorm: norm)
    loss = SimSiamLoss(collective: collective)
  }

  var reporters: [ProgressHooks] { [projector, predictor] }
  var lossName: String { "negative_cosine" }

  func forward(_ h: Tensor, labels: UnsafePointer<Float>?) throws -> Float {
    let z = try projector.forward(h, training: true)
    let p = try predictor.forward(z, training: true)
    let b = z.shape.n / 2
    let s = Shape(b, z.shape.perSample)
    pShape = p.shape
    return try loss.forward(
      p1: Tensor(p.data, s), p2: Tensor(p.data + s.count, s),
      z1: Tensor(z.data, s), z2: Tensor(z.data + s.count, s))
  }

  func backward(scale: Float) throws -> Tensor {
    let (dp1, dp2) = try loss.backward()
    let g = dp.tensor(pShape)
    g.data.update(from: dp1.data, count: dp1.count)
    (g.data + dp1.count).update(from: dp2.data, count: dp2.count)
    scaleInPlace(g, scale)
    // Stop-gradient: z receives gradient only through the predictor.
    let dz = try predictor.backward(g)
    return try projector.backward(dz)
  }

  func forwardFLOPs(_ h: Shape) -> Int {
    let (f1, z) = projector.forwardFLOPs(h)
    return f1 + predictor.forwardFLOPs(z).flops
  }
}

/// Transformation prediction: an MLP head (`Linear → BN → ReLU → Linear`) predicting the
/// multi-hot vector of applied augmentations, binary cross-entropy over the global batch.
/// Keeps the last step's logits so its macro mAP can be logged. Names `transform_head.*`.
final class TransformPredictionBranch: MethodBranch {
  let head: MLPHead
  let loss: MultiLabelBCELoss
  let labelCount: Int
  /// The last forward's logits and labels (rank-local rows), for the mAP log.
  private(set) var lastLogits: [Float] = []
  private(set) var lastLabels: [Float] = []

  init(arena: ParameterArena, inFeatures d: Int, labelCount: Int, config: PretrainConfig, collective: Collective) {
    self.labelCount = labelCount
    head = MLPHead(
      arena: arena, prefix: "transform_head", inFeatures: d,
      specs: [.init(d, norm: true, relu: true), .init(labelCount, norm: false, relu: false)],
      makeNorm: SimCLRNetwork.norm(arena, config.syncBN ? collective : nil))
    loss = MultiLabelBCELoss(collective: collective)
  }

  var reporters: [ProgressHooks] { [head] }
  var lossName: String { "bce" }

  func forward(_ h: Tensor, labels: UnsafePointer<Float>?) throws -> Float {
    guard let labels else {
      throw ConfigError(message: "transformation prediction needs augmentation labels; the data reports none")
    }
    let y = try head.forward(h, training: true)
    lastLogits = y.toArray()
    lastLabels = Array(UnsafeBufferPointer(start: labels, count: y.count))
    return try loss.forward(y, targets: labels)
  }

  func backward(scale: Float) throws -> Tensor {
    let d = try loss.backward()
    scaleInPlace(d, scale)
    return try head.backward(d)
  }

  func forwardFLOPs(_ h: Shape) -> Int { head.forwardFLOPs(h).flops }

  /// Macro average precision (mAP) of the last forward's rows over the labels that have
  /// positives and negatives.
  var lastMacroAP: Double {
    guard !lastLogits.isEmpty else { return .nan }
    return MultiLabelMetrics.macro(scores: lastLogits, labels: lastLabels.map { $0 > 0.5 }, classes: labelCount).prAUC
  }
}

/// Prints on rank 0 only, flushing (stdout is a pipe under mpirun).
func rankZeroPrint(_ collective: Collective, _ s: String) {
  guard collective.rank == 0 else { return }
  print(s)
  fflush(nil)  // all output streams (stdout is a pipe under mpirun)
}
