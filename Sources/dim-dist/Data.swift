import ArgumentParser
import DIMCore
import DIMIO
import Foundation

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Create and inspect sharded HDF5 datasets.",
        subcommands: [Import.self, Synth.self, Inspect.self])

    enum Format: String, ExpressibleByArgument, CaseIterable { case mnist, cifar10, idx, folder }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a sharded dataset with train and test splits from IDX files or folders of JPEG/PNG images.",
            discussion: """
            --format mnist and cifar10 know the file names of ../shared/datasets/{mnist,cifar10-jpeg}
            (the CIFAR copy's HWC images become CHW; whatever train parts exist are used).
            --format idx takes explicit --train-images/--train-labels/--test-images/--test-labels lists.
            --format folder takes --source DIR holding train/ and optionally test/, each either
            <class>/<image> sub-folders (torchvision's ImageFolder; labels from the sorted folder names)
            or images directly (unlabelled: train works, eval refuses). JPEG and PNG files are decoded,
            converted to --channels, resized so the shorter side is --size and centre-cropped. Under
            mpirun each rank decodes a share of the files; the dataset is the same for any number of ranks.
            """)
        @Option(help: "mnist, cifar10, idx or folder.") var format: Format
        @Option(help: "Directory with the IDX files (mnist, cifar10) or the train/ and test/ folders (folder).")
        var source: String?
        @Option(help: "folder: output image size (shorter side resized to it, then centre-cropped).") var size = 32
        @Option(help: "folder: 3 (RGB) or 1 (grey); images are converted.") var channels = 3
        @Flag(help: "folder: leave out files that are not readable JPEG or PNG (counted in the manifest) instead of stopping.")
        var skipBad = false
        @Option(help: "Output dataset directory.") var out: String
        @Option(help: "Shards of the train split (the test split gets half as many).") var shards = 4
        @Option(help: "Train image files (idx format), in order.") var trainImages: [String] = []
        @Option(help: "Train label files, one per image file.") var trainLabels: [String] = []
        @Option(help: "Test image files.") var testImages: [String] = []
        @Option(help: "Test label files.") var testLabels: [String] = []

        func run() throws {
            if format == .folder { return try importFolder() }
            let files: DatasetImporter.Files
            var classes: [String] = [], order = "gray", name = format.rawValue
            switch format {
            case .mnist:
                guard let s = source else { throw ValidationError("--source DIR is needed for --format mnist") }
                files = DatasetImporter.mnistFiles(s)
            case .cifar10:
                guard let s = source else { throw ValidationError("--source DIR is needed for --format cifar10") }
                files = try DatasetImporter.cifarFiles(s)
                classes = DatasetImporter.cifarClasses; order = "RGB"
            case .idx:
                files = .init(train: (trainImages, trainLabels), test: (testImages, testLabels))
                name = "idx"
            case .folder:
                preconditionFailure("handled by importFolder")
            }
            let t0 = monotonicSeconds()
            print("data import: \(name) -> \(out)")
            let m = try DatasetImporter.importDataset(name: name, files: files, out: out, shards: shards,
                                                      classNames: classes, channelOrder: order,
                                                      source: source ?? "idx files", log: { print($0) })
            print("  wrote \(m.splits.values.reduce(0) { $0 + $1.shards.count }) shards and manifest.json in "
                + "\(fmt(monotonicSeconds() - t0, 1)) s")
        }
    }

    struct Synth: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a procedurally generated labelled dataset (oriented bars; the label is visible).")
        @Option(help: "Output dataset directory.") var out: String
        @Option(help: "Training images.") var train = 2000
        @Option(help: "Test images.") var test = 500
        @Option(help: "Classes.") var classes = 4
        @Option(help: "Image channels.") var channels = 1
        @Option(help: "Image size (28, 32 or 64 match an encoder).") var size = 28
        @Option(help: "Shards of each split.") var shards = 2
        @Option(help: "Random seed.") var seed: UInt64 = 0

        func run() throws {
            let m = try SyntheticDataset.write(directory: out, trainCount: train, testCount: test, classes: classes,
                                               channels: channels, size: size, seed: seed, shards: shards)
            print("data synth: \(out): \(m.splits["train"]?.count ?? 0) train + \(m.splits["test"]?.count ?? 0) "
                + "test images, \(channels)x\(size)x\(size), \(classes) classes")
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print counts, shapes, class histograms and "
            + "checksums of a dataset.")
        @Argument(help: "Dataset directory.") var directory: String
        @Flag(help: "Recompute every shard's checksum.") var verify = false
        @Flag(help: "Measure read throughput of the training reader (shuffled batches).") var bench = false
        @Option(help: "Batch size for --bench.") var batchSize = 64

        func run() throws {
            let m = try DatasetManifest.load(directory: directory)
            print("\(directory): \(m.name), \(m.channels)x\(m.height)x\(m.width) \(m.channelOrder), "
                + "\(m.classNames.count) classes")
            print("  fingerprint \(m.fingerprint)   source: \(m.source)")
            for name in m.splits.keys.sorted() {
                let s = m.splits[name]!
                print("  \(name): \(s.count) images in \(s.shards.count) shard(s)")
                print("    mean \(s.mean.map { fmt($0, 4) }.joined(separator: " "))   std "
                    + "\(s.std.map { fmt($0, 4) }.joined(separator: " ")) (pixels/255)")
                let className = { (c: Int) in m.classNames.indices.contains(c) ? m.classNames[c] : String(c) }
                print("    classes " + s.classCounts.enumerated().map { "\(className($0.offset))=\($0.element)" }
                    .joined(separator: " "))
                for sh in s.shards { print("    \(sh.file): \(sh.count) images, crc32 \(sh.checksum)") }
                let split = try ShardedSplit(directory: directory, split: name, verify: verify)
                if verify { print("    checksums verified") }
                if bench && name == "train" {
                    let strong = Augmentation(horizontalFlip: true, resizedCropMinScale: 0.08, colorJitter: 0.4,
                                              grayscale: 0.2)
                    for (label, aug) in [("no augmentation", Augmentation()),
                                         ("resized crop 0.08 + flip + colour jitter 0.4 + grey 0.2", strong)] {
                        let reader = try BatchReader(data: split, globalBatch: min(batchSize, split.count), rank: 0,
                                                     ranks: 1, seed: 1, augmentation: aug)
                        let batches = min(reader.batchesPerEpoch, max(20, 20_000 / reader.globalBatch))
                        _ = try reader.batch(epoch: 0, index: 0)
                        let t0 = monotonicSeconds()
                        for b in 1..<batches { _ = try reader.batch(epoch: 0, index: b) }
                        let dt = monotonicSeconds() - t0
                        reader.drain()
                        print("    read bench, \(label): \(fmt(Double((batches - 1) * reader.globalBatch) / dt, 0)) "
                            + "images/s (shuffled batches of \(reader.globalBatch), \(batches - 1) batches, "
                            + "HDF5 selections + [-1,1] floats)")
                    }
                }
            }
        }
    }
}

extension DataCommand.Import {
    func importFolder() throws {
        guard let s = source else { throw ValidationError("--source DIR is needed for --format folder") }
        let comm = try makeCommunicator()
        var importer = FolderImport()
        importer.size = size
        importer.channels = channels
        importer.skipBad = skipBad
        importer.shards = shards
        let t0 = monotonicSeconds()
        let log: (String) -> Void = { if comm.isRoot { print($0); fflush(stdout) } }
        log("data import: folder \(s) -> \(out) (\(channels == 1 ? "grey" : "RGB") \(size)x\(size), \(comm.size) "
            + "rank(s))")
        do {
            let m = try importer.run(source: s, out: out, comm: comm, log: log)
            let skipped = m.splits.values.reduce(0) { $0 + ($1.skippedFiles ?? 0) }
            log("  \(m.classNames.isEmpty ? "unlabelled" : "\(m.classNames.count) classes"); "
                + m.splits.keys.sorted().map { "\($0) \(m.splits[$0]!.count) images" }.joined(separator: ", ")
                + (skipped > 0 ? "; \(skipped) bad file(s) skipped" : "") + "; \(fmt(monotonicSeconds() - t0, 1)) s")
        } catch {
            if comm.size > 1 { comm.abort("dim-dist data import: \(error)", code: 1) }
            throw error
        }
    }
}
