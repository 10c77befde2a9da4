#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Fashion-MNIST read by offset. Debian ships the IDX files gzip-compressed, so a sample cannot
/// be read where it lies; the first process that needs a split inflates it once into a record
/// shard in a cache directory, and every process (every rank) then opens that shard and reads
/// only the samples it is asked for with `pread` (DESIGN.md "Data": memory does not grow with
/// the dataset). The shard's payload bytes are the IDX pixels unchanged, so everything built on
/// them is bit-identical to `FashionMNIST.load`.
extension FashionMNIST {
  /// Where packed splits go: `$XDG_CACHE_HOME/parallax`, else `$HOME/.cache/parallax`, else
  /// `/tmp/parallax-cache-UID`. On a cluster `$HOME` is usually shared, so one node packs for
  /// all; a node-local cache works too (each node packs once).
  public static var defaultCacheDirectory: String {
    func env(_ name: String) -> String? {
      guard let v = getenv(name), v.pointee != 0 else { return nil }
      return String(cString: v)
    }
    if let xdg = env("XDG_CACHE_HOME") { return xdg + "/parallax" }
    if let home = env("HOME") { return home + "/.cache/parallax" }
    return "/tmp/parallax-cache-\(getuid())"
  }

  /// The cache path of a split's shard: `fashion-mnist-<split>-<key>.pxrs`, where the key is a
  /// 64-bit FNV-1a hash of the IDX files' paths, sizes and modification times, so replacing the
  /// files (or pointing at another directory) makes a new shard instead of reusing a stale one.
  /// - Throws: `DataError.fileNotFound` with the install hint when a file is missing.
  public static func shardPath(split: Split, directory: String, cacheDirectory: String) throws -> String {
    let (images, labels) = paths(split: split, directory: directory)
    var key = "pxrs-v\(RecordShardHeader.currentVersion)"
    for path in [images, labels] {
      var st = stat()
      guard stat(path, &st) == 0 else {
        if errno == ENOENT || errno == ENOTDIR {
          throw DataError.fileNotFound(path: path, hint: installHint(directory: directory))
        }
        throw DataError.io(path: path, operation: "stat", reason: String(cString: strerror(errno)))
      }
      key += "|\(path)|\(st.st_size)|\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    }
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in key.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    let hex = String(hash, radix: 16)
    return "\(cacheDirectory)/fashion-mnist-\(split.rawValue)-\(String(repeating: "0", count: 16 - hex.count))\(hex).pxrs"
  }

  /// A split as a record shard read by offset, packing it first if the cache has no valid copy.
  ///
  /// Packing is atomic (`RecordShardWriter`: temporary file → fsync → rename → fsync the
  /// directory) and done under an exclusive `flock` on `<shard>.lock`, so when all ranks of a
  /// job start at once one of them packs while the others wait, then all open the same file. A
  /// cached shard that does not open (a damaged copy) is packed again.
  /// - Parameters:
  ///   - split: `.train` or `.test`.
  ///   - directory: the folder holding the IDX files.
  ///   - cacheDirectory: where packed shards live (created if missing).
  /// - Returns: a `ShardImageSource` of 1×28×28 images with labels 0…9 (label slot 0).
  /// - Throws: `DataError` naming the file: a missing or corrupt IDX file (as `load`), or a
  ///   cache directory that cannot be written.
  public static func shard(
    split: Split, directory: String = defaultDirectory, cacheDirectory: String = defaultCacheDirectory
  ) throws -> ShardImageSource {
    let path = try shardPath(split: split, directory: directory, cacheDirectory: cacheDirectory)
    if let ready = try? openPacked(path) { return ready }
    try makeDirectories(cacheDirectory)
    let lockPath = path + ".lock"
    let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    if lock < 0 { throw DataError.io(path: lockPath, operation: "create", reason: String(cString: strerror(errno))) }
    defer { close(lock) }  // closing releases the lock
    while flock(lock, LOCK_EX) != 0 {
      if errno != EINTR { throw DataError.io(path: lockPath, operation: "flock", reason: String(cString: strerror(errno))) }
    }
    // Another process may have packed it while this one waited.
    if let ready = try? openPacked(path) { return ready }
    try RecordShardWriter.pack(try load(split: split, directory: directory), to: path)
    return try openPacked(path)
  }

  /// Opens a packed split, checking it holds 1×28×28 images with one label each.
  static func openPacked(_ path: String) throws -> ShardImageSource {
    let shard = try RecordShard(path: path)
    let h = shard.header
    guard h.channels == 1, h.height == 28, h.width == 28, h.labelCount == 1 else {
      throw DataError.badHeader(
        path: path, reason: "cached Fashion-MNIST shard holds \(h.channels)×\(h.height)×\(h.width) with \(h.labelCount) labels")
    }
    return try ShardImageSource(shard: shard)
  }

  /// `mkdir -p`.
  static func makeDirectories(_ path: String) throws {
    var prefix = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
      prefix += "/" + part
      if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
        throw DataError.io(path: prefix, operation: "create cache directory", reason: String(cString: strerror(errno)))
      }
    }
  }
}
