import Foundation
import DIMCore
import DIMIO

/// Utility of pretraining (Newell & Deng 2020): with N labels the fine-tuned pretrained model
/// reaches accuracy a; a model trained from scratch needs N_scratch(a) labels for the same
/// accuracy (read off its accuracy-against-log N curve); U(N) = N_scratch(a) / N - 1: the labels
/// pretraining saves, as a multiple of N (0: none; 3: fine-tuning with N labels is worth 4N from
/// scratch).
public enum Utility {
    /// Where U lies, when a falls outside the measured scratch curve.
    public enum Bound: String, Codable {
        /// Interpolated between two measured points.
        case exact = "="
        /// a beats the scratch model at every N measured: U is at least the value (the largest N).
        case atLeast = ">="
        /// a is below the scratch model's accuracy at the smallest N: U is at most the value.
        case atMost = "<="
    }

    /// N_scratch(a): labels from scratch for accuracy `a`, interpolated linearly in log N on the
    /// curve made monotone (each point's accuracy is the best at that N or fewer).
    public static func scratchLabels(for a: Double, curve: [(labels: Int, accuracy: Double)]) -> (Double, Bound) {
        let points = curve.sorted { $0.labels < $1.labels }
        precondition(!points.isEmpty, "Utility: an empty scratch curve")
        var envelope: [(n: Double, a: Double)] = []
        for p in points { envelope.append((Double(p.labels), max(p.accuracy, envelope.last?.a ?? -1))) }
        if a < envelope[0].a { return (envelope[0].n, .atMost) }
        if a == envelope[0].a { return (envelope[0].n, .exact) }
        for i in 1..<envelope.count where envelope[i].a >= a {
            let (lo, hi) = (envelope[i - 1], envelope[i])
            let t = (a - lo.a) / (hi.a - lo.a)
            return (exp(log(lo.n) + t * (log(hi.n) - log(lo.n))), .exact)
        }
        return (envelope[envelope.count - 1].n, .atLeast)
    }

    /// U(N) for the fine-tuned accuracy `a` at N labels.
    public static func utility(labels n: Int, fineTunedAccuracy a: Double,
                               curve: [(labels: Int, accuracy: Double)]) -> (value: Double, bound: Bound) {
        let (ns, bound) = scratchLabels(for: a, curve: curve)
        return (ns / Double(n) - 1, bound)
    }
}

/// One finished piece of `eval utility`: a method at N labels with one seed. Appended to
/// `OUT/utility.jsonl` as it finishes, so an interrupted evaluation continues where it stopped.
public struct UtilityRecord: Codable, Equatable {
    public enum Method: String, Codable, CaseIterable {
        case scratch, fineTuned = "fine-tuned", frozen = "frozen-linear"
    }
    public var method: Method
    public var labels: Int
    public var seed: UInt64
    public var validationAccuracy: Double
    public var testAccuracy: Double
    /// What validation chose: the epoch (fine-tuning), or "weight decay w, e epochs" (probe).
    public var chosen: String
    public var seconds: Double
    /// The checkpoint evaluated and the protocol (a rerun with other settings starts afresh).
    public var checkpoint: String
    public var protocol_: String

    enum CodingKeys: String, CodingKey {
        case method, labels, seed, validationAccuracy, testAccuracy, chosen, seconds, checkpoint
        case protocol_ = "protocol"
    }

    public var key: String { "\(method.rawValue) \(labels) \(seed)" }

    public static func read(_ path: String) -> [UtilityRecord] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(Self.self, from: Data($0.utf8)) }
    }

    public static func append(_ r: UtilityRecord, to path: String) throws {
        let line = try jsonLine(r) + "\n"
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw DIMError("\(path): cannot create the results file")
            }
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw DIMError("\(path): cannot write") }
        defer { try? h.close() }
        h.seekToEndOfFile()
        h.write(Data(line.utf8))
        try h.synchronize()
    }
}

/// One row of the utility table: mean (and spread over seeds) test accuracy of each method at N
/// labels, and U(N) from the means.
public struct UtilityRow: Codable, Equatable {
    public var labels: Int
    public var seeds: Int
    public var scratch: Double, scratchSpread: Double
    public var fineTuned: Double, fineTunedSpread: Double
    public var frozen: Double, frozenSpread: Double
    public var utility: Double
    public var utilityBound: Utility.Bound

    /// Rows from finished records (every method at every N, for the seeds all three have).
    public static func table(_ records: [UtilityRecord]) -> [UtilityRow] {
        func stats(_ m: UtilityRecord.Method, _ n: Int) -> (mean: Double, spread: Double, count: Int)? {
            let a = records.filter { $0.method == m && $0.labels == n }.map(\.testAccuracy)
            guard !a.isEmpty else { return nil }
            let mean = a.reduce(0, +) / Double(a.count)
            let sd = a.count > 1 ? (a.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(a.count - 1)).squareRoot() : 0
            return (mean, sd, a.count)
        }
        let ns = Set(records.map(\.labels)).sorted()
        let curve = ns.compactMap { n in stats(.scratch, n).map { (labels: n, accuracy: $0.mean) } }
        return ns.compactMap { n in
            guard let s = stats(.scratch, n), let f = stats(.fineTuned, n), let p = stats(.frozen, n) else { return nil }
            let u = Utility.utility(labels: n, fineTunedAccuracy: f.mean, curve: curve)
            return UtilityRow(labels: n, seeds: min(s.count, f.count, p.count), scratch: s.mean, scratchSpread: s.spread,
                              fineTuned: f.mean, fineTunedSpread: f.spread, frozen: p.mean, frozenSpread: p.spread,
                              utility: u.value, utilityBound: u.bound)
        }
    }
}
