import Model

/// Encoder + projection head on one arena, with names as a PyTorch module
/// `{encoder: ..., head: ...}` would give them (`encoder.0.weight`, `head.0.weight`, …).
public final class SimCLRNetwork {
  public let arena: ParameterArena
  public let encoder: any Encoder
  public let head: ProjectionHead

  /// - Parameters:
  ///   - collective: the world for sync BatchNorm (`nil`: per-rank statistics).
  public init(model: String, projectionDim: Int, collective: Collective?, seed: UInt64) throws {
    arena = ParameterArena()
    encoder = try Self.makeEncoder(model, arena: arena, prefix: "encoder", collective: collective)
    let d = encoder.featureDim
    head = ProjectionHead(
      arena: arena, prefix: "head", inFeatures: d, hidden: d, outFeatures: projectionDim,
      makeNorm: Self.norm(arena, collective))
    arena.allocate(seed: seed)
  }

  static func norm(_ arena: ParameterArena, _ collective: Collective?) -> (String, Int) -> Layer {
    { name, channels in BatchNorm(arena: arena, name: name, channels: channels, collective: collective) }
  }

  /// Builds a named encoder on `arena` (names from DESIGN.md's reference models).
  public static func makeEncoder(
    _ model: String, arena: ParameterArena, prefix: String, collective: Collective?
  ) throws -> any Encoder {
    switch model {
    case "conv4":
      return Conv4(arena: arena, prefix: prefix, inChannels: 1, width: 64, makeNorm: norm(arena, collective))
    case "resnet18":
      return ResNet18(arena: arena, prefix: prefix, inChannels: 1, makeNorm: norm(arena, collective))
    default:
      throw ConfigError(message: "unknown model '\(model)' (known: \(PretrainConfig.models.joined(separator: ", ")))")
    }
  }
}
