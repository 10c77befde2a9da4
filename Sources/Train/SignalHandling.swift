import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A graceful stop requested by a signal: SIGTERM (what Slurm sends before its time limit),
/// SIGINT (Ctrl-C) or SIGUSR1 (which `mpirun` forwards to the ranks at once; it turns
/// SIGTERM into a kill after `odls_base_sigkill_timeout`, 1 s by default).
///
/// The handler only stores the signal number in an atomic (nothing else is async-signal
/// safe); the training loop reads it at each step boundary, and the ranks agree with a MAX
/// all-reduce so that every rank stops after the same step. `SA_RESETHAND` restores the
/// default action, so a second signal ends the process at once.
public enum StopSignal {
  private static let received = Atomic<Int32>(0)
  public static let handled: [Int32] = [SIGTERM, SIGINT, SIGUSR1]

  /// Installs the handlers (idempotent).
  public static func install() {
    _ = received.load(ordering: .relaxed)  // initialise the global before a handler can run
    for sig in handled {
      var action = sigaction()
      action.__sigaction_handler.sa_handler = { sig in StopSignal.received.store(sig, ordering: .relaxed) }
      sigemptyset(&action.sa_mask)
      action.sa_flags = Int32(SA_RESTART) | Int32(bitPattern: UInt32(SA_RESETHAND))
      sigaction(sig, &action, nil)
    }
  }

  /// The signal received since start (0: none).
  public static var pending: Int32 { received.load(ordering: .relaxed) }

  public static func name(_ sig: Int32) -> String {
    switch sig {
    case SIGTERM: return "SIGTERM"
    case SIGINT: return "SIGINT"
    case SIGUSR1: return "SIGUSR1"
    case SIGHUP: return "SIGHUP"
    default: return "signal \(sig)"
    }
  }
}
