import Foundation

/// The learning rate as a pure function of the step, so a resumed run takes exactly the steps an
/// uninterrupted one would (the schedule is part of the checkpointed configuration).
///
/// - `constant`: the paper's setting (Adam at a fixed rate).
/// - `cosine`: a linear warm-up over `warmupSteps` from peak/warmupSteps to the peak, then half a
///   cosine from the peak down to `finalFraction` x peak at `decaySteps`, flat after that. A short
///   budget gains from it: large steps while the representation forms, small ones at the end,
///   where a constant rate only adds noise to the weights the probe sees.
public struct LearningRateSchedule: Codable, Equatable, CustomStringConvertible {
    public enum Kind: String, Codable, CaseIterable { case constant, cosine }
    public var kind: Kind
    public var peak: Float
    public var warmupSteps: Int
    public var decaySteps: Int
    public var finalFraction: Float

    public init(kind: Kind = .constant, peak: Float, warmupSteps: Int = 0, decaySteps: Int = 0,
                finalFraction: Float = 0) {
        self.kind = kind; self.peak = peak; self.warmupSteps = warmupSteps
        self.decaySteps = decaySteps; self.finalFraction = finalFraction
    }

    /// The rate for the update that completes step `step + 1` (steps count from 0).
    public func rate(step: Int) -> Float {
        switch kind {
        case .constant:
            return peak
        case .cosine:
            if step < warmupSteps { return peak * Float(step + 1) / Float(warmupSteps) }
            let span = max(decaySteps - warmupSteps, 1)
            let t = min(Double(step - warmupSteps) / Double(span), 1)
            let fraction = Double(finalFraction) + (1 - Double(finalFraction)) * 0.5 * (1 + cos(Double.pi * t))
            return Float(Double(peak) * fraction)
        }
    }

    public var description: String {
        switch kind {
        case .constant: return "constant \(peak)"
        case .cosine: return "cosine \(peak), warm-up \(warmupSteps), to \(finalFraction)x at step \(decaySteps)"
        }
    }
}
