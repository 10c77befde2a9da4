/// A learning rate as a function of the optimizer step (counted from 0).
public protocol LRSchedule {
  func lr(at step: Int) -> Float
}
