import ArgumentParser
import DIMCore
import DIMIO
import DIMTrain
import Foundation

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pictures: loss curves (SVG) and nearest neighbours in Y space (PNG).",
        subcommands: [Loss.self, Probes.self, Utility.self, Neighbours.self])

    struct Loss: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Turn a run's metrics.jsonl into an SVG of its "
            + "loss curves.")
        @Argument(help: "metrics.jsonl, or a run directory holding it.") var metrics: String
        @Option(help: "Output SVG file.") var out = "loss.svg"
        @Option(help: "Chart title.") var title: String?

        func run() throws {
            let path = RunDirectory.metrics(metrics)
            let series = try Plots.readMetrics(path)
            let svg = Plots.lossSVG(series, title: title ?? "DIM training loss (\(path))")
            guard FileManager.default.createFile(atPath: out,
                                                 contents: Data(svg.utf8)) else { throw DIMError("\(out): cannot "
                                                     + "write") }
            print("plot: \(series["loss"]!.count) records, terms \(series.keys.sorted().joined(separator: ", ")) -> "
                + "\(out)")
        }
    }

    struct Probes: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Draw probe accuracy against the training step (records from `eval --every-checkpoint`).")
        @Argument(help: "metrics.jsonl, or a run directory holding it.") var metrics: String
        @Option(help: "Output SVG file.") var out = "probes.svg"
        @Option(help: "Chart title.") var title: String?

        func run() throws {
            let path = RunDirectory.metrics(metrics)
            let records = ProbeRecord.read(path)
            guard !records.isEmpty else {
                throw DIMError("\(path): no probe records (make them with: dim-dist eval --every-checkpoint RUN)")
            }
            let svg = Plots.probeSVG(records, title: title ?? "probe test accuracy (\(path))")
            guard FileManager.default.createFile(atPath: out,
                                                 contents: Data(svg.utf8)) else { throw DIMError("\(out): cannot "
                                                     + "write") }
            let last = records.max { $0.step < $1.step }!.step
            let summary = records.filter { $0.step == last }.map { "\($0.series) \(fmt(100 * $0.testAccuracy, 2))%" }
            print("plot: \(records.count) probe records; at step \(last): \(summary.joined(separator: ", ")) -> \(out)")
        }
    }

    struct Utility: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Draw test accuracy against the number of labels: from scratch, fine-tuned, frozen probe "
                + "(`eval utility`'s results).")
        @Argument(help: "utility.jsonl, or the directory holding it (eval utility's --out).") var results: String
        @Option(help: "Output SVG file.") var out = "utility.svg"
        @Option(help: "Chart title.") var title: String?

        func run() throws {
            let path = results.hasSuffix(".jsonl") ? results : results + "/utility.jsonl"
            let rows = UtilityRow.table(UtilityRecord.read(path))
            guard !rows.isEmpty else {
                throw DIMError("\(path): no finished utility results (make them with: dim-dist eval utility)")
            }
            let svg = Plots.utilitySVG(rows, title: title ?? "fine-tuning with few labels (\(path))")
            guard FileManager.default.createFile(atPath: out, contents: Data(svg.utf8)) else {
                throw DIMError("\(out): cannot write")
            }
            print("plot: \(rows.count) label counts (\(rows.map { String($0.labels) }.joined(separator: ", "))) -> \(out)")
        }
    }

    struct Neighbours: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "For a few test images, their nearest training images in Y space, as a PNG grid (paper Fig. 2).")
        @Option(help: "Checkpoint file or run directory.") var checkpoint: String
        @Option(help: "Dataset directory (default: the embedded MNIST).") var data: String?
        @Option(help: "Query images (rows).") var queries = 8
        @Option(help: "Neighbours per query.") var k = 10
        @Option(help: "Pixel magnification.") var scale = 3
        @Option(help: "Seed choosing the queries.") var seed: UInt64 = 0
        @Option(help: "Output PNG file.") var out = "neighbours.png"

        func run() throws {
            let comm = SingleProcess()
            let path = try RunDirectory.checkpoint(checkpoint)
            let dir = try data ?? EmbeddedData.directory(comm: comm)
            let (model, _, _) = try Evaluation.loadModel(checkpoint: path, untrained: false)
            let g = try Plots.neighbourGrid(model: model, data: dir, queries: queries, k: k, seed: seed, scale: scale,
                                            comm: comm)
            try writePNG(path: out, width: g.width, height: g.height, rgb: g.rgb)
            print("plot: \(queries) queries x \(k) neighbours (\(fmt(100 * g.labelsMatch, 1))% share the query's "
                + "label) -> \(out)")
        }
    }
}
