/// One named column of a dataset's labels: Fashion-MNIST has one (`class`); the spoken-digit
/// corpus four (`word`, `language`, `voice`, `gender`); a multi-label set such as MagnaTagATune
/// one 0/1 slot per tag.
public struct LabelSlot: Equatable, Sendable {
  /// The column's name (`class`, `word`, a tag).
  public var name: String
  /// Class names, indexed by label (`["0", "1"]` for a tag).
  public var classNames: [String]

  public init(name: String, classNames: [String]) {
    self.name = name
    self.classNames = classNames
  }

  /// Number of classes.
  public var classCount: Int { classNames.count }
}

/// The shape of one model input, `C×H×W` (an image `1×28×28`, a waveform `1×1×L`, a log-mel
/// spectrogram `1×nMels×frames`).
public struct InputShape: Equatable, Sendable {
  public var channels: Int, height: Int, width: Int

  public init(channels: Int, height: Int, width: Int) {
    self.channels = channels
    self.height = height
    self.width = width
  }

  /// Floats per input, `C·H·W`.
  public var count: Int { channels * height * width }
}

/// The evaluation side of a dataset: clean (un-augmented) model inputs of a labelled set by
/// index, and their labels by slot. Feature extraction, probes, k-NN and few-shot evaluation
/// read any dataset through this, images (`EvalBatchLoader`) and audio (`AudioEvalLoader`)
/// alike; how a sample becomes an input (normalised pixels; a centre-cropped waveform, through
/// the log-mel front end or not) is the conformer's business.
///
/// Conformers own scratch buffers: not thread-safe, use one per thread.
public protocol EvalSource: AnyObject {
  /// Samples `N`.
  var count: Int { get }
  /// One input, `C×H×W`.
  var inputShape: InputShape { get }
  /// The label columns.
  var labelSlots: [LabelSlot] { get }
  /// The class of sample `i` in `slot`.
  func label(_ i: Int, slot: Int) -> Int
  /// Writes the clean inputs of the samples at `indices` into `x`, shaped
  /// `[indices.count, C, H, W]`, in that order.
  func load<S: Sequence>(indices: S, into x: UnsafeMutablePointer<Float>) throws where S.Element == Int
}

extension EvalSource {
  /// The labels of the samples at `indices` in `slot`.
  public func labels<S: Sequence>(indices: S, slot: Int = 0) -> [Int] where S.Element == Int {
    indices.map { label($0, slot: slot) }
  }

  /// The slot index of a label name, or nil.
  public func slot(named name: String) -> Int? { labelSlots.firstIndex { $0.name == name } }
}
