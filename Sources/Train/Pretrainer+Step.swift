import Dist
import Foundation
import Model

/// Where one training step's time went, in seconds.
public struct StepTiming {
  /// Reading and augmenting both views of the batch.
  public var data: Double
  /// Forward, loss and backward.
  public var compute: Double
  /// Gradient all-reduce.
  public var communication: Double
  /// Optimizer update.
  public var optimizer: Double
  public var loss: Float
  public var total: Double { data + compute + communication + optimizer }
}

extension Pretrainer {
  /// One optimizer step on the current batch. Returns (loss, compute s, communication s);
  /// compute includes data loading and the optimizer, as the training log reports it.
  func trainStep(lr: Float) throws -> (Float, Double, Double) {
    let t = try timedStep(lr: lr)
    return (t.loss, t.data + t.compute + t.optimizer, t.communication)
  }

  func timedStep(lr: Float) throws -> StepTiming {
    let t0 = now()
    let arena = net.arena
    arena.zeroGrads()
    try loader.load(epoch: epoch, batch: batchInEpoch, into: input.data)
    let tData = now()
    let x = Tensor(input.data, inputShape)
    let h = try net.encoder.forward(x, training: true)
    let z = try net.head.forward(h.reshaped(Shape(h.shape.n, h.shape.perSample)), training: true)
    let value = try loss.forward(z)
    guard value.isFinite else {
      throw TrainError("loss is \(value) at step \(step + 1); stopping (nothing written after step \(step))")
    }
    let dz = try loss.backward()
    let dh = try net.head.backward(dz)
    _ = try net.encoder.backward(dh.reshaped(h.shape))
    let t1 = now()
    // The loss is the mean over the *global* batch and each rank's backward yields its
    // share of that gradient, so the shares are summed (not averaged).
    try comm.allReduce(arena.grads, count: arena.parameterCount, op: .sum)
    let t2 = now()
    try optimizer.step(arena, lr: lr)
    return StepTiming(
      data: tData - t0, compute: t1 - tData, communication: t2 - t1, optimizer: now() - t2,
      loss: value)
  }

  /// One step for benchmarks (advances the position like training does).
  public func benchStep() throws -> (loss: Float, compute: Double, communication: Double) {
    let t = try benchStepTimed()
    return (t.loss, t.data + t.compute + t.optimizer, t.communication)
  }

  /// One step for benchmarks with its time split (advances the position like training does).
  public func benchStepTimed() throws -> StepTiming {
    if batchInEpoch >= sampler.batchesPerEpoch {
      epoch += 1
      batchInEpoch = 0
    }
    let t = try timedStep(lr: schedule.lr(at: step))
    step += 1
    batchInEpoch += 1
    return t
  }

  /// Counted FLOPs of one training step on this rank (forward ×3: DESIGN of `FLOPCounting`),
  /// or nil if the encoder does not count.
  public var stepFLOPs: Int? {
    guard let enc = net.encoder as? FLOPCounting else { return nil }
    let (fe, h) = enc.forwardFLOPs(inputShape)
    let (fh, _) = net.head.forwardFLOPs(Shape(h.n, h.perSample))
    return 3 * (fe + fh)
  }

  /// Bytes the step needs: parameters, gradients, BN buffers, optimizer state, and every
  /// layer-owned buffer (activations, saved values, input gradients, scratch) and the GEMM
  /// pack buffers. Meaningful after at least one step (buffers grow on first use).
  public var memoryEstimate: (parameters: Int, optimizer: Int, activations: Int) {
    let params = (2 * net.arena.parameterCount + net.arena.bufferCount) * 4
    let opt = optimizer.stateNames.count * optimizer.parameterCount * 4
    return (params, opt, Storage.trackedBytes + Gemm.workspaceFloats * 4)
  }
}
