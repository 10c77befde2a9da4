/// Something that serves mono audio clips with labels by index: files decoded on demand
/// (`AudioFileDataset`) or fixed-length clips packed in a record shard (`AudioShardSource`).
/// Loaders take an `AudioSource`, so they do not care where the samples live.
///
/// Labels come in `K` slots, each a small class index: the spoken-digit corpus has the slots
/// word, language, voice and gender; a multi-label set such as MagnaTagATune has one 0/1
/// slot per tag.
///
/// `samples(_:)` must be safe to call from several threads at once.
public protocol AudioSource: AnyObject {
  /// Number of clips `N`.
  var count: Int { get }
  /// Sample rate of every clip `samples` returns, Hz.
  var sampleRate: Int { get }
  /// Names of the label slots (`K` of them).
  var labelNames: [String] { get }
  /// Class names of each slot, `[K][classes]` (`["0", "1"]` for a tag slot).
  var classNames: [[String]] { get }
  /// The class of clip `i` in `slot`.
  func label(_ i: Int, slot: Int) -> Int
  /// Clip `i`'s mono samples at `sampleRate`.
  func samples(_ i: Int) throws -> [Float]
}

extension AudioSource {
  /// The slot index of a label name, or nil.
  public func slot(named name: String) -> Int? { labelNames.firstIndex(of: name) }

  /// All labels of one slot, in clip order.
  public func labels(slot: Int) -> [Int] { (0..<count).map { label($0, slot: slot) } }

  /// Clip `i`'s labels in every slot.
  public func labels(_ i: Int) -> [Int] { (0..<labelNames.count).map { label(i, slot: $0) } }
}
