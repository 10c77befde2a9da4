import Foundation
import Model
import Yams

/// Everything a pretraining run depends on. Loaded from a YAML preset (`configs/*.yaml`),
/// then overridden by command-line flags; the resolved configuration is written next to
/// the logs (`config.yaml`) and into every checkpoint's `state.json`.
public struct PretrainConfig: Codable, Equatable, Sendable {
  public var method = "simclr"
  public var model = "conv4"
  public var data = "fashion-mnist"
  /// Directory of the IDX files (Debian's `dataset-fashion-mnist`).
  public var dataDir = "/usr/share/datasets/fashion-mnist"
  public var globalBatch = 256
  public var epochs = 1
  /// Stop after this many optimizer steps (0: run all epochs).
  public var maxSteps = 0
  public var optimizer = "lars"
  /// Base learning rate before scaling by the global batch.
  public var baseLR: Float = 0.3
  /// `none`, `linear` (base·B/256) or `sqrt` (base·√B).
  public var lrScaling = "linear"
  public var momentum: Float = 0.9
  public var weightDecay: Float = 1e-6
  public var larsEta: Float = 0.001
  public var warmupSteps = 10
  public var temperature: Float = 0.2
  /// Augmentation strength in [0, 1] (0 disables augmentation).
  public var augmentStrength: Float = 1
  /// BatchNorm statistics over the global batch (DESIGN.md invariant 4).
  public var syncBN = true
  public var projectionDim = 128
  public var seed: UInt64 = 0
  /// Output directory for logs and checkpoints.
  public var runDir = "runs/simclr"
  /// Write a checkpoint every N steps (0: only at the end).
  public var checkpointEvery = 0
  /// Checkpoints to keep.
  public var keep = 2
  /// Print/log every N steps.
  public var logEvery = 1
  /// Gradient bucket cap in MiB (0: one fused all-reduce after backward).
  public var bucketMB: Double = 4
  /// Micro-batches per optimizer step; gradients are synchronised on the last only.
  public var accumulate = 1
  /// Element type of gradients on the wire: fp32, bf16 or fp16.
  public var gradDType = "fp32"
  /// How MPI progresses buckets during backward: poll (MPI_Test from backward's hooks) or
  /// thread (a communication thread, MPI_THREAD_MULTIPLE).
  public var syncProgress = "poll"
  /// Chrome trace-event JSON written by rank 0 ("" = none).
  public var timeline = ""
  /// Seconds a rank may wait in one phase of a step before the job is aborted (0: off).
  public var stallTimeout: Double = 60
  /// Compare parameter checksums across ranks every N steps (0: never).
  public var checkEvery = 0
  /// MT-SLVR: weight w of the predictive loss (total = contrastive + w·predictive).
  public var predWeight: Float = 1
  /// MT-SLVR adapters: none, bn (task-specific BN), series or parallel (residual adapters).
  public var adapter = "parallel"
  /// MT-SLVR's contrastive branch: simclr or simsiam.
  public var contrastive = "simclr"
  /// SimSiam predictor bottleneck width (0: projection-dim / 4).
  public var predictorDim = 0
  /// How image augmentations are chosen: auto (mtslvr for transform-pred and mtslvr, else
  /// simclr), simclr (each step with its probability) or mtslvr (k ~ U{1…n} distinct
  /// augmentations per sample, shared by both views).
  public var augmentSampling = "auto"

  // Audio (`spoken-digits`, `audio-manifest`, `audio-folder`).
  /// Samples per view (0: the front end's default — 59049 = 3^10 for raw `samplecnn`, one
  /// second of audio for `logmel`).
  public var audioLength = 0
  /// Sample rate clips are decoded (resampled) to, Hz.
  public var sampleRate = 16000
  /// `raw` (views [N, 1, 1, L], for samplecnn) or `logmel` (views [N, 1, nMels, frames], for
  /// 2-d encoders such as resnet18).
  public var frontEnd = "raw"
  /// Log-mel FFT size (a power of two), hop and mel bands.
  public var nFFT = 512
  public var hop = 160
  public var nMels = 64
  /// Time-domain augmentation set: clmr, mtslvr or none.
  public var augmentPreset = "clmr"

  public init() {}

  public static let methods = ["simclr", "simsiam", "transform-pred", "mtslvr"]
  public static let adapters = ["none", "bn", "series", "parallel"]
  public static let contrastiveBranches = ["simclr", "simsiam"]
  public static let augmentSamplings = ["auto", "simclr", "mtslvr"]
  public static let models = ["conv4", "resnet18", "samplecnn"]
  public static let datasets = ["fashion-mnist", "spoken-digits", "audio-manifest", "audio-folder"]
  public static let audioDatasets: Set<String> = ["spoken-digits", "audio-manifest", "audio-folder"]
  public static let frontEnds = ["raw", "logmel"]
  public static let augmentPresets = ["clmr", "mtslvr", "none"]

  /// Whether the data is audio (views from `AudioViewSource`).
  public var isAudio: Bool { Self.audioDatasets.contains(data) }

  /// Samples per audio view: `audioLength`, or the front end's default.
  public var resolvedAudioLength: Int {
    audioLength > 0 ? audioLength : frontEnd == "logmel" ? sampleRate : 59049
  }

  /// One training view, `Shape(1, C, H, W)`: 1×28×28 for Fashion-MNIST, 1×1×L for raw audio,
  /// 1×nMels×frames for log-mel.
  public var sampleShape: Shape {
    guard isAudio else { return Shape(1, 1, 28, 28) }
    let L = resolvedAudioLength
    return frontEnd == "logmel" ? Shape(1, 1, nMels, 1 + L / hop) : Shape(1, 1, 1, L)
  }
  public static let optimizers = ["lars", "sgd"]
  public static let scalings = ["none", "linear", "sqrt"]
  public static let gradDTypes = ["fp32", "bf16", "fp16"]
  public static let syncProgressModes = ["poll", "thread"]

  /// Checks names and ranges; the message names the offending key.
  public func validate(worldSize: Int = 1) throws {
    func bad(_ s: String) -> ConfigError { ConfigError(message: s) }
    guard Self.methods.contains(method) else {
      throw bad("unknown method '\(method)' (known: \(Self.methods.joined(separator: ", ")))")
    }
    guard Self.models.contains(model) else {
      throw bad("unknown model '\(model)' (known: \(Self.models.joined(separator: ", ")))")
    }
    guard Self.datasets.contains(data) else {
      throw bad("unknown data '\(data)' (known: \(Self.datasets.joined(separator: ", ")))")
    }
    guard Self.optimizers.contains(optimizer) else {
      throw bad("unknown optimizer '\(optimizer)' (known: \(Self.optimizers.joined(separator: ", ")))")
    }
    guard Self.scalings.contains(lrScaling) else {
      throw bad("unknown lr-scaling '\(lrScaling)' (known: \(Self.scalings.joined(separator: ", ")))")
    }
    guard globalBatch > 0 else { throw bad("global-batch must be positive (got \(globalBatch))") }
    guard globalBatch % worldSize == 0 else {
      throw bad("global-batch \(globalBatch) is not divisible by the \(worldSize) ranks")
    }
    guard epochs > 0 || maxSteps > 0 else { throw bad("epochs or max-steps must be positive") }
    guard maxSteps >= 0 else { throw bad("max-steps must be ≥ 0 (got \(maxSteps))") }
    guard temperature > 0 else { throw bad("temperature must be positive (got \(temperature))") }
    guard baseLR > 0, baseLR.isFinite else { throw bad("base-lr must be positive (got \(baseLR))") }
    guard (0...1).contains(augmentStrength) else {
      throw bad("augment-strength must be in [0, 1] (got \(augmentStrength))")
    }
    guard keep >= 1 else { throw bad("keep must be ≥ 1 (got \(keep))") }
    guard logEvery >= 1 else { throw bad("log-every must be ≥ 1 (got \(logEvery))") }
    guard checkpointEvery >= 0 else { throw bad("checkpoint-every must be ≥ 0") }
    guard bucketMB >= 0, bucketMB.isFinite else { throw bad("bucket-mb must be ≥ 0 (got \(bucketMB))") }
    guard accumulate >= 1 else { throw bad("accumulate must be ≥ 1 (got \(accumulate))") }
    guard globalBatch % (accumulate * worldSize) == 0 else {
      throw bad(
        "global-batch \(globalBatch) is not divisible by accumulate \(accumulate) × \(worldSize) ranks")
    }
    guard Self.gradDTypes.contains(gradDType) else {
      throw bad("unknown grad-dtype '\(gradDType)' (known: \(Self.gradDTypes.joined(separator: ", ")))")
    }
    guard Self.syncProgressModes.contains(syncProgress) else {
      throw bad("unknown sync-progress '\(syncProgress)' (known: poll, thread)")
    }
    guard stallTimeout >= 0, stallTimeout.isFinite else { throw bad("stall-timeout must be ≥ 0") }
    guard checkEvery >= 0 else { throw bad("check-every must be ≥ 0") }
    guard Self.adapters.contains(adapter) else {
      throw bad("unknown adapter '\(adapter)' (known: \(Self.adapters.joined(separator: ", ")))")
    }
    guard Self.contrastiveBranches.contains(contrastive) else {
      throw bad("unknown contrastive '\(contrastive)' (known: simclr, simsiam)")
    }
    guard predWeight >= 0, predWeight.isFinite else { throw bad("pred-weight must be ≥ 0 (got \(predWeight))") }
    guard predictorDim >= 0 else { throw bad("predictor-dim must be ≥ 0 (got \(predictorDim))") }
    guard Self.augmentSamplings.contains(augmentSampling) else {
      throw bad("unknown augment-sampling '\(augmentSampling)' (known: auto, simclr, mtslvr)")
    }
    guard audioLength >= 0 else { throw bad("audio-length must be ≥ 0 (got \(audioLength))") }
    guard sampleRate > 0 else { throw bad("sample-rate must be positive (got \(sampleRate))") }
    guard Self.frontEnds.contains(frontEnd) else {
      throw bad("unknown front-end '\(frontEnd)' (known: \(Self.frontEnds.joined(separator: ", ")))")
    }
    guard Self.augmentPresets.contains(augmentPreset) else {
      throw bad("unknown augment-preset '\(augmentPreset)' (known: \(Self.augmentPresets.joined(separator: ", ")))")
    }
    guard nFFT >= 2, nFFT & (nFFT - 1) == 0 else { throw bad("n-fft must be a power of two (got \(nFFT))") }
    guard hop > 0 else { throw bad("hop must be positive (got \(hop))") }
    guard nMels > 0, nMels <= nFFT / 2 + 1 else { throw bad("n-mels must be in 1…\(nFFT / 2 + 1) (got \(nMels))") }
    if model == "samplecnn" {
      guard isAudio, frontEnd == "raw" else {
        throw bad("model samplecnn reads raw waveforms: use audio data with front-end raw")
      }
      // The stem and nine pools divide by 3^10; the 512-d output needs 1 remaining sample.
      guard (59049..<177147).contains(resolvedAudioLength) else {
        throw bad("samplecnn needs audio-length in 59049…177146 samples (3^10 ≤ L < 3^11; got \(resolvedAudioLength))")
      }
    } else if isAudio && model == "conv4" {
      throw bad("model conv4 takes 28×28 images; on audio use samplecnn (raw) or resnet18 (logmel)")
    } else if isAudio && frontEnd == "raw" {
      throw bad("model \(model) is 2-d: use front-end logmel on audio (or model samplecnn)")
    }
  }

  /// Reads a YAML preset. Keys absent from the file keep their defaults; unknown keys are an
  /// error naming the file and the key (a typo must not silently fall back to a default).
  public static func load(yamlPath: String) throws -> PretrainConfig {
    let text: String
    do { text = try String(contentsOfFile: yamlPath, encoding: .utf8) } catch {
      throw ConfigError(message: "\(yamlPath): cannot read config file")
    }
    return try parse(yaml: text, source: yamlPath)
  }

  public static func parse(yaml text: String, source: String) throws -> PretrainConfig {
    let node: Any?
    do { node = try Yams.load(yaml: text) } catch {
      throw ConfigError(message: "\(source): not valid YAML: \(error)")
    }
    guard node == nil || node is [String: Any] else {
      throw ConfigError(message: "\(source): expected a mapping of keys to values")
    }
    let known = Set(CodingKeys.allKeys)
    for key in (node as? [String: Any] ?? [:]).keys where !known.contains(key) {
      throw ConfigError(message: "\(source): unknown key '\(key)'")
    }
    do {
      return try YAMLDecoder().decode(PretrainConfig.self, from: text.isEmpty ? "{}" : text)
    } catch {
      throw ConfigError(message: "\(source): \(error)")
    }
  }

  public func yaml() -> String { (try? YAMLEncoder().encode(self)) ?? "" }

  enum CodingKeys: String, CodingKey, CaseIterable {
    case method, model, data, dataDir, globalBatch, epochs, maxSteps, optimizer, baseLR
    case lrScaling, momentum, weightDecay, larsEta, warmupSteps, temperature, augmentStrength
    case syncBN, projectionDim, seed, runDir, checkpointEvery, keep, logEvery
    case bucketMB, accumulate, gradDType, syncProgress, timeline, stallTimeout, checkEvery
    case predWeight, adapter, contrastive, predictorDim, augmentSampling
    case audioLength, sampleRate, frontEnd, nFFT, hop, nMels, augmentPreset
    static var allKeys: [String] { allCases.map(\.rawValue) }
  }

  public init(from decoder: Decoder) throws {
    self.init()
    let c = try decoder.container(keyedBy: CodingKeys.self)
    func get<T: Decodable>(_ k: CodingKeys, _ v: inout T) throws {
      if let x = try c.decodeIfPresent(T.self, forKey: k) { v = x }
    }
    try get(.method, &method); try get(.model, &model); try get(.data, &data)
    try get(.dataDir, &dataDir); try get(.globalBatch, &globalBatch); try get(.epochs, &epochs)
    try get(.maxSteps, &maxSteps); try get(.optimizer, &optimizer); try get(.baseLR, &baseLR)
    try get(.lrScaling, &lrScaling); try get(.momentum, &momentum)
    try get(.weightDecay, &weightDecay); try get(.larsEta, &larsEta)
    try get(.warmupSteps, &warmupSteps); try get(.temperature, &temperature)
    try get(.augmentStrength, &augmentStrength); try get(.syncBN, &syncBN)
    try get(.projectionDim, &projectionDim); try get(.seed, &seed); try get(.runDir, &runDir)
    try get(.checkpointEvery, &checkpointEvery); try get(.keep, &keep)
    try get(.logEvery, &logEvery)
    try get(.bucketMB, &bucketMB); try get(.accumulate, &accumulate)
    try get(.gradDType, &gradDType); try get(.syncProgress, &syncProgress)
    try get(.timeline, &timeline); try get(.stallTimeout, &stallTimeout)
    try get(.checkEvery, &checkEvery)
    try get(.predWeight, &predWeight); try get(.adapter, &adapter)
    try get(.contrastive, &contrastive); try get(.predictorDim, &predictorDim)
    try get(.augmentSampling, &augmentSampling)
    try get(.audioLength, &audioLength); try get(.sampleRate, &sampleRate)
    try get(.frontEnd, &frontEnd); try get(.nFFT, &nFFT); try get(.hop, &hop)
    try get(.nMels, &nMels); try get(.augmentPreset, &augmentPreset)
  }
}

public struct ConfigError: Error, CustomStringConvertible {
  public var message: String
  public init(message: String) { self.message = message }
  public var description: String { message }
}
