import Foundation
import XCTest

@testable import Data

/// Tiny signals and files for the audio tests.
enum AudioTestSupport {
  /// `amplitude·sin(2πft/sr)` for `count` samples.
  static func sine(_ frequency: Double, sampleRate: Int, count: Int, amplitude: Float = 0.5) -> [Float] {
    (0..<count).map { amplitude * Float(sin(2 * Double.pi * frequency * Double($0) / Double(sampleRate))) }
  }

  /// Runs a program, failing the test if it exits non-zero.
  static func run(_ executable: String, _ arguments: [String]) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [executable] + arguments
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
      throw DataError.invalidArgument("\(executable) \(arguments.joined(separator: " ")) exited \(p.terminationStatus)")
    }
  }

  /// RMS amplitude of `x[range]`.
  static func rms(_ x: [Float], _ range: Range<Int>) -> Double {
    var acc = 0.0
    for i in range { acc += Double(x[i]) * Double(x[i]) }
    return (acc / Double(range.count)).squareRoot()
  }
}
