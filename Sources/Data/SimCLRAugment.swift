#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// SimCLR's augmentation pipeline (Chen et al. 2020, appendix A) for `C×H×W` images (C = 1 or
/// 3), as torchvision composes it:
///
/// 1. random resized crop (scale `[0.2, 1]`, aspect ratio `[3/4, 4/3]`, bilinear back to H×W),
/// 2. horizontal flip with p = 0.5,
/// 3. colour jitter with p = 0.8: on one channel brightness and contrast of 0.4 in random
///    order; on RGB brightness, contrast, saturation (0.4) and hue (0.1) in a random order of
///    the four, as torchvision's `ColorJitter`,
/// 4. RGB only: random grayscale with p = 0.2 (ITU-R 601 luma in every channel),
/// 5. Gaussian blur with p = 0.5 (kernel 3 or 5, σ in [0.1, 2], reflect padding),
/// 6. additive Gaussian noise with p = 0.5 (σ = 0.05 on the [0, 1] scale, not clamped),
///
/// then normalisation `(x/255 − mean) / std` per channel. One-channel images draw exactly the
/// random numbers they drew before RGB existed, so their views are unchanged. Every draw comes from the `KeyedRandom` passed in,
/// so a view is a pure function of (image, key).
///
/// Holds scratch buffers, so one instance must not be used by two threads at once; `copy()`
/// makes another with the same configuration.
public final class SimCLRAugment {
  /// The pipeline's parameters. `init(strength:)` scales the crop range, jitter and noise.
  public struct Config: Equatable, Sendable {
    /// Fraction of the image area a crop keeps, `[lower, upper]`.
    public var cropScale: (lower: Float, upper: Float)
    /// Crop aspect ratio (width / height) range, sampled log-uniformly.
    public var cropRatio: (lower: Float, upper: Float)
    public var flipProbability: Float
    public var jitterProbability: Float
    /// Brightness factor is drawn from `[max(0, 1 − b), 1 + b]`.
    public var brightness: Float
    /// Contrast factor is drawn from `[max(0, 1 − c), 1 + c]`.
    public var contrast: Float
    public var blurProbability: Float
    public var blurSigma: (lower: Float, upper: Float)
    /// Blur kernel sizes to choose from (odd, at most `maxKernel`).
    public var blurKernelSizes: [Int]
    public var noiseProbability: Float
    /// Noise standard deviation on the [0, 1] pixel scale.
    public var noiseStd: Float
    /// Normalisation constants of one-channel images (Fashion-MNIST's by default).
    public var mean: Float
    public var std: Float
    /// RGB only: saturation factor from `[max(0, 1 − s), 1 + s]`.
    public var saturation: Float
    /// RGB only: hue shift from `[−h, h]` turns (h ≤ 0.5).
    public var hue: Float
    public var grayscaleProbability: Float
    /// Per-channel normalisation of RGB images (a packed set's statistics; ImageNet's by
    /// default).
    public var rgbMean: [Float]
    public var rgbStd: [Float]

    /// SimCLR's settings with magnitudes scaled by `strength` (1 = the paper's): crop scale
    /// lower bound `1 − 0.8·s` (clamped to ≥ 0.05), ratio range `(4/3)^±s`, jitter `0.4·s`,
    /// noise σ `0.05·s`. Flip and blur probabilities do not depend on `s`.
    public init(strength: Float = 1) {
      let s = max(0, strength)
      cropScale = (max(0.05, 1 - 0.8 * s), 1)
      let logRatio = Float(log(4.0 / 3.0)) * s
      cropRatio = (expf(-logRatio), expf(logRatio))
      flipProbability = 0.5
      jitterProbability = 0.8
      brightness = 0.4 * s
      contrast = 0.4 * s
      blurProbability = 0.5
      blurSigma = (0.1, 2.0)
      blurKernelSizes = [3, 5]
      noiseProbability = 0.5
      noiseStd = 0.05 * s
      mean = FashionMNIST.mean
      std = FashionMNIST.std
      saturation = 0.4 * s
      hue = min(0.5, 0.1 * s)
      grayscaleProbability = 0.2
      rgbMean = [0.485, 0.456, 0.406]
      rgbStd = [0.229, 0.224, 0.225]
    }

    /// Mean and std of channel `ch` of a `channels`-channel image.
    public func normalization(channel ch: Int, of channels: Int) -> (mean: Float, std: Float) {
      channels == 1 ? (mean, std) : (rgbMean[ch], rgbStd[ch])
    }

    /// No augmentation at all: `apply` then equals `normalize`.
    public static var identity: Config {
      var c = Config(strength: 0)
      c.flipProbability = 0
      c.jitterProbability = 0
      c.blurProbability = 0
      c.noiseProbability = 0
      c.grayscaleProbability = 0
      return c
    }

    public static func == (a: Config, b: Config) -> Bool {
      a.cropScale == b.cropScale && a.cropRatio == b.cropRatio
        && a.flipProbability == b.flipProbability && a.jitterProbability == b.jitterProbability
        && a.brightness == b.brightness && a.contrast == b.contrast
        && a.blurProbability == b.blurProbability && a.blurSigma == b.blurSigma
        && a.blurKernelSizes == b.blurKernelSizes && a.noiseProbability == b.noiseProbability
        && a.noiseStd == b.noiseStd && a.mean == b.mean && a.std == b.std
        && a.saturation == b.saturation && a.hue == b.hue && a.grayscaleProbability == b.grayscaleProbability
        && a.rgbMean == b.rgbMean && a.rgbStd == b.rgbStd
    }
  }

  /// Largest blur kernel supported.
  public static let maxKernel = 15

  /// A `var` so one augmenter (and its scratch) can serve per-sample configurations
  /// (amortised invariance learning: `Config.grouped`).
  public var config: Config

  // Scratch, grown on first use for a given size and then reused.
  private var capacity = 0
  /// [H, W] working image on the [0, 1] scale.
  private var image: UnsafeMutablePointer<Float>
  /// [H, W] second buffer for the separable blur.
  private var temp: UnsafeMutablePointer<Float>
  /// Per output column: source columns and weight of the right one.
  private var col0: UnsafeMutablePointer<Int>
  private var col1: UnsafeMutablePointer<Int>
  private var colWeight: UnsafeMutablePointer<Float>
  /// [maxKernel] blur weights.
  private let kernel: UnsafeMutablePointer<Float>

  /// SimCLR's pipeline at `strength` (see `Config.init(strength:)`).
  public convenience init(strength: Float = 1.0) { self.init(config: Config(strength: strength)) }

  public init(config: Config) {
    self.config = config
    image = .allocate(capacity: 1)
    temp = .allocate(capacity: 1)
    col0 = .allocate(capacity: 1)
    col1 = .allocate(capacity: 1)
    colWeight = .allocate(capacity: 1)
    kernel = .allocate(capacity: Self.maxKernel)
  }

  deinit {
    image.deallocate()
    temp.deallocate()
    col0.deallocate()
    col1.deallocate()
    colWeight.deallocate()
    kernel.deallocate()
  }

  /// Another augmenter with the same configuration and its own scratch (for another thread).
  public func copy() -> SimCLRAugment { SimCLRAugment(config: config) }

  private func reserve(height: Int, width: Int, channels: Int = 1) {
    let n = height * width * channels
    let need = max(n, width, height)
    if need <= capacity { return }
    image.deallocate(); temp.deallocate(); col0.deallocate(); col1.deallocate()
    colWeight.deallocate()
    image = .allocate(capacity: need)
    temp = .allocate(capacity: need)
    col0 = .allocate(capacity: need)
    col1 = .allocate(capacity: need)
    colWeight = .allocate(capacity: need)
    capacity = need
  }

  // MARK: Normalisation

  /// `(x/255 − mean)/std` for `count` bytes (computed as `(x·(1/255) − mean)·(1/std)`).
  public static func normalize(
    _ src: UnsafePointer<UInt8>, count: Int, into dst: UnsafeMutablePointer<Float>,
    mean: Float = FashionMNIST.mean, std: Float = FashionMNIST.std
  ) {
    let inv255: Float = 1 / 255, invStd = 1 / std
    for i in 0..<count { dst[i] = (Float(src[i]) * inv255 - mean) * invStd }
  }

  /// Normalises an `H×W` image with this augmenter's mean and std, without augmenting it.
  public func normalize(
    _ src: UnsafePointer<UInt8>, height: Int, width: Int, into dst: UnsafeMutablePointer<Float>
  ) {
    Self.normalize(src, count: height * width, into: dst, mean: config.mean, std: config.std)
  }

  // MARK: Augmentation

  /// Writes one augmented, normalised view of `src` into `dst`.
  /// - Parameters:
  ///   - src: [C, H, W] pixel bytes.
  ///   - channels: C, 1 or 3.
  ///   - dst: [C, H, W] floats.
  ///   - rng: the view's stream, e.g. `KeyedRandom(seed, epoch, sample, .view1)`.
  /// - Returns: the augmentations that changed the view (the crop counts when its box is not
  ///   the whole image), the multi-hot label of transformation prediction.
  @discardableResult
  public func apply(
    _ src: UnsafePointer<UInt8>, channels: Int = 1, height: Int, width: Int, into dst: UnsafeMutablePointer<Float>,
    rng: inout KeyedRandom
  ) -> ImageAugmentationSet {
    precondition(channels == 1 || channels == 3, "SimCLRAugment takes 1 or 3 channels")
    reserve(height: height, width: width, channels: channels)
    let c = config
    var applied = ImageAugmentationSet()
    let (top, left, cropH, cropW) = cropBox(height: height, width: width, rng: &rng)
    let flip = c.flipProbability > 0 && rng.bernoulli(c.flipProbability)
    if cropH != height || cropW != width || top != 0 || left != 0 { applied.insert(.crop) }
    if flip { applied.insert(.flip) }
    resize(
      src, channels: channels, height: height, width: width, top: top, left: left, cropH: cropH, cropW: cropW,
      flip: flip)
    if c.jitterProbability > 0 && rng.bernoulli(c.jitterProbability) {
      jitter(channels: channels, plane: height * width, rng: &rng)
      applied.insert(.jitter)
    }
    if channels == 3 && c.grayscaleProbability > 0 && rng.bernoulli(c.grayscaleProbability) {
      toGrayscale(height * width)
      applied.insert(.grayscale)
    }
    if c.blurProbability > 0 && rng.bernoulli(c.blurProbability) && !c.blurKernelSizes.isEmpty {
      blur(channels: channels, height: height, width: width, rng: &rng)
      applied.insert(.blur)
    }
    if c.noiseProbability > 0 && rng.bernoulli(c.noiseProbability) && c.noiseStd > 0 {
      addNoise(channels * height * width, rng: &rng)
      applied.insert(.noise)
    }
    finish(channels: channels, plane: height * width, into: dst)
    return applied
  }

  /// MT-SLVR's sampling (Heggan et al. 2023): the augmentations of a sample, `k ~ U{1…n}`
  /// distinct ones of the `n` (5 on one channel, 6 with RGB's grayscale) in random order,
  /// drawn once per sample from `KeyedRandom(seed, epoch, sample, .transform)` and shared by
  /// both views.
  public static func sampleAugmentations(rng: inout KeyedRandom, channels: Int = 1) -> [ImageAugmentation] {
    var all = ImageAugmentation.cases(channels: channels)
    let k = 1 + rng.nextInt(below: all.count)
    // Partial Fisher–Yates: the first k of a random permutation.
    for i in 0..<k {
      let j = i + rng.nextInt(below: all.count - i)
      all.swapAt(i, j)
    }
    return Array(all[0..<k])
  }

  /// Writes one view of `src` with exactly the augmentations `chosen`, each applied (no
  /// probabilities), with this view's own parameters from `rng`. The crop (a resample of the
  /// source bytes) and the flip (which commutes with the pixel-wise and symmetric steps) are
  /// done first; jitter, blur and noise follow in the order of `chosen`.
  /// - Returns: the set of `chosen` (the label, whatever the parameters drawn).
  @discardableResult
  public func apply(
    _ src: UnsafePointer<UInt8>, channels: Int = 1, height: Int, width: Int, into dst: UnsafeMutablePointer<Float>,
    chosen: [ImageAugmentation], rng: inout KeyedRandom
  ) -> ImageAugmentationSet {
    precondition(channels == 1 || channels == 3, "SimCLRAugment takes 1 or 3 channels")
    reserve(height: height, width: width, channels: channels)
    let set = ImageAugmentationSet(chosen)
    var box = (0, 0, height, width)
    if set.contains(.crop) { box = cropBox(height: height, width: width, rng: &rng) }
    resize(
      src, channels: channels, height: height, width: width, top: box.0, left: box.1, cropH: box.2, cropW: box.3,
      flip: set.contains(.flip))
    let plane = height * width
    for a in chosen {
      switch a {
      case .crop, .flip: break
      case .jitter: jitter(channels: channels, plane: plane, rng: &rng)
      case .grayscale: if channels == 3 { toGrayscale(plane) }
      case .blur:
        if !config.blurKernelSizes.isEmpty { blur(channels: channels, height: height, width: width, rng: &rng) }
      case .noise: addNoise(channels * plane, rng: &rng)
      }
    }
    finish(channels: channels, plane: plane, into: dst)
    return set
  }

  /// One channel: brightness and contrast in random order. RGB: torchvision's `ColorJitter`,
  /// brightness, contrast, saturation and hue in a random permutation, each factor drawn.
  private func jitter(channels: Int, plane: Int, rng: inout KeyedRandom) {
    guard channels == 3 else { return jitter(plane, rng: &rng) }
    let c = config
    var order = [0, 1, 2, 3]
    for i in 0..<3 { order.swapAt(i, i + rng.nextInt(below: 4 - i)) }
    let b = rng.uniform(max(0, 1 - c.brightness), 1 + c.brightness)
    let k = rng.uniform(max(0, 1 - c.contrast), 1 + c.contrast)
    let s = rng.uniform(max(0, 1 - c.saturation), 1 + c.saturation)
    let h = rng.uniform(-c.hue, c.hue)
    for op in order {
      switch op {
      case 0: scaleBrightness(3 * plane, b)
      case 1: adjustRGBContrast(plane, k)
      case 2: adjustSaturation(plane, s)
      default: if h != 0 { shiftHue(plane, h) }
      }
    }
  }

  /// ITU-R 601 luma of pixel `i` of the RGB working image.
  @inline(__always) private func luma(_ i: Int, _ plane: Int) -> Float {
    0.299 * image[i] + 0.587 * image[plane + i] + 0.114 * image[2 * plane + i]
  }

  /// Blend with the mean luma (torchvision's `adjust_contrast` on RGB).
  private func adjustRGBContrast(_ plane: Int, _ factor: Float) {
    var sum: Float = 0
    for i in 0..<plane { sum += luma(i, plane) }
    let m = (1 - factor) * sum / Float(plane)
    for i in 0..<(3 * plane) { image[i] = min(1, max(0, factor * image[i] + m)) }
  }

  /// Blend each pixel with its luma (torchvision's `adjust_saturation`).
  private func adjustSaturation(_ plane: Int, _ factor: Float) {
    for i in 0..<plane {
      let g = (1 - factor) * luma(i, plane)
      for ch in 0..<3 { image[ch * plane + i] = min(1, max(0, factor * image[ch * plane + i] + g)) }
    }
  }

  private func shiftHue(_ plane: Int, _ shift: Float) { Self.shiftHue(image, plane: plane, shift) }

  /// Rotates the hue of the planar RGB image at `image` by `shift` turns in HSV
  /// (torchvision's `adjust_hue`); gray pixels are unchanged.
  static func shiftHue(_ image: UnsafeMutablePointer<Float>, plane: Int, _ shift: Float) {
    for i in 0..<plane {
      let r = image[i], g = image[plane + i], b = image[2 * plane + i]
      let maxc = max(r, g, b), minc = min(r, g, b)
      let v = maxc, delta = maxc - minc
      guard delta > 0, maxc > 0 else { continue }  // gray: hue has no effect
      let sat = delta / maxc
      var hue: Float
      if maxc == r { hue = (g - b) / delta } else if maxc == g { hue = 2 + (b - r) / delta } else { hue = 4 + (r - g) / delta }
      hue = hue / 6 + shift
      hue -= hue.rounded(.down)
      let h6 = hue * 6
      let sector = min(5, Int(h6))
      let f = h6 - Float(sector)
      let p = v * (1 - sat), q = v * (1 - sat * f), t = v * (1 - sat * (1 - f))
      let (nr, ng, nb): (Float, Float, Float)
      switch sector {
      case 0: (nr, ng, nb) = (v, t, p)
      case 1: (nr, ng, nb) = (q, v, p)
      case 2: (nr, ng, nb) = (p, v, t)
      case 3: (nr, ng, nb) = (p, q, v)
      case 4: (nr, ng, nb) = (t, p, v)
      default: (nr, ng, nb) = (v, p, q)
      }
      image[i] = nr
      image[plane + i] = ng
      image[2 * plane + i] = nb
    }
  }

  /// Every channel becomes the luma (torchvision's `rgb_to_grayscale` with 3 outputs).
  private func toGrayscale(_ plane: Int) {
    for i in 0..<plane {
      let y = luma(i, plane)
      image[i] = y
      image[plane + i] = y
      image[2 * plane + i] = y
    }
  }

  /// Brightness and contrast in random order.
  private func jitter(_ n: Int, rng: inout KeyedRandom) {
    let c = config
    let brightnessFirst = rng.bernoulli(0.5)
    let b = rng.uniform(max(0, 1 - c.brightness), 1 + c.brightness)
    let k = rng.uniform(max(0, 1 - c.contrast), 1 + c.contrast)
    if brightnessFirst {
      scaleBrightness(n, b)
      adjustContrast(n, k)
    } else {
      adjustContrast(n, k)
      scaleBrightness(n, b)
    }
  }

  /// One σ and kernel size for every channel.
  private func blur(channels: Int, height: Int, width: Int, rng: inout KeyedRandom) {
    let c = config
    let sigma = rng.uniform(c.blurSigma.lower, c.blurSigma.upper)
    let size = c.blurKernelSizes[rng.nextInt(below: c.blurKernelSizes.count)]
    for ch in 0..<channels {
      blur(image + ch * height * width, height: height, width: width, kernelSize: min(size, Self.maxKernel), sigma: sigma)
    }
  }

  /// Additive Gaussian noise; Box–Muller pairs, both deviates used.
  private func addNoise(_ n: Int, rng: inout KeyedRandom) {
    var i = 0
    while i < n {
      let u1 = 1 - rng.nextDouble(), u2 = rng.nextDouble()
      let r = (-2 * log(u1)).squareRoot() * Double(config.noiseStd)
      let t = 2 * Double.pi * u2
      image[i] += Float(r * cos(t))
      if i + 1 < n { image[i + 1] += Float(r * sin(t)) }
      i += 2
    }
  }

  /// Normalises the working image into `dst`, channel by channel.
  private func finish(channels: Int, plane: Int, into dst: UnsafeMutablePointer<Float>) {
    for ch in 0..<channels {
      let (mean, std) = config.normalization(channel: ch, of: channels)
      let invStd = 1 / std
      let o = ch * plane
      for i in o..<(o + plane) { dst[i] = (image[i] - mean) * invStd }
    }
  }

  /// torchvision's `RandomResizedCrop.get_params`: ten tries at a box of random area and
  /// log-uniform aspect ratio, then a centre crop with the ratio clamped.
  func cropBox(height: Int, width: Int, rng: inout KeyedRandom) -> (Int, Int, Int, Int) {
    let c = config
    if c.cropScale.lower >= 1 && c.cropRatio.lower == 1 && c.cropRatio.upper == 1 {
      return (0, 0, height, width)
    }
    let area = Float(height * width)
    let logLo = logf(c.cropRatio.lower), logHi = logf(c.cropRatio.upper)
    for _ in 0..<10 {
      let target = area * rng.uniform(c.cropScale.lower, c.cropScale.upper)
      let ratio = expf(rng.uniform(logLo, logHi))
      let w = Int((target * ratio).squareRoot().rounded())
      let h = Int((target / ratio).squareRoot().rounded())
      if w > 0 && w <= width && h > 0 && h <= height {
        let top = rng.nextInt(below: height - h + 1)
        let left = rng.nextInt(below: width - w + 1)
        return (top, left, h, w)
      }
    }
    let inRatio = Float(width) / Float(height)
    var w = width, h = height
    if inRatio < c.cropRatio.lower {
      h = Int((Float(w) / c.cropRatio.lower).rounded())
    } else if inRatio > c.cropRatio.upper {
      w = Int((Float(h) * c.cropRatio.upper).rounded())
    }
    h = max(1, min(h, height))
    w = max(1, min(w, width))
    return ((height - h) / 2, (width - w) / 2, h, w)
  }

  /// Bilinear resize (half-pixel centres, as PyTorch with `align_corners=False`) of the crop
  /// into `image` on the [0, 1] scale, mirrored horizontally if `flip`, every channel with
  /// the same box.
  private func resize(
    _ src: UnsafePointer<UInt8>, channels: Int, height: Int, width: Int, top: Int, left: Int, cropH: Int,
    cropW: Int, flip: Bool
  ) {
    let sx = Float(cropW) / Float(width), sy = Float(cropH) / Float(height)
    for x in 0..<width {
      let f = max(0, (Float(x) + 0.5) * sx - 0.5)
      let x0 = min(Int(f), cropW - 1)
      let out = flip ? width - 1 - x : x
      col0[out] = left + x0
      col1[out] = left + min(x0 + 1, cropW - 1)
      colWeight[out] = f - Float(x0)
    }
    let inv255: Float = 1 / 255
    let plane = height * width
    for ch in 0..<channels {
    for y in 0..<height {
      let f = max(0, (Float(y) + 0.5) * sy - 0.5)
      let y0 = min(Int(f), cropH - 1)
      let wy = f - Float(y0)
      let row0 = src + ch * plane + (top + y0) * width
      let row1 = src + ch * plane + (top + min(y0 + 1, cropH - 1)) * width
      let out = image + ch * plane + y * width
      for x in 0..<width {
        let a = Float(row0[col0[x]]), b = Float(row0[col1[x]])
        let c = Float(row1[col0[x]]), d = Float(row1[col1[x]])
        let wx = colWeight[x]
        let upper = a + (b - a) * wx
        let lower = c + (d - c) * wx
        out[x] = (upper + (lower - upper) * wy) * inv255
      }
    }
    }
  }

  private func scaleBrightness(_ n: Int, _ factor: Float) {
    for i in 0..<n { image[i] = min(1, max(0, image[i] * factor)) }
  }

  /// Blend with the image mean, as torchvision's `adjust_contrast` on a grayscale image.
  private func adjustContrast(_ n: Int, _ factor: Float) {
    var sum: Float = 0
    for i in 0..<n { sum += image[i] }
    let m = (1 - factor) * sum / Float(n)
    for i in 0..<n { image[i] = min(1, max(0, factor * image[i] + m)) }
  }

  /// Separable Gaussian blur of one `H×W` plane with reflect padding (torchvision's
  /// `gaussian_blur`).
  private func blur(_ image: UnsafeMutablePointer<Float>, height: Int, width: Int, kernelSize: Int, sigma: Float) {
    let r = kernelSize / 2
    var total: Float = 0
    for k in 0..<kernelSize {
      let x = Float(k - r)
      kernel[k] = expf(-0.5 * x * x / (sigma * sigma))
      total += kernel[k]
    }
    for k in 0..<kernelSize { kernel[k] /= total }
    // Rows: image → temp.
    for y in 0..<height {
      let row = image + y * width, out = temp + y * width
      for x in 0..<width {
        var acc: Float = 0
        for k in 0..<kernelSize { acc += kernel[k] * row[Self.reflect(x + k - r, width)] }
        out[x] = acc
      }
    }
    // Columns: temp → image.
    for y in 0..<height {
      let out = image + y * width
      for x in 0..<width { out[x] = 0 }
      for k in 0..<kernelSize {
        let row = temp + Self.reflect(y + k - r, height) * width
        let w = kernel[k]
        for x in 0..<width { out[x] += w * row[x] }
      }
    }
  }

  /// Reflects an index into 0..<n without repeating the edge (PyTorch's `reflect` padding).
  @inline(__always)
  static func reflect(_ i: Int, _ n: Int) -> Int {
    if n == 1 { return 0 }
    var j = i
    while j < 0 || j >= n {
      if j < 0 { j = -j }
      if j >= n { j = 2 * (n - 1) - j }
    }
    return j
  }
}

/// The augmentations of `SimCLRAugment`, in label-column order.
public enum ImageAugmentation: Int, CaseIterable, Sendable {
  case crop, flip, jitter, blur, noise
  /// RGB only (its label column exists only for 3-channel images).
  case grayscale

  /// The augmentations of `channels`-channel images, in label-column order.
  public static func cases(channels: Int) -> [ImageAugmentation] {
    channels == 3 ? allCases : allCases.filter { $0 != .grayscale }
  }
}

/// A set of `ImageAugmentation`s: a bit per case, written out as a multi-hot row.
public struct ImageAugmentationSet: OptionSet, Sendable, Hashable {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }
  public init(_ list: [ImageAugmentation]) {
    self.init(rawValue: 0)
    for a in list { insert(a) }
  }

  public func contains(_ a: ImageAugmentation) -> Bool { rawValue & (1 << a.rawValue) != 0 }
  public mutating func insert(_ a: ImageAugmentation) { rawValue |= 1 << a.rawValue }

  /// Columns of the multi-hot label of one-channel images.
  public static var count: Int { columns(channels: 1) }
  /// Columns of the multi-hot label of `channels`-channel images (6 for RGB: grayscale).
  public static func columns(channels: Int) -> Int { ImageAugmentation.cases(channels: channels).count }

  /// Writes `columns(channels:)` floats, 1 for each member, into `row`.
  public func writeMultiHot(into row: UnsafeMutablePointer<Float>, channels: Int = 1) {
    for a in ImageAugmentation.cases(channels: channels) { row[a.rawValue] = contains(a) ? 1 : 0 }
  }
}
