#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70 000 grayscale 28×28 images of clothing in
/// ten classes, read from the IDX files of Debian's `dataset-fashion-mnist` package.
public enum FashionMNIST {
  /// Which half of the data set.
  public enum Split: String, Sendable {
    /// 60 000 training images (`train-*`).
    case train
    /// 10 000 test images (`t10k-*`).
    case test

    var filePrefix: String { self == .train ? "train" : "t10k" }
  }

  /// Where Debian's `dataset-fashion-mnist` installs the files.
  public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"
  /// Mean of the training pixels scaled to [0, 1].
  public static let mean: Float = 0.2860
  /// Standard deviation of the training pixels scaled to [0, 1].
  public static let std: Float = 0.3530
  /// Number of classes.
  public static let classCount = 10
  /// Class names, indexed by label.
  public static let classNames = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
  ]

  /// What to do when the files are missing.
  public static func installHint(directory: String) -> String {
    "Fashion-MNIST not found in \(directory): install the Debian package dataset-fashion-mnist "
      + "(apt-get install dataset-fashion-mnist) or pass the directory that holds the "
      + "*-idx3-ubyte.gz / *-idx1-ubyte.gz files with the data directory flag (--data-dir)."
  }

  /// The image and label file paths of a split; `.gz` if present, else the unpacked name.
  public static func paths(split: Split, directory: String) -> (images: String, labels: String) {
    func pick(_ stem: String) -> String {
      let gz = "\(directory)/\(stem).gz"
      if access(gz, F_OK) == 0 { return gz }
      let plain = "\(directory)/\(stem)"
      return access(plain, F_OK) == 0 ? plain : gz
    }
    return (
      pick("\(split.filePrefix)-images-idx3-ubyte"), pick("\(split.filePrefix)-labels-idx1-ubyte")
    )
  }

  /// Loads a split into memory.
  /// - Parameters:
  ///   - split: `.train` (60 000 images) or `.test` (10 000).
  ///   - directory: the folder holding the IDX files (gzip-compressed or not).
  /// - Returns: an `ImageDataset` of 1×28×28 images with labels 0…9.
  /// - Throws: `DataError` naming the file; a missing file's message says how to install it.
  public static func load(split: Split, directory: String = defaultDirectory) throws -> ImageDataset {
    let hint = installHint(directory: directory)
    let (imagePath, labelPath) = paths(split: split, directory: directory)
    let labels = try IDXFile.read(path: labelPath, hint: hint)
    guard labels.dims.count == 1 else {
      throw DataError.badHeader(
        path: labelPath, reason: "label file has dimensions \(labels.dims), expected [N]")
    }
    let images = try IDXFile.read(path: imagePath, hint: hint)
    guard images.dims.count == 3 else {
      throw DataError.badHeader(
        path: imagePath, reason: "image file has dimensions \(images.dims), expected [N, H, W]")
    }
    guard images.dims[0] == labels.dims[0] else {
      throw DataError.badHeader(
        path: imagePath,
        reason: "\(images.dims[0]) images but \(labelPath) holds \(labels.dims[0]) labels")
    }
    if let bad = labels.bytes.firstIndex(where: { Int($0) >= classCount }) {
      throw DataError.badHeader(
        path: labelPath, reason: "label \(labels.bytes[bad]) at index \(bad) is not in 0..<\(classCount)")
    }
    return try ImageDataset(
      count: images.dims[0], channels: 1, height: images.dims[1], width: images.dims[2],
      pixels: images.bytes, labels: labels.bytes.map { Int32($0) })
  }
}
