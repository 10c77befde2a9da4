import ArgumentParser
import Foundation
import Synchronization
import Train

#if canImport(Glibc)
  import Glibc
#endif

/// `parallax launch`: the `mpirun` (or `srun`) line for N ranks of a subcommand.
struct Launch: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a subcommand on N ranks with mpirun, or with srun inside a Slurm allocation.",
    discussion: """
      Example: parallax launch -n 4 --hosts node1:2,node2:2 -- pretrain --config configs/simclr-fmnist.yaml
      Binding: each rank is bound to its cores (--map-by slot[:PE=T] --bind-to core) unless the
      ranks exceed the cores, when the job is oversubscribed without binding. Every rank gets
      OPENBLAS_NUM_THREADS (cores per node / ranks per node unless --threads). SIGTERM, SIGINT or
      SIGHUP to this process become SIGUSR1 for the job, which mpirun forwards at once: the ranks
      write a checkpoint at the next step boundary and exit; a second signal sends SIGTERM.
      Open MPI/PMIx variables inherited from an enclosing MPI process are not passed on.
      """)

  @Option(name: [.customShort("n"), .customLong("np")], help: "Ranks (inside Slurm: SLURM_NTASKS by default).")
  var ranks: Int?
  @Option(help: "Open MPI hostfile (lines `host slots=K`).") var hostfile: String?
  @Option(help: "Hosts and ranks per host, e.g. a:2,b:2.") var hosts: String?
  @Option(help: "OpenBLAS threads per rank (default: cores per node / ranks per node).") var threads: Int?
  @Option(help: "Cores per node (default: this node's, or SLURM_CPUS_ON_NODE).") var coresPerNode: Int?
  @Option(help: "auto (srun inside a Slurm allocation when srun is on PATH, else mpirun), mpirun or srun.")
  var launcher: String = "auto"
  @Flag(help: "Print the command line instead of running it.") var dryRun = false
  @Argument(parsing: .postTerminator, help: "The subcommand and its arguments, after --.") var command: [String] = []

  func validate() throws {
    guard !command.isEmpty else {
      throw ValidationError("nothing to launch: give the subcommand after --, e.g. parallax launch -n 2 -- pretrain …")
    }
    if let n = ranks, n < 1 { throw ValidationError("-n must be ≥ 1 (got \(n))") }
    if let t = threads, t < 1 { throw ValidationError("--threads must be ≥ 1 (got \(t))") }
    if let c = coresPerNode, c < 1 { throw ValidationError("--cores-per-node must be ≥ 1 (got \(c))") }
    if hostfile != nil && hosts != nil { throw ValidationError("give --hostfile or --hosts, not both") }
    guard ["auto", "mpirun", "srun"].contains(launcher) else {
      throw ValidationError("--launcher must be auto, mpirun or srun (got '\(launcher)')")
    }
    if command.first == "launch" { throw ValidationError("launch cannot launch itself") }
  }

  func run() throws {
    let env = ProcessInfo.processInfo.environment
    let plan = try LaunchPlan.make(
      self, environment: env, isRoot: getuid() == 0, localCores: Runtime.availableCores(),
      executable: LaunchPlan.ownExecutable(), findInPath: { LaunchPlan.which($0, path: env["PATH"]) })
    for w in plan.warnings { FileHandle.standardError.write("warning: \(w)\n".data(using: .utf8)!) }
    if dryRun {
      print(plan.shellLine)
      return
    }
    FileHandle.standardError.write("launch: \(plan.shellLine)\n".data(using: .utf8)!)
    guard let program = LaunchPlan.which(plan.argv[0], path: env["PATH"]) else {
      throw ValidationError(
        "\(plan.argv[0]) not found on PATH" + (plan.argv[0] == "mpirun" ? " (Debian: apt-get install openmpi-bin)" : ""))
    }
    let status = try ChildProcess.run(program, plan.argv, environment: plan.childEnvironment(env))
    if status != 0 { throw ExitCode(status) }
  }
}

/// The command line `parallax launch` runs; pure, so `--dry-run` shows exactly it.
struct LaunchPlan {
  var argv: [String]
  /// Variables set for the launcher (the root-user permission of Open MPI).
  var setEnvironment: [(String, String)] = []
  var warnings: [String] = []

  /// `A=1 B=2 mpirun …`, quoted for a POSIX shell.
  var shellLine: String {
    (setEnvironment.map { "\($0.0)=\(Self.quote($0.1))" } + argv.map(Self.quote)).joined(separator: " ")
  }

  static func make(
    _ o: Launch, environment env: [String: String], isRoot: Bool, localCores: Int, executable: String,
    findInPath: (String) -> String?
  ) throws -> LaunchPlan {
    var plan = LaunchPlan(argv: [])
    let program = [executable] + o.command
    if let job = env["SLURM_JOB_ID"] {
      guard o.hostfile == nil && o.hosts == nil else {
        throw ValidationError("inside the Slurm allocation \(job) the allocation decides the hosts: drop --hostfile/--hosts")
      }
      guard let n = o.ranks ?? env["SLURM_NTASKS"].flatMap({ Int($0) }) else {
        throw ValidationError("give -n (SLURM_NTASKS is not set in allocation \(job))")
      }
      let nodes = max(1, Int(env["SLURM_JOB_NUM_NODES"] ?? env["SLURM_NNODES"] ?? "") ?? 1)
      let perNode = (n + nodes - 1) / nodes
      let cores = o.coresPerNode ?? Self.firstCount(env["SLURM_CPUS_ON_NODE"]) ?? localCores
      let threads = o.threads ?? Int(env["SLURM_CPUS_PER_TASK"] ?? "") ?? max(1, cores / perNode)
      let useSrun = o.launcher == "srun" || (o.launcher == "auto" && findInPath("srun") != nil)
      if useSrun {
        plan.argv = [
          "srun", "--ntasks=\(n)", "--cpus-per-task=\(threads)", "--cpu-bind=cores", "--kill-on-bad-exit=1",
          "--export=ALL,OPENBLAS_NUM_THREADS=\(threads)",
        ] + program
      } else {
        // Open MPI's mpirun takes the hosts from the allocation.
        plan.argv = ["mpirun", "-np", "\(n)"] + binding(threads: threads, oversubscribed: false) + [
          "-x", "OPENBLAS_NUM_THREADS=\(threads)", "--stdin", "none",
        ] + program
      }
      if threads * perNode > cores {
        plan.warnings.append("\(perNode) rank(s) × \(threads) thread(s) per node exceed the \(cores) cores of a node")
      }
    } else {
      if o.launcher == "srun" { throw ValidationError("--launcher srun needs a Slurm allocation (SLURM_JOB_ID is not set)") }
      guard let n = o.ranks else { throw ValidationError("give the number of ranks with -n") }
      let cores = o.coresPerNode ?? localCores
      var hostArgs: [String] = []
      var slots: [Int] = []
      if let h = o.hosts {
        slots = try parseHosts(h).map(\.slots)
        hostArgs = ["--host", h]
      } else if let f = o.hostfile {
        slots = try parseHostfile(f).map(\.slots)
        hostArgs = ["--hostfile", f]
      }
      let totalSlots = slots.isEmpty ? cores : slots.reduce(0, +)
      let perNode = slots.isEmpty ? n : min(n, slots.max()!)
      let oversubscribed = n > totalSlots || perNode > cores
      let threads = o.threads ?? max(1, cores / perNode)
      var args = ["mpirun", "-np", "\(n)"] + hostArgs
      if oversubscribed {
        plan.warnings.append(
          "\(n) ranks exceed the \(slots.isEmpty ? "\(cores) cores of this node" : "\(totalSlots) slots of the hosts"): oversubscribing without binding (--oversubscribe); expect each step to be slower than with fewer ranks")
        args += ["--oversubscribe"] + binding(threads: threads, oversubscribed: true)
      } else if threads * perNode > cores {
        plan.warnings.append("\(perNode) rank(s) × \(threads) thread(s) per node exceed the \(cores) cores: not binding")
        args += ["--map-by", "slot", "--bind-to", "none"]
      } else {
        args += binding(threads: threads, oversubscribed: false)
      }
      plan.argv = args + ["-x", "OPENBLAS_NUM_THREADS=\(threads)", "--stdin", "none"] + program
    }
    if plan.argv[0] == "mpirun" && isRoot {
      plan.setEnvironment = [("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")]
    }
    return plan
  }

  /// `--map-by slot[:PE=T] --bind-to core`: ranks placed in order, each bound to its T cores.
  static func binding(threads: Int, oversubscribed: Bool) -> [String] {
    if oversubscribed { return ["--map-by", "slot", "--bind-to", "none"] }
    return ["--map-by", threads > 1 ? "slot:PE=\(threads)" : "slot", "--bind-to", "core"]
  }

  /// `a:2,b:2` (a host without `:K` has one slot).
  static func parseHosts(_ s: String) throws -> [(host: String, slots: Int)] {
    try s.split(separator: ",").map { item in
      let parts = item.split(separator: ":", omittingEmptySubsequences: false)
      guard !parts[0].isEmpty, parts.count <= 2 else {
        throw ValidationError("--hosts: '\(item)' is not host or host:slots (e.g. a:2,b:2)")
      }
      guard parts.count == 2 else { return (String(parts[0]), 1) }
      guard let k = Int(parts[1]), k > 0 else {
        throw ValidationError("--hosts: '\(item)' has no positive slot count")
      }
      return (String(parts[0]), k)
    }
  }

  /// Open MPI hostfile lines `host [slots=K] [max_slots=M]`; `#` starts a comment.
  static func parseHostfile(_ path: String) throws -> [(host: String, slots: Int)] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw ValidationError("\(path): cannot read hostfile")
    }
    var hosts: [(String, Int)] = []
    for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
      let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
      guard let host = words.first else { continue }
      var slots = 1
      for w in words.dropFirst() where w.hasPrefix("slots=") {
        guard let k = Int(w.dropFirst(6)), k > 0 else {
          throw ValidationError("\(path):\(i + 1): '\(w)' is not slots=K with K > 0")
        }
        slots = k
      }
      hosts.append((String(host), slots))
    }
    guard !hosts.isEmpty else { throw ValidationError("\(path): hostfile names no host") }
    return hosts
  }

  /// `SLURM_CPUS_ON_NODE` style counts: `8` or `8(x2)`.
  static func firstCount(_ s: String?) -> Int? {
    guard let s else { return nil }
    return Int(s.prefix { $0.isNumber })
  }

  /// This environment for the launched job: Open MPI / PMIx variables of an enclosing MPI
  /// process are removed (a child `mpirun` that inherits them fails), user MCA settings
  /// (`OMPI_MCA_*` other than the runtime's own) are kept, and `setEnvironment` is added.
  func childEnvironment(_ env: [String: String]) -> [String: String] {
    var out = env.filter { key, _ in
      if key.hasPrefix("PMIX_") || key.hasPrefix("PMI_") { return false }
      guard key.hasPrefix("OMPI_") else { return true }
      if key.hasPrefix("OMPI_ALLOW_RUN_AS_ROOT") { return true }
      let runtimeOwn = ["OMPI_MCA_orte_", "OMPI_MCA_ess", "OMPI_MCA_pmix", "OMPI_MCA_opal_", "OMPI_MCA_ompi_"]
      return key.hasPrefix("OMPI_MCA_") && !runtimeOwn.contains { key.hasPrefix($0) }
    }
    for (k, v) in setEnvironment { out[k] = v }
    return out
  }

  static func quote(_ s: String) -> String {
    let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,@%+^")
    if !s.isEmpty && s.allSatisfy({ safe.contains($0) }) { return s }
    return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
  }

  static func ownExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
      ?? URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
  }

  static func which(_ name: String, path: String?) -> String? {
    if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
    for dir in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
      let candidate = "\(dir)/\(name)"
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
  }
}

/// Runs the launcher's child (`mpirun`/`srun`) in its own process group and waits for it,
/// turning SIGTERM/SIGINT/SIGHUP into SIGUSR1 for the job (mpirun forwards SIGUSR1 to the
/// ranks at once, while a SIGTERM to mpirun reaches them only 1 s before it kills them).
enum ChildProcess {
  private static let child = Atomic<Int32>(0)
  private static let signals = Atomic<Int32>(0)

  /// Returns the child's exit status (128 + signal if a signal ended it).
  static func run(_ program: String, _ argv: [String], environment: [String: String]) throws -> Int32 {
    _ = child.load(ordering: .relaxed)
    _ = signals.load(ordering: .relaxed)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    // Own process group: a terminal's Ctrl-C reaches only this process, which asks the
    // ranks to stop cleanly (mpirun would otherwise kill them 1 s later).
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP))
    posix_spawnattr_setpgroup(&attr, 0)
    let cArgs = argv.map { strdup($0) } + [nil]
    let cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
      cArgs.forEach { free($0) }
      cEnv.forEach { free($0) }
    }
    for sig in [SIGTERM, SIGINT, SIGHUP] {
      var action = sigaction()
      action.__sigaction_handler.sa_handler = { _ in
        // Only async-signal-safe work: atomics and kill(2).
        let n = ChildProcess.signals.add(1, ordering: .relaxed).newValue
        let pid = ChildProcess.child.load(ordering: .relaxed)
        if pid > 0 { kill(pid, n == 1 ? SIGUSR1 : SIGTERM) }
      }
      sigemptyset(&action.sa_mask)
      action.sa_flags = Int32(SA_RESTART)
      sigaction(sig, &action, nil)
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, program, nil, &attr, cArgs, cEnv)
    guard rc == 0 else { throw ValidationError("cannot start \(program): \(String(cString: strerror(rc)))") }
    child.store(pid, ordering: .relaxed)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
      guard errno == EINTR else { throw ValidationError("waitpid: \(String(cString: strerror(errno)))") }
    }
    child.store(0, ordering: .relaxed)
    let signal = status & 0x7f
    return signal == 0 ? (status >> 8) & 0xff : 128 + signal
  }
}
