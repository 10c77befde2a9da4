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
/// With `layerwise` each conv6 stage is trained in turn with the decoder stage that mirrors
/// it (`Conv6.stages`, `Conv6Decoder.stages`): stage k's input is the frozen stages' output
/// (of the view, or for the denoising variants of the corrupted view) and its target the frozen
/// stages' output of the same image (clean for the denoising variants): the image itself at
/// stage 0. The embedding term sits on stage k's output.
///
/// Subclasses only name the variant (one registry case each).
public class AutoencoderMethod: SSLMethod, LayerwiseTrainable {
  public enum Variant: String, Sendable { case ae, dae, parallelAE = "parallel-ae", parallelDAE = "parallel-dae" }
  class var variant: Variant { .ae }

  public class var options: [any AnyConfigOption] {
    [Options().alpha, Options().embeddingLoss, Options().layerwise, Options().stageEpochs, Options().stageSteps]
  }
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
  let conv6: Conv6
  let decoder: Conv6Decoder
  let layerwise: Bool
  public var stage = 0
  public var stageCount: Int { Conv6.stages.count }
  let reconstruction: PairLoss
  let embedding: PairLoss?
  let ntxent: NTXentLoss?
  let barlow: BarlowTwinsLoss?
  let alpha: Float
  /// [2B, C, H, W] targets of parallel-dae (the clean image twice).
  private let targets = Storage()
  /// [B or 2B, C_k, h, h] layer-wise targets: the frozen stages' output of the target images.
  private let stageTargets = Storage()

  public required init(config: PretrainConfig, collective: Collective) throws {
    try Self.validate(config)
    let shape = config.sampleShape
    let conv6 = Conv6(arena: arena, prefix: "encoder", inChannels: shape.c, inputSize: shape.h)
    encoder = conv6
    self.conv6 = conv6
    decoder = Conv6Decoder(arena: arena, prefix: "decoder", mirroring: conv6, outputSize: shape.h)
    layerwise = config.layerwise
    // A stage's input comes from frozen layers (or is the data): its gradient is never used.
    if layerwise { for k in Conv6.stages.indices { conv6.setComputesInputGradient(false, stage: k) } }
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

  public func trainableRanges(stage k: Int) -> [NamedRange] {
    let names = conv6.parameterNames(stage: k).union(decoder.parameterNames(stage: k, prefix: "decoder"))
    return arena.parameterRanges.filter { names.contains($0.name) }
  }

  public func forwardBackward(_ batch: MethodBatch, lossScale: Float) throws -> TaskLosses {
    if layerwise { return try forwardBackward(batch, stage: stage, lossScale: lossScale) }
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
      let emb = try addEmbeddingGradient(flat, into: dh, lossScale: lossScale)
      tasks.append(("embedding", emb))
      total += alpha * emb
    }
    _ = try encoder.backward(dh.reshaped(h.shape))
    return TaskLosses(tasks: tasks, total: total)
  }

  /// Layer-wise: stage `k` with its mirrored decoder stage on the frozen stages' output.
  func forwardBackward(_ batch: MethodBatch, stage k: Int, lossScale: Float) throws -> TaskLosses {
    guard Conv6.stages.indices.contains(k) else {
      throw ConfigError(message: "layer-wise stage \(k) does not exist (conv6 has \(Conv6.stages.count))")
    }
    let variant = Self.variant
    let parallel = variant == .parallelAE || variant == .parallelDAE
    let input: Tensor
    if variant == .ae {
      guard let clean = batch.clean else { throw ConfigError(message: "ae: the batch has no clean inputs") }
      input = clean
    } else {
      input = batch.views
    }
    // The denoising variants' target is the clean image's (frozen) representation; it is
    // computed first and copied out, as the views' pass reuses the layers' buffers.
    var cleanTarget: Tensor?
    if variant == .dae || variant == .parallelDAE {
      guard let clean = batch.clean else { throw ConfigError(message: "\(variant.rawValue): the batch has no clean inputs") }
      let c = try conv6.forward(clean, stages: 0..<k, training: false)
      let copies = variant == .parallelDAE ? 2 : 1
      let t = stageTargets.tensor(Shape(copies * c.shape.n, c.shape.c, c.shape.h, c.shape.w))
      for j in 0..<copies { (t.data + j * c.count).update(from: c.data, count: c.count) }
      cleanTarget = t
    }
    let below = try conv6.forward(input, stages: 0..<k, training: false)
    let target = cleanTarget ?? below
    let z = try conv6.forward(below, stages: k..<(k + 1), training: true)
    let out = try decoder.forward(z, stage: k, training: true)
    let views = Float(parallel ? 2 : 1)
    let rec = try reconstruction.forward(out, target) * views
    let (dOut, _) = try reconstruction.backward()
    scaleInPlace(dOut, lossScale * views)
    let dz = try decoder.backward(dOut, stage: k)
    var tasks: [(String, Float)] = [("reconstruction", rec)]
    var total = rec
    if parallel {
      let emb = try addEmbeddingGradient(z.reshaped(Shape(z.shape.n, z.shape.perSample)), into: dz, lossScale: lossScale)
      tasks.append(("embedding", emb))
      total += alpha * emb
    }
    _ = try conv6.backward(dz, stage: k)
    return TaskLosses(tasks: tasks, total: total)
  }

  /// α·∂L_emb/∂h of the two views' embeddings `flat` ([2B, D]: view 1 rows, then view 2)
  /// added to `dh` (same layout); returns L_emb.
  func addEmbeddingGradient(_ flat: Tensor, into dh: Tensor, lossScale: Float) throws -> Float {
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
    return emb
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
