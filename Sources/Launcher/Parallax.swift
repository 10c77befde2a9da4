import ArgumentParser
import Dist
import Foundation
import Train

@main
struct Parallax: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "parallax",
    abstract: "Distributed self-supervised pretraining over MPI.",
    discussion: """
      Run any subcommand alone (one rank) or under `mpirun -np N parallax …` / `srun parallax …`.
      Example: mpirun -np 2 parallax pretrain --config configs/simclr-fmnist.yaml --probe
      """,
    subcommands: [
      Pretrain.self, Eval.self, Launch.self, Sweep.self, Export.self, Report.self, Bench.self, Scale.self,
      DataCommand.self, MTL.self,
    ])
}

/// Runs `body` with the MPI world; any error is printed as one line and the job ends with a
/// non-zero status on every rank (MPI_Abort when other ranks may be waiting in a collective).
func withWorld(_ body: (Communicator, Console) throws -> Void) throws {
  let comm: Communicator
  do { comm = try Communicator.world() } catch {
    FileHandle.standardError.write("error: \(error)\n".data(using: .utf8)!)
    throw ExitCode(2)
  }
  let console = Console(isRoot: comm.rank == 0)
  do {
    try body(comm, console)
    try comm.finalize()
  } catch let e as ExitCode {
    throw e
  } catch {
    let prefix = comm.size > 1 ? "[rank \(comm.rank)] " : ""
    FileHandle.standardError.write("\(prefix)error: \(error)\n".data(using: .utf8)!)
    RankLog.note("error: \(error)")
    if comm.size > 1 { comm.abort(code: 1) }
    throw ExitCode(1)
  }
}
