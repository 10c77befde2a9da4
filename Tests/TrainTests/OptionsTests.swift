import Foundation
import Model
import XCTest

@testable import Train

/// Options declared once (issue 12): every option reaches YAML, the flags, `config.yaml`,
/// `state.json`, `--help` and the resume check from its one declaration.
final class OptionsTests: XCTestCase {
  /// A valid value other than the default for every option, as YAML text.
  func nonDefault(_ o: any AnyConfigOption) -> String {
    switch o.key {
    case "nFFT": return "1024"
    case "nMels": return "40"
    case "augmentStrength": return "0.5"
    case "globalBatch": return "512"
    case "byolMomentum", "mocoMomentum": return "0.9"  // a momentum stays in [0, 1]
    case "adamBeta1", "adamBeta2": return "0.5"  // a decay stays in [0, 1)
    case "projectionLayers": return "3"  // 2 or 3
    default: break
    }
    let d = o.defaultText
    if o.kind.contains("|") {
      let choices = o.kind.components(separatedBy: " | ")
      return choices[(choices.firstIndex(of: d)! + 1) % choices.count]
    }
    switch o.kind {
    case "int", "uint": return String(Int(d)! * 2 + 3)
    case "float": return String(Double(d)! * 1.5 + 0.25)
    case "text": return "value of \(o.key)"
    default: XCTFail("no test value for \(o.key) (\(o.kind))"); return d
    }
  }

  /// A YAML file that sets every option to a non-default value: each is read, and the run's
  /// `config.yaml` (and the `state.json` encoding) gives back the same configuration.
  func testYAMLSettingEveryOptionRoundTrips() throws {
    let options = PretrainConfig.allOptions
    XCTAssertGreaterThan(options.count, 40)
    XCTAssertEqual(Set(options.map(\.key)).count, options.count, "two options share a key")
    XCTAssertEqual(Set(options.map(\.flag)).count, options.count, "two options share a flag")
    let yaml = options.map { "\($0.key): \"\(nonDefault($0))\"" }.joined(separator: "\n")
    let c = try PretrainConfig.parse(yaml: yaml, source: "every.yaml")
    for o in options {
      let v = c.value(o).optionText
      XCTAssertNotEqual(v, o.defaultText, "\(o.key) kept its default")
      XCTAssertEqual(try o.parse(nonDefault(o), label: o.key).optionText, v, o.key)
    }
    let written = c.yaml()
    let again = try PretrainConfig.parse(yaml: written, source: "config.yaml")
    XCTAssertEqual(again, c, written)
    for o in options { XCTAssertTrue(written.contains("\n\(o.key): ") || written.hasPrefix("\(o.key): "), o.key) }
    let json = try JSONEncoder().encode(c)
    XCTAssertEqual(try JSONDecoder().decode(PretrainConfig.self, from: json), c)
    // And the typed accessors read what the file said.
    XCTAssertEqual(c.globalBatch, 512)
    XCTAssertEqual(c.adapter, AdapterMode.none)
    XCTAssertEqual(c.method, .simsiam)
    XCTAssertEqual(c.syncBN, false)
    XCTAssertNotEqual(PretrainConfig(), c)
    // Choices print as their names (probe tables, log lines).
    XCTAssertEqual("\(Method.transformPred) \(Dataset.fashionMNIST) \(AdapterMode.parallel)", "transform-pred fashion-mnist parallel")
  }

  func testFlagsParseAndBadValuesNameTheOption() throws {
    var c = PretrainConfig()
    try OptionArguments.apply(["--seed=5", "--sync-bn", "false", "--adapter", "bn", "--check-every", "3", "--timeline", ""], to: &c)
    XCTAssertEqual(c.seed, 5)
    XCTAssertEqual(c.syncBN, false)
    XCTAssertEqual(c.adapter, .bn)
    XCTAssertEqual(c.checkEvery, 3)
    try OptionArguments.apply(["--sync-bn"], to: &c)
    XCTAssertEqual(c.syncBN, true, "a bare Bool flag is true")
    func message(_ args: [String]) -> String {
      var c = PretrainConfig()
      do {
        try OptionArguments.apply(args, to: &c)
        return "no error"
      } catch { return "\(error)" }
    }
    XCTAssertEqual(message(["--adapter", "lora"]), "--adapter: unknown adapter 'lora' (known: none, bn, series, parallel)")
    XCTAssertEqual(message(["--global-batch", "x"]), "--global-batch: 'x' is not a valid int")
    XCTAssertEqual(message(["--keep", "0"]), "--keep must be ≥ 1 (got 0)")
    XCTAssertEqual(message(["--grad-dtype", "fp8"]), "--grad-dtype: unknown grad-dtype 'fp8' (known: fp32, bf16, fp16)")
    XCTAssertTrue(message(["--glob-batch", "8"]).contains("unknown option '--glob-batch' (did you mean --global-batch?)"))
    XCTAssertTrue(message(["--epochs"]).contains("--epochs needs a value"))
    XCTAssertThrowsError(try PretrainConfig.parse(yaml: "adapter: lora", source: "x.yaml")) {
      XCTAssertEqual("\($0)", "x.yaml: adapter: unknown adapter 'lora' (known: none, bn, series, parallel)")
    }
    XCTAssertThrowsError(try PretrainConfig.parse(yaml: "seed: [1, 2]", source: "x.yaml")) {
      XCTAssertTrue("\($0)".contains("x.yaml: seed: expected a single value"), "\($0)")
    }
  }

  /// `parallax pretrain --help` lists every option with its kind and default.
  func testHelpListsEveryOptionWithItsDefault() throws {
    let r = try Processes.run(Processes.parallax, ["pretrain", "--help"])
    XCTAssertEqual(r.status, 0, r.stderr)
    for o in PretrainConfig.allOptions {
      let d = o.defaultText.isEmpty ? "\"\"" : o.defaultText
      XCTAssertTrue(
        r.stdout.contains("  --\(o.flag) <\(OptionArguments.helpKind(o))>\n        default: \(d); YAML key: \(o.key)\n"),
        "--help lacks --\(o.flag):\n\(r.stdout)")
    }
  }

  /// The resume check comes from each option's policy: an option that decides tensor shapes
  /// (the MT-SLVR adapter, the SimSiam predictor width) refuses, a learning rate is a remark,
  /// a path is silent.
  func testResumePolicyComesFromTheDeclaration() throws {
    var saved = PretrainConfig()
    saved.method = .mtslvr
    let state = CheckpointState(config: saved, step: 3, epoch: 0, batchInEpoch: 3, worldSize: 1, seed: 0)
    var now = saved
    now.baseLR = 0.5
    now.runDir = "elsewhere"
    let remarks = try ResumeSource.compatibility(of: state, with: now, dir: "ck", worldSize: 1)
    XCTAssertEqual(remarks, ["settings changed since the checkpoint: baseLR 0.3 → 0.5"])
    for edit in [{ (c: inout PretrainConfig) in c.adapter = .series }, { $0.predictorDim = 16 }, { $0.model = .resnet18 }] {
      var other = saved
      edit(&other)
      XCTAssertThrowsError(try ResumeSource.compatibility(of: state, with: other, dir: "ck", worldSize: 1)) {
        XCTAssertTrue("\($0)".contains("incompatible with this run"), "\($0)")
      }
    }
  }

  /// A method's state beyond the arena is written as `method.safetensors`, hashed, loaded
  /// back, and refused when modified; the restore helper checks names and shapes.
  func testMethodStateIsCheckpointedAndVerified() throws {
    let dir = Processes.temporaryDirectory("method-state")
    let a = ParameterArena()
    _ = a.register("encoder.0.weight", shape: [2, 3], initializer: .zeros)
    a.allocate(seed: 1)
    let queue = SafeTensors.Entry(name: "queue", shape: [2, 4], values: (0..<8).map { Float($0) / 3 })
    let pointer = SafeTensors.Entry(name: "queue_pointer", shape: [1], values: [5])
    var config = PretrainConfig()
    config.runDir = dir
    let written = try Checkpoint.write(
      runDir: dir, arena: a, optimizerState: [], methodState: [queue, pointer],
      state: CheckpointState(config: config, step: 1, epoch: 0, batchInEpoch: 1, worldSize: 1, seed: 0), keep: 2)
    let loaded = try Checkpoint.load(written)
    XCTAssertEqual(loaded.method["queue"], queue)
    XCTAssertEqual(loaded.method["queue_pointer"], pointer)
    XCTAssertNotNil(loaded.state.files[Checkpoint.methodFile])

    var restored: [String: [Float]] = [:]
    try SimCLRMethod.restore(loaded.method, into: [queue, pointer], path: "m") { restored[$0] = $1 }
    XCTAssertEqual(restored["queue"], queue.values)
    XCTAssertThrowsError(try SimCLRMethod.restore(loaded.method, into: [queue], path: "m") { _, _ in }) {
      XCTAssertTrue("\($0)".contains("method state 'queue_pointer' that this method does not keep"), "\($0)")
    }
    let wide = SafeTensors.Entry(name: "queue", shape: [2, 5], values: [Float](repeating: 0, count: 10))
    XCTAssertThrowsError(try SimCLRMethod.restore(loaded.method, into: [wide, pointer], path: "m") { _, _ in }) {
      XCTAssertTrue("\($0)".contains("has shape [2, 4], expected [2, 5]"), "\($0)")
    }
    // A method without state refuses a checkpoint that carries some.
    let simclr = try SimCLRMethod(config: PretrainConfig(), collective: LocalCollective())
    XCTAssertThrowsError(try simclr.restoreState(loaded.method, path: "m"))

    let path = written + "/" + Checkpoint.methodFile
    var bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: path))
    bytes[bytes.count - 1] ^= 1
    try bytes.write(to: URL(fileURLWithPath: path))
    XCTAssertThrowsError(try Checkpoint.load(written)) {
      XCTAssertTrue("\($0)".contains(path + ": sha256 does not match"), "\($0)")
    }
  }
}
