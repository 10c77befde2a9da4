import Model

/// The embedding loss of the parallel autoencoders.
public enum EmbeddingLoss: String, OptionChoice {
  /// Mean squared difference over all elements (the notebook's MSE form; the default).
  case mse
  /// Mean absolute difference over all elements.
  case l1
  /// Mean over rows of 1 − cos.
  case cosine
  /// NT-Xent over the global batch (temperature `temperature`).
  case simclr
  /// Barlow Twins over the global batch (λ `barlow-lambda`).
  case barlow
}

extension Options {
  public var alpha: ConfigOption<Float> { ConfigOption(
    "alpha", default: 1, resume: .remark,
    help: "parallel-ae / parallel-dae: weight α of the embedding loss in L = L_rec,1 + L_rec,2 + α·L_emb.",
    check: { $0 >= 0 && $0.isFinite ? nil : "must be ≥ 0" }) }
  public var embeddingLoss: ConfigOption<EmbeddingLoss> { ConfigOption(
    "embeddingLoss", default: .mse, resume: .mustMatch,
    help: "parallel-ae / parallel-dae: L_emb between the two views' embeddings (mse, l1, cosine, simclr, barlow).") }
}

/// The SSL notebook's autoencoders on `conv6` with a decoder that mirrors it
/// (`Conv6Decoder`), reconstruction loss MSE against the normalised target, over the global
/// batch:
///
/// - `ae`: the clean image in, the clean image out;
/// - `dae`: an augmented view in (the "corruption" is the augmentation distribution), the
///   clean image out;
/// - `parallel-ae`: two views in, each reconstructing itself, plus α·L_emb between their
///   embeddings: `L = L_rec,1 + L_rec,2 + α·L_emb`;
/// - `parallel-dae`: two views in, each reconstructing the clean image, plus α·L_emb.
///
/// Subclasses only name the variant (one registry case each).
public class AutoencoderMethod: SSLMethod {
  public enum Variant: String, Sendable { case ae, dae, parallelAE = "parallel-ae", parallelDAE = "parallel-dae" }
  class var variant: Variant { .ae }

  public class var options: [any AnyConfigOption] { [Options().alpha, Options().embeddingLoss] }
  public class var inputs: MethodInputs {
    switch variant {
    case .ae: .clean
    case .dae: .viewAndClean
    case .parallelAE: .twoViews
    case .parallelDAE: .twoViewsAndClean
    }
  }

  public class func validate(_ config: PretrainConfig) throws {
    guard config.model == .conv6 else {
      throw ConfigError(message: "method \(variant.rawValue) trains conv6 with its mirrored decoder: use --model conv6")
    }
  }

  public let arena = ParameterArena()
  public let encoder: any Encoder
  let decoder: Conv6Decoder
  let reconstruction: PairLoss
  let embedding: PairLoss?
  let ntxent: NTXentLoss?
  let barlow: BarlowTwinsLoss?
  let alpha: Float
  /// [2B, C, H, W] targets of parallel-dae (the clean image twice).
  private let targets = Storage()

  public required init(config: PretrainConfig, collective: Collective) throws {
    try Self.validate(config)
    let shape = config.sampleShape
    let conv6 = Conv6(arena: arena, prefix: "encoder", inChannels: shape.c, inputSize: shape.h)
    encoder = conv6
    decoder = Conv6Decoder(arena: arena, prefix: "decoder", mirroring: conv6, outputSize: shape.h)
    arena.allocate(seed: config.seed)
    reconstruction = PairLoss(.mse, collective: collective)
    alpha = config.alpha
    let parallel = Self.variant == .parallelAE || Self.variant == .parallelDAE
    let kind = parallel ? config.embeddingLoss : nil
    ntxent = kind == .simclr ? NTXentLoss(temperature: config.temperature, collective: collective) : nil
    barlow = kind == .barlow ? BarlowTwinsLoss(lambda: config.barlowLambda, collective: collective) : nil
    switch kind {
    case .mse?: embedding = PairLoss(.mse, collective: collective)
    case .l1?: embedding = PairLoss(.l1, collective: collective)
    case .cosine?: embedding = PairLoss(.cosine, collective: collective)
    case .simclr?, .barlow?, nil: embedding = nil
    }
  }

  public var progressReporters: [ProgressHooks] { [decoder, encoder as? ProgressHooks].compactMap { $0 } }

  public func forwardBackward(_ batch: MethodBatch, lossScale: Float) throws -> TaskLosses {
    let variant = Self.variant
    let input: Tensor
    switch variant {
    case .ae:
      guard let clean = batch.clean else { throw ConfigError(message: "ae: the batch has no clean inputs") }
      input = clean
    case .dae, .parallelAE, .parallelDAE: input = batch.views
    }
    let h = try encoder.forward(input, training: true)
    let flat = h.reshaped(Shape(h.shape.n, h.shape.perSample))
    let out = try decoder.forward(flat, training: true)
    let target: Tensor
    switch variant {
    case .ae, .parallelAE: target = input
    case .dae: target = batch.clean!
    case .parallelDAE:
      let clean = batch.clean!
      let t = targets.tensor(input.shape)
      t.data.update(from: clean.data, count: clean.count)
      (t.data + clean.count).update(from: clean.data, count: clean.count)
      target = t
    }
    // Two views of equal size: L_rec,1 + L_rec,2 = 2 × the mean over both.
    let views = Float(variant == .parallelAE || variant == .parallelDAE ? 2 : 1)
    let rec = try reconstruction.forward(out, target) * views
    let (dOut, _) = try reconstruction.backward()
    scaleInPlace(dOut, lossScale * views)
    let dh = try decoder.backward(dOut)
    var tasks: [(String, Float)] = [("reconstruction", rec)]
    var total = rec
    if views == 2 {
      let b = flat.shape.n / 2, d = flat.shape.perSample
      let e1 = Tensor(flat.data, Shape(b, d)), e2 = Tensor(flat.data + b * d, Shape(b, d))
      let emb: Float
      if let ntxent {
        emb = try ntxent.forward(flat)
        let dz = try ntxent.backward()
        for i in 0..<dh.count { dh.data[i] += alpha * lossScale * dz.data[i] }
      } else if let barlow {
        emb = try barlow.forward(z1: e1, z2: e2)
        let (d1, d2) = try barlow.backward()
        for i in 0..<(b * d) {
          dh.data[i] += alpha * lossScale * d1.data[i]
          dh.data[b * d + i] += alpha * lossScale * d2.data[i]
        }
      } else {
        emb = try embedding!.forward(e1, e2)
        let (d1, d2) = try embedding!.backward()
        for i in 0..<(b * d) {
          dh.data[i] += alpha * lossScale * d1.data[i]
          dh.data[b * d + i] += alpha * lossScale * d2.data[i]
        }
      }
      tasks.append(("embedding", emb))
      total += alpha * emb
    }
    _ = try encoder.backward(dh.reshaped(h.shape))
    return TaskLosses(tasks: tasks, total: total)
  }

  public func forwardFLOPs(_ shape: Shape) -> Int? { nil }
}

public final class DAEMethod: AutoencoderMethod {
  override class var variant: Variant { .dae }
}

public final class ParallelAEMethod: AutoencoderMethod {
  override class var variant: Variant { .parallelAE }
}

public final class ParallelDAEMethod: AutoencoderMethod {
  override class var variant: Variant { .parallelDAE }
}
