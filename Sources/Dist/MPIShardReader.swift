import CMPI
import Data

/// Record-shard reads through MPI-IO (the mission's sharded dataset loading): each rank reads
/// only the records of its part of every global batch, by offset.
///
/// - `.collective` (the default under MPI): the files are opened on the whole communicator and
///   each batch is one `MPI_File_set_view` (an hindexed file type over the rank's records,
///   ascending) and one `MPI_File_read_at_all`, so the MPI-IO layer (ROMIO, OMPIO) can merge the
///   ranks' requests into large contiguous reads of a parallel file system. Every rank must
///   make the same calls: batch readers visit every part on every batch.
/// - `.independent`: files opened on `MPI_COMM_SELF`, one `MPI_File_read_at` per record; no
///   coordination between ranks.
///
/// `close()` is collective in `.collective` mode; call it on every rank (the pretraining loop
/// does at its end).
public final class MPIShardReader: ShardReader, @unchecked Sendable {
  public enum Mode: String, Sendable, CaseIterable {
    case collective, independent
  }

  public let mode: Mode
  private let comm: MPI_Comm
  private var files: [String: MPI_File] = [:]
  /// Paths in the order they were opened (closing follows it on every rank).
  private var order: [String] = []
  public private(set) var bytesRead = 0

  public init(communicator: Communicator, mode: Mode) {
    self.mode = mode
    comm = mode == .collective ? communicator.comm : cmpi_comm_self()
  }

  private func file(_ path: String) throws -> MPI_File {
    if let f = files[path] { return f }
    var f: MPI_File? = cmpi_file_null()
    let code = path.withCString { MPI_File_open(comm, UnsafeMutablePointer(mutating: $0), cmpi_mode_rdonly(), cmpi_info_null(), &f) }
    guard code == cmpi_success(), let f else { throw DataError.io(path: path, operation: "MPI_File_open", reason: MPIError(call: "MPI_File_open", code: code).description) }
    // Errors come back as codes (the default handler for files is MPI_ERRORS_RETURN; set it to be sure).
    MPI_File_set_errhandler(f, cmpi_errors_return())
    files[path] = f
    order.append(path)
    return f
  }

  public func read(path: String, offsets: [Int], size: Int, into: UnsafeMutablePointer<UInt8>) throws {
    let f = try file(path)
    func check(_ call: StaticString, _ code: Int32) throws {
      if code != cmpi_success() { throw DataError.io(path: path, operation: "\(call)", reason: MPIError(call: "\(call)", code: code).description) }
    }
    switch mode {
    case .independent:
      for (k, o) in offsets.enumerated() {
        try check("MPI_File_read_at", MPI_File_read_at(f, MPI_Offset(o), into + k * size, Int32(size), cmpi_byte(), cmpi_status_ignore()))
      }
    case .collective:
      let native = "native"
      if offsets.isEmpty {
        try native.withCString { rep in
          try check("MPI_File_set_view", MPI_File_set_view(f, 0, cmpi_byte(), cmpi_byte(), UnsafeMutablePointer(mutating: rep), cmpi_info_null()))
        }
        try check("MPI_File_read_at_all", MPI_File_read_at_all(f, 0, into, 0, cmpi_byte(), cmpi_status_ignore()))
      } else {
        var type: MPI_Datatype? = nil
        var lengths = [Int32](repeating: Int32(size), count: offsets.count)
        var displacements = offsets.map { MPI_Aint($0) }
        try check("MPI_Type_create_hindexed", MPI_Type_create_hindexed(Int32(offsets.count), &lengths, &displacements, cmpi_byte(), &type))
        try check("MPI_Type_commit", MPI_Type_commit(&type))
        defer { MPI_Type_free(&type) }
        try native.withCString { rep in
          try check("MPI_File_set_view", MPI_File_set_view(f, 0, cmpi_byte(), type, UnsafeMutablePointer(mutating: rep), cmpi_info_null()))
        }
        try check("MPI_File_read_at_all", MPI_File_read_at_all(f, 0, into, Int32(offsets.count * size), cmpi_byte(), cmpi_status_ignore()))
      }
    }
    bytesRead += offsets.count * size
  }

  /// Closes every file (collective in `.collective` mode: every rank, same order).
  public func close() {
    for path in order {
      var f: MPI_File? = files[path]
      if f != nil { MPI_File_close(&f) }
    }
    files = [:]
    order = []
  }
}
