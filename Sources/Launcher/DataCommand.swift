import ArgumentParser
import Data
import Foundation
import Model
import Train

/// `parallax data …`: make and pack data sets (no MPI; these run as one process).
struct DataCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "data", abstract: "Make and pack data sets.",
    subcommands: [
      SpokenDigitsCommand.self, TintedFashionCommand.self, PackCommand.self, AudioBenchCommand.self,
      AudioBaselineCommand.self,
    ])
}

struct TintedFashionCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tinted-fashion-mnist",
    abstract: "Write an RGB image folder (PNG, every fifth JPEG) from Fashion-MNIST, each image tinted by its index.",
    discussion: """
      A real-data RGB set for the image-folder path: colour comes from the image index, never the class.
        parallax data tinted-fashion-mnist --out data/tinted --count 20000
        parallax data pack --images data/tinted --out data/tinted.set --size 28 --channels 3
      """)
  @Option(help: "Output folder (one sub-folder per class).") var out: String
  @Option(help: "Images (the first N of the split).") var count: Int = 60000
  @Option(help: "Split: train or test.") var split: String = "train"
  @Option(help: "Directory of the Fashion-MNIST IDX files.") var dataDir: String = FashionMNIST.defaultDirectory

  func validate() throws {
    guard count > 0 else { throw ValidationError("--count must be positive") }
    guard ["train", "test"].contains(split) else { throw ValidationError("--split must be train or test") }
  }

  func run() throws {
    let t0 = now()
    let n = try TintedFashionMNIST.write(to: out, count: count, split: split == "train" ? .train : .test, directory: dataDir)
    print(String(format: "wrote %d images to %@ in %.1f s", n, out, now() - t0))
  }
}

/// Where `pack` and `bench-audio` read audio from: a manifest, a folder per class, or the
/// MagnaTagATune annotations.
struct AudioInputOptions: ParsableArguments {
  @Option(help: "CSV manifest (path column + label columns).") var manifest: String?
  @Option(help: "Folder with one sub-folder of audio files per class.") var folder: String?
  @Option(help: "MagnaTagATune annotations_final.csv (tab-separated).") var mtat: String?
  @Option(help: "Root of the MagnaTagATune mp3 folders (with --mtat).") var audioRoot: String?
  @Option(help: "Keep the most frequent tags (with --mtat).") var topTags: Int = 50
  @Option(parsing: .upToNextOption, help: "Manifest columns holding ';'-separated tags.") var multiLabel: [String] = []
  @Option(help: "Sample rate to decode to, Hz.") var sampleRate: Int = 16000
  @Option(help: "fail: stop at the first bad file; skip: leave bad files out and count them.") var onBadFile: String = "fail"

  /// Whether any audio input is given.
  var given: Bool { [manifest, folder, mtat].contains { $0 != nil } }

  func validate() throws {
    guard [manifest, folder, mtat].compactMap({ $0 }).count <= 1 else {
      throw ValidationError("give one of --manifest, --folder, --mtat")
    }
    guard BadFilePolicy(rawValue: onBadFile) != nil else { throw ValidationError("--on-bad-file must be fail or skip") }
    if mtat != nil && audioRoot == nil { throw ValidationError("--mtat needs --audio-root") }
    guard sampleRate > 0 else { throw ValidationError("--sample-rate must be positive") }
  }

  func open() throws -> AudioFileDataset {
    let policy = BadFilePolicy(rawValue: onBadFile)!
    if let manifest {
      return try AudioFileDataset.manifest(
        csv: manifest, sampleRate: sampleRate, multiLabelColumns: Set(multiLabel), onBadFile: policy)
    }
    if let folder { return try AudioFileDataset.folderPerClass(root: folder, sampleRate: sampleRate, onBadFile: policy) }
    return try AudioFileDataset.magnaTagATune(
      annotations: mtat!, audioRoot: audioRoot!, sampleRate: sampleRate, topTags: topTags, onBadFile: policy)
  }
}

struct SpokenDigitsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "spoken-digits",
    abstract: "Speak the digits 0–9 with espeak-ng into WAV files plus manifest.csv.",
    discussion: """
      Default: 10 languages × 10 voices (m1–m5, f1–f5) × 2 speeds × 10 digits = 2000 clips,
      pitches 35/50/65 in turn. Example: parallax data spoken-digits --out data/digits --jobs 2
      """)
  @Option(help: "Output folder.") var out: String
  @Option(parsing: .upToNextOption, help: "espeak-ng languages.") var languages: [String] = SpokenDigits.defaultLanguages
  @Option(help: "Number of voice variants (1–10, from m1–m5 f1–f5 alternating).") var voices: Int = 10
  @Option(parsing: .upToNextOption, help: "Speeds, words per minute.") var speeds: [Int] = [130, 180]
  @Option(parsing: .upToNextOption, help: "Pitches 0–99, used in turn.") var pitches: [Int] = [35, 50, 65]
  @Option(help: "espeak-ng processes at once.") var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

  /// Voices alternating male and female so a small `--voices` keeps both genders.
  static let voiceOrder = ["m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5"]

  func validate() throws {
    guard (1...10).contains(voices) else { throw ValidationError("--voices must be 1…10") }
    guard jobs > 0 else { throw ValidationError("--jobs must be positive") }
    try spec.validate()
  }

  var spec: SpokenDigits {
    SpokenDigits(languages: languages, voices: Array(Self.voiceOrder.prefix(voices)), speeds: speeds, pitches: pitches)
  }

  func run() throws {
    let t0 = now()
    let n = try spec.generate(into: out, jobs: jobs)
    print(String(format: "wrote %d clips and %@/manifest.csv in %.1f s", n, out, now() - t0))
  }
}

/// Where `pack` reads images from and how it shapes them.
struct ImageInputOptions: ParsableArguments {
  @Option(help: "Images: a folder with one sub-folder of PNG/JPEG files per class.") var images: String?
  @Option(help: "Images: a CSV manifest with a 'path' column and label columns.") var imageManifest: String?
  @Option(help: "Images: the CIFAR-10 binary folder (data_batch_*.bin, test_batch.bin).") var cifar10: String?
  @Option(help: "Images: with --cifar10, train or test.") var split: String = "train"
  @Option(help: "Images: output side in pixels (square).") var size: Int = 32
  @Option(help: "Images: 1 (grayscale) or 3 (RGB) channels.") var channels: Int = 3
  @Option(help: "Images: crop (scale the shorter side, keep the centre) or pad (scale the longer side, pad with black).")
  var fit: String = "crop"
  @Option(help: "Images: largest part file in MiB (a large set becomes several part-NNNNN.pxrs).") var maxPartMib: Double = 1024

  var given: Bool { images != nil || imageManifest != nil || cifar10 != nil }

  func validate() throws {
    guard [images, imageManifest, cifar10].compactMap({ $0 }).count <= 1 else {
      throw ValidationError("give one of --images, --image-manifest, --cifar10")
    }
    guard ["train", "test"].contains(split) else { throw ValidationError("--split must be train or test") }
    guard (1...4096).contains(size) else { throw ValidationError("--size must be 1…4096 (got \(size))") }
    guard channels == 1 || channels == 3 else { throw ValidationError("--channels must be 1 or 3 (got \(channels))") }
    guard ImageFit(rawValue: fit) != nil else { throw ValidationError("--fit must be crop or pad (got '\(fit)')") }
    guard maxPartMib > 0, maxPartMib <= 1_048_576 else { throw ValidationError("--max-part-mib must be in (0, 2^20]") }
  }
}

struct PackCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "pack",
    abstract: "Pack audio clips or images into record shards for sharded reading.",
    discussion: """
      Audio: one record shard of fixed-length clips plus a .json sidecar.
        parallax data pack --manifest data/digits/manifest.csv --out data/digits.pxrs --clip-samples 16000
      Images (PNG, JPEG): a directory of part-NNNNN.pxrs record shards and dataset.json (classes,
      per-channel mean and std); train on it with `pretrain --data images --data-dir OUT`.
        parallax data pack --images photos/ --out data/photos --size 32 --channels 3 --on-bad-file skip
      The output must not exist; a failed pack leaves nothing behind.
      """)
  @OptionGroup var input: AudioInputOptions
  @OptionGroup var imageInput: ImageInputOptions
  @Option(help: "Output shard path (audio) or directory (images).") var out: String
  @Option(help: "Audio: samples per clip (centre kept, shorter clips zero-padded).") var clipSamples: Int = SampleCNN.inputLength
  @Option(help: "Audio: payload encoding, int16 or float16.") var encoding: String = "int16"

  func validate() throws {
    guard input.given != imageInput.given else {
      throw ValidationError("give one input: --manifest, --folder or --mtat (audio), or --images, --image-manifest or --cifar10")
    }
    guard clipSamples > 0 else { throw ValidationError("--clip-samples must be positive") }
    guard AudioShardInfo.Encoding(rawValue: encoding) != nil else { throw ValidationError("--encoding must be int16 or float16") }
  }

  func run() throws {
    if imageInput.given { return try packImages() }
    let t0 = now()
    let source = try input.open()
    let (written, skipped) = try AudioShardWriter.pack(
      source, to: out, samples: clipSamples, encoding: AudioShardInfo.Encoding(rawValue: encoding)!,
      onBadFile: BadFilePolicy(rawValue: input.onBadFile)!)
    let allSkipped = source.skipped + skipped
    for e in allSkipped { FileHandle.standardError.write("skipped: \(e)\n".data(using: .utf8)!) }
    print(String(format: "packed %d clips (%d skipped) of %d samples at %d Hz into %@ in %.1f s",
      written, allSkipped.count, clipSamples, source.sampleRate, out, now() - t0))
  }

  func packImages() throws {
    let t0 = now()
    let i = imageInput
    let options = ImagePack.Options(
      size: i.size, channels: i.channels, fit: ImageFit(rawValue: i.fit)!,
      onBadFile: BadFilePolicy(rawValue: input.onBadFile)!, maxPartBytes: Int(i.maxPartMib * 1_048_576))
    var last = now()
    let progress: (Int, Int) -> Void = { done, total in
      guard now() - last > 5 else { return }
      last = now()
      FileHandle.standardError.write("packing: \(done) of \(total) images\n".data(using: .utf8)!)
    }
    let info: ImageSetInfo
    if let cifar = i.cifar10 {
      info = try CIFAR10.pack(
        directory: cifar, split: i.split == "train" ? .train : .test, to: out, options: options, progress: progress)
    } else {
      let list = try i.images.map { try ImageList.folder($0) } ?? ImageList.manifest(i.imageManifest!)
      info = try ImagePack.pack(list, to: out, options: options, source: i.images ?? i.imageManifest!, progress: progress)
    }
    for e in info.skipped { FileHandle.standardError.write("skipped: \(e.path): \(e.reason)\n".data(using: .utf8)!) }
    let stats = zip(info.mean, info.std).map { String(format: "%.4f/%.4f", $0, $1) }.joined(separator: " ")
    print(String(
      format: "packed %d images (%d skipped) of %d×%d×%d, %d part(s), mean/std per channel %@, into %@ in %.1f s",
      info.count, info.skipped.count, info.channels, info.size, info.size, info.parts.count, stats, out, now() - t0))
  }
}

/// Data throughput against what a `samplecnn` step consumes, on one core.
struct AudioBenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-audio",
    abstract: "Decode + augment throughput per core vs. samplecnn training consumption (prints figures).")
  @Option(help: "CSV manifest of audio files.") var manifest: String?
  @Option(help: "Audio shard (from `parallax data pack`).") var shard: String?
  @Option(help: "Augmentation set: clmr, mtslvr, none.") var augment: String = "clmr"
  @Option(help: "Samples per view.") var length: Int = SampleCNN.inputLength
  @Option(help: "Clips to time (each gives two views).") var clips: Int = 64
  @Option(help: "samplecnn batch (views) for the step timing; 0 skips it.") var stepBatch: Int = 8

  func validate() throws {
    guard (manifest == nil) != (shard == nil) else { throw ValidationError("give one of --manifest, --shard") }
    guard clips > 0, length > 0, stepBatch >= 0 else { throw ValidationError("--clips, --length positive; --step-batch ≥ 0") }
  }

  func run() throws {
    _ = Runtime.configureThreads(requested: 1, localSize: 1)
    let source: AudioSource = try shard.map { try AudioShardSource(path: $0) }
      ?? AudioFileDataset.manifest(csv: manifest!, sampleRate: 16000)
    let aug = WaveAugment(config: try WaveAugmentConfig.named(augment), sampleRate: source.sampleRate, length: length)
    var view = [Float](repeating: 0, count: length)
    let n = min(clips, source.count)
    var decode = 0.0, augmentTime = 0.0
    var counts = [Int](repeating: 0, count: WaveTransform.allCases.count)
    for i in 0..<n {
      let t0 = now()
      let clip = try source.samples(i)
      let t1 = now()
      for purpose in [RandomPurpose.view1, .view2] {
        var rng = KeyedRandom(seed: 0, epoch: 0, sample: i, purpose: purpose)
        let set = aug.apply(clip, count: clip.count, into: &view, rng: &rng)
        for t in WaveTransform.allCases where set.contains(t) { counts[t.rawValue] += 1 }
      }
      decode += t1 - t0
      augmentTime += now() - t1
    }
    let viewsPerSecond = Double(2 * n) / (decode + augmentTime)
    print(String(format: "data (%@, %@, L=%d): read %.2f ms/clip, augment %.2f ms/view → %.1f views/s per core",
      shard == nil ? "decode files" : "shard", augment, length, 1000 * decode / Double(n), 1000 * augmentTime / Double(2 * n), viewsPerSecond))
    print("transforms applied (of \(2 * n) views): " + WaveTransform.allCases.filter { counts[$0.rawValue] > 0 }
      .map { "\($0) \(counts[$0.rawValue])" }.joined(separator: ", "))
    guard stepBatch > 0 else { return }
    let arena = ParameterArena()
    let encoder = try SampleCNN(arena: arena, prefix: "encoder", inputLength: length) { name, c in
      BatchNorm(arena: arena, name: name, channels: c)
    }
    arena.allocate(seed: 0)
    let x = Storage(stepBatch * length)
    var rng = KeyedRandom(seed: 1, epoch: 0, sample: 0, purpose: .noise)
    for i in 0..<(stepBatch * length) { x.data[i] = 0.1 * rng.nextGaussian() }
    let dy = Storage(stepBatch * encoder.featureDim)
    for i in 0..<(stepBatch * encoder.featureDim) { dy.data[i] = 1e-3 }
    var times: [Double] = []
    for _ in 0..<3 {
      let t0 = now()
      let y = try encoder.forward(Tensor(x.data, Shape(stepBatch, 1, 1, length)), training: true)
      _ = try encoder.backward(Tensor(dy.data, y.shape))
      times.append(now() - t0)
    }
    let step = times.sorted()[1]
    let consumed = Double(stepBatch) / step
    print(String(format: "samplecnn forward+backward, %d views of %d samples, 1 thread: %.0f ms → %.2f views/s per core",
      stepBatch, length, 1000 * step, consumed))
    print(String(format: "data/compute ratio: %.1f× (target ≥ 5×)", viewsPerSecond / consumed))
  }
}

/// Few-shot accuracy of features that involve no pretraining — the floor a pretrained audio
/// encoder must beat: pooled log-mel statistics, or a randomly initialised `samplecnn`.
struct AudioBaselineCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "baseline",
    abstract: "Few-shot (N-way K-shot, nearest centroid) accuracy of un-pretrained audio features.",
    discussion: "Example: parallax data baseline --manifest data/digits/manifest.csv --features logmel --labels word language")
  @Option(help: "CSV manifest (or a shard with --shard).") var manifest: String?
  @Option(help: "Audio shard.") var shard: String?
  @Option(help: "Features: logmel (per-band mean and std over time) or samplecnn (random init, 512-d).") var features: String = "logmel"
  @Option(parsing: .upToNextOption, help: "Label slots to evaluate.") var labels: [String] = ["word", "language"]
  @Option(help: "Samples per clip (centre crop / pad).") var length: Int = SampleCNN.inputLength
  @Option(help: "Use at most this many clips (evenly spaced).") var limit: Int?
  @Option var ways: Int = 5
  @Option var shots: Int = 1
  @Option var queries: Int = 15
  @Option var tasks: Int = 1000

  func validate() throws {
    guard (manifest == nil) != (shard == nil) else { throw ValidationError("give one of --manifest, --shard") }
    guard ["logmel", "samplecnn"].contains(features) else { throw ValidationError("--features must be logmel or samplecnn") }
  }

  func run() throws {
    _ = Runtime.configureThreads(requested: 0, localSize: 1)
    let source: AudioSource = try shard.map { try AudioShardSource(path: $0) }
      ?? AudioFileDataset.manifest(csv: manifest!, sampleRate: 16000)
    let slots = try labels.map { name -> Int in
      guard let s = source.slot(named: name) else { throw ValidationError("no label \(name) in \(source.labelNames)") }
      return s
    }
    let n = min(limit ?? source.count, source.count)
    let indices = (0..<n).map { $0 * source.count / n }
    let loader = AudioEvalLoader(source: source, length: length)
    let t0 = now()
    var dim = 0
    var values: [Float] = []
    if features == "logmel" {
      let mel = LogMelSpectrogram(sampleRate: source.sampleRate, nFFT: 512, hop: 256, nMels: 64)
      let frames = mel.frameCount(length)
      var s = [Float](repeating: 0, count: 64 * frames)
      dim = 128
      for i in indices {
        try loader.loadSpectrograms(indices: [i], mel: mel, into: &s)
        for m in 0..<64 {
          let row = s[(m * frames)..<((m + 1) * frames)]
          let mean = row.reduce(0, +) / Float(frames)
          let sd = (row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(frames)).squareRoot()
          values += [mean, sd]
        }
      }
    } else {
      let arena = ParameterArena()
      let encoder = try SampleCNN(arena: arena, prefix: "encoder", inputLength: length) { name, c in
        BatchNorm(arena: arena, name: name, channels: c)
      }
      arena.allocate(seed: 0)
      dim = encoder.featureDim
      let batch = 16
      let x = Storage(batch * length)
      var start = 0
      while start < indices.count {
        let chunk = Array(indices[start..<min(start + batch, indices.count)])
        try loader.load(indices: chunk, into: x.data)
        // Training-mode BN: batch statistics, since a random network has no running ones.
        let y = try encoder.forward(Tensor(x.data, Shape(chunk.count, 1, 1, length)), training: chunk.count > 1)
        values += y.toArray()
        start += batch
      }
    }
    // Standardise each feature over the clips (log-mel statistics differ in scale by band).
    for j in 0..<dim {
      var mean: Float = 0, sq: Float = 0
      for i in 0..<n { mean += values[i * dim + j] }
      mean /= Float(n)
      for i in 0..<n { sq += (values[i * dim + j] - mean) * (values[i * dim + j] - mean) }
      let r = 1 / max((sq / Float(n)).squareRoot(), 1e-6)
      for i in 0..<n { values[i * dim + j] = (values[i * dim + j] - mean) * r }
    }
    print(String(format: "%@ features of %d clips (%d-d) in %.1f s", features, n, dim, now() - t0))
    for (name, slot) in zip(labels, slots) {
      let fs = FeatureSet(dim: dim, values: values, labels: indices.map { source.label($0, slot: slot) })
      let w = min(ways, source.classNames[slot].count)  // gender has 2 classes
      let r = try FewShotEvaluator(ways: w, shots: shots, queries: queries, tasks: tasks, seed: 0).evaluate(fs)
      print("\(name): \(w)-way \(shots)-shot \(r)")
    }
  }
}
