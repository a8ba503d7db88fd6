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
    /// The step after which the run re-measured its step time and re-decided `steps` (nil: not
    /// yet, or a run from before the re-plan existed).
    public var replannedAt: Int? = nil

    public init(seconds: Double, steps: Int, stepSeconds: Double, replannedAt: Int? = nil) {
        self.seconds = seconds; self.steps = steps; self.stepSeconds = stepSeconds; self.replannedAt = replannedAt
    }

    /// After how many steps of the run the step time is measured again, from the run's own steps:
    /// the calibration's 20 kept steps missed the step time of 10-minute CIFAR-10 runs by -10% to
    /// +16% (2026-12-06: 111.7 ms calibrated, 123 run; 144.9 calibrated, 126 run), which ends a run
    /// that much early or late. At the end of the warm-up (at least 200 steps) or at a quarter of
    /// the calibrated steps when that is sooner; the cosine has then hardly started.
    public func replanStep(warmupSteps: Int) -> Int { max(1, min(max(warmupSteps, 200), steps / 4)) }

    /// The re-decided budget after `stepsRun` steps at a measured `stepSeconds`, `elapsed` seconds
    /// after the budget started.
    public func replanned(atStep step: Int, elapsed: Double, stepSeconds measured: Double) -> TimeBudget {
        TimeBudget(seconds: seconds, steps: step + Self.steps(seconds: seconds, elapsed: elapsed, stepSeconds: measured),
                   stepSeconds: measured, replannedAt: step)
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
