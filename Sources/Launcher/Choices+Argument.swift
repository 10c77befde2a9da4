import ArgumentParser
import Dist
import Model
import Train

// The configuration's choices as flag values of the other subcommands (`bench step --model`,
// …): an unknown name is swift-argument-parser's error listing the choices.
extension EncoderKind: ExpressibleByArgument {}
extension OptimizerKind: ExpressibleByArgument {}
extension Method: ExpressibleByArgument {}
extension Dataset: ExpressibleByArgument {}
extension FrontEnd: ExpressibleByArgument {}
extension WireType: ExpressibleByArgument {}
extension AdapterMode: ExpressibleByArgument {}
extension GemmPrecision: ExpressibleByArgument {}
