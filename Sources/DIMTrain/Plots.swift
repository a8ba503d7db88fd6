import Foundation
import DIMCore
import DIMIO

/// Pictures: loss curves from metrics.jsonl as SVG, and the paper's nearest-neighbour grid.
public enum Plots {
    /// Reads metrics.jsonl into series by key (step on the x axis).
    public static func readMetrics(_ path: String) throws -> [String: [(Double, Double)]] {
        var series: [String: [(Double, Double)]] = [:]
        for r in try LossRecord.read(path) {
            for case let (key, v?) in r.terms { series[key, default: []].append((Double(r.step), v)) }
        }
        guard !(series["loss"] ?? []).isEmpty else { throw DIMError("\(path): no loss records") }
        // Terms that are identically zero (switched off) are not drawn.
        return series.filter { $0.value.contains { $0.1 != 0 } }
    }

    /// An SVG line chart of the loss terms against the step. The total is drawn last and dashed,
    /// so it stays visible where it equals the local term.
    public static func lossSVG(_ series: [String: [(Double, Double)]], title: String) -> String {
        let keys = ["local", "global", "prior", "discriminator", "loss"].filter { series[$0] != nil }
        let colors = ["loss": "#1f77b4", "local": "#ff7f0e", "global": "#2ca02c", "prior": "#d62728",
                      "discriminator": "#9467bd"]
        return lineChart(series, keys: keys, colors: keys.map { colors[$0]! }, dashed: ["loss"], title: title,
                         yLabel: "loss")
    }

    /// Probe test accuracy (%) against the training step, one line per probe and feature set.
    public static func probeSVG(_ records: [ProbeRecord], title: String) -> String {
        // The last record of each (series, step): probes run twice for a step count once.
        var latest: [String: [Int: Double]] = [:]
        for r in records { latest[r.series, default: [:]][r.step] = 100 * r.testAccuracy }
        let series = latest.mapValues { $0.sorted { $0.key < $1.key }.map { (Double($0.key), $0.value) } }
        let keys = series.keys.sorted()
        let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
        return lineChart(series, keys: keys, colors: keys.indices.map { palette[$0 % palette.count] }, dashed: [],
                         title: title, yLabel: "test accuracy (%)")
    }

    /// Test accuracy (%) against the number of labels (log scale): from scratch, fine-tuned, and
    /// the frozen linear probe (`eval utility`'s table).
    public static func utilitySVG(_ rows: [UtilityRow], title: String) -> String {
        let x = rows.map { log10(Double($0.labels)) }
        let series: [String: [(Double, Double)]] = [
            "from scratch": zip(x, rows).map { ($0, 100 * $1.scratch) },
            "fine-tuned": zip(x, rows).map { ($0, 100 * $1.fineTuned) },
            "frozen linear": zip(x, rows).map { ($0, 100 * $1.frozen) },
        ]
        return lineChart(series, keys: ["from scratch", "fine-tuned", "frozen linear"],
                         colors: ["#7f7f7f", "#1f77b4", "#ff7f0e"], dashed: ["frozen linear"], title: title,
                         yLabel: "test accuracy (%)", xLabel: "labelled training images (log scale)",
                         xTick: { String(Int(pow(10, $0).rounded())) })
    }

    /// A line chart of `series[key]` (x, y) points for `keys`, in that order, with a legend.
    static func lineChart(_ series: [String: [(Double, Double)]], keys: [String], colors: [String], dashed: Set<String>,
                          title: String, yLabel: String, xLabel: String = "step",
                          xTick: (Double) -> String = { String(Int($0.rounded())) }) -> String {
        let (W, H, left, right, top, bottom) = (820.0, 480.0, 70.0, 150.0, 40.0, 50.0)
        let all = keys.flatMap { series[$0]! }
        let xmin = all.map(\.0).min()!, xmax = max(all.map(\.0).max()!, xmin + 1)
        var ymin = all.map(\.1).min()!, ymax = all.map(\.1).max()!
        if ymax - ymin < 1e-9 { ymax += 1; ymin -= 1 }
        let pad = 0.05 * (ymax - ymin); ymin -= pad; ymax += pad
        func px(_ x: Double) -> Double { left + (x - xmin) / (xmax - xmin) * (W - left - right) }
        func py(_ y: Double) -> Double { top + (ymax - y) / (ymax - ymin) * (H - top - bottom) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\" "
            + "font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(W / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        for i in 0...5 {
            let yv = ymin + (ymax - ymin) * Double(i) / 5, y = py(yv)
            s += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(W - right)\" y2=\"\(y)\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(tick(yv))</text>\n"
            let xv = xmin + (xmax - xmin) * Double(i) / 5, x = px(xv)
            s += "<line x1=\"\(x)\" y1=\"\(top)\" x2=\"\(x)\" y2=\"\(H - bottom)\" stroke=\"#eee\"/>"
            s += "<text x=\"\(x)\" y=\"\(H - bottom + 18)\" text-anchor=\"middle\">\(xTick(xv))</text>\n"
        }
        s += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(W - left - right)\" height=\"\(H - top - bottom)\" "
            + "fill=\"none\" stroke=\"#444\"/>\n"
        s += "<text x=\"\((left + W - right) / 2)\" y=\"\(H - 10)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        s += "<text x=\"16\" y=\"\((top + H - bottom) / 2)\" text-anchor=\"middle\" "
            + "transform=\"rotate(-90 16 \((top + H - bottom) / 2))\">\(escape(yLabel))</text>\n"
        var legendY = top + 10
        for (key, color) in zip(keys, colors) {
            let pts = series[key]!
            let path = pts.map { "\(fmt(px($0.0), 1)),\(fmt(py($0.1), 1))" }.joined(separator: " ")
            let dash = dashed.contains(key) ? " stroke-dasharray=\"6 4\"" : ""
            s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\"\(dash) points=\"\(path)\"/>\n"
            if pts.count <= 50 {  // few points (probe curves): mark each
                for p in pts {
                    s += "<circle cx=\"\(fmt(px(p.0), 1))\" cy=\"\(fmt(py(p.1), 1))\" r=\"3\" fill=\"\(color)\"/>"
                }
                s += "\n"
            }
            s += "<line x1=\"\(W - right + 12)\" y1=\"\(legendY)\" x2=\"\(W - right + 36)\" y2=\"\(legendY)\" "
                + "stroke=\"\(color)\" stroke-width=\"3\"/>"
            s += "<text x=\"\(W - right + 42)\" y=\"\(legendY + 4)\">\(escape(key))</text>\n"
            legendY += 20
        }
        return s + "</svg>\n"
    }

    static func tick(_ v: Double) -> String { abs(v) >= 100 ? fmt(v, 0) : (abs(v) >= 10 ? fmt(v, 1) : fmt(v, 2)) }
    static func escape(_ s: String) -> String { s.replacingOccurrences(of: "&",
            with: "&amp;").replacingOccurrences(of: "<", with: "&lt;") }

    /// For `queries` test images, their `k` nearest training images by Euclidean distance of Y;
    /// one row per query: the query, a gap, then its neighbours, nearest first.
    public static func neighbourGrid(model: DIMModel, data dir: String, queries: Int, k: Int, seed: UInt64, scale: Int,
                                     comm: Communicator) throws -> (rgb: [UInt8], width: Int, height: Int,
                                                                    labelsMatch: Double) {
        let train = try ShardedSplit(directory: dir, split: "train")
        let test = try ShardedSplit(directory: dir, split: "test")
        let trainY = try encodeSplit(model: model, data: train, kinds: [.y], comm: comm)[.y]!
        var rng = SplitMix64(seed: seed, stream: RandomStream.neighbourQueries)
        let picks = Array(rng.permutation(test.count).prefix(queries))
        let m = test.manifest
        var qraw = [UInt8](repeating: 0, count: queries * m.imageBytes), qlab = [Int](repeating: 0, count: queries)
        try test.read(indices: picks, images: &qraw, labels: &qlab)
        // Y of the queries, then the k training images nearest to each.
        let x = Tensor([0])
        modelInput(qraw, count: queries, m, into: x)
        model.encode(x, training: false, comm: SingleProcess())
        let rows = nearest(k, of: model.encoder.globalVector, in: trainY)
        let same = (0..<queries).reduce(0) { acc, j in acc + rows[j].filter { trainY.labels[$0] == qlab[j] }.count }
        let grid = try compose(queries: qraw, neighbours: rows, train: train, scale: scale)
        return (grid.rgb, grid.width, grid.height, Double(same) / Double(queries * k))
    }

    /// For each column of `y` (`[d, queries]`), the indices of the k rows of `set` nearest in L2.
    static func nearest(_ k: Int, of y: Tensor, in set: FeatureSet) -> [[Int]] {
        let queries = y.shape[1], d = set.dim
        return (0..<queries).map { j in
            var dist = [(Float, Int)]()
            dist.reserveCapacity(set.count)
            set.values.withUnsafeBufferPointer { v in
                for i in 0..<set.count {
                    var s: Float = 0
                    for f in 0..<d { let t = v[i * d + f] - y.data[f * queries + j]; s += t * t }
                    dist.append((s, i))
                }
            }
            return dist.sorted { $0.0 < $1.0 }.prefix(k).map(\.1)
        }
    }

    /// One row per query: the query image, a gap, then its neighbours, each scaled up `scale` times.
    static func compose(queries qraw: [UInt8], neighbours rows: [[Int]], train: ShardedSplit,
                        scale: Int) throws -> (rgb: [UInt8], width: Int, height: Int) {
        let m = train.manifest, per = m.imageBytes, hw = m.height * m.width
        let k = rows.first?.count ?? 0
        let cell = m.width * scale, gap = 2, sep = 8
        let width = (k + 1) * (cell + gap) + sep, height = rows.count * (cell + gap)
        var rgb = [UInt8](repeating: 255, count: width * height * 3)
        var nraw = [UInt8](repeating: 0, count: per), nlab = [0]
        func blit(_ img: [UInt8], offset: Int, row: Int, col: Int, x0: Int) {
            for yy in 0..<(m.height * scale) { for xx in 0..<cell {
                let sy = yy / scale, sx = xx / scale
                let px = x0 + col * (cell + gap) + xx, py = row * (cell + gap) + yy
                for ch in 0..<3 {
                    let c = m.channels == 1 ? 0 : ch
                    rgb[(py * width + px) * 3 + ch] = img[offset + c * hw + sy * m.width + sx]
                }
            } }
        }
        for (j, neighbours) in rows.enumerated() {
            blit(qraw, offset: j * per, row: j, col: 0, x0: 0)
            for (c, i) in neighbours.enumerated() {
                try train.read(indices: [i], images: &nraw, labels: &nlab)
                blit(nraw, offset: 0, row: j, col: c + 1, x0: sep)
            }
        }
        return (rgb, width, height)
    }
}
