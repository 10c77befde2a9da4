/// Errors of the audio readers. Every case names the file, so a failing run says which one
/// to look at (or which one `--on-bad-file skip` skipped).
public enum AudioError: Error, CustomStringConvertible, Equatable {
  /// libsndfile cannot open or decode the file (corrupt, unsupported format …); `reason` is
  /// libsndfile's own message.
  case undecodable(path: String, reason: String)
  /// The file is empty, or decodes to zero samples.
  case empty(path: String)
  /// Resampling failed (libsamplerate's message).
  case resample(path: String, reason: String)

  public var path: String {
    switch self {
    case .undecodable(let p, _), .empty(let p), .resample(let p, _): return p
    }
  }

  public var description: String {
    switch self {
    case .undecodable(let path, let reason): return "\(path): cannot decode audio: \(reason)"
    case .empty(let path): return "\(path): audio file is empty (zero samples)"
    case .resample(let path, let reason): return "\(path): resampling failed: \(reason)"
    }
  }
}

/// What a reader does with a file it cannot decode.
public enum BadFilePolicy: String, Sendable, CaseIterable {
  /// Throw the error (naming the file).
  case fail
  /// Leave the file out and count it.
  case skip
}
