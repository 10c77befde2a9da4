import Foundation
import Model
import XCTest

/// The SSL notebook's autoencoders (issue 15) keep W ranks ≡ 1 rank on the step-1 gradient
/// under plain SGD: reconstruction and embedding losses are means over the global batch.
final class AutoencoderTests: XCTestCase {
  func testSGDGradientOfTwoRanksIsOneRanks() throws {
    let configs: [[String]] = [
      ["--method", "ae"], ["--method", "dae"],
      ["--method", "parallel-ae", "--embedding-loss", "mse", "--alpha", "10"],
      ["--method", "parallel-ae", "--embedding-loss", "l1", "--alpha", "10"],
      ["--method", "parallel-ae", "--embedding-loss", "cosine", "--alpha", "10"],
      ["--method", "parallel-ae", "--embedding-loss", "simclr", "--alpha", "10"],
      ["--method", "parallel-ae", "--embedding-loss", "barlow", "--alpha", "1", "--barlow-lambda", "0.05"],
      ["--method", "parallel-dae", "--embedding-loss", "mse", "--alpha", "10"],
    ]
    for c in configs {
      let args = ["--model", "conv6", "--global-batch", "8", "--seed", "3"] + c
      let (g1, p1, _) = try sgdGradientStep(np: 1, name: "ae1", args)
      let (g2, p2, _) = try sgdGradientStep(np: 2, name: "ae2", args)
      let what = c.joined(separator: " ")
      assertSameTensors(g1, g2, rel: 2e-4, "\(what) gradient, 2 ranks")
      assertSameTensors(p1, p2, rel: 1e-4, "\(what) parameters, 2 ranks")
      XCTAssertNotNil(g1["decoder.6.weight"], what)
    }
  }

  /// The embedding term changes the encoder's gradient (α = 0 against α = 10), so the
  /// comparison above sees it.
  func testEmbeddingTermReachesTheEncoder() throws {
    let base = ["--model", "conv6", "--global-batch", "8", "--seed", "3", "--method", "parallel-ae", "--embedding-loss", "cosine"]
    let (g0, _, _) = try sgdGradientStep(np: 1, name: "ae-a0", base + ["--alpha", "0"])
    let (g10, _, _) = try sgdGradientStep(np: 1, name: "ae-a10", base + ["--alpha", "10"])
    let w = "encoder.8.weight"
    let diff = zip(g0[w]!.values, g10[w]!.values).map { abs($0 - $1) }.max()!
    XCTAssertGreaterThan(diff, 1e-3 * (g0[w]!.values.map(abs).max()!), "α·L_emb changes \(w)'s gradient")
    // …but not the decoder's: the embedding loss sits on the encoder's output.
    let d = "decoder.6.weight"
    XCTAssertEqual(g0[d]!.values, g10[d]!.values)
  }
}
