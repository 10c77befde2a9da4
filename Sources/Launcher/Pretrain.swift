import ArgumentParser
import Data
import Dist
import Foundation
import Model
import Train

struct Pretrain: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Pretrain an encoder with a self-supervised method.",
    discussion: "Flags override the YAML file given with --config; the resolved configuration is written to RUN_DIR/config.yaml.")

  @Option(help: "YAML configuration file (flags override it).") var config: String?
  @Option(help: "Method: \(PretrainConfig.methods.joined(separator: ", ")).") var method: String?
  @Option(help: "Encoder: \(PretrainConfig.models.joined(separator: ", ")).") var model: String?
  @Option(help: "Dataset: \(PretrainConfig.datasets.joined(separator: ", ")).") var data: String?
  @Option(help: "Directory of the Fashion-MNIST IDX files; for audio a corpus folder with manifest.csv (`parallax data spoken-digits --out DIR`), a CSV manifest or an audio shard (`parallax data pack`).") var dataDir: String?
  @Option(help: "Audio: samples per view (0: 59049 for raw samplecnn, one second for logmel).") var audioLength: Int?
  @Option(help: "Audio: sample rate to decode to, Hz.") var sampleRate: Int?
  @Option(help: "Audio front end: raw (samplecnn) or logmel (resnet18).") var frontEnd: String?
  @Option(name: .customLong("n-fft"), help: "Log-mel FFT size (a power of two).") var nFFT: Int?
  @Option(help: "Log-mel hop, samples.") var hop: Int?
  @Option(name: .customLong("n-mels"), help: "Log-mel bands.") var nMels: Int?
  @Option(help: "Audio augmentation set: clmr, mtslvr or none.") var augmentPreset: String?
  @Option(help: "Global batch (all ranks together); must divide by the rank count.") var globalBatch: Int?
  @Option(help: "Epochs over the training set.") var epochs: Int?
  @Option(help: "Stop after this many optimizer steps (0: all epochs).") var maxSteps: Int?
  @Option(help: "Optimizer: lars or sgd.") var optimizer: String?
  @Option(help: "Base learning rate before batch scaling.") var baseLR: Float?
  @Option(help: "Learning-rate scaling with the global batch: none, linear (B/256) or sqrt.") var lrScaling: String?
  @Option(help: "Momentum.") var momentum: Float?
  @Option(help: "Weight decay (not applied to biases and BN under LARS).") var weightDecay: Float?
  @Option(help: "Linear warm-up steps before the cosine decay.") var warmupSteps: Int?
  @Option(help: "NT-Xent temperature.") var temperature: Float?
  @Option(help: "Augmentation strength in [0, 1].") var augmentStrength: Float?
  @Option(help: "Sync BatchNorm over all ranks: true or false.") var syncBN: Bool?
  @Option(help: "Random seed (data order, augmentation, initialisation).") var seed: UInt64?
  @Option(help: "Run directory for logs and checkpoints.") var runDir: String?
  @Option(help: "Checkpoint every N steps (0: at the end only).") var checkpointEvery: Int?
  @Option(help: "Checkpoints to keep.") var keep: Int?
  @Option(help: "Log every N steps.") var logEvery: Int?
  @Option(help: "Gradient bucket cap in MiB (0: one fused all-reduce after backward).") var bucketMB: Double?
  @Option(help: "Micro-batches per optimizer step (gradients sync on the last only).") var accumulate: Int?
  @Option(name: .customLong("grad-dtype"), help: "Gradient element type on the wire: fp32, bf16 or fp16.") var gradDType: String?
  @Option(help: "MPI progress during backward: poll (MPI_Test from backward hooks) or thread.") var syncProgress: String?
  @Option(help: "Write a Chrome trace-event timeline (JSON, all ranks) to this file.") var timeline: String?
  @Option(help: "Abort the job when a rank waits longer than this in one phase of a step (s; 0: off).") var stallTimeout: Double?
  @Option(help: "Compare parameter checksums across ranks every N steps (0: never).") var checkEvery: Int?
  @Option(help: "MT-SLVR: weight of the predictive loss (total = contrastive + w·predictive).") var predWeight: Float?
  @Option(help: "MT-SLVR adapters: \(PretrainConfig.adapters.joined(separator: ", ")).") var adapter: String?
  @Option(help: "MT-SLVR contrastive branch: simclr or simsiam.") var contrastive: String?
  @Option(help: "SimSiam predictor bottleneck width (0: projection-dim / 4).") var predictorDim: Int?
  @Option(help: "Image augmentation choice: auto, simclr (each with its probability) or mtslvr (k ~ U{1..n} per sample, shared by both views).") var augmentSampling: String?
  @Option(help: .hidden) var debugStallRank: Int = -1
  @Option(help: .hidden) var debugStallStep: Int = 2
  @Option(help: .hidden) var debugStallSeconds: Double = 0
  @Option(help: .hidden) var debugPerturbRank: Int = -1
  @Option(help: .hidden) var debugPerturbStep: Int = 1
  @Option(help: .hidden) var debugPerturbParam: String = ""
  @Option(help: "OpenBLAS threads per rank (default: node cores / ranks on the node).") var threads: Int = 0
  @Option(help: "Resume from a checkpoint directory, or 'latest' in the run directory (falls back to the previous good checkpoint if the newest is damaged).") var resume: String?
  @Option(help: "Stop cleanly with a checkpoint after this many steps, as a pre-empted job would (the schedule still spans the whole run; continue with --resume).") var stopAfter: Int?
  @Flag(help: "After pretraining, run linear probes: trained encoder, random encoder, raw pixels (audio: word and language accuracy of the trained and a random encoder).") var probe = false
  @Option(help: "Linear-probe epochs (with --probe).") var probeEpochs: Int = 30

  func resolved() throws -> PretrainConfig {
    var c = try config.map { try PretrainConfig.load(yamlPath: $0) } ?? PretrainConfig()
    if let v = method { c.method = v }
    if let v = model { c.model = v }
    if let v = data { c.data = v }
    if let v = dataDir { c.dataDir = v }
    if let v = audioLength { c.audioLength = v }
    if let v = sampleRate { c.sampleRate = v }
    if let v = frontEnd { c.frontEnd = v }
    if let v = nFFT { c.nFFT = v }
    if let v = hop { c.hop = v }
    if let v = nMels { c.nMels = v }
    if let v = augmentPreset { c.augmentPreset = v }
    if let v = globalBatch { c.globalBatch = v }
    if let v = epochs { c.epochs = v }
    if let v = maxSteps { c.maxSteps = v }
    if let v = optimizer { c.optimizer = v }
    if let v = baseLR { c.baseLR = v }
    if let v = lrScaling { c.lrScaling = v }
    if let v = momentum { c.momentum = v }
    if let v = weightDecay { c.weightDecay = v }
    if let v = warmupSteps { c.warmupSteps = v }
    if let v = temperature { c.temperature = v }
    if let v = augmentStrength { c.augmentStrength = v }
    if let v = syncBN { c.syncBN = v }
    if let v = seed { c.seed = v }
    if let v = runDir { c.runDir = v }
    if let v = checkpointEvery { c.checkpointEvery = v }
    if let v = keep { c.keep = v }
    if let v = logEvery { c.logEvery = v }
    if let v = bucketMB { c.bucketMB = v }
    if let v = accumulate { c.accumulate = v }
    if let v = gradDType { c.gradDType = v }
    if let v = syncProgress { c.syncProgress = v }
    if let v = timeline { c.timeline = v }
    if let v = stallTimeout { c.stallTimeout = v }
    if let v = checkEvery { c.checkEvery = v }
    if let v = predWeight { c.predWeight = v }
    if let v = adapter { c.adapter = v }
    if let v = contrastive { c.contrastive = v }
    if let v = predictorDim { c.predictorDim = v }
    if let v = augmentSampling { c.augmentSampling = v }
    return c
  }

  func validate() throws {
    do { try resolved().validate() } catch let e as ConfigError {
      throw ValidationError(e.message)
    }
    if threads < 0 { throw ValidationError("--threads must be ≥ 0") }
    if let s = stopAfter, s < 1 { throw ValidationError("--stop-after must be ≥ 1") }
  }

  func run() throws {
    let c = try resolved()
    // The watchdog and the communication thread call MPI from their own threads.
    if c.stallTimeout > 0 || c.syncProgress == "thread" {
      _ = try? Communicator.world(threadLevel: .multiple)
    }
    try withWorld { comm, console in
      try RankLog.open(runDir: c.runDir, rank: comm.rank)
      let threads = Runtime.configureThreads(requested: threads, localSize: comm.localSize)
      RankLog.note(
        "rank \(comm.rank) of \(comm.size) · local rank \(comm.localRank) of \(comm.localSize) · \(comm.nodeCount) node(s) · host \(comm.processorName) · pid \(getpid()) · \(threads) thread(s) · rank seed \(Runtime.rankSeed(c.seed, rank: comm.rank))")
      // The checkpoint is found and checked before anything is built or written.
      let source = try resume.map { try ResumeSource.find($0, config: c, comm: comm) }
      for note in source?.notes ?? [] {
        console.say("resume: \(note)")
        RankLog.note("resume: \(note)")
      }
      let trainer = try Pretrainer(config: c, comm: comm, console: console)
      var faults = DebugFaults()
      faults.stallRank = debugStallRank
      faults.stallStep = debugStallStep
      faults.stallSeconds = debugStallSeconds
      faults.perturbRank = debugPerturbRank
      faults.perturbStep = debugPerturbStep
      faults.perturbName = debugPerturbParam
      trainer.setDebugFaults(faults)
      trainer.stopAfterStep = stopAfter
      if let source {
        try trainer.resume(source)
        console.say("resumed from \(source.dir) at step \(trainer.step)")
        RankLog.note("resumed from \(source.dir) at step \(trainer.step)")
      }
      console.say(
        "pretrain \(c.method) · \(c.model) · \(c.data) · \(comm.size) rank(s) on \(comm.nodeCount) node(s) × \(threads) thread(s) · global batch \(c.globalBatch) · \(trainer.totalSteps) steps · peak lr \(trainer.peakLR) · \(trainer.method.arena.parameterCount) parameters")
      let s = try trainer.run()
      try trainer.writeTimeline()
      trainer.stopSyncThreads()
      if let reason = s.stopReason {
        let message = "stopped by \(reason) after step \(trainer.step) of \(trainer.totalSteps): checkpoint \(s.checkpoint ?? "-"); continue with --resume latest"
        console.say(message)
        RankLog.note(message)
        return
      }
      console.say(
        String(
          format: "done: %d steps in %.1f s (%.1f samples/s), final loss %.4f; checkpoint %@",
          s.steps, s.seconds, s.samplesPerSecond, s.finalLoss, s.checkpoint ?? "-"))
      if probe {
        try ProbeReport.run(
          config: c, trained: trainer.method.encoder, comm: comm, console: console, epochs: probeEpochs,
          pretrainSeconds: s.seconds)
      }
    }
  }
}
