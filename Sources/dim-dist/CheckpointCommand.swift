import ArgumentParser
import DIMCore
import DIMIO
import DIMTrain
import Foundation

struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Look inside checkpoints.",
        subcommands: [Inspect.self, Diff.self])

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a checkpoint's step, epoch, configuration, parameter count, loss and ranks.")
        @Argument(help: "A checkpoint file, or a run's checkpoints directory (its latest checkpoint).") var path: String
        @Flag(help: "Also load every tensor and check the checksums (exit status 1 when the file is damaged).")
        var verify = false

        func run() throws {
            let file = try RunDirectory.checkpoint(path)
            let f = try HDF5File(file)
            let info = try CheckpointFile.readInfo(f)
            let params = try f.members("params")
            var count = 0
            for name in params { count += try f.shape("params/\(name)").reduce(1, *) }
            print("\(file)")
            print("  format \(info.format), written \(info.created) by \(info.ranks) rank(s)")
            print("  step \(info.step) (epoch \(info.epoch), batch \(info.batchInEpoch) of the epoch), loss "
                + "\(fmt(info.loss, 5))")
            print("  global batch \(info.globalBatch), seed \(info.seed), Adam step \(info.adamStep)")
            print("  dataset fingerprint \(info.datasetFingerprint) (\(info.datasetCount) examples)")
            print("  \(params.count) parameter tensors, \(count) parameters")
            print("  config \(info.configJSON)")
            if verify {
                _ = try Evaluation.loadModel(checkpoint: file, untrained: false)
                print("  verified: complete, every tensor's checksum matches")
            }
        }
    }

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compare two checkpoints whole: every tensor group and every attribute.",
            discussion: """
            Groups: parameters, buffers, both models' Adam moments (the encoder's and the prior
            discriminator's); attributes: step, data position, seed, Adam counters, configuration,
            dataset (and, not compared: ranks, time, last loss). Exits 1 when a tensor differs by
            more than --tolerance (relative, per tensor) or any state attribute differs.
            """)
        @Argument(help: "Checkpoint file or run directory.") var a: String
        @Argument(help: "Checkpoint file or run directory.") var b: String
        @Option(help: "Relative tolerance per tensor (0 = must be bit-identical).") var tolerance = 0.0
        @Flag(help: ArgumentHelp(
            "Leave out the tensors whose gradient is zero under the first checkpoint's loss.",
            discussion: "Under infoNCE: local_mi.ln.bias and gdim.out.bias. They move by rounding "
                + "noise only, which Adam scales up to +-lr steps, so two equivalent runs differ there."))
        var ignoreZeroGradient = false
        @Option(help: ArgumentHelp(
            "Fraction of each tensor's entries, those that differ most, left out of its difference.",
            discussion: "For runs that should agree to rounding: at a few points the result depends on "
                + "rounding by a lot (a ReLU input within rounding of zero; a gradient entry at rounding "
                + "level, which Adam turns into a +-lr step), while an error moves most entries. "
                + "The difference over every entry is printed too."))
        var trim = 0.0

        func validate() throws {
            guard (0..<0.5).contains(trim) else { throw ValidationError("--trim must be in [0, 0.5), not \(trim)") }
        }

        func run() throws {
            let (fileA, fileB) = (try RunDirectory.checkpoint(a), try RunDirectory.checkpoint(b))
            let ignoring = ignoreZeroGradient ? try TrainConfig(json: try fieldString("config", a)).loss.zeroGradientParameters : []
            let c = try CheckpointComparison.compare(fileA, fileB, ignoring: ignoring, trim: trim)
            let width = CheckpointFile.tensorGroups.map(\.count).max()!
            for g in c.groups {
                var worst = "worst relative difference \(sci(g.worst)) (\(g.worstTensor))"
                if trim > 0 { worst += ", every entry \(sci(g.worstUntrimmed)) (\(g.worstUntrimmedTensor))" }
                let ignored = g.ignored.isEmpty ? "" : "; not compared: " + g.ignored.joined(separator: ", ")
                print("  \(padRight(g.name, width)) " + (g.identical ? "bit-identical" : worst) + ignored)
            }
            for f in c.fields where f.name != "config" {
                print("  \(f.name): \(f.a) vs \(f.b)" + (f.role == .record ? " (not compared)" : ""))
            }
            if c.fields.contains(where: { $0.name == "config" }) {
                let (x, y) = (try TrainConfig(json: try fieldString("config", a)),
                              try TrainConfig(json: try fieldString("config", b)))
                print("  config: " + y.differences(from: x).joined(separator: "; "))
            }
            if c.differ(tolerance: tolerance) {
                printError("checkpoint diff: the checkpoints differ (tensors beyond \(tolerance), or state attributes)")
                throw ExitCode(1)
            }
        }

        private func fieldString(_ name: String, _ path: String) throws -> String {
            try HDF5File(try RunDirectory.checkpoint(path)).stringAttribute(name)
        }
    }
}
