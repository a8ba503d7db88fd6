import DIMCore
import DIMIO
import Foundation

/// The embedded default dataset: MNIST's IDX files in the checkout's `datasets/mnist`, imported
/// into `data/mnist` beside them the first time a command needs it (rank 0 imports, the others wait).
enum EmbeddedData {
    static let relative = "datasets/mnist"

    /// The checkout root: the first directory, from the working directory or the executable's
    /// upwards, that holds datasets/mnist. An installed binary (launch/setup.sh puts it in
    /// PREFIX/bin) finds the checkout through the PREFIX/share/dim-dist link setup makes.
    static func checkoutRoot() -> String? {
        var starts = [FileManager.default.currentDirectoryPath]
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        let exeDir = (exe as NSString).deletingLastPathComponent
        starts += [exeDir, exeDir + "/../share/dim-dist"]
        for start in starts {
            var dir = (start as NSString).standardizingPath
            if !dir.hasPrefix("/") { dir = FileManager.default.currentDirectoryPath + "/" + dir }
            for _ in 0..<8 {
                let marker = dir + "/" + relative + "/train-images-idx3-ubyte.gz"
                if FileManager.default.fileExists(atPath: marker) { return dir }
                let parent = (dir as NSString).deletingLastPathComponent
                if parent == dir { break }
                dir = parent
            }
        }
        return nil
    }

    /// The sharded dataset directory, importing it if needed.
    static func directory(comm: Communicator) throws -> String {
        guard let root = checkoutRoot() else {
            throw DIMError("no --data given and the embedded dataset (\(relative)) was not found above the working "
                + "directory; pass --data DIR")
        }
        let out = root + "/data/mnist"
        try comm.rootActs("import of the embedded dataset") {
            guard (try? DatasetManifest.load(directory: out)) == nil else { return }
            print("importing the embedded MNIST (\(root)/\(relative)) into \(out) ...")
            try DatasetImporter.importDataset(name: "mnist", files: DatasetImporter.mnistFiles(root + "/" + relative),
                                              out: out, shards: 4, classNames: [], channelOrder: "gray",
                                              source: relative, log: { print($0) })
        }
        return out
    }
}
