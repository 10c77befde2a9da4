import Dist
import Foundation

/// A Chrome trace-event timeline of training (opens in Perfetto and chrome://tracing): one
/// process track per rank, with a compute thread (data loading, forward and backward per
/// layer or block, loss, optimizer) and a communication thread (each gradient bucket's
/// all-reduce from its start to its observed completion).
///
/// Times are seconds of `CLOCK_MONOTONIC` measured from `origin`, which every rank takes
/// right after a barrier, so tracks of ranks on one node line up to within that barrier's
/// skew. Rank 0 gathers every rank's events over MPI and writes one file (DESIGN.md
/// invariant 6).
public final class Timeline {
  public enum Track: Int, Sendable {
    case compute = 0
    case communication = 1
  }

  public struct Event: Sendable {
    public var name: String
    /// Trace category: `data`, `forward`, `backward`, `loss`, `allreduce`, `optimizer`,
    /// `step`, `check`.
    public var category: String
    public var start: Double
    public var end: Double
    public var track: Track
    /// Extra `args` (step, bucket size, …).
    public var args: [String: Double]
  }

  public let origin: Double
  public private(set) var events: [Event] = []
  /// Events beyond this are dropped (a long run would otherwise grow without bound).
  public let capacity: Int

  public init(origin: Double, capacity: Int = 500_000) {
    self.origin = origin
    self.capacity = capacity
  }

  public func add(
    _ name: String, _ category: String, start: Double, end: Double, track: Track = .compute,
    args: [String: Double] = [:]
  ) {
    guard events.count < capacity else { return }
    events.append(Event(name: name, category: category, start: start, end: end, track: track, args: args))
  }

  /// This rank's events as trace-event JSON objects, comma-separated (no brackets).
  public func jsonEvents(rank: Int) -> String {
    var parts: [String] = [
      #"{"name":"process_name","ph":"M","pid":\#(rank),"tid":0,"args":{"name":"rank \#(rank)"}}"#,
      #"{"name":"process_sort_index","ph":"M","pid":\#(rank),"tid":0,"args":{"sort_index":\#(rank)}}"#,
      #"{"name":"thread_name","ph":"M","pid":\#(rank),"tid":0,"args":{"name":"compute"}}"#,
      #"{"name":"thread_name","ph":"M","pid":\#(rank),"tid":1,"args":{"name":"gradient allreduce"}}"#,
    ]
    parts.reserveCapacity(events.count + 4)
    for e in events {
      let ts = (e.start - origin) * 1e6
      let dur = max(0, e.end - e.start) * 1e6
      var s = #"{"name":"\#(Self.escape(e.name))","cat":"\#(e.category)","ph":"X","#
      s += String(format: #""ts":%.3f,"dur":%.3f,"pid":%d,"tid":%d"#, ts, dur, rank, e.track.rawValue)
      if !e.args.isEmpty {
        let args = e.args.sorted { $0.key < $1.key }.map { #""\#($0.key)":\#(Self.number($0.value))"# }
        s += #","args":{"# + args.joined(separator: ",") + "}"
      }
      s += "}"
      parts.append(s)
    }
    return parts.joined(separator: ",\n")
  }

  /// Gathers every rank's events to rank 0, which writes `path` atomically. Collective.
  public func write(to path: String, comm: Communicator) throws {
    let mine = Array(jsonEvents(rank: comm.rank).utf8)
    guard let all = try comm.gatherVariable(bytes: mine, root: 0) else { return }
    var body = #"{"displayTimeUnit":"ms","traceEvents":["# + "\n"
    body += all.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ",\n")
    body += "\n]}\n"
    let url = URL(fileURLWithPath: path)
    try? FileManager.default.createDirectory(
      at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try AtomicFile.write(Foundation.Data(body.utf8), to: path)
  }

  static func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
  }

  static func number(_ x: Double) -> String {
    x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : String(format: "%.6g", x)
  }
}
