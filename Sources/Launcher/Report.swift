import ArgumentParser
import Foundation
import Train

/// `parallax report`: plots and a summary of one or several run directories.
struct Report: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write report.md with SVG plots of one or several pretraining runs.",
    discussion: """
      From each RUN_DIR's log.jsonl, config.yaml, run.json and probes.json (and the --timeline \
      trace when one was recorded): loss and learning rate against step, throughput, compute \
      against communication per step, the share of communication hidden behind backward, \
      per-rank step times, probe accuracies, and a summary table. Several run directories give \
      one comparison plot per metric (a line per run) and a table of the settings that differ.
      Examples:
        parallax report runs/simclr-fmnist                  # writes runs/simclr-fmnist/report.md
        parallax report runs/a runs/b runs/c --out report   # writes report/report.md
      """)

  @Argument(help: ArgumentHelp("Run directories (each with the log.jsonl of `parallax pretrain`).", valueName: "run-dir"))
  var runDirs: [String] = []
  @Option(help: "Output directory (default: the run directory for one run, ./report for several).") var out: String?

  func validate() throws {
    if runDirs.isEmpty { throw ValidationError("give at least one run directory") }
    if let out, out.isEmpty { throw ValidationError("--out must not be empty") }
  }

  func run() throws {
    do {
      let runs = try runDirs.map { try RunData.load($0) }
      let target = out ?? (runDirs.count == 1 ? runDirs[0] : "report")
      let files = try RunReport.write(runs, to: target)
      print("wrote \(files[0]) with \(files.count - 1) plot(s): " + files.dropFirst().map { ($0 as NSString).lastPathComponent }.joined(separator: ", "))
    } catch {
      FileHandle.standardError.write(Data("error: \(error)\n".utf8))
      throw ExitCode(1)
    }
  }
}
