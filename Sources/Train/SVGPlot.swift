import Foundation

/// A line chart as a standalone SVG (what `parallax report` and `parallax scale` draw): axes
/// with rounded ticks, a grid, one polyline per series and a legend to the right of the plot
/// area. The canvas grows to fit the legend, so no label is ever cut off at the edge
/// (widths are estimated at 7 px per character of 12 px sans-serif, a little more than
/// DejaVu Sans and Liberation Sans need).
public struct SVGPlot {
  /// How an axis maps values: linear, or logarithmic in base 2 (rank and node counts) or
  /// base 10 (orders of magnitude: a loss weight α).
  public enum Scale: Sendable {
    case linear, log2, log10
  }

  public struct Series {
    public var name: String
    public var points: [(x: Double, y: Double)]
    /// A CSS colour; nil takes the next of the palette.
    public var color: String?
    public var dashed: Bool
    /// Dots at the points (for a few points, e.g. rank counts).
    public var markers: Bool

    public init(
      _ name: String, _ points: [(x: Double, y: Double)], color: String? = nil, dashed: Bool = false,
      markers: Bool = false
    ) {
      self.name = name
      self.points = points
      self.color = color
      self.dashed = dashed
      self.markers = markers
    }
  }

  public var title: String
  public var xLabel: String
  public var yLabel: String
  public var series: [Series]
  public var xScale: Scale = .linear
  /// Fixed y range (e.g. 0…100 for percentages); nil fits the data (from 0 when all ≥ 0
  /// and `yFromZero`).
  public var yRange: ClosedRange<Double>?
  public var yFromZero = false
  /// Tick positions on x (e.g. the rank counts measured); nil chooses them.
  public var xTicks: [Double]?
  /// Lines of text under the legend (what solid and dashed mean, …).
  public var notes: [String] = []
  /// Size of the plot area, px (the canvas adds margins and the legend).
  public var plotWidth = 520.0
  public var plotHeight = 260.0

  /// Matplotlib's "tab10" colours.
  public static let palette = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  ]
  static let charWidth = 7.0
  static let frameColor = "#444444"
  static let gridColor = "#e0e0e0"
  static let lightGridColor = "#f0f0f0"
  static let mutedColor = "#888888"
  static let noteColor = "#555555"
  static let left = 70.0
  static let top = 36.0
  static let bottom = 48.0
  static let gap = 16.0

  public init(title: String, xLabel: String, yLabel: String, series: [Series]) {
    self.title = title
    self.xLabel = xLabel
    self.yLabel = yLabel
    self.series = series
  }

  /// Width of the legend column: the swatch, the longest name or note, padding.
  var legendWidth: Double {
    let longest = (series.map(\.name) + notes).map(\.count).max() ?? 0
    return longest == 0 ? 0 : 34 + Double(longest) * Self.charWidth + 20
  }

  /// The canvas: margins, plot area, legend (taller when the legend needs it).
  public var size: (width: Double, height: Double) {
    let legendHeight = Double(series.count + notes.count) * 18 + Self.top + 10
    let width = Self.left + plotWidth + Self.gap + legendWidth
    return (
      max(width, Self.left + Double(title.count) * Self.charWidth + 10),
      max(Self.top + plotHeight + Self.bottom, legendHeight)
    )
  }

  /// The whole document.
  public func render() -> String {
    let (w, h) = size
    return Self.document(width: w, height: h, body: body())
  }

  /// Several plots side by side in one document.
  public static func row(_ plots: [SVGPlot]) -> String {
    var x = 0.0
    var height = 0.0
    var body = ""
    for p in plots {
      let (w, h) = p.size
      body += #"<svg x="\#(fmt(x))" y="0" width="\#(fmt(w))" height="\#(fmt(h))">"# + "\n" + p.body() + "</svg>\n"
      x += w
      height = max(height, h)
    }
    return document(width: x, height: height, body: body)
  }

  static func document(width: Double, height: Double, body: String) -> String {
    #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(Int(width.rounded(.up)))" height="\#(Int(height.rounded(.up)))" font-family="sans-serif" font-size="12">"#
      + "\n" + #"<rect width="100%" height="100%" fill="white"/>"# + "\n" + body + "</svg>\n"
  }

  /// The plot's elements in its own coordinates (origin top left of its canvas).
  func body() -> String {
    let finite = series.map { s in s.points.filter { $0.x.isFinite && $0.y.isFinite && (xScale == .linear || $0.x > 0) } }
    let xs = finite.flatMap { $0.map(\.x) }
    let ys = finite.flatMap { $0.map(\.y) }
    let (x0, y0, pw, ph) = (Self.left, Self.top, plotWidth, plotHeight)
    var s = #"<text x="\#(fmt(x0))" y="22" font-weight="bold" font-size="14">\#(Self.escape(title))</text>"# + "\n"
    // Axes frame.
    s += #"<rect x="\#(fmt(x0))" y="\#(fmt(y0))" width="\#(fmt(pw))" height="\#(fmt(ph))" fill="none" stroke="\#(SVGPlot.frameColor)"/>"# + "\n"
    s += #"<text x="\#(fmt(x0 + pw / 2))" y="\#(fmt(y0 + ph + 38))" text-anchor="middle">\#(Self.escape(xLabel))</text>"# + "\n"
    s += #"<text transform="translate(16,\#(fmt(y0 + ph / 2))) rotate(-90)" text-anchor="middle">\#(Self.escape(yLabel))</text>"# + "\n"
    guard let xMin = xs.min(), let xMax = xs.max(), let yMinData = ys.min(), let yMaxData = ys.max() else {
      return s + #"<text x="\#(fmt(x0 + pw / 2))" y="\#(fmt(y0 + ph / 2))" text-anchor="middle" fill="\#(SVGPlot.mutedColor)">no data</text>"# + "\n"
    }
    // Value → pixel maps.
    let tx: (Double) -> Double =
      switch xScale {
      case .linear: { $0 }
      case .log2: { Foundation.log2($0) }
      case .log10: { Foundation.log10($0) }
      }
    var (a, b) = (tx(xMin), tx(xMax))
    if a == b { (a, b) = (a - 1, b + 1) }
    var (lo, hi) = yRange.map { ($0.lowerBound, $0.upperBound) } ?? (yFromZero && yMinData >= 0 ? 0 : yMinData, yMaxData)
    if lo == hi { (lo, hi) = (lo - max(abs(lo) * 0.1, 1), hi + max(abs(hi) * 0.1, 1)) }
    let yTicks = Self.niceTicks(lo, hi, count: 5)
    if yRange == nil { (lo, hi) = (min(lo, yTicks.first ?? lo), max(hi, yTicks.last ?? hi)) }
    let px = { (v: Double) in x0 + (tx(v) - a) / (b - a) * pw }
    let py = { (v: Double) in y0 + ph - (min(max(v, lo), hi) - lo) / (hi - lo) * ph }
    // Grid and ticks.
    for t in yTicks where t >= lo && t <= hi {
      s += #"<line x1="\#(fmt(x0))" y1="\#(fmt(py(t)))" x2="\#(fmt(x0 + pw))" y2="\#(fmt(py(t)))" stroke="\#(SVGPlot.gridColor)"/>"#
      s += #"<text x="\#(fmt(x0 - 6))" y="\#(fmt(py(t) + 4))" text-anchor="end">\#(Self.label(t))</text>"# + "\n"
    }
    var ticks =
      xTicks
      ?? {
        switch xScale {
        case .linear: Self.niceTicks(xMin, xMax, count: 6)
        case .log2: Self.powersOfTwo(xMin, xMax)
        case .log10: Self.powersOfTen(xMin, xMax)
        }
      }()
    // Steps and ranks are whole numbers: no ticks between them.
    if xTicks == nil, xs.allSatisfy({ $0 == $0.rounded() }) { ticks = ticks.filter { $0 == $0.rounded() } }
    for t in ticks where t >= xMin && t <= xMax {
      s += #"<line x1="\#(fmt(px(t)))" y1="\#(fmt(y0))" x2="\#(fmt(px(t)))" y2="\#(fmt(y0 + ph))" stroke="\#(SVGPlot.lightGridColor)"/>"#
      s += #"<text x="\#(fmt(px(t)))" y="\#(fmt(y0 + ph + 18))" text-anchor="middle">\#(Self.label(t))</text>"# + "\n"
    }
    // Series, then the legend.
    let lx = x0 + pw + Self.gap
    for (i, (series, points)) in zip(self.series, finite).enumerated() {
      let color = series.color ?? Self.palette[i % Self.palette.count]
      let dash = series.dashed ? #" stroke-dasharray="6,4""# : ""
      let pts = Self.thin(points, to: 2000).map { "\(fmt(px($0.x))),\(fmt(py($0.y)))" }.joined(separator: " ")
      if points.count > 1 {
        s += #"<polyline fill="none" stroke="\#(color)" stroke-width="1.8"\#(dash) points="\#(pts)"/>"# + "\n"
      }
      if series.markers || points.count == 1 {
        for p in points { s += #"<circle cx="\#(fmt(px(p.x)))" cy="\#(fmt(py(p.y)))" r="3" fill="\#(color)"/>"# }
        s += "\n"
      }
      let ly = y0 + 8 + Double(i) * 18
      s += #"<line x1="\#(fmt(lx))" y1="\#(fmt(ly))" x2="\#(fmt(lx + 24))" y2="\#(fmt(ly))" stroke="\#(color)" stroke-width="2.5"\#(dash)/>"#
      s += #"<text x="\#(fmt(lx + 30))" y="\#(fmt(ly + 4))">\#(Self.escape(series.name))</text>"# + "\n"
    }
    for (j, note) in notes.enumerated() {
      let ly = y0 + 8 + Double(self.series.count + j) * 18 + 6
      s += #"<text x="\#(fmt(lx))" y="\#(fmt(ly + 4))" fill="\#(SVGPlot.noteColor)">\#(Self.escape(note))</text>"# + "\n"
    }
    return s
  }

  /// At most `limit` points, evenly picked, first and last kept.
  static func thin(_ points: [(x: Double, y: Double)], to limit: Int) -> [(x: Double, y: Double)] {
    guard points.count > limit, limit > 1 else { return points }
    return (0..<limit).map { points[$0 * (points.count - 1) / (limit - 1)] }
  }

  /// About `count` ticks at multiples of 1, 2 or 5 × 10^k covering lo…hi.
  static func niceTicks(_ lo: Double, _ hi: Double, count: Int) -> [Double] {
    guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
    let raw = (hi - lo) / Double(max(count, 1))
    let magnitude = pow(10, floor(log10(raw)))
    let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
    var ticks: [Double] = []
    var t = floor(lo / step) * step
    // Up to the first tick at or above hi, so the data never touches the frame's top.
    while t < hi + step * 0.999 && ticks.count < 50 {
      ticks.append(abs(t) < step * 1e-9 ? 0 : t)
      t += step
    }
    return ticks
  }

  /// Powers of two in lo…hi (every other one when there are more than 12).
  static func powersOfTwo(_ lo: Double, _ hi: Double) -> [Double] {
    var all: [Double] = []
    var p = pow(2, floor(Foundation.log2(max(lo, 1e-9))))
    while p <= hi * 1.0001 {
      if p >= lo * 0.9999 { all.append(p) }
      p *= 2
    }
    return all.count > 12 ? all.enumerated().filter { $0.offset % 2 == 0 }.map(\.element) : all
  }

  /// Powers of ten in lo…hi.
  static func powersOfTen(_ lo: Double, _ hi: Double) -> [Double] {
    var all: [Double] = []
    var e = floor(Foundation.log10(max(lo, 1e-300)))
    while pow(10, e) <= hi * 1.0001 && all.count < 40 {
      if pow(10, e) >= lo * 0.9999 { all.append(pow(10, e)) }
      e += 1
    }
    return all
  }

  /// A tick label: integers as such (1k, 2.5M beyond 10 000), others in %g.
  static func label(_ v: Double) -> String {
    let a = abs(v)
    if a >= 1e6 { return String(format: "%gM", v / 1e6) }
    if a >= 1e4 { return String(format: "%gk", v / 1e3) }
    if v == v.rounded() { return String(Int(v)) }
    return String(format: "%g", v)
  }

  static func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
  }
}

/// Horizontal bars, grouped: one group per label (a probe's features), one bar per series (a
/// run), values with their numbers printed at the bar's end.
public struct SVGBars {
  public var title: String
  public var unit: String
  /// Group label → a value per series (nil: missing).
  public var groups: [(label: String, values: [Double?])]
  public var seriesNames: [String]
  /// The axis maximum (e.g. 100 for percentages); nil fits the data.
  public var maximum: Double?

  public init(title: String, unit: String, seriesNames: [String], groups: [(label: String, values: [Double?])]) {
    self.title = title
    self.unit = unit
    self.seriesNames = seriesNames
    self.groups = groups
  }

  public func render() -> String {
    let labelWidth = Double(groups.map(\.label.count).max() ?? 0) * SVGPlot.charWidth + 16
    let barHeight = 16.0
    let groupHeight = Double(max(seriesNames.count, 1)) * barHeight + 10
    let plotWidth = 420.0
    let legendWidth = seriesNames.count > 1 ? 34 + Double(seriesNames.map(\.count).max() ?? 0) * SVGPlot.charWidth + 12 : 0
    let top = 36.0
    let width = max(labelWidth + plotWidth + 70 + legendWidth, Double(title.count) * SVGPlot.charWidth + 20)
    let height = max(top + Double(groups.count) * groupHeight + 30, top + Double(seriesNames.count) * 18 + 10)
    let top1 = maximum ?? (groups.flatMap { $0.values.compactMap { $0 } }.max() ?? 1)
    let scale = plotWidth / max(top1, 1e-12)
    var s = #"<text x="10" y="22" font-weight="bold" font-size="14">\#(SVGPlot.escape(title))</text>"# + "\n"
    for t in SVGPlot.niceTicks(0, top1, count: 5) where t <= top1 * 1.0001 {
      let x = labelWidth + t * scale
      s += #"<line x1="\#(fmt(x))" y1="\#(fmt(top))" x2="\#(fmt(x))" y2="\#(fmt(height - 24))" stroke="\#(SVGPlot.gridColor)"/>"#
      s += #"<text x="\#(fmt(x))" y="\#(fmt(height - 10))" text-anchor="middle">\#(SVGPlot.label(t))\#(unit)</text>"# + "\n"
    }
    for (g, group) in groups.enumerated() {
      let gy = top + Double(g) * groupHeight
      s += #"<text x="\#(fmt(labelWidth - 8))" y="\#(fmt(gy + groupHeight / 2))" text-anchor="end">\#(SVGPlot.escape(group.label))</text>"# + "\n"
      for (i, v) in group.values.enumerated() {
        guard let v, v.isFinite else { continue }
        let y = gy + 4 + Double(i) * barHeight
        let color = SVGPlot.palette[i % SVGPlot.palette.count]
        s += #"<rect x="\#(fmt(labelWidth))" y="\#(fmt(y))" width="\#(fmt(max(v, 0) * scale))" height="\#(fmt(barHeight - 3))" fill="\#(color)"/>"#
        s += #"<text x="\#(fmt(labelWidth + max(v, 0) * scale + 4))" y="\#(fmt(y + barHeight - 5))">\#(String(format: "%.2f", v))\#(unit)</text>"# + "\n"
      }
    }
    if seriesNames.count > 1 {
      let lx = labelWidth + plotWidth + 70
      for (i, name) in seriesNames.enumerated() {
        let ly = top + 8 + Double(i) * 18
        s += #"<rect x="\#(fmt(lx))" y="\#(fmt(ly - 6))" width="24" height="10" fill="\#(SVGPlot.palette[i % SVGPlot.palette.count])"/>"#
        s += #"<text x="\#(fmt(lx + 30))" y="\#(fmt(ly + 4))">\#(SVGPlot.escape(name))</text>"# + "\n"
      }
    }
    return SVGPlot.document(width: width, height: height, body: s)
  }
}

/// A coordinate with one decimal (SVG needs no more).
fileprivate func fmt(_ v: Double) -> String { String(format: "%.1f", v) }
