import Foundation

/// An RGB image folder made from Fashion-MNIST, for trying the image-folder path on real data:
/// image `i` of a split is tinted with its own colour (each channel scaled by a factor in
/// [0.4, 1] drawn from `KeyedRandom(0x7157, 0, i, .evaluation)` — from the index, never the
/// class, so colour carries no label) and written as PNG (every fifth as JPEG, quality 90)
/// to `OUT/<class>/<i>.png`.
public enum TintedFashionMNIST {
  /// Writes the first `count` images of `split`; returns how many were written.
  @discardableResult
  public static func write(
    to out: String, count: Int, split: FashionMNIST.Split = .train, directory: String = FashionMNIST.defaultDirectory
  ) throws -> Int {
    let source = try FashionMNIST.load(split: split, directory: directory)
    let n = min(count, source.count)
    let fm = FileManager.default
    for name in FashionMNIST.classNames {
      try fm.createDirectory(atPath: out + "/" + folder(name), withIntermediateDirectories: true)
    }
    for i in 0..<n {
      var rng = KeyedRandom(seed: 0x7157, epoch: 0, sample: i, purpose: .evaluation)
      let tint = (0..<3).map { _ in 0.4 + 0.6 * Double(rng.nextFloat()) }
      let rgb = source.image(i).flatMap { g in tint.map { UInt8(min(255, (Double(g) * $0).rounded())) } }
      let image = DecodedImage(width: source.width, height: source.height, channels: 3, pixels: rgb)
      let jpeg = i % 5 == 0
      let path = "\(out)/\(folder(FashionMNIST.classNames[source.label(i)]))/\(i).\(jpeg ? "jpg" : "png")"
      let bytes = jpeg ? try ImageFile.encodeJPEG(image, quality: 90) : try ImageFile.encodePNG(image)
      do { try Foundation.Data(bytes).write(to: URL(fileURLWithPath: path)) } catch {
        throw DataError.io(path: path, operation: "write", reason: error.localizedDescription)
      }
    }
    return n
  }

  /// A class name as a folder name (`T-shirt/top` → `T-shirt-top`).
  static func folder(_ name: String) -> String { name.replacingOccurrences(of: "/", with: "-") }
}
