import Foundation
import Model
import XCTest

@testable import Train

/// k-means evaluation (issue 15): the metrics against scikit-learn, and the distributed
/// clustering the same on 2 ranks as on 1.
final class ClusteringTests: XCTestCase {
  func testMetricsMatchScikitLearn() throws {
    let url = SimCLRStepFixtureTests.fixtures.appendingPathComponent("clustering_metrics.safetensors")
    let t = try SafeTensors.read(url).entries
    let labels = t["labels"]!.values.map { Int($0) }
    let clusters = t["clusters"]!.values.map { Int($0) }
    XCTAssertEqual(ClusteringMetrics.nmi(labels: labels, clusters: clusters), Double(t["nmi"]!.values[0]), accuracy: 1e-6)
    XCTAssertEqual(ClusteringMetrics.ari(labels: labels, clusters: clusters), Double(t["ari"]!.values[0]), accuracy: 1e-6)
    XCTAssertEqual(
      ClusteringMetrics.matchedAccuracy(labels: labels, clusters: clusters), Double(t["acc"]!.values[0]), accuracy: 1e-6)
  }

  func testAnalyticCases() {
    // A relabelled perfect clustering scores 1 everywhere; the matching finds the permutation.
    let labels = [0, 0, 1, 1, 2, 2, 2]
    let renamed = [2, 2, 0, 0, 1, 1, 1]
    XCTAssertEqual(ClusteringMetrics.nmi(labels: labels, clusters: renamed), 1, accuracy: 1e-12)
    XCTAssertEqual(ClusteringMetrics.ari(labels: labels, clusters: renamed), 1, accuracy: 1e-12)
    XCTAssertEqual(ClusteringMetrics.matchedAccuracy(labels: labels, clusters: renamed), 1)
    // One cluster holding everything: no information, ARI 0, accuracy = the largest class.
    let one = [Int](repeating: 0, count: 7)
    XCTAssertEqual(ClusteringMetrics.nmi(labels: labels, clusters: one), 0, accuracy: 1e-12)
    XCTAssertEqual(ClusteringMetrics.ari(labels: labels, clusters: one), 0, accuracy: 1e-12)
    XCTAssertEqual(ClusteringMetrics.matchedAccuracy(labels: labels, clusters: one), 3.0 / 7, accuracy: 1e-12)
    // Entropies that differ tell the arithmetic normalisation from the geometric one:
    // MI = ln 2, H(labels) = ln 2, H(clusters) = ln 4, so NMI = ln 2 / ((ln 2 + ln 4)/2) = 2/3.
    XCTAssertEqual(ClusteringMetrics.nmi(labels: [0, 0, 1, 1], clusters: [0, 1, 2, 3]), 2.0 / 3, accuracy: 1e-12)
    // The assignment problem: the minimum is off the diagonal.
    XCTAssertEqual(ClusteringMetrics.hungarian([[4, 1, 3], [2, 0, 5], [3, 2, 2]]), [1, 0, 2])
  }

  /// `eval kmeans` on a 1-step checkpoint: 2 ranks print the clustering 1 rank prints.
  func testKMeansIsTheSameOnTwoRanksAsOnOne() throws {
    let dir = Processes.temporaryDirectory("kmeans-ranks")
    let pre = try Processes.parallax(
      np: 1, ["pretrain", "--global-batch", "32", "--max-steps", "1", "--threads", "1", "--run-dir", dir])
    XCTAssertEqual(pre.status, 0, pre.stderr)
    let args = ["eval", "kmeans", "--checkpoint", dir + "/latest", "--limit", "601", "--threads", "1"]
    let one = try Processes.parallax(np: 1, args)
    let two = try Processes.parallax(np: 2, args)
    XCTAssertEqual(one.status, 0, one.stderr)
    XCTAssertEqual(two.status, 0, two.stderr)
    /// "kmeans k=10 pooled class: NMI …, ARI …, matched accuracy …% (64-d, 601 samples, 12 iterations" without the time.
    func results(_ out: String) -> [String] {
      out.split(separator: "\n").filter { $0.hasPrefix("kmeans ") }.map { $0.components(separatedBy: " iterations")[0] }
    }
    XCTAssertEqual(results(one.stdout).count, 2, one.stdout)
    XCTAssertEqual(results(one.stdout), results(two.stdout))
    // Clusters of a trained encoder carry some class information.
    XCTAssertTrue(results(one.stdout).allSatisfy { !$0.contains("NMI 0.0000") }, one.stdout)
  }
}
