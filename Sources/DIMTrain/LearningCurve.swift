import Foundation
import DIMCore

/// Probe accuracy as training goes. `dim-dist eval --every-checkpoint RUN` probes each checkpoint
/// of a run (the same protocol as `eval`) and appends one record per probe to RUN/metrics.jsonl,
/// beside the loss records; `dim-dist plot probes` draws them.
public struct ProbeRecord: Codable, Equatable {
    public var step: Int
    public var probe: String
    public var feature: String
    public var testAccuracy: Double
    public var validationAccuracy: Double
    public var trainAccuracy: Double
    public var weightDecay: Float
    public var epochs: Int

    enum CodingKeys: String, CodingKey {
        case step, probe, feature, epochs
        case testAccuracy = "test_accuracy", validationAccuracy = "validation_accuracy"
        case trainAccuracy = "train_accuracy", weightDecay = "weight_decay"
    }

    public init(step: Int, _ r: ProbeResult) {
        self.step = step; probe = r.probe; feature = r.feature
        testAccuracy = r.testAccuracy; validationAccuracy = r.validationAccuracy; trainAccuracy = r.trainAccuracy
        weightDecay = r.weightDecay; epochs = r.epochs
    }

    /// The series this record belongs to, e.g. "linear/conv".
    public var series: String { "\(probe)/\(feature)" }

    /// The probe records of a metrics file (loss records are skipped).
    public static func read(_ path: String) -> [ProbeRecord] {
        guard let data = FileManager.default.contents(atPath: path),
              let text = String(data: data, encoding: .utf8) else {
            return []
        }
        let decoder = JSONDecoder()
        return text.split(separator: "\n").compactMap { try? decoder.decode(ProbeRecord.self, from: Data($0.utf8)) }
    }

    /// Appends records as JSON lines.
    public static func append(_ records: [ProbeRecord], to path: String) throws {
        guard let f = fopen(path, "a") else { throw DIMError("\(path): cannot append") }
        defer { fclose(f) }
        for r in records { fputs(try jsonLine(r) + "\n", f) }
    }
}
