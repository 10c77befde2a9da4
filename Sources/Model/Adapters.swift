/// Residual adapters for multi-task networks (Rebuffi, Bilen & Vedaldi 2017, 2018), as
/// MT-SLVR (Heggan et al. 2023) uses them to let a contrastive and a predictive task share
/// one backbone.
///
/// Multi-task layers work on a **task-stacked** batch `[T·N, …]`: rows `t·N..<(t+1)·N` are the
/// N samples as seen by task t. Shared weights (a convolution) run once on all `T·N` rows;
/// task-specific modules (a norm, an adapter) run on their task's rows only. With sync BN each
/// task's norm reduces its own statistics across ranks, in task order on every rank.
public enum AdapterMode: String, Sendable, CaseIterable, Codable {
  /// One shared network, no task-specific parameters.
  case none
  /// Task-specific BatchNorm after every adapted convolution.
  case bn
  /// A per-task 1×1 convolution after each adapted 3×3 convolution, residually:
  /// `norm_t(y + A_t(y))`, `y = conv(x)`.
  case series
  /// A per-task 1×1 convolution beside each adapted 3×3 convolution (same stride):
  /// `norm_t(conv(x) + A_t(x))`.
  case parallel
}

/// Runs task t's own layer on rows `t·N..<(t+1)·N` of a task-stacked batch (MT-SLVR's
/// task-specific BatchNorm; any shape-preserving-per-row layers work).
public final class TaskSplit: Layer {
  public let tasks: [Layer]
  /// [T·N, …] outputs and input gradients, assembled from the task layers' own buffers.
  private let out = Storage()
  private let dInput = Storage()
  private var inputShape = Shape(0, 0)

  public init(_ tasks: [Layer]) {
    precondition(!tasks.isEmpty)
    self.tasks = tasks
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    let T = tasks.count
    guard x.shape.n % T == 0 else {
      throw LayerShapeError(layer: "TaskSplit", reason: "\(x.shape.n) rows are not \(T) tasks' equal shares")
    }
    inputShape = x.shape
    let views = taskViews(x)
    var y: Tensor?
    for (t, v) in views.enumerated() {
      let yt = try tasks[t].forward(v, training: training)
      if y == nil { y = out.tensor(Shape(x.shape.n, yt.shape.c, yt.shape.h, yt.shape.w)) }
      (y!.data + t * yt.count).update(from: yt.data, count: yt.count)
    }
    return y!
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    let dx = dInput.tensor(inputShape)
    for (t, g) in taskViews(dy).enumerated() {
      let d = try tasks[t].backward(g)
      (dx.data + t * d.count).update(from: d.data, count: d.count)
    }
    return dx
  }

  private func taskViews(_ x: Tensor) -> [Tensor] {
    Tensor.taskViews(x, tasks: tasks.count)
  }
}

extension Tensor {
  /// The T equal row blocks of a task-stacked tensor, as views.
  public static func taskViews(_ x: Tensor, tasks: Int) -> [Tensor] {
    let n = x.shape.n / tasks
    let s = Shape(n, x.shape.c, x.shape.h, x.shape.w)
    return (0..<tasks).map { Tensor(x.data + $0 * s.count, s) }
  }
}

/// A convolution shared by all tasks followed by task-specific adapters and norms, on a
/// task-stacked batch `[T·N, C, …]` (2-d or 1-d convolutions alike):
///
/// - `bn`: `out_t = norm_t(conv(x_t))`
/// - `series`: `out_t = norm_t(y_t + A_t(y_t))`, `y = conv(x)`, `A_t` a 1×1 convolution
///   `C_out → C_out`
/// - `parallel`: `out_t = norm_t(conv(x_t) + A_t(x_t))`, `A_t` a 1×1 convolution
///   `C_in → C_out` with the convolution's stride.
///
/// Parameters are registered conv first, then per task (adapter, norm), so after `backward`
/// every gradient at or above the conv's offset is final (one progress report per unit).
public final class AdaptedConv: Layer {
  public let mode: AdapterMode
  public let conv: Layer
  /// Per task; empty for `bn`.
  public let adapters: [Layer]
  public let norms: [Layer]

  /// [T·N, C_out, …] adapter sums and outputs.
  private let sum = Storage()
  private let out = Storage()
  /// [T·N, C_out, …] gradient into the shared convolution's output.
  private let dConvOut = Storage()
  /// [T·N, C_in, …] input gradient (parallel: conv's plus the adapters').
  private let dInput = Storage()

  /// - Parameters:
  ///   - conv: the shared convolution (registered before the adapters and norms).
  ///   - adapters: one per task for `series`/`parallel`, none for `bn`.
  ///   - norms: one per task.
  public init(mode: AdapterMode, conv: Layer, adapters: [Layer], norms: [Layer]) {
    precondition(mode != .none, "AdaptedConv needs task-specific parts; use the plain layers for none")
    precondition(!norms.isEmpty)
    precondition(mode == .bn ? adapters.isEmpty : adapters.count == norms.count)
    self.mode = mode
    self.conv = conv
    self.adapters = adapters
    self.norms = norms
  }

  public var taskCount: Int { norms.count }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    let T = taskCount
    guard x.shape.n % T == 0 else {
      throw LayerShapeError(layer: "AdaptedConv", reason: "\(x.shape.n) rows are not \(T) tasks' equal shares")
    }
    let y = try conv.forward(x, training: training)
    let ys = Tensor.taskViews(y, tasks: T)
    let xs = Tensor.taskViews(x, tasks: T)
    let o = out.tensor(y.shape)
    let u = mode == .bn ? y : sum.tensor(y.shape)
    for t in 0..<T {
      let ut = Tensor(u.data + t * ys[t].count, ys[t].shape)
      if mode != .bn {
        let a = try adapters[t].forward(mode == .series ? ys[t] : xs[t], training: training)
        guard a.shape == ys[t].shape else {
          throw LayerShapeError(layer: "AdaptedConv", reason: "adapter output \(a.shape) vs conv \(ys[t].shape)")
        }
        for i in 0..<a.count { ut.data[i] = ys[t].data[i] + a.data[i] }
      }
      let nt = try norms[t].forward(ut, training: training)
      (o.data + t * nt.count).update(from: nt.data, count: nt.count)
    }
    return o
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    let T = taskCount
    let dys = Tensor.taskViews(dy, tasks: T)
    let g = dConvOut.tensor(dy.shape)
    var dAdapterIn: [Tensor] = []
    for t in 0..<T {
      let du = try norms[t].backward(dys[t])
      let gt = g.data + t * du.count
      switch mode {
      case .none, .bn:
        gt.update(from: du.data, count: du.count)
      case .series:
        // u = y + A(y): dy_conv = du + Aᵀ(du).
        let da = try adapters[t].backward(du)
        for i in 0..<du.count { gt[i] = du.data[i] + da.data[i] }
      case .parallel:
        gt.update(from: du.data, count: du.count)
        dAdapterIn.append(try adapters[t].backward(du))
      }
    }
    let dx = try conv.backward(g)
    guard mode == .parallel else { return dx }
    let d = dInput.tensor(dx.shape)
    for t in 0..<T {
      let a = dAdapterIn[t]
      let base = t * a.count
      for i in 0..<a.count { d.data[base + i] = dx.data[base + i] + a.data[i] }
    }
    return d
  }
}
