import ArgumentParser
import Foundation
import Model
import Train

/// `parallax export`: a checkpoint's encoder alone, for use outside Parallax.
struct Export: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write a checkpoint's encoder alone as safetensors (PyTorch state_dict names without `encoder.`).",
    discussion: """
      The checkpoint is verified first (sha256 of every file). Example:
      parallax export --checkpoint runs/simclr/latest --out encoder.safetensors

      The file's metadata says how to use it: input_shape, input, normalization (mean, std), \
      architecture and architecture_options, feature_layers (pooled, pre-pool), \
      parallax_version and parallax_commit, method, step, config, and pytorch (the lines \
      below, for its own architecture). A conv4 export loads into PyTorch and is fed like \
      this (`images`: a float tensor [N, 1, 28, 28] of raw 0..255 pixels):

      \(Export.pythonExample)

      resnet18 uses torchvision's resnet18 with a 3×3 stride-1 stem and no max pool (its \
      `pytorch` metadata has the lines); samplecnn and mtslvr encoders have no plain \
      PyTorch module of the same names.
      """)

  @Option(help: "Checkpoint directory (e.g. runs/simclr/latest).") var checkpoint: String
  @Option(help: "Output file.") var out: String
  @Option(help: "Also write a JSON summary (shape, sum, first values) of every tensor of the checkpoint's model and of the export.")
  var summary: String?

  static let prefix = "encoder."

  /// The PyTorch lines for the default conv4 export, between marker comments (a test runs
  /// them).
  static var pythonExample: String {
    let lines = ModelCard.pytorchLines(PretrainConfig(), path: "encoder.safetensors") ?? []
    return (["# --- PyTorch ---"] + lines + ["# --- end ---"]).joined(separator: "\n")
  }

  func run() throws {
    do {
      let ck = try Checkpoint.load(checkpoint)
      let model = Checkpoint.modelOrder(ck.model)
      let encoder = model.filter { $0.name.hasPrefix(Self.prefix) }.map {
        SafeTensors.Entry(name: String($0.name.dropFirst(Self.prefix.count)), shape: $0.shape, values: $0.values)
      }
      guard !encoder.isEmpty else {
        throw CheckpointError(path: checkpoint + "/model.safetensors", reason: "has no tensor named \(Self.prefix)*")
      }
      let c = ck.state.config
      // The same initialiser as pretraining, for the feature widths.
      let built = try Methods.make(c, collective: LocalCollective())
      let metadata = ModelCard.metadata(
        config: c, step: ck.state.step, dims: (built.encoder.featureDim, built.encoder.prePoolDim))
      try AtomicFile.write(SafeTensors.encode(encoder, metadata: metadata), to: out)
      if let summary {
        let report = ["model": Self.summarise(model), "encoder": Self.summarise(encoder)]
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(report), to: summary)
      }
      let values = encoder.reduce(0) { $0 + $1.values.count }
      print("exported \(encoder.count) encoder tensors (\(values) values) of \(c.method)/\(c.model) step \(ck.state.step) to \(out)")
      let file = (out as NSString).lastPathComponent
      if let lines = ModelCard.pytorchLines(c, path: file) {
        print("load and feed it in PyTorch (`images`: float raw 0..255 pixels):\n" + lines.map { "  " + $0 }.joined(separator: "\n"))
      }
    } catch {
      FileHandle.standardError.write("error: \(error)\n".data(using: .utf8)!)
      throw ExitCode(1)
    }
  }

  struct TensorSummary: Codable {
    var shape: [Int]
    var sum: Double
    var sumOfSquares: Double
    var first: [Float]
  }

  static func summarise(_ entries: [SafeTensors.Entry]) -> [String: TensorSummary] {
    Dictionary(
      uniqueKeysWithValues: entries.map { e in
        (
          e.name,
          TensorSummary(
            shape: e.shape, sum: e.values.reduce(0) { $0 + Double($1) },
            sumOfSquares: e.values.reduce(0) { $0 + Double($1) * Double($1) }, first: Array(e.values.prefix(4)))
        )
      })
  }
}
