import Data
import Dist
import Foundation
import Model
import Yams

/// Everything a pretraining run depends on: the value of every option in
/// `PretrainConfig.allOptions`. Loaded from a YAML preset (`configs/*.yaml`), then overridden
/// by command-line flags; the resolved configuration is written next to the logs
/// (`config.yaml`) and into every checkpoint's `state.json`.
///
/// Options are declared once, as `Option` values in `Options` (the run's below, a method's
/// beside the method); `config.globalBatch` reads one through dynamic member lookup.
@dynamicMemberLookup
public struct PretrainConfig: Codable, Equatable, Sendable {
  /// Values set explicitly, by option key; every other option has its default.
  var values: [String: any OptionValue] = [:]

  public init() {}

  public subscript<T>(option: ConfigOption<T>) -> T {
    get { values[option.key] as? T ?? option.defaultValue }
    set { values[option.key] = newValue }
  }

  public subscript<T>(dynamicMember path: KeyPath<Options, ConfigOption<T>>) -> T {
    get { self[Options()[keyPath: path]] }
    set { self[Options()[keyPath: path]] = newValue }
  }

  /// The value of `option` as any type (for tables and comparisons).
  func value(_ option: any AnyConfigOption) -> any OptionValue {
    values[option.key] ?? Self.defaultValue(option)
  }

  private static func defaultValue(_ option: any AnyConfigOption) -> any OptionValue {
    // Every option's default parses: it is its own canonical text.
    try! option.parse(option.defaultText, label: option.flag)
  }

  public static func == (a: PretrainConfig, b: PretrainConfig) -> Bool {
    allOptions.allSatisfy { $0.isEqual(a.value($0), b.value($0)) }
  }

  // MARK: The option tables

  /// The run's own options, by group (methods add theirs: `Method.options`).
  static let coreGroups: [(String, [any AnyConfigOption])] = [
    (
      "Run",
      [
        Options().method, Options().model, Options().data, Options().dataDir, Options().dataRead, Options().globalBatch,
        Options().epochs,
        Options().maxSteps, Options().seed, Options().runDir, Options().checkpointEvery, Options().keep, Options().logEvery,
        Options().logInterval,
      ]
    ),
    (
      "Optimisation",
      [
        Options().optimizer, Options().baseLR, Options().lrScaling, Options().momentum, Options().weightDecay,
        Options().larsEta, Options().warmupSteps, Options().adamBeta1, Options().adamBeta2, Options().adamEpsilon,
      ]
    ),
    ("Model", [Options().syncBN, Options().projectionDim, Options().conv4Width, Options().precision]),
    ("Image augmentation", [Options().augmentStrength, Options().blurProbability, Options().cropScale, Options().augmentSampling]),
    (
      "Audio",
      [
        Options().audioLength, Options().sampleRate, Options().frontEnd, Options().nFFT, Options().hop, Options().nMels,
        Options().augmentPreset,
      ]
    ),
    (
      "Gradient sync",
      [
        Options().bucketMB, Options().accumulate, Options().gradDType, Options().syncProgress, Options().timeline,
        Options().stallTimeout, Options().checkEvery,
      ]
    ),
  ]

  /// Every option: the run's, then each method's (an option two methods share is declared
  /// once and listed under the first).
  public static let optionGroups: [(String, [any AnyConfigOption])] = {
    var seen = Set<String>()
    var groups: [(String, [any AnyConfigOption])] = []
    for (title, options) in coreGroups + Method.allCases.map({ ("Method \($0.rawValue)", $0.implementation.options) }) {
      let fresh = options.filter { seen.insert($0.key).inserted }
      if !fresh.isEmpty { groups.append((title, fresh)) }
    }
    return groups
  }()

  public static let allOptions: [any AnyConfigOption] = optionGroups.flatMap(\.1)
  static let optionsByKey: [String: any AnyConfigOption] = Dictionary(
    allOptions.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })

  // MARK: Derived values

  /// Whether the data is audio (views from `AudioViewSource`).
  public var isAudio: Bool { self.data.isAudio }

  /// Samples per audio view: `audioLength`, or the front end's default.
  public var resolvedAudioLength: Int {
    self.audioLength > 0 ? self.audioLength : self.frontEnd == .logmel ? self.sampleRate : 59049
  }

  /// One training view, `Shape(1, C, H, W)`: 1×28×28 for Fashion-MNIST, C×S×S for a packed
  /// image set (from its `dataset.json`; 3×32×32 when it cannot be read — `validate` reports
  /// that), 1×1×L for raw audio, 1×nMels×frames for log-mel.
  public var sampleShape: Shape {
    if self.data == .images {
      let info = try? ImageSetInfo.read(directory: self.dataDir)
      return Shape(1, info?.channels ?? 3, info?.size ?? 32, info?.size ?? 32)
    }
    if self.data == .multiFashion { return Shape(1, 1, MultiFashion.size, MultiFashion.size) }
    guard isAudio else { return Shape(1, 1, 28, 28) }
    let L = resolvedAudioLength
    return self.frontEnd == .logmel ? Shape(1, 1, self.nMels, 1 + L / self.hop) : Shape(1, 1, 1, L)
  }

  // MARK: Validation

  /// Checks every value and the relations between them; the message names the option.
  public func validate(worldSize: Int = 1) throws {
    for option in Self.allOptions { try option.validate(value(option)) }
    func bad(_ s: String) -> ConfigError { ConfigError(message: s) }
    let globalBatch = self.globalBatch
    guard globalBatch % worldSize == 0 else {
      throw bad("global-batch \(globalBatch) is not divisible by the \(worldSize) ranks")
    }
    guard self.epochs > 0 || self.maxSteps > 0 else { throw bad("epochs or max-steps must be positive") }
    let accumulate = self.accumulate
    guard globalBatch % (accumulate * worldSize) == 0 else {
      throw bad(
        "global-batch \(globalBatch) is not divisible by accumulate \(accumulate) × \(worldSize) ranks")
    }
    guard self.nMels <= self.nFFT / 2 + 1 else {
      throw bad("n-mels must be in 1…\(self.nFFT / 2 + 1) (got \(self.nMels))")
    }
    if self.data == .images {
      do { _ = try ImageSetInfo.read(directory: self.dataDir) } catch {
        throw bad("data images: data-dir \(self.dataDir) is not a packed image set (\(error))")
      }
      if self.model == .conv4 && sampleShape.h < 16 {
        throw bad("model conv4 needs images of at least 16×16 (the set is \(sampleShape.h)×\(sampleShape.w))")
      }
    }
    if self.conv4Width != 64 && self.model != .conv4 {
      throw bad("conv4-width \(self.conv4Width) applies to model conv4 only (model is \(self.model.rawValue))")
    }
    switch self.model {
    case .samplecnn:
      guard isAudio, self.frontEnd == .raw else {
        throw bad("model samplecnn reads raw waveforms: use audio data with front-end raw")
      }
      // The stem and nine pools divide by 3^10; the 512-d output needs 1 remaining sample.
      guard (59049..<177147).contains(resolvedAudioLength) else {
        throw bad("samplecnn needs audio-length in 59049…177146 samples (3^10 ≤ L < 3^11; got \(resolvedAudioLength))")
      }
    case .conv6 where isAudio:
      throw bad("model conv6 takes images; on audio use samplecnn (raw) or resnet18 (logmel)")
    case .conv4 where isAudio && (self.frontEnd == .raw || sampleShape.h < 16 || sampleShape.w < 16):
      throw bad(
        "model conv4 takes images, or log-mel spectrograms of at least 16×16 (front-end logmel, n-mels ≥ 16, audio-length/hop ≥ 15); on raw audio use samplecnn")
    case _ where isAudio && self.frontEnd == .raw:
      throw bad("model \(self.model.rawValue) is 2-d: use front-end logmel on audio (or model samplecnn)")
    default: break
    }
    try TaskBalancers.validate(self)
    try LayerwiseSchedule.validate(self)
    try self.method.implementation.validate(self)
  }

  // MARK: YAML and JSON

  /// Reads a YAML preset. Keys absent from the file keep their defaults; unknown keys are an
  /// error naming the file and the key (a typo must not silently fall back to a default).
  public static func load(yamlPath: String) throws -> PretrainConfig {
    let text: String
    do { text = try String(contentsOfFile: yamlPath, encoding: .utf8) } catch {
      throw ConfigError(message: "\(yamlPath): cannot read config file")
    }
    return try parse(yaml: text, source: yamlPath)
  }

  /// A mapping of option keys to scalars; each value is parsed as its option's flag would be.
  public static func parse(yaml text: String, source: String) throws -> PretrainConfig {
    let node: Node?
    do { node = try Yams.compose(yaml: text) } catch {
      throw ConfigError(message: "\(source): not valid YAML: \(error)")
    }
    var config = PretrainConfig()
    guard let node else { return config }
    guard let mapping = node.mapping else {
      throw ConfigError(message: "\(source): expected a mapping of keys to values")
    }
    for (k, v) in mapping {
      guard let key = k.scalar?.string else { throw ConfigError(message: "\(source): a key is not a name") }
      guard let option = optionsByKey[key] else {
        throw ConfigError(message: "\(source): unknown key '\(key)'")
      }
      guard let scalar = v.scalar else {
        throw ConfigError(message: "\(source): \(key): expected a single value, not a list or mapping")
      }
      config.values[key] = try option.parse(scalar.string, label: "\(source): \(key)")
    }
    return config
  }

  /// Every option with its value, in declaration order (the run's `config.yaml`).
  public func yaml() -> String {
    var pairs: [(Node, Node)] = []
    for option in Self.allOptions {
      let text = value(option).optionText
      let style: Node.Scalar.Style = option.kind == String.optionKind ? .doubleQuoted : .plain
      pairs.append((Node(option.key), Node(text, Tag(.str), style)))
    }
    return (try? Yams.serialize(node: .mapping(Node.Mapping(pairs)))) ?? ""
  }

  struct Key: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
  }

  public init(from decoder: Swift.Decoder) throws {
    let c = try decoder.container(keyedBy: Key.self)
    for key in c.allKeys {
      guard let option = Self.optionsByKey[key.stringValue] else {
        throw ConfigError(message: "unknown configuration key '\(key.stringValue)'")
      }
      values[key.stringValue] = try option.decode(from: c, key: key)
    }
  }

  public func encode(to encoder: Swift.Encoder) throws {
    var c = encoder.container(keyedBy: Key.self)
    for option in Self.allOptions {
      try option.encode(value(option), to: &c, key: Key(stringValue: option.key))
    }
  }
}

public struct ConfigError: Error, CustomStringConvertible {
  public var message: String
  public init(message: String) { self.message = message }
  public var description: String { message }
}

// MARK: - Choices

/// Encoders (DESIGN.md's reference models).
public enum EncoderKind: String, OptionChoice {
  case conv4, resnet18, samplecnn
  /// The SSL notebook's encoder (no BN; the autoencoders' decoder mirrors it).
  case conv6
}

/// Training data.
public enum Dataset: String, OptionChoice {
  case fashionMNIST = "fashion-mnist"
  case spokenDigits = "spoken-digits"
  case audioManifest = "audio-manifest"
  case audioFolder = "audio-folder"
  /// A packed image set (`parallax data pack --images`): `data-dir` is its directory.
  case images
  /// Two Fashion-MNIST items on a 36×36 canvas, labels `left` and `right` (`MultiFashion`).
  case multiFashion = "multi-fashion"

  public var isAudio: Bool { self != .fashionMNIST && self != .images && self != .multiFashion }
}

public enum OptimizerKind: String, OptionChoice {
  case lars, sgd
  /// Adam (PyTorch's rule; `adam-beta1`, `adam-beta2`, `adam-epsilon`; L2 decay `weight-decay`).
  case adam
}

/// Audio front end: raw waveforms (`[N, 1, 1, L]`, samplecnn) or log-mel spectrograms
/// (`[N, 1, nMels, frames]`, 2-d encoders).
public enum FrontEnd: String, OptionChoice {
  case raw, logmel
}

/// Time-domain augmentation sets.
public enum AugmentPreset: String, OptionChoice {
  case clmr, mtslvr, none
}

/// How image augmentations are chosen; `auto` resolves per method.
public enum AugmentSamplingChoice: String, OptionChoice {
  case auto, simclr, mtslvr
}

/// How ranks read their part of each batch from record shards.
public enum DataRead: String, OptionChoice {
  /// MPI-IO collective reads when there are several ranks, `pread` for one.
  case auto
  case pread
  /// `MPI_File_read_at_all` over a file view of the rank's records.
  case mpiio
  /// `MPI_File_read_at` per record, no coordination between ranks.
  case mpiioIndependent = "mpiio-independent"
}

extension LRScaling: OptionChoice {}
extension WireType: OptionChoice {}
extension SyncProgress: OptionChoice {}
extension AdapterMode: OptionChoice {}

// MARK: - The run's options

extension Options {
  public var method: ConfigOption<Method> { ConfigOption(
    "method", default: .simclr, resume: .mustMatch, help: "Self-supervised method.") }
  public var model: ConfigOption<EncoderKind> { ConfigOption("model", default: .conv4, resume: .mustMatch, help: "Encoder.") }
  public var data: ConfigOption<Dataset> { ConfigOption("data", default: .fashionMNIST, resume: .mustMatch, help: "Dataset.") }
  public var dataDir: ConfigOption<String> { ConfigOption(
    "dataDir", default: "/usr/share/datasets/fashion-mnist", resume: .silent,
    help:
      "Directory of the Fashion-MNIST IDX files (Debian's dataset-fashion-mnist); for audio a corpus folder with manifest.csv (`parallax data spoken-digits --out DIR`), a CSV manifest or an audio shard (`parallax data pack`).",
    check: { $0.isEmpty ? "must not be empty" : nil }) }
  public var globalBatch: ConfigOption<Int> { ConfigOption(
    "globalBatch", default: 256, resume: .mustMatch,
    help: "Global batch (all ranks together); must divide by the rank count.", check: positive) }
  public var epochs: ConfigOption<Int> { ConfigOption("epochs", default: 1, help: "Epochs over the training set.", check: nonNegative) }
  public var maxSteps: ConfigOption<Int> { ConfigOption(
    "maxSteps", default: 0, help: "Stop after this many optimizer steps (0: all epochs).", check: nonNegative) }
  public var seed: ConfigOption<UInt64> { ConfigOption(
    "seed", default: 0, resume: .mustMatch, help: "Random seed (data order, augmentation, initialisation).") }
  public var runDir: ConfigOption<String> { ConfigOption(
    "runDir", default: "runs/simclr", resume: .silent, help: "Run directory for logs and checkpoints.",
    check: { $0.isEmpty ? "must not be empty" : nil }) }
  public var checkpointEvery: ConfigOption<Int> { ConfigOption(
    "checkpointEvery", default: 0, resume: .silent, help: "Checkpoint every N steps (0: at the end only).",
    check: nonNegative) }
  public var keep: ConfigOption<Int> { ConfigOption(
    "keep", default: 2, resume: .silent, help: "Checkpoints to keep.", check: ConfigOption<Int>.atLeast(1)) }
  public var logEvery: ConfigOption<Int> { ConfigOption(
    "logEvery", default: 1, resume: .silent, help: "Log every N steps.", check: ConfigOption<Int>.atLeast(1)) }

  public var logInterval: ConfigOption<Double> { ConfigOption(
    "logInterval", default: 30, resume: .silent,
    help:
      "Seconds between progress lines on stdout when it is not a terminal (a batch job's log, a file, a pipe; the terminal shows the bar instead); 0: every step.",
    check: finiteNonNegative) }

  public var optimizer: ConfigOption<OptimizerKind> { ConfigOption(
    "optimizer", default: .lars, resume: .mustMatch,
    help: "Optimizer (LARS excludes biases and BN from adaptation and decay; Adam is PyTorch's, its decay L2 on every range).") }
  public var adamBeta1: ConfigOption<Float> { ConfigOption(
    "adamBeta1", default: 0.9, help: "Adam: β₁ (first-moment decay).", check: { (0..<1).contains($0) ? nil : "must be in [0, 1)" }) }
  public var adamBeta2: ConfigOption<Float> { ConfigOption(
    "adamBeta2", default: 0.999, help: "Adam: β₂ (second-moment decay).", check: { (0..<1).contains($0) ? nil : "must be in [0, 1)" }) }
  public var adamEpsilon: ConfigOption<Float> { ConfigOption(
    "adamEpsilon", default: 1e-8, help: "Adam: ε added to √v̂.", check: { $0 > 0 && $0.isFinite ? nil : "must be positive" }) }
  public var baseLR: ConfigOption<Float> { ConfigOption(
    "baseLR", default: 0.3, help: "Base learning rate before scaling by the global batch.",
    check: { $0 > 0 && $0.isFinite ? nil : "must be positive" }) }
  public var lrScaling: ConfigOption<LRScaling> { ConfigOption(
    "lrScaling", default: .linear, help: "Learning-rate scaling with the global batch: none, linear (base·B/256) or sqrt (base·√B).") }
  public var momentum: ConfigOption<Float> { ConfigOption("momentum", default: 0.9, help: "Momentum.", check: finiteNonNegative) }
  public var weightDecay: ConfigOption<Float> { ConfigOption(
    "weightDecay", default: 1e-6, help: "Weight decay (not applied to biases and BN under LARS).", check: finiteNonNegative) }
  public var larsEta: ConfigOption<Float> { ConfigOption(
    "larsEta", default: 0.001, help: "LARS trust coefficient η.", check: finiteNonNegative) }
  public var warmupSteps: ConfigOption<Int> { ConfigOption(
    "warmupSteps", default: 10, help: "Linear warm-up steps before the cosine decay.", check: nonNegative) }

  public var syncBN: ConfigOption<Bool> { ConfigOption(
    "syncBN", default: true, help: "BatchNorm statistics over the global batch (all ranks).") }
  public var projectionDim: ConfigOption<Int> { ConfigOption(
    "projectionDim", default: 128, resume: .mustMatch, help: "Output width of projection heads.", check: positive) }
  public var conv4Width: ConfigOption<Int> { ConfigOption(
    "conv4Width", default: 64, resume: .mustMatch,
    help: "Channels of every conv4 block (64 is DESIGN.md's conv4; the pooled feature is this wide, the pre-pool map 9× on 28×28).",
    check: { (1...1024).contains($0) ? nil : "must be in 1…1024" }) }

  public var augmentStrength: ConfigOption<Float> { ConfigOption(
    "augmentStrength", default: 1,
    help: "Augmentation strength in [0, 2] (0 disables augmentation, 1 is SimCLR's; above 1 larger jitter, noise and crops).",
    check: { (0...2).contains($0) ? nil : "must be in [0, 2]" }) }
  public var blurProbability: ConfigOption<Float> { ConfigOption(
    "blurProbability", default: 0.5,
    help: "Probability of the Gaussian blur (σ 0.1–2, kernel 3 or 5) in each image view under simclr sampling (SimCLR's 0.5; augment-strength 0 turns it off too).",
    check: { (0...1).contains($0) ? nil : "must be in [0, 1]" }) }
  public var cropScale: ConfigOption<Float> { ConfigOption(
    "cropScale", default: 0,
    help: "Smallest share of the image area an image view's random resized crop keeps, in (0, 1] (0: the strength's own, 1 − 0.8·strength, at least 0.05).",
    check: { (0...1).contains($0) ? nil : "must be in [0, 1]" }) }
  public var dataRead: ConfigOption<DataRead> { ConfigOption(
    "dataRead", default: .auto, resume: .silent,
    help:
      "How a rank reads its part of each batch from record shards (images): auto (MPI-IO collective on several ranks, pread on one), pread, mpiio (MPI_File_read_at_all) or mpiio-independent (MPI_File_read_at).") }
  public var augmentSampling: ConfigOption<AugmentSamplingChoice> { ConfigOption(
    "augmentSampling", default: .auto,
    help:
      "Image augmentation choice: auto (mtslvr for transform-pred and mtslvr, else simclr), simclr (each with its probability) or mtslvr (k ~ U{1..n} per sample, shared by both views).") }

  public var audioLength: ConfigOption<Int> { ConfigOption(
    "audioLength", default: 0, help: "Audio: samples per view (0: 59049 for raw samplecnn, one second for logmel).",
    check: nonNegative) }
  public var sampleRate: ConfigOption<Int> { ConfigOption(
    "sampleRate", default: 16000, help: "Audio: sample rate clips are decoded (resampled) to, Hz.", check: positive) }
  public var frontEnd: ConfigOption<FrontEnd> { ConfigOption(
    "frontEnd", default: .raw, resume: .mustMatch,
    help: "Audio front end: raw (views [N,1,1,L], samplecnn) or logmel (views [N,1,nMels,frames], resnet18).") }
  public var nFFT: ConfigOption<Int> { ConfigOption(
    "nFFT", default: 512, help: "Log-mel FFT size (a power of two).",
    check: { $0 >= 2 && $0 & ($0 - 1) == 0 ? nil : "must be a power of two" }) }
  public var hop: ConfigOption<Int> { ConfigOption("hop", default: 160, help: "Log-mel hop, samples.", check: positive) }
  public var nMels: ConfigOption<Int> { ConfigOption("nMels", default: 64, help: "Log-mel bands.", check: positive) }
  public var augmentPreset: ConfigOption<AugmentPreset> { ConfigOption(
    "augmentPreset", default: .clmr, help: "Audio time-domain augmentation set.") }

  public var bucketMB: ConfigOption<Double> { ConfigOption(
    "bucketMB", default: 4, help: "Gradient bucket cap in MiB (0: one fused all-reduce after backward).",
    check: finiteNonNegative) }
  public var accumulate: ConfigOption<Int> { ConfigOption(
    "accumulate", default: 1, help: "Micro-batches per optimizer step (gradients sync on the last only).",
    check: ConfigOption<Int>.atLeast(1)) }
  public var gradDType: ConfigOption<WireType> { ConfigOption(
    "gradDType", default: .fp32, help: "Gradient element type on the wire.") }
  public var syncProgress: ConfigOption<SyncProgress> { ConfigOption(
    "syncProgress", default: .poll,
    help: "MPI progress during backward: poll (MPI_Test from backward hooks) or thread (a communication thread, MPI_THREAD_MULTIPLE).") }
  public var timeline: ConfigOption<String> { ConfigOption(
    "timeline", default: "", resume: .silent, help: "Write a Chrome trace-event timeline (JSON, all ranks) to this file (\"\": none).") }
  public var stallTimeout: ConfigOption<Double> { ConfigOption(
    "stallTimeout", default: 60, resume: .silent,
    help: "Abort the job when a rank waits longer than this in one phase of a step or in the stop check, a checkpoint (rank 0's write included) or the end-of-run barrier (s; 0: off).",
    check: finiteNonNegative) }
  public var checkEvery: ConfigOption<Int> { ConfigOption(
    "checkEvery", default: 0, resume: .silent, help: "Compare parameter checksums across ranks every N steps (0: never).",
    check: nonNegative) }
}
