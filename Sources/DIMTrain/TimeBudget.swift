import Foundation
import DIMCore

/// `train --time-budget`: a run's length in wall-clock time, turned into a number of steps on the
/// machine at hand, so that the warm-up and the cosine end when the budget does. Stored in the
/// checkpointed configuration once decided: a resumed run takes the same steps and the same
/// schedule (exact resume unchanged), whatever machine it resumes on.
public struct TimeBudget: Codable, Equatable {
    /// The budget asked for.
    public var seconds: Double
    /// The run's total steps, decided from the calibration.
    public var steps: Int
    /// The step time the decision used (a record; not compared on resume).
    public var stepSeconds: Double

    public init(seconds: Double, steps: Int, stepSeconds: Double) {
        self.seconds = seconds; self.steps = steps; self.stepSeconds = stepSeconds
    }

    /// Steps the calibration times; the median of the last half is kept: the first steps fault
    /// pages in and warm caches (with 24 steps and the last two thirds, a 12-minute CIFAR-10 run
    /// measured 119 ms/step where it then ran at 104, and ended after 86% of its budget).
    public static let calibrationSteps = 40
    /// What the steps may use of the time left: checkpoints, progress lines and the final
    /// checkpoint take the rest.
    public static let usableFraction = 0.97
    public static let reserveSeconds = 10.0

    /// The total steps for `seconds` when `elapsed` seconds are already gone and a step takes
    /// `stepSeconds` (at least one step).
    public static func steps(seconds: Double, elapsed: Double, stepSeconds: Double) -> Int {
        let left = (seconds - elapsed - reserveSeconds) * usableFraction
        return max(1, Int((left / max(stepSeconds, 1e-9)).rounded(.down)))
    }

    /// Times the configuration's training step on this machine (a throwaway trainer over the run's
    /// data: the run itself starts from its own initial state), all ranks together; returns the
    /// slowest rank's median step time, so every rank decides the same number.
    public static func calibrate(config: TrainConfig, options: Trainer.Options, comm: Communicator) throws -> Double {
        var o = options
        o.resume = nil
        o.quiet = true
        let trial = try Trainer(config: config, options: o, comm: comm)
        return try trial.measureStepSeconds(steps: calibrationSteps)
    }
}
