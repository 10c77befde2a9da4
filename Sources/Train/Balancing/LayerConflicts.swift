import Foundation
import Model

/// Recon's layer-wise S-conflict scores (Shi et al., ICLR 2023): for every shared layer, the
/// number of (step, task pair) at which the two tasks' gradients of that layer had a cosine
/// below S. The layers with the highest scores are the ones Recon makes task-specific.
///
/// A layer is a parameter name without its last component (`encoder.4.weight` and
/// `encoder.4.bias` are layer `encoder.4`), as the authors' code groups them; its gradient is
/// the concatenation of its tensors'. The gradients are the balancer's input, summed over the
/// ranks, so every rank counts the same. A pair where either gradient is zero has no cosine
/// and is not counted.
public final class LayerConflicts {
  public let threshold: Double
  /// Layer names in the shared parameters' order.
  public let layers: [String]
  /// Per layer, its spans in the packed shared gradient.
  let spans: [[Range<Int>]]
  public private(set) var counts: [Int]
  public private(set) var steps = 0
  /// Task pairs per step, T(T−1)/2 (a pair where a gradient is zero is not counted).
  public let pairs: Int

  public init(shared: [NamedRange], tasks: Int, threshold: Double) {
    self.threshold = threshold
    var layers: [String] = []
    var spans: [[Range<Int>]] = []
    var offset = 0
    for r in shared {
      let name = r.name.split(separator: ".").dropLast().joined(separator: ".")
      let span = offset..<(offset + r.count)
      if let i = layers.firstIndex(of: name) {
        spans[i].append(span)
      } else {
        layers.append(name)
        spans.append([span])
      }
      offset += r.count
    }
    self.layers = layers
    self.spans = spans
    counts = Array(repeating: 0, count: layers.count)
    pairs = tasks * (tasks - 1) / 2
  }

  /// Scores one step's task gradients.
  public func record(_ input: BalancingInput) {
    steps += 1
    for (l, layerSpans) in spans.enumerated() {
      for i in 0..<input.tasks {
        for j in (i + 1)..<input.tasks {
          if let c = cosine(input, i, j, layerSpans), c < threshold { counts[l] += 1 }
        }
      }
    }
  }

  func cosine(_ input: BalancingInput, _ i: Int, _ j: Int, _ spans: [Range<Int>]) -> Double? {
    var dot = 0.0, ni = 0.0, nj = 0.0
    for s in spans {
      let a = input.task(i) + s.lowerBound, b = input.task(j) + s.lowerBound
      dot += TaskAlgebra.dot(a, b, s.count)
      ni += TaskAlgebra.dot(a, a, s.count)
      nj += TaskAlgebra.dot(b, b, s.count)
    }
    guard ni > 0 && nj > 0 else { return nil }
    return dot / (ni.squareRoot() * nj.squareRoot())
  }

  /// The layers by score, highest first (ties: the earlier layer first).
  public var ranked: [(layer: String, conflicts: Int)] {
    layers.indices.sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }.map { (layers[$0], counts[$0]) }
  }
}
