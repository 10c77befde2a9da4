import Model

extension Options {
  public var temperature: ConfigOption<Float> { ConfigOption(
    "temperature", default: 0.2, help: "NT-Xent temperature (SimCLR, and MT-SLVR's SimCLR branch).",
    check: { $0 > 0 && $0.isFinite ? nil : "must be positive" }) }
  public var projectionHidden: ConfigOption<Int> { ConfigOption(
    "projectionHidden", default: 0,
    help: "Hidden width of SimCLR's projection head, Linear → BN → ReLU → Linear (0: the encoder's feature width).",
    check: { (0...65536).contains($0) ? nil : "must be in 0…65536" }) }
  public var projectionLayers: ConfigOption<Int> { ConfigOption(
    "projectionLayers", default: 2,
    help: "Linear layers in SimCLR's projection head: 2 (Linear → BN → ReLU → Linear) or 3 (SimCLR v2's, "
      + "a second hidden Linear → BN → ReLU).",
    check: { (2...3).contains($0) ? nil : "must be 2 or 3" }) }
}

/// SimCLR (Chen et al. 2020): encoder → projection head → NT-Xent over the global batch
/// (DESIGN.md invariants 3, 4, 8).
public final class SimCLRMethod: SSLMethod {
  public static var options: [any AnyConfigOption] { [Options().temperature, Options().projectionHidden, Options().projectionLayers] }

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

  public func forwardBackward(_ batch: MethodBatch, lossScale: Float) throws -> TaskLosses {
    let h = try net.encoder.forward(batch.views, training: true)
    let z = try net.head.forward(h.reshaped(Shape(h.shape.n, h.shape.perSample)), training: true)
    let value = try loss.forward(z)
    let dz = try loss.backward()
    scaleInPlace(dz, lossScale)
    let dh = try net.head.backward(dz)
    _ = try net.encoder.backward(dh.reshaped(h.shape))
    return TaskLosses("ntxent", value)
  }

  public func forwardFLOPs(_ shape: Shape) -> Int? {
    guard let enc = net.encoder as? FLOPCounting else { return nil }
    let (fe, h) = enc.forwardFLOPs(shape)
    let (fh, _) = net.head.forwardFLOPs(Shape(h.n, h.perSample))
    return fe + fh
  }
}
