import Foundation

/// A decaying learning rate, as a pure function of the step, so a resumed run takes exactly the
/// steps an uninterrupted one would (the schedule is part of the checkpointed configuration). A
/// run without one trains at a constant rate, the paper's setting.
///
/// A linear warm-up over `warmupSteps` from peak/warmupSteps to the peak, then half a cosine from
/// the peak down to `finalFraction` x peak at `decaySteps`, flat after that. A short budget gains
/// from it: large steps while the representation forms, small ones at the end, where a constant
/// rate only adds noise to the weights the probe sees. (Checkpoints written before 2026-12-05 also
/// stored "kind" and "peak"; decoding ignores them, the peak being the run's learning rate.)
public struct LearningRateSchedule: Codable, Equatable, CustomStringConvertible {
    public var warmupSteps: Int
    public var decaySteps: Int
    public var finalFraction: Float

    public init(warmupSteps: Int = 0, decaySteps: Int, finalFraction: Float = 0) {
        self.warmupSteps = warmupSteps; self.decaySteps = decaySteps; self.finalFraction = finalFraction
    }

    /// The rate for the update that completes step `step + 1` (steps count from 0).
    public func rate(step: Int, peak: Float) -> Float {
        if step < warmupSteps { return peak * Float(step + 1) / Float(warmupSteps) }
        let span = max(decaySteps - warmupSteps, 1)
        let t = min(Double(step - warmupSteps) / Double(span), 1)
        let fraction = Double(finalFraction) + (1 - Double(finalFraction)) * 0.5 * (1 + cos(Double.pi * t))
        return Float(Double(peak) * fraction)
    }

    public var description: String {
        "cosine, warm-up \(warmupSteps), to \(finalFraction)x at step \(decaySteps)"
    }
}
