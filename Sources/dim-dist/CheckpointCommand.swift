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
            let file = try CheckpointDirectory.resolve(path)
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
            abstract: "Compare the tensors of two checkpoints (worst relative difference per group).",
            discussion: "Exits non-zero when a parameter tensor differs by more than --tolerance (relative, per tensor).")
        @Argument(help: "Checkpoint file or run directory.") var a: String
        @Argument(help: "Checkpoint file or run directory.") var b: String
        @Option(help: "Relative tolerance per parameter tensor (0 = must be bit-identical).") var tolerance = 0.0

        func run() throws {
            let groups = try CheckpointComparison.compare(try CheckpointDirectory.resolve(a),
                                                          try CheckpointDirectory.resolve(b))
            for g in groups {
                print("  \(padRight(g.name, 8)) "
                      + (g.identical ? "bit-identical" : "worst relative difference \(sci(g.worst)) (\(g.worstTensor))"))
            }
            let failed = groups.contains { $0.name == "params" && $0.worst > tolerance }
            if failed { printError("checkpoint diff: parameters differ by more than \(tolerance)"); throw ExitCode(1) }
        }
    }
}
