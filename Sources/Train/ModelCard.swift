import Data
import Foundation
import Model

/// What an encoder's safetensors file says about itself (`__metadata__`, strings only): what
/// to feed it, what it is, which layer gives which features, and who made it — so that a
/// user who never ran Parallax loads and feeds it correctly. Written by `parallax export`
/// and into every checkpoint's `model.safetensors`.
///
/// | key | example (conv4 on Fashion-MNIST) |
/// |---|---|
/// | `input_shape` | `[1, 28, 28]` (C, H, W of one sample) |
/// | `input` | how a sample is made from the data, in words |
/// | `normalization` | `{"scale":255,"mean":[0.286],"std":[0.353]}`: `(x/scale − mean)/std` per channel |
/// | `architecture` | `conv4` |
/// | `architecture_options` | `{"in_channels":1,"width":64,"norm":"BatchNorm2d","bn_eps":1e-05,…}` |
/// | `feature_layers` | `{"pooled":{"dim":64,…},"pre-pool":{"dim":576,…}}` |
/// | `pytorch` | the lines that build the matching PyTorch module, load and feed it |
/// | `parallax_version`, `parallax_commit` | `0.1.0`, `40d5c2d1a2b3` |
/// | `method`, `step`, `config` | the pretraining method, its step, the resolved configuration (JSON; exports only, a checkpoint's is in `state.json`) |
public enum ModelCard {
  /// The metadata of an encoder of `config`'s architecture after `step` steps.
  /// - Parameters:
  ///   - dims: the encoder's pooled and pre-pool feature widths.
  ///   - prefix: the tensor-name prefix of the encoder in the file (`encoder.` in a
  ///     checkpoint, none in an export).
  ///   - includeConfig: add the resolved configuration. A checkpoint leaves it out: its
  ///     `state.json` has it, and runs that differ only in paths then write the same
  ///     `model.safetensors` bytes (which the resume tests compare).
  public static func metadata(
    config: PretrainConfig, step: Int, dims: (pooled: Int, prePool: Int), prefix: String = "",
    includeConfig: Bool = true
  ) -> [String: String] {
    let shape = config.sampleShape
    var m: [String: String] = [
      "format": "pt",
      "method": config.method.rawValue,
      "model": config.model.rawValue,
      "step": "\(step)",
      "architecture": config.model.rawValue,
      "input_shape": "[\(shape.c), \(shape.h), \(shape.w)]",
      "tensor_prefix": prefix,
      "parallax_version": BuildInfo.version,
      "parallax_commit": BuildInfo.commit,
    ]
    m["architecture_options"] = json(architectureOptions(config))
    m["normalization"] = json(normalization(config))
    m["input"] = inputDescription(config)
    let pooled: [String: Any] = ["dim": dims.pooled, "what": "the encoder's output, flattened"]
    let prePool: [String: Any] = ["dim": dims.prePool, "what": "the last feature map before the final pooling, flattened"]
    let layers: [String: Any] = ["pooled": pooled, "pre-pool": prePool]
    m["feature_layers"] = json(layers)
    if let lines = pytorchLines(config, path: "encoder.safetensors") { m["pytorch"] = lines.joined(separator: "\n") }
    if includeConfig, let data = try? JSONEncoder().encode(config) { m["config"] = String(decoding: data, as: UTF8.self) }
    return m
  }

  /// The normalisation every input gets: images `(x/255 − mean)/std` per channel; audio none
  /// (waveforms in [−1, 1], or their log-mel spectrogram).
  static func normalization(_ config: PretrainConfig) -> [String: Any] {
    guard !config.isAudio else { return ["scale": 1, "mean": [0.0], "std": [1.0]] }
    // The Float constants' shortest decimal forms (0.286, not 0.28600001335144043).
    func decimal(_ x: Float) -> Double { Double("\(x)") ?? Double(x) }
    let (mean, std) = imageStatistics(config)
    return ["scale": 255, "mean": mean.map(decimal), "std": std.map(decimal)]
  }

  /// Per-channel mean and std of the image data: a packed set's own (its `dataset.json`),
  /// Fashion-MNIST's otherwise.
  static func imageStatistics(_ config: PretrainConfig) -> (mean: [Float], std: [Float]) {
    if config.data == .images, let info = try? ImageSetInfo.read(directory: config.dataDir) { return (info.mean, info.std) }
    return ([FashionMNIST.mean], [FashionMNIST.std])
  }

  static func inputDescription(_ config: PretrainConfig) -> String {
    guard config.isAudio else {
      let (mean, std) = imageStatistics(config)
      let s = config.sampleShape
      let stats = zip(mean, std).map { String(format: "(x/255 - %.4f)/%.4f", $0, $1) }.joined(separator: ", ")
      return "\(s.c == 3 ? "RGB" : "grey") images \(s.h)×\(s.w), uint8 pixels x in 0..255 scaled per channel as \(stats), NCHW float32"
    }
    let L = config.resolvedAudioLength
    if config.frontEnd == .raw { return "mono waveform, \(L) samples at \(config.sampleRate) Hz in [-1, 1], shape [N, 1, 1, \(L)]" }
    return "log-mel spectrogram of \(L) mono samples at \(config.sampleRate) Hz: n_fft \(config.nFFT), hop \(config.hop), \(config.nMels) mel bands, shape [N, 1, \(config.nMels), \(1 + L / config.hop)]"
  }

  static func architectureOptions(_ config: PretrainConfig) -> [String: Any] {
    var o: [String: Any] = ["in_channels": config.sampleShape.c, "norm": "BatchNorm2d", "bn_eps": 1e-5]
    switch config.model {
    case .conv4:
      o["width"] = config.conv4Width
      o["blocks"] = "4 x [Conv2d 3x3 pad 1 (bias), BatchNorm2d, ReLU, MaxPool2d 2]"
    case .resnet18:
      o["stem"] = "Conv2d 3x3 stride 1 (no bias), BatchNorm2d, ReLU, no max pool"
      o["stages"] = [64, 128, 256, 512]
      o["pool"] = "global average"
    case .samplecnn:
      o["norm"] = "BatchNorm1d"
      o["channels"] = SampleCNN.channels
    case .conv6:
      o["norm"] = "none"
      o["layers"] = "Conv2d 32, Hardtanh, Conv2d 32, MaxPool2d 2, Conv2d 64, Hardtanh, Conv2d 64, MaxPool2d 2, Conv2d 512, MaxPool2d 2 (3x3, pad 1, bias)"
    }
    if config.method == .mtslvr {
      o["multi_task"] = "MT-SLVR encoder (see the method's options in config); features are both tasks' concatenated"
    }
    return o
  }

  /// Python that builds the matching PyTorch module, loads the export with `strict=True` and
  /// feeds it (`images`: the user's float tensor of raw 0..255 pixels); nil where PyTorch has
  /// no plain module of the same names (samplecnn, MT-SLVR's multi-task encoders). Every line
  /// fits in 76 columns, so `--help` prints it unwrapped.
  public static func pytorchLines(_ config: PretrainConfig, path: String) -> [String]? {
    guard config.method != .mtslvr, !config.isAudio else { return nil }
    let c = config.sampleShape.c
    let (mean, std) = imageStatistics(config)
    let norm =
      c == 1
      ? String(format: "x = (images / 255 - %.4f) / %.4f", mean[0], std[0])
      : "x = (images / 255 - m) / s  # m, s: [C, 1, 1] of the metadata's normalization"
    switch config.model {
    case .conv4:
      let w = config.conv4Width
      let s = config.sampleShape
      return [
        "from torch.nn import *; from safetensors.torch import load_file",
        "L = lambda c: [Conv2d(c, \(w), 3, 1, 1), BatchNorm2d(\(w)), ReLU(), MaxPool2d(2)]",
        "net = Sequential(*L(\(c)), *L(\(w)), *L(\(w)), *L(\(w))).eval()",
        "net.load_state_dict(load_file(\"\(path)\"), strict=True)",
        norm + "  # float [N, \(c), \(s.h), \(s.w)], 0..255",
        "pooled, pre_pool = net(x).flatten(1), net[:-1](x).flatten(1)  # \(w * (s.h / 16) * (s.w / 16)), \(w * (s.h / 8) * (s.w / 8))",
      ]
    case .resnet18:
      return [
        "import torch, torchvision; from safetensors.torch import load_file",
        "net = torchvision.models.resnet18()",
        "net.maxpool = net.fc = torch.nn.Identity()",
        "net.conv1 = torch.nn.Conv2d(\(c), 64, 3, 1, 1, bias=False)",
        "net.load_state_dict(load_file(\"\(path)\"), strict=True); net.eval()",
        norm + "  # float [N, \(c), H, W], 0..255",
        "pooled = net(x)  # [N, 512]",
      ]
    case .conv6:
      return [
        "from torch.nn import *; from safetensors.torch import load_file",
        "C = lambda a, b: Conv2d(a, b, 3, 1, 1)",
        "net = Sequential(C(\(c), 32), Hardtanh(), C(32, 32), MaxPool2d(2), C(32, 64),",
        "  Hardtanh(), C(64, 64), MaxPool2d(2), C(64, 512), MaxPool2d(2)).eval()",
        "net.load_state_dict(load_file(\"\(path)\"), strict=True)",
        norm,
        "pooled, pre_pool = net(x).flatten(1), net[:-1](x).flatten(1)",
      ]
    case .samplecnn:
      return nil
    }
  }

  static func json(_ object: Any) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
  }
}
