import CMPI

/// A failed MPI call: the call's name, MPI's return code and MPI's own error string
/// (`MPI_Error_string`). The communicators are set to `MPI_ERRORS_RETURN`, so MPI reports
/// errors as codes and `Dist` turns every non-success code into one of these.
public struct MPIError: Error, CustomStringConvertible, Sendable {
  /// The MPI function that failed, e.g. `"MPI_Bcast"`.
  public let call: String
  /// The return code of the call.
  public let code: Int32
  /// The error class of `code` (`MPI_Error_class`), e.g. `MPI_ERR_ROOT`; equal to `code`
  /// when the class cannot be found.
  public let errorClass: Int32
  /// MPI's own description of `code`.
  public let message: String

  init(call: String, code: Int32) {
    self.call = call
    self.code = code
    var errorClass: Int32 = code
    if MPI_Error_class(code, &errorClass) != cmpi_success() { errorClass = code }
    self.errorClass = errorClass
    var buffer = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
    var length: Int32 = 0
    if MPI_Error_string(code, &buffer, &length) == cmpi_success() {
      self.message = String(
        decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) },
        as: UTF8.self)
    } else {
      self.message = "unknown MPI error"
    }
  }

  public var description: String { "\(call) failed with MPI error \(code): \(message)" }
}

/// Checks an MPI return code; throws `MPIError` naming `call` unless it is `MPI_SUCCESS`.
@inline(__always)
func mpiCheck(_ call: StaticString, _ code: Int32) throws {
  if code != cmpi_success() { throw MPIError(call: "\(call)", code: code) }
}

/// Misuse of the `Dist` API that MPI itself would not report (or would report only by
/// hanging): thrown before any MPI call is made.
public enum DistError: Error, CustomStringConvertible, Equatable, Sendable {
  /// MPI was initialised with a lower thread level than the one requested.
  case threadLevelUnavailable(requested: Communicator.ThreadLevel, provided: Int32)
  /// MPI has been finalised; no MPI call can be made in this process any more.
  case finalized
  /// A count does not fit MPI's 32-bit `int` counts.
  case countTooLarge(call: String, count: Int)
  /// The root of a gather passed no receive buffer.
  case missingReceiveBuffer(call: String)
  /// The reduction is not defined for this element type (e.g. `.average` of integers).
  case unsupportedReduction(String)
  /// A nonblocking operation was started on a request scope that has already closed.
  case requestScopeClosed

  public var description: String {
    switch self {
    case .threadLevelUnavailable(let requested, let provided):
      return
        "MPI thread level \(requested) requested but the MPI library provides level \(provided)"
    case .finalized:
      return "MPI has been finalized in this process"
    case .countTooLarge(let call, let count):
      return "\(call): count \(count) does not fit MPI's 32-bit int"
    case .missingReceiveBuffer(let call):
      return "\(call): the root rank must pass a receive buffer"
    case .unsupportedReduction(let what):
      return "unsupported reduction: \(what)"
    case .requestScopeClosed:
      return "nonblocking operation started after its request scope closed"
    }
  }
}
