import ArgumentParser
import DIMCore
import DIMIO
import Foundation

struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Look inside checkpoints.",
        subcommands: [Inspect.self])

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a checkpoint's step, epoch, configuration, parameter count, loss and ranks.")
        @Argument(help: "A checkpoint file, or a run's checkpoints directory (its latest checkpoint).") var path: String

        func run() throws {
            var file = path
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
                guard let latest = CheckpointDirectory(path: path).latest() else { throw DIMError("\(path): no 'latest' checkpoint pointer") }
                file = latest
            }
            let f = try HDF5File(file)
            let info = try CheckpointFile.readInfo(f)
            let params = try f.members("params")
            var count = 0
            for name in params { count += try f.shape("params/\(name)").reduce(1, *) }
            print("\(file)")
            print("  format \(info.format), written \(info.created) by \(info.ranks) rank(s)")
            print("  step \(info.step) (epoch \(info.epoch), batch \(info.batchInEpoch) of the epoch), loss \(fmt(info.loss, 5))")
            print("  global batch \(info.globalBatch), seed \(info.seed), Adam step \(info.adamStep)")
            print("  dataset fingerprint \(info.datasetFingerprint) (\(info.datasetCount) examples)")
            print("  \(params.count) parameter tensors, \(count) parameters")
            print("  config \(info.configJSON)")
        }
    }
}
