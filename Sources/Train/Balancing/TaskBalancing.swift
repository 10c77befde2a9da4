import Model

/// One multi-task method's balancing in the training step (`--mtl` other than `ew`).
///
/// Per micro-batch, `forwardBackward` runs the method's per-task backward: task t's share of
/// the gradient of the shared parameters goes to a row of `TaskGradients` (accumulated over
/// micro-batches), the task-specific gradients accumulate in the arena as usual, and the
/// shared ranges of the arena stay zero. After the gradient sync, `finishStep`:
///
/// 1. sums every task's shares over the ranks (one all-reduce of T × shared floats), so the
///    balancer sees the global batch's task gradients whatever the rank count;
/// 2. asks the balancer for the shared gradient and the task weights (same input on every
///    rank, randomness keyed by the step: every rank computes the same);
/// 3. writes that gradient over the shared ranges and multiplies task t's own ranges by wₜ.
///
/// **Why not summed twice.** The bucketed sync still all-reduces the whole arena, shared
/// ranges included, but they hold zeros then (the per-task backward leaves them untouched
/// after `zeroGrads`), so the sum there is exactly zero and step 3 overwrites it with the
/// combination, which is never reduced again. Excluding the shared ranges from the buckets
/// would save those zeros on the wire, but with adapters the shared ranges interleave with
/// task-specific ones and `GradientBuckets.plan` takes one contiguous run; dividing the
/// combination by W and letting the sync add it would round differently per rank count (x/3
/// summed three times is not x) and send the shared part a third time. Cost of this way: the
/// shared part's zeros (4 bytes a shared parameter), the T × shared floats of step 1 (one
/// blocking all-reduce, not overlapped with backward), and no overlap of the bucket sync with
/// backward (buckets are not armed: the second encoder backward would still write into
/// ranges the first one finished).
public final class TaskBalancing {
  public let name: BalancerName
  public let balancer: any TaskBalancer
  public let shared: [NamedRange]
  /// Each task's own parameter ranges (disjoint from `shared` and from each other).
  public let taskRanges: [[NamedRange]]
  /// The fixed weights of the method's objective (MT-SLVR: 1 and `--pred-weight`): the loss
  /// a balancer sees for task t is `termWeights[t]·Lₜ`, the term its gradient is of.
  let termWeights: [Float]
  let seed: UInt64
  /// One micro-batch's task gradients, and their sum over the step's micro-batches.
  let micro: TaskGradients
  let accumulated: TaskGradients
  private var microBatches = 0
  private var lossSums: [Float]
  private let direction: Storage
  /// The last step's task weights (for the log).
  public private(set) var lastWeights: [Float]
  /// Called every step with the balancer's input (the global task gradients) before it is
  /// balanced: Recon's conflict scores.
  public var observe: ((BalancingInput) -> Void)?

  public init(
    name: BalancerName, shared: [NamedRange], taskRanges: [[NamedRange]], termWeights: [Float], config: PretrainConfig
  ) {
    let tasks = taskRanges.count
    micro = TaskGradients(tasks: tasks, sharedRanges: shared)
    accumulated = TaskGradients(tasks: tasks, sharedRanges: shared)
    self.name = name
    balancer = TaskBalancers.make(name, tasks: tasks, count: micro.sharedCount, config: config)
    self.shared = shared
    self.taskRanges = taskRanges
    self.termWeights = termWeights
    seed = config.seed
    lossSums = Array(repeating: 0, count: tasks)
    lastWeights = Array(repeating: 1, count: tasks)
    direction = Storage(micro.sharedCount)
  }

  public var tasks: Int { taskRanges.count }

  /// One micro-batch: the method's per-task forward and backward (accumulating).
  public func forwardBackward(_ method: any MultiTaskMethod, _ batch: MethodBatch, lossScale: Float) throws
    -> TaskLosses
  {
    let losses = try method.forwardBackwardPerTask(batch, lossScale: lossScale, into: micro)
    let n = tasks * micro.sharedCount
    if microBatches == 0 {
      accumulated.values.data.update(from: micro.values.data, count: n)
    } else {
      for i in 0..<n { accumulated.values.data[i] += micro.values.data[i] }
    }
    microBatches += 1
    for t in 0..<tasks { lossSums[t] += termWeights[t] * (losses.tasks[t].value) }
    return losses
  }

  /// After the bucketed sync: sums the task gradients over `collective`, balances them and
  /// writes the result into `arena.grads` (collective: every rank calls it once a step).
  /// - Parameters:
  ///   - step: the optimizer step, 1-based.
  ///   - inspect: called with the balancer's input before it is used (debug dumps).
  public func finishStep(
    step: Int, epoch: Int, collective: Collective, arena: ParameterArena,
    inspect: ((BalancingInput) throws -> Void)? = nil
  ) throws {
    precondition(microBatches > 0, "TaskBalancing.finishStep without a forwardBackward")
    if collective.size > 1 { try accumulated.sum(over: collective) }
    let losses = lossSums.map { $0 / Float(microBatches) }
    microBatches = 0
    lossSums = Array(repeating: 0, count: tasks)
    let input = BalancingInput(
      tasks: tasks, count: accumulated.sharedCount, gradients: accumulated.values.data, losses: losses, step: step,
      epoch: epoch, seed: seed)
    try inspect?(input)
    observe?(input)
    let weights = try balancer.balance(input, into: direction.data)
    guard weights.count == tasks, weights.allSatisfy(\.isFinite) else {
      throw TrainError("--mtl \(name): task weights \(weights) at step \(step) are not finite")
    }
    try apply(direction: direction.data, weights: weights, to: arena, step: step)
    lastWeights = weights
  }

  /// Writes `direction` over the shared ranges and scales task t's ranges by `weights[t]`.
  func apply(direction: UnsafePointer<Float>, weights: [Float], to arena: ParameterArena, step: Int) throws {
    var p = direction
    for r in shared {
      for i in 0..<r.count where !p[i].isFinite {
        throw TrainError("--mtl \(name): the combined gradient of '\(r.name)' is \(p[i]) at step \(step)")
      }
      (arena.grads + r.offset).update(from: p, count: r.count)
      p += r.count
    }
    for (t, ranges) in taskRanges.enumerated() where weights[t] != 1 {
      let w = weights[t]
      for r in ranges {
        let g = arena.grads + r.offset
        for i in 0..<r.count { g[i] *= w }
      }
    }
  }

  /// The balancer's state, for the method's `stateEntries`.
  public func stateEntries() -> [SafeTensors.Entry] { balancer.stateEntries() }
}
