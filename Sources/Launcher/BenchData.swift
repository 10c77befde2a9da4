import ArgumentParser
import Data
import Dist
import Foundation
import Model
import Train

/// `parallax bench data`: data throughput per core against what a training step consumes —
/// `--images SET` for a packed image set (decode-free: augment from record shards, and the
/// read bandwidth of pread and MPI-IO under `mpirun`), `--audio …` for
/// `parallax data bench-audio`.
struct BenchData: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "data",
    abstract: "Data throughput per core vs. what training consumes (--images SET, or --audio).",
    discussion: """
      Images: mpirun -np 2 parallax bench data --images data/photos --batch 256 --batches 8
        prints, per rank, augment samples/s on one core; the aggregate read bandwidth of each
        rank reading its part of every batch with pread, MPI-IO collective and MPI-IO
        independent (after one untimed batch that opens the files; a set already in the page
        cache measures the cache, not the disk); and the samples/s a conv4 training step
        consumes at that batch.
      Audio: parallax bench data --audio --manifest data/digits/manifest.csv --augment clmr
      """)
  @Flag(help: "Audio: decode + augment throughput vs. a samplecnn step (options as `parallax data bench-audio`).") var audio = false
  @Option(help: "Images: a packed set (`parallax data pack --images`).") var images: String?
  @Option(help: "Images: global batch (samples).") var batch: Int = 256
  @Option(help: "Images: batches to time.") var batches: Int = 8
  @Option(help: "Images: encoder of the step-consumption figure.") var model: EncoderKind = .conv4
  @Argument(parsing: .captureForPassthrough, help: "Options of `parallax data bench-audio`.") var options: [String] = []

  func validate() throws {
    guard audio != (images != nil) else { throw ValidationError("give --images SET or --audio") }
    guard batch > 0, batches > 0 else { throw ValidationError("--batch and --batches must be positive") }
  }

  func run() throws {
    guard let images else {
      var bench = try AudioBenchCommand.parse(options)
      return try bench.run()
    }
    try withWorld { comm, console in
      Runtime.configureThreads(requested: 1, localSize: comm.localSize)
      let probe = try ImageSetSource(directory: images)
      let count = probe.count
      guard batch % comm.size == 0, batch <= count else {
        throw ValidationError("--batch \(batch) must divide by \(comm.size) ranks and be ≤ the set's \(count) images")
      }
      func sampler() throws -> DistributedSampler {
        try DistributedSampler(count: count, globalBatch: batch, rank: comm.rank, worldSize: comm.size, seed: 1)
      }
      let perEpoch = try sampler().batchesPerEpoch

      // 1. Augmentation from memory-mapped-by-the-kernel records, one core per rank.
      let set = try ImageSetSource(directory: images)
      var augment = SimCLRAugment.Config(strength: 1)
      augment.rgbMean = set.channels == 3 ? set.info.mean : augment.rgbMean
      augment.rgbStd = set.channels == 3 ? set.info.std : augment.rgbStd
      let loader = try ContrastiveBatchLoader(source: set, sampler: try sampler(), augment: SimCLRAugment(config: augment), seed: 1)
      let x = Storage(loader.floatsPerBatch)
      let t = Storage(loader.rows * loader.transformCount)
      try loader.load(epoch: 0, batch: 0, into: x.data, transforms: t.data)
      let t0 = now()
      for b in 0..<batches { try loader.load(epoch: 0, batch: b % perEpoch, into: x.data, transforms: t.data) }
      let augmentRate = Double(batches * loader.rows / 2) / (now() - t0)
      let rates = try comm.allReduce(augmentRate, op: .min)
      console.say(String(
        format: "bench data %@: %d images of %d×%d×%d, global batch %d on %d rank(s): read + augment (2 views) %.0f samples/s per core (slowest rank)",
        images, count, set.channels, set.height, set.width, batch, comm.size, rates))

      // 2. Read bandwidth: each rank reads its part of `batches` batches.
      let bytes = Storage(max(1, loader.rows / 2 * set.pixelsPerImage / 4 + 1))
      for (name, reader) in [
        ("pread", nil as ShardReader?), ("MPI-IO collective", MPIShardReader(communicator: comm, mode: .collective)),
        ("MPI-IO independent", MPIShardReader(communicator: comm, mode: .independent)),
      ] {
        let source = try ImageSetSource(directory: images)
        let s = try sampler()
        func read(_ b: Int) throws {
          let indices = try s.localIndices(epoch: 1, batch: b % perEpoch)
          try bytes.data.withMemoryRebound(to: UInt8.self, capacity: indices.count * source.pixelsPerImage) {
            try source.pixels(batch: indices, into: $0, reader: reader)
          }
        }
        try read(batches)  // opens the files (collectively under MPI-IO), untimed
        let before = source.bytesRead + ((reader as? MPIShardReader)?.bytesRead ?? 0)
        try comm.barrier()
        let r0 = now()
        for b in 0..<batches { try read(b) }
        let mine = now() - r0
        let slowest = try comm.allReduce(mine, op: .max)
        let total = try comm.allReduce(
          Int64(source.bytesRead + ((reader as? MPIShardReader)?.bytesRead ?? 0) - before), op: .sum)
        (reader as? MPIShardReader)?.close()
        console.say(String(
          format: "  %@: %.1f MB/s aggregate (%.2f MB in %.3f s, slowest rank)", name, Double(total) / slowest / 1e6,
          Double(total) / 1e6, slowest))
      }

      // 3. What a training step consumes.
      var c = PretrainConfig()
      c.data = .images
      c.dataDir = images
      c.model = model
      c.globalBatch = batch
      c.optimizer = .sgd
      c.maxSteps = 4
      c.runDir = NSTemporaryDirectory() + "parallax-bench-data-\(getpid())"
      let trainer = try Pretrainer(config: c, comm: comm, console: console)
      var compute: [Double] = []
      for i in 0..<4 {
        let st = try trainer.benchStepTimed()
        if i > 0 { compute.append(st.compute + st.communication + st.optimizer) }
      }
      trainer.stopSyncThreads()
      trainer.closeData()
      let step = compute.sorted()[compute.count / 2]
      console.say(String(
        format: "  a %@ step without its data consumes %.0f samples/s (%.1f ms for global batch %d on %d rank(s)); one data core per rank supplies %.1f× that",
        model.rawValue, Double(batch) / step, step * 1000, batch, comm.size, rates * Double(comm.size) / (Double(batch) / step)))
    }
  }
}
