import ArgumentParser
import Data
import Dist
import Foundation
import Model
import Train

extension AmortisedTask: ExpressibleByArgument {}

extension Eval {
  struct Amortised: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "amortised",
      abstract: "Amortised invariance: learn each task's invariance vector v jointly with a linear head; compare with v fixed at every corner.",
      discussion: """
        For an `amortised` checkpoint and each --task: v = σ(u), u = 0 at the start (v = 0.5), learned by Adam
        jointly with a linear head (SGD) on the train split through the frozen conditioned encoder (pooled
        features); prints the learned v, the joint head's test accuracy, a linear probe (`eval linear`'s) at the
        learned v, and the same probe at every corner of [0, 1]^k. Any other checkpoint (e.g. plain SimCLR) gets
        the probe only, as the baseline. Image tasks (--task): class, coarse (clothing/footwear/bag), rotation
        (0/90/180/270, keyed per sample), brightness (darkened to 0.7 or not, keyed per sample). Audio tasks are
        the corpus's label slots (--labels; default word language voice gender), v = (spectral, temporal).
        Examples:
        parallax eval amortised --checkpoint runs/amortised/latest --task class rotation --limit 20000
        parallax eval amortised --checkpoint runs/amortised-digits/latest --labels word voice
        """)
    @OptionGroup var common: Common
    @Option(
      parsing: .upToNextOption,
      help: "Image tasks: \(AmortisedTask.allCases.map(\.rawValue).joined(separator: ", ")) (default: class).")
    var task: [AmortisedTask] = []
    @Option(help: "Epochs of the joint fit of v and the head.") var epochs: Int = 3
    @Option(help: "Adam learning rate of u (v = σ(u)).") var invarianceLR: Float = 0.05
    @Option(help: "SGD learning rate of the joint head.") var headLR: Float = 0.1
    @Option(help: "Logistic-regression epochs of the probes.") var probeEpochs: Int = 30
    @Option(help: "Seed of the per-sample task draws and the fits.") var taskSeed: UInt64 = 0
    @Flag(inversion: .prefixedNo, help: "Probe every corner of [0, 1]^k.") var corners = true

    func validate() throws {
      guard epochs >= 1 else { throw ValidationError("--epochs must be ≥ 1 (got \(epochs))") }
      guard probeEpochs >= 1 else { throw ValidationError("--probe-epochs must be ≥ 1 (got \(probeEpochs))") }
      guard invarianceLR > 0, invarianceLR.isFinite else { throw ValidationError("--invariance-lr must be positive") }
      guard headLR > 0, headLR.isFinite else { throw ValidationError("--head-lr must be positive") }
    }

    func format(_ v: [Float]) -> String { "(" + v.map { String(format: "%.3f", $0) }.joined(separator: ", ") + ")" }

    func run() throws {
      try withWorld { comm, console in
        Runtime.configureThreads(requested: common.threads, localSize: comm.localSize)
        let (config, net, data) = try common.load()
        let trainBase = try data.evaluation(.train)
        let testBase = try data.evaluation(.test)
        // (task name, train, test): the image tasks, or the audio corpus's label slots.
        var tasks: [(String, EvalSource, EvalSource)] = []
        if config.isAudio {
          guard task.isEmpty else {
            throw ValidationError(
              "eval amortised: --task is for image checkpoints; \(common.checkpoint) is audio, whose tasks are label slots (--labels)")
          }
          let slots = try ProbeReport.slots(
            trainBase.labelSlots, requested: common.labels, preferred: ["word", "language", "voice", "gender"])
          for s in slots {
            tasks.append((
              s.name, SlotEvalSource(trainBase, slot: s.slot, limit: common.sampleLimit),
              SlotEvalSource(testBase, slot: s.slot, limit: common.sampleLimit)))
          }
        } else {
          let mean = config.data == .fashionMNIST ? FashionMNIST.mean : SimCLRAugment.Config().mean
          let std = config.data == .fashionMNIST ? FashionMNIST.std : SimCLRAugment.Config().std
          for t in task.isEmpty ? [.class] : task {
            tasks.append((
              t.rawValue,
              try TaskEvalSource(trainBase, task: t, seed: taskSeed, split: 0, limit: common.sampleLimit, mean: mean, std: std),
              try TaskEvalSource(testBase, task: t, seed: taskSeed, split: 1, limit: common.sampleLimit, mean: mean, std: std)))
          }
        }
        let conditioned = net.encoder as? ConditionedConv4
        let name = "\(config.method) \(config.model)"
        if conditioned != nil {
          console.say("\(name): v = (\(AmortisedMethod.groupNames(config).joined(separator: ", ")))")
        }
        for (taskName, train, test) in tasks {
          let classes = train.labelSlots[0].classCount
          let counts = "\(train.count) train / \(test.count) test"
          guard let conditioned else {
            let t0 = now()
            let acc = try AmortisedEval.probe(
              encoder: net.encoder, v: nil, train: train, test: test, classes: classes, epochs: probeEpochs, comm: comm)
            if let acc {
              console.say(String(format: "amortised %@ task %@: probe %.2f%% (%@, %.1f s)", name, taskName, acc * 100, counts, now() - t0))
            }
            continue
          }
          var settings = AmortisedEval.Settings()
          settings.epochs = epochs
          settings.invarianceLR = invarianceLR
          settings.headLR = headLR
          settings.seed = taskSeed
          let learned = try AmortisedEval.learn(
            encoder: conditioned, arena: net.arena, train: train, test: test, classes: classes, settings: settings)
          console.say(String(
            format: "amortised %@ task %@: learned v %@ (per epoch %@), joint head %.2f%% (%@, %.1f s)", name, taskName,
            format(learned.v), learned.trajectory.map(format).joined(separator: " → "), learned.jointAccuracy * 100, counts,
            learned.seconds))
          var t0 = now()
          if let acc = try AmortisedEval.probe(
            encoder: conditioned, v: learned.v, train: train, test: test, classes: classes, epochs: probeEpochs, comm: comm)
          {
            console.say(String(format: "amortised %@ task %@: probe at learned v %@: %.2f%% (%.1f s)", name, taskName, format(learned.v), acc * 100, now() - t0))
          }
          guard corners else { continue }
          var best: (Double, [Float])?
          for c in AmortisedEval.corners(conditioned.invarianceDim) {
            t0 = now()
            if let acc = try AmortisedEval.probe(
              encoder: conditioned, v: c, train: train, test: test, classes: classes, epochs: probeEpochs, comm: comm)
            {
              console.say(String(format: "amortised %@ task %@: probe at corner %@: %.2f%% (%.1f s)", name, taskName, format(c), acc * 100, now() - t0))
              if best == nil || acc > best!.0 { best = (acc, c) }
            }
          }
          if let best {
            console.say(String(format: "amortised %@ task %@: best corner %@: %.2f%%", name, taskName, format(best.1), best.0 * 100))
          }
        }
      }
    }
  }
}
