import ArgumentParser

/// `parallax bench data --audio …`: the data-throughput benchmark, an alias of
/// `parallax data bench-audio` (the remaining options are passed on to it).
struct BenchData: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "data",
    abstract: "Data throughput per core vs. what training consumes (--audio: `parallax data bench-audio`).",
    discussion: "Example: parallax bench data --audio --manifest data/digits/manifest.csv --augment clmr")
  @Flag(help: "Audio: decode + augment throughput vs. a samplecnn step (options as `parallax data bench-audio`).") var audio = false
  @Argument(parsing: .captureForPassthrough, help: "Options of `parallax data bench-audio`.") var options: [String] = []

  func validate() throws {
    guard audio else { throw ValidationError("give --audio (the only data benchmark so far)") }
  }

  func run() throws {
    var bench = try AudioBenchCommand.parse(options)
    try bench.run()
  }
}
