import Foundation
import Model

/// A value a pretraining option holds. It is read from a flag or a YAML scalar as text, and
/// written back as text (`config.yaml`, `--help` defaults, resume comparisons) and as JSON
/// (`state.json`, through `Codable`).
public protocol OptionValue: Codable, Equatable, Sendable {
  /// Parses the text of a flag or YAML scalar; nil when it is not a value of this type.
  init?(optionText: String)
  /// The canonical text: `init(optionText:)` of it gives the same value back.
  var optionText: String { get }
  /// What `--help` shows as the value's kind ("int", "float", "a | b | c").
  static var optionKind: String { get }
}

/// An option whose value is one of a fixed set of names (an enum with `String` raw values).
/// An unknown name is an error that lists the choices, never a fallback.
/// It prints as its name (`transform-pred`, not the case `transformPred`).
public protocol OptionChoice: OptionValue, CaseIterable, RawRepresentable, CustomStringConvertible
where RawValue == String {}

extension OptionChoice {
  public var description: String { rawValue }
  public init?(optionText: String) { self.init(rawValue: optionText) }
  public var optionText: String { rawValue }
  public static var optionKind: String { allCases.map(\.rawValue).joined(separator: " | ") }
}

extension Int: OptionValue {
  public init?(optionText: String) { self.init(optionText.trimmingCharacters(in: .whitespaces)) }
  public var optionText: String { String(self) }
  public static var optionKind: String { "int" }
}

extension UInt64: OptionValue {
  public init?(optionText: String) { self.init(optionText.trimmingCharacters(in: .whitespaces)) }
  public var optionText: String { String(self) }
  public static var optionKind: String { "uint" }
}

extension Float: OptionValue {
  public init?(optionText: String) { self.init(optionText.trimmingCharacters(in: .whitespaces)) }
  /// Swift's shortest round-tripping form (`0.3`, `1e-06`).
  public var optionText: String { "\(self)" }
  public static var optionKind: String { "float" }
}

extension Double: OptionValue {
  public init?(optionText: String) { self.init(optionText.trimmingCharacters(in: .whitespaces)) }
  public var optionText: String { "\(self)" }
  public static var optionKind: String { "float" }
}

extension Bool: OptionValue {
  public init?(optionText: String) {
    switch optionText.lowercased() {
    case "true", "yes", "on", "1": self = true
    case "false", "no", "off", "0": self = false
    default: return nil
    }
  }
  public var optionText: String { self ? "true" : "false" }
  public static var optionKind: String { "true | false" }
}

extension String: OptionValue {
  public init?(optionText: String) { self = optionText }
  public var optionText: String { self }
  public static var optionKind: String { "text" }
}

/// Whether resuming from a checkpoint may change an option.
public enum ResumePolicy: Sendable {
  /// Decides tensor names or shapes, the data order or what optimizer buffers mean: resuming
  /// with another value is refused.
  case mustMatch
  /// May change; resume says so.
  case remark
  /// May change without a remark (paths, logging cadence).
  case silent
}

/// One pretraining option, declared once: its YAML key (the `config.yaml` and `state.json`
/// key), its flag, type, default, help, validation and resume policy all come from here.
/// Declare options in `Options` beside what they configure, and list them in their owner's
/// option list (`PretrainConfig.coreGroups`, a method's `options`).
public final class ConfigOption<Value: OptionValue>: AnyConfigOption, @unchecked Sendable {
  public let key: String
  public let flag: String
  public let help: String
  public let defaultValue: Value
  public let resume: ResumePolicy
  /// Returns a message for a bad value (it is prefixed with the flag), nil when it is good.
  let check: @Sendable (Value) -> String?

  /// - Parameters:
  ///   - key: the YAML key, camelCase (`globalBatch`); the flag is its kebab form
  ///     (`--global-batch`) unless `flag` says otherwise.
  ///   - check: validation of one value on its own (relations between options are checked in
  ///     `PretrainConfig.validate`).
  public init(
    _ key: String, flag: String? = nil, default value: Value, resume: ResumePolicy = .remark,
    help: String, check: @escaping @Sendable (Value) -> String? = { _ in nil }
  ) {
    self.key = key
    self.flag = flag ?? ConfigOption.kebab(key)
    self.help = help
    self.defaultValue = value
    self.resume = resume
    self.check = check
  }

  public var defaultText: String { defaultValue.optionText }
  public var kind: String { Value.optionKind }

  public func parse(_ text: String, label: String) throws -> any OptionValue {
    guard let v = Value(optionText: text) else {
      if Value.optionKind.contains("|") {
        throw ConfigError(message: "\(label): unknown \(flag) '\(text)' (known: \(Value.optionKind.replacingOccurrences(of: " | ", with: ", ")))")
      }
      throw ConfigError(message: "\(label): '\(text)' is not \(Self.describeKind(Value.optionKind))")
    }
    if let problem = check(v) { throw ConfigError(message: "\(label) \(problem) (got \(text))") }
    return v
  }

  public func validate(_ value: any OptionValue) throws {
    guard let v = value as? Value else { throw ConfigError(message: "--\(flag): value of the wrong type") }
    if let problem = check(v) { throw ConfigError(message: "--\(flag) \(problem) (got \(v.optionText))") }
  }

  public func decode<K: CodingKey>(from c: KeyedDecodingContainer<K>, key: K) throws -> any OptionValue {
    try c.decode(Value.self, forKey: key)
  }

  public func encode<K: CodingKey>(_ value: any OptionValue, to c: inout KeyedEncodingContainer<K>, key: K) throws {
    try c.encode(value as? Value ?? defaultValue, forKey: key)
  }

  public func isEqual(_ a: any OptionValue, _ b: any OptionValue) -> Bool {
    (a as? Value) == (b as? Value)
  }

  static func describeKind(_ kind: String) -> String {
    kind.contains("|") ? "one of \(kind)" : "a valid \(kind)"
  }

  /// `globalBatch` → `global-batch`, `baseLR` → `base-lr`, `nFFT` → `n-fft`.
  static func kebab(_ key: String) -> String {
    var out = ""
    var previous: Character?
    for ch in key {
      if ch.isUppercase, let p = previous, p.isLowercase || p.isNumber { out.append("-") }
      out.append(Character(ch.lowercased()))
      previous = ch
    }
    return out
  }
}

/// An option of any value type: what the option tables, the YAML reader, `--help` and the
/// checkpoint code see.
public protocol AnyConfigOption: AnyObject, Sendable {
  var key: String { get }
  var flag: String { get }
  var help: String { get }
  var resume: ResumePolicy { get }
  var defaultText: String { get }
  var kind: String { get }
  /// Parses and validates text; the error starts with `label` (the flag, or the file and key).
  func parse(_ text: String, label: String) throws -> any OptionValue
  func validate(_ value: any OptionValue) throws
  func decode<K: CodingKey>(from c: KeyedDecodingContainer<K>, key: K) throws -> any OptionValue
  func encode<K: CodingKey>(_ value: any OptionValue, to c: inout KeyedEncodingContainer<K>, key: K) throws
  func isEqual(_ a: any OptionValue, _ b: any OptionValue) -> Bool
}

/// Where every option is declared, as a computed property of this empty struct
/// (`extension Options { public var name: ConfigOption<T> { ConfigOption(…) } }`), so that
/// `config.name` reaches it through `PretrainConfig`'s dynamic member lookup. (Instance key
/// paths, not static ones: a key path to a static property of another module crashes the
/// Swift 6.3 runtime, measured with a two-module reproducer.)
public struct Options: Sendable {
  public init() {}
}

// MARK: - Compute precision

extension GemmPrecision: OptionChoice {}

extension Options {
  /// The GEMM operand precision of the encoder and heads (`ParameterArena.gemmPrecision`).
  public var precision: ConfigOption<GemmPrecision> { ConfigOption(
    "precision", default: .fp32, resume: .mustMatch,
    help:
      "GEMM operands of the convolutions and linear layers (forward, input and weight gradients): fp32, or bf16 (rounded to bfloat16 as they are packed, fp32 accumulation; AMX, AVX-512-BF16 or a portable loop, whatever the CPU has). Weights, optimizer, BatchNorm, losses and the all-reduce stay fp32.") }
}

/// Checks for option declarations.
extension ConfigOption where Value: Comparable & Numeric {
  /// A check that the value is at least `low`.
  static func atLeast(_ low: Value) -> @Sendable (Value) -> String? {
    { $0 >= low ? nil : "must be ≥ \(low)" }
  }
}

func positive<T: Comparable & Numeric & Sendable>(_ v: T) -> String? { v > 0 ? nil : "must be positive" }
func nonNegative<T: Comparable & Numeric & Sendable>(_ v: T) -> String? { v >= 0 ? nil : "must be ≥ 0" }
func finiteNonNegative(_ v: Float) -> String? { v >= 0 && v.isFinite ? nil : "must be ≥ 0 and finite" }
func finiteNonNegative(_ v: Double) -> String? { v >= 0 && v.isFinite ? nil : "must be ≥ 0 and finite" }

/// Reading options from the command line: `--flag value`, `--flag=value`, and a bare
/// `--flag` for a Bool option (true).
public enum OptionArguments {
  /// Applies `arguments` to `config` in order (later flags win).
  /// - Throws: `ConfigError` naming an unknown flag, a missing value or a bad value.
  public static func apply(_ arguments: [String], to config: inout PretrainConfig) throws {
    let byFlag = Dictionary(PretrainConfig.allOptions.map { ($0.flag, $0) }, uniquingKeysWith: { a, _ in a })
    var i = 0
    while i < arguments.count {
      let arg = arguments[i]
      guard arg.hasPrefix("--"), arg.count > 2 else {
        throw ConfigError(message: "unexpected argument '\(arg)' (options are --name value)")
      }
      var name = String(arg.dropFirst(2))
      var value: String?
      if let eq = name.firstIndex(of: "=") {
        value = String(name[name.index(after: eq)...])
        name = String(name[..<eq])
      }
      guard let option = byFlag[name] else {
        let near = byFlag.keys.filter { $0.hasPrefix(String(name.prefix(4))) }.sorted()
        throw ConfigError(
          message: "unknown option '--\(name)'" + (near.isEmpty ? "" : " (did you mean \(near.map { "--" + $0 }.joined(separator: ", "))?)")
            + "; `parallax pretrain --help` lists them")
      }
      if value == nil {
        if i + 1 < arguments.count, !arguments[i + 1].hasPrefix("--") {
          value = arguments[i + 1]
          i += 1
        } else if option.kind == Bool.optionKind {
          value = "true"
        } else {
          throw ConfigError(message: "--\(name) needs a value (\(ConfigOption<Int>.describeKind(option.kind)))")
        }
      }
      config.values[option.key] = try option.parse(value!, label: "--\(name)")
      i += 1
    }
  }

  /// The option list for `--help`: flag, kind, default and help of every option, grouped.
  public static func helpText() -> String {
    var lines: [String] = []
    for (title, options) in PretrainConfig.optionGroups {
      lines.append("\(title):")
      for o in options {
        let d = o.defaultText.isEmpty ? "\"\"" : o.defaultText
        lines.append("  --\(o.flag) <\(helpKind(o))>")
        lines.append("        default: \(d); YAML key: \(o.key)")
        if helpKind(o) != o.kind { lines += wrap("one of: " + o.kind.replacingOccurrences(of: " | ", with: ", "), indent: 8) }
        lines += wrap(o.help, indent: 8)
      }
    }
    return lines.joined(separator: "\n")
  }

  /// The kind shown after the flag: `name` for a list of choices too long for one line
  /// (the choices follow on their own lines).
  static func helpKind(_ o: any AnyConfigOption) -> String {
    "  --\(o.flag) <\(o.kind)>".count > 79 ? "name" : o.kind
  }

  /// Words of `text` in lines of at most 79 columns, each indented by `indent` spaces (the
  /// help printer keeps lines that fit as they are).
  static func wrap(_ text: String, indent: Int) -> [String] {
    let pad = String(repeating: " ", count: indent)
    var lines: [String] = []
    var line = ""
    for word in text.split(separator: " ", omittingEmptySubsequences: false) {
      if !line.isEmpty, indent + line.count + 1 + word.count > 79 {
        lines.append(pad + line)
        line = ""
      }
      line += line.isEmpty ? String(word) : " " + word
    }
    if !line.isEmpty { lines.append(pad + line) }
    return lines
  }
}
