import Dist
import Foundation
import Model

extension Pretrainer {
  /// One optimizer step on the current batch. Returns (loss, compute s, communication s).
  func trainStep(lr: Float) throws -> (Float, Double, Double) {
    let t0 = now()
    let arena = net.arena
    arena.zeroGrads()
    try loader.load(epoch: epoch, batch: batchInEpoch, into: input.data)
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
    return (value, (t1 - t0) + (now() - t2), t2 - t1)
  }

  /// One step for benchmarks (advances the position like training does).
  public func benchStep() throws -> (loss: Float, compute: Double, communication: Double) {
    if batchInEpoch >= sampler.batchesPerEpoch {
      epoch += 1
      batchInEpoch = 0
    }
    let r = try trainStep(lr: schedule.lr(at: step))
    step += 1
    batchInEpoch += 1
    return r
  }
}
