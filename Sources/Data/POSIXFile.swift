#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Thin, throwing wrappers over the POSIX calls the data readers and writers use. Every error
/// names the file. Internal: the public types own their descriptors.
enum POSIXFile {
  /// The text of the current `errno`.
  static func lastError() -> String { String(cString: strerror(errno)) }

  /// Opens `path` for reading; a missing file becomes `.fileNotFound` with `hint`.
  static func openForReading(_ path: String, hint: String? = nil) throws -> Int32 {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
      if errno == ENOENT || errno == ENOTDIR { throw DataError.fileNotFound(path: path, hint: hint) }
      throw DataError.io(path: path, operation: "open", reason: lastError())
    }
    return fd
  }

  /// The size in bytes of the open file `fd`.
  static func size(_ fd: Int32, path: String) throws -> Int {
    var st = stat()
    if fstat(fd, &st) != 0 { throw DataError.io(path: path, operation: "fstat", reason: lastError()) }
    return Int(st.st_size)
  }

  /// Reads exactly `count` bytes at `offset` into `buffer` (retrying short reads and EINTR).
  /// Throws `.truncated` if the file ends first.
  static func preadFully(
    _ fd: Int32, _ buffer: UnsafeMutableRawPointer, count: Int, offset: Int, path: String
  ) throws {
    var done = 0
    while done < count {
      let n = pread(fd, buffer + done, count - done, off_t(offset + done))
      if n < 0 {
        if errno == EINTR { continue }
        throw DataError.io(path: path, operation: "pread", reason: lastError())
      }
      if n == 0 {
        throw DataError.truncated(path: path, expectedBytes: offset + count, actualBytes: offset + done)
      }
      done += n
    }
  }

  /// Writes exactly `count` bytes from `buffer` (retrying short writes and EINTR).
  static func writeFully(_ fd: Int32, _ buffer: UnsafeRawPointer, count: Int, path: String) throws {
    var done = 0
    while done < count {
      let n = write(fd, buffer + done, count - done)
      if n < 0 {
        if errno == EINTR { continue }
        throw DataError.io(path: path, operation: "write", reason: lastError())
      }
      done += n
    }
  }

  /// Reads the whole file at `path`.
  static func readAll(_ path: String, hint: String? = nil) throws -> [UInt8] {
    let fd = try openForReading(path, hint: hint)
    defer { close(fd) }
    let size = try size(fd, path: path)
    if size == 0 { return [] }
    var bytes = [UInt8](repeating: 0, count: size)
    try bytes.withUnsafeMutableBytes { raw in
      try preadFully(fd, raw.baseAddress!, count: size, offset: 0, path: path)
    }
    return bytes
  }

  /// fsyncs the directory holding `path`, so a rename into it is durable.
  static func syncDirectory(of path: String) throws {
    var dir = path
    if let slash = dir.lastIndex(of: "/") {
      dir = String(dir[..<slash])
      if dir.isEmpty { dir = "/" }
    } else {
      dir = "."
    }
    let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd < 0 { throw DataError.io(path: dir, operation: "open directory", reason: lastError()) }
    defer { close(fd) }
    if fsync(fd) != 0 { throw DataError.io(path: dir, operation: "fsync", reason: lastError()) }
  }
}
