import ArgumentParser
import DIMCore
import DIMIO
import DIMTrain
import Foundation

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the frozen encoder's features (and labels) of a dataset split to HDF5.")
    @Option(help: "Checkpoint file or run directory.") var checkpoint: String
    @Option(help: "Dataset directory (default: the embedded MNIST).") var data: String?
    @Option(help: "Split to encode.") var split = "test"
    @Option(help: "Feature sets, comma-separated: conv, fc, y.", transform: parseFeatures)
    var features: [FeatureKind] = FeatureKind.allCases
    @Option(help: "Output HDF5 file: features/<set> [N, dim] float32, labels [N] int64.") var out: String

    func run() throws {
        let comm = try makeCommunicator()
        let path = try RunDirectory.checkpoint(checkpoint)
        let dir = try data ?? EmbeddedData.directory(comm: comm)
        let kinds = features
        let (model, _, info) = try Evaluation.loadModel(checkpoint: path, untrained: false)
        let s = try ShardedSplit(directory: dir, split: split)
        let sets = try encodeSplit(model: model, data: s, kinds: kinds, comm: comm)
        guard comm.isRoot else { return }
        let f = try HDF5File(out, mode: .create)
        for (k, set) in sets { try f.write("features/\(k.rawValue)", set.values, shape: [set.count, set.dim]) }
        try f.write("labels", sets.values.first!.labels.map { Int64($0) }, shape: [s.count])
        try f.setAttribute("checkpoint", path)
        try f.setAttribute("step", Int64(info.step))
        try f.setAttribute("split", split)
        print("encode: \(s.count) \(split) images of \(dir) -> \(out) "
            + "(\(sets.keys.map { "\($0.rawValue) \(sets[$0]!.dim)-d" }.sorted().joined(separator: ", ")))")
    }
}
