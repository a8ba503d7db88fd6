import Foundation
import XCTest
import DIMTestSupport
import DIMCore
import DIMIO
import DIMTrain

/// What a user sees from `dim-dist` itself for input it cannot train on.
final class CommandLineTests: XCTestCase {
    /// Starts the built binary, its output and errors into one pipe; `unset` names environment
    /// variables the child does not inherit.
    func start(_ arguments: [String], unset: [String] = []) throws -> (Process, Pipe) {
        let binary = checkoutRoot + "/.build/debug/dim-dist"
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("\(binary) not built") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.filter { !unset.contains($0.key) }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        return (p, pipe)
    }

    /// Runs the built binary; returns its exit status and everything it printed.
    func dimDist(_ arguments: [String], unset: [String] = []) throws -> (status: Int32, output: String) {
        let (p, pipe) = try start(arguments, unset: unset)
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, output)
    }

    /// 96x96 images (STL-10 imported at its own size): a one-line error naming the data and what
    /// to do, a non-zero exit, no usage dump; the same when --model names an encoder of another size.
    func testImagesNoEncoderTakesAreRefusedWithWhatToDo() throws {
        let dir = temporaryDirectory()
        try SyntheticDataset.write(directory: dir + "/d96", trainCount: 8, testCount: 2, classes: 2, channels: 3,
                                   size: 96, seed: 1, shards: 1)
        for extra in [[], ["--model", "basic64x64"]] {
            let (status, output) = try dimDist(["train", "--data", dir + "/d96", "--steps", "1"] + extra)
            XCTAssertNotEqual(status, 0, output)
            XCTAssertTrue(output.contains(dir + "/d96: images are 96x96"), output)
            XCTAssertTrue(output.contains("--size 64"), output)
            XCTAssertFalse(output.contains("Usage:"), output)
        }
    }
}

extension CommandLineTests {
    /// `eval utility` on input it cannot use: more labels than the training split has outside
    /// validation, an unlabelled dataset, a checkpoint of another architecture. Each: exit 1 and
    /// one line naming the file and what is wrong.
    func testUtilityRefusesBadInputWithAClearError() throws {
        let dir = temporaryDirectory()
        try SyntheticDataset.write(directory: dir + "/bars", trainCount: 100, testCount: 20, classes: 2, channels: 1,
                                   size: 28, seed: 1, shards: 1)
        try SyntheticDataset.write(directory: dir + "/rgb32", trainCount: 100, testCount: 20, classes: 2, channels: 3,
                                   size: 32, seed: 1, shards: 1)
        let trained = try dimDist(["train", "--data", dir + "/bars", "--steps", "2", "--batch-size", "8",
                                   "--mi-units", "16", "--fc-units", "32", "--conv-channels", "8,16",
                                   "--out", dir + "/run"])
        XCTAssertEqual(trained.status, 0, trained.output)
        let base = ["eval", "utility", "--checkpoint", dir + "/run", "--epochs", "1", "--warmup-epochs", "0"]
        var r = try dimDist(base + ["--data", dir + "/bars", "--labels", "10,500"])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("\(dir)/bars: 500 labels asked for, but the training split has 90"), r.output)
        r = try dimDist(base + ["--data", dir + "/rgb32", "--labels", "10"])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("encoder takes 1x28x28 images, \(dir)/rgb32 holds 3x32x32"), r.output)
        // An unlabelled dataset: images straight in train/ (no class folders).
        let flat = dir + "/flat/train"
        try FileManager.default.createDirectory(atPath: flat, withIntermediateDirectories: true)
        for i in 0..<12 {
            try writeImage(path: "\(flat)/\(i).png", pixels: [UInt8](repeating: UInt8(i * 20), count: 30 * 30),
                           width: 30, height: 30, channels: 1, format: .png)
        }
        let imported = try dimDist(["data", "import", "--format", "folder", "--source", dir + "/flat",
                                    "--out", dir + "/unlabelled", "--size", "28", "--channels", "1"])
        XCTAssertEqual(imported.status, 0, imported.output)
        r = try dimDist(base + ["--data", dir + "/unlabelled", "--labels", "10"])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertTrue(r.output.contains("\(dir)/unlabelled") && r.output.contains("no labels"), r.output)
        for output in [r.output] { XCTAssertFalse(output.contains("Usage:"), output) }
    }
}

extension CommandLineTests {
    /// `train --time-budget`: a calibration decides the total steps, the run re-decides them once
    /// from its own steps, the cosine ends there, the decision is stored in the checkpoints, and a
    /// run resumed from a checkpoint after the re-plan with the same budget takes the same steps and
    /// ends bit-identical to the uninterrupted one.
    func testTimeBudgetDecidesTheStepsAndAResumedRunKeepsThem() throws {
        let dir = temporaryDirectory()
        try SyntheticDataset.write(directory: dir + "/bars", trainCount: 256, testCount: 16, classes: 2, channels: 1,
                                   size: 28, seed: 1, shards: 1)
        let common = ["train", "--data", dir + "/bars", "--batch-size", "8", "--mi-units", "16", "--fc-units", "32",
                      "--conv-channels", "8,16", "--time-budget", "25s", "--lr-schedule", "cosine",
                      "--warmup-steps", "3", "--checkpoint-every", "5", "--keep", "100000"]
        let t0 = Date()
        let a = try dimDist(common + ["--out", dir + "/a"])
        XCTAssertEqual(a.status, 0, a.output)
        print("time budget 25 s: the run took \(Date().timeIntervalSince(t0)) s")
        XCTAssertTrue(a.output.contains("time budget 25s: "), a.output)
        XCTAssertTrue(a.output.contains(" img/s | ETA 0s (time budget 25s)"), "the progress line shows the budget")
        let checkpoints = CheckpointDirectory(path: dir + "/a/checkpoints")
        let last = checkpoints.latest()!
        let info = try CheckpointFile.readInfo(try HDF5File(last))
        let cfg = try TrainConfig(json: info.configJSON)
        let budget = try XCTUnwrap(cfg.timeBudget)
        XCTAssertEqual(budget.seconds, 25)
        XCTAssertEqual(info.step, budget.steps, "the run ends at the decided step")
        XCTAssertEqual(cfg.schedule?.decaySteps, budget.steps, "the cosine ends with the budget")
        XCTAssertGreaterThan(budget.steps, 6)
        let replannedAt = try XCTUnwrap(budget.replannedAt, "the run re-plans after its first steps")
        XCTAssertTrue((1..<budget.steps).contains(replannedAt), "re-planned at step \(replannedAt)")
        XCTAssertTrue(a.output.contains("time budget 25s re-planned: "), a.output)
        XCTAssertTrue(a.output.contains(" -> \(budget.steps) steps"), a.output)
        // Resume from a checkpoint after the re-plan, same budget: no new calibration, the same steps.
        let resumeStep = (replannedAt / 5 + 1) * 5
        XCTAssertLessThan(resumeStep, budget.steps)
        let middle = try XCTUnwrap(checkpoints.all().first { $0.hasSuffix(CheckpointDirectory.fileName(step: resumeStep)) },
                                   "a checkpoint at step \(resumeStep)")
        let b = try dimDist(common + ["--out", dir + "/b", "--resume", middle])
        XCTAssertEqual(b.status, 0, b.output)
        XCTAssertTrue(b.output.contains("the resumed run's \(budget.steps) steps"), b.output)
        let diff = try dimDist(["checkpoint", "diff", last, CheckpointDirectory(path: dir + "/b/checkpoints").latest()!,
                                "--tolerance", "0"])
        XCTAssertEqual(diff.status, 0, diff.output)
    }
}

extension CommandLineTests {
    /// `eval --mirror`: by default the probes train on mirror images too when the encoder trained
    /// with --flip, and not otherwise; `--mirror on/off` decides it explicitly.
    func testEvalMirrorsTrainingImagesWhenTheEncoderTrainedWithFlips() throws {
        let dir = temporaryDirectory()
        try SyntheticDataset.write(directory: dir + "/bars", trainCount: 64, testCount: 16, classes: 2, channels: 1,
                                   size: 28, seed: 1, shards: 1)
        let small = ["--data", dir + "/bars", "--steps", "2", "--batch-size", "8", "--mi-units", "16",
                     "--fc-units", "32", "--conv-channels", "8,16"]
        for flip in [true, false] {
            let run = dir + (flip ? "/flipped" : "/plain")
            let trained = try dimDist(["train"] + small + ["--out", run] + (flip ? ["--flip"] : []))
            XCTAssertEqual(trained.status, 0, trained.output)
            for (mirror, expected) in [("auto", flip), ("on", true), ("off", false)] {
                let r = try dimDist(["eval", "--checkpoint", run, "--data", dir + "/bars", "--features", "y",
                                     "--probe-epochs", "1", "--mirror", mirror])
                XCTAssertEqual(r.status, 0, r.output)
                XCTAssertEqual(r.output.contains("64 train (and their mirror images) + 16 test images"), expected,
                               "trained with flip \(flip), --mirror \(mirror): \(r.output)")
                XCTAssertTrue(r.output.contains("linear probe on y"), r.output)
            }
        }
    }
}


extension CommandLineTests {
    /// `bench --gemm-shapes`: the shapes listed account for every GEMM FLOP of the step (their
    /// calls x 2mnk add up to the GEMM work the report states), and the ceiling line is printed.
    func testBenchListsEveryGEMMShapeOfTheStep() throws {
        let (status, output) = try dimDist(["bench", "--mi-units", "64", "--batch-size", "8", "--steps", "2",
                                            "--warmup", "1", "--gemm-shapes"])
        XCTAssertEqual(status, 0, output)
        func number(after prefix: String, in line: Substring) -> Double? {
            guard let r = line.range(of: prefix) else { return nil }
            return Double(line[r.upperBound...].prefix { $0.isNumber || $0 == "." })
        }
        let lines = output.split(separator: "\n")
        let work = try XCTUnwrap(lines.lazy.compactMap { line -> Double? in
            guard let r = line.range(of: " GFLOP/step/rank") else { return nil }
            return number(after: "GEMM work ", in: line[..<r.lowerBound])
        }.first, output)
        // A shape row: "    NT 512x128x4096 C+=   2.0   9.28 ms  115.8  120.7".
        var listed = 0.0, rows = 0
        for line in lines {
            let fields = line.split(separator: " ")
            guard fields.count >= 6, fields[0].count == 2, fields[0].allSatisfy({ $0 == "N" || $0 == "T" }) else { continue }
            let dims = fields[1].split(separator: "x").compactMap { Double($0) }
            let callsField = fields[2] == "C+=" ? fields[3] : fields[2]
            guard dims.count == 3, let calls = Double(callsField) else { continue }
            listed += calls * 2 * dims[0] * dims[1] * dims[2] / 1e9
            rows += 1
        }
        XCTAssertGreaterThan(rows, 10, output)
        XCTAssertEqual(listed, work, accuracy: 0.01 + 0.01 * listed, output)
        XCTAssertTrue(output.contains("the step's GEMMs: ") && output.contains("% of the reference"), output)
        // Three rounds (the default), each rated against the reference calls on either side: the
        // counts above are per timed step, the warm-up steps of rounds 2 and 3 left out.
        XCTAssertTrue(output.contains("rate around it (median of 3 round(s): "), output)
    }

    /// `bench` on a configuration DIM cannot train (one image, no negatives; one scored row):
    /// the error train gives, exit 1, no crash. Before TrainConfig.localBatch both crashed in the
    /// estimators' preconditions.
    func testBenchRefusesWhatTrainRefuses() throws {
        for (arguments, message) in [(["--batch-size", "1"], "--batch-size must be at least 2"),
                                     (["--batch-size", "8", "--scored-rows", "1"], "--scored-rows must be at least 2")] {
            let (status, output) = try dimDist(["bench", "--mi-units", "16", "--steps", "1", "--rounds", "1"]
                                               + arguments)
            XCTAssertEqual(status, 1, output)
            XCTAssertTrue(output.contains("Error: " + message), output)
            XCTAssertFalse(output.contains("crashed") || output.contains("failure"), output)
        }
    }

    /// The kernels a user gets without OPENBLAS_CORETYPE: the fastest kind for this CPU
    /// (`BLASKernels.bestCore`), whatever the library picked, named in the log's `blas:` line, and
    /// the header says when dim-dist overrode the library (it re-ran itself with the variable set),
    /// and that idle BLAS threads sleep (BLASIdleThreads; its test shows that they do).
    func testALogNamesTheFastestKernelsForThisCPU() throws {
        guard let best = BLASKernels.bestCore(for: .current) else { throw XCTSkip("no AVX2 on this CPU") }
        let (status, output) = try dimDist(["bench", "--mi-units", "64", "--batch-size", "8", "--steps", "0",
                                            "--warmup", "0"],
                                           unset: ["OPENBLAS_CORETYPE", "DIM_DIST_BLAS_PICKED", "OPENBLAS_THREAD_TIMEOUT"])
        XCTAssertEqual(status, 0, output)
        let line = try XCTUnwrap(output.split(separator: "\n").first { $0.hasPrefix("blas: OpenBLAS core ") }, output)
        let core = String(line.dropFirst("blas: OpenBLAS core ".count).prefix { $0 != " " })
        XCTAssertEqual(BLASKernels.tier(ofCore: core), BLASKernels.tier(ofCore: best), String(line))
        XCTAssertTrue(line.contains("(chosen by dim-dist for this CPU; OpenBLAS picked ")
                      || line.contains("(detected by OpenBLAS)"), String(line))
        if CPUInfo.current.isAMDZen4 { XCTAssertTrue(line.contains("Haswell (chosen by dim-dist"), String(line)) }
        XCTAssertTrue(line.contains("idle threads sleep after 2^\(BLASIdleThreads.defaultExponent) cycles (set by dim-dist)"),
                      String(line))
    }

    /// Where dim-dist re-ran itself for other kernels, the process keeps its name (`ps`, `pkill
    /// dim-dist` and the fault suite find ranks by it): exec'ing /proc/self/exe would call it "exe".
    func testAProcessThatChoseOtherKernelsKeepsItsName() throws {
        let (p, pipe) = try start(["bench", "--mi-units", "64", "--batch-size", "8", "--steps", "100000",
                                   "--warmup", "0"], unset: ["OPENBLAS_CORETYPE"])
        defer { p.terminate(); p.waitUntilExit() }
        // The `blas:` line comes after any re-run: from then on the process is what users see.
        var output = ""
        let deadline = Date().addingTimeInterval(60)
        while !output.contains("blas: OpenBLAS core ") && Date() < deadline {
            let data = pipe.fileHandleForReading.availableData
            if data.isEmpty { break }
            output += String(decoding: data, as: UTF8.self)
        }
        XCTAssertTrue(output.contains("blas: OpenBLAS core "), output)
        let comm = try String(contentsOfFile: "/proc/\(p.processIdentifier)/comm", encoding: .utf8)
        XCTAssertEqual(comm.trimmingCharacters(in: .whitespacesAndNewlines), "dim-dist", output)
    }
}
