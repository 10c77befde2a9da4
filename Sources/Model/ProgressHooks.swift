/// A model (or part of one) that reports its progress through forward and backward, so a
/// data-parallel trainer can start reducing gradients that are already final while backward
/// continues (PyTorch DDP's autograd hooks, Horovod's per-tensor callbacks), and a timeline
/// can show where the time goes.
///
/// Parameters are registered in forward order, so backward finishes arena ranges from high
/// offsets to low: after a layer or block is done, every gradient at or above its first
/// offset is final (until the next step's `zeroGrads`).
public protocol ProgressHooks: AnyObject {
  /// Called after each layer or block finishes backward with the lowest arena offset whose
  /// gradients are now final (this unit's and every later unit's).
  var onBackward: ((_ lowestFinishedOffset: Int) -> Void)? { get set }
  /// Called after each layer or block finishes forward with the unit's first arena offset.
  var onForward: ((_ firstOffset: Int) -> Void)? { get set }
}
