import Model

/// A self-supervised objective on one parameter arena: its network, how a batch of both
/// views goes forward and backward, and which modules report backward progress (so the
/// gradient buckets can start while backward runs).
///
/// Methods are made by `Methods.make`, the one place that maps a configuration to a method,
/// so pretraining, evaluation and export build identical arenas (same names, same order).
public protocol SSLMethod: AnyObject {
  var arena: ParameterArena { get }
  /// The encoder whose features downstream tasks use.
  var encoder: any Encoder { get }
  /// Modules that report backward progress (their ranges cover the whole arena).
  var progressReporters: [ProgressHooks] { get }

  /// Forward of both views, the loss over the *global* batch, and backward into
  /// `arena.grads` (accumulating).
  /// - Parameters:
  ///   - x: [2B_local, C, H, W]: rows 0..<B view 1 of the local samples, rows B..<2B view 2.
  ///   - transforms: [2B_local, T] multi-hot labels of the augmentations applied to each row,
  ///     or nil when the data reports none.
  ///   - lossScale: multiplies the loss gradient (1/K for K accumulated micro-batches).
  /// - Returns: the loss, the same on every rank (the caller stops on a non-finite one before
  ///   the optimizer touches the parameters).
  func forwardBackward(_ x: Tensor, transforms: UnsafePointer<Float>?, lossScale: Float) throws
    -> Float

  /// Counted forward FLOPs for an input of `shape` (benchmarks), or nil.
  func forwardFLOPs(_ shape: Shape) -> Int?
}

/// The one place a configuration becomes a method.
public enum Methods {
  /// - Parameters:
  ///   - collective: the world for global losses; `syncBN` decides whether BN uses it too.
  public static func make(_ config: PretrainConfig, collective: Collective) throws -> SSLMethod {
    switch config.method {
    case "simclr":
      return try SimCLRMethod(config: config, collective: collective)
    case "simsiam":
      return try SimSiamMethod(config: config, collective: collective)
    case "transform-pred":
      return try TransformPredictionMethod(config: config, collective: collective)
    case "mtslvr":
      return try MTSLVRMethod(config: config, collective: collective)
    default:
      throw ConfigError(
        message: "unknown method '\(config.method)' (known: \(PretrainConfig.methods.joined(separator: ", ")))")
    }
  }
}

/// SimCLR (Chen et al. 2020): encoder → projection head → NT-Xent over the global batch
/// (DESIGN.md invariants 3, 4, 8).
public final class SimCLRMethod: SSLMethod {
  public let net: SimCLRNetwork
  let loss: NTXentLoss

  public init(config: PretrainConfig, collective: Collective) throws {
    net = try SimCLRNetwork(config: config, collective: config.syncBN ? collective : nil)
    loss = NTXentLoss(temperature: config.temperature, collective: collective)
  }

  public var arena: ParameterArena { net.arena }
  public var encoder: any Encoder { net.encoder }
  public var progressReporters: [ProgressHooks] {
    [net.head as ProgressHooks, net.encoder as? ProgressHooks].compactMap { $0 }
  }

  public func forwardBackward(_ x: Tensor, transforms: UnsafePointer<Float>?, lossScale: Float)
    throws -> Float
  {
    let h = try net.encoder.forward(x, training: true)
    let z = try net.head.forward(h.reshaped(Shape(h.shape.n, h.shape.perSample)), training: true)
    let value = try loss.forward(z)
    let dz = try loss.backward()
    if lossScale != 1 {
      for i in 0..<dz.count { dz.data[i] *= lossScale }
    }
    let dh = try net.head.backward(dz)
    _ = try net.encoder.backward(dh.reshaped(h.shape))
    return value
  }

  public func forwardFLOPs(_ shape: Shape) -> Int? {
    guard let enc = net.encoder as? FLOPCounting else { return nil }
    let (fe, h) = enc.forwardFLOPs(shape)
    let (fh, _) = net.head.forwardFLOPs(Shape(h.n, h.perSample))
    return fe + fh
  }
}
