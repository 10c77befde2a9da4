import SystemPackage

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// The file operations the data readers and writers use, on swift-system's `FileDescriptor`
/// and `FilePath`. swift-system throws a bare `Errno`; these helpers turn it into a
/// `DataError` that names the file and the operation (DESIGN.md invariant 8).
///
/// swift-system 1.8 has no `fsync` or `rename`, so those two stay direct libc calls.
extension FileDescriptor {
  /// Opens `path` for reading; a missing file becomes `.fileNotFound` with `hint`.
  static func openForReading(_ path: String, hint: String? = nil) throws -> FileDescriptor {
    do {
      return try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
    } catch let e as Errno {
      if e == .noSuchFileOrDirectory || e == .notDirectory {
        throw DataError.fileNotFound(path: path, hint: hint)
      }
      throw DataError.io(path: path, operation: "open", reason: e.description)
    }
  }

  /// Creates (truncating) `path` for writing, mode 0644.
  static func create(_ path: String) throws -> FileDescriptor {
    do {
      return try FileDescriptor.open(
        FilePath(path), .writeOnly, options: [.create, .truncate, .closeOnExec],
        permissions: [.ownerReadWrite, .groupRead, .otherRead])
    } catch let e as Errno {
      throw DataError.io(path: path, operation: "create", reason: e.description)
    }
  }

  /// The size in bytes of the open file (`fstat`).
  func size(path: String) throws -> Int {
    do { return Int(try stat().size) } catch {
      throw DataError.io(path: path, operation: "fstat", reason: error.description)
    }
  }

  /// Reads exactly `buffer.count` bytes at `offset` (`pread`, retrying short reads and EINTR).
  /// Throws `.truncated` if the file ends first.
  func readFully(at offset: Int, into buffer: UnsafeMutableRawBufferPointer, path: String) throws {
    var done = 0
    while done < buffer.count {
      let n: Int
      do {
        n = try read(
          fromAbsoluteOffset: Int64(offset + done), into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
      } catch let e as Errno {
        throw DataError.io(path: path, operation: "pread", reason: e.description)
      }
      if n == 0 {
        throw DataError.truncated(path: path, expectedBytes: offset + buffer.count, actualBytes: offset + done)
      }
      done += n
    }
  }

  /// Writes all of `bytes` at the current offset (retrying short writes and EINTR).
  func writeFully(_ bytes: UnsafeRawBufferPointer, path: String) throws {
    do { _ = try writeAll(bytes) } catch let e as Errno {
      throw DataError.io(path: path, operation: "write", reason: e.description)
    }
  }

  /// Writes all of `bytes` at `offset` (`pwrite`), leaving the file offset alone.
  func writeFully(_ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws {
    do { _ = try writeAll(toAbsoluteOffset: Int64(offset), bytes) } catch let e as Errno {
      throw DataError.io(path: path, operation: "pwrite", reason: e.description)
    }
  }

  /// Flushes the file to stable storage.
  func sync(path: String) throws {
    if fsync(rawValue) != 0 {
      throw DataError.io(path: path, operation: "fsync", reason: Errno(rawValue: errno).description)
    }
  }

  /// Closes the descriptor, naming `path` if that fails.
  func close(path: String) throws {
    do { try close() } catch let e as Errno {
      throw DataError.io(path: path, operation: "close", reason: e.description)
    }
  }
}

enum DataFiles {
  /// Reads the whole file at `path`.
  static func readAll(_ path: String, hint: String? = nil) throws -> [UInt8] {
    let fd = try FileDescriptor.openForReading(path, hint: hint)
    defer { try? fd.close() }
    let size = try fd.size(path: path)
    if size == 0 { return [] }
    var bytes = [UInt8](repeating: 0, count: size)
    try bytes.withUnsafeMutableBytes { try fd.readFully(at: 0, into: $0, path: path) }
    return bytes
  }

  /// Renames `from` to `to` (atomic within one file system).
  static func move(_ from: String, to: String) throws {
    if rename(from, to) != 0 {
      throw DataError.io(path: to, operation: "rename from \(from)", reason: Errno(rawValue: errno).description)
    }
  }

  /// fsyncs the directory holding `path`, so a rename into it is durable.
  static func syncDirectory(of path: String) throws {
    var dir = FilePath(path).removingLastComponent()
    if dir.isEmpty { dir = "." }
    let name = dir.string
    let fd: FileDescriptor
    do {
      fd = try FileDescriptor.open(dir, .readOnly, options: [.directory, .closeOnExec])
    } catch let e as Errno {
      throw DataError.io(path: name, operation: "open directory", reason: e.description)
    }
    defer { try? fd.close() }
    try fd.sync(path: name)
  }
}
