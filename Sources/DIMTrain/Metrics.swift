import Foundation
import DIMCore

/// One line of RUN/metrics.jsonl written by training (probe records, ProbeRecord, share the file).
/// The one definition of its keys, for writing and reading. Non-finite values are left out (JSON
/// has no NaN), so a reader sees a missing key.
public struct LossRecord: Codable, Equatable {
    public var step: Int
    public var epoch: Int
    public var loss: Double?
    public var local: Double?
    public var global: Double?
    public var prior: Double?
    public var discriminator: Double?
    public var learningRate: Double?
    public var imagesPerSecond: Double?
    public var elapsedSeconds: Double?
    public var communicationSeconds: Double?
    public var ranks: Int

    enum CodingKeys: String, CodingKey {
        case step, epoch, loss, local, global, prior, discriminator, ranks
        case learningRate = "lr", imagesPerSecond = "images_per_s", elapsedSeconds = "elapsed_s"
        case communicationSeconds = "comm_s"
    }

    /// The loss terms by their metrics key, for plots.
    public var terms: [(String, Double?)] {
        [("loss", loss), ("local", local), ("global", global), ("prior", prior), ("discriminator", discriminator)]
    }

    /// One JSON line (keys sorted, so the file reads the same from run to run).
    public func jsonLine() throws -> String { try DIMCore.jsonLine(self) + "\n" }

    /// The loss records of a metrics file, in file order (probe records are skipped).
    public static func read(_ path: String) throws -> [LossRecord] {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data,
                encoding: .utf8) else {
            throw DIMError("\(path): cannot read")
        }
        let decoder = JSONDecoder()
        var records: [LossRecord] = []
        for (i, line) in text.split(separator: "\n").enumerated() where !line.isEmpty {
            if let r = try? decoder.decode(LossRecord.self, from: Data(line.utf8)) { records.append(r); continue }
            guard (try? decoder.decode(StepOnly.self, from: Data(line.utf8))) != nil else {
                throw DIMError("\(path): line \(i + 1) is not a metrics record")
            }
        }
        return records
    }

    /// Any record of the file: every kind has its step.
    struct StepOnly: Decodable { var step: Int }

    /// The step of a metrics line of any kind (nil: not a record).
    static func step(ofLine line: Substring) -> Int? {
        (try? JSONDecoder().decode(StepOnly.self, from: Data(line.utf8)))?.step
    }
}

/// A finite value, or nil (left out of the JSON).
@inline(__always)
func finite(_ x: Double) -> Double? { x.isFinite ? x : nil }
