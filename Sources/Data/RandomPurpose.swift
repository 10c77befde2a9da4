/// What a random stream is for. Part of a `KeyedRandom` key, so the shuffle, the first view's
/// crop and the second view's crop of the same sample draw from independent streams.
/// Other targets may add their own: `extension RandomPurpose { static let mine = RandomPurpose(rawValue: 100) }`
/// (values below 100 are reserved for this file).
public struct RandomPurpose: RawRepresentable, Hashable, Sendable {
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }

  /// The epoch permutation of the sampler.
  public static let shuffle = RandomPurpose(rawValue: 1)
  /// The augmentations of a sample's first view.
  public static let view1 = RandomPurpose(rawValue: 2)
  /// The augmentations of a sample's second view.
  public static let view2 = RandomPurpose(rawValue: 3)
  /// Additive noise (e.g. denoising autoencoders).
  public static let noise = RandomPurpose(rawValue: 4)
  /// The choice of transformation (transformation prediction, MT-SLVR).
  public static let transform = RandomPurpose(rawValue: 5)
  /// Masks (masked autoencoders, spec-augment).
  public static let mask = RandomPurpose(rawValue: 6)
  /// Parameter initialisation.
  public static let initialization = RandomPurpose(rawValue: 7)
  /// Evaluation splits (few-shot episodes, k-means starts).
  public static let evaluation = RandomPurpose(rawValue: 8)
  /// A sample's invariance vector (amortised invariance learning).
  public static let invariance = RandomPurpose(rawValue: 9)
}
