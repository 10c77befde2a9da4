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
      """)

  @Option(help: "Checkpoint directory (e.g. runs/simclr/latest).") var checkpoint: String
  @Option(help: "Output file.") var out: String
  @Option(help: "Also write a JSON summary (shape, sum, first values) of every tensor of the checkpoint's model and of the export.")
  var summary: String?

  static let prefix = "encoder."

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
      try AtomicFile.write(
        SafeTensors.encode(
          encoder, metadata: ["format": "pt", "model": c.model.rawValue, "method": c.method.rawValue, "step": "\(ck.state.step)"]),
        to: out)
      if let summary {
        let report = ["model": Self.summarise(model), "encoder": Self.summarise(encoder)]
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try enc.encode(report), to: summary)
      }
      let values = encoder.reduce(0) { $0 + $1.values.count }
      print("exported \(encoder.count) encoder tensors (\(values) values) of \(c.method)/\(c.model) step \(ck.state.step) to \(out)")
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
