/// Errors thrown by the `Data` target. Every case that concerns a file carries its path, and
/// the description names it, so a failing run says which file to look at.
public enum DataError: Error, CustomStringConvertible, Equatable {
  /// The file does not exist. `hint` says how to get it, when we know.
  case fileNotFound(path: String, hint: String?)
  /// An operating-system call failed on the file (`reason` is `strerror`'s text).
  case io(path: String, operation: String, reason: String)
  /// The gzip stream is corrupt or ends early.
  case gzip(path: String, reason: String)
  /// The file does not start with the magic number its format requires.
  case badMagic(path: String, found: String, expected: String)
  /// The file holds fewer bytes than its header promises.
  case truncated(path: String, expectedBytes: Int, actualBytes: Int)
  /// The header is readable but inconsistent or of an unsupported kind.
  case badHeader(path: String, reason: String)
  /// A sample, record or batch index lies outside its range.
  case indexOutOfRange(what: String, index: Int, count: Int)
  /// A configuration value is invalid (batch sizes, shapes, labels …).
  case invalidArgument(String)

  public var description: String {
    switch self {
    case .fileNotFound(let path, let hint):
      let base = "\(path): no such file"
      return hint.map { "\(base). \($0)" } ?? base
    case .io(let path, let operation, let reason):
      return "\(path): \(operation) failed: \(reason)"
    case .gzip(let path, let reason):
      return "\(path): gzip decompression failed: \(reason)"
    case .badMagic(let path, let found, let expected):
      return "\(path): bad magic number \(found), expected \(expected)"
    case .truncated(let path, let expected, let actual):
      return "\(path): truncated: expected \(expected) bytes, found \(actual)"
    case .badHeader(let path, let reason):
      return "\(path): bad header: \(reason)"
    case .indexOutOfRange(let what, let index, let count):
      return "\(what) index \(index) out of range 0..<\(count)"
    case .invalidArgument(let message):
      return message
    }
  }
}
