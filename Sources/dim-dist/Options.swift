import Foundation
import ArgumentParser
import DIMCore
import DIMMPI

/// The communicator for this process: MPI when started by mpirun with several ranks, otherwise
/// the single-process stand-in (no MPI initialisation at all). DIM_FORCE_MPI=1 uses MPI even for
/// one rank (to compare the two implementations).
func makeCommunicator(observer: CollectiveObserver? = nil) throws -> Communicator {
    (MPICommunicator.launchedWithSeveralRanks || getenv("DIM_FORCE_MPI") != nil) ? MPICommunicator(observer: observer)
        : SingleProcess()
}

/// Model and loss options shared by train and bench.
struct ModelOptions: ParsableArguments {
    @Option(help: "Encoder: basic28x28, basic32x32 or basic64x64 (default: from the image size; basic32x32 for bench).")
    var model: Architecture?
    @Option(help: "Image channels (default: from the data; 3 for bench).") var channels: Int?
    @Option(help: "Conv widths, comma-separated (default: 64,128 / 64,128,256 / 64,128,256,512).") var convChannels: String?
    @Option(help: "Width of the fc layer.") var fcUnits = 1024
    @Option(help: "Size of the global vector Y.") var globalDim = 64
    @Option(help: "Units of the MI heads.") var miUnits = 2048
    @Option(help: "Hidden widths of the prior discriminator, comma-separated.") var discUnits = "1000,200"
    @Option(help: "MI estimator: jsd, nce or dv.") var estimator: Estimator = .jsd
    @Option(help: "Weight of local DIM.") var beta = 1.0
    @Option(help: "Weight of global DIM (0 = off).") var alpha = 0.0
    @Option(help: "Weight of prior matching (0 = off; the paper uses 0.1).") var gamma = 0.0
    @Option(help: ArgumentHelp(
        "GEMM precision: fp32, or bf16 (bfloat16 inputs, float32 accumulation and weights).",
        discussion: "bf16 needs AVX512_BF16; whether it is faster depends on the CPU (dim-dist bench shows both rates)."))
    var precision: Precision = .fp32

    func validate() throws {
        if let why = precision.unsupportedReason() { throw ValidationError(why) }
    }

    /// `data` names the dataset in errors (the images' size decides the encoder).
    func config(imageSize: Int?, channels dataChannels: Int?, data: String = "the data") throws -> ModelConfig {
        let arch: Architecture
        let sizes = Architecture.allCases.map { "\($0.imageSize)x\($0.imageSize)" }.joined(separator: ", ")
        let reimport = "import the images again at \(sizes), e.g. `dim-dist data import --format folder "
            + "--source DIR --out \(data)-64 --size 64` (docs/design.md §1)"
        if let m = model {
            arch = m
        } else if let size = imageSize {
            guard let a = Architecture.forImageSize(size) else {
                throw DIMError("\(data): images are \(size)x\(size), which no encoder takes: \(reimport)")
            }
            arch = a
        } else {
            arch = .basic32x32
        }
        if let size = imageSize, size != arch.imageSize {
            throw DIMError("\(data): images are \(size)x\(size), --model \(arch.rawValue) takes "
                + "\(arch.imageSize)x\(arch.imageSize): leave out --model to choose by size, or \(reimport)")
        }
        let inChannels = channels ?? dataChannels ?? 3
        if let c = channels, let d = dataChannels, c != d {
            throw ValidationError("--channels \(c) but the data has \(d) channel(s)")
        }
        let cfg = ModelConfig(architecture: arch, inChannels: inChannels,
                              convChannels: try convChannels.map { try parseList($0, "--conv-channels") },
                              fcUnits: fcUnits, globalDim: globalDim, miUnits: miUnits,
                              discUnits: try parseList(discUnits, "--disc-units"))
        do { try cfg.validate() } catch { throw ValidationError("\(error)") }
        return cfg
    }

    func lossConfig() -> LossConfig {
        LossConfig(estimator: estimator, beta: beta, alpha: alpha, gamma: gamma)
    }
}

func parseList(_ s: String, _ flag: String) throws -> [Int] {
    let parts = s.split(separator: ",").map { Int($0.filter { $0 != " " }) }
    guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? 0) > 0 }) else {
        throw ValidationError("\(flag) wants positive integers separated by commas, got '\(s)'")
    }
    return parts.map { $0! }
}

/// Seconds from "90", "90s", "15m", "2h" or "1.5h".
func parseDuration(_ s: String) throws -> Double {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
    var text = s.trimmingCharacters(in: .whitespaces), scale = 1.0
    if let last = text.last, let u = units[last] { scale = u; text.removeLast() }
    guard let v = Double(text), v > 0, v.isFinite else {
        throw ValidationError("'\(s)' is not a duration (examples: 3600, 90s, 30m, 2h)")
    }
    return v * scale
}

extension Architecture: ExpressibleByArgument {}
extension Estimator: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}
