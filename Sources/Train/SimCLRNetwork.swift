import Model

/// Encoder + projection head on one arena, with names as a PyTorch module
/// `{encoder: ..., head: ...}` would give them (`encoder.0.weight`, `head.0.weight`, …).
public final class SimCLRNetwork {
  public let arena: ParameterArena
  public let encoder: any Encoder
  public let head: ProjectionHead

  /// - Parameters:
  ///   - collective: the world for sync BatchNorm (`nil`: per-rank statistics).
  ///   - input: one input sample's shape (`config.sampleShape`); it fixes the encoder's
  ///     `prePoolDim` (and samplecnn's input length). nil: the model's reference input
  ///     (28×28 images, 59049 samples).
  ///   - conv4Width: the channels of conv4's blocks (`--conv4-width`; other models ignore it).
  ///   - projectionHidden: the head's hidden width (0: the encoder's feature width).
  ///   - projectionLayers: the head's Linear layers (2, or SimCLR v2's 3).
  public init(
    model: EncoderKind, projectionDim: Int, collective: Collective?, seed: UInt64, input: Shape? = nil,
    conv4Width: Int = 64, projectionHidden: Int = 0, projectionLayers: Int = 2
  ) throws {
    arena = ParameterArena()
    encoder = try Self.makeEncoder(
      model, arena: arena, prefix: "encoder", collective: collective, input: input, conv4Width: conv4Width)
    let d = encoder.featureDim
    head = ProjectionHead(
      arena: arena, prefix: "head", inFeatures: d, hidden: projectionHidden > 0 ? projectionHidden : d,
      outFeatures: projectionDim, depth: projectionLayers,
      makeNorm: Self.norm(arena, collective))
    arena.allocate(seed: seed)
  }

  /// The network of a configuration (its model, projection and input shape).
  public convenience init(config: PretrainConfig, collective: Collective?) throws {
    try self.init(
      model: config.model, projectionDim: config.projectionDim, collective: collective, seed: config.seed,
      input: config.sampleShape, conv4Width: config.conv4Width, projectionHidden: config.projectionHidden,
      projectionLayers: config.projectionLayers)
  }

  static func norm(_ arena: ParameterArena, _ collective: Collective?) -> (String, Int) -> Layer {
    { name, channels in BatchNorm(arena: arena, name: name, channels: channels, collective: collective) }
  }

  /// The encoder of a configuration (its model, input shape and conv4 width), named `encoder.…`.
  public static func makeEncoder(config: PretrainConfig, arena: ParameterArena, collective: Collective?) throws -> any Encoder {
    try makeEncoder(
      config.model, arena: arena, prefix: "encoder", collective: collective, input: config.sampleShape,
      conv4Width: config.conv4Width)
  }

  /// Builds a named encoder on `arena` (names from DESIGN.md's reference models).
  /// - Parameters:
  ///   - input: one input sample's shape, `Shape(1, C, H, W)` (nil: the model's reference
  ///     input). It sets resnet18's `prePoolDim` on non-square log-mel inputs
  ///     (`1 × nMels × frames`) and samplecnn's input length (`1 × 1 × L`).
  ///   - conv4Width: the channels of conv4's blocks (other models ignore it).
  public static func makeEncoder(
    _ model: EncoderKind, arena: ParameterArena, prefix: String, collective: Collective?, input: Shape? = nil,
    conv4Width: Int = 64
  ) throws -> any Encoder {
    switch model {
    case .conv4:
      return Conv4(
        arena: arena, prefix: prefix, inChannels: input?.c ?? 1, width: conv4Width, inputSize: input?.h ?? 28,
        inputWidth: input?.w, makeNorm: norm(arena, collective))
    case .resnet18:
      return ResNet18(
        arena: arena, prefix: prefix, inChannels: input?.c ?? 1, inputSize: input?.h ?? 28, inputWidth: input?.w,
        makeNorm: norm(arena, collective))
    case .conv6:
      return Conv6(arena: arena, prefix: prefix, inChannels: input?.c ?? 1, inputSize: input?.h ?? 28)
    case .samplecnn:
      return try SampleCNN(
        arena: arena, prefix: prefix, inputLength: input.map { $0.w } ?? SampleCNN.inputLength,
        makeNorm: norm(arena, collective))
    }
  }
}
