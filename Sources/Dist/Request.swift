import CMPI

/// A nonblocking collective in flight. Made only inside a request scope
/// (`Communicator.withRequests` or `withIAllReduce`), which waits for every request it
/// made before it returns, so no request outlives the buffer it reads and writes. A
/// `Request` that escapes its scope is already complete: `wait()` and `test()` on it
/// return at once.
public final class Request {
  private var handle: MPI_Request?
  /// Runs once when the operation completes (e.g. dividing by `size` for `.average`).
  private let onCompletion: () -> Void
  /// Whether the operation has completed (or failed).
  public private(set) var isComplete = false

  init(handle: MPI_Request?, onCompletion: @escaping () -> Void) {
    self.handle = handle
    self.onCompletion = onCompletion
  }

  /// Blocks until the operation completes; afterwards the buffer holds the result.
  public func wait() throws {
    if isComplete { return }
    let code = MPI_Wait(&handle, cmpi_status_ignore())
    isComplete = true  // a failed request is not waited for again
    try mpiCheck("MPI_Wait", code)
    onCompletion()
  }

  /// Whether the operation has completed, without blocking; also drives MPI's progress.
  @discardableResult
  public func test() throws -> Bool {
    if isComplete { return true }
    var flag: Int32 = 0
    let code = MPI_Test(&handle, &flag, cmpi_status_ignore())
    if code != cmpi_success() {
      isComplete = true
      try mpiCheck("MPI_Test", code)
    }
    if flag != 0 {
      isComplete = true
      onCompletion()
    }
    return isComplete
  }
}

/// Starts nonblocking collectives whose requests all complete before the scope ends:
/// the bucketed gradient sync issues one `iAllReduce` per bucket, in bucket index order on
/// every rank (DESIGN invariant 2), and the scope waits for them in the same order.
public final class RequestScope {
  private let communicator: Communicator
  private var requests: [Request] = []
  fileprivate var isOpen = true

  fileprivate init(communicator: Communicator) {
    self.communicator = communicator
  }

  /// Starts an in-place all-reduce of `count` floats (`MPI_Iallreduce`). `buffer` must not
  /// be read or written until the returned request (or the scope) completes.
  public func iAllReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, op: ReduceOp = .sum)
    throws -> Request
  {
    guard isOpen else { throw DistError.requestScopeClosed }
    try communicator.ensureLive()
    let n = try mpiCount(count, "MPI_Iallreduce")
    var handle: MPI_Request? = cmpi_request_null()
    try mpiCheck(
      "MPI_Iallreduce",
      MPI_Iallreduce(
        cmpi_in_place(), buffer, n, cmpi_float(), op.mpiOp, communicator.comm, &handle))
    let size = communicator.size
    let request = Request(handle: handle) {
      if op == .average && size > 1 {
        let scale = Float(size)
        for i in 0..<count { buffer[i] /= scale }
      }
    }
    requests.append(request)
    return request
  }

  /// Waits for every request of this scope, in the order they were started.
  /// - Throws: the first error; every request is still waited for.
  public func waitAll() throws {
    var firstError: Error?
    for request in requests {
      do { try request.wait() } catch { if firstError == nil { firstError = error } }
    }
    requests.removeAll()
    if let firstError { throw firstError }
  }
}

extension Communicator {
  /// Runs `body` with a scope for nonblocking collectives, then waits for every request
  /// the scope started (also when `body` throws), so none outlives this call.
  public func withRequests<R>(_ body: (RequestScope) throws -> R) throws -> R {
    let scope = RequestScope(communicator: self)
    let result: R
    do {
      result = try body(scope)
    } catch {
      scope.isOpen = false
      try? scope.waitAll()
      throw error
    }
    scope.isOpen = false
    try scope.waitAll()
    return result
  }

  /// Starts an in-place all-reduce of `count` floats, runs `body` (overlap work there;
  /// `request.test()` polls, `request.wait()` blocks), then waits for it.
  public func withIAllReduce<R>(
    _ buffer: UnsafeMutablePointer<Float>, count: Int, op: ReduceOp = .sum,
    _ body: (Request) throws -> R
  ) throws -> R {
    try withRequests { scope in
      let request = try scope.iAllReduce(buffer, count: count, op: op)
      return try body(request)
    }
  }
}
