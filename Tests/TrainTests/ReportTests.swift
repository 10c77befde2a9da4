import Foundation
import XCTest

@testable import Train

/// `parallax report`: report.md and SVG plots of tiny runs, rendered to PNG by rsvg-convert
/// and checked not to be blank; bad run directories; the `parallax scale` chart's legend.
final class ReportTests: XCTestCase {
  /// Decodes an 8-bit RGB/RGBA PNG with the standard library (zlib, the five filters) and
  /// prints `<pixels> <non-white fraction> <distinct colours> <pixels of colour #RRGGBB>`.
  static let pngStats = #"""
    import struct, sys, zlib
    data = open(sys.argv[1], "rb").read()
    want = tuple(int(sys.argv[2][i:i + 2], 16) for i in (1, 3, 5))
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert depth == 8 and ctype in (2, 6), f"unsupported PNG: depth {depth} colour type {ctype}"
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    prev, rows, i = bytearray(stride), [], 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line); prev = line
    colours, nonwhite, match = set(), 0, 0
    for line in rows:
        for x in range(0, stride, bpp):
            px = tuple(line[x:x + 3]) if bpp == 3 or line[x + 3] > 0 else (255, 255, 255)
            colours.add(px)
            nonwhite += px != (255, 255, 255)
            match += all(abs(p - q) <= 8 for p, q in zip(px, want))
    print(w * h, nonwhite / (w * h), len(colours), match)
    """#

  /// Renders `svg` to PNG and returns (pixels, non-white share, colours, pixels of `colour`).
  func render(_ svg: String, colour: String) throws -> (pixels: Int, nonWhite: Double, colours: Int, matching: Int) {
    let rsvg = try TestTools.rsvgConvert()
    let png = svg + ".png"
    let r = try Processes.run(rsvg, ["-o", png, svg], timeout: 60)
    XCTAssertEqual(r.status, 0, "rsvg-convert \(svg): \(r.stderr)")
    let script = NSTemporaryDirectory() + "png_stats_\(getpid()).py"
    try Self.pngStats.write(toFile: script, atomically: true, encoding: .utf8)
    let p = try Processes.run("/usr/bin/env", ["python3", script, png, colour], timeout: 120)
    XCTAssertEqual(p.status, 0, p.stderr)
    let f = p.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
    guard f.count == 4, let n = Int(f[0]), let w = Double(f[1]), let c = Int(f[2]), let m = Int(f[3]) else {
      XCTFail("png stats: \(p.stdout) \(p.stderr)")
      return (0, 0, 0, 0)
    }
    return (n, w, c, m)
  }

  func testReportOfOneRunRendersItsPlots() throws {
    let dir = try TinyRuns.twoRankMTSLVR()
    try? FileManager.default.removeItem(atPath: dir + "/report.md")
    let r = try Processes.run(Processes.parallax, ["report", dir], timeout: 60)
    XCTAssertEqual(r.status, 0, r.stderr)
    let md = try String(contentsOfFile: dir + "/report.md", encoding: .utf8)
    // Two ranks, a timeline and two task losses: every plot of a single run.
    for file in ["loss.svg", "lr.svg", "throughput.svg", "time.svg", "hidden.svg", "ranks.svg"] {
      XCTAssertTrue(md.contains("](\(file))"), "report.md lacks \(file):\n\(md)")
      XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + file), file)
    }
    XCTAssertTrue(md.contains("| \((dir as NSString).lastPathComponent) | mtslvr | conv4 | fashion-mnist | 2 × 1 | 16 | 3 of 3 |"), md)
    let loss = try String(contentsOfFile: dir + "/loss.svg", encoding: .utf8)
    for name in ["loss (total)", "contrastive", "predictive"] { XCTAssertTrue(loss.contains(">\(name)</text>"), name) }
    let ranks = try String(contentsOfFile: dir + "/ranks.svg", encoding: .utf8)
    XCTAssertTrue(ranks.contains(">rank 0 step</text>") && ranks.contains(">rank 1 step</text>"), ranks)

    // The loss plot renders: not blank, several colours, the first series' blue drawn.
    let png = try render(dir + "/loss.svg", colour: "#1f77b4")
    XCTAssertGreaterThan(png.pixels, 100_000)
    XCTAssertGreaterThan(png.nonWhite, 0.01, "loss.svg renders (nearly) blank")
    XCTAssertGreaterThan(png.colours, 3)
    // The legend swatch alone is ~70 pixels of it; the line across the plot ~500 (measured 526).
    XCTAssertGreaterThan(png.matching, 300, "the loss line (#1f77b4) is not drawn")
  }

  func testReportComparesRuns() throws {
    let a = try TinyRuns.twoRankMTSLVR()
    let b = try TinyRuns.oneRankSimCLR()
    let out = Processes.temporaryDirectory("report-compare")
    let r = try Processes.run(Processes.parallax, ["report", a, b, "--out", out], timeout: 60)
    XCTAssertEqual(r.status, 0, r.stderr)
    let md = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
    for file in ["loss.svg", "lr.svg", "throughput.svg", "compute.svg", "comm.svg"] {
      XCTAssertTrue(md.contains("](\(file))"), "report.md lacks \(file):\n\(md)")
    }
    // One line per run in each comparison plot; the differing settings listed.
    let loss = try String(contentsOfFile: out + "/loss.svg", encoding: .utf8)
    XCTAssertEqual(loss.components(separatedBy: "<polyline").count - 1, 2, loss)
    for name in [a, b].map({ ($0 as NSString).lastPathComponent }) { XCTAssertTrue(loss.contains(">\(name)</text>"), name) }
    XCTAssertTrue(md.contains("| `method` | mtslvr | simclr |"), md)
    let png = try render(out + "/throughput.svg", colour: "#ff7f0e")
    XCTAssertGreaterThan(png.nonWhite, 0.01)
    XCTAssertGreaterThan(png.matching, 150, "the second run's line (#ff7f0e) is not drawn (measured 280 with it)")
  }

  /// A missing directory and a damaged log.jsonl are errors naming the file; nothing is
  /// written.
  func testBadRunDirectories() throws {
    let missing = try Processes.run(Processes.parallax, ["report", "/nonexistent/run"], timeout: 30)
    XCTAssertNotEqual(missing.status, 0)
    XCTAssertTrue(missing.stderr.contains("/nonexistent/run: no such run directory"), missing.stderr)

    let dir = Processes.temporaryDirectory("report-bad")
    try #"{"step":1,"epoch":0,"loss":5.0}"#.appending("\nnot json\n{\"step\":3,\"loss\":4.0}\n")
      .write(toFile: dir + "/log.jsonl", atomically: true, encoding: .utf8)
    let bad = try Processes.run(Processes.parallax, ["report", dir], timeout: 30)
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains(dir + "/log.jsonl:2: not a log.jsonl line"), bad.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/report.md"))

    // A cut-off last line (a killed run) is skipped and noted.
    try #"{"step":1,"epoch":0,"loss":5.0}"#.appending("\n{\"step\":2,\"lo")
      .write(toFile: dir + "/log.jsonl", atomically: true, encoding: .utf8)
    let cut = try Processes.run(Processes.parallax, ["report", dir], timeout: 30)
    XCTAssertEqual(cut.status, 0, cut.stderr)
    let md = try String(contentsOfFile: dir + "/report.md", encoding: .utf8)
    XCTAssertTrue(md.contains("line 2 is cut off"), md)
  }

  /// Texts that run past the right edge of the canvas (at the width estimate the legend is
  /// laid out with).
  func overflowing(_ svg: String) -> [String] {
    let width = Double(svg.firstMatch(#"width="([0-9.]+)""#) ?? "") ?? 0
    return svg.texts().compactMap { x, anchor, text in
      let w = Double(text.count) * SVGPlot.charWidth
      let right = anchor == "end" ? x : anchor == "middle" ? x + w / 2 : x + w
      return right <= width + 0.5 ? nil : "'\(text)' ends at \(right) > \(width)"
    }
  }

  /// `parallax scale` at 1 and 2 ranks (tiny): the chart has a legend entry for each line of
  /// each panel, inside the canvas, and renders.
  func testScaleChartLegend() throws {
    let out = Processes.temporaryDirectory("scale-chart")
    let r = try Processes.run(
      Processes.parallax,
      ["scale", "--ranks", "1,2", "--steps", "2", "--warmup", "1", "--batch-per-rank", "8", "--compare-fused", "false", "--out", out],
      timeout: 120)
    XCTAssertEqual(r.status, 0, r.stderr)
    let svg = try String(contentsOfFile: out + "/scale-conv4.svg", encoding: .utf8)
    for entry in ["ideal (linear)", "measured", "efficiency", "comm share of step", "comm hidden behind backward"] {
      XCTAssertTrue(svg.contains(">\(entry)</text>"), "no legend entry '\(entry)'")
    }
    XCTAssertEqual(overflowing(svg), [])
    let png = try render(out + "/scale-conv4.svg", colour: "#d62728")
    XCTAssertGreaterThan(png.nonWhite, 0.01)
    XCTAssertGreaterThan(png.matching, 150, "the comm-share line (#d62728) is not drawn")
  }

  /// Every text of a plot lies inside its canvas (at the width estimate the legend is laid
  /// out with): the `parallax scale` legend used to run off the right edge.
  func testLegendFitsTheCanvas() throws {
    var p = SVGPlot(
      title: "conv4: efficiency and communication", xLabel: "ranks", yLabel: "%",
      series: ["efficiency", "comm share of step", "comm hidden behind backward, a long legend entry"].map {
        SVGPlot.Series($0, [(1, 100), (2, 97), (1024, 40)])
      })
    p.xScale = .log2
    p.notes = ["dashed: one fused all-reduce after backward"]
    let svg = p.render()
    let width = Double(svg.firstMatch(#"width="([0-9.]+)""#) ?? "") ?? 0
    XCTAssertGreaterThan(width, 0)
    for (x, anchor, text) in svg.texts() {
      let w = Double(text.count) * SVGPlot.charWidth
      let right = anchor == "end" ? x : anchor == "middle" ? x + w / 2 : x + w
      XCTAssertLessThanOrEqual(right, width + 0.5, "'\(text)' at x \(x) overflows the canvas width \(width)")
    }
    // Log₂ axis: the powers of two 1…1024 are ticks, evenly spaced.
    let ticks = Dictionary(svg.texts().filter { $0.1 == "middle" }.map { ($0.2, $0.0) }, uniquingKeysWith: { a, _ in a })
    let powers = (0...10).map { String(1 << $0) }
    XCTAssertEqual(powers.filter { ticks[$0] == nil }, [], "missing ticks")
    if let a = ticks["1"], let b = ticks["2"], let c = ticks["512"], let d = ticks["1024"] {
      XCTAssertEqual(b - a, d - c, accuracy: 0.2, "the rank axis is not logarithmic")
    }
  }
}

extension String {
  func firstMatch(_ pattern: String) -> String? {
    guard let re = try? NSRegularExpression(pattern: pattern),
      let m = re.firstMatch(in: self, range: NSRange(startIndex..., in: self)), m.numberOfRanges > 1,
      let r = Range(m.range(at: 1), in: self)
    else { return nil }
    return String(self[r])
  }

  /// (x, text-anchor, text) of every `<text x="…" …>text</text>`.
  func texts() -> [(Double, String, String)] {
    guard let re = try? NSRegularExpression(pattern: #"<text x="([0-9.\-]+)"([^>]*)>([^<]*)</text>"#) else { return [] }
    return re.matches(in: self, range: NSRange(startIndex..., in: self)).compactMap { m in
      guard let x = Range(m.range(at: 1), in: self), let attrs = Range(m.range(at: 2), in: self),
        let t = Range(m.range(at: 3), in: self), let v = Double(self[x])
      else { return nil }
      let anchor = String(self[attrs]).firstMatch(#"text-anchor="([a-z]+)""#) ?? "start"
      return (v, anchor, String(self[t]))
    }
  }
}
